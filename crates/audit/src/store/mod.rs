//! Stores: where sealed records, their search columns and checkpoints land.
//!
//! A store receives whole batches ([`BatchStore::commit`]): the sealed
//! envelopes, the columns search needs, at most one checkpoint and the new
//! head, all in one transaction, so a crash leaves either all of a batch
//! or none of it. SQLite is the embedded store; a PostgreSQL store
//! (several proxies, one database, one chain per node) implements the same
//! trait later.

pub mod sqlite;

use crate::chain::{Head, Sealed};
use crate::checkpoint::Checkpoint;
use crate::record::{Record, Touched};
use crate::AuditError;

/// What the writer hands a store per record.
#[derive(Debug, Clone)]
pub struct StoredItem {
    pub sealed: Sealed,
    pub index: IndexFields,
}

/// A batch-writing store, driven by the writer thread.
pub trait BatchStore: Send {
    /// Where the chain stands (for a new log, [`Head::empty`]).
    fn head(&self) -> Result<Head, AuditError>;
    /// Writes the batch, the checkpoint and the new head in one transaction.
    fn commit(
        &mut self,
        batch: &[StoredItem],
        checkpoint: Option<&Checkpoint>,
        head: &Head,
    ) -> Result<(), AuditError>;
}

/// Bit flags in the touched table's `access` column.
pub const ACCESS_READ: i64 = 1;
pub const ACCESS_WRITE: i64 = 2;

/// The columns search filters on, taken from a record before it is
/// queued (on the caller's thread, not the writer's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFields {
    pub kind: &'static str,
    pub subject: Option<String>,
    pub target: Option<String>,
    pub environment: Option<String>,
    pub session_id: Option<String>,
    pub decision: Option<&'static str>,
    pub fingerprint: Option<String>,
    pub sqlstate: Option<String>,
    /// The statement record an outcome or approval refers to.
    pub refers_to: Option<u64>,
    /// (object, column, access flags); column `""` stands for the object
    /// itself and is always present for a touched object, so "who touched
    /// this table" is one index range.
    pub touched: Vec<(String, String, i64)>,
}

impl IndexFields {
    pub fn of(record: &Record) -> Self {
        let kind = record.kind().as_str();
        match record {
            Record::Connection(c) => IndexFields {
                kind,
                subject: c.identity.as_ref().map(|i| i.subject.clone()),
                target: c.target.clone(),
                environment: c.environment.clone(),
                session_id: Some(c.session_id.clone()),
                sqlstate: match &c.result {
                    crate::record::ConnectionResult::Failed { sqlstate, .. } => {
                        sqlstate.as_ref().map(|s| s.as_str().to_owned())
                    }
                    _ => None,
                },
                ..Default::default()
            },
            Record::Statement(s) => {
                let mut touched = Vec::new();
                add_touched(&mut touched, &s.reads, ACCESS_READ);
                add_touched(&mut touched, &s.writes, ACCESS_WRITE);
                IndexFields {
                    kind,
                    subject: Some(s.identity.subject.clone()),
                    target: Some(s.destination.target.clone()),
                    environment: s.destination.environment.clone(),
                    session_id: Some(s.destination.session_id.clone()),
                    // Allowed is left out: most statements are, and the
                    // index then holds only the rest (search asks for
                    // allowed statements as those without one).
                    decision: (s.decision.effect != crate::record::Effect::Allowed)
                        .then(|| s.decision.effect.as_str()),
                    fingerprint: Some(s.fingerprint.clone()),
                    touched,
                    ..Default::default()
                }
            }
            Record::Outcome(o) => IndexFields {
                kind,
                // Found through its statement (`refers_to`), which has the
                // session: one index entry fewer per outcome.
                session_id: None,
                // Masking is known once the result has streamed: the
                // outcome says it, so `decision = masked` finds it.
                decision: (!o.masked_values.is_empty())
                    .then_some(crate::record::Effect::Masked.as_str()),
                sqlstate: o.sqlstate.as_ref().map(|s| s.as_str().to_owned()),
                refers_to: Some(o.statement_seq),
                ..Default::default()
            },
            Record::Approval(a) => IndexFields {
                kind,
                subject: a.actor.as_ref().map(|i| i.subject.clone()),
                target: Some(a.target.clone()),
                fingerprint: a.fingerprint.clone(),
                refers_to: a.statement_seq,
                ..Default::default()
            },
            Record::Reload(r) => IndexFields {
                kind,
                subject: r.requested_by.clone(),
                ..Default::default()
            },
            Record::Admin(a) => IndexFields {
                kind,
                subject: Some(a.actor.subject.clone()),
                ..Default::default()
            },
        }
    }
}

/// Merges reads and writes so each (object, column) is one row with both
/// access bits, as the touched table's key requires.
fn add_touched(out: &mut Vec<(String, String, i64)>, list: &[Touched], access: i64) {
    let mut put = |object: &str, column: &str| match out
        .iter_mut()
        .find(|(o, c, _)| o == object && c == column)
    {
        Some(row) => row.2 |= access,
        None => out.push((object.to_owned(), column.to_owned(), access)),
    };
    for t in list {
        put(&t.object, "");
        for c in &t.columns {
            put(&t.object, c);
        }
    }
}
