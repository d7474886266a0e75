//! Records in the form the writer takes, and statement records rendered
//! from a template.
//!
//! A record is encoded (canonical bytes plus search fields) on the
//! submitter's thread, so the single writer only seals, hashes and stores.
//! Encoding a statement record means building it (identity, source,
//! destination, decision: a dozen owned strings) and walking it with the
//! serializer: about 5 µs, a tenth of what a proxied statement costs.
//! Yet a session's statement records mostly differ in one field: the
//! statement id. The same prepared statement executed again, or a query
//! of the same shape (whose judgement and normalised text the proxy
//! shares), makes the same record but for its number. A
//! [`StatementTemplate`] is such a record encoded once with its id cut
//! out; [`StatementTemplate::render`] copies the bytes around a new id.
//! Tests check that a rendered record is byte for byte the record encoded
//! whole, with the same search fields, and that an outcome folded into it
//! gives the bytes of the record encoded with that outcome.

use crate::canonical;
use crate::record::{Record, StatementOutcome};
use crate::store::IndexFields;
use crate::AuditError;

/// A record's canonical bytes and search fields, ready for the queue.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) index: IndexFields,
    /// A statement record without an outcome: one may be folded in.
    pub(crate) foldable: bool,
    /// Where that outcome goes, when known (see
    /// [`canonical::member_slot`]); found by a walk of the bytes if not.
    pub(crate) outcome_slot: Option<usize>,
}

impl Encoded {
    pub fn of(record: &Record) -> Result<Self, AuditError> {
        Ok(Encoded {
            bytes: canonical::encode(record)?,
            index: IndexFields::of(record),
            foldable: matches!(record, Record::Statement(s) if s.outcome.is_none()),
            outcome_slot: None,
        })
    }

    /// The outcome record of the statement at `statement_seq` (a
    /// [`crate::record::OutcomeRecord`]): the bytes and fields of
    /// `Encoded::of` that record, written directly.
    pub fn outcome(
        statement_seq: u64,
        session_id: &str,
        statement_id: u64,
        outcome: &StatementOutcome,
    ) -> Self {
        // The outcome's members are flattened into the record, so the
        // record's own members fall in between (key order).
        let mut bytes = Vec::with_capacity(192 + session_id.len());
        bytes.push(b'{');
        write_outcome_members(outcome, Some(session_id), &mut bytes);
        bytes.extend_from_slice(b",\"statement_id\":");
        canonical::write_u64(statement_id, &mut bytes);
        bytes.extend_from_slice(b",\"statement_seq\":");
        canonical::write_u64(statement_seq, &mut bytes);
        bytes.extend_from_slice(b",\"type\":\"outcome\"}");
        Encoded {
            bytes,
            index: IndexFields::outcome(statement_seq, outcome),
            foldable: false,
            outcome_slot: None,
        }
    }

    /// The canonical bytes of the record.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its search fields.
    pub fn index(&self) -> &IndexFields {
        &self.index
    }

    /// Adds `outcome` to a statement record without one: the bytes and
    /// search fields become those of the record encoded with it. Fails
    /// (changing nothing) on any other record.
    pub fn fold(&mut self, outcome: &StatementOutcome) -> Result<(), AuditError> {
        if !self.foldable {
            return Err(AuditError::Canonical(canonical::CanonicalError::Serde(
                "only a statement record without an outcome takes one".into(),
            )));
        }
        match self.outcome_slot {
            Some(at) => canonical::insert_member_with(&mut self.bytes, at, "outcome", |out| {
                write_outcome(outcome, out)
            }),
            None => {
                let mut value = Vec::with_capacity(128);
                write_outcome(outcome, &mut value);
                canonical::insert_member(&mut self.bytes, "outcome", &value)?
            }
        }
        self.index.fold(outcome);
        self.foldable = false;
        self.outcome_slot = None;
        Ok(())
    }
}

/// Writes `o` canonically: what [`canonical::encode`] writes (a test
/// folds random outcomes both ways), without the serializer's key sorting
/// and buffers, for the one record every statement has.
///
/// `session_id`, an outcome record's own member, is written after `rows`
/// and before `sqlstate`.
fn write_outcome_members(o: &StatementOutcome, session_id: Option<&str>, out: &mut Vec<u8>) {
    // Members in key order: bytes, command, detector_hits,
    // duration_micros, masked_values, rows, (session_id), sqlstate.
    out.extend_from_slice(b"\"bytes\":");
    canonical::write_u64(o.bytes, out);
    if let Some(c) = &o.command {
        out.extend_from_slice(b",\"command\":");
        canonical::write_str(c, out);
    }
    write_counts(b",\"detector_hits\":", &o.detector_hits, out);
    out.extend_from_slice(b",\"duration_micros\":");
    canonical::write_u64(o.duration_micros, out);
    write_counts(b",\"masked_values\":", &o.masked_values, out);
    if let Some(r) = o.rows {
        out.extend_from_slice(b",\"rows\":");
        canonical::write_u64(r, out);
    }
    if let Some(id) = session_id {
        out.extend_from_slice(b",\"session_id\":");
        canonical::write_str(id, out);
    }
    if let Some(s) = &o.sqlstate {
        out.extend_from_slice(b",\"sqlstate\":");
        canonical::write_str(s.as_str(), out);
    }
}

/// A folded outcome: `{` its members `}`.
fn write_outcome(o: &StatementOutcome, out: &mut Vec<u8>) {
    out.push(b'{');
    write_outcome_members(o, None, out);
    out.push(b'}');
}

/// A map of counts, left out when empty. A `BTreeMap<String, _>` iterates
/// in the byte order of its keys, which is the canonical order.
fn write_counts(
    member: &[u8],
    counts: &std::collections::BTreeMap<String, u64>,
    out: &mut Vec<u8>,
) {
    if counts.is_empty() {
        return;
    }
    out.extend_from_slice(member);
    out.push(b'{');
    for (i, (k, v)) in counts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        canonical::write_str(k, out);
        out.push(b':');
        canonical::write_u64(*v, out);
    }
    out.push(b'}');
}

/// A statement record encoded once with its statement id left open.
#[derive(Debug, Clone)]
pub struct StatementTemplate {
    /// The bytes before the id's digits, and after them.
    head: Vec<u8>,
    tail: Vec<u8>,
    index: IndexFields,
    foldable: bool,
    /// Where an outcome goes; it sorts before `statement_id`, so it is an
    /// offset into `head` and the same in every rendering.
    outcome_slot: Option<usize>,
}

impl StatementTemplate {
    /// The template of `record`, a statement record (its own statement id
    /// is the one left open).
    pub fn new(record: &Record) -> Result<Self, AuditError> {
        let not_a_statement = || {
            AuditError::Canonical(canonical::CanonicalError::Serde(
                "a template is made of a statement record".into(),
            ))
        };
        if !matches!(record, Record::Statement(_)) {
            return Err(not_a_statement());
        }
        let encoded = Encoded::of(record)?;
        let id =
            canonical::member_value(&encoded.bytes, b"statement_id").ok_or_else(not_a_statement)?;
        let outcome_slot = if encoded.foldable {
            canonical::member_slot(&encoded.bytes, b"outcome").filter(|&at| at <= id.start)
        } else {
            None
        };
        Ok(StatementTemplate {
            head: encoded.bytes[..id.start].to_vec(),
            tail: encoded.bytes[id.end..].to_vec(),
            index: encoded.index,
            foldable: encoded.foldable,
            outcome_slot,
        })
    }

    /// The record with `statement_id` for its id.
    pub fn render(&self, statement_id: u64) -> Encoded {
        let mut bytes = Vec::with_capacity(self.head.len() + 20 + self.tail.len() + 160);
        bytes.extend_from_slice(&self.head);
        canonical::write_u64(statement_id, &mut bytes);
        bytes.extend_from_slice(&self.tail);
        Encoded {
            bytes,
            index: self.index.clone(),
            foldable: self.foldable,
            outcome_slot: self.outcome_slot,
        }
    }
}
