//! Audit records from what the proxy knows: pure functions, no I/O.
//!
//! Nothing here copies a value a client sent. Statement text arrives
//! already normalised (`portcullis_analysis::audit_text`), refusals are
//! named by SQLSTATE and by the policy that decided (never by a parser
//! message, which can quote the statement), and outcomes carry the
//! server's command tag and SQLSTATE, never its message.

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_analysis::audit_text::AuditText;
use portcullis_audit::record::{
    ConnectionRecord, ConnectionResult, Decision, Destination, Effect, EndReason, FailureReason,
    Identity, IdentityKind, NormalisedText, Protocol, Record, Source, SqlState, StatementOutcome,
    StatementRecord, Touched,
};
use portcullis_guard::StatementVerdict;
use portcullis_policy::{self as policy, Action, ResourceRef};

/// What every record of one session says about where it came from and
/// went to.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub identity: Identity,
    /// How the identity was proven ([`portcullis_identity::Proof::method`]).
    pub auth_method: &'static str,
    /// The credential's public id ([`portcullis_identity::Proof::credential`]).
    pub credential: Option<String>,
    /// The upstream role the session logged in as, and the access profile
    /// that chose it.
    pub role: String,
    pub profile: Option<String>,
    pub source: Source,
    pub destination: Destination,
    /// The policy bundle in force for the session's target.
    pub bundle_hash: String,
}

/// The session's identity, as records carry it.
pub fn identity(id: &portcullis_identity::Identity) -> Identity {
    Identity {
        kind: match id.kind {
            portcullis_identity::Kind::Human => IdentityKind::Human,
            portcullis_identity::Kind::Agent => IdentityKind::Agent,
            portcullis_identity::Kind::Service => IdentityKind::Service,
        },
        subject: id.subject.clone(),
        groups: id.groups.clone(),
        on_behalf_of: id.on_behalf_of.clone(),
    }
}

/// How the guard judged one message, as far as the records need it.
#[derive(Debug, Clone, Default)]
pub struct MessageVerdict {
    /// One entry per statement judged (none when the text did not parse).
    pub statements: std::sync::Arc<[StatementVerdict]>,
    /// Each statement's audit text; for a message that did not parse,
    /// one text for the whole message.
    pub texts: Option<std::sync::Arc<[AuditText]>>,
    /// The SQLSTATE of the refusal, if the message would be refused.
    pub refusal: Option<&'static str>,
    /// The policy whose decision is the refusal.
    pub refused_by: Option<String>,
    /// False in observe mode: the refusal is only recorded.
    pub enforced: bool,
}

impl MessageVerdict {
    /// A message Portcullis refused before judging its statements (a name
    /// or an encoding it cannot follow, a malformed message).
    pub fn refused_unjudged(sqlstate: &'static str) -> Self {
        MessageVerdict {
            statements: std::sync::Arc::from([]),
            texts: None,
            refusal: Some(sqlstate),
            refused_by: None,
            enforced: true,
        }
    }

    /// Whether the message is kept from the server.
    pub fn blocks(&self) -> bool {
        self.enforced && self.refusal.is_some()
    }

    /// A FunctionCall: no statement to judge, one record with the call
    /// it stands for.
    pub fn function_call(text: AuditText, refusal: Option<&'static str>) -> Self {
        MessageVerdict {
            statements: std::sync::Arc::from([]),
            texts: Some(std::sync::Arc::from([text])),
            refusal,
            refused_by: None,
            enforced: true,
        }
    }

    /// How many statement records the message gets: one per statement;
    /// one for a refused message that did not parse, or a function call.
    pub fn record_count(&self) -> usize {
        if !self.statements.is_empty() {
            return self.statements.len();
        }
        let has_text = self.texts.as_ref().is_some_and(|t| !t.is_empty());
        usize::from(self.refusal.is_some() || has_text)
    }
}

/// The decision record of statement `index` of a message.
pub fn decision(m: &MessageVerdict, index: usize, bundle_hash: &str) -> Decision {
    let verdict = m.statements.get(index);
    let own = verdict.map(|v| &v.decision);
    let own_blocks = own.is_some_and(|d| !d.is_allow());
    let (effect, reason) = match (m.refusal, m.enforced) {
        (Some(state), true) => match own {
            Some(policy::Decision::RequiresApproval(_)) => {
                (Effect::Held, "approval required".to_owned())
            }
            Some(d) if !d.is_allow() => (Effect::Denied, "denied by policy".to_owned()),
            _ if m.refused_by.is_some() => (
                Effect::Denied,
                "not run: another statement of the message was denied".to_owned(),
            ),
            _ => (Effect::Denied, format!("refused by Portcullis ({state})")),
        },
        (Some(state), false) => (
            Effect::Allowed,
            if own_blocks {
                "observe mode: would be denied by policy".to_owned()
            } else {
                format!("observe mode: would be refused ({state})")
            },
        ),
        (None, _) => (Effect::Allowed, String::new()),
    };
    Decision {
        effect,
        policies: verdict.map(|v| v.policies.to_vec()).unwrap_or_default(),
        bundle_hash: bundle_hash.to_owned(),
        reason: (!reason.is_empty()).then_some(reason),
    }
}

/// The objects and columns a statement reads and writes, as the policy
/// saw them (views expanded, names resolved).
pub fn touched(facts: &policy::StatementFacts) -> (Vec<Touched>, Vec<Touched>) {
    let mut reads: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut writes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for op in &facts.operations {
        let side = match op.action {
            Action::Select | Action::CopyOut => &mut reads,
            Action::Set | Action::Transaction | Action::Utility => continue,
            _ => &mut writes,
        };
        for r in &op.resources {
            let (object, column) = match r {
                ResourceRef::Table { schema, table } => (format!("{schema}.{table}"), None),
                ResourceRef::Column {
                    schema,
                    table,
                    column,
                } => (format!("{schema}.{table}"), Some(column)),
                ResourceRef::Schema { schema } => (schema.clone(), None),
                ResourceRef::Database { name } => (format!("database {name}"), None),
            };
            let columns = side.entry(object).or_default();
            if let Some(c) = column {
                if !columns.contains(c) {
                    columns.push(c.clone());
                }
            }
        }
    }
    let list = |m: BTreeMap<String, Vec<String>>| {
        m.into_iter()
            .map(|(object, columns)| Touched { object, columns })
            .collect()
    };
    (list(reads), list(writes))
}

/// What one statement record says beyond the session's facts.
pub struct Statement<'a> {
    pub statement_id: u64,
    pub protocol: Protocol,
    pub statement_name: Option<String>,
    pub text: Option<&'a AuditText>,
    pub verdict: Option<&'a StatementVerdict>,
    pub decision: Decision,
    pub params: portcullis_audit::record::BindParams,
}

/// What stands for a statement whose text the proxy could not decode.
const UNDECODED: &str = "<statement text withheld: not decoded>";

pub fn statement(session: &SessionFacts, s: Statement<'_>) -> Record {
    let (reads, writes) = s.verdict.map(|v| touched(&v.facts)).unwrap_or_default();
    let (text, fingerprint) = match s.text {
        Some(t) => (t.text.clone(), t.fingerprint.clone()),
        None => (UNDECODED.to_owned(), String::new()),
    };
    Record::from(StatementRecord {
        identity: session.identity.clone(),
        source: session.source.clone(),
        destination: session.destination.clone(),
        statement_id: s.statement_id,
        protocol: s.protocol,
        statement_name: s.statement_name,
        text: NormalisedText::from_normalised(text),
        fingerprint,
        reads,
        writes,
        decision: s.decision,
        masked_columns: Vec::new(),
        params: s.params,
        // Folded in later by the trail when it can be (see
        // `AuditLog::complete`).
        outcome: None,
    })
}

/// How a statement ended, from the server's reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// The command tag's command (`SELECT`, `CREATE TABLE`), when it
    /// completed.
    pub command: Option<String>,
    pub rows: Option<u64>,
    pub sqlstate: Option<String>,
    pub bytes: u64,
    pub duration: Duration,
    /// Values masked, per classification.
    pub masked: BTreeMap<String, u64>,
    /// Content-detector hits in scanned values, per entity class.
    pub detector_hits: BTreeMap<String, u64>,
}

impl Completion {
    /// From a CommandComplete's tag (`INSERT 0 5`, `SELECT 3`, `CREATE
    /// TABLE`).
    pub fn from_tag(tag: &str) -> Completion {
        let (command, rows) = match tag.rsplit_once(' ') {
            Some((rest, last)) if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) => {
                match last.parse().ok() {
                    // INSERT's tag has the (always zero) OID before the
                    // count.
                    Some(rows) => (
                        rest.strip_suffix(" 0")
                            .filter(|c| *c == "INSERT")
                            .unwrap_or(rest),
                        Some(rows),
                    ),
                    None => (tag, None),
                }
            }
            _ => (tag, None),
        };
        Completion {
            command: Some(command.to_owned()),
            rows,
            ..Completion::default()
        }
    }
}

/// What became of a statement, from the ledger's completion.
pub fn outcome(done: Completion) -> StatementOutcome {
    StatementOutcome {
        command: done.command,
        rows: done.rows,
        bytes: done.bytes,
        duration_micros: u64::try_from(done.duration.as_micros()).unwrap_or(u64::MAX),
        sqlstate: done.sqlstate.and_then(|s| SqlState::new(&s).ok()),
        masked_values: done.masked,
        detector_hits: done.detector_hits,
    }
}

/// A login that became a session.
pub fn connection_succeeded(session: &SessionFacts) -> Record {
    Record::Connection(Box::new(ConnectionRecord {
        source: session.source.clone(),
        session_id: session.destination.session_id.clone(),
        identity: Some(session.identity.clone()),
        auth_method: Some(session.auth_method.to_owned()),
        credential: session.credential.clone(),
        upstream_role: Some(session.role.clone()),
        profile: session.profile.clone(),
        target: Some(session.destination.target.clone()),
        environment: session.destination.environment.clone(),
        result: ConnectionResult::Succeeded {
            backend_pid: session.destination.backend_pid,
        },
    }))
}

/// A session's end.
pub fn connection_ended(session: &SessionFacts, reason: EndReason, lasted: Duration) -> Record {
    Record::Connection(Box::new(ConnectionRecord {
        source: session.source.clone(),
        session_id: session.destination.session_id.clone(),
        identity: Some(session.identity.clone()),
        auth_method: Some(session.auth_method.to_owned()),
        credential: session.credential.clone(),
        upstream_role: Some(session.role.clone()),
        profile: session.profile.clone(),
        target: Some(session.destination.target.clone()),
        environment: session.destination.environment.clone(),
        result: ConnectionResult::Ended {
            reason,
            duration_micros: u64::try_from(lasted.as_micros()).unwrap_or(u64::MAX),
        },
    }))
}

/// A connection attempt that failed before it became a session.
pub fn connection_failed(
    source: Source,
    session_id: &str,
    reason: FailureReason,
    sqlstate: Option<&str>,
) -> Record {
    Record::Connection(Box::new(ConnectionRecord {
        source,
        session_id: session_id.to_owned(),
        identity: None,
        auth_method: None,
        credential: None,
        upstream_role: None,
        profile: None,
        target: None,
        environment: None,
        result: ConnectionResult::Failed {
            reason,
            sqlstate: sqlstate.and_then(|s| SqlState::new(s).ok()),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn command_tags_give_command_and_rows() {
        let c = Completion::from_tag("INSERT 0 5");
        assert_eq!((c.command.as_deref(), c.rows), (Some("INSERT"), Some(5)));
        let c = Completion::from_tag("SELECT 3");
        assert_eq!((c.command.as_deref(), c.rows), (Some("SELECT"), Some(3)));
        let c = Completion::from_tag("CREATE TABLE");
        assert_eq!((c.command.as_deref(), c.rows), (Some("CREATE TABLE"), None));
        let c = Completion::from_tag("COPY 10");
        assert_eq!((c.command.as_deref(), c.rows), (Some("COPY"), Some(10)));
        for (tag, command, rows) in [
            ("SELECT 0", "SELECT", Some(0)),
            ("MERGE 2", "MERGE", Some(2)),
            ("UPDATE 0", "UPDATE", Some(0)),
            // Only INSERT has an OID before its count.
            ("FETCH 0 7", "FETCH 0", Some(7)),
            (
                "SELECT 99999999999999999999999",
                "SELECT 99999999999999999999999",
                None,
            ),
            ("5", "5", None),
            ("BEGIN", "BEGIN", None),
            ("", "", None),
        ] {
            let c = Completion::from_tag(tag);
            assert_eq!(
                (c.command.as_deref(), c.rows),
                (Some(command), rows),
                "{tag}"
            );
        }
    }

    fn verdict(decision: policy::Decision, ops: Vec<policy::Operation>) -> StatementVerdict {
        StatementVerdict {
            class: portcullis_analysis::StatementClass::Select,
            decision,
            policies: Arc::from(["p".to_owned()]),
            facts: Arc::new(policy::StatementFacts {
                operations: ops,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn reads_and_writes_group_columns_by_table() {
        let v = verdict(
            policy::Decision::Allow,
            vec![
                policy::Operation::new(
                    Action::Select,
                    vec![
                        ResourceRef::column("public", "customers", "ssn"),
                        ResourceRef::column("public", "customers", "email"),
                        ResourceRef::column("public", "customers", "ssn"),
                    ],
                ),
                policy::Operation::new(
                    Action::Insert,
                    vec![ResourceRef::Table {
                        schema: "public".into(),
                        table: "log".into(),
                    }],
                ),
            ],
        );
        let (reads, writes) = touched(&v.facts);
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].object, "public.customers");
        assert_eq!(reads[0].columns, ["ssn", "email"]);
        assert_eq!(writes[0].object, "public.log");
    }

    #[test]
    fn decisions_say_who_refused_and_what_did_not_run() {
        let allow = verdict(policy::Decision::Allow, vec![]);
        let m = MessageVerdict {
            statements: Arc::from([allow.clone()]),
            texts: None,
            refusal: None,
            refused_by: None,
            enforced: true,
        };
        let d = decision(&m, 0, "h");
        assert_eq!(d.effect, Effect::Allowed);
        assert_eq!(d.policies, ["p"]);
        assert_eq!(d.bundle_hash, "h");

        let m = MessageVerdict {
            refusal: Some("42501"),
            refused_by: Some("p".into()),
            ..m
        };
        let d = decision(&m, 0, "h");
        assert_eq!(d.effect, Effect::Denied);
        assert!(d.reason.unwrap().contains("another statement"));

        let m = MessageVerdict {
            enforced: false,
            ..m
        };
        assert_eq!(decision(&m, 0, "h").effect, Effect::Allowed);

        let m = MessageVerdict::refused_unjudged("42601");
        assert_eq!(m.record_count(), 1);
        let d = decision(&m, 0, "h");
        assert_eq!(d.effect, Effect::Denied);
        assert_eq!(d.reason.as_deref(), Some("refused by Portcullis (42601)"));
    }
}
