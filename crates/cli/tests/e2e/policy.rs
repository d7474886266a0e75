//! The default policy bundle end to end: statements and protocol sequences
//! sent through Portcullis to a real database, each checked for its verdict
//! and, when refused, for leaving the database and the session exactly as
//! they were.
//!
//! The corpus (`policy_corpus.rs`) runs per environment on one proxy, one
//! raw-protocol session and one fixture database. Allowed statements run
//! inside BEGIN ... ROLLBACK so the fixture survives them; refused ones run
//! in autocommit, so a statement that slipped through would show in the
//! fingerprint of the database taken directly (not through the proxy)
//! before and after.
//!
//! Cases that fail because of a known Portcullis bug are marked `known_bug`
//! in the corpus: the corpus tests skip them and the `#[ignore]`d
//! `known_bug*` tests run them, failing until the bug is fixed (then drop
//! the mark).

use std::path::PathBuf;
use std::process::Command;

use crate::harness::*;
use crate::protocol::{assert_tags, command_tag, data_row, direct, first_column, show, status};
use crate::raw::{self, fe, tags, Msg, Raw};
use corpus::{Case, Env, Expect, Needs, PathSequence, Step, CORPUS, FIXTURE, PATH_SEQUENCES};

#[path = "policy_corpus.rs"]
mod corpus;

/// Everything one group of cases works on.
struct Fixture {
    proxy: Proxy,
    /// Superuser connection straight to the database.
    direct: tokio_postgres::Client,
    role: String,
    /// A server-side path no refused statement may create.
    marker: PathBuf,
    dblink: bool,
}

/// The database's schema and data, as one comparable text. Covers what a
/// statement in the corpus could change: objects and their definitions,
/// privileges, triggers' enabled state, row contents of every table,
/// sequence positions, the fixture's role and databases, per-role and
/// per-database settings, ALTER SYSTEM's file, prepared transactions and
/// large objects.
const FINGERPRINT: &str = r#"
WITH user_ns AS (
    SELECT oid FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_toast%'
), rels AS (
    SELECT c.oid, c.relkind, c.relpersistence FROM pg_class c
    WHERE c.relnamespace IN (SELECT oid FROM user_ns)
), lines (line) AS (
    SELECT format('schema %s owner=%s acl=%s', nspname, nspowner::regrole, nspacl)
        FROM pg_namespace WHERE oid IN (SELECT oid FROM user_ns)
    UNION ALL SELECT format('relation %s kind=%s owner=%s acl=%s partition=%s bound=%s options=%s',
            c.oid::regclass, c.relkind, c.relowner::regrole, c.relacl, c.relispartition,
            pg_get_expr(c.relpartbound, c.oid), c.reloptions)
        FROM pg_class c WHERE c.oid IN (SELECT oid FROM rels)
    UNION ALL SELECT format('column %s.%s %s notnull=%s default=%s', a.attrelid::regclass, a.attname,
            format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid IN (SELECT oid FROM rels) AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT format('constraint %s %s on=%s %s', connamespace::regnamespace, conname,
            conrelid::regclass, pg_get_constraintdef(oid))
        FROM pg_constraint WHERE connamespace IN (SELECT oid FROM user_ns)
    UNION ALL SELECT format('index %s valid=%s', pg_get_indexdef(indexrelid), indisvalid)
        FROM pg_index WHERE indrelid IN (SELECT oid FROM rels)
    UNION ALL SELECT format('view %s %s', oid::regclass, pg_get_viewdef(oid))
        FROM rels WHERE relkind IN ('v', 'm')
    UNION ALL SELECT format('type %s.%s %s', typnamespace::regnamespace, typname, typtype)
        FROM pg_type WHERE typnamespace IN (SELECT oid FROM user_ns)
    UNION ALL SELECT format('enum %s %s %s', enumtypid::regtype, enumsortorder, enumlabel) FROM pg_enum
    UNION ALL SELECT format('function %s.%s(%s) kind=%s volatility=%s owner=%s acl=%s body=%s',
            pronamespace::regnamespace, proname, pg_get_function_identity_arguments(oid), prokind,
            provolatile, proowner::regrole, proacl, md5(prosrc))
        FROM pg_proc WHERE pronamespace IN (SELECT oid FROM user_ns)
    UNION ALL SELECT format('operator %s.%s(%s, %s) %s', oprnamespace::regnamespace, oprname,
            oprleft::regtype, oprright::regtype, oprcode)
        FROM pg_operator WHERE oprnamespace IN (SELECT oid FROM user_ns)
    UNION ALL SELECT format('trigger %s %s enabled=%s', tgrelid::regclass, tgname, tgenabled)
        FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM rels)
    UNION ALL SELECT format('rule %s %s enabled=%s %s', ev_class::regclass, rulename, ev_enabled,
            md5(pg_get_ruledef(oid)))
        FROM pg_rewrite WHERE ev_class IN (SELECT oid FROM rels)
    UNION ALL SELECT format('extension %s %s', extname, extversion) FROM pg_extension
    UNION ALL SELECT format('foreign data wrapper %s %s', fdwname, fdwoptions) FROM pg_foreign_data_wrapper
    UNION ALL SELECT format('foreign server %s %s', srvname, srvoptions) FROM pg_foreign_server
    UNION ALL SELECT format('user mapping %s %s', umuser, umserver) FROM pg_user_mapping
    UNION ALL SELECT format('comment %s %s %s %s', classoid::regclass, objoid, objsubid, description)
        FROM pg_description WHERE objoid >= 16384
    UNION ALL SELECT format('large object %s', oid) FROM pg_largeobject_metadata
    UNION ALL SELECT format('role %s super=%s login=%s config=%s', rolname, rolsuper, rolcanlogin, rolconfig)
        FROM pg_roles WHERE starts_with(rolname, '{role}')
    UNION ALL SELECT format('setting database=%s role=%s %s', setdatabase, setrole, setconfig)
        FROM pg_db_role_setting
        WHERE setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
          AND (setrole = 0 OR setrole IN (SELECT oid FROM pg_roles WHERE starts_with(rolname, '{role}')))
    UNION ALL SELECT format('database %s connections=%s/%s', datname, datallowconn, datconnlimit)
        FROM pg_database WHERE datname = '{db}' OR starts_with(datname, '{db}_')
    UNION ALL SELECT format('prepared transaction %s', gid) FROM pg_prepared_xacts
        WHERE database = current_database()
    UNION ALL SELECT format('postgresql.auto.conf %s', md5(pg_read_file('postgresql.auto.conf')))
    UNION ALL SELECT format('data %s %s', oid::regclass, query_to_xml(format(
            'SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), '''')) AS h FROM %s t',
            oid::regclass), false, true, ''))
        FROM rels WHERE relkind IN ('r', 'p', 'm') AND relpersistence <> 't'
    UNION ALL SELECT format('sequence %s %s', oid::regclass, query_to_xml(format(
            'SELECT last_value, is_called FROM %s', oid::regclass), false, true, ''))
        FROM rels WHERE relkind = 'S' AND relpersistence <> 't'
)
SELECT string_agg(line, E'\n' ORDER BY line) FROM lines
"#;

/// What a refused statement must not change in the session itself: who it
/// runs as, its search_path, replication role, prepared statements,
/// transaction state. Asked through the proxy; allowed in every
/// environment.
const SESSION: &str = "SELECT current_user, session_user, \
    pg_catalog.current_setting('role'), \
    pg_catalog.current_setting('search_path'), \
    pg_catalog.current_setting('session_replication_role'), \
    pg_catalog.current_setting('statement_timeout'), \
    (SELECT pg_catalog.string_agg(name, ',' ORDER BY name) FROM pg_catalog.pg_prepared_statements)";

fn setup(env: Env) -> Setup {
    Setup {
        environment: env.label(),
        // The corpus is about policies; row limits (on by default in
        // production) have tests of their own (row_limit.rs, soundness.rs).
        target_extra: "row_limit = \"off\"".into(),
        // Nobody approves here: a held statement expires at once, having
        // run nothing (approvals.rs tests the rest of the workflow).
        extra: "[approvals]\ntimeout = \"200ms\"\n".into(),
        ..Setup::default()
    }
}

impl Fixture {
    /// A fresh database with the fixture, and a proxy in front of it.
    async fn start(setup: Setup) -> Fixture {
        let db = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("policy"))
            .await
            .unwrap();
        let role = format!("{db}_role");
        let cluster_sql =
            format!("CREATE ROLE \"{role}\" NOLOGIN;\nCREATE DATABASE \"{db}_decoy\";");
        tokio::task::spawn_blocking(move || cluster().sql("postgres", &cluster_sql).unwrap())
            .await
            .unwrap();
        let (direct, _task) = portcullis_testbed::connect(&cluster().superuser_conn_str(&db), None)
            .await
            .expect("direct connection");
        let dblink: bool = direct
            .query_one(
                "SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'dblink'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if dblink {
            direct
                .batch_execute("CREATE EXTENSION dblink")
                .await
                .unwrap();
        }
        direct
            .batch_execute(&FIXTURE.replace("{role}", &role))
            .await
            .unwrap_or_else(|e| panic!("fixture: {e:?}"));
        let marker = std::env::temp_dir().join(format!("portcullis-policy-{db}.out"));
        // Started after the fixture exists: the target's catalog snapshot is
        // taken before the first session and must know these objects.
        let proxy = Proxy::with_db(setup, db).await;
        Fixture {
            proxy,
            direct,
            role,
            marker,
            dblink,
        }
    }

    fn render(&self, sql: &str) -> String {
        sql.replace("{db}", &self.proxy.db)
            .replace("{role}", &self.role)
            .replace("{marker}", &self.marker.display().to_string())
    }

    async fn fingerprint(&self) -> String {
        let sql = FINGERPRINT
            .replace("{db}", &self.proxy.db)
            .replace("{role}", &self.role);
        self.direct
            .query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("fingerprint: {e:?}"))
            .get(0)
    }

    /// Asserts the database is as `before` showed it.
    async fn assert_unchanged(&self, before: &str, what: &str) {
        let now = self.fingerprint().await;
        assert!(
            now == before,
            "{what}; the database changed:\n{}",
            diff(before, &now)
        );
    }

    /// Runs one case on `raw`; `Err` describes how it failed.
    async fn run(&self, raw: &mut Raw, case: &Case) -> Result<(), String> {
        if !case.before.is_empty() {
            let reply = query(raw, &self.render(case.before)).await;
            if reply.iter().any(|m| m.tag == b'E') {
                return Err(format!("`before` failed: {}", show(&reply)));
            }
        }
        let refused = case.refused();
        let (db_before, session_before) = if refused {
            (self.fingerprint().await, session_state(raw).await)
        } else {
            Default::default()
        };

        let wrap = !refused && case.in_transaction;
        if wrap {
            let reply = query(raw, "BEGIN").await;
            assert_eq!(tags(&reply), "CZ", "BEGIN: {}", show(&reply));
        }
        let reply = query(raw, &self.render(case.sql)).await;
        if wrap {
            query(raw, "ROLLBACK").await;
        }

        let mut problems = Vec::new();
        if let Err(e) = verdict(case.expect, &reply) {
            problems.push(e);
        }
        if refused {
            let db_after = self.fingerprint().await;
            if db_after != db_before {
                problems.push(format!(
                    "the database changed:\n{}",
                    diff(&db_before, &db_after)
                ));
            }
            if reply.last().map(status) == Some('I') {
                let session_after = session_state(raw).await;
                if session_after != session_before {
                    problems.push(format!(
                        "the session changed: {session_before:?} -> {session_after:?}"
                    ));
                }
            }
            if self.marker.exists() {
                problems.push(format!("{} was written", self.marker.display()));
                let _ = std::fs::remove_file(&self.marker);
            }
        }

        if !case.after.is_empty() {
            let reply = query(raw, &self.render(case.after)).await;
            if reply.iter().any(|m| m.tag == b'E') {
                problems.push(format!("`after` failed: {}", show(&reply)));
            }
        }
        // Whatever happened, the next case starts outside a transaction.
        if session_in_transaction(raw).await {
            query(raw, "ROLLBACK").await;
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n    "))
        }
    }
}

/// Sends a simple Query and reads up to ReadyForQuery. COPY FROM STDIN
/// gets no rows.
async fn query(raw: &mut Raw, sql: &str) -> Vec<Msg> {
    raw.send(&fe::query(sql)).await;
    let mut out = Vec::new();
    loop {
        let m = raw
            .recv()
            .await
            .unwrap_or_else(|| panic!("connection closed after {sql:?}: {}", show(&out)));
        if m.tag == b'G' {
            raw.send(&fe::copy_done()).await;
        }
        let done = m.tag == b'Z';
        out.push(m);
        if done {
            return out;
        }
    }
}

async fn session_state(raw: &mut Raw) -> Vec<Option<String>> {
    let reply = query(raw, SESSION).await;
    match reply.iter().find(|m| m.tag == b'D') {
        Some(row) => data_row(row),
        // In a failed transaction the question itself fails; compare that.
        None => vec![Some(show(&reply))],
    }
}

async fn session_in_transaction(raw: &mut Raw) -> bool {
    let reply = query(raw, "SELECT 1").await;
    reply.last().map(status) != Some('I')
}

/// The single ErrorResponse of a refused message: nothing ran, so the
/// reply is exactly ErrorResponse, ReadyForQuery.
fn refusal<'m>(reply: &'m [Msg], code: &str) -> Result<&'m Msg, String> {
    if tags(reply) != "EZ" {
        return Err(format!(
            "expected a refusal ({code}) and nothing else, got {}",
            show(reply)
        ));
    }
    let e = &reply[0];
    if e.code().as_deref() != Some(code) {
        return Err(format!("expected SQLSTATE {code}, got {}", show(reply)));
    }
    Ok(e)
}

fn is_portcullis_refusal(m: &Msg) -> bool {
    let message = m.message().unwrap_or_default();
    message.starts_with("statement denied by policy")
        || message.starts_with("statement requires approval")
        || message.contains("not prepared through Portcullis")
        || m.hint()
            .unwrap_or_default()
            .contains("Portcullis parses every statement")
}

fn verdict(expect: Expect, reply: &[Msg]) -> Result<(), String> {
    let errors: Vec<&Msg> = reply.iter().filter(|m| m.tag == b'E').collect();
    match expect {
        Expect::Ok => {
            if !errors.is_empty() {
                return Err(format!("expected success, got {}", show(reply)));
            }
        }
        Expect::ServerError(code) => match errors.as_slice() {
            [e] if e.code().as_deref() == Some(code) && !is_portcullis_refusal(e) => {}
            _ => {
                return Err(format!(
                    "expected the server's own error {code}, got {}",
                    show(reply)
                ))
            }
        },
        Expect::RefusedBy(words) => {
            let e = refusal(reply, "42501")?;
            let message = e.message().unwrap_or_default();
            if !message.starts_with("statement refused by Portcullis") || !message.contains(words) {
                return Err(format!(
                    "expected Portcullis' refusal ({words}), got {message:?}"
                ));
            }
        }
        Expect::Denied(policy) => {
            let e = refusal(reply, "42501")?;
            let message = e.message().unwrap_or_default();
            let want = format!("statement denied by policy \"{policy}\": ");
            if !message.starts_with(&want) {
                return Err(format!("expected a denial by {policy}, got {message:?}"));
            }
            if e.hint().unwrap_or_default().is_empty() {
                return Err(format!("no hint with {message:?}"));
            }
        }
        Expect::Approval => {
            let held = reply.first().is_some_and(|m| {
                m.tag() == 'N'
                    && m.message()
                        .unwrap_or_default()
                        .starts_with("held for approval: request R-")
            });
            if !held {
                return Err(format!(
                    "expected a notice that it is held, got {}",
                    show(reply)
                ));
            }
            let e = refusal(&reply[1..], "57014")?;
            let message = e.message().unwrap_or_default();
            if !message.contains("was not approved within") {
                return Err(format!("expected the hold to expire, got {message:?}"));
            }
        }
        Expect::Unparsable => {
            let e = refusal(reply, "42601")?;
            if !is_portcullis_refusal(e) {
                return Err(format!(
                    "expected Portcullis' syntax refusal, got {}",
                    show(reply)
                ));
            }
        }
        Expect::NotPrepared => {
            let e = refusal(reply, "42501")?;
            let message = e.message().unwrap_or_default();
            if !message.ends_with("was not prepared through Portcullis") {
                return Err(format!("expected a not-prepared refusal, got {message:?}"));
            }
        }
    }
    Ok(())
}

/// The lines only one side has.
fn diff(before: &str, after: &str) -> String {
    let a: std::collections::BTreeSet<&str> = before.lines().collect();
    let b: std::collections::BTreeSet<&str> = after.lines().collect();
    let mut out = Vec::new();
    for l in a.difference(&b) {
        out.push(format!("      - {l}"));
    }
    for l in b.difference(&a) {
        out.push(format!("      + {l}"));
    }
    out.join("\n")
}

/// Runs every case of `env` (or, with `known_bugs`, only the cases marked
/// as failing because of a Portcullis bug) and reports all failures at once.
async fn run_corpus(env: Env, known_bugs: bool) {
    let fx = Fixture::start(setup(env)).await;
    let mut raw = raw::login(&fx.proxy, ALICE).await;
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in CORPUS
        .iter()
        .filter(|c| c.env == env && c.known_bug.is_some() == known_bugs)
    {
        if case.needs == Needs::Dblink && !fx.dblink {
            eprintln!("skipped, dblink is not installed: {}", case.sql);
            continue;
        }
        ran += 1;
        if let Err(e) = fx.run(&mut raw, case).await {
            // What the failed case left in the session must not spill into
            // the next ones.
            raw = raw::login(&fx.proxy, ALICE).await;
            failures.push(format!(
                "[{}] {:?} (expected {:?}{}):\n    {e}",
                env.label(),
                case.sql,
                case.expect,
                case.known_bug
                    .map(|b| format!("; known bug: {b}"))
                    .unwrap_or_default()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_corpus_covers_every_environment() {
    assert!(CORPUS.len() >= 150, "{} cases", CORPUS.len());
    for env in [
        Env::Production,
        Env::Staging,
        Env::Development,
        Env::Mislabelled,
    ] {
        let n = CORPUS.iter().filter(|c| c.env == env).count();
        assert!(n > 0, "no cases for {env:?}");
    }
    for expect in [
        Expect::Ok,
        Expect::Approval,
        Expect::Unparsable,
        Expect::NotPrepared,
    ] {
        assert!(CORPUS.iter().any(|c| c.expect == expect), "{expect:?}");
    }
}

/// The fingerprint is what proves refused statements changed nothing: it
/// must see every kind of change they could make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fingerprint_sees_every_kind_of_change() {
    let fx = Fixture::start(production()).await;
    let changes = [
        "UPDATE orders SET note = 'changed' WHERE id = 4",
        "INSERT INTO \"CamelOrders\" VALUES (2)",
        "SELECT nextval('invoice_seq')",
        "ALTER TABLE orders DISABLE TRIGGER orders_audit",
        "ALTER TABLE order_items RENAME COLUMN qty TO quantity",
        "ALTER TABLE orders RENAME CONSTRAINT orders_total_positive TO total_ok",
        "ALTER TYPE order_status RENAME VALUE 'paid' TO 'settled'",
        "ALTER TABLE events DETACH PARTITION events_2024",
        "DROP VIEW new_orders",
        "ALTER TABLE orders ALTER COLUMN note TYPE varchar(50)",
        "ALTER FUNCTION truncate_text(text, int) SET SCHEMA archive",
        "DROP INDEX orders_status_idx",
        "CREATE TEMP TABLE scratch (id int)",
        "GRANT SELECT ON customers TO \"{role}\"",
        "COMMENT ON TABLE orders IS 'changed'",
        "SELECT lo_create(0)",
        "CREATE SERVER other_server FOREIGN DATA WRAPPER dummy_fdw",
        "ALTER ROLE \"{role}\" SET work_mem = '1MB'",
        "ALTER DATABASE \"{db}\" SET work_mem = '1MB'",
        "ALTER ROLE \"{role}\" LOGIN",
        "ALTER DATABASE \"{db}_decoy\" CONNECTION LIMIT 3",
        "DROP OWNED BY \"{role}\"",
        "REFRESH MATERIALIZED VIEW customer_counts",
    ];
    let mut last = fx.fingerprint().await;
    for change in changes {
        // A refresh changes the view only if what it reads changed.
        if change.starts_with("REFRESH") {
            fx.direct
                .batch_execute("INSERT INTO customers VALUES (4, 'Di', NULL)")
                .await
                .unwrap();
            last = fx.fingerprint().await;
        }
        fx.direct
            .batch_execute(&fx.render(change))
            .await
            .unwrap_or_else(|e| panic!("{change}: {e:?}"));
        let now = fx.fingerprint().await;
        assert_ne!(now, last, "the fingerprint missed: {change}");
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_in_production() {
    run_corpus(Env::Production, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_in_staging() {
    run_corpus(Env::Staging, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_in_development() {
    run_corpus(Env::Development, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_with_a_mislabelled_environment() {
    run_corpus(Env::Mislabelled, false).await;
}

// ---------------------------------------------------------------------------
// Protocol sequences
// ---------------------------------------------------------------------------

fn production() -> Setup {
    setup(Env::Production)
}

fn extended(sql: &str) -> Vec<u8> {
    fe::concat(&[
        fe::parse("", sql, &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
    ])
}

fn assert_denied(m: &Msg, policy: &str) {
    assert_eq!(
        m.code().as_deref(),
        Some("42501"),
        "{}",
        show(std::slice::from_ref(m))
    );
    let message = m.message().unwrap_or_default();
    assert!(
        message.starts_with(&format!("statement denied by policy \"{policy}\"")),
        "{message}"
    );
}

/// Several refused Queries pipelined in one write, between allowed ones:
/// each refusal is answered in its own place among the answers passed on,
/// however the server's answers are split into reads, and nothing refused
/// runs. (Replies merged into one read with replacements are pinned down
/// by the extended-protocol and row-limit tests, where the server sends a
/// whole batch at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_pipelined_between_allowed_queries_arrive_in_place() {
    let fx = Fixture::start(production()).await;
    let mut raw = raw::login(&fx.proxy, ALICE).await;
    let before = fx.fingerprint().await;
    raw.send(&fe::concat(&[
        fe::query("SELECT 1"),
        fe::query("DROP TABLE orders"),
        fe::query("SELECT 2"),
        fe::query("TRUNCATE orders"),
        fe::query("SELECT 3"),
    ]))
    .await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.extend(raw.until_ready().await);
    }
    assert_tags(&got, "TDCZEZTDCZEZTDCZ");
    assert_denied(&got[4], "deny-drop-in-production");
    assert_denied(&got[10], "deny-truncate-in-production");
    assert_eq!(first_column(&got), ["1", "2", "3"], "{}", show(&got));
    fx.assert_unchanged(&before, "nothing refused ran").await;
}

/// A refused statement in a pipelined batch is answered in its place, and
/// the rest of the batch is discarded up to Sync, exactly as PostgreSQL
/// does after an error; the batch's implicit transaction rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_refusal_discards_the_batch_until_sync() {
    let fx = Fixture::start(production()).await;
    let mut raw = raw::login(&fx.proxy, ALICE).await;
    let before = fx.fingerprint().await;

    let batch = |middle: &str| {
        fe::concat(&[
            extended("INSERT INTO \"CamelOrders\" VALUES (2)"),
            extended(middle),
            extended("SELECT 1"),
            fe::sync(),
        ])
    };
    raw.send(&batch("DROP TABLE orders")).await;
    let got = raw.until_ready().await;
    // The reference: PostgreSQL itself, with a statement that fails to parse.
    let mut reference = direct(&fx.proxy).await;
    reference.send(&batch("SELEC 1")).await;
    let want = reference.until_ready().await;
    assert_eq!(tags(&got), tags(&want), "{} vs {}", show(&got), show(&want));
    assert_tags(&got, "12CEZ");
    assert_denied(&got[3], "deny-drop-in-production");
    assert_eq!(status(&got[4]), 'I');
    fx.assert_unchanged(
        &before,
        "the INSERT before the refused DROP is rolled back with the batch",
    )
    .await;

    // The next batch works.
    raw.send(&fe::concat(&[extended("SELECT 1"), fe::sync()]))
        .await;
    assert_tags(&raw.until_ready().await, "12DCZ");

    // Refused first: a named Parse, its Describe, and what follows are
    // discarded; the name was never prepared, so a later Bind is refused.
    raw.send(&fe::concat(&[
        fe::parse("pol_s", "TRUNCATE orders", &[]),
        fe::describe(b'S', "pol_s"),
        fe::bind("", "pol_s", &[]),
        fe::execute("", 0),
        extended("INSERT INTO \"CamelOrders\" VALUES (4)"),
        fe::sync(),
    ]))
    .await;
    let got = raw.until_ready().await;
    assert_tags(&got, "EZ");
    assert_denied(&got[0], "deny-truncate-in-production");
    raw.send(&fe::concat(&[
        fe::bind("", "pol_s", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let got = raw.until_ready().await;
    assert_tags(&got, "EZ");
    assert!(
        got[0]
            .message()
            .unwrap_or_default()
            .contains("not prepared through Portcullis"),
        "{}",
        show(&got)
    );

    // Two batches in one write: the first refused, the second untouched.
    raw.send(&fe::concat(&[
        extended("DELETE FROM order_items"),
        fe::sync(),
        extended("SELECT count(*) FROM order_items"),
        fe::sync(),
    ]))
    .await;
    let first = raw.until_ready().await;
    assert_tags(&first, "EZ");
    assert_denied(&first[0], "deny-unfiltered-write-in-production");
    let second = raw.until_ready().await;
    assert_tags(&second, "12DCZ");
    assert_eq!(data_row(&second[2])[0].as_deref(), Some("4"));

    // Simple Queries pipelined: the refused one is answered in its place.
    raw.send(&fe::concat(&[
        fe::query("DROP TABLE orders"),
        fe::query("SELECT 1"),
    ]))
    .await;
    let first = raw.until_ready().await;
    assert_tags(&first, "EZ");
    assert_tags(&raw.until_ready().await, "TDCZ");

    fx.assert_unchanged(&before, "after refusals").await;
}

/// SQL PREPARE/EXECUTE and protocol Parse/Bind share one namespace on the
/// server: a statement prepared one way and run the other is judged by its
/// text, with the search_path in force when it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_and_sql_prepared_statements_share_names() {
    let fx = Fixture::start(production()).await;
    let mut raw = raw::login(&fx.proxy, ALICE).await;
    const INT4: u32 = 23;

    raw.send(&fe::concat(&[
        fe::parse(
            "proto_del",
            "DELETE FROM order_items WHERE order_id = $1",
            &[INT4],
        ),
        fe::parse("proto_by_id", "SELECT * FROM orders WHERE id = 1", &[]),
        fe::sync(),
    ]))
    .await;
    assert_tags(&raw.until_ready().await, "11Z");
    let r = query(&mut raw, "BEGIN; EXECUTE proto_del (3); ROLLBACK").await;
    assert_tags(&r, "CCCZ");
    assert_eq!(command_tag(&r[1]), "DELETE 1");

    let before = fx.fingerprint().await;
    query(&mut raw, "SET search_path = evil, pg_catalog, public").await;
    let r = query(&mut raw, "EXECUTE proto_by_id").await;
    assert_tags(&r, "EZ");
    assert_denied(&r[0], "deny-opaque-code-in-production");
    raw.send(&fe::concat(&[
        fe::bind("", "proto_by_id", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let r = raw.until_ready().await;
    assert_tags(&r, "EZ");
    assert_denied(&r[0], "deny-opaque-code-in-production");
    fx.assert_unchanged(&before, "evil's operator must not run")
        .await;
    query(&mut raw, "RESET search_path").await;
    assert_tags(&query(&mut raw, "EXECUTE proto_by_id").await, "TDCZ");

    // Closed through the protocol: gone for SQL too.
    raw.send(&fe::concat(&[fe::close(b'S', "proto_by_id"), fe::sync()]))
        .await;
    assert_tags(&raw.until_ready().await, "3Z");
    let r = query(&mut raw, "EXECUTE proto_by_id").await;
    assert_tags(&r, "EZ");
    assert!(
        r[0].message()
            .unwrap_or_default()
            .ends_with("was not prepared through Portcullis"),
        "{}",
        show(&r)
    );
    // Prepared in SQL, bound through the protocol.
    query(
        &mut raw,
        "PREPARE sql_del AS DELETE FROM order_items WHERE order_id = 2",
    )
    .await;
    raw.send(&fe::concat(&[
        fe::bind("", "sql_del", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    assert_tags(&raw.until_ready().await, "2CZ");
}

/// A refused statement inside a transaction block aborts it, as a failed
/// statement does: COMMIT rolls back what came before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_inside_a_transaction_aborts_it() {
    let fx = Fixture::start(production()).await;
    let mut raw = raw::login(&fx.proxy, ALICE).await;
    let before = fx.fingerprint().await;

    let r = query(&mut raw, "BEGIN").await;
    assert_eq!(status(r.last().unwrap()), 'T');
    let r = query(&mut raw, "INSERT INTO \"CamelOrders\" VALUES (2)").await;
    assert_tags(&r, "CZ");
    let r = query(&mut raw, "DROP TABLE orders").await;
    assert_tags(&r, "EZ");
    assert_denied(&r[0], "deny-drop-in-production");
    assert_eq!(status(&r[1]), 'E');
    // The server itself now refuses everything until the block ends.
    let r = query(&mut raw, "SELECT 1").await;
    assert_tags(&r, "EZ");
    assert_eq!(r[0].code().as_deref(), Some("25P02"));
    let r = query(&mut raw, "COMMIT").await;
    assert_tags(&r, "CZ");
    assert_eq!(command_tag(&r[0]), "ROLLBACK");
    assert_eq!(status(&r[1]), 'I');
    fx.assert_unchanged(&before, "the INSERT is not committed")
        .await;

    // The same through the extended protocol.
    query(&mut raw, "BEGIN").await;
    raw.send(&fe::concat(&[
        extended("INSERT INTO \"CamelOrders\" VALUES (3)"),
        fe::sync(),
    ]))
    .await;
    let r = raw.until_ready().await;
    assert_tags(&r, "12CZ");
    assert_eq!(status(&r[3]), 'T');
    raw.send(&fe::concat(&[
        extended("UPDATE orders SET note = 'everything'"),
        fe::sync(),
    ]))
    .await;
    let r = raw.until_ready().await;
    assert_tags(&r, "EZ");
    assert_eq!(status(&r[1]), 'E');
    let r = query(&mut raw, "COMMIT").await;
    assert_eq!(command_tag(&r[0]), "ROLLBACK");
    fx.assert_unchanged(&before, "after refusals").await;

    // A savepoint recovers from a refusal, as from any error.
    let r = query(
        &mut raw,
        "BEGIN; INSERT INTO delete_log (what) VALUES ('kept 1'); SAVEPOINT s",
    )
    .await;
    assert_eq!(status(r.last().unwrap()), 'T', "{}", show(&r));
    let r = query(&mut raw, "TRUNCATE orders").await;
    assert_tags(&r, "EZ");
    assert_eq!(status(&r[1]), 'E');
    let r = query(&mut raw, "ROLLBACK TO SAVEPOINT s").await;
    assert_eq!(status(r.last().unwrap()), 'T', "{}", show(&r));
    query(&mut raw, "INSERT INTO delete_log (what) VALUES ('kept 2')").await;
    let r = query(&mut raw, "COMMIT").await;
    assert_eq!(command_tag(&r[0]), "COMMIT");
    let log: Vec<String> = fx
        .direct
        .query("SELECT what FROM delete_log ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(log, ["fixture", "kept 1", "kept 2"]);
    let orders: i64 = fx
        .direct
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 4);
}

/// tokio-postgres through the extended protocol: refusals arrive as
/// ordinary errors and the client stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_with_tokio_postgres() {
    let fx = Fixture::start(production()).await;
    let mut client = fx.proxy.client().await;
    let before = fx.fingerprint().await;

    let denied = |e: tokio_postgres::Error, policy: &str| {
        let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!(db.code().code(), "42501", "{db:?}");
        assert!(
            db.message()
                .starts_with(&format!("statement denied by policy \"{policy}\"")),
            "{db:?}"
        );
        assert!(db.hint().is_some(), "{db:?}");
    };
    denied(
        client.prepare("DROP TABLE orders").await.unwrap_err(),
        "deny-drop-in-production",
    );
    denied(
        client
            .execute("UPDATE orders SET note = $1", &[&"x"])
            .await
            .unwrap_err(),
        "deny-unfiltered-write-in-production",
    );
    denied(
        client
            .execute("DELETE FROM order_items WHERE $1::bool", &[&true])
            .await
            .unwrap_err(),
        "deny-unfiltered-write-in-production",
    );
    denied(
        client
            .query(
                "SELECT * FROM orders WHERE id = $1 AND bump_total($1) IS NULL",
                &[&1i32],
            )
            .await
            .unwrap_err(),
        "deny-opaque-code-in-production",
    );
    denied(
        client
            .query("SELECT nextval($1)", &[&"invoice_seq"])
            .await
            .unwrap_err(),
        "deny-opaque-code-in-production",
    );
    denied(
        client
            .query("SELECT pg_read_file($1)", &[&"/etc/hostname"])
            .await
            .unwrap_err(),
        "deny-dangerous-capabilities",
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM orders WHERE id = $1", &[&1i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    fx.assert_unchanged(&before, "after refusals").await;

    // Allowed writes and statement reuse.
    let updated = client
        .execute(
            "UPDATE orders SET note = $1 WHERE id = $2",
            &[&"extended", &1i32],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1);
    let stmt = client
        .prepare("SELECT note FROM orders WHERE id = $1")
        .await
        .unwrap();
    for _ in 0..3 {
        let note: String = client.query_one(&stmt, &[&1i32]).await.unwrap().get(0);
        assert_eq!(note, "extended");
    }

    // A statement prepared under the default search_path, bound after it
    // changed: the server re-parses it with evil's `=`, so it is refused.
    let before = fx.fingerprint().await;
    let by_id = client
        .prepare("SELECT id FROM orders WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(client.query(&by_id, &[&2i32]).await.unwrap().len(), 1);
    client
        .batch_execute("SET search_path = evil, pg_catalog, public")
        .await
        .unwrap();
    denied(
        client.query(&by_id, &[&2i32]).await.unwrap_err(),
        "deny-opaque-code-in-production",
    );
    fx.assert_unchanged(&before, "evil's operator must not run")
        .await;
    client.batch_execute("RESET search_path").await.unwrap();
    assert_eq!(client.query(&by_id, &[&2i32]).await.unwrap().len(), 1);

    // In a transaction: the refusal aborts it and COMMIT rolls back.
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO \"CamelOrders\" VALUES ($1)", &[&5i32])
        .await
        .unwrap();
    denied(
        tx.execute("DELETE FROM order_items", &[])
            .await
            .unwrap_err(),
        "deny-unfiltered-write-in-production",
    );
    let _ = tx.commit().await;
    fx.assert_unchanged(&before, "after refusals").await;
    assert_eq!(
        client
            .query_one("SELECT 1::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

/// Observe mode logs what it would refuse and lets it run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_lets_a_drop_run_in_production() {
    let fx = Fixture::start(Setup {
        target_extra: "enforcement = \"observe\"".into(),
        ..production()
    })
    .await;
    let client = fx.proxy.client().await;
    client
        .batch_execute("DROP TABLE order_items")
        .await
        .unwrap();
    client
        .batch_execute("UPDATE orders SET note = 'observed'")
        .await
        .unwrap();
    let gone: bool = fx
        .direct
        .query_one("SELECT to_regclass('public.order_items') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(gone, "the DROP ran");
    let notes: i64 = fx
        .direct
        .query_one("SELECT count(*) FROM orders WHERE note = 'observed'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(notes, 4);
}

/// psql shows the refusal as an ERROR with the policy's message and hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_the_policy_message_and_hint() {
    let fx = Fixture::start(production()).await;
    let before = fx.fingerprint().await;
    let port = fx.proxy.addr.port();
    let psql = move |command: &'static str| {
        let mut cmd = Command::new(cluster().bin("psql"));
        portcullis_testbed::cluster::clear_libpq_env(&mut cmd);
        cmd.env("PGCONNECT_TIMEOUT", "10")
            .env("PGPASSWORD", ALICE.1)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(format!(
                "host=127.0.0.1 port={port} dbname=app user={} sslmode=disable",
                ALICE.0
            ))
            .args(["-c", command]);
        tokio::task::spawn_blocking(move || cmd.output().expect("run psql"))
    };
    let out = psql("DROP TABLE orders").await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "ERROR:  statement denied by policy \"deny-drop-in-production\": \
             DROP statements are not allowed in production"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "HINT:  drop objects in a migration reviewed outside Portcullis, \
             or on a staging target"
        ),
        "{stderr}"
    );
    fx.assert_unchanged(&before, "after refusals").await;
    let out = psql("SELECT count(*) FROM orders").await.unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4");
}

// ---------------------------------------------------------------------------
// search_path: judged by the path the server really has
// ---------------------------------------------------------------------------

/// After a session's steps, `SELECT * FROM orders WHERE id = 1` must be
/// refused exactly when the server would run it with evil's `=`.
async fn probe_search_path(fx: &Fixture, raw: &mut Raw) -> Result<(), String> {
    let shown = query(raw, "SHOW search_path").await;
    let path = first_column(&shown)
        .pop()
        .ok_or_else(|| format!("SHOW search_path: {}", show(&shown)))?;
    let evil_first = path.trim_start().starts_with("evil");
    let before = fx.fingerprint().await;
    let reply = query(raw, "SELECT * FROM orders WHERE id = 1").await;
    let expect = if evil_first {
        corpus::OPAQUE
    } else {
        Expect::Ok
    };
    let mut problems = Vec::new();
    if let Err(e) = verdict(expect, &reply) {
        problems.push(format!("the server's search_path is {path:?}: {e}"));
    }
    let after = fx.fingerprint().await;
    if after != before {
        problems.push(format!("the database changed:\n{}", diff(&before, &after)));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n    "))
    }
}

async fn run_steps(raw: &mut Raw, steps: &[Step]) {
    for step in steps {
        match step {
            Step::Query(sql) => {
                query(raw, sql).await;
            }
            Step::Batch(statements) => {
                let mut b: Vec<Vec<u8>> = statements.iter().map(|s| extended(s)).collect();
                b.push(fe::sync());
                raw.send(&fe::concat(&b)).await;
                raw.until_ready().await;
            }
        }
    }
}

async fn run_path_sequences(known_bugs: bool) {
    let fx = Fixture::start(production()).await;
    let sequences: Vec<&PathSequence> = PATH_SEQUENCES
        .iter()
        .filter(|s| s.known_bug.is_some() == known_bugs)
        .collect();
    let mut failures = Vec::new();
    for seq in &sequences {
        let mut raw = raw::login(&fx.proxy, ALICE).await;
        run_steps(&mut raw, seq.steps).await;
        if let Err(e) = probe_search_path(&fx, &mut raw).await {
            failures.push(format!(
                "{:?}{}:\n    {e}",
                seq.steps,
                seq.known_bug
                    .map(|b| format!(" (known bug: {b})"))
                    .unwrap_or_default()
            ));
        }
    }
    if !known_bugs {
        // A path given at startup is the session's from the start.
        let mut raw = raw::Raw::login(
            fx.proxy.addr,
            portcullis_wire::ProtocolVersion::V3_0,
            &[
                ("user", ALICE.0),
                ("database", "app"),
                ("search_path", "evil, pg_catalog, public"),
            ],
            ALICE.1,
        )
        .await
        .unwrap_or_else(|e| panic!("login refused: {:?}", e.message()));
        if let Err(e) = probe_search_path(&fx, &mut raw).await {
            failures.push(format!("search_path as a startup parameter:\n    {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} sequences failed:\n{}",
        failures.len(),
        sequences.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_is_judged_as_the_server_has_it() {
    run_path_sequences(false).await;
}

// ---------------------------------------------------------------------------
// Known Portcullis bugs: the failing cases, run on demand
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs the corpus cases marked known_bug (none at present)"]
async fn known_bugs_in_the_corpus() {
    let mut failed = Vec::new();
    for env in [Env::Production, Env::Staging, Env::Development] {
        if !CORPUS.iter().any(|c| c.env == env && c.known_bug.is_some()) {
            continue;
        }
        let run = tokio::spawn(run_corpus(env, true));
        if let Err(e) = run.await {
            failed.push(format!("{env:?}: {e}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
