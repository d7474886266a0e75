//! Server → client.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use portcullis_wire::decode;
use portcullis_wire::framing::{Limits, Next, Splitter};
use portcullis_wire::tags::backend as be;
use tokio::io::AsyncWriteExt;
use tracing::warn;

use super::buffer::ReadBuffer;
use super::pending::Pending;
use super::{write_all_tracked, End};
use crate::metrics::Metrics;
use crate::stream::{ClientTls, ReadHalf, UpstreamTls, WriteHalf};

pub(crate) struct ServerPump<'a> {
    reader: ReadHalf<UpstreamTls>,
    writer: WriteHalf<ClientTls>,
    rb: ReadBuffer,
    splitter: Splitter,
    pending: &'a Pending,
    metrics: &'a Metrics,
    /// A write to the client was interrupted: its stream position is unknown.
    in_write: bool,
}

enum Action {
    Forward,
    /// Never pass this message on.
    Drop,
}

impl<'a> ServerPump<'a> {
    pub fn new(
        reader: ReadHalf<UpstreamTls>,
        writer: WriteHalf<ClientTls>,
        initial: BytesMut,
        pending: &'a Pending,
        metrics: &'a Metrics,
    ) -> Self {
        ServerPump {
            reader,
            writer,
            rb: ReadBuffer::new(initial),
            splitter: Splitter::new(Limits::backend()),
            pending,
            metrics,
            in_write: false,
        }
    }
}

fn judge(pending: &Pending, metrics: &Metrics, tag: u8, msg: &[u8]) -> Result<Action, End> {
    match tag {
        be::READY_FOR_QUERY => {
            let status = decode::ready_for_query(decode::body(msg))
                .map_err(|e| End::UpstreamProtocol(e.to_string()))?;
            if let Some(sent) = pending.ready(status) {
                metrics.statement_seconds(sent.elapsed().as_secs_f64());
            }
            Ok(Action::Forward)
        }
        be::COPY_IN_RESPONSE => {
            pending.copy_in_started();
            Ok(Action::Forward)
        }
        // The server's own cancel key must never reach the client, and
        // authentication is over: neither may appear mid-session.
        be::BACKEND_KEY_DATA | be::AUTHENTICATION | be::NEGOTIATE_PROTOCOL_VERSION => {
            warn!(tag = %(tag as char), "unexpected message from server dropped");
            Ok(Action::Drop)
        }
        _ => Ok(Action::Forward),
    }
}

impl ServerPump<'_> {
    pub async fn run(&mut self) -> End {
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
                        match judge(self.pending, self.metrics, tag, &self.rb.buf[pos..pos + len]) {
                            Ok(Action::Forward) => {}
                            Ok(Action::Drop) => {
                                if let Err(e) = self.flush(run_start, pos).await {
                                    return e;
                                }
                                run_start = pos + len;
                            }
                            Err(e) => {
                                let _ = self.flush(run_start, pos).await;
                                return e;
                            }
                        }
                        pos += len;
                    }
                }
            };
            if let Err(e) = self.flush(run_start, pos).await {
                return e;
            }
            self.rb.buf.advance(pos);
            match self.rb.fill(&mut self.reader, want).await {
                Ok(0) => return End::UpstreamLost("server closed the connection".into()),
                Err(e) => return End::UpstreamLost(format!("read from server: {e}")),
                Ok(n) => self.metrics.server_bytes(n as u64),
            }
        }
    }

    async fn flush(&mut self, from: usize, to: usize) -> Result<(), End> {
        if from >= to {
            return Ok(());
        }
        write_all_tracked(&mut self.writer, &self.rb.buf[from..to], &mut self.in_write)
            .await
            .map_err(|_| End::ClientGone)?;
        self.writer.flush().await.map_err(|_| End::ClientGone)
    }

    /// Sends a final message to the client if its stream is at a message
    /// boundary (a half-sent row cannot be followed by an error).
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
