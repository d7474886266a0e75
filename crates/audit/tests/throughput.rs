//! Measurements, not checks: run in release with
//!
//! ```text
//! cargo test --release -p portcullis-audit --test throughput -- --ignored --nocapture --test-threads=1
//! ```
//!
//! `AUDIT_BENCH_RECORDS` (default 200,000) sets the ingest size and
//! `AUDIT_BENCH_STORE` (default 1,000,000) the searched store's.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_audit::record::{Effect, RecordKind};
use portcullis_audit::search::Access;
use portcullis_audit::*;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn statement(i: u64) -> Record {
    let effect = match i % 20 {
        0 => Effect::Denied,
        1 | 2 => Effect::Masked,
        _ => Effect::Allowed,
    };
    let mut s = common::statement(
        i,
        &format!("user{}", i % 1000),
        &format!("public.t{}", i % 50),
        effect,
    );
    s.fingerprint = format!("{:016x}", i % 5000);
    Record::from(s)
}

/// Submits `n` records from `threads` threads through the non-blocking
/// door (retrying on QueueFull, as a load generator may), then closes the
/// log, which returns once everything is committed. Returns records/s.
fn ingest(path: &std::path::Path, n: u64, threads: u64, with_outcomes: bool) -> f64 {
    let mut config = AuditConfig::new(path);
    config.signing_key = Some(SigningKey::from_seed(&[1; 32]).unwrap());
    let log = Arc::new(AuditLog::open(config).unwrap());
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut i = t;
                while i < n {
                    let r = statement(i);
                    let seq = loop {
                        match log.submit(&r) {
                            Ok(a) => break a.seq,
                            // Back off as a session would: spinning would take
                            // the writer's core on a small machine.
                            Err(AuditError::QueueFull) => {
                                std::thread::sleep(Duration::from_micros(200))
                            }
                            Err(e) => panic!("{e}"),
                        }
                    };
                    if with_outcomes {
                        let o = common::outcome(seq, i, (i % 50 == 0).then_some("42P01"));
                        while let Err(AuditError::QueueFull) = log.submit(&o) {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                    i += threads;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let log = Arc::into_inner(log).unwrap();
    log.close();
    let records = if with_outcomes { 2 * n } else { n };
    records as f64 / start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "measurement"]
fn ingest_rate() {
    let n = env("AUDIT_BENCH_RECORDS", 200_000);
    for threads in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let rate = ingest(&dir.path().join("a.db"), n, threads, false);
        println!(
            "ingest: {n} statement records, {threads} submitting threads: {rate:.0} records/s"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let rate = ingest(&dir.path().join("a.db"), n / 2, 2, true);
    println!(
        "ingest: {} statement + outcome records, 2 submitting threads: {rate:.0} records/s",
        n
    );

    // Encoding alone, on one thread: the per-record cost a caller pays.
    let start = Instant::now();
    let mut bytes = 0;
    for i in 0..n {
        bytes += canonical::encode(&statement(i)).unwrap().len();
    }
    let per = start.elapsed() / n as u32;
    println!(
        "encode: {per:?} per statement record, {} bytes on average",
        bytes / n as usize
    );
}

#[test]
#[ignore = "measurement"]
fn search_speed() {
    let n = env("AUDIT_BENCH_STORE", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.db");
    let rate = ingest(&path, n / 2, 2, true);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "search store: {n} records written at {rate:.0} records/s, {} MB",
        size / 1_000_000
    );

    let store = SqliteStore::open_read_only(&path).unwrap();
    let all = search(
        &store,
        &Filter {
            limit: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let newest = all[0].ts_micros;
    let oldest = search(
        &store,
        &Filter {
            limit: 1,
            until: Some(i64::MAX),
            before_seq: Some(2),
            ..Default::default()
        },
    )
    .unwrap()[0]
        .ts_micros;
    let middle = oldest + (newest - oldest) / 2;

    let cases: Vec<(&str, Filter)> = vec![
        (
            "subject, newest 100",
            Filter {
                subject: Some("user17".into()),
                ..Default::default()
            },
        ),
        (
            "subject + time window (middle 10%)",
            Filter {
                subject: Some("user17".into()),
                since: Some(middle),
                until: Some(middle + (newest - oldest) / 10),
                ..Default::default()
            },
        ),
        (
            "who read public.t7.ssn",
            Filter {
                object: Some("public.t7".into()),
                column: Some("ssn".into()),
                access: Some(Access::Read),
                ..Default::default()
            },
        ),
        (
            "column + subject",
            Filter {
                object: Some("public.t7".into()),
                column: Some("ssn".into()),
                subject: Some("user407".into()),
                ..Default::default()
            },
        ),
        (
            "denied, newest 100",
            Filter {
                decision: Some(Effect::Denied),
                ..Default::default()
            },
        ),
        (
            "fingerprint",
            Filter {
                fingerprint: Some(format!("{:016x}", 4242)),
                ..Default::default()
            },
        ),
        (
            "sqlstate 42P01",
            Filter {
                sqlstate: Some("42P01".into()),
                ..Default::default()
            },
        ),
        (
            "target + kind, 1000",
            Filter {
                target: Some("prod".into()),
                kinds: vec![RecordKind::Statement],
                limit: 1000,
                ..Default::default()
            },
        ),
        (
            "free text + subject",
            Filter {
                subject: Some("user17".into()),
                text: Some("t17".into()),
                ..Default::default()
            },
        ),
        (
            "rare subject (no match), whole log",
            Filter {
                subject: Some("nobody".into()),
                ..Default::default()
            },
        ),
    ];
    for (name, filter) in cases {
        let start = Instant::now();
        let found = search(&store, &filter).unwrap();
        let took = start.elapsed();
        println!("search: {name}: {} found in {took:?}", found.len());
        assert!(took < Duration::from_secs(5));
    }

    let start = Instant::now();
    let report = verify(
        &store,
        Some(&SigningKey::from_seed(&[1; 32]).unwrap().public_key()),
    )
    .unwrap();
    assert!(report.is_clean());
    println!(
        "verify: {} records in {:?}",
        report.records,
        start.elapsed()
    );
}
