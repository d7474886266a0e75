//! The SQLite store through the door: submit, durable submit, restart,
//! failure behaviour, tampering caught by verify, search, and no secret in
//! the files.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use portcullis_audit::chain::{entry_hash, Head};
use portcullis_audit::record::{Effect, RecordKind};
use portcullis_audit::search::{outcome_of, Access};
use portcullis_audit::store::sqlite::tamper;
use portcullis_audit::store::{BatchStore, IndexFields, StoredItem};
use portcullis_audit::verify::Evidence;
use portcullis_audit::*;

fn key() -> SigningKey {
    SigningKey::from_seed(&[7; 32]).unwrap()
}

fn config(path: &Path) -> AuditConfig {
    let mut c = AuditConfig::new(path);
    c.checkpoints = CheckpointPolicy {
        every_records: 5,
        every: Duration::from_secs(3600),
    };
    c.signing_key = Some(key());
    // No gathering: a record is in the store (not only in the writer's
    // journal) as soon as its commit is reported, so these tests can read
    // what they just wrote. `records_waited_for_are_journaled_then_stored`
    // covers the journal with the default linger.
    c.linger = Duration::ZERO;
    c
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("audit.db")
}

/// Writes `n` statement records, one durable submit each so every batch
/// is one record and checkpoints fall exactly every 5.
fn write(path: &Path, n: u64) {
    let log = AuditLog::open(config(path)).unwrap();
    for i in 0..n {
        let r = Record::from(common::statement(
            i,
            "alice",
            "public.customers",
            Effect::Allowed,
        ));
        log.submit_durable(&r, Duration::from_secs(5)).unwrap();
    }
    log.close();
}

fn check(path: &Path) -> Report {
    let store = SqliteStore::open_read_only(path).unwrap();
    verify(&store, Some(&key().public_key())).unwrap()
}

fn tamper(path: &Path, sql: &str) {
    Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

/// Changes the record stored at `seq` (records are compressed in chunks:
/// out of reach of a plain UPDATE).
fn edit_record(path: &Path, seq: u64, edit: impl FnOnce(&mut tamper::StoredRow)) {
    tamper::rewrite(path, |rows| {
        edit(rows.iter_mut().find(|r| r.seq == seq).unwrap());
    })
    .unwrap();
}

#[test]
fn written_log_verifies_and_continues_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    write(&path, 12);
    let r = check(&path);
    assert!(r.is_clean(), "{:?}", r.findings);
    // 5, 10, and the closing checkpoint at 12.
    assert_eq!((r.last_seq, r.checkpoints, r.vouched_through), (12, 3, 12));

    let log = AuditLog::open(config(&path)).unwrap();
    let a = log.submit(&common::outcome(12, 11, None)).unwrap();
    assert_eq!(a.seq, 13);
    let c = log
        .submit_durable(&common::outcome(12, 11, None), Duration::from_secs(5))
        .unwrap();
    assert_eq!(c.seq, 14);
    drop(log);
    let r = check(&path);
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!((r.last_seq, r.vouched_through), (14, 14));

    let store = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(store.public_key().unwrap(), Some(key().public_key()));
    assert_eq!(store.head().unwrap().size, 14);
}

#[test]
fn concurrent_durable_submits_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let log = Arc::new(AuditLog::open(config(&path)).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        let r = Record::from(common::statement(
                            t * 1000 + i,
                            "bob",
                            "public.orders",
                            Effect::Allowed,
                        ));
                        log.submit_durable(&r, Duration::from_secs(10)).unwrap().seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=1600).collect::<Vec<_>>());
    drop(log);
    let r = check(&path);
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!(r.last_seq, 1600);
}

#[test]
fn receipt_is_a_future() {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(&db(&dir))).unwrap();
    let (accepted, mut receipt) = log
        .submit_with_receipt(&common::outcome(1, 1, None))
        .unwrap();
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let committed = loop {
        match std::pin::Pin::new(&mut receipt).poll(&mut cx) {
            Poll::Ready(r) => break r.unwrap(),
            Poll::Pending => std::thread::park_timeout(Duration::from_secs(1)),
        }
    };
    assert_eq!(committed.seq, accepted.seq);
    use std::future::Future;
}

/// A store that can be held (commit blocks) or broken (commit fails).
struct Controlled {
    inner: SqliteStore,
    gate: Arc<Mutex<()>>,
    broken: Arc<AtomicBool>,
}

impl BatchStore for Controlled {
    fn head(&self) -> Result<Head, AuditError> {
        self.inner.head()
    }
    fn commit(
        &mut self,
        batch: &[StoredItem],
        cp: Option<&Checkpoint>,
        head: &Head,
    ) -> Result<(), AuditError> {
        let _held = self.gate.lock().unwrap();
        if self.broken.load(Ordering::SeqCst) {
            return Err(AuditError::StoreDown);
        }
        self.inner.commit(batch, cp, head)
    }
}

fn controlled(path: &Path, capacity: usize) -> (AuditLog, Arc<Mutex<()>>, Arc<AtomicBool>) {
    let gate = Arc::new(Mutex::new(()));
    let broken = Arc::new(AtomicBool::new(false));
    let store = Controlled {
        inner: SqliteStore::open(path, Synchronous::Normal).unwrap(),
        gate: gate.clone(),
        broken: broken.clone(),
    };
    let mut c = config(path);
    c.queue_capacity = capacity;
    (AuditLog::start(store, c).unwrap(), gate, broken)
}

fn wait_until(cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("condition not reached");
}

#[test]
fn full_queue_and_timeout_are_errors_not_waits() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let (log, gate, _) = controlled(&path, 2);
    let held = gate.lock().unwrap();
    let r = common::outcome(1, 1, None);
    // The writer takes the first and blocks committing it; two fill the queue.
    log.submit(&r).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    log.submit(&r).unwrap();
    log.submit(&r).unwrap();
    assert!(matches!(log.submit(&r), Err(AuditError::QueueFull)));
    assert!(matches!(
        log.submit_durable(&r, Duration::from_millis(20)),
        Err(AuditError::QueueFull)
    ));
    drop(held);
    wait_until(|| log.submit(&r).is_ok());
    {
        let _held = gate.lock().unwrap();
        let (_, receipt) = log.submit_with_receipt(&r).unwrap();
        let t = std::time::Instant::now();
        let waited = receipt.wait(Duration::from_millis(50));
        assert!(matches!(waited, Err(AuditError::Timeout(_))), "{waited:?}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    drop(log);
    let r = check(&path);
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!(r.last_seq, 5);
}

#[test]
fn a_writer_behind_its_age_bound_refuses_what_would_not_be_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let gate = Arc::new(Mutex::new(()));
    let store = Controlled {
        inner: SqliteStore::open(&path, Synchronous::Normal).unwrap(),
        gate: gate.clone(),
        broken: Arc::new(AtomicBool::new(false)),
    };
    let mut c = config(&path);
    c.max_queued_age = Some(Duration::from_millis(50));
    let log = AuditLog::start(store, c).unwrap();
    let r = common::outcome(1, 1, None);
    // Committed at once: nothing waits, so nothing is too old.
    log.submit_durable(&r, Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    log.submit(&r).unwrap();
    let held = gate.lock().unwrap();
    log.submit(&r).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The oldest uncommitted record has waited over 50 ms.
    assert!(matches!(log.submit(&r), Err(AuditError::Behind(_))));
    // A durable submit is bounded by its own wait instead.
    assert!(matches!(log.submit_with_receipt(&r).map(|_| ()), Ok(())));
    drop(held);
    wait_until(|| log.submit(&r).is_ok());
    drop(log);
    let report = check(&path);
    assert!(report.is_clean(), "{:?}", report.findings);
}

#[test]
fn a_store_has_one_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let first = AuditLog::open(config(&path)).unwrap();
    let second = AuditLog::open(config(&path));
    assert!(matches!(second, Err(AuditError::InUse(_))), "{second:?}");
    drop(first);
    // Released with the first log.
    let again = AuditLog::open(config(&path)).unwrap();
    drop(again);

    // A lock held for a moment (a reader moving a dead writer's journal
    // in) is waited for, not refused.
    let lock_path = dir.path().join("audit.db.lock");
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .unwrap();
    held.lock().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    AuditLog::open(config(&path)).unwrap();
    release.join().unwrap();
}

#[test]
fn store_down_refuses_then_recovers_without_losing_accepted_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let (log, _, broken) = controlled(&path, 64);
    let r = common::outcome(1, 1, None);
    log.submit_durable(&r, Duration::from_secs(5)).unwrap();
    broken.store(true, Ordering::SeqCst);
    let accepted = log.submit(&r).unwrap();
    wait_until(|| !log.is_healthy());
    assert!(matches!(log.submit(&r), Err(AuditError::StoreDown)));
    broken.store(false, Ordering::SeqCst);
    wait_until(|| log.is_healthy());
    let c = log.submit_durable(&r, Duration::from_secs(5)).unwrap();
    assert_eq!((accepted.seq, c.seq), (2, 3));
    drop(log);
    let report = check(&path);
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.last_seq, 3);
}

// ---------------------------------------------------------------- tampering

#[test]
fn edited_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    write(&path, 20);
    edit_record(&path, 7, |r| {
        r.envelope = String::from_utf8(r.envelope.clone())
            .unwrap()
            .replace("alice", "mallory")
            .into_bytes();
    });
    assert_eq!(
        check(&path).findings,
        vec![Finding::Edited {
            seq: 7,
            position: 7
        }]
    );
}

#[test]
fn edited_record_with_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    write(&path, 20);
    edit_record(&path, 7, |r| {
        r.envelope = String::from_utf8(r.envelope.clone())
            .unwrap()
            .replace("alice", "mallory")
            .into_bytes();
        r.hash = entry_hash(&r.envelope).0;
    });
    assert_eq!(check(&path).findings, vec![Finding::Rewritten { seq: 7 }]);
}

#[test]
fn deleted_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    write(&path, 20);
    tamper::rewrite(&path, |rows| rows.retain(|r| r.seq != 12)).unwrap();
    assert_eq!(
        check(&path).findings,
        vec![Finding::Missing {
            first: 12,
            last: 12
        }]
    );
}

#[test]
fn reordered_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    write(&path, 20);
    tamper::rewrite(&path, |rows| {
        // Positions 4 and 9 (indexes 3 and 8) swap their records.
        rows.swap(3, 8);
        rows[3].seq = 4;
        rows[8].seq = 9;
    })
    .unwrap();
    assert_eq!(
        check(&path).findings,
        vec![
            Finding::Misplaced {
                first_position: 9,
                last_position: 9,
                first_seq: 4,
                last_seq: 4
            },
            Finding::Misplaced {
                first_position: 4,
                last_position: 4,
                first_seq: 9,
                last_seq: 9
            },
        ]
    );
}

#[test]
fn inserted_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    write(&path, 20);
    let conn = Connection::open(&path).unwrap();
    let log: String = conn
        .query_row(
            "SELECT value FROM audit_meta WHERE key = 'log_id'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let prev = tamper::read(&path).unwrap()[6].hash;
    let forged = portcullis_audit::canonical::entry(
        &portcullis_audit::canonical::EnvelopeFields {
            log: &log,
            prev: &prev,
            seq: 8,
            ts_micros: 1,
            version: 1,
        },
        br#"{"type":"admin"}"#,
    );
    tamper::rewrite(&path, |rows| {
        for r in rows.iter_mut().filter(|r| r.seq >= 8) {
            r.seq += 1;
        }
        rows.insert(
            7,
            tamper::StoredRow {
                seq: 8,
                ts: 1,
                kind: "admin".into(),
                subject: None,
                decision: None,
                refers_to: None,
                terms: String::new(),
                hash: entry_hash(&forged).0,
                envelope: forged.clone(),
            },
        );
    })
    .unwrap();
    assert_eq!(
        check(&path).findings,
        vec![
            Finding::Inserted {
                first_position: 8,
                last_position: 8,
                first_seq: 8,
                last_seq: 8
            },
            Finding::Misplaced {
                first_position: 9,
                last_position: 21,
                first_seq: 8,
                last_seq: 20
            },
        ]
    );
}

#[test]
fn truncated_before_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    write(&path, 20);
    tamper::rewrite(&path, |rows| rows.retain(|r| r.seq <= 17)).unwrap();
    assert_eq!(
        check(&path).findings,
        vec![
            Finding::Truncated {
                vouched: 20,
                present: 17,
                by: Evidence::Checkpoint
            },
            Finding::Truncated {
                vouched: 20,
                present: 17,
                by: Evidence::RecordedHead
            },
        ]
    );
}

#[test]
fn truncated_after_the_last_checkpoint_then_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    // Checkpoints at 5, 10, 15 and the closing one at 18.
    write(&path, 18);
    tamper(&path, "DELETE FROM audit_checkpoints WHERE size = 18");
    tamper::rewrite(&path, |rows| rows.retain(|r| r.seq <= 16)).unwrap();
    assert_eq!(
        check(&path).findings,
        vec![Finding::Truncated {
            vouched: 18,
            present: 16,
            by: Evidence::RecordedHead
        }]
    );
    // A restart continues from the recorded head, so the cut stays visible.
    write(&path, 1);
    assert_eq!(
        check(&path).findings,
        vec![Finding::Missing {
            first: 17,
            last: 18
        }]
    );
}

#[test]
fn bad_checkpoint_signature() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    write(&path, 20);
    tamper(
        &path,
        "UPDATE audit_checkpoints SET size = 11 WHERE size = 10",
    );
    assert_eq!(
        check(&path).findings,
        vec![Finding::BadSignature { size: 11 }]
    );
}

#[test]
fn whole_chain_rewritten_is_caught_by_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    write(&path, 20);
    // Edit record 12 and rebuild every hash and link after it.
    tamper::rewrite(&path, |rows| {
        let mut prev = rows[10].hash;
        for r in rows.iter_mut().filter(|r| r.seq >= 12) {
            let mut v: serde_json::Value = serde_json::from_slice(&r.envelope).unwrap();
            v["prev"] = serde_json::Value::String(portcullis_audit::Hash(prev).to_hex());
            if r.seq == 12 {
                v["record"]["identity"]["subject"] = "mallory".into();
            }
            r.envelope = portcullis_audit::canonical::encode(&v).unwrap();
            r.hash = entry_hash(&r.envelope).0;
            prev = r.hash;
        }
    })
    .unwrap();
    let f = check(&path).findings;
    assert!(
        f.contains(&Finding::CheckpointMismatch {
            size: 15,
            since: 10
        }),
        "{f:?}"
    );
    assert!(
        f.contains(&Finding::CheckpointMismatch {
            size: 20,
            since: 10
        }),
        "{f:?}"
    );
    assert!(f.contains(&Finding::HeadMismatch { size: 20 }), "{f:?}");
}

// ---------------------------------------------------------------- search

#[test]
fn a_folded_statement_is_indexed_as_the_statement_then_its_outcome() {
    for effect in [Effect::Allowed, Effect::Denied, Effect::Masked] {
        for sqlstate in [None, Some("42P01")] {
            let s = common::statement(1, "alice", "public.t", effect);
            let mut o = common::statement_outcome(sqlstate);
            let mut folded = IndexFields::of(&Record::from(s.clone()));
            folded.fold(&o);
            let mut with = s.clone();
            with.outcome = Some(o.clone());
            assert_eq!(IndexFields::of(&Record::from(with)), folded);
            // Nothing masked: an allowed statement stays allowed.
            o.masked_values.clear();
            let mut plain = IndexFields::of(&Record::from(s));
            plain.fold(&o);
            assert_eq!(
                plain.decision,
                (effect != Effect::Allowed).then(|| effect.as_str())
            );
            assert_eq!(plain.terms.contains("\nq:42P01\n"), sqlstate.is_some());
        }
    }
}

#[test]
fn outcomes_fold_into_statement_records_still_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let mut c = config(&path);
    // Records nobody waits for stay queued until an awaited one comes.
    c.linger = Duration::from_secs(3600);
    c.max_batch = 1000;
    let log = AuditLog::open(c).unwrap();
    let statement =
        |i: u64| Record::from(common::statement(i, "alice", "public.t", Effect::Allowed));
    let s1 = log.submit(&statement(1)).unwrap().seq;
    let s2 = log.submit(&statement(2)).unwrap().seq;
    let s3 = log.submit(&statement(3)).unwrap().seq;
    let folded = |seq: u64, i: u64, sqlstate: Option<&str>| {
        let Record::Outcome(r) = common::outcome(seq, i, None) else {
            unreachable!()
        };
        log.complete(
            seq,
            &r.session_id,
            r.statement_id,
            &common::statement_outcome(sqlstate),
        )
        .unwrap()
    };
    assert_eq!(folded(s1, 1, None), Completed::Folded);
    assert_eq!(folded(s2, 2, Some("42P01")), Completed::Folded);
    // Once folded, a second outcome of the same statement (a portal run
    // again) is a record of its own.
    assert!(matches!(folded(s2, 2, None), Completed::Queued(_)));
    // A record someone waits for is committed at once, with the queue.
    let s4 = log
        .submit_durable(&statement(4), Duration::from_secs(5))
        .unwrap()
        .seq;
    // Already written: their outcomes are records of their own.
    assert!(matches!(folded(s3, 3, None), Completed::Queued(_)));
    assert!(matches!(folded(s4, 4, Some("42501")), Completed::Queued(_)));
    log.close();

    let store = SqliteStore::open_read_only(&path).unwrap();
    let report = verify(&store, Some(&key().public_key())).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.last_seq, 7, "4 statements, 3 outcome records");
    let find = |f: Filter| {
        search(&store, &Filter { limit: 100, ..f })
            .unwrap()
            .iter()
            .map(|f| (f.seq, f.record.kind()))
            .collect::<Vec<_>>()
    };
    let stmt = |seq: u64| match search(
        &store,
        &Filter {
            after_seq: Some(seq - 1),
            before_seq: Some(seq + 1),
            ..Default::default()
        },
    )
    .unwrap()
    .pop()
    .map(|f| f.record)
    {
        Some(Record::Statement(s)) => *s,
        other => panic!("{other:?}"),
    };
    // The folded outcome is in the statement's record, and only there.
    let (at, o) = search::statement_outcome(&store, store.log(), s2, &stmt(s2))
        .unwrap()
        .unwrap();
    assert_eq!(
        (at, o.sqlstate.as_ref().map(|s| s.as_str())),
        (None, Some("42P01"))
    );
    let (at, _) = search::statement_outcome(&store, store.log(), s3, &stmt(s3))
        .unwrap()
        .unwrap();
    assert!(at.is_some_and(|a| a > s4), "a record of its own: {at:?}");
    // Search sees the folded outcome: its SQLSTATE, and the values it
    // masked (an allowed statement that masked values is `masked`).
    let by_state = |s: &str| {
        find(Filter {
            sqlstate: Some(s.into()),
            ..Default::default()
        })
    };
    assert_eq!(by_state("42P01"), vec![(s2, RecordKind::Statement)]);
    assert_eq!(by_state("42501"), vec![(s4, RecordKind::Statement)]);
    let masked = find(Filter {
        decision: Some(Effect::Masked),
        kinds: vec![RecordKind::Statement],
        ..Default::default()
    });
    assert_eq!(
        masked,
        vec![(s2, RecordKind::Statement), (s1, RecordKind::Statement)]
    );
}

#[test]
fn search_filters() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let log = AuditLog::open(config(&path)).unwrap();
    let mut statement_seqs = Vec::new();
    for i in 0..60u64 {
        let (who, table, effect) = match i % 3 {
            0 => ("alice", "public.customers", Effect::Allowed),
            1 => ("bob", "public.orders", Effect::Denied),
            _ => ("carol", "public.customers", Effect::Masked),
        };
        let mut s = common::statement(i, who, table, effect);
        if i % 3 == 1 {
            s.reads.clear();
            s.writes = vec![record::Touched {
                object: table.into(),
                columns: vec!["total".into()],
            }];
        }
        let a = log.submit(&Record::from(s)).unwrap();
        statement_seqs.push(a.seq);
        let state = (i % 3 == 1).then_some("42501");
        log.submit(&common::outcome(a.seq, i, state)).unwrap();
    }
    let last = log
        .submit_durable(&common::outcome(1, 0, None), Duration::from_secs(5))
        .unwrap();
    drop(log);
    let store = SqliteStore::open_read_only(&path).unwrap();
    let find = |f: Filter| search(&store, &f).unwrap();

    let by_alice = find(Filter {
        subject: Some("alice".into()),
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(by_alice.len(), 20);
    assert!(
        by_alice.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first"
    );

    // "Who read customers.ssn": alice's and carol's statements.
    let ssn = find(Filter {
        object: Some("public.customers".into()),
        column: Some("ssn".into()),
        access: Some(Access::Read),
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(ssn.len(), 40);
    assert!(ssn
        .iter()
        .all(|f| matches!(&f.record, Record::Statement(s) if s.identity.subject != "bob")));

    let writes = find(Filter {
        object: Some("public.orders".into()),
        access: Some(Access::Write),
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(writes.len(), 20);
    let none = find(Filter {
        object: Some("public.orders".into()),
        access: Some(Access::Read),
        ..Default::default()
    });
    assert!(none.is_empty());

    let denied = find(Filter {
        decision: Some(Effect::Denied),
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(denied.len(), 20);
    let failed = find(Filter {
        sqlstate: Some("42501".into()),
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(
        failed.iter().map(|f| f.seq).collect::<Vec<_>>(),
        denied.iter().map(|f| f.seq).collect::<Vec<_>>()
    );

    let fp = find(Filter {
        fingerprint: Some(format!("{:016x}", 5)),
        ..Default::default()
    });
    assert_eq!(fp.len(), 1);
    let masked_text = find(Filter {
        text: Some("national_id".into()),
        kinds: vec![RecordKind::Statement],
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(masked_text.len(), 20);
    let outcomes = find(Filter {
        kinds: vec![RecordKind::Outcome],
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(outcomes.len(), 61);
    let target = find(Filter {
        target: Some("prod".into()),
        environment: Some("production".into()),
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(target.len(), 60);

    // Paging.
    let page1 = find(Filter {
        subject: Some("bob".into()),
        limit: 5,
        ..Default::default()
    });
    let page2 = find(Filter {
        subject: Some("bob".into()),
        limit: 5,
        before_seq: Some(page1[4].seq),
        ..Default::default()
    });
    assert_eq!(page2.len(), 5);
    assert!(page2[0].seq < page1[4].seq);

    // Time range: everything up to and including record 10's time.
    let all = find(Filter {
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(all.len() as u64, last.seq);
    let t10 = all.iter().find(|f| f.seq == 10).unwrap().ts_micros;
    let early = find(Filter {
        until: Some(t10 + 1),
        limit: 1000,
        ..Default::default()
    });
    assert!(early.iter().all(|f| f.ts_micros <= t10));
    assert!(early.iter().any(|f| f.seq == 10));
    let late = find(Filter {
        since: Some(t10),
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(
        late.len() + early.len() - early.iter().filter(|f| f.ts_micros == t10).count(),
        all.len()
    );

    // Following: what came after a seq.
    let after = find(Filter {
        subject: Some("bob".into()),
        after_seq: Some(page1[1].seq),
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(
        after.iter().map(|f| f.seq).collect::<Vec<_>>(),
        vec![page1[0].seq]
    );

    // "Who read customers.ssn", as one aggregate: alice's statements were
    // allowed, carol's masked; bob never read it.
    let who = search::subjects(
        &store,
        &Filter {
            object: Some("public.customers".into()),
            column: Some("ssn".into()),
            access: Some(Access::Read),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        who.iter()
            .map(|w| (w.subject.as_str(), w.allowed, w.refused))
            .collect::<Vec<_>>(),
        vec![("carol", 20, 0), ("alice", 20, 0)]
    );
    let carol_last = ssn
        .iter()
        .find(|f| matches!(&f.record, Record::Statement(s) if s.identity.subject == "carol"))
        .unwrap();
    assert_eq!(
        (who[0].last_seq, who[0].last_ts_micros),
        (carol_last.seq, carol_last.ts_micros)
    );
    let bob = search::subjects(
        &store,
        &Filter {
            object: Some("public.orders".into()),
            since: Some(t10),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].subject, "bob");
    assert_eq!(bob[0].allowed, 0);
    assert!(bob[0].refused > 0 && bob[0].refused < 20);

    let o = outcome_of(&store, store.log(), statement_seqs[1])
        .unwrap()
        .unwrap();
    assert!(
        matches!(o.record, Record::Outcome(ref x) if x.outcome.sqlstate.as_ref().map(|s| s.as_str()) == Some("42501"))
    );
}

// ---------------------------------------------------------------- data minimisation

#[test]
fn seeded_secret_reaches_no_file() {
    const SECRET: &str = "4111-SEEDED-SECRET-9931";
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let hasher = params::ParamHasher::new(b"param-key-0123456789").unwrap();
    let log = AuditLog::open(config(&path)).unwrap();
    let mut s = common::statement(1, "alice", "public.cards", Effect::Allowed);
    s.params = hasher.hash_all([Some(SECRET.as_bytes()), None]);
    let seq = log
        .submit_durable(&Record::from(s), Duration::from_secs(5))
        .unwrap()
        .seq;
    // Durable in the writer's journal; in the store once the writer's next
    // commit (within its linger) or its close has run.
    drop(log);
    // The auditor with the key can still test a value against the record.
    let store = SqliteStore::open_read_only(&path).unwrap();
    let found = search(
        &store,
        &Filter {
            subject: Some("alice".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let Record::Statement(st) = &found[0].record else {
        panic!()
    };
    let record::BindParams::KeyedHash { values, .. } = &st.params else {
        panic!()
    };
    assert_eq!(values[0].as_ref(), Some(&hasher.digest(SECRET.as_bytes())));
    assert_eq!(found[0].seq, seq);
    drop(store);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    }
}

/// Search across closed blocks (postings) and the open block (none yet),
/// checked against a plain scan of every record; a writer that reopens
/// the store carries on the open block.
#[test]
fn search_spans_closed_and_open_blocks() {
    use portcullis_audit::chain::Chain;
    use portcullis_audit::store::sqlite::BLOCK_RECORDS;
    use portcullis_audit::store::IndexFields;

    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let total = 2 * BLOCK_RECORDS + 500;
    let mut expected: Vec<(u64, Record)> = Vec::new();
    let write = |from: u64, to: u64, expected: &mut Vec<(u64, Record)>| {
        let mut store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        let mut chain = Chain::resume(store.head().unwrap());
        let mut batch = Vec::new();
        let mut i = from;
        while i < to {
            // A statement, and the outcome of the statement three records
            // back: outcomes land in later batches and blocks.
            let r = if i.is_multiple_of(2) {
                Record::from(common::statement(
                    i,
                    &format!("u{}", i % 7),
                    &format!("public.t{}", i % 5),
                    if i.is_multiple_of(11) {
                        Effect::Denied
                    } else {
                        Effect::Allowed
                    },
                ))
            } else {
                // The statement at i - 3 has seq i - 2.
                let statement_seq = if i >= 3 { i - 2 } else { 1 };
                common::outcome(statement_seq, i, (i.is_multiple_of(13)).then_some("42501"))
            };
            let bytes = portcullis_audit::canonical::encode(&r).unwrap();
            let sealed = chain.append(i as i64 * 10, &bytes);
            expected.push((sealed.seq, r.clone()));
            batch.push(StoredItem {
                sealed,
                index: IndexFields::of(&r),
            });
            if batch.len() == 100 {
                store.commit(&batch, None, chain.head()).unwrap();
                batch.clear();
            }
            i += 1;
        }
        store.commit(&batch, None, chain.head()).unwrap();
    };
    write(0, total / 2, &mut expected);
    // Reopened: the open block is rebuilt from the rows without postings.
    write(total / 2, total, &mut expected);

    let stmt = |r: &Record| match r {
        Record::Statement(s) => Some(s.clone()),
        _ => None,
    };
    let store = SqliteStore::open_read_only(&path).unwrap();
    let blocks: i64 = store_conn(&path)
        .query_row("SELECT count(*) FROM audit_blocks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(blocks, 2, "two closed blocks, the rest open");

    // The statements whose outcome carried 42501 (by statement id).
    let seq_to_id: std::collections::HashMap<u64, u64> = expected
        .iter()
        .filter_map(|(seq, r)| stmt(r).map(|s| (*seq, s.statement_id)))
        .collect();
    let refused: std::collections::HashSet<u64> = expected
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Outcome(o) if o.outcome.sqlstate.is_some() => {
                seq_to_id.get(&o.statement_seq).copied()
            }
            _ => None,
        })
        .collect();
    let check = |filter: Filter, want: &dyn Fn(&Record) -> bool| {
        let got: Vec<u64> = search(
            &store,
            &Filter {
                limit: usize::MAX >> 1,
                ..filter.clone()
            },
        )
        .unwrap()
        .iter()
        .map(|f| f.seq)
        .collect();
        let mut brute: Vec<u64> = expected
            .iter()
            .filter(|(_, r)| want(r))
            .map(|(s, _)| *s)
            .collect();
        brute.reverse();
        assert_eq!(got, brute, "{filter:?}");
        assert!(!got.is_empty(), "{filter:?} found nothing");
        // A limit takes the newest matches.
        let newest: Vec<u64> = search(
            &store,
            &Filter {
                limit: 7,
                ..filter.clone()
            },
        )
        .unwrap()
        .iter()
        .map(|f| f.seq)
        .collect();
        assert_eq!(newest, brute[..brute.len().min(7)], "{filter:?} limit 7");
    };
    check(
        Filter {
            subject: Some("u3".into()),
            ..Default::default()
        },
        &|r| stmt(r).is_some_and(|s| s.identity.subject == "u3"),
    );
    check(
        Filter {
            subject: Some("u3".into()),
            object: Some("public.t2".into()),
            column: Some("ssn".into()),
            access: Some(Access::Read),
            ..Default::default()
        },
        &|r| {
            stmt(r).is_some_and(|s| s.identity.subject == "u3" && s.reads[0].object == "public.t2")
        },
    );
    check(
        Filter {
            decision: Some(Effect::Denied),
            ..Default::default()
        },
        &|r| stmt(r).is_some_and(|s| s.decision.effect == Effect::Denied),
    );
    check(
        Filter {
            decision: Some(Effect::Allowed),
            kinds: vec![RecordKind::Statement],
            ..Default::default()
        },
        &|r| stmt(r).is_some_and(|s| s.decision.effect == Effect::Allowed),
    );
    check(
        Filter {
            sqlstate: Some("42501".into()),
            ..Default::default()
        },
        &|r| stmt(r).is_some_and(|s| refused.contains(&s.statement_id)),
    );
    // Time bounds across a block boundary.
    let mid = BLOCK_RECORDS as i64 * 10;
    check(
        Filter {
            kinds: vec![RecordKind::Outcome],
            since: Some(mid - 500),
            until: Some(mid + 500),
            ..Default::default()
        },
        &|r| {
            matches!(r, Record::Outcome(o) if {
                let ts = o.statement_id as i64 * 10;
                ts >= mid - 500 && ts < mid + 500
            })
        },
    );
    // An outcome written in the block after its statement's.
    let first_block_end: i64 = store_conn(&path)
        .query_row("SELECT min(last_seq) FROM audit_blocks", [], |r| r.get(0))
        .unwrap();
    let first_block_end = first_block_end as u64;
    let statement_seq = first_block_end - (1 - first_block_end % 2);
    assert!(statement_seq + 3 > first_block_end);
    let o = outcome_of(&store, store.log(), statement_seq)
        .unwrap()
        .expect("outcome found");
    assert!(o.seq > statement_seq);
    assert!(matches!(&o.record, Record::Outcome(x) if x.statement_seq == statement_seq));
    // And one in the open block.
    let last_statement = expected
        .iter()
        .rev()
        .find(|(s, r)| stmt(r).is_some() && *s < total - 4)
        .unwrap()
        .0;
    let o = outcome_of(&store, store.log(), last_statement)
        .unwrap()
        .expect("outcome in the open block");
    assert!(matches!(&o.record, Record::Outcome(x) if x.statement_seq == last_statement));
}

fn store_conn(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

#[test]
fn a_new_store_gets_large_pages_and_an_old_one_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let page_size = |p: &Path| -> i64 {
        Connection::open(p)
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    };
    let fresh = db(&dir);
    write(&fresh, 10);
    assert_eq!(
        page_size(&fresh),
        portcullis_audit::store::sqlite::PAGE_SIZE
    );
    assert!(check(&fresh).is_clean());

    // A store made with SQLite's default pages (as before this setting)
    // keeps them: WAL mode fixes the page size, and the writer opens it,
    // extends its chain and verifies as before.
    let old = dir.path().join("old.db");
    {
        let c = Connection::open(&old).unwrap();
        c.pragma_update(None, "page_size", 4096).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
    }
    write(&old, 10);
    write(&old, 10);
    assert_eq!(page_size(&old), 4096);
    let report = check(&old);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.records, 20);
}

/// A record someone waits for is durable once it is in the writer's
/// journal; the store gets it with a later commit, gathered with others.
#[test]
fn records_waited_for_are_journaled_then_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let journal = portcullis_audit::journal::path_for(&path);
    let mut c = config(&path);
    // Long enough that nothing but the close stores the records.
    c.linger = Duration::from_secs(30);
    let log = AuditLog::open(c).unwrap();
    let started = std::time::Instant::now();
    for i in 0..3 {
        let r = Record::from(common::statement(i, "alice", "public.t", Effect::Allowed));
        log.submit_durable(&r, Duration::from_secs(5)).unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no wait for the linger"
    );
    assert!(portcullis_audit::journal::has_entries(&journal));
    {
        // The live writer holds the store: a reader sees only what is
        // stored, and does not touch the journal.
        let store = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(store.head().unwrap().size, 0);
    }
    log.close();
    assert!(!portcullis_audit::journal::has_entries(&journal));
    let r = check(&path);
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.last_seq, 3);
}

/// What a killed writer left in its journal is moved into the store by
/// the next open: the records that continue the chain, not a torn last
/// entry, not one already stored, nothing after a break in the chain.
#[test]
fn a_journal_left_by_a_killed_writer_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let journal = portcullis_audit::journal::path_for(&path);
    write(&path, 3);
    let (head, stored_last) = {
        let store = SqliteStore::open_read_only(&path).unwrap();
        let mut last = Vec::new();
        portcullis_audit::verify::LogSource::scan(&store, &mut |r| last = r.envelope).unwrap();
        (store.head().unwrap(), last)
    };
    let mut chain = portcullis_audit::chain::Chain::resume(head);
    let next: Vec<_> = (3..6)
        .map(|i| {
            let r = Record::from(common::statement(i, "alice", "public.t", Effect::Allowed));
            chain.append(
                1_700_000_000_000_000 + i as i64,
                &portcullis_audit::canonical::encode(&r).unwrap(),
            )
        })
        .collect();
    let frame = |env: &[u8]| {
        let mut b = (env.len() as u32).to_le_bytes().to_vec();
        b.extend_from_slice(env);
        b
    };
    let mut bytes = frame(&stored_last);
    for s in &next {
        bytes.extend(frame(&s.envelope));
    }
    // A torn entry: its length says more than was written.
    let torn = frame(&next[0].envelope);
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&journal, &bytes).unwrap();

    let store = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(store.head().unwrap().size, 6);
    assert!(!portcullis_audit::journal::has_entries(&journal));
    let r = verify(&store, Some(&key().public_key())).unwrap();
    assert!(r.is_clean(), "{r:?}");
    let found = search(
        &store,
        &Filter {
            subject: Some("alice".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(found.len(), 6, "recovered records are searchable");
    drop(store);

    // An entry that does not chain from the head (here: one from another
    // chain position) stops the walk; the store is unchanged.
    let mut other =
        portcullis_audit::chain::Chain::resume(Head::empty(LogId::new("elsewhere".to_owned())));
    let stray = other.append(1, b"{}");
    std::fs::write(&journal, frame(&stray.envelope)).unwrap();
    let store = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(store.head().unwrap().size, 6);
    assert!(check(&path).is_clean());

    // The writer continues the chain after a recovery.
    drop(store);
    write(&path, 2);
    let r = check(&path);
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.last_seq, 8);
}

/// A store written before chunks (layout 2: a row per record) is carried
/// on: its rows stay, new records go into chunks after them, and the
/// whole verifies and searches as one log.
#[test]
fn a_store_of_per_record_rows_is_carried_on_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    write(&path, 12);
    let old = tamper::read(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute("DELETE FROM audit_chunks", []).unwrap();
    for r in &old {
        conn.execute(
            "INSERT INTO audit_records (seq, ts, kind, subject, decision, refers_to, terms, hash, envelope) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                r.seq as i64,
                r.ts,
                r.kind,
                r.subject,
                r.decision,
                r.refers_to.map(|v| v as i64),
                r.terms,
                &r.hash[..],
                r.envelope
            ],
        )
        .unwrap();
    }
    conn.execute("UPDATE audit_meta SET value = '2' WHERE key = 'layout'", [])
        .unwrap();
    let r = check(&path);
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!(r.last_seq, 12);

    write(&path, 5);
    let r = check(&path);
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!((r.last_seq, r.vouched_through), (17, 17));
    let (layout, rows, chunks): (String, i64, i64) = conn
        .query_row(
            "SELECT (SELECT value FROM audit_meta WHERE key = 'layout'), \
             (SELECT count(*) FROM audit_records), (SELECT count(*) FROM audit_chunks)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((layout.as_str(), rows), ("3", 12));
    assert!(chunks > 0);
    let store = SqliteStore::open_read_only(&path).unwrap();
    let found = search(
        &store,
        &Filter {
            subject: Some("alice".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let seqs: Vec<u64> = found.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (1..=17).rev().collect::<Vec<u64>>());
}
