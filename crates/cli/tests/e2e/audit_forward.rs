//! `portcullis audit forward`, the real binary, against a real HTTP
//! collector in the test process (axum on 127.0.0.1:0) that records every
//! request and answers from a script: batches arrive once and in order,
//! 503s are retried, a rerun resumes from the cursor, a 400 stops the
//! command without moving the cursor, the Authorization header comes from
//! the environment and is never printed, and a follower picks up records
//! as they are written and stops cleanly on SIGTERM.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use portcullis_audit::record::{ReloadKind, ReloadRecord, ReloadResult};
use portcullis_audit::{AuditConfig, AuditLog, Record};
use serde_json::Value;

/// One request as the collector saw it.
#[derive(Debug, Clone)]
struct Seen {
    status: u16,
    authorization: Option<String>,
    content_type: Option<String>,
    lines: Vec<Value>,
}

impl Seen {
    fn seqs(&self) -> Vec<u64> {
        self.lines
            .iter()
            .map(|l| l["seq"].as_u64().expect("seq"))
            .collect()
    }
}

#[derive(Default)]
struct Script {
    /// (status, Retry-After, body) for the next requests; 200 after.
    answers: VecDeque<(u16, Option<&'static str>, &'static str)>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Script>>;

struct Collector {
    url: String,
    script: Shared,
}

impl Collector {
    async fn start(answers: &[(u16, Option<&'static str>, &'static str)]) -> Collector {
        let script: Shared = Arc::new(Mutex::new(Script {
            answers: answers.iter().copied().collect(),
            seen: Vec::new(),
        }));
        let app = Router::new()
            .route("/ingest", post(ingest))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector {
            url: format!("http://{addr}/ingest"),
            script,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    /// The seqs of the records the collector accepted (2xx), in order.
    fn delivered(&self) -> Vec<u64> {
        self.seen()
            .iter()
            .filter(|s| (200..300).contains(&s.status))
            .flat_map(Seen::seqs)
            .collect()
    }
}

async fn ingest(State(script): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = script.lock().unwrap();
    let (status, retry_after, text) = s.answers.pop_front().unwrap_or((200, None, ""));
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<not text>").to_owned())
    };
    let lines = std::str::from_utf8(&body)
        .expect("utf-8 body")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    s.seen.push(Seen {
        status,
        authorization: header("authorization"),
        content_type: header("content-type"),
        lines,
    });
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    if let Some(ra) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", ra.parse().unwrap());
    }
    response
}

/// Appends `count` reload records to the store at `path` (created if
/// needed), each committed before this returns.
fn append(path: &Path, count: u64) {
    let log = AuditLog::open(AuditConfig::new(path)).expect("open the store");
    for i in 0..count {
        let r = Record::Reload(ReloadRecord {
            what: ReloadKind::Policy,
            hash: Some(format!("h{i}")),
            requested_by: Some("test".into()),
            result: ReloadResult::Applied,
        });
        log.submit_durable(&r, Duration::from_secs(10))
            .expect("commit");
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    c.arg("audit").arg("forward").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs the binary off the runtime's threads (the collector is on them).
async fn forward(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = command(args, env);
    let out: Output = tokio::task::spawn_blocking(move || c.output().expect("spawn portcullis"))
        .await
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn cursor_seq(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).expect("cursor is JSON");
    v["seq"].as_u64()
}

struct Files {
    _dir: tempfile::TempDir,
    store: PathBuf,
    cursor: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        Files {
            store: dir.path().join("audit.db"),
            cursor: dir.path().join("forward.cursor"),
            _dir: dir,
        }
    }

    fn args<'a>(&'a self, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec![
            "--store",
            self.store.to_str().unwrap(),
            "--cursor",
            self.cursor.to_str().unwrap(),
            "--url",
            url,
        ];
        a.extend_from_slice(extra);
        a
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forward_delivers_every_record_once_in_order_in_bounded_batches() {
    let f = Files::new();
    append(&f.store, 23);
    let c = Collector::start(&[]).await;
    let run = forward(
        &f.args(&c.url, &["--format", "native", "--batch", "5", "--once"]),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(
        run.stderr
            .contains("forwarded 23 record(s) in 5 request(s)"),
        "{}",
        run.all()
    );
    let seen = c.seen();
    assert_eq!(seen.len(), 5);
    for s in &seen {
        assert!(!s.lines.is_empty() && s.lines.len() <= 5, "{s:?}");
        assert_eq!(s.content_type.as_deref(), Some("application/x-ndjson"));
        assert_eq!(s.authorization, None);
        for l in &s.lines {
            assert_eq!(l["record"]["type"], "reload");
            assert!(l["ts"].as_i64().unwrap() > 0);
            assert!(l["log"].as_str().is_some_and(|id| !id.is_empty()));
        }
    }
    assert_eq!(c.delivered(), (1..=23).collect::<Vec<_>>());
    assert_eq!(cursor_seq(&f.cursor), Some(23));

    // By bytes: each native line here is well over 100 bytes, so a
    // 300-byte limit holds at most two.
    let f2 = Files::new();
    append(&f2.store, 5);
    let c2 = Collector::start(&[]).await;
    let run = forward(
        &f2.args(
            &c2.url,
            &["--format", "native", "--max-bytes", "300", "--once"],
        ),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(c2.seen().iter().all(|s| s.lines.len() <= 2));
    assert_eq!(c2.delivered(), (1..=5).collect::<Vec<_>>());

    // OCSF maps statements only: a trail of reloads sends nothing, and the
    // cursor still moves past them.
    let c3 = Collector::start(&[]).await;
    let ocsf_cursor = f.cursor.with_file_name("ocsf.cursor");
    let run = forward(
        &[
            "--store",
            f.store.to_str().unwrap(),
            "--cursor",
            ocsf_cursor.to_str().unwrap(),
            "--url",
            &c3.url,
            "--once",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(c3.seen().is_empty());
    assert_eq!(cursor_seq(&ocsf_cursor), Some(23));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forward_retries_503_and_loses_nothing() {
    let f = Files::new();
    append(&f.store, 7);
    let c = Collector::start(&[
        (503, Some("0"), "busy"),
        (503, Some("1"), "busy"),
        (200, None, ""),
        (503, Some("0"), "busy"),
    ])
    .await;
    let started = Instant::now();
    let run = forward(
        &f.args(&c.url, &["--format", "native", "--batch", "3", "--once"]),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(run.stderr.matches("retrying").count(), 3, "{}", run.all());
    assert!(run.stderr.contains("503"), "{}", run.all());
    // Retry-After: 1 was honoured.
    assert!(started.elapsed() >= Duration::from_secs(1));
    let seen = c.seen();
    // The refused batches were the same batch, sent again.
    assert_eq!(seen[0].seqs(), vec![1, 2, 3]);
    assert_eq!(seen[1].seqs(), vec![1, 2, 3]);
    assert_eq!(seen[3].seqs(), vec![4, 5, 6]);
    assert_eq!(c.delivered(), (1..=7).collect::<Vec<_>>());
    assert_eq!(cursor_seq(&f.cursor), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forward_resumes_from_the_cursor() {
    let f = Files::new();
    append(&f.store, 4);
    let c = Collector::start(&[]).await;
    let args = f.args(&c.url, &["--format", "native", "--once"]);
    let run = forward(&args, &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(c.delivered(), vec![1, 2, 3, 4]);

    // Nothing new: nothing sent.
    let run = forward(&args, &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(c.seen().len(), 1);
    assert_eq!(cursor_seq(&f.cursor), Some(4));

    // Three more: only those.
    append(&f.store, 3);
    let run = forward(&args, &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    let seen = c.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].seqs(), vec![5, 6, 7]);
    assert_eq!(cursor_seq(&f.cursor), Some(7));

    // A cursor written for another store is refused, not misapplied.
    let other = Files::new();
    append(&other.store, 1);
    let run = forward(
        &[
            "--store",
            other.store.to_str().unwrap(),
            "--cursor",
            f.cursor.to_str().unwrap(),
            "--url",
            &c.url,
            "--once",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("belongs to audit log"), "{}", run.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forward_stops_on_400_without_moving_the_cursor() {
    let f = Files::new();
    append(&f.store, 3);
    let c = Collector::start(&[
        (200, None, ""),
        (400, None, "{\"text\":\"Invalid data format\"}"),
    ])
    .await;
    let args = f.args(&c.url, &["--format", "native", "--batch", "3"]);
    let mut once = args.clone();
    once.push("--once");
    let run = forward(&once, &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(cursor_seq(&f.cursor), Some(3));

    // Following (not --once), a 400 still ends the command: it is not
    // retried forever.
    append(&f.store, 2);
    let run = forward(&args, &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    let err = run.stderr.trim();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for want in [
        "refused seqs 4..=5",
        "400 Bad Request",
        "Invalid data format",
        "cursor stays at seq 3",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert_eq!(c.seen().len(), 2, "a 400 is not retried");
    assert_eq!(cursor_seq(&f.cursor), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forward_sends_authorization_from_the_environment_and_never_prints_it() {
    const TOKEN: &str = "Splunk s3cr3t-6b1f0e2a-token";
    let f = Files::new();
    append(&f.store, 2);
    // A 503 first, so a warning is printed too, and a collector that
    // echoes the token in its answer.
    let c = Collector::start(&[(503, Some("0"), "bad token Splunk s3cr3t-6b1f0e2a-token")]).await;
    let run = forward(
        &f.args(
            &c.url,
            &[
                "--format",
                "native",
                "--once",
                "--auth-env",
                "FORWARD_TEST_TOKEN",
            ],
        ),
        &[("FORWARD_TEST_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    let seen = c.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.authorization.as_deref(), Some(TOKEN));
    }
    assert!(!run.all().contains("s3cr3t"), "{}", run.all());

    // Unset: a clear error, nothing sent.
    let run = forward(
        &f.args(&c.url, &["--once", "--auth-env", "FORWARD_TEST_UNSET"]),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(
        run.stderr.contains("$FORWARD_TEST_UNSET is not set"),
        "{}",
        run.all()
    );
    assert_eq!(c.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forward_follows_the_store_and_stops_on_sigterm() {
    let f = Files::new();
    append(&f.store, 3);
    let c = Collector::start(&[]).await;
    let mut cmd = command(
        &f.args(&c.url, &["--format", "native", "--poll-ms", "50"]),
        &[],
    );
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");

    let wait_for = |n: usize| {
        let c = &c;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.delivered().len() < n {
                assert!(Instant::now() < deadline, "got {:?}", c.delivered());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(3).await;
    // Written while it follows (the forwarder only reads the store).
    let store = f.store.clone();
    tokio::task::spawn_blocking(move || append(&store, 2))
        .await
        .unwrap();
    wait_for(5).await;
    assert_eq!(c.delivered(), vec![1, 2, 3, 4, 5]);
    // The collector has answered; the cursor follows the answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cursor_seq(&f.cursor) != Some(5) {
        assert!(
            Instant::now() < deadline,
            "cursor {:?}",
            cursor_seq(&f.cursor)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // SAFETY: kill(2) on the child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert_eq!(cursor_seq(&f.cursor), Some(5));
}

/// A collector behind TLS: a bare HTTP/1.1 responder (200 to every POST,
/// keep-alive) over tokio-rustls with the test PKI's server certificate,
/// recording each body's lines.
struct TlsCollector {
    url: String,
    bodies: Arc<Mutex<Vec<Vec<Value>>>>,
    handshakes_failed: Arc<std::sync::atomic::AtomicUsize>,
}

impl TlsCollector {
    async fn start(pki: &portcullis_testbed::TestPki) -> TlsCollector {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config = pki
            .rustls_server_config(Some(b"http/1.1"))
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
        let failed: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (b, f) = (bodies.clone(), failed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, bodies, failed) = (acceptor.clone(), b.clone(), f.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return;
                    };
                    let mut buf: Vec<u8> = Vec::new();
                    loop {
                        // Headers, then Content-Length bytes of body.
                        let end = loop {
                            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break at + 4;
                            }
                            let mut chunk = [0u8; 8192];
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse().expect("content-length"))
                            .expect("a content-length");
                        while buf.len() < end + len {
                            let mut chunk = [0u8; 8192];
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body: Vec<u8> = buf.drain(..end + len).skip(end).collect();
                        let lines = std::str::from_utf8(&body)
                            .expect("utf-8 body")
                            .lines()
                            .map(|l| serde_json::from_str(l).expect("a JSON line"))
                            .collect();
                        bodies.lock().unwrap().push(lines);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if tls.write_all(ok).await.is_err() || tls.flush().await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TlsCollector {
            url: format!("https://localhost:{port}/ingest"),
            bodies,
            handshakes_failed: failed,
        }
    }

    fn delivered(&self) -> Vec<u64> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|l| l["seq"].as_u64().expect("seq"))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forward_over_https_trusts_only_the_given_ca_and_checks_the_name() {
    let pki = portcullis_testbed::TestPki::generate(&["localhost"]).expect("test PKI");
    let f = Files::new();
    append(&f.store, 7);
    let ca = f.store.with_file_name("ca.pem");
    std::fs::write(&ca, pki.ca_cert_pem()).unwrap();
    let c = TlsCollector::start(&pki).await;

    // The system roots (here `SSL_CERT_FILE`, set to another CA so the
    // test does not depend on the machine's bundle) do not know the
    // collector's CA: the
    // handshake fails, the command says why, nothing is delivered, the
    // cursor stays.
    let stranger = portcullis_testbed::TestPki::generate(&["localhost"]).expect("other PKI");
    let other_ca = f.store.with_file_name("other-ca.pem");
    std::fs::write(&other_ca, stranger.ca_cert_pem()).unwrap();
    let run = forward(
        &f.args(
            &c.url,
            &["--format", "native", "--once", "--max-retries", "0"],
        ),
        &[("SSL_CERT_FILE", other_ca.to_str().unwrap())],
    )
    .await;
    assert_ne!(run.code, Some(0), "{}", run.all());
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "names the certificate problem: {}",
        run.all()
    );
    assert!(c.delivered().is_empty());
    assert_eq!(cursor_seq(&f.cursor), None);

    // The right CA but another name: refused too.
    let other_name = c.url.replace("localhost", "127.0.0.1");
    let run = forward(
        &f.args(
            &other_name,
            &[
                "--format",
                "native",
                "--once",
                "--max-retries",
                "0",
                "--ca-file",
                ca.to_str().unwrap(),
            ],
        ),
        &[],
    )
    .await;
    assert_ne!(run.code, Some(0), "{}", run.all());
    assert!(c.delivered().is_empty());
    assert_eq!(cursor_seq(&f.cursor), None);
    // The collector counts a failed handshake on its own task, which may
    // finish after the client has exited.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while c
        .handshakes_failed
        .load(std::sync::atomic::Ordering::SeqCst)
        < 2
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        c.handshakes_failed
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2,
        "both refusals happened in the handshake"
    );

    // The test CA and the certificate's name: every record, in order.
    let run = forward(
        &f.args(
            &c.url,
            &[
                "--format",
                "native",
                "--once",
                "--batch",
                "3",
                "--ca-file",
                ca.to_str().unwrap(),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(c.delivered(), (1..=7).collect::<Vec<_>>());
    assert_eq!(cursor_seq(&f.cursor), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forward_speaks_otlp_json_logs() {
    let f = Files::new();
    append(&f.store, 5);
    let c = Collector::start(&[]).await;
    let run = forward(
        &f.args(&c.url, &["--format", "otlp", "--batch", "2", "--once"]),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    let seen = c.seen();
    assert_eq!(seen.len(), 3, "5 records in batches of 2");
    let mut seqs = Vec::new();
    for s in &seen {
        assert_eq!(s.content_type.as_deref(), Some("application/json"));
        // One export request per body.
        assert_eq!(s.lines.len(), 1);
        let rl = &s.lines[0]["resourceLogs"][0];
        let service = &rl["resource"]["attributes"][0];
        assert_eq!(service["key"], "service.name");
        assert_eq!(service["value"]["stringValue"], "portcullis");
        assert_eq!(rl["scopeLogs"][0]["scope"]["name"], "portcullis.audit");
        for rec in rl["scopeLogs"][0]["logRecords"].as_array().unwrap() {
            let nanos: u128 = rec["timeUnixNano"].as_str().unwrap().parse().unwrap();
            let native: Value =
                serde_json::from_str(rec["body"]["stringValue"].as_str().unwrap()).unwrap();
            assert_eq!(nanos, native["ts"].as_u64().unwrap() as u128 * 1000);
            assert_eq!(native["record"]["type"], "reload");
            assert_eq!(rec["severityText"], "INFO");
            let seq_attr = rec["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "portcullis.audit.seq")
                .expect("seq attribute");
            let seq: u64 = seq_attr["value"]["intValue"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(seq, native["seq"].as_u64().unwrap());
            seqs.push(seq);
        }
    }
    assert_eq!(seqs, (1..=5).collect::<Vec<_>>());
    assert_eq!(cursor_seq(&f.cursor), Some(5));
}
