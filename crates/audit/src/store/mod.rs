//! Stores: where sealed records, their search columns and checkpoints land.
//!
//! A store receives whole batches ([`BatchStore::commit`]): the sealed
//! envelopes, the terms search needs, at most one checkpoint and the new
//! head, all in one transaction, so a crash leaves either all of a batch
//! or none of it. SQLite is the embedded store; the PostgreSQL store
//! ([`postgres`]) is shared by several proxies, one chain per node.
//! [`Store`] is either, for the readers (search, verification) that take
//! whichever the configuration names.

mod any;
pub mod postgres;
pub mod sqlite;

pub use any::Store;

use crate::chain::{Head, Sealed};
use crate::checkpoint::Checkpoint;
use crate::record::{Record, Touched};
use crate::AuditError;
use std::sync::Arc;

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

/// The columns search filters on, taken from a record before it is
/// queued (on the caller's thread, not the writer's).
///
/// Search works in two steps (see [`crate::search`]): the blocks that
/// hold a term at all (one posting per distinct term per block of
/// thousands of records), then the records of those blocks whose own
/// `terms` hold it.
/// `kind`, `subject`, `decision` and `refers_to` are kept as plain
/// columns for aggregates and for finding an outcome; no per-record index
/// is maintained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFields {
    pub kind: &'static str,
    /// Shared (as `terms`): a statement template's records all carry the
    /// same, so rendering one clones no string.
    pub subject: Option<Arc<str>>,
    /// Set for statements that were not simply allowed, and for outcomes
    /// (folded in or on their own) that masked values (`masked`).
    pub decision: Option<&'static str>,
    /// The statement record an outcome or approval refers to.
    pub refers_to: Option<u64>,
    /// Every term of the record, each followed by `\n`, the first preceded
    /// by one: `\nk:statement\ns:alice\n…` (see [`term`]).
    pub terms: Arc<str>,
}

/// The term prefixes (see [`term`]).
pub mod prefix {
    pub const KIND: &str = "k";
    pub const SUBJECT: &str = "s";
    pub const TARGET: &str = "t";
    pub const ENVIRONMENT: &str = "e";
    pub const SESSION: &str = "x";
    pub const DECISION: &str = "d";
    pub const FINGERPRINT: &str = "f";
    pub const SQLSTATE: &str = "q";
    /// A relation touched in any way, read, written.
    pub const OBJECT: &str = "o";
    pub const OBJECT_READ: &str = "or";
    pub const OBJECT_WRITE: &str = "ow";
    /// A column (`object|column`) touched in any way, read, written.
    pub const COLUMN: &str = "c";
    pub const COLUMN_READ: &str = "cr";
    pub const COLUMN_WRITE: &str = "cw";
    /// The statement read (`a:r`) or wrote (`a:w`) some relation.
    pub const ACCESS: &str = "a";
}

/// One term: `prefix:value`, with `\`, `\n` and `|` in values escaped
/// (`\\`, `\n`, `\|`) so that no value can spell another term or split
/// a column term in the wrong place.
pub fn term(prefix: &str, values: &[&str]) -> String {
    let mut out =
        String::with_capacity(prefix.len() + 1 + values.iter().map(|v| v.len() + 1).sum::<usize>());
    push_term(&mut out, prefix, values);
    out
}

fn push_term(out: &mut String, prefix: &str, values: &[&str]) {
    out.push_str(prefix);
    out.push(':');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        let mut rest = *v;
        while let Some(at) = rest.bytes().position(|b| matches!(b, b'\\' | b'\n' | b'|')) {
            out.push_str(&rest[..at]);
            out.push_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'\n' => "\\n",
                _ => "\\|",
            });
            rest = &rest[at + 1..];
        }
        out.push_str(rest);
    }
}

/// Builds a record's `terms` column.
struct Terms(String);

impl Terms {
    fn new() -> Self {
        let mut s = String::with_capacity(256);
        s.push('\n');
        Terms(s)
    }

    fn add(&mut self, prefix: &str, values: &[&str]) {
        push_term(&mut self.0, prefix, values);
        self.0.push('\n');
    }

    fn opt(&mut self, prefix: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.add(prefix, &[v]);
        }
    }

    fn touched(&mut self, reads: &[Touched], writes: &[Touched]) {
        // Merged so each (object, column) appears once per access kind.
        let mut seen: Vec<(&str, &str, u8)> = Vec::new();
        for (list, bit) in [(reads, 1u8), (writes, 2u8)] {
            for t in list {
                let cols = std::iter::once("").chain(t.columns.iter().map(String::as_str));
                for c in cols {
                    match seen
                        .iter_mut()
                        .find(|(o, cc, _)| *o == t.object && *cc == c)
                    {
                        Some(row) => row.2 |= bit,
                        None => seen.push((&t.object, c, bit)),
                    }
                }
            }
        }
        let mut any = 0u8;
        for (object, column, bits) in seen {
            any |= bits;
            let (all, read, write, values): (&str, &str, &str, &[&str]) = if column.is_empty() {
                (
                    prefix::OBJECT,
                    prefix::OBJECT_READ,
                    prefix::OBJECT_WRITE,
                    &[object],
                )
            } else {
                (
                    prefix::COLUMN,
                    prefix::COLUMN_READ,
                    prefix::COLUMN_WRITE,
                    &[object, column],
                )
            };
            self.add(all, values);
            if bits & 1 != 0 {
                self.add(read, values);
            }
            if bits & 2 != 0 {
                self.add(write, values);
            }
        }
        if any & 1 != 0 {
            self.add(prefix::ACCESS, &["r"]);
        }
        if any & 2 != 0 {
            self.add(prefix::ACCESS, &["w"]);
        }
    }
}

/// `masked` when an outcome says values were masked.
fn masked(o: &crate::record::StatementOutcome) -> Option<&'static str> {
    (!o.masked_values.is_empty()).then_some(crate::record::Effect::Masked.as_str())
}

impl IndexFields {
    pub fn of(record: &Record) -> Self {
        let kind = record.kind().as_str();
        let mut terms = Terms::new();
        terms.add(prefix::KIND, &[kind]);
        let mut fields = IndexFields {
            kind,
            ..Default::default()
        };
        match record {
            Record::Connection(c) => {
                fields.subject = c.identity.as_ref().map(|i| Arc::from(i.subject.as_str()));
                terms.opt(prefix::SUBJECT, fields.subject.as_deref());
                terms.opt(prefix::TARGET, c.target.as_deref());
                terms.opt(prefix::ENVIRONMENT, c.environment.as_deref());
                terms.add(prefix::SESSION, &[&c.session_id]);
                if let crate::record::ConnectionResult::Failed {
                    sqlstate: Some(s), ..
                } = &c.result
                {
                    terms.add(prefix::SQLSTATE, &[s.as_str()]);
                }
            }
            Record::Statement(s) => {
                fields.subject = Some(Arc::from(s.identity.subject.as_str()));
                // Allowed is left out: most statements are, and search
                // asks for allowed statements as those without one.
                fields.decision = (s.decision.effect != crate::record::Effect::Allowed)
                    .then(|| s.decision.effect.as_str());
                terms.add(prefix::SUBJECT, &[&s.identity.subject]);
                terms.add(prefix::TARGET, &[&s.destination.target]);
                terms.opt(prefix::ENVIRONMENT, s.destination.environment.as_deref());
                terms.add(prefix::SESSION, &[&s.destination.session_id]);
                terms.opt(prefix::DECISION, fields.decision);
                terms.add(prefix::FINGERPRINT, &[&s.fingerprint]);
                terms.touched(&s.reads, &s.writes);
                if let Some(o) = &s.outcome {
                    fields.terms = Arc::from(terms.0);
                    fields.fold(o);
                    return fields;
                }
            }
            Record::Outcome(o) => return Self::outcome(o.statement_seq, &o.outcome),
            Record::Approval(a) => {
                fields.subject = a.actor.as_ref().map(|i| Arc::from(i.subject.as_str()));
                fields.refers_to = a.statement_seq;
                terms.opt(prefix::SUBJECT, fields.subject.as_deref());
                terms.add(prefix::TARGET, &[&a.target]);
                terms.opt(prefix::FINGERPRINT, a.fingerprint.as_deref());
            }
            Record::Reload(r) => {
                fields.subject = r.requested_by.as_deref().map(Arc::from);
                terms.opt(prefix::SUBJECT, fields.subject.as_deref());
            }
            Record::Admin(a) => {
                fields.subject = Some(Arc::from(a.actor.subject.as_str()));
                terms.add(prefix::SUBJECT, &[&a.actor.subject]);
            }
        }
        fields.terms = Arc::from(terms.0);
        fields
    }

    /// The fields of the outcome record of the statement at
    /// `statement_seq`. It is found through its statement (`refers_to`),
    /// which has the session. Masking is known once the result has
    /// streamed: the outcome says it, so `decision = masked` finds it.
    pub fn outcome(statement_seq: u64, outcome: &crate::record::StatementOutcome) -> Self {
        let kind = crate::record::RecordKind::Outcome.as_str();
        let mut terms = Terms::new();
        terms.add(prefix::KIND, &[kind]);
        let decision = masked(outcome);
        terms.opt(prefix::DECISION, decision);
        terms.opt(
            prefix::SQLSTATE,
            outcome.sqlstate.as_ref().map(|s| s.as_str()),
        );
        IndexFields {
            kind,
            subject: None,
            decision,
            refers_to: Some(statement_seq),
            terms: Arc::from(terms.0),
        }
    }

    /// A statement's fields once its outcome is folded into it: the
    /// outcome's SQLSTATE becomes a term of the statement, and values
    /// masked make an allowed statement `masked`. `of` a statement record
    /// with its outcome is `of` the record without it, then `fold`.
    pub fn fold(&mut self, outcome: &crate::record::StatementOutcome) {
        let added = if self.decision.is_none() {
            masked(outcome)
        } else {
            None
        };
        self.decision = self.decision.or(added);
        let sqlstate = outcome.sqlstate.as_ref().map(|s| s.as_str());
        if added.is_none() && sqlstate.is_none() {
            // Most statements succeed unmasked: their terms stay shared.
            return;
        }
        let mut terms = Terms(String::from(&*self.terms));
        terms.opt(prefix::DECISION, added);
        terms.opt(prefix::SQLSTATE, sqlstate);
        self.terms = Arc::from(terms.0);
    }

    /// The record's terms, one by one.
    pub fn each_term(&self) -> impl Iterator<Item = &str> {
        self.terms.split('\n').filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_spell_other_terms() {
        assert_eq!(term("s", &["alice"]), "s:alice");
        assert_eq!(term("s", &["x\ns:alice"]), "s:x\\ns:alice");
        assert_eq!(term("c", &["a|b", "c"]), "c:a\\|b|c");
        assert_ne!(term("c", &["a|b", "c"]), term("c", &["a", "b|c"]));
        assert_eq!(term("s", &["a\\n"]), "s:a\\\\n");
        assert_ne!(term("s", &["a\\n"]), term("s", &["a\n"]));
    }
}
