//! The shared PostgreSQL store against a real PostgreSQL (the test bed's):
//! two nodes writing one store, each its own chain; search across both
//! against a brute-force scan; tampering pinpointed per log; one writer
//! per log; restarts continue the chain.

mod common;

use std::time::Duration;

use portcullis_audit::chain::Entry;
use portcullis_audit::record::{Effect, RecordKind};
use portcullis_audit::search::{outcome_of, subjects, Access};
use portcullis_audit::store::postgres::{open_log, PgTarget, PostgresStore};
use portcullis_audit::store::{prefix, term, IndexFields};
use portcullis_audit::verify::{Finding, LogSource};
use portcullis_audit::*;

fn key() -> SigningKey {
    SigningKey::from_seed(&[9; 32]).unwrap()
}

fn config() -> AuditConfig {
    let mut c = AuditConfig::new("unused-by-the-postgres-store");
    c.checkpoints = CheckpointPolicy {
        every_records: 7,
        every: Duration::from_secs(3600),
    };
    c.signing_key = Some(key());
    c
}

/// A fresh database in the test bed, as a store URL and its password.
fn fresh_store() -> (PgTarget, String) {
    let pg = portcullis_testbed::shared();
    let db = portcullis_testbed::fresh_database("audit_pg");
    let url = format!(
        "postgres://{}@{}:{}/{db}?sslmode=disable",
        pg.superuser(),
        pg.host(),
        pg.port()
    );
    let target = PgTarget::parse(&url, Some(pg.superuser_password())).unwrap();
    (target, db)
}

/// A superuser connection for tampering.
fn admin(db: &str) -> postgres::Client {
    let pg = portcullis_testbed::shared();
    postgres::Client::connect(&pg.superuser_conn_str(db), postgres::NoTls).unwrap()
}

/// Writes `n` statements (each followed by its outcome) as node `node`.
fn write(target: &PgTarget, node: &str, n: u64, who: &[&str]) {
    let log = open_log(target, node, config()).unwrap();
    for i in 0..n {
        let subject = who[(i as usize) % who.len()];
        let (table, effect) = match i % 3 {
            0 => ("public.customers", Effect::Allowed),
            1 => ("public.orders", Effect::Denied),
            _ => ("public.customers", Effect::Masked),
        };
        let mut s = common::statement(i, subject, table, effect);
        if i % 3 == 1 {
            s.reads.clear();
            s.writes = vec![record::Touched {
                object: table.into(),
                columns: vec!["total".into()],
            }];
        }
        let a = if i % 5 == 0 {
            log.submit_durable(&Record::from(s), Duration::from_secs(10))
                .unwrap()
                .seq
        } else {
            log.submit(&Record::from(s)).unwrap().seq
        };
        let state = (i % 4 == 1).then_some("42501");
        log.submit_follow_up(&common::outcome(a, i, state)).unwrap();
    }
    log.close();
}

fn reader(target: &PgTarget) -> PostgresStore {
    PostgresStore::open_reader(target).unwrap()
}

fn verify_all(store: &PostgresStore) -> Vec<(String, Report)> {
    store
        .in_snapshot(|s| {
            s.logs()?
                .into_iter()
                .map(|l| {
                    Ok((
                        l.node,
                        verify(&s.log_source(&l.log), Some(&key().public_key()))?,
                    ))
                })
                .collect()
        })
        .unwrap()
}

/// Every record in the store, as search's reference sees it.
struct Row {
    log: LogId,
    seq: u64,
    ts: i64,
    envelope: Vec<u8>,
    record: Record,
    index: IndexFields,
}

fn all_rows(store: &PostgresStore) -> Vec<Row> {
    let mut rows = Vec::new();
    for l in store.logs().unwrap() {
        store
            .log_source(&l.log)
            .scan(&mut |r| {
                let e = Entry::parse(&r.envelope).unwrap();
                rows.push(Row {
                    log: e.log.clone(),
                    seq: e.seq,
                    ts: e.ts,
                    index: IndexFields::of(&e.record),
                    record: e.record,
                    envelope: r.envelope,
                })
            })
            .unwrap();
    }
    rows
}

fn has(r: &Row, t: &str) -> bool {
    r.index.each_term().any(|x| x == t)
}

/// The filter's meaning, by brute force over every record.
fn brute(rows: &[Row], f: &Filter) -> Vec<(LogId, u64)> {
    let q = f.sqlstate.as_ref().map(|s| term(prefix::SQLSTATE, &[s]));
    let mut out: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            (f.kinds.is_empty() || f.kinds.contains(&r.record.kind()))
                && f.subject
                    .as_ref()
                    .is_none_or(|s| has(r, &term(prefix::SUBJECT, &[s])))
                && f.target
                    .as_ref()
                    .is_none_or(|s| has(r, &term(prefix::TARGET, &[s])))
                && match f.decision {
                    None => true,
                    Some(Effect::Allowed) => {
                        r.record.kind() == RecordKind::Statement && r.index.decision.is_none()
                    }
                    Some(d) => has(r, &term(prefix::DECISION, &[d.as_str()])),
                }
                && match (&f.object, &f.column, f.access) {
                    (None, None, _) => true,
                    (Some(o), None, None) => has(r, &term(prefix::OBJECT, &[o])),
                    (Some(o), None, Some(Access::Write)) => {
                        has(r, &term(prefix::OBJECT_WRITE, &[o]))
                    }
                    (Some(o), Some(c), Some(Access::Read)) => {
                        has(r, &term(prefix::COLUMN_READ, &[o, c]))
                    }
                    _ => unreachable!("not in the grid"),
                }
                && f.text
                    .as_ref()
                    .is_none_or(|t| r.envelope.windows(t.len()).any(|w| w == t.as_bytes()))
                && f.since.is_none_or(|s| r.ts >= s)
                && f.until.is_none_or(|u| r.ts < u)
                && f.log.as_ref().is_none_or(|l| *l == r.log)
                && f.after_seq.is_none_or(|a| r.seq > a)
                && f.before_seq.is_none_or(|b| r.seq < b)
                && q.as_ref().is_none_or(|q| {
                    (r.index.refers_to.is_none() && has(r, q))
                        || rows.iter().any(|o| {
                            o.log == r.log && o.index.refers_to == Some(r.seq) && has(o, q)
                        })
                })
        })
        .collect();
    out.sort_by(|a, b| (b.ts, b.log.as_str(), b.seq).cmp(&(a.ts, a.log.as_str(), a.seq)));
    out.truncate(if f.limit == 0 { 100 } else { f.limit });
    out.into_iter().map(|r| (r.log.clone(), r.seq)).collect()
}

#[test]
fn two_nodes_write_one_store_concurrently_and_both_chains_verify() {
    let (target, _) = fresh_store();
    std::thread::scope(|s| {
        s.spawn(|| write(&target, "node-a", 120, &["alice", "bob"]));
        s.spawn(|| write(&target, "node-b", 90, &["carol", "alice"]));
    });
    let store = reader(&target);
    let logs = store.logs().unwrap();
    assert_eq!(
        logs.iter().map(|l| l.node.as_str()).collect::<Vec<_>>(),
        ["node-a", "node-b"]
    );
    assert_ne!(logs[0].log, logs[1].log, "each node its own log");
    assert!(logs
        .iter()
        .all(|l| l.public_key == Some(key().public_key())));
    let reports = verify_all(&store);
    for (node, report) in &reports {
        assert!(report.is_clean(), "{node}: {:?}", report.findings);
        // Every record is vouched for: the writer signs at close.
        assert_eq!(report.vouched_through, report.last_seq, "{node}");
    }
    assert_eq!(reports[0].1.records, 240);
    assert_eq!(reports[1].1.records, 180);
}

#[test]
fn search_across_nodes_matches_a_brute_force_scan() {
    let (target, _) = fresh_store();
    std::thread::scope(|s| {
        s.spawn(|| write(&target, "node-a", 60, &["alice", "bob"]));
        s.spawn(|| write(&target, "node-b", 45, &["carol", "alice"]));
    });
    let store = reader(&target);
    let rows = all_rows(&store);
    assert_eq!(rows.len(), 210);
    let logs = store.logs().unwrap();
    let mid_ts = {
        let mut ts: Vec<i64> = rows.iter().map(|r| r.ts).collect();
        ts.sort_unstable();
        ts[ts.len() / 2]
    };
    let base = Filter {
        limit: 1000,
        ..Filter::default()
    };
    let filters = vec![
        base.clone(),
        Filter {
            limit: 7,
            ..base.clone()
        },
        Filter {
            subject: Some("alice".into()),
            ..base.clone()
        },
        Filter {
            kinds: vec![RecordKind::Statement],
            ..base.clone()
        },
        Filter {
            kinds: vec![RecordKind::Statement, RecordKind::Outcome],
            limit: 50,
            ..base.clone()
        },
        Filter {
            decision: Some(Effect::Allowed),
            ..base.clone()
        },
        Filter {
            decision: Some(Effect::Denied),
            subject: Some("carol".into()),
            ..base.clone()
        },
        Filter {
            decision: Some(Effect::Masked),
            ..base.clone()
        },
        Filter {
            object: Some("public.customers".into()),
            column: Some("ssn".into()),
            access: Some(Access::Read),
            ..base.clone()
        },
        Filter {
            object: Some("public.orders".into()),
            access: Some(Access::Write),
            ..base.clone()
        },
        Filter {
            object: Some("public.orders".into()),
            ..base.clone()
        },
        Filter {
            sqlstate: Some("42501".into()),
            ..base.clone()
        },
        Filter {
            sqlstate: Some("42501".into()),
            subject: Some("bob".into()),
            ..base.clone()
        },
        Filter {
            text: Some("public.orders".into()),
            ..base.clone()
        },
        Filter {
            since: Some(mid_ts),
            ..base.clone()
        },
        Filter {
            until: Some(mid_ts),
            kinds: vec![RecordKind::Outcome],
            ..base.clone()
        },
        Filter {
            log: Some(logs[1].log.clone()),
            ..base.clone()
        },
        Filter {
            log: Some(logs[0].log.clone()),
            after_seq: Some(30),
            before_seq: Some(60),
            ..base.clone()
        },
        Filter {
            target: Some("nowhere".into()),
            ..base.clone()
        },
    ];
    for f in &filters {
        let got: Vec<(LogId, u64)> = search(&store, f)
            .unwrap()
            .into_iter()
            .map(|x| (x.log, x.seq))
            .collect();
        let want = brute(&rows, f);
        // Only the filter for a target nobody used may find nothing.
        assert_eq!(want.is_empty(), f.target.is_some(), "{f:?}");
        assert_eq!(got, want, "{f:?}");
    }
    // Both nodes' statements are found, in time order across logs.
    let alice = search(
        &store,
        &Filter {
            subject: Some("alice".into()),
            ..base.clone()
        },
    )
    .unwrap();
    assert!(alice.iter().any(|f| f.log == logs[0].log));
    assert!(alice.iter().any(|f| f.log == logs[1].log));
    assert!(alice.windows(2).all(|w| w[0].ts_micros >= w[1].ts_micros));

    // An outcome is found within its own log only.
    let st = alice
        .iter()
        .find(|f| f.log == logs[1].log && matches!(f.record, Record::Statement(_)))
        .unwrap();
    let o = outcome_of(&store, &st.log, st.seq).unwrap().unwrap();
    assert_eq!(o.log, st.log);
    assert!(matches!(o.record, Record::Outcome(ref r) if r.statement_seq == st.seq));

    // Who read customers.ssn, across both nodes.
    let who = subjects(
        &store,
        &Filter {
            object: Some("public.customers".into()),
            column: Some("ssn".into()),
            access: Some(Access::Read),
            ..Filter::default()
        },
    )
    .unwrap();
    let reads = |name: &str| {
        rows.iter()
            .filter(|r| {
                has(r, &term(prefix::SUBJECT, &[name]))
                    && has(r, &term(prefix::COLUMN_READ, &["public.customers", "ssn"]))
                    && r.record.kind() == RecordKind::Statement
            })
            .count() as u64
    };
    for s in &who {
        assert_eq!(s.allowed + s.refused, reads(&s.subject), "{}", s.subject);
    }
    let mut names: Vec<&str> = who.iter().map(|s| s.subject.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bob", "carol"]);
}

#[test]
fn tampering_in_postgres_is_pinpointed_per_log() {
    let (target, db) = fresh_store();
    write(&target, "node-a", 20, &["alice"]);
    write(&target, "node-b", 20, &["bob"]);
    let store = reader(&target);
    let logs = store.logs().unwrap();
    let (a, b) = (
        logs[0].log.as_str().to_owned(),
        logs[1].log.as_str().to_owned(),
    );
    let mut pg = admin(&db);
    // Node a: record 5 edited in place, record 12 deleted.
    pg.execute(
        "UPDATE portcullis_audit.records SET envelope = convert_to(replace(convert_from(envelope, 'UTF8'), 'alice', 'mallory'), 'UTF8') \
         WHERE log_id = $1 AND seq = 5",
        &[&a],
    )
    .unwrap();
    pg.execute(
        "DELETE FROM portcullis_audit.records WHERE log_id = $1 AND seq = 12",
        &[&a],
    )
    .unwrap();
    let reports = verify_all(&store);
    let (node, ra) = &reports[0];
    assert_eq!(node, "node-a");
    assert!(
        ra.findings.contains(&Finding::Edited {
            seq: 5,
            position: 5
        }),
        "{:?}",
        ra.findings
    );
    assert!(
        ra.findings.contains(&Finding::Missing {
            first: 12,
            last: 12
        }),
        "{:?}",
        ra.findings
    );
    assert!(
        reports[1].1.is_clean(),
        "node b untouched: {:?}",
        reports[1].1.findings
    );

    // Node b: its last records cut off, head included: the checkpoint
    // signed at close still vouches for them.
    pg.execute(
        "DELETE FROM portcullis_audit.records WHERE log_id = $1 AND seq > 37",
        &[&b],
    )
    .unwrap();
    let reports = verify_all(&store);
    assert!(
        reports[1].1.findings.iter().any(|f| matches!(
            f,
            Finding::Truncated {
                vouched: 40,
                present: 37,
                ..
            }
        )),
        "{:?}",
        reports[1].1.findings
    );
}

#[test]
fn a_second_writer_for_the_same_node_is_refused() {
    let (target, _) = fresh_store();
    let first = open_log(&target, "node-a", config()).unwrap();
    let err = open_log(&target, "node-a", config()).unwrap_err();
    assert!(
        matches!(err, AuditError::WriterInUse { ref node } if node == "node-a"),
        "{err}"
    );
    assert!(err.to_string().contains("node-a"));
    // Another node is fine meanwhile.
    let other = open_log(&target, "node-b", config()).unwrap();
    drop(other);
    drop(first);
    // The lock goes with the writer's connection.
    open_log(&target, "node-a", config()).unwrap();
}

#[test]
fn a_restarted_node_continues_its_chain() {
    let (target, _) = fresh_store();
    write(&target, "node-a", 10, &["alice"]);
    let store = reader(&target);
    let before = store.logs().unwrap();
    write(&target, "node-a", 10, &["alice"]);
    let after = store.logs().unwrap();
    assert_eq!(before, after, "same log id across restarts");
    let reports = verify_all(&store);
    assert!(reports[0].1.is_clean(), "{:?}", reports[0].1.findings);
    assert_eq!(reports[0].1.records, 40);
    assert_eq!(reports[0].1.last_seq, 40);
}

#[test]
fn store_urls_are_checked_and_passwords_never_shown() {
    for url in [
        "postgres://portcullis:s3cret-pw@db.internal/ctl",
        "postgres://portcullis:s3cret-pw@db.internal/ctl?sslmode=prefer",
        "host=db.internal password=s3cret-pw",
        "postgres://portcullis:s3cret-pw@db.internal:notaport/ctl?sslmode=disable",
    ] {
        let err = PgTarget::parse(url, None).unwrap_err().to_string();
        assert!(!err.contains("s3cret-pw"), "{err}");
    }
    let t = PgTarget::parse(
        "postgres://portcullis:inline@db.internal:5433/ctl?sslmode=disable",
        Some("s3cret-pw"),
    )
    .unwrap();
    assert_eq!(t.shown(), "postgres://portcullis@db.internal:5433/ctl");
    assert!(!format!("{t:?}").contains("s3cret-pw"));
    // A store nobody wrote yet says so.
    let (target, _) = fresh_store();
    let err = PostgresStore::open_reader(&target).unwrap_err().to_string();
    assert!(err.contains("no audit store"), "{err}");
}

/// The writer's backend, found by the advisory lock it holds for its node.
fn writer_backend(admin: &mut postgres::Client) -> i32 {
    let rows = admin
        .query(
            "SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1, "one writer holds a node lock");
    rows[0].get(0)
}

#[test]
fn a_writer_whose_connection_is_cut_reconnects_and_loses_nothing_accepted() {
    let (target, db) = fresh_store();
    let mut admin = admin(&db);
    let log = open_log(&target, "node-a", config()).unwrap();
    let statement =
        |i: u64| Record::from(common::statement(i, "alice", "public.t", Effect::Allowed));
    for i in 0..5 {
        log.submit_durable(&statement(i), Duration::from_secs(10))
            .unwrap();
    }
    let first = writer_backend(&mut admin);
    // The server ends the writer's session, as a restart or a network cut
    // would.
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&first])
        .unwrap()
        .get(0);
    assert!(killed);
    // Records submitted now are accepted or refused, never silently lost:
    // a durable submit returns only once its record is in. The writer
    // notices the cut on its next commit, reconnects, takes its node's
    // lock again and goes on from the head it holds.
    let mut accepted = Vec::new();
    let mut refused = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut i = 5;
    while accepted.len() < 10 && std::time::Instant::now() < deadline {
        match log.submit_durable(&statement(i), Duration::from_secs(10)) {
            Ok(c) => accepted.push(c.seq),
            Err(AuditError::StoreDown) => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
        i += 1;
    }
    assert_eq!(
        accepted.len(),
        10,
        "the writer came back ({refused} refused)"
    );
    assert!(log.is_healthy());
    let second = writer_backend(&mut admin);
    assert_ne!(first, second, "a new connection holds the node's lock");
    log.close();

    let store = reader(&target);
    let reports = verify_all(&store);
    assert_eq!(reports.len(), 1);
    let (node, report) = &reports[0];
    assert_eq!(node, "node-a");
    assert!(report.is_clean(), "{report:?}");
    // Every accepted record is there, and no seq is missing or doubled.
    let log_id = store.logs().unwrap()[0].log.clone();
    let mut seqs = Vec::new();
    store
        .log_source(&log_id)
        .scan(&mut |r| seqs.push(r.position))
        .unwrap();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    for seq in &accepted {
        assert!(seqs.contains(seq), "accepted seq {seq} is stored");
    }
}

/// A store URL over TLS to the shared test cluster, as `host` (connecting
/// to 127.0.0.1 whatever the name).
fn tls_store(host: &str) -> (PgTarget, String) {
    let pg = portcullis_testbed::shared();
    let db = portcullis_testbed::fresh_database("audit_pg");
    let url = format!(
        "postgres://{}@{host}:{}/{db}?sslmode=require&hostaddr=127.0.0.1",
        pg.superuser(),
        pg.port()
    );
    let target = PgTarget::parse(&url, Some(pg.superuser_password())).unwrap();
    assert!(target.uses_tls());
    (target, db)
}

#[test]
fn the_store_over_tls_checks_the_certificate_and_its_name() {
    let pg = portcullis_testbed::shared();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        pg.tls().expect("the test cluster has TLS").ca_cert_pem(),
    )
    .unwrap();
    let stranger = dir.path().join("other-ca.pem");
    let other = portcullis_testbed::TestPki::generate(&["localhost"]).unwrap();
    std::fs::write(&stranger, other.ca_cert_pem()).unwrap();
    let statement =
        |i: u64| Record::from(common::statement(i, "alice", "public.t", Effect::Allowed));

    // The cluster's CA and a name its certificate holds: records go over
    // TLS (the server says so), and read back and verify over TLS too.
    let (target, db) = tls_store("localhost");
    let target = target.with_ca_file(&ca).unwrap();
    let log = open_log(&target, "node-tls", config()).unwrap();
    for i in 0..3 {
        log.submit_durable(&statement(i), Duration::from_secs(10))
            .unwrap();
    }
    let mut admin = admin(&db);
    let writer = writer_backend(&mut admin);
    let ssl: bool = admin
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&writer])
        .unwrap()
        .get(0);
    assert!(ssl, "the writer's session is encrypted");
    log.close();
    let reports = verify_all(&reader(&target));
    assert!(reports[0].1.is_clean(), "{:?}", reports[0].1);
    assert_eq!(reports[0].1.records, 3);

    // Another CA: refused in the handshake, nothing written.
    let (target, _) = tls_store("localhost");
    let err = open_log(
        &target.with_ca_file(&stranger).unwrap(),
        "node-tls",
        config(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The right CA but a name the certificate does not hold: refused too
    // (libpq's sslmode=require would have let both through).
    let (target, _) = tls_store("audit-store.invalid");
    let err = open_log(&target.with_ca_file(&ca).unwrap(), "node-tls", config())
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // A CA file without TLS protects nothing: refused.
    let (plain, _) = fresh_store();
    assert!(plain.with_ca_file(&ca).is_err());
}
