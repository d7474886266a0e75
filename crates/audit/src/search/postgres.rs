//! Search over the PostgreSQL store: every node's log at once, with
//! PostgreSQL's indexes (the GIN index on `terms`, the B-tree on `ts`,
//! `(log_id, refers_to)` for outcomes) instead of the SQLite store's
//! blocks. The filter means the same ([`super::Filter`]); results come
//! newest first by `ts`, then log id, then seq, each naming its log.

use postgres::types::ToSql;

use super::{found, terms_of, Filter, Found, SearchSource, SubjectSummary};
use crate::chain::LogId;
use crate::record::{Effect, RecordKind};
use crate::store::postgres::PostgresStore;
use crate::store::{prefix, term};
use crate::AuditError;

/// The order results come in (and the one a subject's latest is taken by).
const NEWEST_FIRST: &str = "r.ts DESC, r.log_id DESC, r.seq DESC";

/// A filter as SQL conditions on `r` (a row of `records`) and their
/// parameters, numbered from `$1`.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    args: Vec<Box<dyn ToSql + Sync>>,
}

impl Conditions {
    fn arg(&mut self, v: impl ToSql + Sync + 'static) -> String {
        self.args.push(Box::new(v));
        format!("${}", self.args.len())
    }

    fn of(filter: &Filter) -> Conditions {
        let mut c = Conditions::default();
        let terms = terms_of(filter);
        if !terms.is_empty() {
            let p = c.arg(terms);
            c.sql.push(format!("r.terms @> {p}::text[]"));
        }
        if filter.kinds.len() > 1 {
            let kinds: Vec<String> = filter.kinds.iter().map(|k| k.as_str().into()).collect();
            let p = c.arg(kinds);
            c.sql.push(format!("r.kind = ANY({p}::text[])"));
        }
        if filter.decision == Some(Effect::Allowed) {
            c.sql.push("r.decision IS NULL".into());
        }
        if let Some(t) = &filter.text {
            let p = c.arg(t.as_bytes().to_vec());
            c.sql
                .push(format!("position({p}::bytea IN r.envelope) > 0"));
        }
        if let Some(since) = filter.since {
            let p = c.arg(since);
            c.sql.push(format!("r.ts >= {p}"));
        }
        if let Some(until) = filter.until {
            let p = c.arg(until);
            c.sql.push(format!("r.ts < {p}"));
        }
        if let Some(b) = filter.before_seq {
            let p = c.arg(i64::try_from(b).unwrap_or(i64::MAX));
            c.sql.push(format!("r.seq < {p}"));
        }
        if let Some(a) = filter.after_seq {
            let p = c.arg(i64::try_from(a).unwrap_or(i64::MAX));
            c.sql.push(format!("r.seq > {p}"));
        }
        if let Some(log) = &filter.log {
            let p = c.arg(log.as_str().to_owned());
            c.sql.push(format!("r.log_id = {p}"));
        }
        if let Some(state) = &filter.sqlstate {
            // The statements whose outcome carried it, and connection
            // attempts refused with it (records that carry it and refer to
            // nothing).
            let p = c.arg(vec![term(prefix::SQLSTATE, &[state])]);
            c.sql.push(format!(
                "((r.refers_to IS NULL AND r.terms @> {p}::text[]) OR EXISTS (\
                 SELECT 1 FROM portcullis_audit.records o \
                 WHERE o.log_id = r.log_id AND o.refers_to = r.seq AND o.terms @> {p}::text[]))"
            ));
        }
        c
    }

    fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            "TRUE".into()
        } else {
            self.sql.join(" AND ")
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args.iter().map(|a| a.as_ref()).collect()
    }
}

/// A found record, with the log its row names.
fn row_found(row: &postgres::Row) -> Result<Found, AuditError> {
    let log = LogId::new(row.get::<_, String>(0));
    let mut f = found(
        row.get::<_, i64>(1) as u64,
        row.get(2),
        &row.get::<_, Vec<u8>>(3),
    )?;
    f.log = log;
    Ok(f)
}

impl SearchSource for PostgresStore {
    fn search(&self, filter: &Filter) -> Result<Vec<Found>, AuditError> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let mut c = Conditions::of(filter);
        let lim = c.arg(i64::try_from(limit).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT r.log_id, r.seq, r.ts, r.envelope FROM portcullis_audit.records r \
             WHERE {} ORDER BY {NEWEST_FIRST} LIMIT {lim}",
            c.where_clause()
        );
        let rows = self.client().query(&sql, &c.params())?;
        rows.iter().map(row_found).collect()
    }

    fn subjects(&self, filter: &Filter) -> Result<Vec<SubjectSummary>, AuditError> {
        let filter = Filter {
            kinds: vec![RecordKind::Statement],
            ..filter.clone()
        };
        let c = Conditions::of(&filter);
        let sql = format!(
            "SELECT r.subject, \
             count(*) FILTER (WHERE r.decision IS NULL OR r.decision = 'masked'), \
             count(*) FILTER (WHERE r.decision IN ('denied', 'held')), \
             (array_agg(r.log_id ORDER BY {NEWEST_FIRST}))[1], \
             (array_agg(r.seq ORDER BY {NEWEST_FIRST}))[1], \
             max(r.ts) \
             FROM portcullis_audit.records r \
             WHERE r.subject IS NOT NULL AND {} \
             GROUP BY r.subject ORDER BY max(r.ts) DESC, r.subject",
            c.where_clause()
        );
        let rows = self.client().query(&sql, &c.params())?;
        Ok(rows
            .iter()
            .map(|r| SubjectSummary {
                subject: r.get(0),
                allowed: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                refused: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                last_log: LogId::new(r.get::<_, String>(3)),
                last_seq: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                last_ts_micros: r.get(5),
            })
            .collect())
    }

    fn outcome_of(&self, log: &LogId, statement_seq: u64) -> Result<Option<Found>, AuditError> {
        let row = self.client().query_opt(
            "SELECT r.log_id, r.seq, r.ts, r.envelope FROM portcullis_audit.records r \
             WHERE r.log_id = $1 AND r.refers_to = $2 AND r.kind = 'outcome' \
             ORDER BY r.seq LIMIT 1",
            &[
                &log.as_str(),
                &i64::try_from(statement_seq).unwrap_or(i64::MAX),
            ],
        )?;
        row.as_ref().map(row_found).transpose()
    }
}
