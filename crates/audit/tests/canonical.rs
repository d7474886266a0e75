//! Properties of the canonical encoding: deterministic, a round trip
//! through the stored JSON gives the same bytes, and any change to any
//! field changes the bytes (so the hash).

mod common;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

use portcullis_audit::canonical::{encode, encode_via_value, insert_member};
use portcullis_audit::record::*;
use portcullis_audit::Record;

const ALPHABET: &[char] = &[
    'a', 'Z', '0', ' ', '"', '\\', '\n', '\t', '\u{1}', '\u{1f}', '\u{7f}', 'é', '€', '😀', '/',
];

fn random_string(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..12);
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect()
}

fn random_statement(rng: &mut StdRng) -> Record {
    let effects = [
        Effect::Allowed,
        Effect::Denied,
        Effect::Held,
        Effect::Masked,
    ];
    let mut s = common::statement(
        rng.random(),
        &random_string(rng),
        &random_string(rng),
        effects[rng.random_range(0..4)],
    );
    s.identity.groups = (0..rng.random_range(0..4))
        .map(|_| random_string(rng))
        .collect();
    s.destination.backend_pid = rng.random::<bool>().then(|| rng.random());
    s.text = NormalisedText::from_normalised(random_string(rng));
    s.fingerprint = random_string(rng);
    s.reads = (0..rng.random_range(0..3))
        .map(|_| Touched {
            object: random_string(rng),
            columns: (0..rng.random_range(0..3))
                .map(|_| random_string(rng))
                .collect(),
        })
        .collect();
    s.decision.policies = (0..rng.random_range(0..3))
        .map(|_| random_string(rng))
        .collect();
    Record::from(s)
}

#[test]
fn deterministic_and_round_trips() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut records = common::all_kinds();
    records.extend((0..500).map(|_| random_statement(&mut rng)));
    for record in &records {
        let a = encode(record).unwrap();
        let b = encode(&record.clone()).unwrap();
        assert_eq!(a, b);
        // What a reader gets back from the store encodes to the same bytes.
        let back: Record = serde_json::from_slice(&a).unwrap();
        assert_eq!(&back, record);
        assert_eq!(encode(&back).unwrap(), a);
        // The bytes are plain JSON describing the same value.
        let parsed: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(parsed, serde_json::to_value(record).unwrap());
        assert!(!a.contains(&b'\n'), "no raw newlines");
        // The direct encoder writes what the Value-tree reference writes.
        assert_eq!(
            a,
            encode_via_value(record).unwrap(),
            "{}",
            String::from_utf8_lossy(&a)
        );
    }
    // Outcomes too, with random maps.
    for i in 0..200u64 {
        let mut o = common::outcome(i, i, (i % 3 == 0).then_some("42P01"));
        if let Record::Outcome(o) = &mut o {
            o.outcome.masked_values = (0..rng.random_range(0..4))
                .map(|_| (random_string(&mut rng), rng.random()))
                .collect();
            o.outcome.command = rng.random::<bool>().then(|| random_string(&mut rng));
        }
        assert_eq!(encode(&o).unwrap(), encode_via_value(&o).unwrap());
    }
}

/// A random outcome, as the proxy folds into a statement record.
fn random_outcome(rng: &mut StdRng) -> StatementOutcome {
    let mut o = common::statement_outcome(rng.random::<bool>().then_some("42P01"));
    o.masked_values = (0..rng.random_range(0..4))
        .map(|_| (random_string(rng), rng.random()))
        .collect();
    o.detector_hits = (0..rng.random_range(0..3))
        .map(|_| (random_string(rng), rng.random()))
        .collect();
    o.command = rng.random::<bool>().then(|| random_string(rng));
    o.rows = rng.random::<bool>().then(|| rng.random());
    o
}

#[test]
fn folding_an_outcome_into_encoded_bytes_equals_encoding_the_whole() {
    let mut rng = StdRng::seed_from_u64(0xf01d);
    let mut statements: Vec<Record> = (0..500).map(|_| random_statement(&mut rng)).collect();
    statements.push(common::full_statement());
    for record in statements {
        let Record::Statement(mut s) = record else {
            unreachable!()
        };
        let mut bytes = encode(&Record::Statement(s.clone())).unwrap();
        let o = random_outcome(&mut rng);
        insert_member(&mut bytes, "outcome", &encode(&o).unwrap()).unwrap();
        s.outcome = Some(o);
        let whole = Record::Statement(s);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            String::from_utf8(encode(&whole).unwrap()).unwrap()
        );
        let back: Record = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, whole);
        // Folded once: a second outcome is refused.
        assert!(insert_member(&mut bytes, "outcome", b"{}").is_err());
    }
}

#[test]
fn encoding_is_pinned() {
    // A change to this string is a change of format: old hashes would no
    // longer verify. Bump chain::FORMAT_VERSION instead.
    let r = Record::Admin(AdminRecord {
        actor: Identity {
            kind: IdentityKind::Service,
            subject: "ops\"bot".into(),
            groups: vec![],
            on_behalf_of: None,
        },
        action: AdminAction::KeyCreated,
        object: "k1".into(),
        detail: None,
    });
    assert_eq!(
        String::from_utf8(encode(&r).unwrap()).unwrap(),
        r#"{"action":"key_created","actor":{"kind":"service","subject":"ops\"bot"},"object":"k1","type":"admin"}"#
    );
}

/// Every leaf of the record's JSON, by path.
fn leaves(v: &Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            let mut p = path.clone();
            p.push(k.clone());
            leaves(v, p, out)
        }),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| {
            let mut p = path.clone();
            p.push(i.to_string());
            leaves(v, p, out)
        }),
        _ => out.push(path),
    }
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        _ => &mut v[k.as_str()],
    })
}

/// Candidate replacements for a leaf; the first that still reads back as a
/// record is used (enum names, hashes and SQLSTATEs only take some values).
fn mutations(v: &Value) -> Vec<Value> {
    match v {
        Value::String(s) => {
            let mut c = vec![Value::String(format!("{s}x"))];
            if let Some(d) = s.chars().last().and_then(|c| c.to_digit(10)) {
                c.push(Value::String(format!(
                    "{}{}",
                    &s[..s.len() - 1],
                    (d + 1) % 10
                )));
            }
            if s.len() == 64 {
                c.push(Value::String(format!("{}0", &s[..63].replace('0', "1"))));
                c.push(Value::String(s.chars().rev().collect()));
            }
            if s.len() == 5 {
                c.push(Value::String("XX000".into()));
            }
            for variant in [
                "human",
                "agent",
                "service",
                "simple",
                "extended",
                "allowed",
                "denied",
                "held",
                "masked",
                "key_created",
                "key_revoked",
                "approved",
                "rejected",
                "policy",
                "config",
                "off",
                "masked",
                "authentication_failed",
                "unknown_target",
                "idle_timeout",
                "shutdown",
                "national_id",
            ] {
                c.push(Value::String(variant.into()));
            }
            c
        }
        Value::Number(n) => vec![Value::from(n.as_u64().unwrap() + 1)],
        Value::Bool(b) => vec![Value::Bool(!b)],
        Value::Null => vec![Value::String("x".into()), Value::String("a".repeat(64))],
        _ => vec![],
    }
}

#[test]
fn every_field_change_changes_the_bytes() {
    let mut tested = 0;
    for record in common::all_kinds() {
        let original = encode(&record).unwrap();
        let value = serde_json::to_value(&record).unwrap();
        let mut paths = Vec::new();
        leaves(&value, vec![], &mut paths);
        for path in paths {
            let before = at(&mut value.clone(), &path).clone();
            let mut changed = false;
            for candidate in mutations(&before) {
                if candidate == before {
                    continue;
                }
                let mut v = value.clone();
                *at(&mut v, &path) = candidate;
                let Ok(mutated) = serde_json::from_value::<Record>(v) else {
                    continue;
                };
                if mutated == record {
                    continue;
                }
                assert_ne!(
                    encode(&mutated).unwrap(),
                    original,
                    "change at {path:?} kept the bytes"
                );
                changed = true;
                break;
            }
            // A variant's tag cannot change alone (the variant's fields
            // would not fit); whole-variant changes are the other records.
            let is_tag = matches!(
                path.last().map(String::as_str),
                Some("type" | "status" | "mode")
            );
            assert!(
                changed || is_tag,
                "no representable change found for {path:?} in {record:?}"
            );
            tested += 1;
        }
    }
    assert!(tested > 80, "only {tested} fields exercised");
}

#[test]
fn floats_cannot_sneak_in() {
    // The model has no floats; a foreign value with one is refused.
    assert!(encode(&serde_json::json!({"x": 0.5})).is_err());
}

#[test]
fn a_rendered_template_is_the_record_encoded_whole() {
    use portcullis_audit::{Encoded, StatementTemplate};
    let mut rng = StdRng::seed_from_u64(0x7e3b);
    let mut statements: Vec<Record> = (0..500).map(|_| random_statement(&mut rng)).collect();
    statements.push(common::full_statement());
    for record in statements {
        let template = StatementTemplate::new(&record).unwrap();
        let Record::Statement(mut s) = record else {
            unreachable!()
        };
        for id in [0, 1, 9, 10, rng.random(), u64::MAX] {
            s.statement_id = id;
            let whole = Record::Statement(s.clone());
            let expected = Encoded::of(&whole).unwrap();
            let mut rendered = template.render(id);
            assert_eq!(
                String::from_utf8_lossy(rendered.bytes()),
                String::from_utf8_lossy(expected.bytes())
            );
            assert_eq!(rendered.index(), expected.index());

            // An outcome folded into the rendered record (at the slot the
            // template found) gives the record encoded with it.
            let o = random_outcome(&mut rng);
            rendered.fold(&o).unwrap();
            let mut with = s.clone();
            with.outcome = Some(o.clone());
            let expected = Encoded::of(&Record::Statement(with)).unwrap();
            assert_eq!(
                String::from_utf8_lossy(rendered.bytes()),
                String::from_utf8_lossy(expected.bytes())
            );
            assert_eq!(rendered.index(), expected.index());
            // Once.
            assert!(rendered.fold(&o).is_err());
        }
    }
    // Only statement records make templates.
    for record in common::all_kinds() {
        assert_eq!(
            StatementTemplate::new(&record).is_ok(),
            matches!(record, Record::Statement(_))
        );
    }
}

#[test]
fn an_outcome_record_written_directly_is_the_record_encoded_whole() {
    use portcullis_audit::Encoded;
    let mut rng = StdRng::seed_from_u64(0x0c0e);
    for _ in 0..500 {
        let o = random_outcome(&mut rng);
        let session_id = random_string(&mut rng);
        let (seq, id) = (rng.random(), rng.random());
        let direct = Encoded::outcome(seq, &session_id, id, &o);
        let whole = Encoded::of(&Record::Outcome(OutcomeRecord {
            statement_seq: seq,
            session_id,
            statement_id: id,
            outcome: o,
        }))
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(direct.bytes()),
            String::from_utf8_lossy(whole.bytes())
        );
        assert_eq!(direct.index(), whole.index());
    }
}
