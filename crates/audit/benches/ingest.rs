//! The per-record cost on the submitting thread (canonical encoding and
//! search columns) and on the writer (sealing into the chain). The store's
//! end-to-end rate is measured by `tests/throughput.rs`.

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_audit::chain::{Chain, Head, LogId};
use portcullis_audit::record::*;
use portcullis_audit::store::IndexFields;
use portcullis_audit::{canonical, Record};

fn statement() -> Record {
    Record::from(StatementRecord {
        identity: Identity {
            kind: IdentityKind::Human,
            subject: "alice".into(),
            groups: vec!["analysts".into()],
            on_behalf_of: None,
        },
        source: Source {
            address: Some("10.1.2.3:51544".parse().unwrap()),
            tls: None,
        },
        destination: Destination {
            target: "prod".into(),
            environment: Some("production".into()),
            session_id: "s-1".into(),
            backend_pid: Some(4242),
        },
        statement_id: 1,
        protocol: Protocol::Extended,
        statement_name: None,
        text: NormalisedText::from_normalised(
            "SELECT id, email, ssn FROM public.customers WHERE id = $1",
        ),
        fingerprint: "0123456789abcdef".into(),
        reads: vec![Touched {
            object: "public.customers".into(),
            columns: vec!["id".into(), "email".into(), "ssn".into()],
        }],
        writes: vec![],
        decision: Decision {
            effect: Effect::Allowed,
            policies: vec!["p1".into()],
            bundle_hash: "b3".into(),
            reason: None,
        },
        masked_columns: vec![],
        params: BindParams::Off,
        outcome: None,
    })
}

fn bench(c: &mut Criterion) {
    let record = statement();
    c.bench_function("encode statement", |b| {
        b.iter(|| canonical::encode(&record).unwrap())
    });
    c.bench_function("index fields", |b| b.iter(|| IndexFields::of(&record)));
    let bytes = canonical::encode(&record).unwrap();
    let mut chain = Chain::resume(Head::empty(LogId::new("bench")));
    c.bench_function("seal", |b| b.iter(|| chain.append(1, &bytes)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
