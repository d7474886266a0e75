//! Search: a [`Filter`] becomes a set of terms (see
//! [`crate::store::IndexFields`]) and a few conditions on the records'
//! plain columns; results come newest first. Rendering (tables, JSON
//! lines) is the CLI's.
//!
//! Two steps:
//! 1. The blocks that hold every term (the postings table, one entry per
//!    distinct term per closed block, intersected), cut to the seq range
//!    the filter allows, and the open block, which has no postings yet.
//!    Adjacent ranges merge.
//! 2. Those ranges' records, newest first, whose own `terms` hold every
//!    term and which meet the other conditions, until the limit.
//!
//! Terms: `subject`, `target`, `environment`, `session_id` (statements and
//! connections; an outcome is found through its statement),
//! `fingerprint`, `decision` (denied, held and masked; allowed statements
//! are those without a decision), `object`/`column`/`access` (a column is
//! matched within an object, `public.customers` + `ssn`; an object alone
//! matches any statement that touched it), a single kind.
//! `since`/`until` become a seq range by bisecting seqs, as `ts` never
//! decreases along the chain. `sqlstate` matches the statements whose
//! outcome carried it and connection attempts refused with it: the
//! matching outcomes are found first, then their statements. `text` is a
//! byte substring of the stored envelope (case-sensitive); alone it scans.
//!
//! [`subjects`] runs the same filter as an aggregate: who ran the matching
//! statements, how many were let through and refused, and when last
//! ("who read `public.customers.ssn` in the last 30 days").
//!
//! That is the SQLite store, one log. The PostgreSQL store holds one log
//! per node and answers the same filters across all of them with
//! PostgreSQL's own indexes ([`postgres`]). Either is a [`SearchSource`];
//! callers use [`search`], [`subjects`] and [`outcome_of`] whatever the
//! store.

mod postgres;

use rusqlite::types::Value;

use crate::store::sqlite::chunk::Row;
use crate::store::sqlite::rows::{self, Order};

use crate::chain::{Entry, LogId};
use crate::record::{Effect, Record, RecordKind, StatementOutcome, StatementRecord};
use crate::store::sqlite::SqliteStore;
use crate::store::{prefix, term};
use crate::AuditError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these kinds; empty is all.
    pub kinds: Vec<RecordKind>,
    pub subject: Option<String>,
    pub target: Option<String>,
    pub environment: Option<String>,
    pub session_id: Option<String>,
    /// Inclusive, µs since the epoch.
    pub since: Option<i64>,
    /// Exclusive, µs since the epoch.
    pub until: Option<i64>,
    /// Schema-qualified relation, as recorded (`public.customers`).
    pub object: Option<String>,
    pub column: Option<String>,
    pub access: Option<Access>,
    pub decision: Option<Effect>,
    pub fingerprint: Option<String>,
    pub sqlstate: Option<String>,
    pub text: Option<String>,
    /// Only records before this seq (paging backwards).
    pub before_seq: Option<u64>,
    /// Only records after this seq (following a log as it grows).
    /// Seqs count within a log: in a store of several logs, `before_seq`
    /// and `after_seq` apply to each, and `log` picks one.
    pub after_seq: Option<u64>,
    /// Only this log (a node's, in the PostgreSQL store).
    pub log: Option<LogId>,
    /// Most records returned; 0 means 100.
    pub limit: usize,
}

/// One record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The log (the node, in a shared store) it belongs to.
    pub log: LogId,
    pub seq: u64,
    pub ts_micros: i64,
    pub record: Record,
}

/// What search reads: a store of one log or of several. Call it through
/// [`search`], [`subjects`] and [`outcome_of`].
pub trait SearchSource {
    /// Records matching the filter, newest first (by time, then log, then
    /// seq).
    fn search(&self, filter: &Filter) -> Result<Vec<Found>, AuditError>;
    fn subjects(&self, filter: &Filter) -> Result<Vec<SubjectSummary>, AuditError>;
    fn outcome_of(&self, log: &LogId, statement_seq: u64) -> Result<Option<Found>, AuditError>;
}

/// Records matching `filter`, newest first.
pub fn search<S: SearchSource + ?Sized>(
    store: &S,
    filter: &Filter,
) -> Result<Vec<Found>, AuditError> {
    store.search(filter)
}

/// The subjects of the *statement* records `filter` matches, with counts,
/// most recently active first; `filter.kinds` and `filter.limit` are
/// ignored. With `object`, `column` and `access: Read` this answers "who
/// read this column".
pub fn subjects<S: SearchSource + ?Sized>(
    store: &S,
    filter: &Filter,
) -> Result<Vec<SubjectSummary>, AuditError> {
    store.subjects(filter)
}

/// The outcome record of the statement at `statement_seq` of `log`, if
/// written (see [`statement_outcome`] for one folded into the statement).
pub fn outcome_of<S: SearchSource + ?Sized>(
    store: &S,
    log: &LogId,
    statement_seq: u64,
) -> Result<Option<Found>, AuditError> {
    store.outcome_of(log, statement_seq)
}

/// A statement's outcome: the one folded into its record, else the
/// outcome record that names it (with that record's seq), if written.
pub fn statement_outcome<S: SearchSource + ?Sized>(
    store: &S,
    log: &LogId,
    seq: u64,
    statement: &StatementRecord,
) -> Result<Option<(Option<u64>, StatementOutcome)>, AuditError> {
    if let Some(o) = &statement.outcome {
        return Ok(Some((None, o.clone())));
    }
    Ok(match store.outcome_of(log, seq)? {
        Some(Found {
            seq,
            record: Record::Outcome(o),
            ..
        }) => Some((Some(seq), o.outcome)),
        _ => None,
    })
}

impl SearchSource for SqliteStore {
    fn search(&self, filter: &Filter) -> Result<Vec<Found>, AuditError> {
        if filter.log.as_ref().is_some_and(|l| l != self.log()) {
            return Ok(Vec::new());
        }
        search_sqlite(self, filter)
    }

    fn subjects(&self, filter: &Filter) -> Result<Vec<SubjectSummary>, AuditError> {
        if filter.log.as_ref().is_some_and(|l| l != self.log()) {
            return Ok(Vec::new());
        }
        subjects_sqlite(self, filter)
    }

    fn outcome_of(&self, log: &LogId, statement_seq: u64) -> Result<Option<Found>, AuditError> {
        if log != self.log() {
            return Ok(None);
        }
        outcome_of_sqlite(self, statement_seq)
    }
}

fn search_sqlite(store: &SqliteStore, filter: &Filter) -> Result<Vec<Found>, AuditError> {
    let limit = if filter.limit == 0 { 100 } else { filter.limit };
    let conn = store.conn();
    let plan = Plan::of(conn, filter)?;
    let mut out = Vec::new();
    // The records of `lo..=hi` that pass, newest first, up to the limit.
    let read = |lo: u64, hi: u64, out: &mut Vec<Found>| -> Result<(), AuditError> {
        rows::scan(conn, lo, hi, Order::Descending, &mut |r| {
            if plan.admits(r) {
                out.push(found(r.seq, r.ts, r.envelope)?);
            }
            Ok(out.len() < limit)
        })
    };
    if let Some(t) = &plan.sqlstate {
        // Newest first without reading every outcome that carried it:
        // statements become eligible as the walk passes below them.
        let mut walk = SqlstateWalk::new(conn, t, plan.lo, plan.hi)?;
        while out.len() < limit {
            let Some(seqs) = walk.next_eligible(conn)? else {
                break;
            };
            for (lo, hi) in merge_desc(seqs.into_iter().map(|s| (s, s))) {
                if out.len() >= limit {
                    break;
                }
                read(lo, hi, &mut out)?;
            }
        }
        return Ok(out);
    }
    for (lo, hi) in plan.ranges(conn)? {
        if out.len() >= limit {
            break;
        }
        read(lo, hi, &mut out)?;
    }
    Ok(out)
}

/// One subject's share of the statements a filter matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectSummary {
    pub subject: String,
    /// The log (node) of the latest matching statement.
    pub last_log: LogId,
    /// Statements that were let through (allowed or masked).
    pub allowed: u64,
    /// Statements refused or held for approval.
    pub refused: u64,
    /// The latest matching statement.
    pub last_seq: u64,
    pub last_ts_micros: i64,
}

fn subjects_sqlite(
    store: &SqliteStore,
    filter: &Filter,
) -> Result<Vec<SubjectSummary>, AuditError> {
    let filter = Filter {
        kinds: vec![RecordKind::Statement],
        ..filter.clone()
    };
    let conn = store.conn();
    let plan = Plan::of(conn, &filter)?;
    let mut by_subject: std::collections::HashMap<String, SubjectSummary> =
        std::collections::HashMap::new();
    for (lo, hi) in plan.ranges(conn)? {
        rows::scan(conn, lo, hi, Order::Ascending, &mut |r| {
            let Some(subject) = r.subject else {
                return Ok(true);
            };
            if !plan.admits(r) {
                return Ok(true);
            }
            let sum = match by_subject.get_mut(subject) {
                Some(sum) => sum,
                None => by_subject
                    .entry(subject.to_owned())
                    .or_insert_with(|| SubjectSummary {
                        subject: subject.to_owned(),
                        last_log: store.log().clone(),
                        allowed: 0,
                        refused: 0,
                        last_seq: 0,
                        last_ts_micros: i64::MIN,
                    }),
            };
            match r.decision {
                None | Some("masked") => sum.allowed += 1,
                Some("denied") | Some("held") => sum.refused += 1,
                Some(_) => {}
            }
            sum.last_seq = sum.last_seq.max(r.seq);
            sum.last_ts_micros = sum.last_ts_micros.max(r.ts);
            Ok(true)
        })?;
    }
    let mut out: Vec<SubjectSummary> = by_subject.into_values().collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.last_seq));
    Ok(out)
}

/// A filter, planned: the terms every matching record holds, conditions
/// on the records' plain fields, and the seq range allowed.
struct Plan {
    terms: Vec<String>,
    /// Each term as it appears in a record's `terms`: `\n{term}\n`.
    needles: Vec<String>,
    /// With several kinds: one of them (a single kind is a term).
    kinds: Vec<&'static str>,
    /// "Allowed": statements without a decision.
    no_decision: bool,
    text: Option<memchr::memmem::Finder<'static>>,
    since: Option<i64>,
    until: Option<i64>,
    lo: u64,
    hi: u64,
    /// With `sqlstate`: the term of the outcomes (and refused connection
    /// attempts) that carried it.
    sqlstate: Option<String>,
}

impl Plan {
    fn of(conn: &rusqlite::Connection, filter: &Filter) -> Result<Plan, AuditError> {
        let terms = terms_of(filter);
        let needles = terms.iter().map(|t| format!("\n{t}\n")).collect();
        let kinds = if filter.kinds.len() > 1 {
            filter.kinds.iter().map(|k| k.as_str()).collect()
        } else {
            Vec::new()
        };
        let text = filter
            .text
            .as_ref()
            .map(|t| memchr::memmem::Finder::new(t.as_bytes()).into_owned());

        // Time range → seq range (exact, since ts is monotone in seq), plus
        // the ts condition itself, which costs nothing once it is narrowed.
        let mut lo = 1u64;
        let mut hi = rows::last_seq(conn)?.unwrap_or(0);
        if let Some(since) = filter.since {
            lo = lo.max(rows::first_at_or_after(conn, since)?.unwrap_or(u64::MAX));
        }
        if let Some(until) = filter.until {
            if let Some(first) = rows::first_at_or_after(conn, until)? {
                hi = hi.min(first.saturating_sub(1));
            }
        }
        if let Some(b) = filter.before_seq {
            hi = hi.min(b.saturating_sub(1));
        }
        if let Some(a) = filter.after_seq {
            lo = lo.max(a.saturating_add(1));
        }
        let sqlstate = filter
            .sqlstate
            .as_ref()
            .map(|s| term(prefix::SQLSTATE, &[s]));
        Ok(Plan {
            terms,
            needles,
            kinds,
            no_decision: filter.decision == Some(Effect::Allowed),
            text,
            since: filter.since,
            until: filter.until,
            lo,
            hi,
            sqlstate,
        })
    }

    /// Whether a record meets the filter (its seq range aside).
    fn admits(&self, r: &Row<'_>) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&r.kind))
            && (!self.no_decision || r.decision.is_none())
            && self.needles.iter().all(|n| r.terms.contains(n.as_str()))
            && self
                .text
                .as_ref()
                .is_none_or(|f| f.find(r.envelope).is_some())
            && self.since.is_none_or(|t| r.ts >= t)
            && self.until.is_none_or(|t| r.ts < t)
    }

    /// The seq ranges to read, newest first.
    fn ranges(&self, conn: &rusqlite::Connection) -> Result<Vec<(u64, u64)>, AuditError> {
        if self.lo > self.hi {
            return Ok(Vec::new());
        }
        if let Some(t) = &self.sqlstate {
            let mut all = Vec::new();
            let mut walk = SqlstateWalk::new(conn, t, self.lo, self.hi)?;
            while let Some(mut seqs) = walk.next_eligible(conn)? {
                all.append(&mut seqs);
            }
            return Ok(merge_desc(all.into_iter().map(|s| (s, s))));
        }
        if self.terms.is_empty() {
            return Ok(vec![(self.lo, self.hi)]);
        }
        block_ranges(conn, &self.terms, self.lo, self.hi)
    }
}

/// The terms every record `filter` matches holds (see
/// [`crate::store::IndexFields`]): a single kind, subject, target,
/// environment, session, fingerprint, a decision other than allowed, the
/// object, column or access. Several kinds and "allowed" (no decision)
/// are conditions the store adds on its columns.
fn terms_of(filter: &Filter) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    // Several kinds are a condition on the kind column, not a term.
    if let [one] = filter.kinds.as_slice() {
        terms.push(term(prefix::KIND, &[one.as_str()]));
    }
    for (p, value) in [
        (prefix::SUBJECT, &filter.subject),
        (prefix::TARGET, &filter.target),
        (prefix::ENVIRONMENT, &filter.environment),
        (prefix::SESSION, &filter.session_id),
        (prefix::FINGERPRINT, &filter.fingerprint),
    ] {
        if let Some(v) = value {
            terms.push(term(p, &[v]));
        }
    }
    match filter.decision {
        // Allowed is most statements: only the others carry a
        // decision term (see `IndexFields`).
        Some(Effect::Allowed) => {
            // Statements, and the store adds "without a decision".
            terms.push(term(prefix::KIND, &[RecordKind::Statement.as_str()]));
        }
        Some(d) => terms.push(term(prefix::DECISION, &[d.as_str()])),
        None => {}
    }
    if filter.object.is_some() || filter.column.is_some() {
        let object = filter.object.as_deref().unwrap_or_default();
        let (all, read, write, values): (&str, &str, &str, Vec<&str>) =
            match filter.column.as_deref() {
                None | Some("") => (
                    prefix::OBJECT,
                    prefix::OBJECT_READ,
                    prefix::OBJECT_WRITE,
                    vec![object],
                ),
                Some(c) => (
                    prefix::COLUMN,
                    prefix::COLUMN_READ,
                    prefix::COLUMN_WRITE,
                    vec![object, c],
                ),
            };
        let p = match filter.access {
            None => all,
            Some(Access::Read) => read,
            Some(Access::Write) => write,
        };
        terms.push(term(p, &values));
    } else if let Some(a) = filter.access {
        terms.push(term(
            prefix::ACCESS,
            &[match a {
                Access::Read => "r",
                Access::Write => "w",
            }],
        ));
    }
    terms
}

/// The closed blocks (as seq ranges, newest first, clipped to `lo..=hi`)
/// that hold every one of `terms`, after the open block (the records
/// after the last closed block, which have no postings yet and are always
/// read).
fn block_ranges(
    conn: &rusqlite::Connection,
    terms: &[String],
    lo: u64,
    hi: u64,
) -> Result<Vec<(u64, u64)>, AuditError> {
    let indexed: i64 = conn.query_row(
        "SELECT COALESCE(MAX(last_seq), 0) FROM audit_blocks",
        [],
        |r| r.get(0),
    )?;
    let indexed = indexed.max(0) as u64;
    let mut ranges = Vec::new();
    if hi > indexed {
        ranges.push((lo.max(indexed + 1), hi));
    }
    let postings: Vec<String> = (0..terms.len())
        .map(|i| {
            format!(
                "SELECT block FROM audit_terms WHERE term = ?{} AND block <= ?2",
                i + 3
            )
        })
        .collect();
    let sql = format!(
        "SELECT first_seq, last_seq FROM audit_blocks \
         WHERE first_seq IN ({}) AND last_seq >= ?1 AND first_seq <= ?2 \
         ORDER BY first_seq DESC",
        postings.join(" INTERSECT ")
    );
    let mut args: Vec<Value> = vec![Value::Integer(lo as i64), Value::Integer(hi as i64)];
    args.extend(terms.iter().map(|t| Value::Text(t.clone())));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })?;
    for row in rows {
        let (first, last) = row?;
        ranges.push((first.max(lo), last.min(hi)));
    }
    Ok(merge_desc(ranges.into_iter().filter(|(a, b)| a <= b)))
}

/// Merges ranges given newest first where one ends right below the next.
fn merge_desc(ranges: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if hi.saturating_add(1) == last.0 => last.0 = lo,
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// How many seqs the sqlstate walk reads per step.
const WALK_STEP: u64 = 65_536;

/// The seqs a `sqlstate` filter matches within `lo..=hi` (statements whose
/// outcome carried it, connection attempts refused with it), newest first,
/// found by walking the blocks that hold the term from the newest down, a
/// step at a time. An outcome comes after its statement, so once the walk
/// has passed below seq `x`, every match at or above `x` has been seen:
/// those are *eligible* and handed out, in descending order.
struct SqlstateWalk {
    needle: String,
    /// The blocks holding the term, newest first, not yet walked.
    ranges: Vec<(u64, u64)>,
    /// Matches seen but not yet eligible.
    pool: Vec<u64>,
    lo: u64,
    hi: u64,
}

impl SqlstateWalk {
    fn new(conn: &rusqlite::Connection, term: &str, lo: u64, hi: u64) -> Result<Self, AuditError> {
        // An outcome comes after its statement: from `lo` to the newest
        // record (not beyond: the open block's range would reach it).
        let newest = rows::last_seq(conn)?.unwrap_or(0);
        let mut ranges = block_ranges(conn, &[term.to_owned()], lo, newest)?;
        ranges.reverse(); // popped from the end: newest first
        Ok(SqlstateWalk {
            needle: format!("\n{term}\n"),
            ranges,
            pool: Vec::new(),
            lo,
            hi,
        })
    }

    /// The next eligible matches (descending), or `None` when done.
    fn next_eligible(
        &mut self,
        conn: &rusqlite::Connection,
    ) -> Result<Option<Vec<u64>>, AuditError> {
        let Some((a, b)) = self.ranges.pop() else {
            if self.pool.is_empty() {
                return Ok(None);
            }
            let mut rest = std::mem::take(&mut self.pool);
            rest.sort_unstable_by(|x, y| y.cmp(x));
            rest.dedup();
            return Ok(Some(rest));
        };
        // At most a step of the newest range; the rest waits its turn.
        let from = a.max(b.saturating_sub(WALK_STEP - 1));
        if from > a {
            self.ranges.push((a, from - 1));
        }
        let (lo, hi, needle, pool) = (self.lo, self.hi, &self.needle, &mut self.pool);
        rows::scan(conn, from, b, Order::Ascending, &mut |r| {
            if r.terms.contains(needle.as_str()) {
                let s = r.refers_to.unwrap_or(r.seq);
                if (lo..=hi).contains(&s) {
                    pool.push(s);
                }
            }
            Ok(true)
        })?;
        // Every statement at or above `from` has its outcome at or above
        // it too: all of those are in the pool now.
        let (mut ready, rest): (Vec<u64>, Vec<u64>) = self.pool.drain(..).partition(|&s| s >= from);
        self.pool = rest;
        ready.sort_unstable_by(|x, y| y.cmp(x));
        ready.dedup();
        Ok(Some(ready))
    }
}

/// The outcome record of the statement at `statement_seq`, if written:
/// in the first closed block after the statement whose outcomes refer to
/// it, else in the open block.
fn outcome_of_sqlite(store: &SqliteStore, statement_seq: u64) -> Result<Option<Found>, AuditError> {
    let conn = store.conn();
    let s = i64::try_from(statement_seq).unwrap_or(i64::MAX);
    let mut ranges: Vec<(u64, u64)> = conn
        .prepare_cached(
            "SELECT first_seq, last_seq FROM audit_blocks \
             WHERE last_seq > ?1 AND ref_min <= ?1 AND ref_max >= ?1 ORDER BY first_seq",
        )?
        .query_map([s], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<Result<_, _>>()?;
    let indexed: i64 = conn.query_row(
        "SELECT COALESCE(MAX(last_seq), 0) FROM audit_blocks",
        [],
        |r| r.get(0),
    )?;
    ranges.push(((indexed.max(0) as u64).max(statement_seq) + 1, u64::MAX));
    for (lo, hi) in ranges {
        let mut out = None;
        rows::scan(conn, lo, hi, Order::Ascending, &mut |r| {
            if r.refers_to == Some(statement_seq) && r.kind == RecordKind::Outcome.as_str() {
                out = Some(found(r.seq, r.ts, r.envelope)?);
                return Ok(false);
            }
            Ok(true)
        })?;
        if out.is_some() {
            return Ok(out);
        }
    }
    Ok(None)
}

fn found(seq: u64, ts: i64, envelope: &[u8]) -> Result<Found, AuditError> {
    // serde's message can quote the record; say where, not what.
    let entry = Entry::parse(envelope).map_err(|e| AuditError::Corrupt {
        what: "record",
        why: format!("seq {seq} unreadable at column {}", e.column()),
    })?;
    Ok(Found {
        log: entry.log,
        seq,
        ts_micros: ts,
        record: entry.record,
    })
}
