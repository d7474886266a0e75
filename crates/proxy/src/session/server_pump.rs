//! Server → client.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use portcullis_wire::decode;
use portcullis_wire::framing::{Limits, Next, Splitter};
use portcullis_wire::tags::backend as be;
use tokio::io::AsyncWriteExt;
use tracing::warn;

use super::auditing::SessionAudit;
use super::buffer::ReadBuffer;
use super::guarding::Guarded;
use super::masking::{self, RowAction, RowMasking};
use super::outbox::Outbox;
use super::pending::{Audited, Described, Pending, Route};
use super::returned::{self, Metered};
use super::End;
use crate::audit::records::Completion;
use crate::metrics::Metrics;
use crate::stream::{ClientTls, ReadHalf, UpstreamTls, WriteHalf};

pub(crate) struct ServerPump<'a> {
    reader: ReadHalf<UpstreamTls>,
    writer: WriteHalf<ClientTls>,
    rb: ReadBuffer,
    splitter: Splitter,
    pending: &'a Pending,
    guarded: &'a Guarded,
    metrics: &'a Metrics,
    /// A write to the client was interrupted: its stream position is unknown.
    in_write: bool,
    /// The server sent a FATAL error: it is closing the connection and has
    /// told the client why.
    server_fatal: bool,
    /// What this walk of the read buffer sends on.
    outbox: Outbox,
    /// The masking plan of the result set under way.
    rows: RowMasking,
    /// The splitter keeps rows whole (see `RowMasking::needs_whole_rows`).
    whole_rows: bool,
    audit: Option<&'a SessionAudit>,
    /// Reply bytes since the last statement ended: the next one's.
    replied: u64,
    /// Dropping the rest of a streamed row over a limit on what the
    /// session is returned (see `returned.rs`).
    dropping: bool,
}

enum Action {
    Forward,
    /// The message was rewritten into the outbox's own bytes.
    Rewritten,
    /// Forward; an ErrorResponse, which may be the server's last word.
    Error,
    /// Send these bytes instead (the proxy's answer to a refused request).
    Replace(Bytes),
    /// Never pass this message on.
    Drop,
}

impl<'a> ServerPump<'a> {
    pub fn new(
        reader: ReadHalf<UpstreamTls>,
        writer: WriteHalf<ClientTls>,
        initial: BytesMut,
        pending: &'a Pending,
        guarded: &'a Guarded,
        metrics: &'a Metrics,
        audit: Option<&'a SessionAudit>,
    ) -> Self {
        ServerPump {
            reader,
            writer,
            rb: ReadBuffer::new(initial),
            splitter: Splitter::new(Limits::backend()),
            pending,
            guarded,
            metrics,
            in_write: false,
            server_fatal: false,
            outbox: Outbox::default(),
            rows: RowMasking::new(),
            whole_rows: false,
            audit,
            replied: 0,
            dropping: false,
        }
    }
}

// One argument per piece of pump state the step reads or changes.
#[allow(clippy::too_many_arguments)]
fn judge(
    pending: &Pending,
    guarded: &Guarded,
    metrics: &Metrics,
    outcomes: Outcomes<'_>,
    rows: &mut RowMasking,
    own: &mut Vec<u8>,
    tag: u8,
    msg: &[u8],
) -> Result<Action, End> {
    let completion = matches!(
        tag,
        be::PARSE_COMPLETE
            | be::BIND_COMPLETE
            | be::CLOSE_COMPLETE
            | be::COMMAND_COMPLETE
            | be::EMPTY_QUERY_RESPONSE
            | be::PORTAL_SUSPENDED
    );
    let routed = completion
        || matches!(
            tag,
            be::DATA_ROW | be::ROW_DESCRIPTION | be::NO_DATA | be::PARAMETER_DESCRIPTION
        );
    let mut hold = false;
    if routed {
        match pending.route(completion, msg) {
            Route::Client => {}
            Route::Hidden => return Ok(Action::Drop),
            Route::Release(held) => return Ok(Action::Replace(held)),
            Route::Hold => hold = true,
        }
    }
    if hold {
        // Followed in the ledger like any completion, sent later.
        let done = pending.command_done(&mut |t, ran| guarded.settle(t, ran));
        let masked = rows.take_masked();
        if done.over {
            outcomes.over(done.audited);
        } else {
            outcomes.completed(done.audited, msg, masked);
        }
        rows.ended();
        return Ok(Action::Drop);
    }
    if tag == be::DATA_ROW || tag == be::COPY_DATA {
        // The plain path: one branch per row when nothing is masked.
        if !guarded.masks() {
            return match pending.is_metered() {
                false => Ok(Action::Forward),
                true => metered(pending, msg.len(), Action::Forward),
            };
        }
        let from = own.len();
        let action = if tag == be::DATA_ROW {
            rows.row(msg, own)?
        } else {
            rows.copy_data(msg, own)?
        };
        let (sent, action) = match action {
            RowAction::Forward => (msg.len(), Action::Forward),
            RowAction::Masked => (own.len() - from, Action::Rewritten),
        };
        if !pending.is_metered() {
            return Ok(action);
        }
        // What leaves is counted, masked or not, whichever is larger.
        let judged = metered(pending, sent.max(msg.len()), action);
        if matches!(judged, Ok(Action::Drop)) {
            own.truncate(from);
        }
        return judged;
    }
    let settle = &mut |t, ran| guarded.settle(t, ran);
    match tag {
        be::READY_FOR_QUERY => {
            let status = decode::ready_for_query(decode::body(msg))
                .map_err(|e| End::UpstreamProtocol(e.to_string()))?;
            // Under the gate, so that "drained" covers every message
            // judged so far (see `Guarded::gate`).
            let _gate = guarded.gate();
            rows.take_masked();
            rows.ended();
            *outcomes.replied = 0;
            let ready = pending.ready(status, settle);
            if ready.counted_lost {
                return Err(End::Unsafe(portcullis_wire::Refusal::fatal(
                    portcullis_wire::sqlstate::PROTOCOL_VIOLATION,
                    "terminating connection because the server ended a statement Portcullis was counting without running it",
                )));
            }
            if let Some(took) = ready.took {
                metrics.statement_seconds(took.as_secs_f64());
            }
            guarded.ready(status, ready.drained);
            Ok(Action::Forward)
        }
        be::COPY_IN_RESPONSE => {
            pending.copy_in_started();
            Ok(Action::Forward)
        }
        be::COPY_OUT_RESPONSE => {
            if guarded.masks() {
                rows.copy_out(guarded, msg, pending.copy_out_rows())?;
            }
            Ok(Action::Forward)
        }
        be::PARSE_COMPLETE | be::BIND_COMPLETE | be::CLOSE_COMPLETE => {
            pending.step_done(settle);
            Ok(Action::Forward)
        }
        be::ROW_DESCRIPTION | be::NO_DATA => match pending.described(tag == be::NO_DATA) {
            Described::Rows {
                rows: source,
                hidden,
            } => {
                if !guarded.masks() {
                    // Only the proxy's own Describe (sent while masking
                    // was on) is hidden.
                } else if tag == be::ROW_DESCRIPTION {
                    rows.described(guarded, msg, &source)?;
                } else {
                    rows.no_rows(source);
                }
                Ok(if hidden {
                    Action::Drop
                } else {
                    Action::Forward
                })
            }
            Described::Statement | Described::Unasked => Ok(Action::Forward),
        },
        be::COMMAND_COMPLETE | be::PORTAL_SUSPENDED | be::EMPTY_QUERY_RESPONSE => {
            let masked = rows.take_masked();
            rows.ended();
            let done = pending.command_done(settle);
            if done.over {
                // The client gets the limit's error in its place, once the
                // server has failed the statement too (`returned.rs`).
                outcomes.over(done.audited);
                return Ok(Action::Drop);
            }
            outcomes.completed(done.audited, msg, masked);
            Ok(Action::Forward)
        }
        be::COPY_DONE if pending.is_metered() => {
            Ok(match pending.meter(Metered::Pass, |m| m.copy_done()) {
                Metered::Drop => Action::Drop,
                _ => Action::Forward,
            })
        }
        be::PARAMETER_STATUS => {
            let (name, value) = decode::parameter_status(decode::body(msg))
                .map_err(|e| End::UpstreamProtocol(e.to_string()))?;
            if pending.is_metered() {
                if let Metered::Unexpected(r) =
                    pending.meter(Metered::Pass, |m| m.parameter_status(msg.len()))
                {
                    return Err(End::Unsafe(r));
                }
            }
            match super::lexing::hazard(name, value)
                .or_else(|| guarded.identity_setting_changed(name, value))
            {
                // Not passed on: the session ends before anything else.
                Some(r) => Err(End::Unsafe(r)),
                None => {
                    guarded.parameter_status(name, value);
                    if guarded.masks() && masking::scan_parameter_status(guarded, name, value, own)
                    {
                        return Ok(Action::Rewritten);
                    }
                    Ok(Action::Forward)
                }
            }
        }
        be::ERROR_RESPONSE => {
            let fatal = is_fatal(msg);
            guarded.error();
            rows.take_masked();
            rows.ended();
            // Counted while the statement it ends is still counted: its
            // text is part of what that statement returns.
            let withheld =
                pending.is_metered() && pending.meter(false, |m| m.error_report(msg.len()));
            let failed = pending.error(fatal, settle);
            outcomes.failed(failed.audited, msg);
            if withheld && failed.substitute.is_none() {
                let code = decode::report_fields(decode::body(msg))
                    .ok()
                    .and_then(|f| f.code.map(str::to_owned))
                    .unwrap_or_else(|| "XX000".to_owned());
                return Ok(Action::Replace(returned::withheld_error(&code, fatal)));
            }
            match failed.substitute {
                Some(ours) => Ok(Action::Replace(ours)),
                // A failed cast or a duplicate key can quote a value.
                None if guarded.masks() && masking::scan_report(guarded, msg, own) => {
                    Ok(Action::Rewritten)
                }
                None => Ok(Action::Error),
            }
        }
        // LISTEN is refused to a limited session; code it runs could still
        // listen (a DO block): no notification is counted against a
        // statement, so none passes.
        be::NOTIFICATION_RESPONSE if pending.is_metered() => Ok(Action::Drop),
        be::NOTICE_RESPONSE | be::NOTIFICATION_RESPONSE => {
            if pending.is_metered() {
                match pending.meter(Metered::Pass, |m| m.report(msg.len())) {
                    Metered::Pass => {}
                    Metered::Drop => return Ok(Action::Drop),
                    Metered::Unexpected(r) => return Err(End::Unsafe(r)),
                }
            }
            if guarded.masks() && masking::scan_report(guarded, msg, own) {
                Ok(Action::Rewritten)
            } else {
                Ok(Action::Forward)
            }
        }
        // The server's own cancel key must never reach the client, and
        // authentication is over: neither may appear mid-session.
        be::BACKEND_KEY_DATA | be::AUTHENTICATION | be::NEGOTIATE_PROTOCOL_VERSION => {
            warn!(parent: &guarded.span, tag = %(tag as char), "unexpected message from server dropped");
            Ok(Action::Drop)
        }
        _ => Ok(Action::Forward),
    }
}

/// `action` for a row of `len` bytes within what the session may be
/// returned; dropped past it (see `returned.rs`).
fn metered(pending: &Pending, len: usize, action: Action) -> Result<Action, End> {
    match pending.meter(Metered::Pass, |m| m.row(len)) {
        Metered::Pass => Ok(action),
        Metered::Drop => Ok(Action::Drop),
        Metered::Unexpected(r) => Err(End::Unsafe(r)),
    }
}

/// Where outcomes of audited statements go.
struct Outcomes<'a> {
    audit: Option<&'a SessionAudit>,
    replied: &'a mut u64,
}

impl Outcomes<'_> {
    /// A CommandComplete (or PortalSuspended, EmptyQueryResponse) ended
    /// statement `done`.
    fn completed(self, done: Option<Audited>, msg: &[u8], masked: super::masking::Masked) {
        let bytes = std::mem::take(self.replied);
        let (Some(audit), Some(done)) = (self.audit, done) else {
            return;
        };
        let mut c = if msg.first() == Some(&be::COMMAND_COMPLETE) {
            decode::command_complete(decode::body(msg))
                .map(Completion::from_tag)
                .unwrap_or_default()
        } else {
            Completion::default()
        };
        c.bytes = bytes;
        c.masked = masked.rows;
        c.detector_hits = masked.hits;
        audit.outcome(done, c);
    }

    /// Statement `done` went over a limit on what the session is returned.
    fn over(self, done: Option<Audited>) {
        let bytes = std::mem::take(self.replied);
        let (Some(audit), Some(done)) = (self.audit, done) else {
            return;
        };
        audit.outcome(
            done,
            Completion {
                sqlstate: Some(portcullis_wire::sqlstate::PROGRAM_LIMIT_EXCEEDED.to_owned()),
                bytes,
                ..Completion::default()
            },
        );
    }

    /// An ErrorResponse ended statement `done`.
    fn failed(self, done: Option<Audited>, msg: &[u8]) {
        let bytes = std::mem::take(self.replied);
        let (Some(audit), Some(done)) = (self.audit, done) else {
            return;
        };
        let code = decode::report_fields(decode::body(msg))
            .ok()
            .and_then(|f| f.code.map(str::to_owned));
        audit.outcome(
            done,
            Completion {
                sqlstate: code,
                bytes,
                ..Completion::default()
            },
        );
    }
}

/// Whether an ErrorResponse is the server's last word.
fn is_fatal(msg: &[u8]) -> bool {
    let severity = decode::report_fields(decode::body(msg))
        .ok()
        .and_then(|f| f.severity);
    matches!(severity, Some("FATAL" | "PANIC"))
}

impl ServerPump<'_> {
    /// Relays until the session ends. With `until_answered`, returns
    /// [`End::Answered`] as soon as every request sent so far is answered.
    pub async fn run(&mut self, until_answered: bool) -> End {
        loop {
            let mut pos = 0;
            let mut run_start = 0;
            let want = loop {
                let next = match self.splitter.next(&self.rb.buf[pos..]) {
                    Ok(n) => n,
                    Err(e) => return End::UpstreamProtocol(e.to_string()),
                };
                match next {
                    Next::NeedMore { hint } => break hint,
                    Next::StreamHead { tag, .. }
                        if self.rows.needs_whole_rows()
                            && (tag == be::DATA_ROW || tag == be::COPY_DATA) =>
                    {
                        // Over the limit of a masked row: never forwarded.
                        self.outbox.run(run_start..pos);
                        let _ = self.send().await;
                        self.splitter = Splitter::new(Limits::backend());
                        return masking::too_large(self.guarded.max_masked_row());
                    }
                    Next::StreamHead { tag, total, len }
                        if self.pending.is_metered() && returned::is_result_data(tag) =>
                    {
                        self.replied += len as u64;
                        match self.pending.meter(Metered::Pass, |m| m.row(total)) {
                            Metered::Pass => {}
                            Metered::Drop => {
                                self.outbox.run(run_start..pos);
                                run_start = pos + len;
                                self.dropping = true;
                            }
                            Metered::Unexpected(r) => {
                                self.outbox.run(run_start..pos);
                                let _ = self.send().await;
                                return End::Unsafe(r);
                            }
                        }
                        pos += len;
                    }
                    Next::StreamBody { len, last } if self.dropping => {
                        self.outbox.run(run_start..pos);
                        run_start = pos + len;
                        self.dropping = !last;
                        pos += len;
                    }
                    Next::StreamBody { len, .. } | Next::StreamHead { len, .. } => {
                        self.replied += len as u64;
                        pos += len
                    }
                    Next::Whole { tag, len } => {
                        let own_from = self.outbox.own_len();
                        self.replied += len as u64;
                        let judged = judge(
                            self.pending,
                            self.guarded,
                            self.metrics,
                            Outcomes {
                                audit: self.audit,
                                replied: &mut self.replied,
                            },
                            &mut self.rows,
                            self.outbox.own_buffer(),
                            tag,
                            &self.rb.buf[pos..pos + len],
                        );
                        // Masked rows must arrive whole, up to the limit.
                        let whole = self.rows.needs_whole_rows();
                        if whole != self.whole_rows {
                            self.whole_rows = whole;
                            self.splitter.set_stream_threshold(if whole {
                                self.guarded.max_masked_row()
                            } else {
                                Limits::backend().stream_threshold
                            });
                        }
                        match judged {
                            Ok(Action::Forward) => {}
                            Ok(Action::Rewritten) => {
                                if tag == be::ERROR_RESPONSE {
                                    self.server_fatal |= is_fatal(&self.rb.buf[pos..pos + len]);
                                }
                                self.outbox.run(run_start..pos);
                                self.outbox.own_written(own_from);
                                run_start = pos + len;
                            }
                            Ok(Action::Error) => {
                                self.server_fatal |= is_fatal(&self.rb.buf[pos..pos + len]);
                            }
                            Ok(Action::Drop) => {
                                self.outbox.run(run_start..pos);
                                run_start = pos + len;
                            }
                            Ok(Action::Replace(ours)) => {
                                if tag == be::ERROR_RESPONSE {
                                    // A withheld FATAL is still the
                                    // server's last word.
                                    self.server_fatal |= is_fatal(&self.rb.buf[pos..pos + len]);
                                }
                                self.outbox.run(run_start..pos);
                                self.outbox.own(ours);
                                run_start = pos + len;
                            }
                            Err(e) => {
                                self.outbox.run(run_start..pos);
                                let _ = self.send().await;
                                return e;
                            }
                        }
                        pos += len;
                    }
                }
            };
            self.outbox.run(run_start..pos);
            if let Err(e) = self.send().await {
                return e;
            }
            self.rb.buf.advance(pos);
            if until_answered && self.pending.answered() && !self.splitter.mid_message() {
                return End::Answered;
            }
            let read = tokio::select! {
                r = self.rb.fill(&mut self.reader, want) => r,
                // Messages of the proxy's own (the notice that a statement
                // is held), only between the server's messages.
                told = self.pending.told(), if !self.splitter.mid_message() && !self.dropping => {
                    for bytes in told {
                        self.outbox.own(bytes);
                    }
                    if let Err(e) = self.send().await {
                        return e;
                    }
                    continue;
                }
            };
            match read {
                Ok(0) if self.server_fatal => return End::UpstreamClosed,
                Ok(0) => return End::UpstreamLost("server closed the connection".into()),
                Err(e) => return End::UpstreamLost(format!("read from server: {e}")),
                Ok(n) => self.metrics.server_bytes(n as u64),
            }
        }
    }

    /// Writes what the walk of the read buffer collected, in one go.
    async fn send(&mut self) -> Result<(), End> {
        self.outbox
            .send(&mut self.writer, &self.rb.buf, &mut self.in_write)
            .await
            .map_err(|_| End::ClientGone)
    }

    /// Sends a final message to the client if its stream is at a message
    /// boundary (a half-sent row cannot be followed by an error).
    /// Whether the pump can run again after being interrupted: only if it
    /// was not cut off in the middle of a write.
    pub fn resumable(&self) -> bool {
        !self.in_write
    }

    pub async fn say_last(&mut self, bytes: &[u8]) {
        if self.in_write || self.splitter.mid_message() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        })
        .await;
    }

    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        tokio::time::timeout(Duration::from_secs(2), self.writer.shutdown())
            .await
            .unwrap_or(Ok(()))
    }
}
