//! Server → client.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use portcullis_wire::decode;
use portcullis_wire::framing::{Limits, Next, Splitter};
use portcullis_wire::tags::backend as be;
use tokio::io::AsyncWriteExt;
use tracing::warn;

use super::buffer::ReadBuffer;
use super::guarding::Guarded;
use super::outbox::Outbox;
use super::pending::{Pending, Route};
use super::End;
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
}

enum Action {
    Forward,
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
        }
    }
}

fn judge(
    pending: &Pending,
    guarded: &Guarded,
    metrics: &Metrics,
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
        pending.command_done(&mut |t, ran| guarded.settle(t, ran));
        return Ok(Action::Drop);
    }
    let settle = &mut |t, ran| guarded.settle(t, ran);
    match tag {
        be::READY_FOR_QUERY => {
            let status = decode::ready_for_query(decode::body(msg))
                .map_err(|e| End::UpstreamProtocol(e.to_string()))?;
            // Under the gate, so that "drained" covers every message
            // judged so far (see `Guarded::gate`).
            let _gate = guarded.gate();
            let ready = pending.ready(status, settle);
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
        be::PARSE_COMPLETE | be::BIND_COMPLETE | be::CLOSE_COMPLETE => {
            pending.step_done(settle);
            Ok(Action::Forward)
        }
        be::ROW_DESCRIPTION | be::NO_DATA => {
            pending.described();
            Ok(Action::Forward)
        }
        be::COMMAND_COMPLETE | be::PORTAL_SUSPENDED | be::EMPTY_QUERY_RESPONSE => {
            pending.command_done(settle);
            Ok(Action::Forward)
        }
        be::PARAMETER_STATUS => {
            let (name, value) = decode::parameter_status(decode::body(msg))
                .map_err(|e| End::UpstreamProtocol(e.to_string()))?;
            match super::lexing::hazard(name, value) {
                // Not passed on: the session ends before anything else.
                Some(r) => Err(End::Unsafe(r)),
                None => {
                    guarded.parameter_status(name, value);
                    Ok(Action::Forward)
                }
            }
        }
        be::ERROR_RESPONSE => {
            let severity = decode::report_fields(decode::body(msg))
                .ok()
                .and_then(|f| f.severity);
            let fatal = matches!(severity, Some("FATAL" | "PANIC"));
            guarded.error();
            match pending.error(fatal, settle) {
                Some(ours) => Ok(Action::Replace(ours)),
                None => Ok(Action::Error),
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
                    Next::StreamBody { len, .. } | Next::StreamHead { len, .. } => pos += len,
                    Next::Whole { tag, len } => {
                        match judge(
                            self.pending,
                            self.guarded,
                            self.metrics,
                            tag,
                            &self.rb.buf[pos..pos + len],
                        ) {
                            Ok(Action::Forward) => {}
                            Ok(Action::Error) => {
                                let body = decode::body(&self.rb.buf[pos..pos + len]);
                                let severity =
                                    decode::report_fields(body).ok().and_then(|f| f.severity);
                                if matches!(severity, Some("FATAL" | "PANIC")) {
                                    self.server_fatal = true;
                                }
                            }
                            Ok(Action::Drop) => {
                                self.outbox.run(run_start..pos);
                                run_start = pos + len;
                            }
                            Ok(Action::Replace(ours)) => {
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
            match self.rb.fill(&mut self.reader, want).await {
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
