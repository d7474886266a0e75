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
        },
    )
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
