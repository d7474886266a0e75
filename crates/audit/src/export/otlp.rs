//! The trail as OpenTelemetry logs: the OTLP/HTTP JSON encoding of an
//! `ExportLogsServiceRequest`, which any OpenTelemetry Collector (and the
//! vendors behind one) accepts at `/v1/logs` with
//! `Content-Type: application/json`.
//!
//! Written by hand rather than with the `opentelemetry` crates: their OTLP
//! exporter brings an async runtime binding, prost and tonic or reqwest,
//! for what is here a JSON shape over the forwarder's own HTTP client.
//! The shape follows the protobuf JSON mapping OTLP specifies: 64-bit
//! integers (times, `intValue`) are strings, enums are numbers, field
//! names are lowerCamelCase.
//!
//! One log record per audit record: its time is the record's `ts`; its
//! body is the `native` line (the record exactly as hashed, with log, seq
//! and ts), so nothing is lost; attributes carry what a log pipeline
//! filters on (kind, seq, log, subject, target, decision). A denied
//! statement or a refused connection is a WARN, anything else INFO.

use std::io::Write;

use serde_json::{json, Value};

use crate::chain::{Entry, LogId};
use crate::record::{ConnectionResult, Effect, Record};

use super::webhook::{native_line, StoredRow, WebhookError};

/// OTLP severity numbers (the log data model's INFO and WARN).
const INFO: u8 = 9;
const WARN: u8 = 13;

/// One record as an OTLP `LogRecord` (JSON, one line).
pub fn log_record(log: &LogId, row: &StoredRow) -> Result<Vec<u8>, WebhookError> {
    let unreadable = |why: String| WebhookError::Unreadable { seq: row.seq, why };
    let native = native_line(log, row)?;
    let entry = Entry::parse(&row.envelope)
        .map_err(|e| unreadable(format!("unreadable at column {}", e.column())))?;
    let record = &entry.record;
    let nanos = (row.ts_micros.max(0) as u128 * 1000).to_string();
    let mut attributes = vec![
        string("portcullis.audit.log", log.as_str()),
        json!({"key": "portcullis.audit.seq", "value": {"intValue": row.seq.to_string()}}),
        string("portcullis.audit.kind", record.kind().as_str()),
    ];
    let (subject, target, decision, warn) = match record {
        Record::Statement(s) => (
            Some(s.identity.subject.as_str()),
            Some(s.destination.target.as_str()),
            Some(s.decision.effect.as_str()),
            s.decision.effect == Effect::Denied,
        ),
        Record::Connection(c) => (
            c.identity.as_ref().map(|i| i.subject.as_str()),
            c.target.as_deref(),
            None,
            matches!(c.result, ConnectionResult::Failed { .. }),
        ),
        Record::Approval(a) => (
            a.actor.as_ref().map(|i| i.subject.as_str()),
            Some(a.target.as_str()),
            None,
            false,
        ),
        Record::Admin(a) => (Some(a.actor.subject.as_str()), None, None, false),
        Record::Reload(r) => (r.requested_by.as_deref(), None, None, false),
        Record::Outcome(_) => (None, None, None, false),
    };
    if let Some(s) = subject {
        attributes.push(string("user.id", s));
    }
    if let Some(t) = target {
        attributes.push(string("portcullis.target", t));
    }
    if let Some(d) = decision {
        attributes.push(string("portcullis.decision", d));
    }
    if matches!(record, Record::Statement(_) | Record::Outcome(_)) {
        attributes.push(string("db.system.name", "postgresql"));
    }
    let (number, text) = if warn { (WARN, "WARN") } else { (INFO, "INFO") };
    let body = String::from_utf8(native).map_err(|e| unreadable(e.to_string()))?;
    let value = json!({
        "timeUnixNano": nanos,
        "observedTimeUnixNano": nanos,
        "severityNumber": number,
        "severityText": text,
        "eventName": format!("portcullis.audit.{}", record.kind().as_str()),
        "body": {"stringValue": body},
        "attributes": attributes,
    });
    serde_json::to_vec(&value).map_err(|e| unreadable(e.to_string()))
}

fn string(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// The request body for a batch of [`log_record`] lines (each ending in
/// `\n`, as the batch builder joins them): one resource (the proxy's
/// log) and one scope holding them all.
pub fn request(log: &LogId, lines: &[u8]) -> Vec<u8> {
    let resource = json!({
        "attributes": [
            string("service.name", "portcullis"),
            string("portcullis.audit.log", log.as_str()),
        ]
    });
    let scope = json!({"name": "portcullis.audit", "version": env!("CARGO_PKG_VERSION")});
    let mut out = Vec::with_capacity(lines.len() + 256);
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"resourceLogs\":[{{\"resource\":{resource},\"scopeLogs\":[{{\"scope\":{scope},\"logRecords\":["
    );
    let mut first = true;
    // A JSON line holds no raw newline (strings escape it), so the lines
    // split exactly.
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"]}]}]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Chain, Head};
    use crate::record::{ReloadKind, ReloadRecord, ReloadResult};

    fn row(seq_ts: i64, record: &Record, log: &LogId) -> StoredRow {
        let mut chain = Chain::resume(Head::empty(log.clone()));
        let bytes = crate::canonical::encode(record).unwrap();
        let sealed = chain.append(seq_ts, &bytes);
        StoredRow {
            seq: sealed.seq,
            ts_micros: seq_ts,
            envelope: sealed.envelope,
        }
    }

    #[test]
    fn a_batch_is_one_export_request_with_every_record_whole() {
        let log = LogId::new("node-a");
        let reload = Record::Reload(ReloadRecord {
            what: ReloadKind::Policy,
            hash: Some("h".into()),
            requested_by: Some("ops\n\"x\"".into()),
            result: ReloadResult::Applied,
        });
        let r = row(1_700_000_000_123_456, &reload, &log);
        let mut lines = log_record(&log, &r).unwrap();
        assert!(!lines.contains(&b'\n'));
        lines.push(b'\n');
        let second = lines.clone();
        lines.extend_from_slice(&second);
        let body: Value = serde_json::from_slice(&request(&log, &lines)).unwrap();
        let rl = &body["resourceLogs"][0];
        assert_eq!(
            rl["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "portcullis"}})
        );
        let records = rl["scopeLogs"][0]["logRecords"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        let rec = &records[0];
        assert_eq!(rec["timeUnixNano"], "1700000000123456000");
        assert_eq!(rec["severityNumber"], 9);
        assert_eq!(rec["eventName"], "portcullis.audit.reload");
        let attr = |k: &str| {
            rec["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == k)
                .map(|a| a["value"].clone())
        };
        assert_eq!(attr("portcullis.audit.seq"), Some(json!({"intValue": "1"})));
        assert_eq!(attr("user.id"), Some(json!({"stringValue": "ops\n\"x\""})));
        // The body is the native line: the record as hashed.
        let native: Value =
            serde_json::from_str(rec["body"]["stringValue"].as_str().unwrap()).unwrap();
        assert_eq!(native["seq"], 1);
        assert_eq!(native["log"], "node-a");
        assert_eq!(native["record"]["type"], "reload");
    }

    #[test]
    fn an_empty_batch_is_still_a_valid_request() {
        let body: Value = serde_json::from_slice(&request(&LogId::new("l"), b"")).unwrap();
        assert_eq!(
            body["resourceLogs"][0]["scopeLogs"][0]["logRecords"],
            json!([])
        );
    }
}
