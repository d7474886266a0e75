use crate::harness::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::raw::{self, fe, Msg, Raw};
use portcullis_config::{Config, ScramVerifier, SslMode};
use portcullis_wire::ProtocolVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// Helpers shared with the other modules that run the real binary.
// ---------------------------------------------------------------------------

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `portcullis run -c FILE` as a child process, killed on drop.
pub(crate) struct Binary {
    child: Child,
    exited: Option<ExitStatus>,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub db: String,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
}

impl Binary {
    pub(crate) async fn start(setup: Setup) -> Binary {
        Binary::start_with(setup, |t| t).await
    }

    /// Writes the harness configuration (listener and, with `setup.admin`,
    /// the admin API on free ports), lets `edit` change the text, starts the
    /// binary and waits until the listener accepts.
    pub(crate) async fn start_with(setup: Setup, edit: impl Fn(String) -> String) -> Binary {
        let db = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("e2e"))
            .await
            .unwrap();
        let mut last_err = String::new();
        // A port picked by binding port 0 can be taken by someone else
        // before the binary binds it: retry a few times.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let config_path = write_config(dir.path(), &db, &setup, &addr.to_string());
            let mut text = std::fs::read_to_string(&config_path).unwrap();
            let admin = if setup.admin {
                let a: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                let from = "[admin]\nlisten = \"127.0.0.1:0\"";
                assert!(text.contains(from), "harness admin block changed:\n{text}");
                text = text.replace(from, &format!("[admin]\nlisten = \"{a}\""));
                Some(a)
            } else {
                None
            };
            std::fs::write(&config_path, edit(text)).unwrap();
            let stderr_path = dir.path().join("portcullis.stderr");
            let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .arg("run")
                .arg("-c")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr_path).unwrap())
                .spawn()
                .expect("spawn portcullis");
            let mut bin = Binary {
                child,
                exited: None,
                addr,
                admin,
                db: db.clone(),
                config_path,
                stderr_path,
                dir,
            };
            if bin.wait_listening().await {
                return bin;
            }
            last_err = bin.stderr();
            if !last_err.contains("cannot listen") {
                break;
            }
        }
        panic!("portcullis did not start; stderr:\n{last_err}");
    }

    async fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut addrs = vec![self.addr];
        addrs.extend(self.admin);
        for a in addrs {
            loop {
                if self.try_wait().is_some() {
                    return false;
                }
                if TcpStream::connect(a).await.is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "portcullis did not listen on {a}:\n{}",
                    self.stderr()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        true
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub(crate) fn signal(&self, sig: libc::c_int) {
        assert!(self.exited.is_none(), "process already exited");
        // SAFETY: sending a signal to our own child process.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap();
        }
        self.exited
    }

    /// Waits up to `limit` for the process to exit.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// libpq connection string for `user` to target "app".
    pub(crate) fn conn_str(&self, user: (&str, &str), extra: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname=app user={} password={} connect_timeout=10 {extra}",
            self.addr.port(),
            user.0,
            user.1
        )
    }

    pub(crate) async fn connect(
        &self,
        user: (&str, &str),
        extra: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, _task) =
            portcullis_testbed::connect(&self.conn_str(user, extra), Some(pki())).await?;
        Ok(client)
    }

    /// Raw protocol login (plaintext) as `user`.
    pub(crate) async fn raw_login(&self, user: (&str, &str)) -> Raw {
        Raw::login(
            self.addr,
            ProtocolVersion::V3_0,
            &[("user", user.0), ("database", "app")],
            user.1,
        )
        .await
        .unwrap_or_else(|e| panic!("login refused: {:?}", e.message()))
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("HTTP response timed out")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("no end of HTTP headers");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, body.to_owned())
}

/// The value of an OpenMetrics series (`name{labels}` exactly as rendered).
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// First column of the first DataRow, as text.
fn first_value(msgs: &[Msg]) -> Option<String> {
    let d = msgs.iter().find(|m| m.tag == b'D')?;
    let b = &d.body;
    let len = i32::from_be_bytes([b[2], b[3], b[4], b[5]]);
    (len >= 0).then(|| String::from_utf8_lossy(&b[6..6 + len as usize]).into_owned())
}

fn describe(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| match m.tag {
            b'E' | b'N' => format!(
                "{}({} {:?} {:?})",
                m.tag(),
                m.severity().unwrap_or_default(),
                m.code(),
                m.message()
            ),
            _ => m.tag().to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads everything until the peer closes (or resets); returns the bytes and
/// how long it took.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("connection still open after {limit:?}"));
        match n {
            Ok(0) | Err(_) => return (out, start.elapsed()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Splits raw backend bytes into messages.
fn split_msgs(mut b: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    while b.len() >= 5 {
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        if b.len() < len + 1 {
            break;
        }
        out.push(Msg {
            tag: b[0],
            body: b[5..len + 1].to_vec(),
        });
        b = &b[len + 1..];
    }
    out
}

fn carol_user(password: &str) -> String {
    format!(
        "\n[[user]]\nname = \"carol\"\nscram = \"{}\"\n",
        ScramVerifier::generate(password.as_bytes())
    )
}

const CAROL: (&str, &str) = ("carol", "carol-secret");
const DAVE: (&str, &str) = ("dave", "dave-secret");

// ---------------------------------------------------------------------------
// Limits and timeouts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_limit_refuses_with_53300_and_frees_the_slot() {
    let proxy = Proxy::with(Setup {
        listener_max_connections: 2,
        ..Setup::default()
    })
    .await;
    let a = proxy.client().await;
    let b = proxy.client().await;
    a.simple_query("SELECT 1").await.unwrap();
    b.simple_query("SELECT 1").await.unwrap();

    // A third client (libpq-like, plaintext startup) gets PostgreSQL's own
    // "too many clients" error.
    let err = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=disable"))
        .await
        .expect_err("a third connection must be refused");
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("expected an ErrorResponse, got: {err:?}"));
    assert_eq!(db.code().code(), "53300", "{db:?}");
    assert_eq!(db.severity(), "FATAL");
    assert!(
        db.message().contains("too many clients"),
        "{}",
        db.message()
    );

    // On the wire: after the startup packet (PostgreSQL, too, reads it
    // before refusing), an ErrorResponse before anything else, then the close.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut startup = bytes::BytesMut::new();
    portcullis_wire::encode::startup_message(
        &mut startup,
        portcullis_wire::ProtocolVersion::V3_0,
        [("user", ALICE.0), ("database", "app")],
    );
    tokio::io::AsyncWriteExt::write_all(&mut s, &startup)
        .await
        .unwrap();
    let (bytes, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let msgs = split_msgs(&bytes);
    assert_eq!(raw::tags(&msgs), "E", "{}", describe(&msgs));
    assert_eq!(msgs[0].code().as_deref(), Some("53300"));
    assert_eq!(msgs[0].severity().as_deref(), Some("FATAL"));

    // Both sessions are unaffected.
    a.simple_query("SELECT 1").await.unwrap();
    // After one closes, a new connection gets its slot.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    let c = loop {
        match proxy
            .connect(&proxy.conn_str(ALICE, "sslmode=disable"))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{e:?}");
                assert!(
                    Instant::now() < deadline,
                    "slot never freed after a client left"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let v: i32 = c.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(v, 7);
    b.simple_query("SELECT 1").await.unwrap();
}

/// PostgreSQL answers SSLRequest before it checks its connection limit, so a
/// client that asks for TLS gets "sorry, too many clients already" over TLS,
/// and libpq shows it. libpq (since 15.9/16.5/17.1) does not show an error
/// sent in place of the SSLRequest answer: it only says "server sent an
/// error response during SSL exchange".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_limit_refusal_reaches_clients_that_ask_for_tls() {
    let proxy = Proxy::with(Setup {
        listener_max_connections: 1,
        ..Setup::default()
    })
    .await;
    let a = proxy.client().await;
    a.simple_query("SELECT 1").await.unwrap();
    let mut problems = Vec::new();
    for sslmode in ["require", "prefer"] {
        let mut psql = Command::new(cluster().bin("psql"));
        portcullis_testbed::cluster::clear_libpq_env(&mut psql);
        psql.env("PGPASSWORD", ALICE.1)
            .args(["-X", "-c", "SELECT 1", "-d"])
            .arg(proxy.conn_str(ALICE, &format!("sslmode={sslmode} connect_timeout=10")));
        let out = tokio::task::spawn_blocking(move || psql.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert!(!out.status.success());
        if !stderr.contains("too many clients") {
            problems.push(format!(
                "psql sslmode={sslmode} over the limit says {stderr:?}; with PostgreSQL it says \
                 \"FATAL:  sorry, too many clients already\""
            ));
        }
    }
    match proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=require"))
        .await
    {
        Ok(_) => panic!("a second connection must be refused"),
        Err(e) if sqlstate(&e).as_deref() == Some("53300") => {}
        Err(e) => problems.push(format!(
            "tokio-postgres sslmode=require over the limit gets {e:?}, not SQLSTATE 53300"
        )),
    }
    a.simple_query("SELECT 1").await.unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn idle_setup() -> Setup {
    Setup {
        server: "idle_timeout = \"1s\"".into(),
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_an_idle_session_with_57p05() {
    let proxy = Proxy::with(idle_setup()).await;
    let mut raw = raw::login(&proxy, ALICE).await;
    let start = Instant::now();
    let m = raw.recv().await.expect("an ErrorResponse before the close");
    let waited = start.elapsed();
    assert_eq!(m.tag(), 'E', "{}", describe(std::slice::from_ref(&m)));
    assert_eq!(m.code().as_deref(), Some("57P05"));
    assert_eq!(m.severity().as_deref(), Some("FATAL"));
    let rest = raw.until_closed().await;
    assert!(
        rest.is_empty(),
        "messages after the FATAL: {}",
        describe(&rest)
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?} with idle_timeout = 1s"
    );

    // The same with tokio-postgres: after a while idle, the client is gone.
    let client = proxy.client().await;
    client.simple_query("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(client.is_closed(), "idle session still open after 2.5 s");
    assert!(client.simple_query("SELECT 1").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_spares_open_transactions() {
    let proxy = Proxy::with(idle_setup()).await;
    let client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE t (v int); BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !client.is_closed(),
        "a session in an open transaction was closed by idle_timeout"
    );
    client
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // Once the transaction is over the timeout applies again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        client.is_closed(),
        "idle_timeout did not apply after COMMIT"
    );

    // The same on the wire: an aborted transaction is still a transaction.
    let mut raw = raw::login(&proxy, ALICE).await;
    raw.send(&fe::query("BEGIN; SELECT 1/0")).await;
    let msgs = raw.until_ready().await;
    assert_eq!(msgs.last().unwrap().body, b"E", "{}", describe(&msgs));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    raw.send(&fe::query("ROLLBACK")).await;
    let msgs = raw.until_ready().await;
    assert_eq!(raw::tags(&msgs), "CZ", "{}", describe(&msgs));
    assert_eq!(msgs[1].body, b"I");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_does_not_interrupt_a_long_query() {
    let proxy = Proxy::with(idle_setup()).await;
    // Simple protocol.
    let client = proxy.client().await;
    let start = Instant::now();
    let msgs = client
        .simple_query("SELECT pg_sleep(2)::text || 'done'")
        .await
        .expect("a 2 s query must not be cut by idle_timeout = 1s");
    assert!(start.elapsed() >= Duration::from_secs(2));
    let row = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(row.as_deref(), Some("done"));
    // Extended protocol (Parse/Bind/Execute/Sync in flight for 2 s), on a
    // fresh session: see idle_timeout_counts_from_the_end_of_the_last_query
    // for what happens when the same session goes on right after.
    let client = proxy.client().await;
    let stmt = client
        .prepare("SELECT pg_sleep($1)::text || 'done'")
        .await
        .unwrap();
    let start = Instant::now();
    let v: String = client
        .query_one(&stmt, &[&2.0f64])
        .await
        .expect("a 2 s query must not be cut by idle_timeout = 1s")
        .get(0);
    assert_eq!(v, "done");
    assert!(start.elapsed() >= Duration::from_secs(2));
}

/// PostgreSQL's idle_session_timeout starts when the session becomes idle
/// (ReadyForQuery sent). A session idle for less than the timeout must stay
/// open, however long its previous query ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_counts_from_the_end_of_the_last_query() {
    let proxy = Proxy::with(idle_setup()).await;
    let mut raw = raw::login(&proxy, ALICE).await;
    raw.send(&fe::query("SELECT pg_sleep(1.5)")).await;
    let msgs = raw.until_ready().await;
    assert_eq!(raw::tags(&msgs), "TDCZ", "{}", describe(&msgs));
    let idle_since = Instant::now();
    // Idle for 0.7 s (< idle_timeout = 1s), then the next query.
    tokio::time::sleep(Duration::from_millis(700)).await;
    raw.send(&fe::query("SELECT 1")).await;
    let mut got = Vec::new();
    while let Some(m) = raw.recv().await {
        let done = m.tag == b'Z';
        got.push(m);
        if done {
            break;
        }
    }
    assert_eq!(
        raw::tags(&got),
        "TDCZ",
        "session idle for only {:?} (idle_timeout = 1s) after a 1.5 s query was closed: {}",
        idle_since.elapsed(),
        describe(&got)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_closes_silent_and_stalled_clients() {
    // The harness fixes handshake_timeout = "5s" in [server]; run the binary
    // with the value changed to 1s in the text instead.
    let bin = Binary::start_with(Setup::default(), |t| {
        assert!(t.contains("handshake_timeout = \"5s\""));
        t.replace("handshake_timeout = \"5s\"", "handshake_timeout = \"1s\"")
    })
    .await;

    // Sends nothing at all.
    let mut s = TcpStream::connect(bin.addr).await.unwrap();
    let (bytes, took) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(bytes.is_empty(), "{:?}", describe(&split_msgs(&bytes)));
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "silent client closed after {took:?} (handshake_timeout = 1s)"
    );

    // Starts, gets the SASL challenge and stalls.
    let mut raw = Raw::open(
        bin.addr,
        ProtocolVersion::V3_0,
        &[("user", "alice"), ("database", "app")],
    )
    .await;
    let start = Instant::now();
    let m = raw.recv().await.expect("authentication request");
    assert_eq!(m.tag(), 'R');
    let rest = raw.until_closed().await;
    let took = start.elapsed();
    assert!(
        rest.iter().all(|m| m.tag == b'E'),
        "unexpected messages: {}",
        describe(&rest)
    );
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "stalled client closed after {took:?} (handshake_timeout = 1s)"
    );

    // A logged-in session is not subject to the handshake timeout.
    let client = bin.connect(ALICE, "sslmode=require").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 1);
}

// ---------------------------------------------------------------------------
// Upstream failure
// ---------------------------------------------------------------------------

async fn terminate_backend(db: &str, pid: i32) {
    let db = db.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        cluster()
            .sql(&db, &format!("SELECT pg_terminate_backend({pid})"))
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out, "t", "pg_terminate_backend({pid})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_backend_killed_ends_only_that_session() {
    let proxy = Proxy::start().await;
    let a = proxy.client().await;
    let b = proxy.client().await;
    let pid_a: i32 = a
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let pid_b: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid_a, pid_b);
    terminate_backend(&proxy.db, pid_a).await;
    // Give the FATAL time to arrive, then A's next query must fail.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = a
        .simple_query("SELECT 1")
        .await
        .expect_err("A's backend is gone");
    assert!(a.is_closed(), "{err:?}");
    // B is unaffected, on the same target.
    let pid: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid, pid_b);
    b.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // And new sessions work.
    let c = proxy.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_backend_killed_while_idle_forwards_the_servers_fatal() {
    let proxy = Proxy::start().await;
    let mut raw = raw::login(&proxy, ALICE).await;
    raw.send(&fe::query("SELECT pg_backend_pid()")).await;
    let msgs = raw.until_ready().await;
    let pid: i32 = first_value(&msgs).unwrap().parse().unwrap();
    terminate_backend(&proxy.db, pid).await;
    // PostgreSQL itself sends exactly one FATAL 57P01 and closes.
    let all = raw.until_closed().await;
    assert!(
        !all.is_empty(),
        "connection closed without an ErrorResponse"
    );
    assert_eq!(all[0].tag(), 'E', "{}", describe(&all));
    assert_eq!(
        all[0].code().as_deref(),
        Some("57P01"),
        "{}",
        describe(&all)
    );
    assert_eq!(all[0].severity().as_deref(), Some("FATAL"));
    assert_eq!(
        all.len(),
        1,
        "after the server's FATAL 57P01 the client should see EOF (as with PostgreSQL directly), \
         but the proxy sent more: {}",
        describe(&all)
    );
}

/// The server's FATAL is the last word even while the client keeps writing
/// (the proxy's write upstream fails before it has read the FATAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_backend_killed_while_the_client_writes_ends_with_the_servers_fatal() {
    let proxy = Proxy::start().await;
    let mut raw = raw::login(&proxy, ALICE).await;
    raw.send(&fe::query("SELECT pg_backend_pid()")).await;
    let msgs = raw.until_ready().await;
    let pid: i32 = first_value(&msgs).unwrap().parse().unwrap();
    terminate_backend(&proxy.db, pid).await;
    // Keep writing: the first writes still succeed, later ones reach a
    // closed socket.
    let batch = fe::concat(&vec![fe::query("SELECT 1"); 64]);
    for _ in 0..50 {
        if raw.try_send(&batch).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all = raw.until_closed().await;
    let errors: Vec<_> = all.iter().filter(|m| m.tag() == 'E').collect();
    assert_eq!(errors.len(), 1, "{}", describe(&all));
    assert_eq!(
        errors[0].code().as_deref(),
        Some("57P01"),
        "{}",
        describe(&all)
    );
}

// ---------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_through_the_handle() {
    let proxy = Proxy::start().await;
    let old = proxy.client().await;
    let original = std::fs::read_to_string(&proxy.config_path).unwrap();
    let carol_str = proxy.conn_str(CAROL, "sslmode=require");
    let e = proxy
        .connect(&carol_str)
        .await
        .expect_err("carol is not configured yet");
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");

    // Add carol.
    std::fs::write(
        &proxy.config_path,
        format!("{original}{}", carol_user(CAROL.1)),
    )
    .unwrap();
    let with_carol = Config::load(&proxy.config_path).unwrap();
    proxy
        .handle
        .reload(with_carol.clone())
        .expect("reload with carol");
    assert!(proxy.handle.runtime().users.contains_key("carol"));
    let carol = proxy
        .connect(&carol_str)
        .await
        .expect("carol logs in after reload");
    let who: String = carol
        .query_one("SELECT 'carol here'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "carol here");
    // The session opened before the reload keeps working.
    let v: i32 = old.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 1);

    // A configuration that validates but cannot be built: the CA file of a
    // verify-full target is missing.
    let mut bad = with_carol.clone();
    bad.targets[0].sslmode = SslMode::VerifyFull;
    bad.targets[0].sslrootcert = Some(proxy.dir.path().join("no-such-ca.pem"));
    let err = proxy
        .handle
        .reload(bad)
        .expect_err("a target without its CA file must be rejected");
    assert!(err.contains("app"), "{err}");
    // One whose listener moved.
    let mut moved = with_carol.clone();
    moved.listeners[0].listen = "127.0.0.1:1".parse().unwrap();
    let err = proxy
        .handle
        .reload(moved)
        .expect_err("listener address change must be rejected");
    assert!(err.contains("listener"), "{err}");
    // One whose user verifier is garbage.
    let mut garbled = with_carol.clone();
    garbled.users[0].scram = "SCRAM-SHA-256$nonsense".into();
    proxy
        .handle
        .reload(garbled)
        .expect_err("a bad verifier must be rejected");

    // The configuration in force is still the one with carol.
    assert_eq!(
        proxy.handle.runtime().config.targets[0].sslmode,
        SslMode::Disable
    );
    proxy.client().await.simple_query("SELECT 1").await.unwrap();
    proxy
        .connect(&carol_str)
        .await
        .expect("carol still logs in after rejected reloads");
    old.simple_query("SELECT 1").await.unwrap();

    // Remove carol again: new logins fail, her open session stays.
    std::fs::write(&proxy.config_path, &original).unwrap();
    proxy
        .handle
        .reload(Config::load(&proxy.config_path).unwrap())
        .unwrap();
    let e = proxy
        .connect(&carol_str)
        .await
        .expect_err("carol was removed");
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
    carol
        .simple_query("SELECT 1")
        .await
        .expect("live sessions keep their settings");

    let text = proxy.handle.metrics().render();
    assert_eq!(
        metric(
            &text,
            r#"portcullis_config_reloads_total{result="success"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"portcullis_config_reloads_total{result="failure"}"#
        ),
        Some(3.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_sighup_and_admin_api_with_the_binary() {
    let mut bin = Binary::start(Setup {
        admin: true,
        ..Setup::default()
    })
    .await;
    let admin = bin.admin.unwrap();
    let original = std::fs::read_to_string(&bin.config_path).unwrap();
    let e = bin
        .connect(DAVE, "sslmode=require")
        .await
        .expect_err("dave unknown");
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
    let open = bin.connect(ALICE, "sslmode=require").await.unwrap();

    // Add dave and send SIGHUP.
    let with_dave = format!(
        "{original}\n[[user]]\nname = \"dave\"\nscram = \"{}\"\n",
        ScramVerifier::generate(DAVE.1.as_bytes())
    );
    std::fs::write(&bin.config_path, &with_dave).unwrap();
    bin.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(15);
    let dave = loop {
        match bin.connect(DAVE, "sslmode=require").await {
            Ok(c) => break c,
            Err(e) => assert!(
                Instant::now() < deadline,
                "dave cannot log in after SIGHUP: {e:?}\n{}",
                bin.stderr()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    dave.simple_query("SELECT 1").await.unwrap();
    open.simple_query("SELECT 1")
        .await
        .expect("session open across SIGHUP");

    // Break the file: POST /reload is rejected, the old config stays.
    std::fs::write(&bin.config_path, format!("{with_dave}\n[[user]\nname = \n")).unwrap();
    let (status, body) = http(admin, "POST", "/reload").await;
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "rejected", "{body}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("portcullis.toml"),
        "the error names the file: {body}"
    );
    // SIGHUP with the broken file is rejected as well (nothing observable
    // to wait for: see rejected_reloads_are_counted_and_logged).
    bin.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        bin.try_wait().is_none(),
        "a bad reload must not stop the proxy:\n{}",
        bin.stderr()
    );
    for user in [ALICE, BOB, DAVE] {
        let c = bin
            .connect(user, "sslmode=require")
            .await
            .unwrap_or_else(|e| panic!("{} after a rejected reload: {e:?}", user.0));
        c.simple_query("SELECT 1").await.unwrap();
    }

    // A good file again via the admin API.
    std::fs::write(&bin.config_path, &original).unwrap();
    let (status, body) = http(admin, "POST", "/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"reloaded\""), "{body}");
    let e = bin
        .connect(DAVE, "sslmode=require")
        .await
        .expect_err("dave removed");
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");

    // Observability endpoints.
    let (status, text) = http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("portcullis_connections_total"), "{text}");
    assert!(text.contains("portcullis_bytes_total"), "{text}");
    assert!(
        metric(&text, r#"portcullis_connections_total{listener="test"}"#).unwrap_or(0.0) >= 5.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            r#"portcullis_bytes_total{direction="server_to_client"}"#
        )
        .unwrap_or(0.0)
            > 0.0,
        "{text}"
    );
    let (status, body) = http(admin, "GET", "/health").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok", "{body}");

    assert_eq!(
        metric(
            &text,
            r#"portcullis_config_reloads_total{result="success"}"#
        ),
        Some(2.0),
        "{text}"
    );
    drop((open, dave));
    bin.signal(libc::SIGTERM);
    let status = bin.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}\n{}",
        bin.stderr()
    );
}

/// A reload that fails because the file does not parse is a failed reload
/// like any other: counted in portcullis_config_reloads_total{result="failure"}
/// and, for SIGHUP (which has no one to answer), logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_reloads_are_counted_and_logged() {
    // In-process: ServerHandle::reload_from_source with a broken file.
    let proxy = Proxy::start().await;
    let good = std::fs::read_to_string(&proxy.config_path).unwrap();
    std::fs::write(&proxy.config_path, format!("{good}\n[[user]\nname = \n")).unwrap();
    let err = proxy.handle.reload_from_source().expect_err("broken file");
    assert!(err.contains("portcullis.toml"), "{err}");
    proxy.client().await.simple_query("SELECT 1").await.unwrap();
    let in_process = metric(
        &proxy.handle.metrics().render(),
        r#"portcullis_config_reloads_total{result="failure"}"#,
    );

    // The binary: POST /reload and SIGHUP with a broken file.
    let mut bin = Binary::start(Setup {
        admin: true,
        ..Setup::default()
    })
    .await;
    let admin = bin.admin.unwrap();
    let good = std::fs::read_to_string(&bin.config_path).unwrap();
    std::fs::write(&bin.config_path, format!("{good}\n[[user]\nname = \n")).unwrap();
    let (status, body) = http(admin, "POST", "/reload").await;
    assert_eq!(status, 400, "{body}");
    let before_hup = bin.stderr().lines().count();
    bin.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(bin.try_wait().is_none(), "{}", bin.stderr());
    let after_hup: Vec<String> = bin
        .stderr()
        .lines()
        .skip(before_hup)
        .map(str::to_owned)
        .collect();
    let (_, text) = http(admin, "GET", "/metrics").await;
    let binary = metric(
        &text,
        r#"portcullis_config_reloads_total{result="failure"}"#,
    );

    let mut problems = Vec::new();
    if in_process != Some(1.0) {
        problems.push(format!(
            "in-process: reload_from_source() returned Err (file does not parse) but \
             portcullis_config_reloads_total{{result=\"failure\"}} is {in_process:?}, expected 1"
        ));
    }
    if binary != Some(2.0) {
        problems.push(format!(
            "binary: after a rejected POST /reload and a rejected SIGHUP (file does not parse) \
             portcullis_config_reloads_total{{result=\"failure\"}} is {binary:?}, expected 2"
        ));
    }
    if !after_hup
        .iter()
        .any(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        problems.push(format!(
            "binary: SIGHUP with a file that does not parse logged no warning or error; log lines after \
             the signal: {after_hup:#?}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_sessions_and_refuses_new_ones() {
    let mut bin = Binary::start(Setup::default()).await;
    let client = bin.connect(ALICE, "sslmode=require").await.unwrap();
    client
        .batch_execute("CREATE TABLE t (v int)")
        .await
        .unwrap();
    bin.signal(libc::SIGTERM);

    // New connections are refused (or closed before any session starts).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(bin.addr).await {
            Err(_) => break,
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "still accepting 10 s after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let e = bin
        .connect(ALICE, "sslmode=require")
        .await
        .expect_err("no new sessions while draining");
    assert!(
        sqlstate(&e).is_none() || sqlstate(&e).as_deref() == Some("57P01"),
        "{e:?}"
    );

    // The open session keeps running queries.
    for i in 0..5 {
        client
            .execute("INSERT INTO t VALUES ($1)", &[&i])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5);
    assert!(bin.try_wait().is_none(), "exited with a session open");

    // The session ends: the process exits at once, successfully.
    let closed = Instant::now();
    drop(client);
    let status = bin.wait_exit(Duration::from_secs(10)).await;
    let took = closed.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}\n{}",
        bin.stderr()
    );
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?} after the last session closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_lingering_sessions_after_shutdown_grace() {
    let mut bin = Binary::start(Setup {
        server: "shutdown_grace = \"2s\"".into(),
        ..Setup::default()
    })
    .await;
    let mut raw = bin.raw_login(ALICE).await;
    raw.send(&fe::query("SELECT 1")).await;
    raw.until_ready().await;
    let start = Instant::now();
    bin.signal(libc::SIGTERM);
    let msgs = raw.until_closed().await;
    let closed_after = start.elapsed();
    assert_eq!(raw::tags(&msgs), "E", "{}", describe(&msgs));
    assert_eq!(msgs[0].code().as_deref(), Some("57P01"));
    assert_eq!(msgs[0].severity().as_deref(), Some("FATAL"));
    assert!(
        closed_after >= Duration::from_millis(1800) && closed_after < Duration::from_secs(8),
        "session closed {closed_after:?} after SIGTERM with shutdown_grace = 2s"
    );
    let status = bin.wait_exit(Duration::from_secs(10)).await;
    let exited_after = start.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}\n{}",
        bin.stderr()
    );
    assert!(exited_after < Duration::from_secs(10), "{exited_after:?}");
}

// ---------------------------------------------------------------------------
// CLI subcommands
// ---------------------------------------------------------------------------

fn run_cli(args: &[&std::ffi::OsStr], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_config(path: &Path) -> (i32, String, String) {
    run_cli(&["check-config".as_ref(), path.as_os_str()], None)
}

#[test]
fn check_config_accepts_good_and_names_the_key_in_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "somedb", &Setup::default(), "127.0.0.1:0");
    let good = std::fs::read_to_string(&path).unwrap();
    let (code, out, err) = check_config(&path);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("ok"), "{out}");
    assert!(out.contains(&path.display().to_string()), "{out}");
    // The same file given the way `run` takes it.
    for flag in ["--config", "-c"] {
        let (code, out, err) = run_cli(
            &["check-config".as_ref(), flag.as_ref(), path.as_os_str()],
            None,
        );
        assert_eq!(code, 0, "{flag}: stdout: {out}\nstderr: {err}");
    }

    // An unknown key (a typo).
    std::fs::write(
        &path,
        good.replace("[server]\n", "[server]\nidle_timout = \"1s\"\n"),
    )
    .unwrap();
    let (code, out, err) = check_config(&path);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("idle_timout"), "{err}");

    // A value that parses but is not acceptable.
    std::fs::write(
        &path,
        good.replace("port = ", "connect_timeout = \"0s\"\nport = "),
    )
    .unwrap();
    let (code, out, err) = check_config(&path);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("connect_timeout"), "{err}");

    // A secret that cannot be read (checked beyond syntax).
    std::fs::write(&path, &good).unwrap();
    std::fs::remove_file(dir.path().join("tls").join("server.key")).unwrap();
    let (code, out, err) = check_config(&path);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("key"), "{err}");

    // A file that does not exist.
    let missing = dir.path().join("missing.toml");
    let (code, _, err) = check_config(&missing);
    assert_eq!(code, 1);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn passwd_stdin_prints_a_usable_verifier() {
    let (code, out, err) = run_cli(
        &["passwd".as_ref(), "--stdin".as_ref()],
        Some("correct horse battery\n"),
    );
    assert_eq!(code, 0, "stderr: {err}");
    let line = out.trim();
    assert!(line.starts_with("SCRAM-SHA-256$4096:"), "{line}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let v = ScramVerifier::parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(v.matches_password(b"correct horse battery"));
    assert!(!v.matches_password(b"correct horse battery\n"));
    assert!(!v.matches_password(b"wrong"));
    // Fresh salt every time.
    let (_, out2, _) = run_cli(
        &["passwd".as_ref(), "--stdin".as_ref()],
        Some("correct horse battery\n"),
    );
    assert_ne!(out2.trim(), line);
    // An empty password is refused.
    let (code, out, err) = run_cli(&["passwd".as_ref(), "--stdin".as_ref()], Some("\n"));
    assert_eq!(code, 1, "stdout: {out}");
    assert!(err.contains("empty"), "{err}");
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_statements_and_durations() {
    let proxy = Proxy::with(Setup {
        admin: true,
        ..Setup::default()
    })
    .await;
    let admin = proxy.admin.expect("admin listener");
    let (_, before) = http(admin, "GET", "/metrics").await;
    assert_eq!(
        metric(&before, "portcullis_statements_total"),
        Some(0.0),
        "{before}"
    );

    let client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE t (v int)")
        .await
        .unwrap();
    for i in 0..10 {
        client
            .execute("INSERT INTO t VALUES ($1)", &[&i])
            .await
            .unwrap();
    }
    client.simple_query("SELECT count(*) FROM t").await.unwrap();
    let mut raw = raw::login(&proxy, BOB).await;
    raw.send(&fe::query("SELECT pg_sleep(0.2)")).await;
    raw.until_ready().await;

    let (status, text) = http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let statements = metric(&text, "portcullis_statements_total").unwrap_or(0.0);
    assert!(
        statements >= 12.0,
        "statements_total = {statements}\n{text}"
    );
    let count = metric(&text, "portcullis_statement_duration_seconds_count").unwrap_or(0.0);
    assert!(
        count >= 12.0,
        "statement_duration_seconds_count = {count}\n{text}"
    );
    let sum = metric(&text, "portcullis_statement_duration_seconds_sum").unwrap_or(0.0);
    assert!(sum >= 0.2, "statement_duration_seconds_sum = {sum}\n{text}");
    assert!(
        metric(&text, r#"portcullis_connections_total{listener="test"}"#).unwrap_or(0.0) >= 2.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"portcullis_connections_active{listener="test"}"#),
        Some(2.0),
        "{text}"
    );
    assert!(
        metric(&text, "portcullis_handshake_duration_seconds_count").unwrap_or(0.0) >= 2.0,
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    // The in-process registry says the same.
    let direct = proxy.handle.metrics().render();
    assert!(metric(&direct, "portcullis_statements_total").unwrap() >= statements);
}
