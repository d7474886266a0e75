//! The trail forwarded to a SIEM's HTTP collector (Splunk HEC, Datadog,
//! Elastic, Vector, anything that takes batched JSON lines over HTTPS):
//! the parts that need no socket, so that they are tested as plain
//! functions. The HTTP client and the loop that follows the store are the
//! CLI's (`portcullis audit forward`).
//!
//! - [`read_after`]: the stored records after a cursor, oldest first;
//! - [`Format`] and [`encode`]: one NDJSON line per record, `native` (the
//!   canonical record with its seq and ts) or `ocsf` (statement records as
//!   OCSF events, see below);
//! - [`BatchBuilder`] / [`next_batch`]: lines gathered into one request
//!   body, bounded in records and bytes;
//! - [`classify`] and [`Backoff`]: which answers are retried and how long
//!   to wait before the next attempt;
//! - [`Cursor`]: the last seq the collector acknowledged, in a file written
//!   atomically, and only after a 2xx for the whole batch.
//!
//! Delivery is at least once: a crash between the collector's 2xx and the
//! cursor's rename sends that batch again. Every line carries the log id
//! and seq, which identify a record uniquely, so a receiver that cares can
//! drop duplicates.
//!
//! In `ocsf`, only statement records become events (with their outcome
//! folded in, as `audit export --format ocsf` does). Outcome records are
//! part of their statement's event; connection, approval, reload and admin
//! records have no OCSF mapping here and are passed over (the cursor moves
//! past them): forward `native` to see every record. Because an outcome is
//! written after its statement (when the result has streamed), a statement
//! younger than the *settle* time without an outcome yet is held back, so
//! that its event usually carries the outcome; past that it is sent with
//! status Unknown.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::canonical;
use crate::chain::{Entry, LogId};
use crate::record::Record;
use crate::search::statement_outcome;
use crate::store::sqlite::rows::{self, Order};
use crate::store::sqlite::SqliteStore;
use crate::AuditError;

use super::ocsf;

/// What can stop forwarding, apart from the collector's answers (which are
/// the HTTP client's).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Store(#[from] AuditError),
    #[error("record {seq} cannot be read: {why}")]
    Unreadable { seq: u64, why: String },
    #[error("cursor file {path}: {source}")]
    CursorIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cursor file {path} is not a forwarding cursor: {why}")]
    CursorInvalid { path: PathBuf, why: String },
    /// A cursor from another log would skip or repeat records at random.
    #[error("cursor file {path} belongs to audit log {cursor_log}, but the store is log {store_log}: give this store its own cursor file")]
    CursorOtherLog {
        path: PathBuf,
        cursor_log: String,
        store_log: String,
    },
}

/// One stored record as it is read for forwarding.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub seq: u64,
    pub ts_micros: i64,
    /// The exact canonical envelope bytes that were hashed.
    pub envelope: Vec<u8>,
}

/// Up to `limit` records with seq greater than `after`, oldest first.
pub fn read_after(
    store: &SqliteStore,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredRow>, WebhookError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    rows::scan(
        store.conn(),
        after.saturating_add(1),
        u64::MAX,
        Order::Ascending,
        &mut |r| {
            out.push(StoredRow {
                seq: r.seq,
                ts_micros: r.ts,
                envelope: r.envelope.to_vec(),
            });
            Ok(out.len() < limit)
        },
    )?;
    Ok(out)
}

/// The highest seq in the store (0 when empty): where `--once` stops, so
/// that a proxy writing meanwhile cannot keep it running.
pub fn last_seq(store: &SqliteStore) -> Result<u64, WebhookError> {
    Ok(rows::last_seq(store.conn())?.unwrap_or(0))
}

/// How records are written, one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"log":..,"record":<canonical record>,"seq":..,"ts":..}` for every
    /// record, keys sorted, the record exactly as hashed.
    Native,
    /// OCSF Datastore Activity events for statement records.
    Ocsf,
    /// OpenTelemetry logs: each request one OTLP/HTTP JSON export request
    /// (see [`super::otlp`]), every record a log record.
    Otlp,
}

impl Format {
    /// The request's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Native | Format::Ocsf => "application/x-ndjson",
            Format::Otlp => "application/json",
        }
    }

    /// The request body for a batch's lines: NDJSON as they are, or
    /// wrapped into one OTLP export request.
    pub fn request_body(self, log: &LogId, lines: &[u8]) -> Vec<u8> {
        match self {
            Format::Native | Format::Ocsf => lines.to_vec(),
            Format::Otlp => super::otlp::request(log, lines),
        }
    }
}

/// What one record contributes to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// This line (without its newline).
    Send(Vec<u8>),
    /// Nothing in this format; the cursor moves past it.
    Skip,
    /// Not yet: an OCSF statement still waiting for its outcome. The batch
    /// ends before it and it is read again on the next poll.
    Wait,
}

/// When statements without an outcome are sent anyway (`ocsf` only).
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    /// Now, µs since the Unix epoch.
    pub now_micros: i64,
    /// How long after its `ts` a statement waits for its outcome.
    pub wait: Duration,
}

/// The line for one record.
pub fn encode(
    store: &SqliteStore,
    format: Format,
    row: &StoredRow,
    settle: Option<Settle>,
) -> Result<Line, WebhookError> {
    match format {
        Format::Native => native_line(store.log(), row).map(Line::Send),
        Format::Ocsf => ocsf_line(store, row, settle),
        Format::Otlp => super::otlp::log_record(store.log(), row).map(Line::Send),
    }
}

/// `{"log":..,"record":..,"seq":..,"ts":..}`, canonical: the record's
/// bytes are the ones hashed into the chain, so a receiver holding the
/// envelope's other fields could recompute the hash.
pub fn native_line(log: &LogId, row: &StoredRow) -> Result<Vec<u8>, WebhookError> {
    let unreadable = |why: String| WebhookError::Unreadable { seq: row.seq, why };
    // Through `Value` rather than the typed record: a field a later
    // version added is kept, not dropped.
    let envelope: Value =
        serde_json::from_slice(&row.envelope).map_err(|e| unreadable(e.to_string()))?;
    let record = envelope
        .get("record")
        .ok_or_else(|| unreadable("no record in the envelope".into()))?;
    let mut out = Vec::with_capacity(row.envelope.len() + 32);
    out.extend_from_slice(b"{\"log\":");
    canonical::write_value(&Value::String(log.as_str().to_owned()), &mut out)
        .map_err(|e| unreadable(e.to_string()))?;
    out.extend_from_slice(b",\"record\":");
    canonical::write_value(record, &mut out).map_err(|e| unreadable(e.to_string()))?;
    // Writing to a Vec cannot fail.
    let _ = write!(out, ",\"seq\":{},\"ts\":{}}}", row.seq, row.ts_micros);
    Ok(out)
}

fn ocsf_line(
    store: &SqliteStore,
    row: &StoredRow,
    settle: Option<Settle>,
) -> Result<Line, WebhookError> {
    let entry = Entry::parse(&row.envelope).map_err(|e| WebhookError::Unreadable {
        seq: row.seq,
        why: format!("unreadable at column {}", e.column()),
    })?;
    let Record::Statement(s) = entry.record else {
        return Ok(Line::Skip);
    };
    let outcome = statement_outcome(store, store.log(), row.seq, &s)?;
    let outcome = outcome.as_ref().map(|(at, o)| (*at, o));
    if outcome.is_none() {
        if let Some(settle) = settle {
            let wait = i64::try_from(settle.wait.as_micros()).unwrap_or(i64::MAX);
            if settle.now_micros.saturating_sub(row.ts_micros) < wait {
                return Ok(Line::Wait);
            }
        }
    }
    let event = ocsf::statement_event(store.log(), row.seq, row.ts_micros, &s, outcome);
    let line = serde_json::to_vec(&event).map_err(|e| WebhookError::Unreadable {
        seq: row.seq,
        why: e.to_string(),
    })?;
    Ok(Line::Send(line))
}

/// How large one request may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most lines in one body.
    pub max_records: usize,
    /// Most bytes in one body, newlines included. A single line larger
    /// than this goes alone in its own request rather than never.
    pub max_bytes: usize,
}

/// One request's worth: the body and how far it moves the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// NDJSON: each line ends in `\n`. Empty when every record covered
    /// was skipped (then no request is needed, only the cursor moves).
    pub body: Vec<u8>,
    /// How many lines the body holds.
    pub lines: usize,
    /// The seqs of the first and last line sent.
    pub sent: Option<(u64, u64)>,
    /// The cursor once this batch is delivered: the last record covered,
    /// sent or skipped.
    pub through: u64,
}

/// Gathers lines until a limit would be passed.
#[derive(Debug)]
pub struct BatchBuilder {
    limits: Limits,
    batch: Batch,
}

/// What [`BatchBuilder::push`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Taken (sent or skipped): push the next one.
    Taken,
    /// Not taken: the batch is complete without it.
    Full,
}

impl BatchBuilder {
    pub fn new(after: u64, limits: Limits) -> Self {
        BatchBuilder {
            limits: Limits {
                max_records: limits.max_records.max(1),
                max_bytes: limits.max_bytes,
            },
            batch: Batch {
                body: Vec::new(),
                lines: 0,
                sent: None,
                through: after,
            },
        }
    }

    /// Offers record `seq`'s line. A `Wait` line ends the batch as `Full`
    /// does: records after it must not be acknowledged before it.
    pub fn push(&mut self, seq: u64, line: Line) -> Pushed {
        let b = &mut self.batch;
        match line {
            Line::Wait => Pushed::Full,
            Line::Skip => {
                b.through = seq;
                Pushed::Taken
            }
            Line::Send(line) => {
                let grown = b.body.len() + line.len() + 1;
                if b.lines >= self.limits.max_records
                    || (b.lines > 0 && grown > self.limits.max_bytes)
                {
                    return Pushed::Full;
                }
                b.body.extend_from_slice(&line);
                b.body.push(b'\n');
                b.lines += 1;
                b.sent = Some((b.sent.map_or(seq, |(first, _)| first), seq));
                b.through = seq;
                Pushed::Taken
            }
        }
    }

    pub fn lines(&self) -> usize {
        self.batch.lines
    }

    pub fn finish(self) -> Batch {
        self.batch
    }
}

/// The next batch after `after`, with seqs at most `until` (`--once`
/// stops at the head it saw when it started). `None` when there is
/// nothing to move the cursor past.
pub fn next_batch(
    store: &SqliteStore,
    format: Format,
    after: u64,
    until: Option<u64>,
    limits: Limits,
    settle: Option<Settle>,
) -> Result<Option<Batch>, WebhookError> {
    let mut builder = BatchBuilder::new(after, limits);
    let mut cursor = after;
    // Skipped records take no room, so a page may not fill the batch: read
    // on until it is full or the store ends.
    let page = limits.max_records.clamp(1, 4096);
    'pages: loop {
        let rows = read_after(store, cursor, page)?;
        if rows.is_empty() {
            break;
        }
        let n = rows.len();
        for row in &rows {
            if until.is_some_and(|u| row.seq > u) {
                break 'pages;
            }
            let line = encode(store, format, row, settle)?;
            if builder.push(row.seq, line) == Pushed::Full {
                break 'pages;
            }
            cursor = row.seq;
        }
        if n < page {
            break;
        }
    }
    let batch = builder.finish();
    Ok((batch.through > after).then_some(batch))
}

/// What to do with the collector's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the batch is delivered; move the cursor.
    Delivered,
    /// The collector is down, overloaded or slow: the same batch again
    /// after a backoff (5xx, 429 Too Many Requests, 408 Request Timeout).
    Retry,
    /// Any other answer (400, 401, 403, 404, 413, a redirect, ...): sending
    /// the same request again would get the same answer, so stop with the
    /// status rather than loop.
    Fatal,
}

pub fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Fatal,
    }
}

/// `Retry-After` in its delay-seconds form. The HTTP-date form is not
/// honoured (the backoff applies): collectors send seconds.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Exponential backoff with jitter, capped.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first retry's delay (before jitter).
    pub base: Duration,
    /// No delay is longer than this, jitter included.
    pub cap: Duration,
    /// The longest `Retry-After` honoured: a collector asking for a day
    /// would otherwise silence the forwarder for a day.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0 for the first retry).
    /// `jitter` in `[0, 1)` picks a point in the upper half of the
    /// exponential delay ("equal jitter"): forwarders restarted together
    /// spread out, and no wait collapses to nothing. A `Retry-After` from
    /// the collector replaces the computed delay.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_retry_after);
        }
        let exp = self
            .base
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        exp / 2 + exp.mul_f64(jitter / 2.0)
    }
}

/// The last seq the collector acknowledged, and the log it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub path: PathBuf,
    pub log: LogId,
    pub seq: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CursorFile {
    log: String,
    seq: u64,
}

impl Cursor {
    /// Reads the cursor at `path` for `log`; a file that does not exist is
    /// the start of the log.
    pub fn load(path: &Path, log: &LogId) -> Result<Cursor, WebhookError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Cursor {
                    path: path.to_owned(),
                    log: log.clone(),
                    seq: 0,
                })
            }
            Err(source) => {
                return Err(WebhookError::CursorIo {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let file: CursorFile =
            serde_json::from_slice(&text).map_err(|e| WebhookError::CursorInvalid {
                path: path.to_owned(),
                why: e.to_string(),
            })?;
        if file.log != log.as_str() {
            return Err(WebhookError::CursorOtherLog {
                path: path.to_owned(),
                cursor_log: file.log,
                store_log: log.as_str().to_owned(),
            });
        }
        Ok(Cursor {
            path: path.to_owned(),
            log: log.clone(),
            seq: file.seq,
        })
    }

    /// Moves the cursor to `seq`: written to a temporary file beside it,
    /// synced, then renamed over it, so that a crash leaves the old cursor
    /// or the new one, never a torn file.
    pub fn advance(&mut self, seq: u64) -> Result<(), WebhookError> {
        let io = |source: std::io::Error| WebhookError::CursorIo {
            path: self.path.clone(),
            source,
        };
        let mut tmp_name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "cursor".into());
        tmp_name.push(".tmp");
        let tmp = self.path.with_file_name(tmp_name);
        let body = serde_json::to_vec(&CursorFile {
            log: self.log.as_str().to_owned(),
            seq,
        })
        .map_err(|e| io(e.into()))?;
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&body).map_err(io)?;
            f.write_all(b"\n").map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        // The rename is durable once the directory is synced; a failure
        // here (some filesystems refuse to open a directory) costs at most
        // a resend, which at-least-once delivery allows.
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.seq = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::*;
    use crate::{AuditConfig, AuditLog};

    fn limits(max_records: usize, max_bytes: usize) -> Limits {
        Limits {
            max_records,
            max_bytes,
        }
    }

    fn line(n: usize) -> Line {
        Line::Send(vec![b'x'; n])
    }

    #[test]
    fn batches_stop_at_the_record_limit() {
        let mut b = BatchBuilder::new(0, limits(2, 1 << 20));
        assert_eq!(b.push(1, line(3)), Pushed::Taken);
        assert_eq!(b.push(2, Line::Skip), Pushed::Taken);
        assert_eq!(b.push(3, line(3)), Pushed::Taken);
        assert_eq!(b.push(4, line(3)), Pushed::Full);
        let batch = b.finish();
        assert_eq!(batch.body, b"xxx\nxxx\n");
        assert_eq!(
            (batch.lines, batch.sent, batch.through),
            (2, Some((1, 3)), 3)
        );
    }

    #[test]
    fn batches_stop_before_the_byte_limit() {
        // 4 + 4 bytes fit in 9; a third line would make 12.
        let mut b = BatchBuilder::new(10, limits(100, 9));
        assert_eq!(b.push(11, line(3)), Pushed::Taken);
        assert_eq!(b.push(12, line(3)), Pushed::Taken);
        assert_eq!(b.push(13, line(3)), Pushed::Full);
        let batch = b.finish();
        assert_eq!(batch.body.len(), 8);
        assert_eq!(batch.through, 12);

        // Exactly at the limit is allowed.
        let mut b = BatchBuilder::new(0, limits(100, 8));
        assert_eq!(b.push(1, line(3)), Pushed::Taken);
        assert_eq!(b.push(2, line(3)), Pushed::Taken);
        assert_eq!(b.finish().body.len(), 8);
    }

    #[test]
    fn a_line_larger_than_the_byte_limit_goes_alone() {
        let mut b = BatchBuilder::new(0, limits(100, 10));
        assert_eq!(b.push(1, line(50)), Pushed::Taken);
        assert_eq!(b.push(2, line(1)), Pushed::Full);
        let batch = b.finish();
        assert_eq!((batch.lines, batch.through), (1, 1));

        let mut b = BatchBuilder::new(0, limits(100, 10));
        assert_eq!(b.push(1, line(2)), Pushed::Taken);
        assert_eq!(b.push(2, line(50)), Pushed::Full);
    }

    #[test]
    fn a_waiting_record_ends_the_batch_and_holds_the_cursor() {
        let mut b = BatchBuilder::new(0, limits(100, 1000));
        assert_eq!(b.push(1, Line::Skip), Pushed::Taken);
        assert_eq!(b.push(2, Line::Wait), Pushed::Full);
        let batch = b.finish();
        assert!(batch.body.is_empty());
        assert_eq!(batch.through, 1);
    }

    #[test]
    fn statuses() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify(s), Verdict::Delivered, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(s), Verdict::Retry, "{s}");
        }
        for s in [100, 301, 302, 400, 401, 403, 404, 405, 413, 422] {
            assert_eq!(classify(s), Verdict::Fatal, "{s}");
        }
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(30),
        };
        // Without jitter: half the exponential delay; with the most, all.
        assert_eq!(b.delay(0, None, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(0, None, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(1, None, 1.0), Duration::from_millis(200));
        assert_eq!(b.delay(3, None, 0.5), Duration::from_millis(600));
        // Capped, however many attempts.
        for attempt in [5, 10, 31, 32, 1000, u32::MAX] {
            let d = b.delay(attempt, None, 0.999);
            assert!(d <= b.cap && d >= b.cap / 2, "{attempt}: {d:?}");
        }
        // Jitter out of range is clamped, not trusted.
        assert_eq!(b.delay(0, None, 7.0), Duration::from_millis(100));
        assert_eq!(b.delay(0, None, f64::NAN), Duration::from_millis(50));
        // Retry-After replaces the computed delay, up to its own bound.
        assert_eq!(
            b.delay(9, Some(Duration::ZERO), 0.5),
            Duration::ZERO,
            "Retry-After: 0 means now"
        );
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(5)), 0.5),
            Duration::from_secs(5)
        );
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(86_400)), 0.5),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn the_cursor_survives_a_reload_and_refuses_another_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forward.cursor");
        let log = LogId::new("log-a");
        let mut c = Cursor::load(&path, &log).unwrap();
        assert_eq!(c.seq, 0, "no file: the log's start");
        c.advance(42).unwrap();
        assert_eq!(Cursor::load(&path, &log).unwrap().seq, 42);
        assert!(!dir.path().join("forward.cursor.tmp").exists());
        assert!(matches!(
            Cursor::load(&path, &LogId::new("log-b")),
            Err(WebhookError::CursorOtherLog { .. })
        ));
        std::fs::write(&path, b"42").unwrap();
        assert!(matches!(
            Cursor::load(&path, &log),
            Err(WebhookError::CursorInvalid { .. })
        ));
    }

    fn reload(i: u64) -> Record {
        Record::Reload(ReloadRecord {
            what: ReloadKind::Policy,
            hash: Some(format!("h{i}")),
            requested_by: Some("signal".into()),
            result: ReloadResult::Applied,
        })
    }

    fn statement(i: u64) -> Record {
        Record::Statement(Box::new(StatementRecord {
            identity: Identity {
                kind: IdentityKind::Human,
                subject: "alice".into(),
                groups: vec![],
                on_behalf_of: None,
            },
            source: Source {
                address: None,
                tls: None,
            },
            destination: Destination {
                target: "app".into(),
                environment: None,
                session_id: "s-1".into(),
                backend_pid: None,
            },
            statement_id: i,
            protocol: Protocol::Simple,
            statement_name: None,
            text: NormalisedText::from_normalised("SELECT id FROM public.t"),
            fingerprint: "ab12".into(),
            reads: vec![Touched {
                object: "public.t".into(),
                columns: vec!["id".into()],
            }],
            writes: vec![],
            decision: Decision {
                effect: Effect::Allowed,
                policies: vec!["p".into()],
                bundle_hash: "b".into(),
                reason: None,
            },
            masked_columns: vec![],
            params: BindParams::Off,
            outcome: None,
        }))
    }

    fn outcome(statement_seq: u64, i: u64) -> Record {
        Record::Outcome(OutcomeRecord {
            statement_seq,
            session_id: "s-1".into(),
            statement_id: i,
            outcome: StatementOutcome {
                command: Some("SELECT".into()),
                rows: Some(1),
                bytes: 10,
                duration_micros: 2000,
                sqlstate: None,
                masked_values: Default::default(),
                detector_hits: Default::default(),
            },
        })
    }

    /// A store holding `records` in order.
    fn store_with(records: &[Record]) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let log = AuditLog::open(AuditConfig::new(&path)).unwrap();
        for r in records {
            log.submit_durable(r, Duration::from_secs(10)).unwrap();
        }
        drop(log);
        let store = SqliteStore::open_read_only(&path).unwrap();
        (dir, store)
    }

    fn lines(batch: &Batch) -> Vec<Value> {
        batch
            .body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn native_batches_read_oldest_first_after_the_cursor() {
        let records: Vec<Record> = (1..=5).map(reload).collect();
        let (_dir, store) = store_with(&records);
        assert_eq!(last_seq(&store).unwrap(), 5);
        let rows = read_after(&store, 2, 10).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );

        let b = next_batch(&store, Format::Native, 1, None, limits(2, 1 << 20), None)
            .unwrap()
            .unwrap();
        assert_eq!((b.lines, b.sent, b.through), (2, Some((2, 3)), 3));
        let l = lines(&b);
        assert_eq!(l[0]["seq"], 2);
        assert_eq!(l[0]["log"], store.log().as_str());
        assert_eq!(l[0]["record"]["type"], "reload");
        assert_eq!(l[0]["record"]["hash"], "h2");
        assert!(l[0]["ts"].as_i64().unwrap() > 0);
        // The record's bytes are the ones in the envelope, as hashed.
        let envelope = store.envelope(2).unwrap().unwrap();
        let env: Value = serde_json::from_slice(&envelope).unwrap();
        let mut canon = Vec::new();
        canonical::write_value(&env["record"], &mut canon).unwrap();
        let body = String::from_utf8(b.body.clone()).unwrap();
        assert!(
            body.contains(std::str::from_utf8(&canon).unwrap()),
            "{body}"
        );

        // --once's bound, and the end of the store.
        let b = next_batch(
            &store,
            Format::Native,
            3,
            Some(4),
            limits(10, 1 << 20),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(b.through, 4);
        assert!(
            next_batch(&store, Format::Native, 5, None, limits(10, 1 << 20), None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn ocsf_sends_statements_with_outcomes_and_passes_over_the_rest() {
        // 1 reload, 2 statement, 3 its outcome, 4 reload, 5 statement
        // without an outcome.
        let (_dir, store) = store_with(&[
            reload(1),
            statement(1),
            outcome(2, 1),
            reload(2),
            statement(2),
        ]);
        let b = next_batch(&store, Format::Ocsf, 0, None, limits(10, 1 << 20), None)
            .unwrap()
            .unwrap();
        let l = lines(&b);
        assert_eq!(l.len(), 2);
        assert_eq!(b.sent, Some((2, 5)));
        assert_eq!(b.through, 5);
        assert_eq!(l[0]["class_uid"], 6005);
        assert_eq!(l[0]["unmapped"]["seq"], 2);
        assert_eq!(l[0]["unmapped"]["outcome"]["seq"], 3);
        assert_eq!(l[0]["status"], "Success");
        assert_eq!(l[1]["status"], "Unknown");

        // While seq 5 is younger than the settle time it waits for its
        // outcome: the batch ends before it.
        let now = read_after(&store, 4, 1).unwrap()[0].ts_micros;
        let settle = Settle {
            now_micros: now,
            wait: Duration::from_secs(5),
        };
        let b = next_batch(
            &store,
            Format::Ocsf,
            0,
            None,
            limits(10, 1 << 20),
            Some(settle),
        )
        .unwrap()
        .unwrap();
        assert_eq!((b.lines, b.through), (1, 4));
        // Only records passed over: no body, the cursor still moves.
        let b = next_batch(&store, Format::Ocsf, 2, Some(4), limits(10, 1 << 20), None)
            .unwrap()
            .unwrap();
        assert_eq!((b.lines, b.body.len(), b.through), (0, 0, 4));
    }
}
