use super::*;
use crate::analyze;

fn output(sql: &str) -> Option<Output> {
    let analysis = analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    analysis
        .statements
        .into_iter()
        .next()
        .and_then(|s| s.output)
}

fn columns(sql: &str) -> Vec<OutputItem> {
    match output(sql) {
        Some(Output::Columns(items)) => items,
        other => panic!("{sql}: {other:?}"),
    }
}

fn rel(name: &str) -> QualifiedName {
    match name.split_once('.') {
        Some((schema, name)) => QualifiedName::new(Some(schema), name),
        None => QualifiedName::new(None, name),
    }
}

/// `"customers.email"` is a column, `"customers.*"` a whole row.
fn src(spec: &str) -> Source {
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
}

/// A value computed from these sources.
fn from(specs: &[&str]) -> OutputItem {
    OutputItem::Column(sources(specs).computed())
}

/// One of these columns, passed through unchanged.
fn plain(specs: &[&str]) -> OutputItem {
    OutputItem::Column(sources(specs))
}

fn sources(specs: &[&str]) -> Lineage {
    let mut lineage = Lineage::NONE;
    for s in specs {
        lineage.add(src(s));
    }
    lineage
}

fn all_of(relation: &str, except: &[&str]) -> OutputItem {
    OutputItem::AllColumnsOf {
        relation: rel(relation),
        except: except.iter().map(|e| (*e).to_owned()).collect(),
    }
}

const UNKNOWN: OutputItem = OutputItem::Column(Lineage::Unknown);

#[track_caller]
fn check(sql: &str, expected: &[OutputItem]) {
    assert_eq!(columns(sql), expected, "{sql}");
}

#[test]
fn plain_qualified_and_aliased_columns() {
    check(
        "SELECT email FROM customers",
        &[plain(&["customers.email"])],
    );
    check(
        "SELECT customers.email, public.customers.id FROM public.customers",
        &[
            plain(&["public.customers.email"]),
            plain(&["public.customers.id"]),
        ],
    );
    check(
        "SELECT c.email AS e FROM customers c",
        &[plain(&["customers.email"])],
    );
}

#[test]
fn expressions_casts_and_concatenation() {
    check(
        "SELECT email || '' , ssn::text, CAST(id AS bigint) + 1, -id, email IS NULL, id BETWEEN 1 AND 2 FROM customers",
        &[
            from(&["customers.email"]),
            from(&["customers.ssn"]),
            from(&["customers.id"]),
            from(&["customers.id"]),
            from(&["customers.email"]),
            from(&["customers.id"]),
        ],
    );
    check(
        "SELECT c.first || ' ' || c.last FROM customers c",
        &[from(&["customers.first", "customers.last"])],
    );
}

#[test]
fn constants_and_sourceless_calls() {
    check(
        "SELECT 1, 'x', now(), CURRENT_USER, $1, count(*), NULL",
        &[
            from(&[]),
            from(&[]),
            from(&[]),
            from(&[]),
            from(&[]),
            from(&[]),
            from(&[]),
        ],
    );
    check(
        "SELECT count(*) FROM customers WHERE ssn LIKE '1%'",
        &[from(&[])],
    );
}

#[test]
fn builtin_calls_carry_their_arguments() {
    check(
        "SELECT reverse(email), upper(ssn), pg_catalog.lower(email), substring(ssn from 1 for 3), coalesce(email, ssn), nullif(email, ''), greatest(id, 0) FROM customers",
        &[
            from(&["customers.email"]),
            from(&["customers.ssn"]),
            from(&["customers.email"]),
            from(&["customers.ssn"]),
            from(&["customers.email", "customers.ssn"]),
            from(&["customers.email"]),
            from(&["customers.id"]),
        ],
    );
}

#[test]
fn unknown_functions_and_operators_are_unknown() {
    check(
        "SELECT my_func(email), public.lower(email), query_to_xml('select 1', true, true, ''), email OPERATOR(app.===) ssn, id FROM customers",
        &[UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, plain(&["customers.id"])],
    );
}

#[test]
fn aggregates_and_windows() {
    check(
        "SELECT string_agg(email, ',' ORDER BY ssn), count(*) FILTER (WHERE vip), array_agg(card), max(id) FROM customers GROUP BY region",
        &[
            from(&["customers.email", "customers.ssn"]),
            from(&["customers.vip"]),
            from(&["customers.card"]),
            from(&["customers.id"]),
        ],
    );
    check(
        "SELECT rank() OVER (PARTITION BY region ORDER BY salary), sum(salary) OVER w, row_number() OVER () FROM staff WINDOW w AS (ORDER BY hired)",
        &[
            from(&["staff.region", "staff.salary"]),
            from(&["staff.hired", "staff.salary"]),
            from(&[]),
        ],
    );
}

#[test]
fn case_expressions_take_conditions_too() {
    check(
        "SELECT CASE WHEN vip THEN email ELSE 'hidden' END, CASE region WHEN 'eu' THEN 1 END FROM customers",
        &[
            from(&["customers.email", "customers.vip"]),
            from(&["customers.region"]),
        ],
    );
}

#[test]
fn whole_row_references() {
    let row = || from(&["customers.*"]);
    check(
        "SELECT c, row_to_json(c), to_jsonb(c.*), c::text, ROW(c.*), c.*::text FROM customers c",
        &[
            from(&["customers.*", "customers.c"]),
            from(&["customers.*", "customers.c"]),
            row(),
            from(&["customers.*", "customers.c"]),
            row(),
            row(),
        ],
    );
    check(
        "SELECT json_agg(c) FROM customers AS c",
        &[from(&["customers.*", "customers.c"])],
    );
}

#[test]
fn json_and_xml_builders() {
    check(
        "SELECT json_build_object('e', email), jsonb_agg(ssn), json_object('a': id), JSON_ARRAY(email, ssn) FROM customers",
        &[
            from(&["customers.email"]),
            from(&["customers.ssn"]),
            from(&["customers.id"]),
            from(&["customers.email", "customers.ssn"]),
        ],
    );
    check(
        "SELECT xmlelement(name c, xmlattributes(id AS i), email), xmlforest(ssn, email AS e), xmlagg(xmlelement(name x, card)) FROM customers",
        &[
            from(&["customers.email", "customers.id"]),
            from(&["customers.email", "customers.ssn"]),
            from(&["customers.card"]),
        ],
    );
}

#[test]
fn arrays_and_subqueries() {
    check(
        "SELECT ARRAY[email, ssn], ARRAY(SELECT card FROM cards), (SELECT email FROM customers LIMIT 1), EXISTS (SELECT ssn FROM customers), 1 IN (SELECT id FROM orders) FROM t",
        &[
            from(&["t.email", "t.ssn"]),
            from(&["cards.card", "t.card"]),
            from(&["customers.email", "t.email"]),
            from(&[]),
            from(&["orders.id", "t.id"]),
        ],
    );
    // A name nothing in scope can have is not attributed.
    check("SELECT ARRAY[email]", &[UNKNOWN]);
}

#[test]
fn correlated_subqueries_use_their_own_items_first() {
    // `orders` may not have an `email` column: then it is the outer one.
    check(
        "SELECT (SELECT o.total FROM orders o WHERE o.cid = c.id), (SELECT c.email FROM orders o LIMIT 1) FROM customers c",
        &[from(&["orders.total"]), from(&["customers.email"])],
    );
    // A sub-query's certain column ends the search; inside it, `email`
    // may still be the outer `orders.email` if customers has none.
    check(
        "SELECT (SELECT e FROM (SELECT email AS e FROM customers) s) FROM orders",
        &[from(&["customers.email", "orders.email"])],
    );
    check(
        "SELECT (SELECT e FROM (SELECT c.email AS e FROM customers c) s) FROM orders",
        &[from(&["customers.email"])],
    );
}

#[test]
fn ctes_and_subqueries_are_followed() {
    check(
        "SELECT e FROM (SELECT email e FROM customers) s",
        &[plain(&["customers.email"])],
    );
    check(
        "SELECT * FROM (SELECT reverse(email) AS e, id FROM customers) s",
        &[from(&["customers.email"]), plain(&["customers.id"])],
    );
    check(
        "SELECT s.b, upper(s.a) FROM (SELECT email, ssn FROM customers) AS s(a, b)",
        &[plain(&["customers.ssn"]), from(&["customers.email"])],
    );
    check(
        "WITH x(a) AS (SELECT ssn || '' FROM customers), y AS (SELECT a AS b FROM x) SELECT b, x.a FROM y, x",
        &[from(&["customers.ssn"]), from(&["customers.ssn"])],
    );
    check(
        "WITH x AS (SELECT * FROM customers) SELECT email, * FROM x",
        &[plain(&["customers.email"]), all_of("customers", &[])],
    );
    // A CTE name qualified with a schema is a table.
    check(
        "WITH customers AS (SELECT 1 AS email) SELECT email FROM public.customers",
        &[plain(&["public.customers.email"])],
    );
}

#[test]
fn recursive_ctes_reach_a_fixpoint() {
    check(
        "WITH RECURSIVE r(n, path) AS (SELECT id, email FROM customers UNION ALL SELECT n + 1, path || ssn FROM r JOIN customers c ON c.id = r.n) SELECT path, n FROM r",
        &[
            from(&["customers.email", "customers.path", "customers.ssn"]),
            from(&["customers.id", "customers.n"]),
        ],
    );
    check(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
        &[from(&[])],
    );
}

#[test]
fn lateral_and_functions_in_from() {
    check(
        "SELECT g, x.g FROM generate_series(1, 3) g, generate_series(1, 2) AS x(g)",
        &[from(&[]), from(&[])],
    );
    check(
        "SELECT * FROM generate_series(1, 3) WITH ORDINALITY",
        &[from(&[]), plain(&[])],
    );
    check("SELECT f.a FROM my_func() f", &[UNKNOWN]);
    assert_eq!(output("SELECT * FROM my_func() f"), Some(Output::Unknown));
    check(
        "SELECT u FROM customers c, unnest(c.cards) u",
        &[from(&["customers.cards", "customers.u"])],
    );
    check(
        "SELECT l.e FROM customers c CROSS JOIN LATERAL (SELECT upper(c.email) AS e) l",
        &[from(&["customers.email"])],
    );
    check(
        "SELECT a, b FROM json_to_record('{}') AS x(a int, b text)",
        &[from(&[]), from(&[])],
    );
}

#[test]
fn joins_and_stars() {
    check(
        "SELECT * FROM customers c JOIN orders o ON o.cid = c.id",
        &[all_of("customers", &[]), all_of("orders", &[])],
    );
    check(
        "SELECT *, id FROM customers JOIN orders USING (id)",
        &[
            plain(&["customers.id", "orders.id"]),
            all_of("customers", &["id"]),
            all_of("orders", &["id"]),
            plain(&["customers.id", "orders.id"]),
        ],
    );
    check(
        "SELECT o.*, c.email FROM customers c LEFT JOIN orders o ON true",
        &[all_of("orders", &[]), plain(&["customers.email"])],
    );
    assert_eq!(
        output("SELECT * FROM customers NATURAL JOIN orders"),
        Some(Output::Unknown)
    );
    check(
        "SELECT * FROM (SELECT id, email FROM customers) a NATURAL JOIN (SELECT id, total FROM orders) b",
        &[
            plain(&["customers.id", "orders.id"]),
            plain(&["customers.email"]),
            plain(&["orders.total"]),
        ],
    );
    check(
        "SELECT j.email, x.id FROM (customers JOIN orders USING (id) AS x) AS j",
        &[
            plain(&["customers.email", "orders.email"]),
            plain(&["customers.id", "orders.id"]),
        ],
    );
    // An unqualified name in a join may belong to either side.
    check(
        "SELECT email FROM customers, orders",
        &[plain(&["customers.email", "orders.email"])],
    );
}

#[test]
fn set_operations_and_values() {
    check(
        "SELECT email, 1 FROM customers UNION SELECT ssn, id FROM staff EXCEPT SELECT 'x', 2",
        &[from(&["customers.email", "staff.ssn"]), from(&["staff.id"])],
    );
    check(
        "SELECT * FROM customers INTERSECT SELECT * FROM customers",
        &[all_of("customers", &[])],
    );
    assert_eq!(
        output("SELECT * FROM customers UNION SELECT * FROM staff"),
        Some(Output::Unknown)
    );
    check(
        "SELECT column2 FROM (VALUES (1, 'a'), (2, (SELECT ssn FROM customers))) v",
        &[from(&["customers.ssn"])],
    );
    check("VALUES (1, now())", &[from(&[]), from(&[])]);
}

#[test]
fn clauses_that_choose_rows_do_not_change_lineage() {
    check(
        "SELECT DISTINCT ON (region) email FROM customers WHERE ssn = '1' GROUP BY region, email HAVING count(*) > 1 ORDER BY region, ssn LIMIT 5",
        &[plain(&["customers.email"])],
    );
}

#[test]
fn table_is_select_star() {
    check("TABLE customers", &[all_of("customers", &[])]);
    check(
        "SELECT c.* FROM app.customers c",
        &[all_of("app.customers", &[])],
    );
}

#[test]
fn returning_lists() {
    check(
        "INSERT INTO customers AS c (email) VALUES ('x') RETURNING id, upper(c.email), *",
        &[
            plain(&["customers.id"]),
            from(&["customers.email"]),
            all_of("customers", &[]),
        ],
    );
    check(
        "UPDATE customers SET email = o.note FROM orders o WHERE o.cid = customers.id RETURNING old.email, new.email, o.total, *",
        &[
            plain(&["customers.email"]),
            plain(&["customers.email"]),
            plain(&["orders.total"]),
            all_of("customers", &[]),
            all_of("orders", &[]),
        ],
    );
    check(
        "DELETE FROM customers RETURNING reverse(ssn)",
        &[from(&["customers.ssn"])],
    );
    check(
        "MERGE INTO customers t USING staff s ON t.id = s.id WHEN MATCHED THEN UPDATE SET email = s.email RETURNING merge_action(), s.ssn",
        &[from(&[]), plain(&["staff.ssn"])],
    );
    check(
        "WITH d AS (DELETE FROM customers RETURNING email) SELECT upper(email) FROM d",
        &[from(&["customers.email"])],
    );
    assert_eq!(output("INSERT INTO t VALUES (1)"), None);
    assert_eq!(output("UPDATE t SET a = 1"), None);
}

#[test]
fn statements_without_or_with_unknown_results() {
    for sql in [
        "SELECT email INTO copy FROM customers",
        "CREATE TABLE x AS SELECT email FROM customers",
        "DECLARE c CURSOR FOR SELECT email FROM customers",
        "MOVE 1 IN c",
        "SET search_path = app",
        "COPY customers TO '/tmp/x'",
        "CREATE VIEW v AS SELECT email FROM customers",
    ] {
        assert_eq!(output(sql), None, "{sql}");
    }
    for sql in [
        "FETCH 1 FROM c",
        "EXECUTE p(1)",
        "EXPLAIN ANALYZE SELECT email FROM customers",
        "CALL p()",
    ] {
        assert_eq!(output(sql), Some(Output::Unknown), "{sql}");
    }
    check("SHOW search_path", &[plain(&[])]);
    check("SHOW ALL", &[plain(&[]), plain(&[]), plain(&[])]);
    check(
        "COPY (SELECT upper(email) FROM customers) TO STDOUT",
        &[from(&["customers.email"])],
    );
    check(
        "COPY customers (email) TO STDOUT",
        &[plain(&["customers.email"])],
    );
}

#[test]
fn whole_row_of_a_derived_row_is_its_columns() {
    check(
        "SELECT row_to_json(s) FROM (SELECT email, 1 AS one FROM customers) s",
        &[from(&["customers.email"])],
    );
    // A renamed relation column cannot be told apart from the others.
    check("SELECT a FROM customers AS c(a)", &[from(&["customers.*"])]);
}

#[test]
fn fields_of_whole_rows() {
    check(
        "SELECT (c).email, (c.address).city, (arr)[id] FROM customers c",
        &[
            plain(&["customers.email"]),
            plain(&["customers.address"]),
            from(&["customers.arr", "customers.id"]),
        ],
    );
}

#[test]
fn too_deep_is_unknown() {
    let deep = format!("SELECT {} FROM t", vec!["a"; MAX_DEPTH + 10].join(" || "));
    check(&deep, &[UNKNOWN]);
    let shallow = format!("SELECT {} FROM t", vec!["a"; 100].join(" || "));
    check(&shallow, &[from(&["t.a"])]);
}

/// The shape cache hands one analysis to every text that differs only in
/// its constants: lineage must not depend on them.
#[test]
fn lineage_is_the_same_for_every_constant() {
    let a = output("SELECT substr(ssn, 1, 3), 'x' || email, generate_series FROM customers, generate_series(1, 3) LIMIT 5");
    let b = output("SELECT substr(ssn, 7, 9), 'yy' || email, generate_series FROM customers, generate_series(5, 6) LIMIT 1");
    assert_eq!(a, b);
}

#[test]
fn serialises() {
    let json = serde_json::to_value(output("SELECT upper(email), * FROM customers c"))
        .expect("serialises");
    assert_eq!(
        json,
        serde_json::json!({"kind": "columns", "items": [
            {"column": {"from": {"sources": [{"column": {"relation": {"schema": null, "name": "customers"}, "column": "email"}}], "computed": true}}},
            {"all_columns_of": {"relation": {"schema": null, "name": "customers"}, "except": []}},
        ]})
    );
}

/// The shape fuzzer compares whole analyses, output included: check that
/// statements with lineage do leave templates it can compare.
#[test]
fn the_shape_fuzzer_compares_lineage() {
    for seed in [
        "SELECT substr(c.ssn, 1, 4) || 'x', row_to_json(c) FROM customers c WHERE id = 5",
        "WITH RECURSIVE r(n, e) AS (SELECT 1, 'a' UNION ALL SELECT n + 2, e || 'b' FROM r WHERE n < 5) SELECT n, e, 'c' FROM r UNION SELECT 3, 'd', 'e'",
    ] {
        let mut data = seed.as_bytes().to_vec();
        data.extend(b"\x0042\xffzz\xff7\xff8\xff'q\xff9");
        assert!(crate::fuzzing::exercise(&data), "{seed}");
    }
}

/// Nested recursive CTEs are each re-evaluated to a fixpoint: the work
/// budget keeps that from multiplying without bound.
#[test]
fn nested_recursive_ctes_stay_cheap() {
    let mut inner = String::from("SELECT email AS n FROM customers");
    for k in 0..12 {
        inner = format!(
            "WITH RECURSIVE r{k}(n) AS (SELECT ssn FROM customers UNION ALL SELECT r{k}.n || x.n FROM r{k}, ({inner}) x) SELECT n FROM r{k}"
        );
    }
    let started = std::time::Instant::now();
    let items = columns(&inner);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Sound either way: the real sources, or unknown.
    if let [OutputItem::Column(Lineage::From { sources, .. })] = items.as_slice() {
        assert!(sources.contains(&src("customers.email")));
        assert!(sources.contains(&src("customers.ssn")));
    } else {
        assert_eq!(items, [UNKNOWN]);
    }
}

#[test]
fn wide_whole_rows_stay_cheap() {
    let cols: Vec<String> = (0..5000).map(|i| format!("c{i}")).collect();
    let sql = format!(
        "SELECT row_to_json(s), s FROM (SELECT {} FROM t) s",
        cols.join(", ")
    );
    let started = std::time::Instant::now();
    let items = columns(&sql);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        matches!(&items[0], OutputItem::Column(Lineage::From { sources: s, .. }) if s.len() == 5000)
    );
}

#[test]
fn plain_references_pass_through_and_expressions_compute() {
    check(
        "SELECT email FROM customers UNION SELECT ssn FROM staff",
        &[plain(&["customers.email", "staff.ssn"])],
    );
    check(
        "SELECT email FROM customers UNION SELECT upper(ssn) FROM staff",
        &[from(&["customers.email", "staff.ssn"])],
    );
    check(
        "WITH x AS (SELECT email AS e FROM customers) SELECT e, e || '' FROM x",
        &[plain(&["customers.email"]), from(&["customers.email"])],
    );
    // Whole rows are computed, even of a derived row of plain columns.
    check(
        "SELECT c, s FROM customers c, (SELECT email FROM customers) s",
        &[
            from(&["customers.*", "customers.c"]),
            from(&["customers.email", "customers.s"]),
        ],
    );
    check(
        "SELECT u FROM customers c, unnest(c.cards) u",
        &[from(&["customers.cards", "customers.u"])],
    );
    assert!(!matches!(
        columns("SELECT reverse(email) FROM customers").as_slice(),
        [OutputItem::Column(l)] if l.passes_through()
    ));
    assert!(matches!(
        columns("SELECT c.email FROM customers c").as_slice(),
        [OutputItem::Column(l)] if l.passes_through()
    ));
}

fn row_choice(sql: &str) -> Lineage {
    let analysis = analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let stmt = analysis.statements.into_iter().next().expect("a statement");
    stmt.row_choice
}

#[track_caller]
fn chooses(sql: &str, specs: &[&str]) {
    let found = row_choice(sql);
    let mut got: Vec<Source> = found.sources().expect("known").to_vec();
    got.sort();
    let mut expected: Vec<Source> = specs.iter().map(|s| src(s)).collect();
    expected.sort();
    assert_eq!(got, expected, "{sql}");
}

#[test]
fn row_choice_takes_every_clause_that_chooses_rows() {
    chooses(
        "SELECT id FROM customers WHERE ssn LIKE '1%'",
        &["customers.ssn"],
    );
    chooses("SELECT id FROM customers", &[]);
    chooses(
        "SELECT c.id FROM customers c JOIN orders o ON o.email = c.email",
        &["customers.email", "orders.email"],
    );
    chooses(
        "SELECT id FROM customers JOIN orders USING (email)",
        &["customers.email", "orders.email"],
    );
    chooses(
        "SELECT region, count(*) FROM customers GROUP BY region HAVING max(ssn) > '5'",
        &["customers.region", "customers.ssn"],
    );
    chooses(
        "SELECT DISTINCT ON (email) id FROM customers ORDER BY email, id LIMIT 3",
        &["customers.email", "customers.id"],
    );
    chooses(
        "SELECT id, row_number() OVER (PARTITION BY region ORDER BY ssn) FROM customers",
        &["customers.region", "customers.ssn"],
    );
    chooses(
        "SELECT id FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = o.cid AND c.ssn = '1')",
        &["customers.id", "customers.ssn", "orders.cid"],
    );
    chooses(
        "SELECT id FROM orders WHERE cid IN (SELECT c.id FROM customers c WHERE c.email LIKE 'a%')",
        &["customers.email", "customers.id", "orders.cid"],
    );
}

#[test]
fn row_choice_follows_ctes_subqueries_and_outputs() {
    chooses(
        "WITH x AS (SELECT id FROM customers WHERE ssn LIKE '1%') SELECT id FROM x",
        &["customers.ssn"],
    );
    chooses(
        "SELECT id FROM (SELECT id, ssn AS s FROM customers) t WHERE s = '1'",
        &["customers.ssn"],
    );
    // By output position and output name.
    chooses(
        "SELECT id, email FROM customers ORDER BY 2",
        &["customers.email"],
    );
    chooses(
        "SELECT email AS e FROM customers ORDER BY e",
        &["customers.email", "customers.e"],
    );
    chooses(
        "SELECT email FROM customers UNION SELECT ssn FROM staff ORDER BY 1",
        &["customers.email", "staff.ssn"],
    );
    chooses(
        "SELECT (SELECT count(*) FROM customers WHERE ssn LIKE '1%')",
        &["customers.ssn"],
    );
}

#[test]
fn row_choice_of_modifications_and_bodies() {
    chooses(
        "UPDATE customers SET vip = true WHERE ssn = '1'",
        &["customers.ssn"],
    );
    chooses(
        "DELETE FROM customers c USING orders o WHERE o.cid = c.id AND c.email = 'x'",
        &["customers.email", "customers.id", "orders.cid"],
    );
    chooses(
        "INSERT INTO log (id) SELECT id FROM customers WHERE ssn = '1'",
        &["customers.ssn"],
    );
    chooses(
        "MERGE INTO customers t USING staff s ON t.ssn = s.ssn WHEN MATCHED AND s.email = 'x' THEN DELETE",
        &["customers.ssn", "staff.email", "staff.ssn"],
    );
    chooses(
        "PREPARE p AS SELECT id FROM customers WHERE ssn = $1",
        &["customers.ssn"],
    );
    chooses(
        "EXPLAIN ANALYZE SELECT id FROM customers WHERE ssn = '1'",
        &["customers.ssn"],
    );
    chooses(
        "DECLARE c CURSOR FOR SELECT id FROM customers ORDER BY ssn",
        &["customers.ssn"],
    );
    assert_eq!(
        row_choice("SELECT id FROM customers WHERE my_func(ssn)"),
        Lineage::Unknown
    );
}

#[test]
fn prepare_carries_its_body_output() {
    let analysis =
        analyze("PREPARE p AS SELECT reverse(email), id FROM customers").expect("parses");
    let stmt = &analysis.statements[0];
    assert_eq!(stmt.output, None);
    assert_eq!(
        stmt.prepared_output,
        Some(Output::Columns(vec![
            from(&["customers.email"]),
            plain(&["customers.id"])
        ]))
    );
    let analysis = analyze("PREPARE q AS UPDATE customers SET vip = true").expect("parses");
    assert_eq!(analysis.statements[0].prepared_output, None);
}
