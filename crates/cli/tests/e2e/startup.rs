use crate::harness::*;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use portcullis_wire::decode;
use portcullis_wire::encode;
use portcullis_wire::ProtocolVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raw::{fe, tags, Msg, Raw};
use crate::tls::{first_column, Wire};

fn app(user: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![("user", user), ("database", "app")]
}

/// Logs in as alice over plaintext with extra startup parameters.
async fn login_with(
    proxy: &Proxy,
    version: ProtocolVersion,
    extra: &[(&str, &str)],
) -> Result<Raw, Msg> {
    let mut params: Vec<(&str, &str)> = app(ALICE.0);
    params.extend_from_slice(extra);
    Raw::login(proxy.addr, version, &params, ALICE.1).await
}

/// Runs a simple query; returns the first column of each row.
async fn column(raw: &mut Raw, sql: &str) -> Vec<Option<String>> {
    raw.send(&fe::query(sql)).await;
    let msgs = raw.until_ready().await;
    if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
        panic!("{sql}: {:?} {:?}", e.code(), e.message());
    }
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| first_column(&m.body))
        .collect()
}

async fn show(raw: &mut Raw, setting: &str) -> String {
    column(raw, &format!("SHOW {setting}")).await[0]
        .clone()
        .unwrap()
}

/// The proxy still serves an ordinary client.
async fn still_serving(proxy: &Proxy) {
    let mut raw = crate::raw::login(proxy, ALICE).await;
    assert_eq!(column(&mut raw, "SELECT 1").await, vec![Some("1".into())]);
}

fn parameter_status(msgs: &[Msg], name: &str) -> Option<String> {
    msgs.iter()
        .filter(|m| m.tag == b'S')
        .filter_map(|m| decode::parameter_status(&m.body).ok())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_owned())
}

// ---------------------------------------------------------------------------
// Protocol versions.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_3_2_gets_a_32_byte_cancel_key() {
    let proxy = Proxy::start().await;
    let mut raw = login_with(&proxy, ProtocolVersion::V3_2, &[])
        .await
        .unwrap_or_else(|e| panic!("3.2 login: {:?}", e.message()));
    assert_eq!(raw.key.len(), 32, "3.2 BackendKeyData key length");
    assert!(
        !raw.startup.iter().any(|m| m.tag == b'v'),
        "3.2 is supported: no NegotiateProtocolVersion ({})",
        tags(&raw.startup)
    );
    assert_eq!(column(&mut raw, "SELECT 1").await, vec![Some("1".into())]);
    // The PID is the real backend's.
    let pid = column(&mut raw, "SELECT pg_backend_pid()").await[0]
        .clone()
        .unwrap();
    assert_eq!(pid, raw.pid.to_string());

    let raw = login_with(&proxy, ProtocolVersion::V3_0, &[])
        .await
        .unwrap();
    assert_eq!(raw.key.len(), 4, "3.0 BackendKeyData key length");
    assert!(!raw.startup.iter().any(|m| m.tag == b'v'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_a_32_byte_key_works() {
    let proxy = Proxy::start().await;
    let mut raw = login_with(&proxy, ProtocolVersion::V3_2, &[])
        .await
        .unwrap();
    raw.send(&fe::query("SELECT pg_sleep(30)")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    let mut b = BytesMut::new();
    encode::cancel_request(&mut b, raw.pid, &raw.key);
    c.write_all(&b).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "a CancelRequest is never answered");
    let msgs = tokio::time::timeout(Duration::from_secs(10), raw.until_ready())
        .await
        .expect("the query was cancelled");
    let e = msgs.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(e.code().as_deref(), Some("57014"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_minor_version_is_negotiated_down() {
    let proxy = Proxy::start().await;
    let mut raw = login_with(&proxy, ProtocolVersion { major: 3, minor: 5 }, &[])
        .await
        .unwrap_or_else(|e| panic!("3.5 login: {:?}", e.message()));
    let v: Vec<&Msg> = raw.startup.iter().filter(|m| m.tag == b'v').collect();
    assert_eq!(
        v.len(),
        1,
        "one NegotiateProtocolVersion: {}",
        tags(&raw.startup)
    );
    let (newest, options) = decode::negotiate_protocol_version(&v[0].body).unwrap();
    assert_eq!(newest, 0x0003_0002, "newest supported minor version is 3.2");
    assert!(options.is_empty(), "{options:?}");
    // The session speaks 3.2.
    assert_eq!(raw.key.len(), 32);
    assert_eq!(column(&mut raw, "SELECT 2").await, vec![Some("2".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_protocol_options_are_listed() {
    let proxy = Proxy::start().await;
    let mut raw = login_with(
        &proxy,
        ProtocolVersion::V3_0,
        &[("_pq_.foo", "bar"), ("_pq_.other", "1")],
    )
    .await
    .unwrap_or_else(|e| panic!("login with _pq_ options: {:?}", e.message()));
    let v: Vec<&Msg> = raw.startup.iter().filter(|m| m.tag == b'v').collect();
    assert_eq!(v.len(), 1, "{}", tags(&raw.startup));
    let (newest, options) = decode::negotiate_protocol_version(&v[0].body).unwrap();
    assert_eq!(options, vec!["_pq_.foo", "_pq_.other"]);
    // PostgreSQL 18 answers with the version the session will use.
    assert_eq!(newest, 0x0003_0000);
    assert_eq!(raw.key.len(), 4);
    // The options are not passed on to the server as settings.
    assert_eq!(column(&mut raw, "SELECT 3").await, vec![Some("3".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_2_is_refused() {
    let proxy = Proxy::start().await;
    let mut raw = Raw::open(
        proxy.addr,
        ProtocolVersion { major: 2, minor: 0 },
        &app(ALICE.0),
    )
    .await;
    let got = raw.until_closed().await;
    assert_eq!(
        got.len(),
        1,
        "one ErrorResponse, then close: {}",
        tags(&got)
    );
    assert_eq!(got[0].tag, b'E');
    assert_eq!(got[0].severity().as_deref(), Some("FATAL"));
    assert_eq!(got[0].code().as_deref(), Some("0A000"));
    let msg = got[0].message().unwrap();
    assert!(msg.contains("2.0"), "{msg}");
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_4_is_refused() {
    let proxy = Proxy::start().await;
    let mut raw = Raw::open(
        proxy.addr,
        ProtocolVersion { major: 4, minor: 0 },
        &app(ALICE.0),
    )
    .await;
    let got = raw.until_closed().await;
    assert_eq!(got.len(), 1, "{}", tags(&got));
    assert_eq!(got[0].code().as_deref(), Some("0A000"));
}

// ---------------------------------------------------------------------------
// Startup parameters.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmless_options_pass() {
    let proxy = Proxy::start().await;
    let mut raw = login_with(
        &proxy,
        ProtocolVersion::V3_0,
        &[("options", "-c statement_timeout=1234 --lock-timeout=4321")],
    )
    .await
    .unwrap_or_else(|e| panic!("{:?} {:?}", e.code(), e.message()));
    assert_eq!(show(&mut raw, "statement_timeout").await, "1234ms");
    assert_eq!(show(&mut raw, "lock_timeout").await, "4321ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangerous_options_are_refused() {
    let proxy = Proxy::start().await;
    for options in [
        "-c role=postgres",
        "-c session_authorization=x",
        "-crole=postgres",
        "-c statement_timeout=1 -c role=postgres",
        "-c session_replication_role=replica",
    ] {
        let e = login_with(&proxy, ProtocolVersion::V3_0, &[("options", options)])
            .await
            .err()
            .unwrap_or_else(|| panic!("options {options:?} must be refused"));
        assert_eq!(e.severity().as_deref(), Some("FATAL"), "{options}");
        assert_eq!(
            e.code().as_deref(),
            Some("42501"),
            "{options}: {:?}",
            e.message()
        );
        assert!(e.hint().is_some(), "{options}: a hint");
    }
    for (name, value) in [
        ("role", "postgres"),
        ("session_authorization", "postgres"),
        ("ROLE", "postgres"),
    ] {
        let e = login_with(&proxy, ProtocolVersion::V3_0, &[(name, value)])
            .await
            .err()
            .unwrap_or_else(|| panic!("startup parameter {name} must be refused"));
        assert_eq!(e.code().as_deref(), Some("42501"), "{name}");
        assert!(e.message().unwrap().contains(name), "{:?}", e.message());
        assert!(e.hint().is_some());
    }
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_options_come_before_authentication() {
    // No password is asked for: the refusal is the first message.
    let proxy = Proxy::start().await;
    let mut raw = Raw::open(
        proxy.addr,
        ProtocolVersion::V3_0,
        &[
            ("user", ALICE.0),
            ("database", "app"),
            ("options", "-c role=postgres"),
        ],
    )
    .await;
    let got = raw.until_closed().await;
    assert_eq!(tags(&got), "E");
    assert_eq!(got[0].code().as_deref(), Some("42501"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_settings_are_passed_on() {
    let proxy = Proxy::start().await;
    let mut raw = login_with(
        &proxy,
        ProtocolVersion::V3_0,
        &[
            ("application_name", "e2e-startup-app"),
            ("DateStyle", "SQL, DMY"),
            ("TimeZone", "Asia/Tokyo"),
            ("extra_float_digits", "2"),
            ("client_encoding", "LATIN1"),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{:?} {:?}", e.code(), e.message()));
    assert_eq!(
        show(&mut raw, "application_name").await,
        "e2e-startup-app (portcullis: alice)"
    );
    assert_eq!(show(&mut raw, "DateStyle").await, "SQL, DMY");
    assert_eq!(show(&mut raw, "TimeZone").await, "Asia/Tokyo");
    assert_eq!(show(&mut raw, "extra_float_digits").await, "2");
    assert_eq!(show(&mut raw, "client_encoding").await, "LATIN1");
    // The server reported them during startup, and the client got that.
    for (name, value) in [
        ("application_name", "e2e-startup-app (portcullis: alice)"),
        ("DateStyle", "SQL, DMY"),
        ("TimeZone", "Asia/Tokyo"),
        ("client_encoding", "LATIN1"),
    ] {
        assert_eq!(
            parameter_status(&raw.startup, name).as_deref(),
            Some(value),
            "ParameterStatus {name}"
        );
    }
    // Visible to the server itself.
    let seen = proxy.upstream_sql(&format!(
        "SELECT application_name FROM pg_stat_activity WHERE pid = {}",
        raw.pid
    ));
    assert_eq!(seen, "e2e-startup-app (portcullis: alice)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_connections_are_refused() {
    let proxy = Proxy::start().await;
    for value in ["database", "true", "on", "1"] {
        let e = login_with(&proxy, ProtocolVersion::V3_0, &[("replication", value)])
            .await
            .err()
            .unwrap_or_else(|| panic!("replication={value} must be refused"));
        assert_eq!(e.severity().as_deref(), Some("FATAL"));
        assert_eq!(e.code().as_deref(), Some("0A000"), "replication={value}");
        assert!(
            e.message().unwrap().contains("replication"),
            "{:?}",
            e.message()
        );
    }
    for value in ["false", "off", "0", "no"] {
        let mut raw = login_with(&proxy, ProtocolVersion::V3_0, &[("replication", value)])
            .await
            .unwrap_or_else(|e| panic!("replication={value}: {:?}", e.message()));
        assert_eq!(column(&mut raw, "SELECT 1").await, vec![Some("1".into())]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_user_is_refused() {
    let proxy = Proxy::start().await;
    let e = Raw::login(
        proxy.addr,
        ProtocolVersion::V3_0,
        &[("database", "app")],
        ALICE.1,
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(e.severity().as_deref(), Some("FATAL"));
    assert_eq!(e.code().as_deref(), Some("28000"));
    let e = Raw::login(
        proxy.addr,
        ProtocolVersion::V3_0,
        &[("user", ""), ("database", "app")],
        ALICE.1,
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(e.code().as_deref(), Some("28000"));
}

// ---------------------------------------------------------------------------
// Malformed startup packets and cancel requests.
// ---------------------------------------------------------------------------

/// Sends `bytes` on a fresh connection and returns what came back before the
/// proxy closed it.
async fn send_raw(proxy: &Proxy, bytes: &[u8]) -> Vec<Msg> {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    Wire::new(s).until_closed().await
}

/// Either a silent close or exactly one FATAL 08P01.
fn assert_closed_or_protocol_violation(got: &[Msg], what: &str) {
    match got {
        [] => {}
        [e] if e.tag == b'E' => {
            assert_eq!(
                e.code().as_deref(),
                Some("08P01"),
                "{what}: {:?}",
                e.message()
            );
            assert_eq!(e.severity().as_deref(), Some("FATAL"), "{what}");
        }
        _ => panic!("{what}: expected a close, got {}", tags(got)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_startup_packet_lengths() {
    let proxy = Proxy::start().await;
    // Longer than PostgreSQL's 10000-byte limit: only the length word.
    let got = send_raw(&proxy, &10_001u32.to_be_bytes()).await;
    assert_closed_or_protocol_violation(&got, "length 10001");
    // A huge length with a real body behind it.
    let mut b = BytesMut::new();
    b.put_u32(1 << 30);
    b.put_i32(ProtocolVersion::V3_0.code());
    b.put_slice(b"user\0alice\0\0");
    let got = send_raw(&proxy, &b).await;
    assert_closed_or_protocol_violation(&got, "length 2^30");
    // Shorter than a header.
    for len in [0u32, 4, 7] {
        let mut b = BytesMut::new();
        b.put_u32(len);
        b.put_i32(ProtocolVersion::V3_0.code());
        let got = send_raw(&proxy, &b).await;
        assert_closed_or_protocol_violation(&got, &format!("length {len}"));
    }
    // A negative length.
    let got = send_raw(&proxy, &(-8i32).to_be_bytes()).await;
    assert_closed_or_protocol_violation(&got, "negative length");
    // Exactly at the limit, but with garbage parameters (no terminator).
    let mut b = BytesMut::new();
    b.put_u32(10_000);
    b.put_i32(ProtocolVersion::V3_0.code());
    b.put_slice(&[b'x'; 10_000 - 8]);
    let got = send_raw(&proxy, &b).await;
    assert_closed_or_protocol_violation(&got, "unterminated parameters");
    // A startup packet of exactly 10000 bytes with a valid body is accepted
    // (PostgreSQL's limit is inclusive).
    let pad = "p".repeat(10_000 - 8 - "user\0alice\0database\0app\0application_name\0\0\0".len());
    let mut b = BytesMut::new();
    encode::startup_message(
        &mut b,
        ProtocolVersion::V3_0,
        [
            ("user", ALICE.0),
            ("database", "app"),
            ("application_name", pad.as_str()),
        ],
    );
    assert_eq!(b.len(), 10_000);
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&b).await.unwrap();
    let mut w = Wire::new(s);
    let first = w
        .recv()
        .await
        .expect("an answer to a 10000-byte startup packet");
    assert_eq!(
        first.tag,
        b'R',
        "authentication starts: {:?}",
        first.message()
    );

    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_an_unknown_key_is_ignored() {
    let proxy = Proxy::start().await;
    let mut victim = crate::raw::login(&proxy, ALICE).await;

    // Unknown PID.
    let mut b = BytesMut::new();
    encode::cancel_request(&mut b, 0x7fff_0001, &[1, 2, 3, 4]);
    assert!(send_raw(&proxy, &b).await.is_empty(), "no answer");
    // The right PID with a wrong key, while a query runs: no cancel.
    victim
        .send(&fe::query("SELECT pg_sleep(1.5), 'done'"))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut wrong = victim.key.clone();
    wrong[0] ^= 0xff;
    let mut b = BytesMut::new();
    encode::cancel_request(&mut b, victim.pid, &wrong);
    assert!(send_raw(&proxy, &b).await.is_empty(), "no answer");
    // A 32-byte key for a 4-byte session does not match either.
    let mut b = BytesMut::new();
    encode::cancel_request(&mut b, victim.pid, &[0u8; 32]);
    assert!(send_raw(&proxy, &b).await.is_empty(), "no answer");
    let msgs = victim.until_ready().await;
    assert!(
        !msgs.iter().any(|m| m.tag == b'E'),
        "query was cancelled by a wrong key: {:?}",
        msgs.iter().filter_map(Msg::code).collect::<Vec<_>>()
    );
    assert_eq!(tags(&msgs), "TDCZ");
    // Everything still works.
    assert_eq!(
        column(&mut victim, "SELECT 1").await,
        vec![Some("1".into())]
    );
    still_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_3_1_is_accepted_with_a_4_byte_key() {
    // 3.1 was never used; PostgreSQL 18 accepts it without negotiation and,
    // being below 3.2, with a 4-byte key.
    let proxy = Proxy::start().await;
    let raw = login_with(&proxy, ProtocolVersion { major: 3, minor: 1 }, &[])
        .await
        .unwrap_or_else(|e| panic!("3.1 login: {:?}", e.message()));
    assert!(
        !raw.startup.iter().any(|m| m.tag == b'v'),
        "{}",
        tags(&raw.startup)
    );
    assert_eq!(raw.key.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_spaces_in_options() {
    let proxy = Proxy::start().await;
    let mut raw = login_with(
        &proxy,
        ProtocolVersion::V3_0,
        &[("options", r"-c DateStyle=SQL,\ DMY -cstatement_timeout=5s")],
    )
    .await
    .unwrap_or_else(|e| panic!("{:?} {:?}", e.code(), e.message()));
    assert_eq!(show(&mut raw, "DateStyle").await, "SQL, DMY");
    assert_eq!(show(&mut raw, "statement_timeout").await, "5s");
    // An escaped space cannot hide a second switch: the proxy reads one
    // search_path setting, and so does the server, which finds it invalid
    // and refuses the login (the client gets 08006). The role never
    // changes.
    let e = login_with(
        &proxy,
        ProtocolVersion::V3_0,
        &[("options", r"-c search_path=x\ -c\ role=postgres")],
    )
    .await;
    match e {
        Err(e) => assert!(
            matches!(e.code().as_deref(), Some("42501" | "08006")),
            "{:?}",
            e.message()
        ),
        Ok(mut raw) => {
            assert_eq!(
                column(&mut raw, "SELECT current_user").await,
                vec![Some("postgres".into())]
            );
        }
    }
    // application_name is not taken from options (the plain parameter
    // Portcullis sends would silently win over it).
    let e = login_with(
        &proxy,
        ProtocolVersion::V3_0,
        &[("options", "-c application_name=x")],
    )
    .await;
    assert_eq!(e.err().and_then(|e| e.code()).as_deref(), Some("42501"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_packet_in_fragments() {
    let proxy = Proxy::start().await;
    let mut b = BytesMut::new();
    encode::startup_message(&mut b, ProtocolVersion::V3_0, app(ALICE.0));
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for chunk in b.chunks(3) {
        s.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut w = Wire::new(s);
    let first = w.recv().await.expect("an answer");
    assert_eq!(first.tag, b'R', "{:?}", first.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superuser_settings_cannot_be_smuggled_as_plain_parameters() {
    // The options allow-list refuses `-c session_replication_role=replica`
    // (it disables triggers and foreign-key checks) and
    // `-c log_min_error_statement=panic` (failed statements vanish from the
    // server log). Sent as plain startup parameters the same settings must
    // not take effect either: the proxy logs in upstream as a superuser, so
    // the server itself accepts these superuser-only settings.
    let proxy = Proxy::start().await;
    let mut bypassed = Vec::new();
    for (name, value, default) in [
        ("session_replication_role", "replica", "origin"),
        ("log_min_error_statement", "panic", "error"),
    ] {
        let option = format!("-c {name}={value}");
        let e = login_with(
            &proxy,
            ProtocolVersion::V3_0,
            &[("options", option.as_str())],
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{name} must be refused in options"));
        assert_eq!(e.code().as_deref(), Some("42501"));
        match login_with(&proxy, ProtocolVersion::V3_0, &[(name, value)]).await {
            Err(e) => assert_eq!(e.code().as_deref(), Some("42501"), "{:?}", e.message()),
            Ok(mut raw) => {
                let now = show(&mut raw, name).await;
                if now != default {
                    bypassed.push(format!("{name}={now}"));
                }
            }
        }
    }
    assert!(
        bypassed.is_empty(),
        "plain startup parameters bypassed the options allow-list and set superuser-only settings upstream: {bypassed:?}"
    );
}
