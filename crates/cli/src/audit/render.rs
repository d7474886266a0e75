//! Records for people (one line each, in columns) and for programs (JSON
//! lines), shared by `search` and `tail`.

use portcullis_audit::record::{ConnectionResult, Record, ReloadResult, StatementOutcome};
use portcullis_audit::search::outcome_of;
use portcullis_audit::{Found, Store};
use serde_json::json;

use super::time::format_micros;

/// Longest statement text shown in a table line.
const TEXT_WIDTH: usize = 100;

/// A record with, for a statement, its outcome if one was written.
pub struct Shown {
    pub found: Found,
    pub outcome: Option<ShownOutcome>,
    /// The node whose log holds it, in a store of several (PostgreSQL).
    pub node: Option<String>,
}

/// A statement's outcome: folded into its record, or a record of its own.
pub struct ShownOutcome {
    pub outcome: StatementOutcome,
    /// The outcome record's seq and ts, when it has one of its own.
    pub own: Option<(u64, i64)>,
}

/// Looks up the outcome of each statement found, and in a shared store
/// the node each record came from.
pub fn with_outcomes(store: &Store, found: Vec<Found>) -> Result<Vec<Shown>, String> {
    let nodes: std::collections::HashMap<_, _> = match store {
        Store::Sqlite(_) => Default::default(),
        Store::Postgres(p) => p
            .logs()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|l| (l.log, l.node))
            .collect(),
    };
    found
        .into_iter()
        .map(|f| {
            let node = nodes.get(&f.log).cloned();
            let outcome = match &f.record {
                Record::Statement(s) => match &s.outcome {
                    Some(o) => Some(ShownOutcome {
                        outcome: o.clone(),
                        own: None,
                    }),
                    None => match outcome_of(store, &f.log, f.seq).map_err(|e| e.to_string())? {
                        Some(Found {
                            seq,
                            ts_micros,
                            record: Record::Outcome(o),
                            ..
                        }) => Some(ShownOutcome {
                            outcome: o.outcome,
                            own: Some((seq, ts_micros)),
                        }),
                        _ => None,
                    },
                },
                _ => None,
            };
            Ok(Shown {
                found: f,
                outcome,
                node,
            })
        })
        .collect()
}

pub fn header() -> String {
    line(&[
        "TIME", "SEQ", "KIND", "USER", "TARGET", "DECISION", "RESULT", "WHAT",
    ])
}

fn line(cols: &[&str; 8]) -> String {
    format!(
        "{:<24} {:>6}  {:<10} {:<12} {:<10} {:<9} {:<18} {}",
        cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7]
    )
    .trim_end()
    .to_owned()
}

/// Cuts `s` to at most `max` characters, marking the cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn outcome_result(o: &StatementOutcome) -> String {
    match (&o.sqlstate, &o.command, o.rows) {
        (Some(state), _, _) => format!("error {}", state.as_str()),
        (None, Some(c), Some(rows)) => format!("{c} {rows}"),
        (None, Some(c), None) => c.clone(),
        (None, None, Some(rows)) => format!("{rows} rows"),
        (None, None, None) => "done".to_owned(),
    }
}

/// One table line.
pub fn row(s: &Shown) -> String {
    let f = &s.found;
    let time = format_micros(f.ts_micros);
    // In a shared store seqs count per node: say whose.
    let seq = match &s.node {
        Some(node) => format!("{node}:{}", f.seq),
        None => f.seq.to_string(),
    };
    let kind = f.record.kind().as_str();
    let dash = || "-".to_owned();
    let (user, target, decision, result, what) = match &f.record {
        Record::Statement(st) => (
            st.identity.subject.clone(),
            st.destination.target.clone(),
            st.decision.effect.as_str().to_owned(),
            s.outcome
                .as_ref()
                .map(|o| outcome_result(&o.outcome))
                .unwrap_or_else(|| match st.decision.effect {
                    portcullis_audit::record::Effect::Denied
                    | portcullis_audit::record::Effect::Held => "not run".to_owned(),
                    _ => dash(),
                }),
            cut(st.text.as_str(), TEXT_WIDTH),
        ),
        Record::Outcome(o) => (
            dash(),
            dash(),
            dash(),
            outcome_result(&o.outcome),
            format!("outcome of seq {}", o.statement_seq),
        ),
        Record::Connection(c) => {
            let (status, result) = match &c.result {
                ConnectionResult::Succeeded { .. } => ("opened", String::new()),
                ConnectionResult::Failed { reason, sqlstate } => (
                    "failed",
                    sqlstate
                        .as_ref()
                        .map(|s| format!("error {}", s.as_str()))
                        .unwrap_or_else(|| serde_name(reason)),
                ),
                ConnectionResult::Ended { reason, .. } => ("ended", serde_name(reason)),
            };
            let from = c
                .source
                .address
                .map(|a| format!("from {a}"))
                .unwrap_or_else(|| "from a local socket".to_owned());
            (
                c.identity
                    .as_ref()
                    .map(|i| i.subject.clone())
                    .unwrap_or_else(dash),
                c.target.clone().unwrap_or_else(dash),
                status.to_owned(),
                if result.is_empty() { dash() } else { result },
                format!("connection {} {from}", c.session_id),
            )
        }
        Record::Approval(a) => (
            a.actor
                .as_ref()
                .map(|i| i.subject.clone())
                .unwrap_or_else(dash),
            a.target.clone(),
            serde_name(&a.event),
            dash(),
            format!(
                "approval request {}{}",
                a.request_id,
                a.statement_seq
                    .map(|s| format!(" for seq {s}"))
                    .unwrap_or_default()
            ),
        ),
        Record::Reload(r) => (
            r.requested_by.clone().unwrap_or_else(dash),
            dash(),
            match &r.result {
                ReloadResult::Applied => "applied".to_owned(),
                ReloadResult::Rejected { .. } => "rejected".to_owned(),
            },
            dash(),
            format!(
                "{} reload{}",
                serde_name(&r.what),
                r.hash.as_ref().map(|h| format!(" {h}")).unwrap_or_default()
            ),
        ),
        Record::Admin(a) => (
            a.actor.subject.clone(),
            dash(),
            serde_name(&a.action),
            dash(),
            a.object.clone(),
        ),
    };
    line(&[&time, &seq, kind, &user, &target, &decision, &result, &what])
}

/// An enum's name as records spell it (`authentication_failed`).
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// One JSON line: seq, ts (µs), time (RFC 3339), the record and, for a
/// statement, its outcome (with the outcome record's `seq` and `ts` when
/// it was written as a record of its own; a folded outcome is also in
/// `record.outcome`), in one shape either way.
pub fn json_line(s: &Shown) -> String {
    let f = &s.found;
    let mut v = json!({
        "log": f.log,
        "seq": f.seq,
        "ts": f.ts_micros,
        "time": format_micros(f.ts_micros),
        "record": f.record,
    });
    if let Some(node) = &s.node {
        v["node"] = json!(node);
    }
    if let Some(o) = &s.outcome {
        let mut outcome = json!(o.outcome);
        if let Some((seq, ts)) = o.own {
            outcome["seq"] = json!(seq);
            outcome["ts"] = json!(ts);
        }
        v["outcome"] = outcome;
    }
    v.to_string()
}
