//! Records as people read them (one line each) or as JSON lines.

use std::io::Write;

use portcullis_audit::record::{ConnectionResult, Record};
use portcullis_audit::search::outcome_of;
use portcullis_audit::{Found, SqliteStore};

use super::time;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// Prints `found` in order; a statement's line says how it ended, from its
/// outcome record.
pub fn print(store: &SqliteStore, found: &[Found], format: Format) -> Result<(), String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for f in found {
        let line = match format {
            Format::Json => serde_json::json!({
                "seq": f.seq,
                "ts": time::format(f.ts_micros),
                "record": &f.record,
            })
            .to_string(),
            Format::Table => line(store, f),
        };
        if writeln!(out, "{line}").is_err() {
            // A closed pipe (`| head`): stop quietly.
            return Ok(());
        }
    }
    Ok(())
}

fn line(store: &SqliteStore, f: &Found) -> String {
    let at = time::format(f.ts_micros);
    match &f.record {
        Record::Statement(s) => {
            let ended = match outcome_of(store, f.seq).ok().flatten().map(|o| o.record) {
                Some(Record::Outcome(o)) => match (&o.sqlstate, o.rows) {
                    (Some(state), _) => format!("error {}", state.as_str()),
                    (None, Some(rows)) => format!("{rows} rows"),
                    (None, None) => o.command.unwrap_or_else(|| "done".into()),
                },
                _ => "-".into(),
            };
            let text: String = s.text.as_str().chars().take(100).collect();
            format!(
                "{at} #{:<8} {:<12} {:<10} {:<8} {:<12} {text}",
                f.seq,
                s.identity.subject,
                s.destination.target,
                s.decision.effect.as_str(),
                ended,
            )
        }
        Record::Connection(c) => {
            let who = c.identity.as_ref().map_or("-", |i| i.subject.as_str());
            let what = match &c.result {
                ConnectionResult::Succeeded { .. } => "connected".to_owned(),
                ConnectionResult::Failed { reason, sqlstate } => format!(
                    "connection refused: {} {}",
                    serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    sqlstate.as_ref().map_or("", |s| s.as_str())
                ),
                ConnectionResult::Ended {
                    reason,
                    duration_micros,
                } => format!(
                    "disconnected ({}, after {:.1} s)",
                    serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    *duration_micros as f64 / 1e6
                ),
            };
            let from = c.source.address.map(|a| a.to_string()).unwrap_or_default();
            format!(
                "{at} #{:<8} {who:<12} {:<10} session {} from {from}: {what}",
                f.seq,
                c.target.as_deref().unwrap_or("-"),
                c.session_id
            )
        }
        Record::Outcome(o) => format!(
            "{at} #{:<8} outcome of #{}: {} rows={} bytes={} {} µs{}",
            f.seq,
            o.statement_seq,
            o.command.as_deref().unwrap_or("-"),
            o.rows.map_or("-".into(), |r| r.to_string()),
            o.bytes,
            o.duration_micros,
            o.sqlstate
                .as_ref()
                .map_or(String::new(), |s| format!(" error {}", s.as_str()))
        ),
        other => format!(
            "{at} #{:<8} {}",
            f.seq,
            serde_json::to_string(other).unwrap_or_default()
        ),
    }
}
