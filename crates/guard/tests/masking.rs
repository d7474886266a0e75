//! Masking decisions made when a statement is judged: strict masking
//! (values computed from protected columns refused) and inference (rows
//! chosen by protected columns flagged or refused), with a classified
//! catalog and the default policy bundle (nobody may unmask).

use std::sync::Arc;

use portcullis_analysis::QualifiedName;
use portcullis_guard::catalog::{Classification, Row};
use portcullis_guard::{
    shared_analysis_cache, CatalogSnapshot, Exposure, Guard, GuardSettings, InferenceRule,
    Inferred, MaskingRules, OutputColumn, SessionState, Who,
};
use portcullis_mask::Class;
use portcullis_policy::{Enforcement, PolicyEngine, Principal, PrincipalKind, TargetRef};

fn row(cols: &[&str]) -> Row {
    cols.iter()
        .map(|c| (*c != "NULL").then(|| c.to_string()))
        .collect()
}

/// customers(id, email, ssn, region), orders(id, cid, note), the view
/// contacts(id, reach = email, shout = upper(email)) and the view vip
/// (customers whose ssn starts with 1).
fn catalog() -> CatalogSnapshot {
    let col = |oid: &str, rel: &str, n: &str, name: &str| {
        row(&[oid, "public", rel, n, name, "25", "-1", "NULL"])
    };
    let mut c = CatalogSnapshot::from_rows(&[
        vec![row(&["public"]), row(&["pg_catalog"])],
        vec![
            row(&["public", "customers", "r"]),
            row(&["public", "orders", "r"]),
            row(&["public", "contacts", "v"]),
            row(&["public", "vip", "v"]),
        ],
        vec![],
        vec![
            row(&["public", "contacts", "public", "customers"]),
            row(&["public", "vip", "public", "customers"]),
        ],
        vec![row(&["pg_catalog", "lower", "1", "0", "false", "i", "NULL"])],
        vec![
            col("16400", "customers", "1", "id"),
            col("16400", "customers", "2", "email"),
            col("16400", "customers", "3", "ssn"),
            col("16400", "customers", "4", "region"),
            col("16410", "orders", "1", "id"),
            col("16410", "orders", "2", "cid"),
            col("16410", "orders", "3", "note"),
            col("16420", "contacts", "1", "id"),
            col("16420", "contacts", "2", "reach"),
            col("16420", "contacts", "3", "shout"),
            col("16430", "vip", "1", "id"),
        ],
        vec![
            row(&[
                "public",
                "contacts",
                " SELECT customers.id, customers.email AS reach, upper(customers.email) AS shout FROM customers;",
            ]),
            row(&[
                "public",
                "vip",
                " SELECT customers.id FROM customers WHERE customers.ssn ~~ '1%'::text;",
            ]),
        ],
    ])
    .expect("catalog");
    c.classify(&|_, name, _, _| match name {
        "email" => Classification::Sensitive(Class::Email, None),
        "ssn" => Classification::Sensitive(Class::NationalId, None),
        _ => Classification::Clear,
    });
    c
}

fn guard(strict: bool, inference: InferenceRule) -> Guard {
    let g = Guard::new(
        Arc::new(PolicyEngine::default_bundle().expect("default bundle loads")),
        shared_analysis_cache(),
        GuardSettings {
            target: TargetRef::new("shop", "staging"),
            enforcement: Enforcement::Enforce,
            row_limit: None,
            masking: MaskingRules { strict, inference },
        },
    );
    g.set_catalog(catalog(), 0);
    g
}

fn who() -> Who {
    Who {
        principal: Principal {
            name: "dana".into(),
            kind: PrincipalKind::Human,
            groups: vec!["developers".into()],
            on_behalf_of: None,
        },
        source: None,
        limits: Default::default(),
        approved: false,
    }
}

fn session() -> SessionState {
    SessionState::new("app", Some("\"$user\", public"))
}

fn refusal(g: &Guard, sql: &str) -> Option<(String, String)> {
    g.judge_text(sql, &who(), &session())
        .refusal
        .map(|r| (r.sqlstate.to_owned(), r.message))
}

#[test]
fn strict_refuses_values_computed_from_protected_columns() {
    let g = guard(true, InferenceRule::Flag);
    for sql in [
        "SELECT reverse(email) FROM customers",
        "SELECT id, email || '' FROM customers",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT c FROM customers c",
        "SELECT json_build_object('s', ssn) FROM customers",
        "SELECT shout FROM contacts",
        "SELECT my_func(id) FROM customers",
        "UPDATE customers SET region = 'x' WHERE id = 1 RETURNING upper(email)",
        "PREPARE p AS SELECT reverse(email) FROM customers",
        "SELECT (SELECT email FROM customers LIMIT 1)",
    ] {
        let (code, message) = refusal(&g, sql).unwrap_or_else(|| panic!("{sql} was allowed"));
        assert_eq!(code, "42501", "{sql}");
        assert!(message.starts_with("strict masking"), "{sql}: {message}");
    }
    let (_, message) = refusal(&g, "SELECT id, reverse(email) FROM customers").expect("refused");
    assert!(message.contains("column 2"), "{message}");
}

#[test]
fn strict_lets_plain_columns_and_clear_values_through() {
    let g = guard(true, InferenceRule::Flag);
    for sql in [
        "SELECT email, id FROM customers",
        "SELECT * FROM customers",
        "SELECT c.email AS contact FROM customers c",
        "SELECT e FROM (SELECT email AS e FROM customers) s",
        "WITH x AS (SELECT ssn FROM customers) SELECT ssn FROM x",
        "SELECT email FROM customers UNION SELECT email FROM customers",
        "SELECT reach, id FROM contacts",
        "SELECT upper(region), count(*) FROM customers GROUP BY region",
        "SELECT lower(note) FROM orders",
        "SELECT id, now(), random() FROM customers",
        "UPDATE customers SET region = 'x' WHERE id = 1 RETURNING email",
        "SELECT 1",
    ] {
        assert_eq!(refusal(&g, sql), None, "{sql}");
    }
}

#[test]
fn without_strict_computed_values_run() {
    let g = guard(false, InferenceRule::Flag);
    for sql in [
        "SELECT reverse(email) FROM customers",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT shout FROM contacts",
    ] {
        assert_eq!(refusal(&g, sql), None, "{sql}");
    }
}

#[test]
fn inference_refuse_refuses_rows_chosen_by_protected_columns() {
    let g = guard(false, InferenceRule::Refuse);
    for sql in [
        "SELECT id FROM customers WHERE ssn LIKE '1%'",
        "SELECT id FROM customers ORDER BY email",
        "SELECT id, email FROM customers ORDER BY 2",
        "SELECT count(*) FROM customers GROUP BY ssn",
        "SELECT o.id FROM orders o JOIN customers c ON c.email = o.note",
        "WITH x AS (SELECT id FROM customers WHERE ssn = '1') SELECT id FROM x",
        "SELECT id FROM (SELECT id, ssn FROM customers) s WHERE ssn > '5'",
        "SELECT id FROM orders WHERE EXISTS (SELECT 1 FROM customers c WHERE c.ssn = orders.note)",
        "SELECT id FROM vip",
        "SELECT id FROM contacts WHERE reach = 'a@example.com'",
        "UPDATE customers SET region = 'x' WHERE ssn = '123-45-6789'",
        "DELETE FROM customers WHERE email = 'a@example.com'",
        "SELECT id FROM customers WHERE my_func(id)",
    ] {
        let (code, message) = refusal(&g, sql).unwrap_or_else(|| panic!("{sql} was allowed"));
        assert_eq!(code, "42501", "{sql}");
        assert!(message.contains("chooses"), "{sql}: {message}");
    }
    for sql in [
        "SELECT id FROM customers WHERE id = 1",
        "SELECT email FROM customers ORDER BY id",
        "SELECT id, email FROM customers ORDER BY 1",
        "SELECT region, count(*) FROM customers GROUP BY region",
        "SELECT o.id FROM orders o JOIN customers c ON c.id = o.cid",
        "SELECT id, reach FROM contacts ORDER BY id",
        "UPDATE customers SET region = 'x' WHERE id = 1",
    ] {
        assert_eq!(refusal(&g, sql), None, "{sql}");
    }
}

#[test]
fn inference_flag_records_the_columns_and_lets_the_statement_run() {
    let g = guard(false, InferenceRule::Flag);
    let s = session();
    let j = g.judge_text("SELECT id FROM customers WHERE ssn LIKE '1%'", &who(), &s);
    assert!(j.refusal.is_none());
    let ssn = Inferred::Column {
        relation: QualifiedName::new(Some("public"), "customers"),
        column: "ssn".into(),
        class: Class::NationalId,
    };
    assert_eq!(j.inferred, vec![ssn.clone()]);
    assert_eq!(ssn.to_string(), "public.customers.ssn (national_id)");
    // Through a view: the column it shows.
    let j = g.judge_text("SELECT id FROM contacts ORDER BY reach", &who(), &s);
    assert_eq!(
        j.inferred,
        vec![Inferred::Column {
            relation: QualifiedName::new(Some("public"), "customers"),
            column: "email".into(),
            class: Class::Email,
        }]
    );
    let j = g.judge_text("SELECT id FROM vip", &who(), &s);
    assert_eq!(j.inferred, vec![ssn]);
    let j = g.judge_text("SELECT id FROM customers WHERE id = 1", &who(), &s);
    assert!(j.inferred.is_empty());
}

#[test]
fn passed_through_columns_keep_their_class() {
    let g = guard(false, InferenceRule::Flag);
    let s = session();
    let analysis = g
        .analyze("SELECT email FROM customers UNION SELECT email FROM customers")
        .expect("parses");
    let facts: Vec<_> = analysis.statements.iter().collect();
    let mut out = Vec::new();
    let computed = OutputColumn {
        table_oid: 0,
        attnum: 0,
    };
    g.exposures(&[computed], &facts, &who(), &s, &mut out);
    assert_eq!(out, [Exposure::Protected(Class::Email, None)]);
    // A view's plain column over email is masked as an email.
    let reach = OutputColumn {
        table_oid: 16420,
        attnum: 2,
    };
    let shout = OutputColumn {
        table_oid: 16420,
        attnum: 3,
    };
    g.exposures(&[reach, shout], &[], &who(), &s, &mut out);
    assert_eq!(
        out,
        [Exposure::Protected(Class::Email, None), Exposure::Derived]
    );
}

/// The refusal of a statement that would copy masked values away, if
/// that is why it is refused (the default bundle may refuse some of
/// these statements for reasons of its own).
fn copy_refusal(g: &Guard, sql: &str) -> Option<String> {
    refusal(g, sql)
        .filter(|(_, m)| m.starts_with("statement refused by Portcullis: it would"))
        .map(|(code, m)| {
            assert_eq!(code, "42501", "{sql}");
            m
        })
}

#[test]
fn values_of_masked_columns_written_where_they_are_not_masked_are_refused() {
    let g = guard(false, InferenceRule::Flag);
    for (sql, names) in [
        ("UPDATE customers SET region = ssn WHERE id = 1", "\"ssn\" of \"customers\" (masked: national_id)"),
        ("UPDATE customers SET region = ssn WHERE id = 1 RETURNING region", "\"region\" of \"customers\""),
        ("UPDATE customers SET email = ssn WHERE id = 1", "column \"email\""),
        ("UPDATE customers SET (region, id) = (SELECT c.ssn, 1 FROM customers c LIMIT 1) WHERE id = 1", "\"ssn\""),
        ("UPDATE customers SET (id, region) = ROW(1, upper(email)) WHERE id = 1", "\"email\""),
        ("INSERT INTO customers (id, email, region) SELECT id + 100, email, ssn FROM customers", "\"ssn\""),
        ("INSERT INTO customers (id, ssn) SELECT id, ssn FROM customers ON CONFLICT (id) DO UPDATE SET region = EXCLUDED.ssn", "\"region\""),
        ("MERGE INTO customers c USING customers s ON c.id = s.id WHEN MATCHED THEN UPDATE SET region = s.ssn", "\"ssn\""),
        ("MERGE INTO orders o USING customers s ON o.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.id, s.email)", "\"email\""),
        ("INSERT INTO orders SELECT id, id, email FROM customers", "column \"note\" of \"orders\""),
        ("INSERT INTO orders (note) SELECT reach FROM contacts", "\"email\" of \"customers\""),
        ("UPDATE orders SET note = c.reach FROM contacts c WHERE c.id = orders.id", "\"email\""),
        ("CREATE TABLE copied AS SELECT id, email FROM customers", "into \"copied\""),
        ("SELECT ssn INTO copied FROM customers", "\"ssn\""),
        ("CREATE MATERIALIZED VIEW copied AS SELECT * FROM customers WITH NO DATA", "\"copied\""),
        ("WITH u AS (UPDATE customers SET region = ssn WHERE id = 1 RETURNING id) SELECT * FROM u", "\"ssn\""),
        ("PREPARE p AS UPDATE customers SET region = ssn WHERE id = 1", "\"ssn\""),
        ("ALTER TABLE customers ALTER COLUMN region TYPE text USING ssn", "\"region\""),
        ("UPDATE customers SET region = my_func(id) WHERE id = 1", "cannot trace"),
    ] {
        let m = copy_refusal(&g, sql).unwrap_or_else(|| panic!("{sql}: not refused"));
        assert!(m.contains(names), "{sql}: {m}");
    }
}

#[test]
fn values_written_where_they_stay_masked_or_from_clear_columns_pass() {
    let g = guard(false, InferenceRule::Flag);
    for sql in [
        "UPDATE customers SET email = lower(email) WHERE id = 1",
        // WHERE chooses rows: it is not what is written.
        "UPDATE customers SET region = 'called' WHERE ssn LIKE '1%'",
        "INSERT INTO orders SELECT id, id, 'x' FROM customers",
        "INSERT INTO orders (id, note) SELECT id, region FROM customers",
        "CREATE TABLE copied AS SELECT id, region FROM customers",
        "INSERT INTO customers SELECT * FROM customers",
        "INSERT INTO customers (id, email) SELECT id + 1, reach FROM contacts",
        "INSERT INTO customers (id, email) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email",
        "MERGE INTO customers c USING customers s ON c.id = s.id WHEN MATCHED THEN UPDATE SET ssn = s.ssn",
    ] {
        assert_eq!(copy_refusal(&g, sql), None, "{sql}");
    }
    // Views and functions are still judged by what they read.
    assert!(copy_refusal(&g, "CREATE VIEW v AS SELECT id FROM customers").is_some());
}
