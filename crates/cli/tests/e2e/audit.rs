//! The audit trail on the data path: what each connection and statement
//! leaves in the store, that no value a client sent reaches it, and that a
//! statement whose record cannot be written does not run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_audit::record::{ConnectionResult, Effect, EndReason, Protocol, Record, RecordKind};
use portcullis_audit::search::{statement_outcome, Filter};
use portcullis_audit::{search, verify, SqliteStore};

use crate::harness::{sqlstate, Proxy, Setup, ALICE, BOB};
use crate::lifecycle::Binary;

const SEEDS: [&str; 4] = [
    "123-45-6789",
    "seed.person@example.com",
    "999-88-7777",
    "hunter2-audit-secret",
];

fn store_path(dir: &Path) -> PathBuf {
    dir.join("portcullis-audit.db")
}

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open_read_only(&store_path(dir)).expect("audit store")
}

fn statements(
    store: &SqliteStore,
    subject: &str,
) -> Vec<(u64, portcullis_audit::record::StatementRecord)> {
    let mut v: Vec<_> = all(
        store,
        Filter {
            kinds: vec![RecordKind::Statement],
            subject: Some(subject.into()),
            ..Filter::default()
        },
    )
    .into_iter()
    .filter_map(|f| match f.record {
        Record::Statement(s) => Some((f.seq, *s)),
        _ => None,
    })
    .collect();
    v.sort_by_key(|(seq, _)| *seq);
    v
}

/// A statement's outcome, folded into its record or a record of its own.
fn outcome(
    store: &SqliteStore,
    seq: u64,
    s: &portcullis_audit::record::StatementRecord,
) -> portcullis_audit::record::StatementOutcome {
    statement_outcome(store, store.log(), seq, s)
        .unwrap()
        .expect("an outcome")
        .1
}

/// Every record `filter` finds, page by page.
fn all(store: &SqliteStore, mut filter: Filter) -> Vec<portcullis_audit::Found> {
    let mut out = Vec::new();
    filter.limit = 1000;
    loop {
        let page = search(store, &filter).unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        filter.before_seq = Some(last.seq);
        out.extend(page);
    }
}

/// Every byte the store keeps, the WAL included.
fn store_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("portcullis-audit.db"))
        {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn connections_statements_and_outcomes_are_recorded_without_values() {
    let proxy = Proxy::with(Setup {
        environment: "production",
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql(
        "CREATE TABLE customers (id int PRIMARY KEY, email text, ssn text); \
         INSERT INTO customers VALUES (1, 'seed.person@example.com', '123-45-6789'); \
         CREATE TABLE tickets (id int, body text); \
         INSERT INTO tickets VALUES (1, 'write to seed.person@example.com'), \
           (2, 'card 4111 1111 1111 1111, or seed.person@example.com'), (3, 'nothing here')",
    );
    let alice = proxy.client().await;
    // Free text nobody classified: scanned, and the hits counted by entity.
    let tickets = alice
        .query("SELECT body FROM tickets ORDER BY id", &[])
        .await
        .unwrap();
    let bodies: Vec<String> = tickets.iter().map(|r| r.get(0)).collect();
    assert!(
        !bodies.iter().any(|b| b.contains("seed.person@example.com")),
        "{bodies:?}"
    );
    // Simple protocol, literals in the text.
    alice
        .simple_query(&format!(
            "SELECT email FROM customers WHERE ssn = '{}' /* {} */",
            SEEDS[0], SEEDS[3]
        ))
        .await
        .unwrap();
    // Extended protocol, values as parameters.
    let rows = alice
        .query("SELECT id FROM customers WHERE email = $1", &[&SEEDS[1]])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let inserted = alice
        .execute(
            "INSERT INTO customers VALUES (2, $1, $2)",
            &[&"two@example.org", &SEEDS[2]],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    // Denied by the production bundle: never runs.
    let e = alice
        .simple_query("DROP TABLE customers")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    // A statement the server rejects.
    let e = alice
        .simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42P01"));
    drop(alice);
    let dir = proxy.shutdown().await;
    let copy = dir.path();
    let store = open(copy);
    let key = store
        .public_key()
        .unwrap()
        .expect("the store names its key");
    let report = verify(&store, Some(&key)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(report.checkpoints >= 1, "a checkpoint at shutdown");
    assert_eq!(report.vouched_through, report.last_seq);

    let stmts = statements(&store, ALICE.0);
    let texts: Vec<&str> = stmts.iter().map(|(_, s)| s.text.as_str()).collect();
    assert!(
        texts.contains(&"SELECT email FROM customers WHERE ssn = $1"),
        "{texts:#?}"
    );
    assert!(texts.contains(&"SELECT id FROM customers WHERE email = $1"));
    assert!(texts.contains(&"INSERT INTO customers VALUES ($3, $1, $2)"));
    for (_, s) in &stmts {
        assert_eq!(s.identity.subject, "alice");
        assert_eq!(s.destination.target, "app");
        assert_eq!(s.destination.environment.as_deref(), Some("production"));
        assert!(s.destination.backend_pid.is_some());
        assert!(!s.decision.bundle_hash.is_empty());
        assert_eq!(s.fingerprint.len(), 16);
    }
    let (select_seq, select) = stmts
        .iter()
        .find(|(_, s)| s.text.as_str().starts_with("SELECT email"))
        .unwrap();
    assert_eq!(select.protocol, Protocol::Simple);
    assert_eq!(select.decision.effect, Effect::Allowed);
    assert!(
        !select.decision.policies.is_empty(),
        "the permits that allowed it"
    );
    assert!(
        select.reads.iter().any(|t| t.object == "public.customers"),
        "{:?}",
        select.reads
    );
    let out = outcome(&store, *select_seq, select);
    assert_eq!(
        (out.command.as_deref(), out.rows),
        (Some("SELECT"), Some(1))
    );
    assert!(out.bytes > 0);
    assert_eq!(
        out.masked_values.get("email"),
        Some(&1),
        "the email column was masked in one row: {:?}",
        out.masked_values
    );
    let (tickets_seq, tickets) = stmts
        .iter()
        .find(|(_, s)| s.text.as_str().starts_with("SELECT body FROM tickets"))
        .unwrap();
    let tickets = outcome(&store, *tickets_seq, tickets);
    assert_eq!(tickets.rows, Some(3));
    assert_eq!(
        (
            tickets.detector_hits.get("email"),
            tickets.detector_hits.get("card")
        ),
        (Some(&2), Some(&1)),
        "{:?}",
        tickets.detector_hits
    );
    assert_eq!(
        tickets.masked_values.get("detected"),
        Some(&2),
        "two rows rewritten"
    );
    // Searching for masked results finds that outcome.
    let masked = search(
        &store,
        &Filter {
            decision: Some(Effect::Masked),
            ..Filter::default()
        },
    )
    .unwrap();
    assert!(
        masked
            .iter()
            .any(|f| matches!(&f.record, Record::Outcome(o) if o.statement_seq == *select_seq)),
        "{masked:?}"
    );

    let (insert_seq, insert) = stmts
        .iter()
        .find(|(_, s)| s.text.as_str().starts_with("INSERT"))
        .unwrap();
    assert_eq!(insert.protocol, Protocol::Extended);
    assert!(insert.writes.iter().any(|t| t.object == "public.customers"));
    let out = outcome(&store, *insert_seq, insert);
    assert_eq!(
        (out.command.as_deref(), out.rows),
        (Some("INSERT"), Some(1))
    );

    let (_, drop) = stmts
        .iter()
        .find(|(_, s)| s.text.as_str().starts_with("DROP"))
        .unwrap();
    assert_eq!(drop.decision.effect, Effect::Denied);
    assert!(!drop.decision.policies.is_empty(), "the deciding policy");

    let (missing_seq, missing) = stmts
        .iter()
        .find(|(_, s)| s.text.as_str().contains("no_such_table"))
        .unwrap();
    let out = outcome(&store, *missing_seq, missing);
    assert_eq!(out.sqlstate.as_ref().map(|s| s.as_str()), Some("42P01"));

    // The session's opening and end.
    let conns = search(
        &store,
        &Filter {
            kinds: vec![RecordKind::Connection],
            subject: Some("alice".into()),
            ..Filter::default()
        },
    )
    .unwrap();
    let results: Vec<_> = conns
        .iter()
        .filter_map(|f| match &f.record {
            Record::Connection(c) => Some(c.result.clone()),
            _ => None,
        })
        .collect();
    // Alice logged in over TLS, her SCRAM exchange bound to the channel.
    for f in &conns {
        let Record::Connection(c) = &f.record else {
            continue;
        };
        assert_eq!(
            c.auth_method.as_deref(),
            Some("SCRAM-SHA-256-PLUS"),
            "{c:?}"
        );
    }
    assert!(results.iter().any(|r| matches!(
        r,
        ConnectionResult::Succeeded {
            backend_pid: Some(_)
        }
    )));
    assert!(results.iter().any(|r| matches!(
        r,
        ConnectionResult::Ended {
            reason: EndReason::ClientTerminated | EndReason::ClientDisconnected,
            ..
        }
    )));

    // No value a client sent, in any record or anywhere in the file.
    let bytes = store_bytes(copy);
    assert!(!bytes.is_empty());
    for seed in SEEDS {
        assert!(!contains(&bytes, seed), "{seed} reached the audit store");
    }
}

#[tokio::test]
async fn a_statement_whose_record_cannot_be_committed_is_refused_and_changes_nothing() {
    let proxy = Proxy::with(Setup {
        environment: "production",
        extra: "[audit]\ncommit_timeout = \"300ms\"\n".into(),
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql("CREATE TABLE t (id int)");
    let alice = proxy.client().await;
    alice
        .simple_query("INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    // Another writer holds the store's write lock: the trail's commits
    // wait behind it.
    let path = store_path(proxy.dir.path());
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();

    // The writer's journal may still take this one record (it is durable
    // there, and stored later); if the writer is already waiting on the
    // store, it is refused.
    let mut expected = "1".to_owned();
    match alice.simple_query("INSERT INTO t VALUES (2)").await {
        Ok(_) => expected.push_str(",2"),
        Err(e) => assert_eq!(sqlstate(&e).as_deref(), Some("53000"), "{e:?}"),
    }
    // Within a linger the writer moves what its journal holds to the
    // store and waits behind the lock: nothing more can be made durable.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = alice
        .simple_query("INSERT INTO t VALUES (2)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("53000"), "{e:?}");
    let e = alice
        .execute("INSERT INTO t VALUES ($1)", &[&3i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("53000"), "{e:?}");
    // A transaction: its statements are refused, and COMMIT cannot save
    // what came before the refusal (the refusal failed the transaction).
    alice.simple_query("BEGIN").await.ok();
    let _ = alice.simple_query("INSERT INTO t VALUES (4)").await;
    let _ = alice.simple_query("COMMIT").await;
    assert_eq!(
        proxy.upstream_sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
        expected
    );

    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    // The session is usable again once the trail has caught up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match alice.simple_query("INSERT INTO t VALUES (5)").await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(sqlstate(&e).as_deref(), Some("53000"), "{e:?}");
                assert!(Instant::now() < deadline, "the trail did not recover");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    expected.push_str(",5");
    assert_eq!(
        proxy.upstream_sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
        expected
    );
    let dir = proxy.shutdown().await;
    let store = open(dir.path());
    let report = verify(&store, store.public_key().unwrap().as_ref()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    // Every row has the record of the statement that wrote it. (Records
    // the writer had queued when their wait timed out are stored too,
    // for statements that did not run.)
    let inserts = statements(&store, ALICE.0)
        .into_iter()
        .filter(|(_, s)| {
            s.text.as_str().starts_with("INSERT INTO t") && s.decision.effect == Effect::Allowed
        })
        .count();
    assert!(
        inserts >= expected.split(',').count(),
        "{inserts} records, rows {expected}"
    );
}

#[tokio::test]
async fn queued_targets_record_without_waiting_and_off_targets_record_nothing() {
    let db = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("e2e"))
        .await
        .unwrap();
    let port = crate::harness::cluster().port();
    let proxy = Proxy::with_db(
        Setup {
            environment: "development",
            extra: format!(
                "[[target]]\nname = \"quiet\"\nenvironment = \"development\"\nhost = \"127.0.0.1\"\n\
                 port = {port}\ndatabase = \"{db}\"\nuser = \"postgres\"\npassword_file = \"pgpass\"\naudit = \"off\"\n"
            ),
            ..Setup::default()
        },
        db,
    )
    .await;
    let bob = proxy
        .connect(&proxy.conn_str(BOB, "sslmode=disable"))
        .await
        .unwrap();
    bob.simple_query("SELECT 'queued-seed-value'")
        .await
        .unwrap();
    let quiet = proxy
        .connect(&proxy.conn_str_for("quiet", BOB, ""))
        .await
        .unwrap();
    quiet.simple_query("SELECT 42 AS unrecorded").await.unwrap();
    drop((bob, quiet));
    let dir = proxy.shutdown().await;
    let store = open(dir.path());
    let stmts = statements(&store, BOB.0);
    assert_eq!(stmts.len(), 1, "{stmts:#?}");
    assert_eq!(stmts[0].1.text.as_str(), "SELECT $1");
    assert_eq!(stmts[0].1.destination.target, "app");
    // Bob is configured as an agent in group "agents": the identity his
    // login proved is the one his records name.
    let agent = |id: &portcullis_audit::record::Identity| {
        id.subject == "bob"
            && id.kind == portcullis_audit::record::IdentityKind::Agent
            && id.groups == ["agents"]
            && id.on_behalf_of.is_none()
    };
    assert!(agent(&stmts[0].1.identity), "{:?}", stmts[0].1.identity);
    let connections: Vec<_> = all(
        &store,
        Filter {
            kinds: vec![RecordKind::Connection],
            subject: Some(BOB.0.into()),
            ..Filter::default()
        },
    );
    assert!(!connections.is_empty());
    for c in &connections {
        let Record::Connection(c) = &c.record else {
            panic!("{c:?}")
        };
        assert!(c.identity.as_ref().is_some_and(agent), "{c:?}");
        // Over plaintext: SCRAM without channel binding.
        assert_eq!(c.auth_method.as_deref(), Some("SCRAM-SHA-256"), "{c:?}");
    }
    assert!(!contains(&store_bytes(dir.path()), "queued-seed-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_target_folds_each_outcome_into_its_statement_record() {
    let proxy = Proxy::with(Setup {
        environment: "development",
        ..Setup::default()
    })
    .await;
    let alice = proxy.client().await;
    let mut ran = 0;
    for i in 0..8 {
        alice
            .simple_query(&format!("SELECT {i} AS n, 'x' AS v"))
            .await
            .unwrap();
        ran += 1;
    }
    let e = alice
        .simple_query("SELECT * FROM no_such_table_here")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42P01"));
    ran += 1;
    drop(alice);
    let dir = proxy.shutdown().await;
    let store = open(dir.path());
    let report = verify(&store, None).unwrap();
    assert!(report.is_clean(), "{report:?}");

    let stmts = statements(&store, ALICE.0);
    assert_eq!(stmts.len(), ran, "{stmts:#?}");
    // Every statement has its outcome, in its own record when the outcome
    // came back while the record was queued (the writer gathers records
    // for 10 ms; a statement here takes about one), else as an outcome
    // record: never both, never neither.
    let separate = all(
        &store,
        Filter {
            kinds: vec![RecordKind::Outcome],
            ..Filter::default()
        },
    );
    let folded = stmts.iter().filter(|(_, s)| s.outcome.is_some()).count();
    assert_eq!(folded + separate.len(), ran, "{separate:#?}");
    assert!(folded >= ran / 2, "{folded} of {ran} folded");
    for (seq, s) in &stmts {
        let o = outcome(&store, *seq, s);
        if s.text.as_str().contains("no_such_table_here") {
            assert_eq!(o.sqlstate.as_ref().map(|s| s.as_str()), Some("42P01"));
        } else {
            assert_eq!((o.command.as_deref(), o.rows), (Some("SELECT"), Some(1)));
        }
    }
    // Search by SQLSTATE finds the statement either way.
    let failed = all(
        &store,
        Filter {
            sqlstate: Some("42P01".into()),
            ..Filter::default()
        },
    );
    assert!(
        matches!(&failed[..], [f] if matches!(&f.record, Record::Statement(s) if s.text.as_str().contains("no_such_table_here"))),
        "{failed:#?}"
    );
}

/// A statement judged again is recorded from a template of its earlier
/// record (`portcullis_audit::template`): each record must still carry its
/// own statement id, and a statement whose judgement changed (the same
/// text under another search_path reads another table) must not be
/// recorded from the old template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_statements_keep_their_own_ids_and_judgements() {
    let proxy = Proxy::with(Setup {
        environment: "development",
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql(
        "CREATE SCHEMA tpl_a; CREATE SCHEMA tpl_b;
         CREATE TABLE tpl_a.t (a int); CREATE TABLE tpl_b.t (b int);
         INSERT INTO tpl_a.t VALUES (1); INSERT INTO tpl_b.t VALUES (2);",
    );
    let alice = proxy.client().await;
    // The same shape by the simple protocol, the same prepared statement
    // by the extended one.
    for i in 0..3 {
        alice
            .simple_query(&format!("SELECT {i} AS n"))
            .await
            .unwrap();
    }
    let prepared = alice.prepare("SELECT $1::int AS n").await.unwrap();
    for i in 0..3i32 {
        alice.query(&prepared, &[&i]).await.unwrap();
    }
    // One text, two judgements.
    for schema in ["tpl_a", "tpl_b", "tpl_a"] {
        alice
            .simple_query(&format!("SET search_path = {schema}"))
            .await
            .unwrap();
        alice.simple_query("SELECT * FROM t").await.unwrap();
    }
    drop(alice);
    let dir = proxy.shutdown().await;
    let store = open(dir.path());
    let report = verify(&store, None).unwrap();
    assert!(report.is_clean(), "{report:?}");

    let stmts = statements(&store, ALICE.0);
    let ids: Vec<u64> = stmts.iter().map(|(_, s)| s.statement_id).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "each record its own id: {ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let with_text = |text: &str| -> Vec<&portcullis_audit::record::StatementRecord> {
        stmts
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.text.as_str() == text)
            .collect()
    };
    let simple = with_text("SELECT $1 AS n");
    assert_eq!(simple.len(), 3, "{stmts:#?}");
    assert!(simple.iter().all(|s| s.protocol == Protocol::Simple));
    let bound = with_text("SELECT $1::int AS n");
    assert_eq!(bound.len(), 3, "{stmts:#?}");
    assert!(bound.iter().all(|s| s.protocol == Protocol::Extended));
    // Apart from the id (and the outcome), the records of one statement
    // are the same.
    for group in [&simple, &bound] {
        let strip = |s: &portcullis_audit::record::StatementRecord| {
            let mut s = s.clone();
            s.statement_id = 0;
            s.outcome = None;
            s
        };
        assert!(group.iter().all(|s| strip(s) == strip(group[0])));
    }
    let reads: Vec<Vec<String>> = with_text("SELECT * FROM t")
        .iter()
        .map(|s| s.reads.iter().map(|t| t.object.clone()).collect())
        .collect();
    assert_eq!(
        reads,
        [
            vec!["tpl_a.t".to_owned()],
            vec!["tpl_b.t".to_owned()],
            vec!["tpl_a.t".to_owned()]
        ]
    );
}

/// Counts the rows the load inserted and the INSERT records the store
/// kept, after the proxy was killed with SIGKILL in the middle of it.
async fn killed_under_load(environment: &'static str) -> (i64, usize, usize) {
    let mut bin = Binary::start(Setup {
        environment,
        extra: "[audit]\nmax_queued_age = \"100ms\"\n".into(),
        ..Setup::default()
    })
    .await;
    crate::harness::cluster()
        .sql(&bin.db, "CREATE TABLE load (id bigint, who int)")
        .unwrap();
    let mut tasks = Vec::new();
    for who in 0..8i32 {
        let client = bin.connect(ALICE, "").await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut n = 0i64;
            loop {
                let r = client
                    .execute("INSERT INTO load VALUES ($1, $2)", &[&n, &who])
                    .await;
                if r.is_err() {
                    return n;
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bin.signal(libc::SIGKILL);
    bin.wait_exit(Duration::from_secs(10))
        .await
        .expect("killed");
    for t in tasks {
        let _ = t.await;
    }
    let rows: i64 = crate::harness::cluster()
        .sql(&bin.db, "SELECT count(*) FROM load")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dir = bin.config_path.parent().unwrap().to_path_buf();
    let store = open(&dir);
    let report = verify(&store, store.public_key().unwrap().as_ref()).unwrap();
    assert!(
        report.is_clean(),
        "after SIGKILL the chain verifies: {report:?}"
    );
    let recorded = statements(&store, ALICE.0)
        .iter()
        .filter(|(_, s)| s.text.as_str().starts_with("INSERT INTO load"))
        .count();
    let outcomes = all(
        &store,
        Filter {
            kinds: vec![RecordKind::Outcome],
            ..Filter::default()
        },
    )
    .len();
    drop(store);
    // The chain continues after a restart.
    drop(bin);
    (rows, recorded, outcomes)
}

#[tokio::test]
async fn strict_loses_no_record_of_a_statement_that_ran_when_killed() {
    let (rows, recorded, outcomes) = killed_under_load("production").await;
    assert!(rows > 100, "the load ran: {rows} rows");
    eprintln!("strict, killed: {rows} rows, {recorded} statement records, {outcomes} outcomes");
    assert!(
        recorded as i64 >= rows,
        "every INSERT that reached the database has its record: {rows} rows, {recorded} records"
    );
}

#[tokio::test]
async fn queued_loses_at_most_the_batch_in_flight_when_killed() {
    let (rows, recorded, outcomes) = killed_under_load("development").await;
    assert!(rows > 100, "the load ran: {rows} rows");
    eprintln!("queued, killed: {rows} rows, {recorded} statement records, {outcomes} outcomes");
    let lost = (rows - recorded as i64).max(0);
    // Records wait at most max_queued_age (100 ms here) plus the write
    // under way: at the load's rate, about 200 ms of statements at most.
    let per_second = rows as f64 / 1.5;
    let bound = (per_second * 0.2).ceil() as i64 + 8;
    assert!(
        lost <= bound,
        "{lost} of {rows} statements lost their records (bound {bound})"
    );
}

fn portcullis(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .expect("run portcullis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_command_line_verifies_searches_and_says_who_read_a_column() {
    let proxy = Proxy::with(Setup {
        environment: "production",
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql(
        "CREATE TABLE customers (id int PRIMARY KEY, email text, ssn text); \
         INSERT INTO customers VALUES (1, 'a@example.com', '123-45-6789')",
    );
    let alice = proxy.client().await;
    alice
        .simple_query("SELECT ssn FROM customers WHERE id = 1")
        .await
        .unwrap();
    alice
        .simple_query("SELECT email FROM customers")
        .await
        .unwrap();
    let _ = alice.simple_query("DROP TABLE customers").await;
    drop(alice);
    let bob = proxy.connect(&proxy.conn_str(BOB, "")).await.unwrap();
    bob.simple_query("SELECT id, ssn FROM customers")
        .await
        .unwrap();
    drop(bob);
    let config = proxy.config_path.clone();
    let dir = proxy.shutdown().await;
    let config = config.to_str().unwrap().to_owned();
    let store = store_path(dir.path());
    let store = store.to_str().unwrap().to_owned();

    let (code, out, err) = portcullis(&["audit", "verify", "--config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("clean"), "{out}");
    assert!(out.contains("BEGIN PUBLIC KEY"), "{out}");

    let (code, out, err) = portcullis(&[
        "audit",
        "who-read",
        "public.customers.ssn",
        "--store",
        &store,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("alice") && out.contains("bob"), "{out}");

    let (code, out, err) = portcullis(&[
        "audit",
        "search",
        "--store",
        &store,
        "--user",
        "alice",
        "--decision",
        "denied",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["record"]["text"], "DROP TABLE customers");

    let (code, out, _) = portcullis(&["audit", "tail", "--store", &store, "-n", "3"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().filter(|l| !l.starts_with("TIME")).count(),
        3,
        "{out}"
    );

    // Tamper with one record: verify names it and fails.
    portcullis_audit::store::sqlite::tamper::rewrite(std::path::Path::new(&store), |rows| {
        let r = rows.iter_mut().find(|r| r.kind == "statement").unwrap();
        let at = r.envelope.windows(5).position(|w| w == b"alice").unwrap();
        r.envelope[at..at + 5].copy_from_slice(b"mallo");
    })
    .unwrap();
    let (code, out, err) = portcullis(&["audit", "verify", "--store", &store]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("edited"), "{out}");
}

#[tokio::test]
async fn a_queued_target_whose_writer_is_behind_waits_then_refuses_instead_of_losing_more() {
    let proxy = Proxy::with(Setup {
        environment: "development",
        extra: "[audit]\ncommit_timeout = \"300ms\"\nmax_queued_age = \"50ms\"\n".into(),
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql("CREATE TABLE t (id int)");
    let alice = proxy.client().await;
    alice.simple_query("SELECT 1").await.unwrap();
    let locker = rusqlite::Connection::open(store_path(proxy.dir.path())).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Queued: runs at once, its record waits behind the lock.
    alice
        .simple_query("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The oldest record has waited past max_queued_age: this statement
    // waits for its own record, which cannot come, and is refused.
    let started = Instant::now();
    let e = alice
        .simple_query("INSERT INTO t VALUES (2)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("53000"), "{e:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it waited first"
    );
    assert_eq!(
        proxy.upstream_sql("SELECT string_agg(id::text, ',') FROM t"),
        "1"
    );
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    let deadline = Instant::now() + Duration::from_secs(20);
    while alice
        .simple_query("INSERT INTO t VALUES (3)")
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the trail did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        proxy.upstream_sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
        "1,3"
    );
}

#[tokio::test]
async fn a_target_that_fails_open_runs_statements_the_trail_cannot_take() {
    let proxy = Proxy::with(Setup {
        environment: "production",
        target_extra: "audit_failure = \"open\"".into(),
        extra: "[audit]\ncommit_timeout = \"300ms\"\n".into(),
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql("CREATE TABLE t (id int)");
    let alice = proxy.client().await;
    alice
        .simple_query("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let locker = rusqlite::Connection::open(store_path(proxy.dir.path())).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // This one's record may still go to the writer's journal; within a
    // linger the writer then waits behind the lock.
    alice
        .simple_query("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Strict, but failing open: it waits for its record, then runs without.
    let started = Instant::now();
    alice
        .simple_query("INSERT INTO t VALUES (3)")
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it waited first"
    );
    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        proxy.upstream_sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
        "1,2,3"
    );
}

/// `[audit] retain`: a proxy opening a store whose oldest records are
/// past the bound rotates them into an archived segment at once, records
/// that it did, and the store still verifies from its anchor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_rotates_old_records_out_and_records_the_rotation() {
    use portcullis_audit::chain::Chain;
    use portcullis_audit::record::{AdminAction, AdminRecord, Identity, IdentityKind};
    use portcullis_audit::store::{BatchStore, IndexFields, StoredItem};
    use portcullis_audit::{SigningKey, Synchronous};

    // A store written two hours ago (records and checkpoints backdated),
    // signed with the key the proxy will be given.
    let old = tempfile::tempdir().unwrap();
    let store_path = old.path().join("audit.db");
    let key_path = old.path().join("audit.key");
    let seed = [5u8; 32];
    std::fs::write(&key_path, seed).unwrap();
    let key = SigningKey::from_seed(&seed).unwrap();
    let two_hours_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
        - 7_200_000_000;
    {
        let mut store = SqliteStore::open(&store_path, Synchronous::Normal).unwrap();
        let mut chain = Chain::resume(store.head().unwrap());
        for i in 1..=30u64 {
            let r = Record::Admin(AdminRecord {
                actor: Identity {
                    kind: IdentityKind::Human,
                    subject: "ops".into(),
                    groups: vec![],
                    on_behalf_of: None,
                },
                action: AdminAction::ConfigChanged,
                object: format!("change-{i}"),
                detail: None,
            });
            let ts = two_hours_ago + i as i64;
            let sealed = chain.append(ts, &portcullis_audit::canonical::encode(&r).unwrap());
            let cp = (i % 10 == 0).then(|| key.checkpoint(chain.head(), ts));
            store
                .commit(
                    &[StoredItem {
                        sealed,
                        index: IndexFields::of(&r),
                    }],
                    cp.as_ref(),
                    chain.head(),
                )
                .unwrap();
        }
    }
    let archive = old.path().join("archive");
    let proxy = Proxy::with(Setup {
        environment: "production",
        extra: format!(
            "[audit]\npath = {:?}\nsigning_key_file = {:?}\nretain = \"1h\"\narchive_dir = {:?}\n",
            store_path.to_str().unwrap(),
            key_path.to_str().unwrap(),
            archive.to_str().unwrap()
        ),
        ..Default::default()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let segment = loop {
        let found = std::fs::read_dir(&archive)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        if let Some(p) = found.filter(|p| p.join("manifest.json").is_file()) {
            break p;
        }
        assert!(Instant::now() < deadline, "no segment was archived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Statements go on being recorded after the rotation.
    let client = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=require"))
        .await
        .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    proxy.stop().await;

    let store = SqliteStore::open_read_only(&store_path).unwrap();
    let report = verify(&store, Some(&key.public_key())).unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(
        report.anchor, 30,
        "cut at the last checkpoint older than an hour"
    );
    let rotated = search(
        &store,
        &Filter {
            kinds: vec![RecordKind::Admin],
            text: Some("audit_rotated".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rotated.len(), 1, "the rotation is in the trail");
    let bundle = portcullis_audit::bundle::read(&segment).unwrap();
    let report = portcullis_audit::bundle::verify(&bundle, Some(&key.public_key())).unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.last_seq, 30);
}
