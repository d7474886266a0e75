//! Record fixtures shared by the integration tests and the bench.
#![allow(dead_code)]

use std::collections::BTreeMap;

use portcullis_audit::params::{MaskedParam, ParamHasher};
use portcullis_audit::record::*;
use portcullis_audit::Record;

pub fn identity(subject: &str) -> Identity {
    Identity {
        kind: IdentityKind::Human,
        subject: subject.to_owned(),
        groups: vec!["analysts".into(), "eu".into()],
        on_behalf_of: None,
    }
}

pub fn source() -> Source {
    Source {
        address: Some("10.1.2.3:51544".parse().unwrap()),
        tls: Some(TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            server_name: Some("db.example".into()),
            alpn: Some("postgresql".into()),
            client_certificate: None,
            direct: false,
        }),
    }
}

/// A typical statement: one table, three columns read.
pub fn statement(i: u64, subject: &str, table: &str, effect: Effect) -> StatementRecord {
    StatementRecord {
        identity: identity(subject),
        source: source(),
        destination: Destination {
            target: "prod".into(),
            environment: Some("production".into()),
            session_id: format!("s-{}", i / 10),
            backend_pid: Some(4242),
        },
        statement_id: i,
        protocol: Protocol::Extended,
        statement_name: Some(String::new()),
        text: NormalisedText::from_normalised(format!(
            "SELECT id, email, ssn FROM {table} WHERE id = $1"
        )),
        fingerprint: format!("{:016x}", i % 97),
        reads: vec![Touched {
            object: table.to_owned(),
            columns: vec!["id".into(), "email".into(), "ssn".into()],
        }],
        writes: vec![],
        decision: Decision {
            effect,
            policies: vec!["analysts-read".into()],
            bundle_hash: "b3f1c0de".into(),
            reason: None,
        },
        masked_columns: if effect == Effect::Masked {
            vec![MaskedColumn {
                column: format!("{table}.ssn"),
                classification: "national_id".into(),
            }]
        } else {
            vec![]
        },
        params: BindParams::Off,
        outcome: None,
    }
}

pub fn outcome(statement_seq: u64, i: u64, sqlstate: Option<&str>) -> Record {
    Record::Outcome(OutcomeRecord {
        statement_seq,
        session_id: format!("s-{}", i / 10),
        statement_id: i,
        outcome: statement_outcome(sqlstate),
    })
}

/// A SELECT's outcome that masked one value.
pub fn statement_outcome(sqlstate: Option<&str>) -> StatementOutcome {
    StatementOutcome {
        command: Some("SELECT".into()),
        rows: Some(1),
        bytes: 120,
        duration_micros: 350,
        sqlstate: sqlstate.map(|s| SqlState::new(s).unwrap()),
        masked_values: BTreeMap::from([("national_id".into(), 1)]),
        detector_hits: BTreeMap::from([("email".into(), 1)]),
    }
}

/// A record with every optional field set, for the encoding properties.
pub fn full_statement() -> Record {
    let hasher = ParamHasher::new(b"0123456789abcdef0123").unwrap();
    let mut s = statement(7, "alice", "public.customers", Effect::Masked);
    s.identity.on_behalf_of = Some("bob".into());
    s.identity.kind = IdentityKind::Agent;
    s.source.tls.as_mut().unwrap().client_certificate = Some("CN=alice".into());
    s.source.tls.as_mut().unwrap().direct = true;
    s.writes = vec![Touched {
        object: "public.log".into(),
        columns: vec!["at".into()],
    }];
    s.decision.reason = Some("held for approval".into());
    s.params = hasher.hash_all([Some(&b"42"[..]), None]);
    Record::from(s)
}

pub fn all_kinds() -> Vec<Record> {
    vec![
        full_statement(),
        Record::from({
            let mut s = statement(8, "carol", "public.orders", Effect::Allowed);
            s.params = BindParams::Masked {
                values: vec![Some(MaskedParam::from_masked("****")), None],
            };
            s
        }),
        outcome(1, 7, Some("42501")),
        Record::Connection(Box::new(ConnectionRecord {
            source: source(),
            session_id: "s-9".into(),
            identity: Some(identity("alice")),
            auth_method: None,
            credential: None,
            upstream_role: None,
            profile: None,
            target: Some("prod".into()),
            environment: Some("production".into()),
            result: ConnectionResult::Failed {
                reason: FailureReason::AuthenticationFailed,
                sqlstate: Some(SqlState::new("28P01").unwrap()),
            },
        })),
        Record::Connection(Box::new(ConnectionRecord {
            source: Source {
                address: None,
                tls: None,
            },
            session_id: "s-10".into(),
            identity: Some(identity("dave")),
            auth_method: Some("SCRAM-SHA-256-PLUS".into()),
            credential: None,
            upstream_role: None,
            profile: None,
            target: Some("prod".into()),
            environment: None,
            result: ConnectionResult::Ended {
                reason: EndReason::IdleTimeout,
                duration_micros: 9,
            },
        })),
        Record::Approval(ApprovalRecord {
            request_id: "r-1".into(),
            event: ApprovalEvent::Approved,
            actor: Some(identity("erin")),
            requester: Some(identity("dana")),
            target: "prod".into(),
            statement_seq: Some(1),
            fingerprint: Some("abc".into()),
            comment: Some("ok".into()),
        }),
        Record::Reload(ReloadRecord {
            what: ReloadKind::Policy,
            hash: Some("ff".into()),
            requested_by: Some("signal".into()),
            result: ReloadResult::Rejected {
                reason: "syntax error".into(),
            },
        }),
        Record::Admin(AdminRecord {
            actor: identity("root"),
            action: AdminAction::KeyRevoked,
            object: "key-1".into(),
            detail: Some("rotation".into()),
        }),
    ]
}
