//! What each statement form writes, and where the values come from.

use super::*;
use crate::analyze;

fn writes(sql: &str) -> Vec<Assignment> {
    let analysis = analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    analysis
        .statements
        .into_iter()
        .flat_map(|s| s.writes)
        .collect()
}

fn rel(name: &str) -> QualifiedName {
    match name.split_once('.') {
        Some((schema, name)) => QualifiedName::new(Some(schema), name),
        None => QualifiedName::new(None, name),
    }
}

/// `"t.c"` is a column, `"t.*"` a whole row; a value with these sources
/// (passed through or computed alike: writes do not tell them apart).
fn value(specs: &[&str]) -> Vec<Source> {
    let mut out: Vec<Source> = specs
        .iter()
        .map(|spec| {
            let (relation, column) = spec.rsplit_once('.').expect("relation.column");
            if column == "*" {
                Source::WholeRow {
                    relation: rel(relation),
                }
            } else {
                Source::Column {
                    relation: rel(relation),
                    column: column.to_owned(),
                }
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The sources of each value, `None` for an unknown one.
fn sources(values: &Output) -> Option<Vec<Option<Vec<Source>>>> {
    let items = values.items()?;
    Some(
        items
            .iter()
            .map(|i| match i {
                OutputItem::Column(l) => l.sources().map(<[Source]>::to_vec),
                OutputItem::AllColumnsOf { relation, .. } => Some(vec![Source::WholeRow {
                    relation: relation.clone(),
                }]),
            })
            .collect(),
    )
}

fn named(names: &[&str]) -> AssignedColumns {
    AssignedColumns::Named(names.iter().map(|n| (*n).to_owned()).collect())
}

/// One expected assignment: relation, columns, and each value's sources.
#[track_caller]
fn check(sql: &str, expected: &[(&str, AssignedColumns, &[&[&str]])]) {
    let got = writes(sql);
    assert_eq!(got.len(), expected.len(), "{sql}: {got:#?}");
    for (a, (relation, columns, values)) in got.iter().zip(expected) {
        assert_eq!(a.relation, rel(relation), "{sql}");
        assert_eq!(&a.columns, columns, "{sql}");
        let want: Vec<Option<Vec<Source>>> = values.iter().map(|v| Some(value(v))).collect();
        assert_eq!(sources(&a.values), Some(want), "{sql}: {a:#?}");
    }
}

/// The statement writes into `relation` values it cannot tell apart.
#[track_caller]
fn unknown_values(sql: &str, relation: &str) {
    let got = writes(sql);
    let a = got
        .iter()
        .find(|a| a.relation == rel(relation))
        .unwrap_or_else(|| panic!("{sql}: no write to {relation}: {got:#?}"));
    let unknown = match sources(&a.values) {
        None => true,
        Some(values) => values.iter().any(Option::is_none),
    };
    assert!(unknown, "{sql}: {a:#?}");
}

#[test]
fn insert_with_and_without_a_column_list() {
    check(
        "INSERT INTO plain_notes SELECT id, 'x' FROM customers",
        &[(
            "plain_notes",
            AssignedColumns::InOrder,
            &[&["customers.id"], &[]],
        )],
    );
    check(
        "INSERT INTO customers (id, full_name, email, note) SELECT id + 100, full_name, email, ssn FROM customers",
        &[(
            "customers",
            named(&["id", "full_name", "email", "note"]),
            &[
                &["customers.id"],
                &["customers.full_name"],
                &["customers.email"],
                &["customers.ssn"],
            ],
        )],
    );
    check(
        "INSERT INTO t (a, b) VALUES (1, $1), (DEFAULT, upper($2))",
        &[("t", named(&["a", "b"]), &[&[], &[]])],
    );
    check("INSERT INTO t DEFAULT VALUES", &[("t", named(&[]), &[])]);
    // The query's `*` stands for the relation's columns.
    check(
        "INSERT INTO customers_2 SELECT * FROM customers",
        &[("customers_2", AssignedColumns::InOrder, &[&["customers.*"]])],
    );
    // WHERE chooses rows: no source.
    check(
        "INSERT INTO t (a) SELECT id FROM customers WHERE ssn LIKE '1%'",
        &[("t", named(&["a"]), &[&["customers.id"]])],
    );
}

#[test]
fn update_set_in_every_form() {
    check(
        "UPDATE customers SET note = ssn",
        &[("customers", named(&["note"]), &[&["customers.ssn"]])],
    );
    check(
        "UPDATE customers SET note = ssn RETURNING note",
        &[("customers", named(&["note"]), &[&["customers.ssn"]])],
    );
    check(
        "UPDATE customers SET email = lower(email), note = 'called' WHERE email LIKE '%.org'",
        &[(
            "customers",
            named(&["email", "note"]),
            &[&["customers.email"], &[]],
        )],
    );
    check(
        "UPDATE plain_notes p SET body = c.email FROM customers c WHERE c.id = p.id",
        &[("plain_notes", named(&["body"]), &[&["customers.email"]])],
    );
    check(
        "UPDATE customers SET (note, phone) = (SELECT s.ssn, s.email FROM customers_2 s LIMIT 1)",
        &[(
            "customers",
            named(&["note", "phone"]),
            &[&["customers_2.ssn"], &["customers_2.email"]],
        )],
    );
    // Unqualified, a name may be the outer row's (correlated).
    check(
        "UPDATE customers SET (note, phone) = (SELECT ssn, 'x' FROM customers_2)",
        &[(
            "customers",
            named(&["note", "phone"]),
            &[&["customers.ssn", "customers_2.ssn"], &[]],
        )],
    );
    check(
        "UPDATE customers SET (note, phone) = ROW(ssn, 'x')",
        &[(
            "customers",
            named(&["note", "phone"]),
            &[&["customers.ssn"], &[]],
        )],
    );
    check(
        "UPDATE customers SET (note, phone) = (email, ssn), id = id",
        &[(
            "customers",
            named(&["note", "phone", "id"]),
            &[&["customers.email"], &["customers.ssn"], &["customers.id"]],
        )],
    );
    check(
        "UPDATE customers SET note = DEFAULT, tags[1] = ssn",
        &[(
            "customers",
            named(&["note", "tags"]),
            &[&[], &["customers.ssn"]],
        )],
    );
    // `ROW(c.*)` stands for several columns: positions are lost, each
    // may be any of them.
    check(
        "UPDATE t SET (a, b) = ROW(c.*) FROM customers c",
        &[(
            "t",
            named(&["a", "b"]),
            &[&["customers.*"], &["customers.*"]],
        )],
    );
}

#[test]
fn on_conflict_excluded_is_the_inserted_row() {
    check(
        "INSERT INTO customers (id, ssn) SELECT id, ssn FROM customers_2 \
         ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.ssn",
        &[
            (
                "customers",
                named(&["id", "ssn"]),
                &[&["customers_2.id"], &["customers_2.ssn"]],
            ),
            (
                "customers",
                named(&["note"]),
                &[&["customers.ssn", "customers_2.ssn"]],
            ),
        ],
    );
    // Without a column list, any inserted value may be the one.
    check(
        "INSERT INTO t SELECT a, b FROM s ON CONFLICT (a) DO UPDATE SET c = excluded.c, d = t.e",
        &[
            ("t", AssignedColumns::InOrder, &[&["s.a"], &["s.b"]]),
            ("t", named(&["c", "d"]), &[&["s.a", "s.b", "t.c"], &["t.e"]]),
        ],
    );
    check(
        "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING",
        &[("t", named(&["a"]), &[&[]])],
    );
}

#[test]
fn merge_update_and_insert() {
    check(
        "MERGE INTO customers c USING customers_2 s ON c.id = s.id \
         WHEN MATCHED AND s.ssn IS NOT NULL THEN UPDATE SET note = s.ssn \
         WHEN NOT MATCHED THEN INSERT (id, note) VALUES (s.id, s.email)",
        &[
            ("customers", named(&["note"]), &[&["customers_2.ssn"]]),
            (
                "customers",
                named(&["id", "note"]),
                &[&["customers_2.id"], &["customers_2.email"]],
            ),
        ],
    );
    check(
        "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.x)",
        &[("t", AssignedColumns::InOrder, &[&["s.id"], &["s.x"]])],
    );
    check(
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        &[("t", named(&[]), &[])],
    );
    unknown_values(
        "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.*)",
        "t",
    );
}

#[test]
fn created_relations_take_every_output_column() {
    for sql in [
        "CREATE TABLE n AS SELECT id, email FROM customers",
        "CREATE MATERIALIZED VIEW n AS SELECT id, email FROM customers WITH NO DATA",
        "SELECT id, email INTO n FROM customers",
        "SELECT id, email INTO n FROM customers UNION SELECT 1, 'x'",
    ] {
        check(
            sql,
            &[(
                "n",
                AssignedColumns::Created,
                &[&["customers.id"], &["customers.email"]],
            )],
        );
    }
    unknown_values("CREATE TABLE n AS EXECUTE p", "n");
}

#[test]
fn data_modifying_ctes_and_bodies_at_any_depth() {
    check(
        "WITH u AS (UPDATE customers SET note = ssn RETURNING id) SELECT * FROM u",
        &[("customers", named(&["note"]), &[&["customers.ssn"]])],
    );
    check(
        "WITH x AS (SELECT email FROM customers) INSERT INTO plain_notes SELECT 1, email FROM x",
        &[(
            "plain_notes",
            AssignedColumns::InOrder,
            &[&[], &["customers.email"]],
        )],
    );
    check(
        "WITH d AS (DELETE FROM customers RETURNING ssn) INSERT INTO t (a) SELECT ssn FROM d",
        &[("t", named(&["a"]), &[&["customers.ssn"]])],
    );
    check(
        "WITH a AS (WITH b AS (INSERT INTO t (x) SELECT ssn FROM customers RETURNING x) SELECT * FROM b) SELECT * FROM a",
        &[("t", named(&["x"]), &[&["customers.ssn"]])],
    );
    check(
        "PREPARE p AS UPDATE customers SET note = ssn",
        &[("customers", named(&["note"]), &[&["customers.ssn"]])],
    );
    check(
        "EXPLAIN ANALYZE UPDATE customers SET note = ssn",
        &[("customers", named(&["note"]), &[&["customers.ssn"]])],
    );
    check(
        "ALTER TABLE customers ALTER COLUMN note TYPE text USING ssn::text",
        &[("customers", named(&["note"]), &[&["customers.ssn"]])],
    );
}

#[test]
fn values_and_targets_that_expand_rows_lose_positions() {
    unknown_values(
        "INSERT INTO t SELECT v.* FROM customers c, LATERAL (VALUES (c.*)) v",
        "t",
    );
    unknown_values("INSERT INTO t SELECT (c).* FROM customers c", "t");
    // The output lineage, likewise: which column is which is not known.
    let analysis = analyze("SELECT column3 FROM customers c, LATERAL (VALUES (c.*)) v").unwrap();
    let output = analysis.statements[0].output.clone();
    match output {
        Some(Output::Columns(items)) => assert!(
            matches!(&items[..], [OutputItem::Column(l)] if l.sources().is_none_or(|s| s.contains(&Source::WholeRow { relation: rel("customers") }))),
            "{items:?}"
        ),
        other => panic!("{other:?}"),
    }
}
