use crate::harness::*;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use portcullis_wire::decode;
use portcullis_wire::encode;
use portcullis_wire::ProtocolVersion;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::raw::{fe, tags, Msg};

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f];
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 0xd2, 0x16, 0x30];
const WAIT: Duration = Duration::from_secs(20);

/// Channel binding a [`Wire::login`] uses.
pub(crate) enum Cb {
    /// gs2 flag `n`: the client does not support binding.
    No,
    /// gs2 flag `y`: the client supports binding but thinks the server does not.
    ClientOnly,
    /// SCRAM-SHA-256-PLUS with this tls-server-end-point data.
    Plus(Vec<u8>),
}

/// A protocol-level client over any byte stream (plain TCP, TLS after an
/// SSLRequest, direct TLS). Used by the TLS and startup tests.
pub(crate) struct Wire<S> {
    pub stream: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(stream: S) -> Self {
        Wire {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Writes and flushes; an error means the peer is gone.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The next message; `None` at end of stream or on a read error (a reset
    /// or a TLS stream closed without close_notify).
    pub async fn recv(&mut self) -> Option<Msg> {
        crate::raw::read_msg(&mut self.stream, &mut self.buf).await
    }

    /// Everything up to end of stream.
    pub async fn until_closed(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.recv().await {
            out.push(m);
        }
        out
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("closed; got so far: {}", tags(&out)));
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Sends a StartupMessage and logs in with SCRAM-SHA-256, or with
    /// SCRAM-SHA-256-PLUS for [`Cb::Plus`]. Returns every message after the
    /// request up to ReadyForQuery (or the ErrorResponse), and the mechanism
    /// used.
    pub async fn login(
        &mut self,
        version: ProtocolVersion,
        params: &[(&str, &str)],
        password: &str,
        cb: Cb,
    ) -> Result<(Vec<Msg>, String), Msg> {
        let mut b = BytesMut::new();
        encode::startup_message(&mut b, version, params.iter().copied());
        self.send(&b).await.expect("send startup message");
        let mut scram: Option<ScramSha256> = None;
        let mut mechanism = String::new();
        let mut got = Vec::new();
        loop {
            let m = self.recv().await.expect("connection closed during login");
            match m.tag {
                b'E' => return Err(m),
                b'R' => match decode::auth_request(&m.body).unwrap() {
                    decode::AuthRequest::Ok => break,
                    decode::AuthRequest::Sasl { mechanisms } => {
                        let (mech, binding) = match &cb {
                            Cb::Plus(h) => {
                                assert!(
                                    mechanisms.contains(&sasl::SCRAM_SHA_256_PLUS),
                                    "SCRAM-SHA-256-PLUS offered over TLS: {mechanisms:?}"
                                );
                                (
                                    sasl::SCRAM_SHA_256_PLUS,
                                    ChannelBinding::tls_server_end_point(h.clone()),
                                )
                            }
                            Cb::ClientOnly => (sasl::SCRAM_SHA_256, ChannelBinding::unrequested()),
                            Cb::No => (sasl::SCRAM_SHA_256, ChannelBinding::unsupported()),
                        };
                        mechanism = mech.to_owned();
                        let s = ScramSha256::new(password.as_bytes(), binding);
                        let mut b = BytesMut::new();
                        encode::sasl_initial_response(&mut b, mech, s.message());
                        self.send(&b).await.expect("send SASL initial response");
                        scram = Some(s);
                    }
                    decode::AuthRequest::SaslContinue { data } => {
                        let s = scram.as_mut().unwrap();
                        s.update(data).unwrap();
                        let mut b = BytesMut::new();
                        encode::sasl_response(&mut b, s.message());
                        self.send(&b).await.expect("send SASL response");
                    }
                    decode::AuthRequest::SaslFinal { data } => {
                        scram
                            .as_mut()
                            .unwrap()
                            .finish(data)
                            .expect("server signature verifies");
                    }
                    other => panic!("unexpected auth request {other:?}"),
                },
                _ => got.push(m),
            }
        }
        loop {
            let m = self.recv().await.expect("connection closed during startup");
            match m.tag {
                b'E' => return Err(m),
                b'Z' => {
                    got.push(m);
                    return Ok((got, mechanism));
                }
                _ => got.push(m),
            }
        }
    }

    /// Runs a simple query and returns the first column of every row.
    pub async fn query_column(&mut self, sql: &str) -> Vec<Option<String>> {
        self.send(&fe::query(sql)).await.expect("send query");
        let msgs = self.until_ready().await;
        if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
            panic!("{sql}: {:?} {:?}", e.code(), e.message());
        }
        msgs.iter()
            .filter(|m| m.tag == b'D')
            .map(|m| first_column(&m.body))
            .collect()
    }
}

/// The first column of a DataRow body, as text.
pub(crate) fn first_column(body: &[u8]) -> Option<String> {
    let ncols = i16::from_be_bytes([body[0], body[1]]);
    assert!(ncols >= 1, "DataRow without columns");
    let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
    if len < 0 {
        return None;
    }
    Some(String::from_utf8_lossy(&body[6..6 + len as usize]).into_owned())
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("127.0.0.1").unwrap()
}

fn connector(alpn: Option<&[u8]>) -> TlsConnector {
    TlsConnector::from(Arc::new(pki().rustls_client_config(alpn)))
}

/// tls-server-end-point data for the certificate the peer presented.
fn end_point<T>(tls: &tokio_rustls::client::TlsStream<T>) -> Vec<u8> {
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server certificate")
        .clone();
    portcullis_testbed::client::tls_server_end_point(&cert)
}

async fn tcp(proxy: &Proxy) -> TcpStream {
    let s = TcpStream::connect(proxy.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

async fn read_byte(s: &mut TcpStream) -> u8 {
    let mut b = [0u8; 1];
    tokio::time::timeout(WAIT, s.read_exact(&mut b))
        .await
        .expect("timed out waiting for the answer byte")
        .expect("answer byte");
    b[0]
}

/// Asserts that nothing more arrives on `s` for a short while.
async fn assert_silent(s: &mut TcpStream, what: &str) {
    let mut b = [0u8; 16];
    match tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await {
        Err(_) => {}
        Ok(Ok(n)) => panic!("{what}: unexpected {n} more bytes: {:?}", &b[..n]),
        Ok(Err(e)) => panic!("{what}: read failed: {e}"),
    }
}

fn alice_params() -> [(&'static str, &'static str); 2] {
    [("user", ALICE.0), ("database", "app")]
}

// ---------------------------------------------------------------------------
// Plaintext refusal and channel binding through tokio-postgres.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_when_not_allowed() {
    let proxy = Proxy::with(Setup {
        allow_plaintext: false,
        ..Setup::default()
    })
    .await;
    let err = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=disable"))
        .await
        .expect_err("plaintext connection must be refused");
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("no ErrorResponse: {err}"));
    assert_eq!(db.code().code(), "28000", "{db:?}");
    assert_eq!(db.severity(), "FATAL");
    assert!(db.message().contains("requires TLS"), "{}", db.message());
    let hint = db.hint().expect("a hint");
    assert!(hint.contains("sslmode=require"), "{hint}");

    // TLS works on the same listener.
    let client = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=require"))
        .await
        .unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // The default (prefer) upgrades to TLS too.
    let client = proxy.connect(&proxy.conn_str(ALICE, "")).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_plaintext_is_refused_before_authentication() {
    // The refusal must come before any password exchange: a raw client
    // sees the ErrorResponse instead of an authentication request.
    let proxy = Proxy::with(Setup {
        allow_plaintext: false,
        ..Setup::default()
    })
    .await;
    let mut w = Wire::new(tcp(&proxy).await);
    let err = w
        .login(ProtocolVersion::V3_0, &alice_params(), ALICE.1, Cb::No)
        .await
        .expect_err("refused");
    assert_eq!(err.code().as_deref(), Some("28000"));
    assert!(w.until_closed().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_binding_require_over_tls() {
    let proxy = Proxy::start().await;
    let client = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=require channel_binding=require"))
        .await
        .unwrap_or_else(|e| panic!("channel_binding=require over TLS: {e}"));
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "postgres");

    // Without TLS there is nothing to bind to: the client refuses.
    let err = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=disable channel_binding=require"))
        .await
        .expect_err("channel_binding=require without TLS must fail");
    assert!(
        err.as_db_error().is_none(),
        "the client, not the server, refuses: {err}"
    );
    // ...while the same connection without the requirement works.
    proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=disable"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_plus_with_a_wrong_binding_is_refused() {
    // A man in the middle terminating TLS with its own certificate would
    // bind to that certificate; the proxy must notice.
    let proxy = Proxy::start().await;
    let mut s = tcp(&proxy).await;
    s.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut s).await, b'S');
    let tls = connector(None).connect(server_name(), s).await.unwrap();
    let mut w = Wire::new(tls);
    let err = w
        .login(
            ProtocolVersion::V3_0,
            &alice_params(),
            ALICE.1,
            Cb::Plus(vec![0x42; 32]),
        )
        .await
        .expect_err("wrong channel binding data must be refused");
    assert_eq!(err.severity().as_deref(), Some("FATAL"));
    // PostgreSQL: 08P01 "SCRAM channel binding check failed".
    assert_eq!(err.code().as_deref(), Some("08P01"), "{:?}", err.message());
    assert!(err.message().unwrap().contains("channel binding"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_downgrade_over_tls_is_refused() {
    // Over TLS the proxy offers SCRAM-SHA-256-PLUS. A client saying "I can
    // bind but you can't" (gs2 flag y) means someone removed -PLUS from the
    // offer on the way: PostgreSQL refuses that with 08P01.
    let proxy = Proxy::start().await;
    let mut s = tcp(&proxy).await;
    s.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut s).await, b'S');
    let tls = connector(None).connect(server_name(), s).await.unwrap();
    let mut w = Wire::new(tls);
    let err = w
        .login(
            ProtocolVersion::V3_0,
            &alice_params(),
            ALICE.1,
            Cb::ClientOnly,
        )
        .await
        .expect_err("downgrade must be refused");
    assert_eq!(err.code().as_deref(), Some("08P01"), "{:?}", err.message());
    // Plain SCRAM-SHA-256 without binding (flag n) over TLS is fine.
    let mut s = tcp(&proxy).await;
    s.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut s).await, b'S');
    let tls = connector(None).connect(server_name(), s).await.unwrap();
    let mut w = Wire::new(tls);
    w.login(ProtocolVersion::V3_0, &alice_params(), ALICE.1, Cb::No)
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.message()));
}

// ---------------------------------------------------------------------------
// psql (libpq) against the proxy.
// ---------------------------------------------------------------------------

/// Runs psql with a clean environment; returns (success, stdout, stderr).
async fn psql(conninfo: String, password: &str, args: &[&str]) -> (bool, String, String) {
    let password = password.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(cluster().bin("psql"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("LC_ALL", "C")
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &conninfo])
            .args(&args);
        let out = cmd.output().expect("run psql");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn ca_file(proxy: &Proxy) -> String {
    // The harness writes the test CA next to the configuration.
    let path = proxy.dir.path().join("tls").join("ca.crt");
    assert!(path.exists());
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_verify_full_with_channel_binding() {
    let proxy = Proxy::with(Setup {
        allow_plaintext: false,
        ..Setup::default()
    })
    .await;
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=app user={} sslmode=verify-full sslrootcert={} channel_binding=require",
        proxy.addr.port(),
        ALICE.0,
        ca_file(&proxy),
    );
    let (ok, out, err) = psql(
        conninfo,
        ALICE.1,
        &["-c", "\\conninfo", "-c", "SELECT 1 + 1, current_user"],
    )
    .await;
    assert!(ok, "psql failed: {err}\n{out}");
    assert!(out.contains("SSL connection"), "\\conninfo: {out}");
    assert!(out.contains("as user \"alice\""), "\\conninfo: {out}");
    assert!(out.lines().any(|l| l == "2|postgres"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_plaintext_refused_with_the_proxy_message() {
    let proxy = Proxy::with(Setup {
        allow_plaintext: false,
        ..Setup::default()
    })
    .await;
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=app user={} sslmode=disable",
        proxy.addr.port(),
        ALICE.0,
    );
    let (ok, out, err) = psql(conninfo, ALICE.1, &["-c", "SELECT 1"]).await;
    assert!(!ok, "psql must fail: {out}");
    assert!(
        err.contains("Portcullis requires TLS on this listener"),
        "psql stderr: {err}"
    );
    assert!(
        err.contains("sslmode=require"),
        "the hint reaches psql: {err}"
    );
    assert!(!err.contains(ALICE.1));
}

// ---------------------------------------------------------------------------
// Encryption negotiation at the protocol level.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_request_is_answered_n_then_ssl_works() {
    let proxy = Proxy::start().await;
    let mut s = tcp(&proxy).await;
    s.write_all(&GSSENC_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut s).await, b'N', "GSSENCRequest answered N");
    assert_silent(&mut s, "after the GSSENCRequest answer").await;

    // libpq then falls back to an SSLRequest on the same connection.
    s.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut s).await, b'S', "SSLRequest answered S");
    let tls = connector(None)
        .connect(server_name(), s)
        .await
        .expect("TLS handshake after SSLRequest");
    let ep = end_point(&tls);
    let mut w = Wire::new(tls);
    let (startup, mech) = w
        .login(
            ProtocolVersion::V3_0,
            &alice_params(),
            ALICE.1,
            Cb::Plus(ep),
        )
        .await
        .unwrap_or_else(|e| panic!("login: {:?}", e.message()));
    assert_eq!(mech, "SCRAM-SHA-256-PLUS");
    assert!(startup.iter().any(|m| m.tag == b'K'), "{}", tags(&startup));
    assert_eq!(
        w.query_column("SELECT current_user").await,
        vec![Some("postgres".to_owned())]
    );
    w.send(&fe::terminate()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_request_then_plaintext_startup() {
    // A client that gets N for GSS may also continue without TLS.
    let proxy = Proxy::start().await;
    let mut s = tcp(&proxy).await;
    s.write_all(&GSSENC_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut s).await, b'N');
    let mut w = Wire::new(s);
    w.login(ProtocolVersion::V3_0, &alice_params(), ALICE.1, Cb::No)
        .await
        .unwrap_or_else(|e| panic!("login: {:?}", e.message()));
    assert_eq!(w.query_column("SELECT 7").await, vec![Some("7".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_with_alpn_postgresql() {
    let proxy = Proxy::start().await;
    let tls = connector(Some(b"postgresql"))
        .connect(server_name(), tcp(&proxy).await)
        .await
        .expect("direct TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
    let ep = end_point(&tls);
    let mut w = Wire::new(tls);
    let (_, mech) = w
        .login(
            ProtocolVersion::V3_0,
            &alice_params(),
            ALICE.1,
            Cb::Plus(ep),
        )
        .await
        .unwrap_or_else(|e| panic!("login over direct TLS: {:?}", e.message()));
    assert_eq!(mech, "SCRAM-SHA-256-PLUS");
    assert_eq!(
        w.query_column("SELECT 40 + 2").await,
        vec![Some("42".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_without_alpn_is_closed() {
    let proxy = Proxy::start().await;
    // The proxy may only learn after the handshake that ALPN is missing, so
    // the handshake itself may succeed; the session must not.
    if let Ok(tls) = connector(None)
        .connect(server_name(), tcp(&proxy).await)
        .await
    {
        assert_eq!(tls.get_ref().1.alpn_protocol(), None);
        let mut w = Wire::new(tls);
        let mut b = BytesMut::new();
        encode::startup_message(&mut b, ProtocolVersion::V3_0, alice_params());
        let _ = w.send(&b).await;
        let got = w.until_closed().await;
        assert!(
            got.is_empty(),
            "no session without ALPN, got {}",
            tags(&got)
        );
    }
    // The proxy is fine.
    proxy.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_with_a_wrong_alpn_fails_the_handshake() {
    let proxy = Proxy::start().await;
    let r = connector(Some(b"http/1.1"))
        .connect(server_name(), tcp(&proxy).await)
        .await;
    match r {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("NoApplicationProtocol") || msg.to_lowercase().contains("application"),
                "handshake failure names ALPN: {msg}"
            );
        }
        Ok(tls) => panic!(
            "TLS handshake with ALPN http/1.1 succeeded (negotiated {:?})",
            tls.get_ref().1.alpn_protocol()
        ),
    }
    proxy.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_request_with_stuffed_plaintext_is_refused() {
    // CVE-2021-23214: bytes sent right behind the SSLRequest, before the TLS
    // handshake, must never be taken as if they came over TLS.
    let proxy = Proxy::start().await;
    let mut s = tcp(&proxy).await;
    let mut b = BytesMut::new();
    b.extend_from_slice(&SSL_REQUEST);
    encode::startup_message(&mut b, ProtocolVersion::V3_0, alice_params());
    s.write_all(&b).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("the proxy closes the connection");
    assert!(
        got.first() != Some(&b'S'),
        "the proxy agreed to TLS with plaintext queued behind the SSLRequest: {got:?}"
    );
    // Either nothing, or one ErrorResponse: never an authentication request.
    if !got.is_empty() {
        assert_eq!(got[0], b'E', "only an error may follow: {got:?}");
        let body = &got[5..];
        let f = decode::report_fields(body).unwrap();
        assert_eq!(f.code, Some("08P01"));
    }
    proxy.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_request_inside_tls_is_a_protocol_violation() {
    let proxy = Proxy::start().await;
    let mut s = tcp(&proxy).await;
    s.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut s).await, b'S');
    let tls = connector(None).connect(server_name(), s).await.unwrap();
    let mut w = Wire::new(tls);
    w.send(&SSL_REQUEST).await.unwrap();
    let got = w.until_closed().await;
    assert_eq!(got.len(), 1, "{}", tags(&got));
    assert_eq!(got[0].code().as_deref(), Some("08P01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_gssenc_request_is_dropped() {
    // PostgreSQL answers a second GSSENCRequest with a protocol error and
    // closes; the proxy must at least not loop or start a session.
    let proxy = Proxy::start().await;
    let mut s = tcp(&proxy).await;
    s.write_all(&GSSENC_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut s).await, b'N');
    s.write_all(&GSSENC_REQUEST).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("closed");
    assert!(
        got.is_empty() || got[0] == b'E',
        "second GSSENCRequest: {got:?}"
    );
}
