//! Search: a [`Filter`] becomes one SQL query over the store's search
//! columns, newest first. Rendering (tables, JSON lines) is the CLI's.
//!
//! Filters combine with AND. Each is served by an index:
//! - `subject`, `target`, `session_id`, `fingerprint`: a one-column index
//!   (which SQLite keys by seq too, so "newest first, 100 of them" reads
//!   100 index entries); outcomes carry no session id of their own (they
//!   are found through their statement);
//! - `decision`: indexed for denied, held and masked statements (allowed
//!   ones, most of them, are those without a decision column, read newest
//!   first);
//! - `since`/`until`: turned into a seq range by bisecting seqs, as `ts`
//!   never decreases along the chain (no ts index to maintain);
//! - `object`/`column`: the touched table, keyed (object, column, seq);
//!   a column is matched within an object (`public.customers` + `ssn`), and
//!   an object alone matches any statement that touched it;
//! - `sqlstate`: matches statements whose outcome carried that SQLSTATE,
//!   and connection attempts refused with it;
//! - `text`: a byte substring of the stored envelope (case-sensitive). It
//!   has no index: alone it scans; combine it with an indexed filter.
//!
//! `environment` is not indexed (few distinct values); it narrows what the
//! other filters find.
//!
//! [`subjects`] runs the same filter as an aggregate: who ran the matching
//! statements, how many were let through and refused, and when last
//! ("who read `public.customers.ssn` in the last 30 days").

use rusqlite::types::Value;

use crate::chain::Entry;
use crate::record::{Effect, Record, RecordKind};
use crate::store::sqlite::SqliteStore;
use crate::store::{ACCESS_READ, ACCESS_WRITE};
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
    pub after_seq: Option<u64>,
    /// Most records returned; 0 means 100.
    pub limit: usize,
}

/// One record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub seq: u64,
    pub ts_micros: i64,
    pub record: Record,
}

/// A filter as SQL: the tables to read, the column that holds the seq,
/// the conditions and their bound values.
struct Query {
    from: &'static str,
    seq_col: &'static str,
    conds: Vec<String>,
    args: Vec<Value>,
}

impl Query {
    fn where_clause(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conds.join(" AND "))
        }
    }
}

/// Records matching `filter`, newest first.
pub fn search(store: &SqliteStore, filter: &Filter) -> Result<Vec<Found>, AuditError> {
    let mut q = query(store.conn(), filter)?;
    let limit = if filter.limit == 0 { 100 } else { filter.limit };
    let sql = format!(
        "SELECT r.seq, r.ts, r.envelope FROM {} {} ORDER BY {} DESC LIMIT {}",
        q.from,
        q.where_clause(),
        q.seq_col,
        arg(Value::Integer(limit as i64), &mut q.args)
    );
    let mut stmt = store.conn().prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(q.args), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, ts, envelope) = row?;
        out.push(found(seq, ts, &envelope)?);
    }
    Ok(out)
}

/// One subject's share of the statements a filter matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectSummary {
    pub subject: String,
    /// Statements that were let through (allowed or masked).
    pub allowed: u64,
    /// Statements refused or held for approval.
    pub refused: u64,
    /// The latest matching statement.
    pub last_seq: u64,
    pub last_ts_micros: i64,
}

/// The subjects of the *statement* records `filter` matches, with counts,
/// most recently active first; `filter.kinds` and `filter.limit` are
/// ignored. With `object`, `column` and `access: Read` this answers "who
/// read this column".
pub fn subjects(store: &SqliteStore, filter: &Filter) -> Result<Vec<SubjectSummary>, AuditError> {
    let filter = Filter {
        kinds: vec![RecordKind::Statement],
        ..filter.clone()
    };
    let mut q = query(store.conn(), &filter)?;
    q.conds.push("r.subject IS NOT NULL".into());
    let sql = format!(
        "SELECT r.subject, \
         SUM(CASE WHEN r.decision IS NULL OR r.decision = 'masked' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN r.decision IN ('denied', 'held') THEN 1 ELSE 0 END), \
         MAX({seq}), MAX(r.ts) \
         FROM {from} {where_clause} \
         GROUP BY r.subject ORDER BY MAX({seq}) DESC",
        seq = q.seq_col,
        from = q.from,
        where_clause = q.where_clause(),
    );
    let mut stmt = store.conn().prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(q.args), |r| {
        Ok(SubjectSummary {
            subject: r.get(0)?,
            allowed: r.get::<_, i64>(1)? as u64,
            refused: r.get::<_, i64>(2)? as u64,
            last_seq: r.get::<_, i64>(3)? as u64,
            last_ts_micros: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn query(conn: &rusqlite::Connection, filter: &Filter) -> Result<Query, AuditError> {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();

    let touched = filter.object.is_some() || filter.column.is_some();
    // Driving the query from the touched table when it is filtered lets
    // SQLite walk (object, column, seq) backwards and stop at the limit.
    let (from, seq_col) = if touched {
        (
            "audit_touched t JOIN audit_records r ON r.seq = t.seq",
            "t.seq",
        )
    } else {
        ("audit_records r", "r.seq")
    };
    if touched {
        if let Some(o) = &filter.object {
            conds.push(format!(
                "t.object = {}",
                arg(Value::Text(o.clone()), &mut args)
            ));
        }
        let col = filter.column.clone().unwrap_or_default();
        conds.push(format!("t.col = {}", arg(Value::Text(col), &mut args)));
        match filter.access {
            Some(Access::Read) => conds.push(format!("(t.access & {ACCESS_READ}) != 0")),
            Some(Access::Write) => conds.push(format!("(t.access & {ACCESS_WRITE}) != 0")),
            None => {}
        }
    } else if filter.access.is_some() {
        conds.push("r.seq IN (SELECT seq FROM audit_touched)".into());
    }

    if !filter.kinds.is_empty() {
        let list: Vec<String> = filter
            .kinds
            .iter()
            .map(|k| arg(Value::Text(k.as_str().to_owned()), &mut args))
            .collect();
        conds.push(format!("r.kind IN ({})", list.join(", ")));
    }
    for (col, value) in [
        ("r.subject", &filter.subject),
        ("r.target", &filter.target),
        ("r.environment", &filter.environment),
        ("r.session_id", &filter.session_id),
        ("r.fingerprint", &filter.fingerprint),
    ] {
        if let Some(v) = value {
            conds.push(format!(
                "{col} = {}",
                arg(Value::Text(v.clone()), &mut args)
            ));
        }
    }
    match filter.decision {
        // Allowed is most statements: the column keeps only the others
        // (see `IndexFields`), so their index stays small.
        Some(Effect::Allowed) => {
            conds.push("r.kind = 'statement' AND r.decision IS NULL".into());
        }
        Some(d) => conds.push(format!(
            "r.decision = {}",
            arg(Value::Text(d.as_str().to_owned()), &mut args)
        )),
        None => {}
    }
    if let Some(s) = &filter.sqlstate {
        conds.push(format!(
            "{seq_col} IN (SELECT COALESCE(refers_to, seq) FROM audit_records WHERE sqlstate = {})",
            arg(Value::Text(s.clone()), &mut args)
        ));
    }
    if let Some(t) = &filter.text {
        conds.push(format!(
            "instr(r.envelope, {}) > 0",
            arg(Value::Blob(t.as_bytes().to_vec()), &mut args)
        ));
    }

    // Time range → seq range (exact, since ts is monotone in seq), plus the
    // ts condition itself, which costs nothing once the range is narrowed.
    if let Some(since) = filter.since {
        let lo: Option<i64> = first_seq_at_or_after(conn, since)?;
        conds.push(format!(
            "{seq_col} >= {}",
            arg(Value::Integer(lo.unwrap_or(i64::MAX)), &mut args)
        ));
        conds.push(format!("r.ts >= {}", arg(Value::Integer(since), &mut args)));
    }
    if let Some(until) = filter.until {
        // The last seq before `until`: one before the first at or after it.
        let hi: Option<i64> = match first_seq_at_or_after(conn, until)? {
            Some(first) => Some(first - 1),
            None => last_seq(conn)?,
        };
        conds.push(format!(
            "{seq_col} <= {}",
            arg(Value::Integer(hi.unwrap_or(0)), &mut args)
        ));
        conds.push(format!("r.ts < {}", arg(Value::Integer(until), &mut args)));
    }
    if let Some(b) = filter.before_seq {
        conds.push(format!(
            "{seq_col} < {}",
            arg(Value::Integer(b as i64), &mut args)
        ));
    }
    if let Some(a) = filter.after_seq {
        conds.push(format!(
            "{seq_col} > {}",
            arg(Value::Integer(a as i64), &mut args)
        ));
    }
    Ok(Query {
        from,
        seq_col,
        conds,
        args,
    })
}

/// The outcome record of the statement at `statement_seq`, if written.
pub fn outcome_of(store: &SqliteStore, statement_seq: u64) -> Result<Option<Found>, AuditError> {
    let mut stmt = store.conn().prepare_cached(
        "SELECT seq, ts, envelope FROM audit_records WHERE refers_to = ?1 AND kind = 'outcome' ORDER BY seq LIMIT 1",
    )?;
    let mut rows = stmt.query([statement_seq as i64])?;
    match rows.next()? {
        Some(r) => Ok(Some(found(r.get(0)?, r.get(1)?, &r.get::<_, Vec<u8>>(2)?)?)),
        None => Ok(None),
    }
}

/// Adds a bound parameter, returning its placeholder.
fn arg(v: Value, args: &mut Vec<Value>) -> String {
    args.push(v);
    format!("?{}", args.len())
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
        seq: seq as u64,
        ts_micros: ts,
        record: entry.record,
    })
}
