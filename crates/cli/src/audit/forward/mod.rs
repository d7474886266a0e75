//! `portcullis audit forward`: follows the store and POSTs new records, in
//! batches of NDJSON, to a SIEM's HTTP collector. The cursor file holds
//! the last seq the collector acknowledged (2xx) and is moved only then,
//! so delivery is at least once and a restart resumes where it stopped.
//!
//! Answers: 2xx moves on; 5xx, 429, 408 and transport failures (refused
//! connection, TLS, timeout) are retried with exponential backoff (or the
//! collector's `Retry-After`); any other status stops the command with
//! exit 1, the cursor where it was. The pure parts (batching, formats,
//! backoff, the cursor file) are `portcullis_audit::export::webhook`;
//! this module holds the arguments, the loop and the HTTP client.

mod client;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use portcullis_audit::export::webhook::{
    self, classify, Backoff, Batch, Cursor, Limits, Settle, Verdict,
};
use portcullis_audit::SqliteStore;

use super::time::{now_micros, parse_duration};
use super::{fail, StoreArgs};
use client::Client;

/// The collector refused a batch, or retries ran out.
const EXIT_UNDELIVERED: u8 = 1;
/// How many retries `--once` makes by default before it gives up (a
/// follower retries until stopped: an outage must not end it).
const ONCE_RETRIES: u32 = 10;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Statement records as OCSF Datastore Activity (6005) events, their
    /// outcome folded in; other records are passed over.
    Ocsf,
    /// Every record: {"log","record","seq","ts"}, the record as hashed.
    Native,
    /// OpenTelemetry logs (OTLP/HTTP JSON, for a collector's /v1/logs):
    /// every record a log record whose body is its native line.
    Otlp,
}

#[derive(clap::Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The collector's URL (http:// or https://), e.g.
    /// https://splunk.example:8088/services/collector/raw
    #[arg(long, value_name = "URL")]
    url: String,
    /// The file that holds the last seq the collector acknowledged:
    /// created on the first delivery, read at start to resume.
    #[arg(long, value_name = "FILE")]
    cursor: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Ocsf)]
    format: Format,
    /// Most records in one request.
    #[arg(long, value_name = "N", default_value_t = 500)]
    batch: usize,
    /// Most bytes in one request body (a single larger record goes alone).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    max_bytes: usize,
    /// Send the value of this environment variable as the Authorization
    /// header ("Splunk <token>", "Bearer <token>"). Never given on the
    /// command line, never printed.
    #[arg(long, value_name = "VAR")]
    auth_env: Option<String>,
    /// The header --auth-env fills (DD-API-KEY for Datadog's intake).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "Authorization",
        requires = "auth_env"
    )]
    auth_header: String,
    /// Trust this CA (PEM) instead of the system's, for https://.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Send the records in the store now and exit (0 when all were
    /// delivered) instead of following the store.
    #[arg(long)]
    once: bool,
    /// How often to look for new records while following, in ms.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    poll_ms: u64,
    /// How long one request may take, connecting included.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Retries of one batch before giving up (exit 1). Default: forever
    /// when following, 10 with --once.
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,
    /// ocsf while following: how long a statement waits for its outcome
    /// record before it is sent without one (status Unknown).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    settle: Duration,
}

impl Format {
    fn wire(self) -> webhook::Format {
        match self {
            Format::Ocsf => webhook::Format::Ocsf,
            Format::Native => webhook::Format::Native,
            Format::Otlp => webhook::Format::Otlp,
        }
    }
}

pub fn run(args: &ForwardArgs) -> ExitCode {
    if args.batch == 0 || args.max_bytes == 0 {
        return fail("--batch and --max-bytes must be at least 1");
    }
    let auth = match &args.auth_env {
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Some((args.auth_header.as_str(), var.as_str(), v)),
            Ok(_) => return fail(format_args!("--auth-env: ${var} is empty")),
            Err(_) => return fail(format_args!("--auth-env: ${var} is not set")),
        },
        None => None,
    };
    let client = match Client::new(&args.url, args.ca_file.as_deref(), auth, args.timeout) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let store = match args
        .store
        .path("forward")
        .and_then(|p| super::open_store(&p))
    {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let cursor = match Cursor::load(&args.cursor, store.log()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format_args!("starting the runtime: {e}")),
    };
    let mut forwarder = Forwarder {
        args,
        store,
        client,
        cursor,
        backoff: Backoff::default(),
        delivered: 0,
        requests: 0,
    };
    runtime.block_on(forwarder.run())
}

struct Forwarder<'a> {
    args: &'a ForwardArgs,
    store: SqliteStore,
    client: Client,
    cursor: Cursor,
    backoff: Backoff,
    delivered: u64,
    requests: u64,
}

/// Why a batch was not delivered.
enum Undelivered {
    Refused {
        status: http::StatusCode,
        excerpt: String,
    },
    GaveUp {
        retries: u32,
        last: String,
    },
}

impl Forwarder<'_> {
    async fn run(&mut self) -> ExitCode {
        let args = self.args;
        let format = args.format.wire();
        let limits = Limits {
            max_records: args.batch,
            max_bytes: args.max_bytes,
        };
        // --once stops at the head it sees now, so a busy proxy cannot
        // keep it running.
        let until = if args.once {
            match webhook::last_seq(&self.store) {
                Ok(s) => Some(s),
                Err(e) => return fail(e),
            }
        } else {
            None
        };
        if let Err(e) = self.note_gap() {
            return fail(e);
        }
        let stop = shutdown();
        tokio::pin!(stop);
        loop {
            // With --once the store is taken as it is: no statement waits.
            let settle = (!args.once).then(|| Settle {
                now_micros: now_micros(),
                wait: args.settle,
            });
            let batch = match webhook::next_batch(
                &self.store,
                format,
                self.cursor.seq,
                until,
                limits,
                settle,
            ) {
                Ok(b) => b,
                Err(e) => return fail(e),
            };
            let Some(batch) = batch else {
                if args.once {
                    eprintln!(
                        "forwarded {} record(s) in {} request(s); cursor at seq {}",
                        self.delivered, self.requests, self.cursor.seq
                    );
                    return ExitCode::SUCCESS;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(args.poll_ms)) => continue,
                    _ = &mut stop => return self.stopped(None),
                }
            };
            if batch.lines > 0 {
                let outcome = tokio::select! {
                    r = self.deliver(&batch) => Some(r),
                    _ = &mut stop => None,
                };
                let Some(outcome) = outcome else {
                    return self.stopped(Some(&batch));
                };
                if let Err(why) = outcome {
                    return self.undelivered(&batch, why);
                }
                self.delivered += batch.lines as u64;
                self.requests += 1;
            }
            // Only now, after the 2xx: a crash before this line sends the
            // batch again (at least once), never skips it.
            if let Err(e) = self.cursor.advance(batch.through) {
                return fail(e);
            }
        }
    }

    /// POSTs the batch until a 2xx, a fatal status, or the retries end.
    async fn deliver(&mut self, batch: &Batch) -> Result<(), Undelivered> {
        let format = self.args.format.wire();
        let body = Bytes::from(format.request_body(self.store.log(), &batch.body));
        let max_retries = self.args.max_retries.or(if self.args.once {
            Some(ONCE_RETRIES)
        } else {
            None
        });
        let mut retry = 0u32;
        loop {
            let (why, retry_after) =
                match self.client.post(body.clone(), format.content_type()).await {
                    Ok(answer) => match classify(answer.status.as_u16()) {
                        Verdict::Delivered => return Ok(()),
                        Verdict::Fatal => {
                            return Err(Undelivered::Refused {
                                status: answer.status,
                                excerpt: answer.excerpt,
                            })
                        }
                        Verdict::Retry => (answer.status.to_string(), answer.retry_after),
                    },
                    Err(e) => (e.to_string(), None),
                };
            if max_retries.is_some_and(|m| retry >= m) {
                return Err(Undelivered::GaveUp {
                    retries: retry,
                    last: why,
                });
            }
            let delay = self
                .backoff
                .delay(retry, retry_after, rand::random::<f64>());
            eprintln!(
                "warning: {}: {why}; retrying in {} ms",
                seqs(batch),
                delay.as_millis()
            );
            tokio::time::sleep(delay).await;
            retry = retry.saturating_add(1);
        }
    }

    fn undelivered(&self, batch: &Batch, why: Undelivered) -> ExitCode {
        let at = self.cursor.seq;
        match why {
            Undelivered::Refused { status, excerpt } => {
                let said = if excerpt.is_empty() {
                    String::new()
                } else {
                    format!(" ({excerpt})")
                };
                eprintln!(
                    "error: the collector refused {} with {status}{said}; not retried, the cursor stays at seq {at}",
                    seqs(batch)
                );
            }
            Undelivered::GaveUp { retries, last } => eprintln!(
                "error: {} not delivered after {retries} retries (last: {last}); the cursor stays at seq {at}",
                seqs(batch)
            ),
        }
        ExitCode::from(EXIT_UNDELIVERED)
    }

    fn stopped(&self, in_flight: Option<&Batch>) -> ExitCode {
        match in_flight {
            Some(b) => eprintln!(
                "stopped: {} not acknowledged, sent again at the next start; cursor at seq {}",
                seqs(b),
                self.cursor.seq
            ),
            None => eprintln!("stopped; cursor at seq {}", self.cursor.seq),
        }
        ExitCode::SUCCESS
    }

    /// Says so when the store no longer holds the records right after the
    /// cursor (rotated out before they were forwarded).
    fn note_gap(&self) -> Result<(), webhook::WebhookError> {
        let at = self.cursor.seq;
        if let Some(first) = webhook::read_after(&self.store, at, 1)?.first() {
            if first.seq > at + 1 {
                eprintln!(
                    "warning: seqs {}..={} are not in the store (rotated out before they were forwarded?); forwarding from seq {}",
                    at + 1,
                    first.seq - 1,
                    first.seq
                );
            }
        }
        Ok(())
    }
}

fn seqs(batch: &Batch) -> String {
    match batch.sent {
        Some((a, b)) if a == b => format!("seq {a}"),
        Some((a, b)) => format!("seqs {a}..={b}"),
        None => format!("the records through seq {}", batch.through),
    }
}

/// Interrupt or SIGTERM (a service manager stopping the forwarder).
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
