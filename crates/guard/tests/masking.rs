//! Masking decisions made when a statement is judged: strict masking
//! (values computed from protected columns refused) and inference (rows
//! chosen by protected columns flagged or refused), with a classified
//! catalog and the default policy bundle (nobody may unmask).

use std::sync::Arc;

use portcullis_analysis::QualifiedName;
use portcullis_guard::catalog::Row;
use portcullis_guard::{
    shared_analysis_cache, CatalogSnapshot, Classification, Exposure, Guard, GuardSettings,
    InferenceRule, Inferred, MaskingRules, OutputColumn, SessionState, Who,
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
        },
        source: None,
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
