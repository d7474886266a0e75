//! The guard with the default policy bundle, without a database: what the
//! proxy will refuse and allow.

use std::sync::Arc;

use portcullis_guard::{shared_analysis_cache, Guard, GuardSettings, SessionState, Who};
use portcullis_policy::{Enforcement, PolicyEngine, Principal, PrincipalKind, TargetRef};

fn guard(environment: &str, enforcement: Enforcement) -> Guard {
    Guard::new(
        Arc::new(PolicyEngine::default_bundle().expect("default bundle loads")),
        shared_analysis_cache(),
        GuardSettings {
            target: TargetRef::new("shop", environment),
            enforcement,
            row_limit: None,
            masking: Default::default(),
        },
    )
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

fn refused(g: &Guard, s: &SessionState, sql: &str) -> Option<String> {
    g.judge_text(sql, &who(), s).refusal.map(|r| r.message)
}

#[test]
fn production_refuses_destructive_statements() {
    let g = guard("production", Enforcement::Enforce);
    let s = session();
    for sql in [
        "DROP TABLE orders",
        "/* harmless */ dRoP TaBlE \"orders\"",
        "TRUNCATE orders",
        "ALTER TABLE orders RENAME TO o2",
        "ALTER TABLE orders DROP COLUMN note",
        "DELETE FROM orders",
        "UPDATE orders SET total = 0 WHERE 1 = 1",
        "WITH d AS (DELETE FROM orders RETURNING 1) SELECT 1",
        "DO $$BEGIN EXECUTE 'DROP TABLE orders'; END$$",
        "SELECT 1; DROP TABLE orders",
        "COPY orders FROM '/etc/passwd'",
        "SET ROLE postgres",
        "SELECT nextval('orders_id_seq')",
        "CREATE TABLE x (a int)",
    ] {
        assert!(refused(&g, &s, sql).is_some(), "{sql} was allowed");
    }
}

#[test]
fn production_allows_everyday_sql() {
    let g = guard("production", Enforcement::Enforce);
    let s = session();
    for sql in [
        "SELECT 'DROP TABLE x'",
        "SELECT 1 -- DROP TABLE orders",
        "SELECT now(), lower('A'), count(*) FROM orders",
        "UPDATE orders SET total = 1 WHERE id = 7",
        "DELETE FROM orders WHERE id = $1",
        "INSERT INTO orders (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 1",
        "BEGIN",
        "SET search_path = public",
        "SELECT jsonb_build_object('a', 1)",
    ] {
        assert_eq!(refused(&g, &s, sql), None, "{sql} was refused");
    }
}

#[test]
fn staging_is_permissive_but_not_for_dangerous_capabilities() {
    let g = guard("staging", Enforcement::Enforce);
    let s = session();
    assert_eq!(refused(&g, &s, "DROP TABLE orders"), None);
    assert_eq!(refused(&g, &s, "DELETE FROM orders"), None);
    assert!(refused(&g, &s, "COPY orders TO PROGRAM 'curl x'").is_some());
    assert!(refused(&g, &s, "ALTER SYSTEM SET work_mem = '1GB'").is_some());
}

#[test]
fn observe_mode_reports_but_does_not_block() {
    let g = guard("production", Enforcement::Observe);
    let j = g.judge_text("DROP TABLE orders", &who(), &session());
    assert!(j.refusal.is_some());
    assert!(!j.blocks());
}

#[test]
fn unparsable_text_is_refused() {
    let g = guard("staging", Enforcement::Enforce);
    let j = g.judge_text("SELEC 1", &who(), &session());
    assert_eq!(j.refusal.expect("refused").sqlstate, "42601");
}

#[test]
fn prepared_statements_are_judged_by_their_text() {
    let g = guard("production", Enforcement::Enforce);
    let mut s = session();
    // PREPARE of a dangerous body is refused outright.
    assert!(refused(&g, &s, "PREPARE p AS DELETE FROM orders").is_some());
    let j = g.judge_text("PREPARE q AS SELECT * FROM orders", &who(), &s);
    assert!(j.refusal.is_none());
    s.apply(j.analysis.as_ref().unwrap()).unwrap();
    assert_eq!(refused(&g, &s, "EXECUTE q"), None);
    assert!(refused(&g, &s, "EXECUTE never_prepared").is_some());
    let never = s.sql_name("never_prepared").unwrap();
    assert!(g.judge_prepared(&never, &who(), &s).refusal.is_some());
    let q = s.sql_name("q").unwrap();
    assert!(g.judge_prepared(&q, &who(), &s).refusal.is_none());
}

#[test]
fn shadowing_pg_catalog_makes_operators_opaque() {
    let g = guard("production", Enforcement::Enforce);
    let mut s = session();
    let j = g.judge_text("SET search_path = evil, pg_catalog", &who(), &s);
    assert!(j.refusal.is_none());
    s.apply(j.analysis.as_ref().unwrap()).unwrap();
    assert!(refused(&g, &s, "SELECT * FROM orders WHERE id = 1").is_some());
}

// ---- the shape cache, the memo and the session's own schema changes ----

/// Pairs of texts of one shape (they differ only in literals) whose
/// verdicts differ, or must stay the same; judged one after the other by
/// one guard (shared analysis cache, one session's memo), each must get
/// what a fresh guard gives it alone.
#[test]
fn texts_of_one_shape_get_their_own_verdicts() {
    let cases: &[&[&str]] = &[
        &[
            "UPDATE orders SET total = 0 WHERE id = 1 OR 1 = 2",
            "UPDATE orders SET total = 0 WHERE id = 1 OR 1 = 1",
            "UPDATE orders SET total = 0 WHERE id = 2 OR 1 = 3",
        ],
        &[
            "UPDATE orders SET total = 0 WHERE 'a' = 'b'",
            "UPDATE orders SET total = 0 WHERE 'a' = 'a'",
        ],
        &[
            "DELETE FROM orders WHERE note LIKE 'a%'",
            "DELETE FROM orders WHERE note LIKE '%'",
        ],
        &[
            "DELETE FROM orders WHERE 7 IN (1, 2)",
            "DELETE FROM orders WHERE 7 IN (1, 7)",
        ],
        &[
            "SELECT set_config('application_name', 'x', false)",
            "SELECT set_config('myapp.tag', 'x', false)",
            "SELECT set_config('role', 'x', false)",
            "SELECT set_config('search_path', 'x', false)",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
        ],
        &[
            "SET application_name = 'a'",
            "SET myapp.tag = 'a'",
            "SET standard_conforming_strings = 'off'",
        ],
        // Object names in string literals: the verdict does not depend on
        // which relation a regclass literal names, for any of them.
        &[
            "SELECT nextval('orders_id_seq')",
            "SELECT nextval('audit_id_seq')",
        ],
        &[
            "SELECT pg_relation_size('orders')",
            "SELECT pg_relation_size('pg_authid')",
        ],
        &["SELECT 'orders'::regclass", "SELECT 'pg_authid'::regclass"],
        &[
            "SELECT * FROM orders WHERE id = 1",
            "SELECT * FROM orders WHERE id = 123456789",
        ],
    ];
    for environment in ["production", "development"] {
        let g = guard(environment, Enforcement::Enforce);
        let s = session();
        for pair in cases {
            for round in 0..2 {
                for sql in pair.iter() {
                    let alone = refused(&guard(environment, Enforcement::Enforce), &session(), sql);
                    assert_eq!(
                        refused(&g, &s, sql),
                        alone,
                        "{environment}, round {round}: {sql}"
                    );
                }
            }
        }
    }
    // And the ones that must differ do.
    let g = guard("production", Enforcement::Enforce);
    let s = session();
    assert!(refused(&g, &s, "UPDATE orders SET total = 0 WHERE id = 1 OR 1 = 2").is_none());
    assert!(refused(&g, &s, "UPDATE orders SET total = 0 WHERE id = 1 OR 1 = 1").is_some());
    let g = guard("development", Enforcement::Enforce);
    assert!(refused(&g, &s, "SELECT set_config('myapp.tag', 'x', false)").is_none());
    assert!(refused(&g, &s, "SELECT set_config('role', 'x', false)").is_some());
}

/// The shop's catalog, with `order_label` of this `provolatile`.
fn shop_catalog_with(label_volatility: &str) -> portcullis_guard::CatalogSnapshot {
    use portcullis_guard::catalog::Row;
    let row = |cols: &[&str]| -> Row {
        cols.iter()
            .map(|c| (*c != "NULL").then(|| c.to_string()))
            .collect()
    };
    portcullis_guard::CatalogSnapshot::from_rows(&[
        vec![row(&["public"]), row(&["pg_catalog"])],
        vec![row(&["public", "orders", "r"])],
        vec![],
        vec![],
        vec![
            row(&[
                "public",
                "order_label",
                "1",
                "0",
                "false",
                label_volatility,
                "NULL",
            ]),
            row(&["pg_catalog", "lower", "1", "0", "false", "i", "NULL"]),
        ],
        vec![],
        vec![],
    ])
    .expect("catalog")
}

fn shop_catalog() -> portcullis_guard::CatalogSnapshot {
    shop_catalog_with("s")
}

/// A session that may have changed functions judges calls to functions
/// outside pg_catalog as if they could write, until a snapshot that shows
/// its change is installed; other sessions and built-ins are unaffected.
#[test]
fn a_sessions_own_function_changes_count_before_the_catalog_shows_them() {
    let g = guard("production", Enforcement::Enforce);
    g.set_catalog(shop_catalog(), 0);
    let call = "SELECT order_label(id) FROM orders WHERE id = 1";
    // Written with its schema: an unqualified built-in could be shadowed
    // by a function the session created in a schema on its path.
    let builtin = "SELECT pg_catalog.lower(note) FROM orders WHERE id = 1";
    let shadowable = "SELECT lower(note) FROM orders WHERE id = 1";
    let mut s = session();
    let other = session();
    assert_eq!(
        refused(&g, &s, call),
        None,
        "a stable function, per the snapshot"
    );

    // Say the session ran CREATE OR REPLACE FUNCTION order_label ... VOLATILE.
    s.functions_may_change();
    assert!(
        refused(&g, &s, call).is_some(),
        "uncommitted: the snapshot cannot show it"
    );
    assert_eq!(
        refused(&g, &s, builtin),
        None,
        "pg_catalog functions are not in question"
    );
    assert!(
        refused(&g, &s, shadowable).is_some(),
        "an unqualified name may now resolve elsewhere"
    );
    assert_eq!(
        refused(&g, &other, call),
        None,
        "other sessions are not affected"
    );

    assert!(s.unnumbered_changes());
    let n = g.number_schema_change();
    s.changes_numbered(n);
    assert!(
        refused(&g, &s, call).is_some(),
        "committed, but the snapshot predates it"
    );
    g.set_catalog(shop_catalog(), n - 1);
    assert!(
        refused(&g, &s, call).is_some(),
        "a load that began before the commit"
    );
    g.set_catalog(shop_catalog(), g.schema_changes());
    assert_eq!(refused(&g, &s, call), None, "a load that began after it");
}

/// Within one string, a statement that may change functions counts for
/// the statements after it.
#[test]
fn a_function_change_counts_for_the_rest_of_its_string() {
    let g = guard("development", Enforcement::Enforce);
    g.set_catalog(shop_catalog(), 0);
    let s = session();
    let j = g.judge_text("SELECT order_label(1)", &who(), &s);
    assert!(!j.opaque && !j.may_change_functions);
    let j = g.judge_text(
        "CREATE OR REPLACE FUNCTION order_label(int) RETURNS text LANGUAGE sql VOLATILE \
         AS 'DELETE FROM orders RETURNING ''x'''; SELECT order_label(1)",
        &who(),
        &s,
    );
    assert!(j.may_change_functions);
    assert!(
        j.opaque,
        "the call after the CREATE is judged as one that may write"
    );
    let j = g.judge_text("CREATE TABLE t (a int); SELECT order_label(1)", &who(), &s);
    assert!(!j.may_change_functions, "tables do not change functions");
}

/// The memo answers only for the same inputs: after the session's search
/// path or the catalog changes, the statement is judged again.
#[test]
fn remembered_judgements_follow_the_session() {
    let g = guard("production", Enforcement::Enforce);
    g.set_catalog(shop_catalog(), 0);
    let mut s = session();
    let call = "SELECT order_label(id) FROM orders WHERE id = 1";
    for _ in 0..3 {
        assert_eq!(refused(&g, &s, call), None);
    }
    s.functions_may_change();
    assert!(refused(&g, &s, call).is_some());
    let n = g.number_schema_change();
    s.changes_numbered(n);
    g.set_catalog(shop_catalog(), n);
    assert_eq!(refused(&g, &s, call), None);
    // The snapshot now says the function writes.
    g.set_catalog(shop_catalog_with("v"), n);
    assert!(
        refused(&g, &s, call).is_some(),
        "a new snapshot is a new judgement"
    );
}

/// An identity whose rows changed are counted (`[[limit]]
/// max_rows_changed`) runs every data-changing statement, and every query,
/// under a row limit, also where the target has none; observe mode limits
/// nothing.
#[test]
fn a_rows_changed_budget_limits_every_write() {
    let g = guard("development", Enforcement::Enforce);
    let mut counted = who();
    counted.limits.counts_rows = true;
    // A session each: judgements are remembered per session, whose
    // identity never changes.
    let limit = |who: &Who, sql: &str| g.judge_text(sql, who, &session()).row_limit;
    for sql in [
        "DELETE FROM orders WHERE id < 10",
        "UPDATE orders SET total = 0 WHERE id = 1",
        "INSERT INTO orders SELECT * FROM orders",
        "WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING 1) SELECT * FROM d",
        "MERGE INTO orders o USING orders p ON o.id = p.id WHEN MATCHED THEN DELETE",
    ] {
        assert_eq!(limit(&counted, sql), Some(u64::MAX), "{sql}");
        assert_eq!(limit(&who(), sql), None, "{sql}");
    }
    // Under a budget every query is counted (code that looks read-only may
    // not be); without one, plain reads are not.
    assert_eq!(limit(&counted, "SELECT * FROM orders"), Some(u64::MAX));
    assert_eq!(limit(&who(), "SELECT * FROM orders"), None);
    // Transaction control and settings never are.
    for sql in [
        "BEGIN",
        "COMMIT",
        "SET search_path = public",
        "SHOW search_path",
    ] {
        assert_eq!(limit(&counted, sql), None, "{sql}");
    }
    let observing = guard("development", Enforcement::Observe);
    assert_eq!(
        observing
            .judge_text("DELETE FROM orders WHERE id < 10", &counted, &session())
            .row_limit,
        None
    );
}

#[test]
fn schema_changes_in_production_are_held_for_approval_and_pass_once_approved() {
    let g = guard("production", Enforcement::Enforce);
    let s = session();
    let held = g.judge_text("CREATE INDEX ON orders (total)", &who(), &s);
    let approval = held.approval.expect("held for approval");
    assert_eq!(approval.approvers, "dba");
    assert_eq!(approval.policy, "approve-schema-change-in-production");
    assert!(held.refusal.is_some(), "held is not passed");
    let approved = Who {
        approved: true,
        ..who()
    };
    let j = g.judge_text("CREATE INDEX ON orders (total)", &approved, &s);
    assert!(j.refusal.is_none() && j.approval.is_none());
    // Once approved, the unapproved judgement is not remembered for it.
    assert!(g
        .judge_text("CREATE INDEX ON orders (total)", &who(), &s)
        .approval
        .is_some());
}

#[test]
fn a_message_refused_anyway_is_not_held() {
    let g = guard("production", Enforcement::Enforce);
    let s = session();
    for sql in [
        "CREATE INDEX ON orders (total); DROP TABLE orders",
        "DROP TABLE orders; CREATE INDEX ON orders (total)",
        "CREATE INDEX ON orders (total); TRUNCATE orders",
    ] {
        let j = g.judge_text(sql, &who(), &s);
        assert!(j.approval.is_none(), "{sql} was held");
        assert!(j.refusal.is_some(), "{sql} was allowed");
    }
    // Two statements held by the same rule hold the message once.
    let j = g.judge_text(
        "CREATE INDEX ON orders (total); CREATE INDEX ON orders (id)",
        &who(),
        &s,
    );
    assert!(j.approval.is_some());
}
