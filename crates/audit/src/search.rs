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
    let n = plan.args.len();
    let sql = format!(
        "SELECT r.seq, r.ts, r.envelope FROM audit_records r \
         WHERE r.seq BETWEEN ?{} AND ?{}{} ORDER BY r.seq DESC LIMIT ?{}",
        n + 1,
        n + 2,
        plan.conditions(),
        n + 3
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut out = Vec::new();
    // The records of `lo..=hi` that pass, newest first, up to the limit.
    let mut read = |lo: u64, hi: u64, out: &mut Vec<Found>| -> Result<(), AuditError> {
        let mut args = plan.args.clone();
        args.extend([
            Value::Integer(lo as i64),
            Value::Integer(hi as i64),
            Value::Integer((limit - out.len()) as i64),
        ]);
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        while let Some(row) = rows.next()? {
            out.push(found(row.get(0)?, row.get(1)?, &row.get::<_, Vec<u8>>(2)?)?);
        }
        Ok(())
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
    let sql = format!(
        "SELECT r.subject, \
         SUM(CASE WHEN r.decision IS NULL OR r.decision = 'masked' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN r.decision IN ('denied', 'held') THEN 1 ELSE 0 END), \
         MAX(r.seq), MAX(r.ts) \
         FROM audit_records r \
         WHERE r.seq BETWEEN ?{} AND ?{} AND r.subject IS NOT NULL{} \
         GROUP BY r.subject",
        plan.args.len() + 1,
        plan.args.len() + 2,
        plan.conditions()
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut by_subject: std::collections::HashMap<String, SubjectSummary> =
        std::collections::HashMap::new();
    for (lo, hi) in plan.ranges(conn)? {
        let mut args = plan.args.clone();
        args.extend([Value::Integer(lo as i64), Value::Integer(hi as i64)]);
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            let part = SubjectSummary {
                subject: r.get(0)?,
                last_log: store.log().clone(),
                allowed: r.get::<_, i64>(1)? as u64,
                refused: r.get::<_, i64>(2)? as u64,
                last_seq: r.get::<_, i64>(3)? as u64,
                last_ts_micros: r.get(4)?,
            };
            match by_subject.get_mut(&part.subject) {
                Some(sum) => {
                    sum.allowed += part.allowed;
                    sum.refused += part.refused;
                    sum.last_seq = sum.last_seq.max(part.last_seq);
                    sum.last_ts_micros = sum.last_ts_micros.max(part.last_ts_micros);
                }
                None => {
                    by_subject.insert(part.subject.clone(), part);
                }
            }
        }
    }
    let mut out: Vec<SubjectSummary> = by_subject.into_values().collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.last_seq));
    Ok(out)
}

/// A filter, planned: the terms every matching record holds, conditions
/// on the records' plain columns, and the seq range allowed.
struct Plan {
    terms: Vec<String>,
    /// SQL conditions on `r`, their placeholders numbered from 1 (the
    /// caller binds its own after them).
    conds: Vec<String>,
    args: Vec<Value>,
    lo: u64,
    hi: u64,
    /// With `sqlstate`: the term of the outcomes (and refused connection
    /// attempts) that carried it.
    sqlstate: Option<String>,
}

impl Plan {
    fn of(conn: &rusqlite::Connection, filter: &Filter) -> Result<Plan, AuditError> {
        let mut conds: Vec<String> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let arg = |v: Value, args: &mut Vec<Value>| {
            args.push(v);
            format!("?{}", args.len())
        };

        let terms = terms_of(filter);
        if filter.kinds.len() > 1 {
            let list: Vec<String> = filter
                .kinds
                .iter()
                .map(|k| arg(Value::Text(k.as_str().to_owned()), &mut args))
                .collect();
            conds.push(format!("r.kind IN ({})", list.join(", ")));
        }
        if filter.decision == Some(Effect::Allowed) {
            conds.push("r.decision IS NULL".into());
        }
        for t in &terms {
            conds.push(format!(
                "instr(r.terms, {}) > 0",
                arg(Value::Text(format!("\n{t}\n")), &mut args)
            ));
        }
        if let Some(t) = &filter.text {
            conds.push(format!(
                "instr(r.envelope, {}) > 0",
                arg(Value::Blob(t.as_bytes().to_vec()), &mut args)
            ));
        }

        // Time range → seq range (exact, since ts is monotone in seq), plus
        // the ts condition itself, which costs nothing once it is narrowed.
        let mut lo = 1u64;
        let mut hi = last_seq(conn)?.unwrap_or(0).max(0) as u64;
        if let Some(since) = filter.since {
            lo = lo.max(first_seq_at_or_after(conn, since)?.map_or(u64::MAX, |s| s as u64));
            conds.push(format!("r.ts >= {}", arg(Value::Integer(since), &mut args)));
        }
        if let Some(until) = filter.until {
            if let Some(first) = first_seq_at_or_after(conn, until)? {
                hi = hi.min((first as u64).saturating_sub(1));
            }
            conds.push(format!("r.ts < {}", arg(Value::Integer(until), &mut args)));
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
            conds,
            args,
            lo,
            hi,
            sqlstate,
        })
    }

    /// The conditions as SQL, each preceded by `AND`.
    fn conditions(&self) -> String {
        self.conds.iter().map(|c| format!(" AND {c}")).collect()
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
        let newest: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_records", [], |r| {
                r.get(0)
            })?;
        let mut ranges = block_ranges(conn, &[term.to_owned()], lo, newest.max(0) as u64)?;
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
        let mut stmt = conn.prepare_cached(
            "SELECT COALESCE(refers_to, seq) FROM audit_records \
             WHERE seq BETWEEN ?1 AND ?2 AND instr(terms, ?3) > 0",
        )?;
        let rows = stmt.query_map(rusqlite::params![from as i64, b as i64, self.needle], |r| {
            r.get::<_, i64>(0)
        })?;
        for s in rows {
            let s = s? as u64;
            if (self.lo..=self.hi).contains(&s) {
                self.pool.push(s);
            }
        }
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
    let mut in_blocks = conn.prepare_cached(
        "SELECT r.seq, r.ts, r.envelope FROM audit_blocks b \
         JOIN audit_records r ON r.seq BETWEEN b.first_seq AND b.last_seq \
         WHERE b.last_seq > ?1 AND b.ref_min <= ?1 AND b.ref_max >= ?1 \
         AND r.refers_to = ?1 AND r.kind = 'outcome' \
         ORDER BY b.first_seq, r.seq LIMIT 1",
    )?;
    let mut in_open = conn.prepare_cached(
        "SELECT seq, ts, envelope FROM audit_records \
         WHERE seq > MAX(?1, (SELECT COALESCE(MAX(last_seq), 0) FROM audit_blocks)) \
         AND refers_to = ?1 AND kind = 'outcome' ORDER BY seq LIMIT 1",
    )?;
    for stmt in [&mut in_blocks, &mut in_open] {
        let mut rows = stmt.query([statement_seq as i64])?;
        if let Some(r) = rows.next()? {
            return Ok(Some(found(r.get(0)?, r.get(1)?, &r.get::<_, Vec<u8>>(2)?)?));
        }
    }
    Ok(None)
}

/// The first seq whose ts is at or after `ts`, found by bisecting seqs
/// (ts never decreases along the chain, so no ts index is kept). Each
/// probe is a rowid lookup; gaps in seqs (deleted rows) are stepped over.
fn first_seq_at_or_after(conn: &rusqlite::Connection, ts: i64) -> Result<Option<i64>, AuditError> {
    use rusqlite::OptionalExtension;
    let Some(last) = last_seq(conn)? else {
        return Ok(None);
    };
    let mut probe = conn
        .prepare_cached("SELECT seq, ts FROM audit_records WHERE seq >= ?1 ORDER BY seq LIMIT 1")?;
    // Invariant: every seq below `lo` has ts < `ts`; `hi` is at or after.
    let (mut lo, mut hi) = (0i64, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let row: Option<(i64, i64)> = probe
            .query_row([mid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            Some((seq, t)) if t < ts => lo = seq + 1,
            _ => hi = mid,
        }
    }
    let first: Option<i64> = probe.query_row([lo], |r| r.get::<_, i64>(0)).optional()?;
    Ok(first)
}

fn last_seq(conn: &rusqlite::Connection) -> Result<Option<i64>, AuditError> {
    Ok(conn.query_row("SELECT max(seq) FROM audit_records", [], |r| r.get(0))?)
}

fn found(seq: i64, ts: i64, envelope: &[u8]) -> Result<Found, AuditError> {
    // serde's message can quote the record; say where, not what.
    let entry = Entry::parse(envelope).map_err(|e| AuditError::Corrupt {
        what: "record",
        why: format!("seq {seq} unreadable at column {}", e.column()),
    })?;
    Ok(Found {
        log: entry.log,
        seq: seq as u64,
        ts_micros: ts,
        record: entry.record,
    })
}
