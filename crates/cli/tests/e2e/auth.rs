use crate::harness::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_testbed::{test_role_password, MD5_USER, PASSWORD_USER, TLS_ONLY_USER, TRUST_USER};
use portcullis_wire::ProtocolVersion;

use crate::raw::Raw;
use portcullis_testbed::TestPki;

/// Everything a client sees of an ErrorResponse, for leak checks.
fn all_text(e: &tokio_postgres::error::DbError) -> String {
    format!(
        "{} | {} | {} | {}",
        e.message(),
        e.detail().unwrap_or(""),
        e.hint().unwrap_or(""),
        e.where_().unwrap_or("")
    )
}

async fn refused(proxy: &Proxy, conn_str: &str) -> tokio_postgres::error::DbError {
    match proxy.connect(conn_str).await {
        Ok(_) => panic!("connection should have been refused: {conn_str}"),
        Err(e) => e
            .as_db_error()
            .unwrap_or_else(|| panic!("no ErrorResponse ({e}) for {conn_str}"))
            .clone(),
    }
}

// ---------------------------------------------------------------------------
// Client authentication.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_look_the_same() {
    let proxy = Proxy::start().await;
    let wrong = "not-alices-password-4711";
    let e = refused(&proxy, &proxy.conn_str((ALICE.0, wrong), "sslmode=require")).await;
    assert_eq!(e.severity(), "FATAL");
    assert_eq!(e.code().code(), "28P01");
    assert_eq!(
        e.message(),
        "password authentication failed for user \"alice\""
    );
    assert!(!all_text(&e).contains(wrong), "{}", all_text(&e));
    assert!(!all_text(&e).contains(ALICE.1), "{}", all_text(&e));

    let nobody = "mallory-pw-0815";
    let u = refused(
        &proxy,
        &proxy.conn_str(("mallory", nobody), "sslmode=require"),
    )
    .await;
    assert_eq!(u.severity(), "FATAL");
    assert_eq!(u.code().code(), "28P01");
    assert_eq!(
        u.message(),
        "password authentication failed for user \"mallory\""
    );
    assert!(!all_text(&u).contains(nobody), "{}", all_text(&u));
    // Same shape: only the user name differs.
    assert_eq!(
        e.message().replace("alice", "X"),
        u.message().replace("mallory", "X")
    );
    assert_eq!(e.hint(), u.hint());
    assert_eq!(e.detail(), u.detail());

    // Over plaintext too.
    let p = refused(&proxy, &proxy.conn_str((ALICE.0, wrong), "sslmode=disable")).await;
    assert_eq!(p.code().code(), "28P01");
    // And the right password still works afterwards.
    proxy.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_target_is_refused_after_authentication() {
    let proxy = Proxy::start().await;
    let e = refused(
        &proxy,
        &proxy.conn_str_for("nope", ALICE, "sslmode=require"),
    )
    .await;
    assert_eq!(e.severity(), "FATAL");
    assert_eq!(e.code().code(), "3D000", "{}", all_text(&e));
    assert!(e.message().contains("\"nope\""), "{}", e.message());
    let hint = e.hint().expect("hint lists the targets");
    assert!(hint.contains("app"), "{hint}");

    // Before authentication nothing about targets is revealed.
    let u = refused(
        &proxy,
        &proxy.conn_str_for("nope", ("mallory", "x"), "sslmode=require"),
    )
    .await;
    assert_eq!(u.code().code(), "28P01", "{}", all_text(&u));
    assert!(!all_text(&u).contains("app"), "{}", all_text(&u));
    let w = refused(
        &proxy,
        &proxy.conn_str_for("nope", (ALICE.0, "wrong"), "sslmode=require"),
    )
    .await;
    assert_eq!(w.code().code(), "28P01", "{}", all_text(&w));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_defaults_to_the_user_name() {
    let proxy = Proxy::start().await;
    let e = Raw::login(
        proxy.addr,
        ProtocolVersion::V3_0,
        &[("user", ALICE.0)],
        ALICE.1,
    )
    .await
    .err()
    .expect("target \"alice\" does not exist");
    assert_eq!(e.code().as_deref(), Some("3D000"));
    assert!(
        e.message().unwrap().contains("\"alice\""),
        "{:?}",
        e.message()
    );
    // An empty database name means the same.
    let e = Raw::login(
        proxy.addr,
        ProtocolVersion::V3_0,
        &[("user", ALICE.0), ("database", "")],
        ALICE.1,
    )
    .await
    .err()
    .expect("target \"alice\" does not exist");
    assert_eq!(e.code().as_deref(), Some("3D000"));
}

// ---------------------------------------------------------------------------
// Upstream login methods.
// ---------------------------------------------------------------------------

/// Writes a password file into `dir` and returns its absolute path.
fn password_file(dir: &Path, name: &str, password: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path
}

/// A `[[target]]` table on the shared cluster.
fn target(name: &str, db: &str, user: &str, password_file: Option<&Path>, extra: &str) -> String {
    let pw = password_file
        .map(|p| format!("password_file = \"{}\"\n", p.display()))
        .unwrap_or_default();
    format!(
        "[[target]]\nname = \"{name}\"\nenvironment = \"development\"\nhost = \"127.0.0.1\"\nport = {port}\ndatabase = \"{db}\"\nuser = \"{user}\"\n{pw}{extra}\nconnect_timeout = \"3s\"\n\n",
        port = cluster().port(),
    )
}

/// A proxy whose targets log in upstream with every method the test
/// cluster has. The password files live in the returned directory.
async fn upstream_proxy() -> (Proxy, tempfile::TempDir) {
    let db = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("e2e"))
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let d = secrets.path();
    let md5 = password_file(d, "md5", &test_role_password(MD5_USER));
    let pw = password_file(d, "pw", &test_role_password(PASSWORD_USER));
    let tlsonly = password_file(d, "tlsonly", &test_role_password(TLS_ONLY_USER));
    let wrong = password_file(d, "wrong", "definitely-wrong-pw-1234");
    let ca = d.join("ca.crt");
    std::fs::write(&ca, pki().ca_cert_pem()).unwrap();
    let ca_line = format!(
        "sslmode = \"verify-full\"\nsslrootcert = \"{}\"",
        ca.display()
    );
    let mut extra = String::new();
    extra += &target("md5", &db, MD5_USER, Some(&md5), "");
    extra += &target("pw", &db, PASSWORD_USER, Some(&pw), "");
    extra += &target("trust", &db, TRUST_USER, None, "");
    extra += &target(
        "tls-require",
        &db,
        TLS_ONLY_USER,
        Some(&tlsonly),
        "sslmode = \"require\"",
    );
    extra += &target("tls-verify", &db, TLS_ONLY_USER, Some(&tlsonly), &ca_line);
    extra += &target(
        "tls-verify-name",
        &db,
        TLS_ONLY_USER,
        Some(&tlsonly),
        &ca_line,
    )
    .replace("host = \"127.0.0.1\"", "host = \"localhost\"");
    extra += &target(
        "tls-plain",
        &db,
        TLS_ONLY_USER,
        Some(&tlsonly),
        "sslmode = \"disable\"",
    );
    extra += &target("pw-wrong", &db, PASSWORD_USER, Some(&wrong), "");
    extra += &target("md5-wrong", &db, MD5_USER, Some(&wrong), "");
    extra += &target(
        "tls-wrong",
        &db,
        TLS_ONLY_USER,
        Some(&wrong),
        "sslmode = \"require\"",
    );
    extra += &target("pw-none", &db, PASSWORD_USER, None, "");
    // A CA that did not sign the server's certificate.
    let other_ca = d.join("other-ca.crt");
    let other = TestPki::generate(&["127.0.0.1"]).unwrap();
    std::fs::write(&other_ca, other.ca_cert_pem()).unwrap();
    extra += &target(
        "tls-wrong-ca",
        &db,
        TLS_ONLY_USER,
        Some(&tlsonly),
        &format!(
            "sslmode = \"verify-full\"\nsslrootcert = \"{}\"",
            other_ca.display()
        ),
    );
    extra += &target(
        "db-missing",
        "e2e_no_such_database",
        PASSWORD_USER,
        Some(&pw),
        "",
    );
    let proxy = Proxy::with_db(
        Setup {
            extra,
            ..Setup::default()
        },
        db,
    )
    .await;
    (proxy, secrets)
}

async fn current_user(proxy: &Proxy, target: &str) -> Result<String, tokio_postgres::Error> {
    let client = proxy
        .connect(&proxy.conn_str_for(target, ALICE, "sslmode=require"))
        .await?;
    let row = client.query_one("SELECT current_user::text", &[]).await?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_auth_methods_work_end_to_end() {
    let (proxy, _secrets) = upstream_proxy().await;
    for (target, role) in [
        ("app", "postgres"),
        ("md5", MD5_USER),
        ("pw", PASSWORD_USER),
        ("trust", TRUST_USER),
        ("tls-require", TLS_ONLY_USER),
        ("tls-verify", TLS_ONLY_USER),
        ("tls-verify-name", TLS_ONLY_USER),
    ] {
        let user = current_user(&proxy, target)
            .await
            .unwrap_or_else(|e| panic!("target {target}: {e}"));
        assert_eq!(user, role, "target {target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_really_used() {
    let (proxy, _secrets) = upstream_proxy().await;
    for (target, ssl) in [("tls-require", "t"), ("tls-verify", "t"), ("md5", "f")] {
        let client = proxy
            .connect(&proxy.conn_str_for(target, ALICE, "sslmode=require"))
            .await
            .unwrap_or_else(|e| panic!("target {target}: {e}"));
        let got: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, ssl == "t", "target {target}: upstream ssl");
    }
}

/// Checks a 08006 refusal for an upstream login failure: FATAL, a hint, and
/// nothing about the upstream (address, port, role, password, server text).
fn assert_upstream_refusal(e: &tokio_postgres::error::DbError, target: &str, secrets: &[&str]) {
    let text = all_text(e);
    assert_eq!(e.severity(), "FATAL", "{text}");
    assert_eq!(e.code().code(), "08006", "{target}: {text}");
    assert!(e.message().contains(target), "{text}");
    assert!(e.hint().is_some(), "{target}: a hint: {text}");
    for s in secrets {
        assert!(!text.contains(s), "{target}: leaks {s:?}: {text}");
    }
    let port = cluster().port().to_string();
    for leak in [
        "127.0.0.1",
        "localhost",
        port.as_str(),
        "pg_hba",
        "tlsonly",
        "pwuser",
        "md5user",
    ] {
        assert!(!text.contains(leak), "{target}: leaks {leak:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_only_role_without_tls_is_refused() {
    let (proxy, _secrets) = upstream_proxy().await;
    let e = refused(
        &proxy,
        &proxy.conn_str_for("tls-plain", ALICE, "sslmode=require"),
    )
    .await;
    assert_upstream_refusal(&e, "tls-plain", &[&test_role_password(TLS_ONLY_USER)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_wrong_password_is_refused_without_leaking_it() {
    let (proxy, _secrets) = upstream_proxy().await;
    for target in [
        "pw-wrong",
        "md5-wrong",
        "tls-wrong",
        "pw-none",
        "tls-wrong-ca",
        "db-missing",
    ] {
        let e = refused(
            &proxy,
            &proxy.conn_str_for(target, ALICE, "sslmode=require"),
        )
        .await;
        assert_upstream_refusal(
            &e,
            target,
            &[
                "definitely-wrong-pw-1234",
                "e2e_no_such_database",
                &test_role_password(PASSWORD_USER),
            ],
        );
    }
    // The proxy is unharmed.
    assert_eq!(current_user(&proxy, "pw").await.unwrap(), PASSWORD_USER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_unreachable_fails_fast() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    // A listener that accepts connections and never says anything.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let acceptor = tokio::spawn(async move {
        while let Ok((s, _)) = silent.accept().await {
            let _ = held_tx.send(s);
        }
    });
    let extra = format!(
        "[[target]]\nname = \"gone\"\nenvironment = \"development\"\nhost = \"127.0.0.1\"\nport = {closed_port}\nuser = \"postgres\"\npassword_file = \"pgpass\"\nconnect_timeout = \"2s\"\n\n\
         [[target]]\nname = \"silent\"\nenvironment = \"development\"\nhost = \"127.0.0.1\"\nport = {silent_port}\nuser = \"postgres\"\npassword_file = \"pgpass\"\nconnect_timeout = \"1s\"\n"
    );
    let proxy = Proxy::with(Setup {
        extra,
        ..Setup::default()
    })
    .await;

    let started = Instant::now();
    let e = refused(
        &proxy,
        &proxy.conn_str_for("gone", ALICE, "sslmode=require"),
    )
    .await;
    let elapsed = started.elapsed();
    assert_upstream_refusal(&e, "gone", &[cluster().superuser_password()]);
    assert!(
        !all_text(&e).contains(&closed_port.to_string()),
        "{}",
        all_text(&e)
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "refused port took {elapsed:?}"
    );

    let started = Instant::now();
    let e = refused(
        &proxy,
        &proxy.conn_str_for("silent", ALICE, "sslmode=require"),
    )
    .await;
    let elapsed = started.elapsed();
    assert_upstream_refusal(&e, "silent", &[cluster().superuser_password()]);
    assert!(
        elapsed < Duration::from_secs(3),
        "silent upstream with connect_timeout 1s took {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "the proxy gave up before connect_timeout: {elapsed:?}"
    );
    assert!(
        held_rx.try_recv().is_ok(),
        "the proxy did reach the silent listener"
    );
    acceptor.abort();
    // Other targets are unaffected.
    proxy.client().await.simple_query("SELECT 1").await.unwrap();
}

// ---------------------------------------------------------------------------
// Per-user connection limit.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_connection_limit() {
    let proxy = Proxy::start().await;
    let conn = proxy.conn_str(LIMITED, "sslmode=require");
    let first = proxy.connect(&conn).await.unwrap();
    let second = proxy.connect(&conn).await.unwrap();
    first.simple_query("SELECT 1").await.unwrap();
    second.simple_query("SELECT 1").await.unwrap();

    let e = refused(&proxy, &conn).await;
    assert_eq!(e.severity(), "FATAL");
    assert_eq!(e.code().code(), "53300", "{}", all_text(&e));
    assert!(e.message().contains("limited"), "{}", e.message());
    assert!(e.hint().is_some());
    // Other users are not limited by it.
    proxy.client().await.simple_query("SELECT 1").await.unwrap();
    // Both sessions still work.
    first.simple_query("SELECT 1").await.unwrap();
    second.simple_query("SELECT 1").await.unwrap();

    // After one closes, a new one fits (the proxy notices asynchronously).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        match proxy.connect(&conn).await {
            Ok(c) => break c,
            Err(e) if sqlstate(&e).as_deref() == Some("53300") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("after closing one session: {e}"),
        }
    };
    third.simple_query("SELECT 1").await.unwrap();
    // And the limit still holds.
    let e = refused(&proxy, &conn).await;
    assert_eq!(e.code().code(), "53300");
    second.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_do_not_use_up_the_user_limit() {
    // Failed attempts (wrong password, unknown target, upstream down) must
    // not hold slots.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let proxy = Proxy::with(Setup {
        extra: format!(
            "[[target]]\nname = \"gone\"\nenvironment = \"development\"\nhost = \"127.0.0.1\"\nport = {closed_port}\nuser = \"postgres\"\nconnect_timeout = \"2s\"\n"
        ),
        ..Setup::default()
    })
    .await;
    for _ in 0..3 {
        let e = refused(
            &proxy,
            &proxy.conn_str_for("gone", LIMITED, "sslmode=require"),
        )
        .await;
        assert_eq!(e.code().code(), "08006");
        let e = refused(
            &proxy,
            &proxy.conn_str((LIMITED.0, "wrong"), "sslmode=require"),
        )
        .await;
        assert_eq!(e.code().code(), "28P01");
        let e = refused(
            &proxy,
            &proxy.conn_str_for("nope", LIMITED, "sslmode=require"),
        )
        .await;
        assert_eq!(e.code().code(), "3D000");
    }
    let conn = proxy.conn_str(LIMITED, "sslmode=require");
    let a = proxy.connect(&conn).await.unwrap();
    let b = proxy.connect(&conn).await.unwrap();
    a.simple_query("SELECT 1").await.unwrap();
    b.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_role_connection_limit_maps_to_53300() {
    // The server refuses the proxy's login with 53300 (role connection
    // limit): the client gets 53300 too, so it knows to retry later.
    let db = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("e2e"))
        .await
        .unwrap();
    let role = format!("{db}_full");
    let pw = "full-role-pw";
    cluster()
        .sql(
            &db,
            &format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 0 PASSWORD '{pw}'"),
        )
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let file = password_file(secrets.path(), "full", pw);
    let proxy = Proxy::with_db(
        Setup {
            extra: target("full", &db, &role, Some(&file), ""),
            ..Setup::default()
        },
        db,
    )
    .await;
    let e = refused(
        &proxy,
        &proxy.conn_str_for("full", ALICE, "sslmode=require"),
    )
    .await;
    let text = all_text(&e);
    assert_eq!(e.severity(), "FATAL");
    assert_eq!(e.code().code(), "53300", "{text}");
    assert!(!text.contains(&role), "{text}");
    assert!(!text.contains(pw), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_get_a_plausible_scram_challenge() {
    // PostgreSQL answers an unknown user with a mock SCRAM challenge: same
    // iteration count as real verifiers, and the same salt every time, so
    // the exchange does not reveal whether the user exists.
    use bytes::BytesMut;
    use portcullis_wire::{decode, encode};
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    async fn challenge(proxy: &Proxy, user: &str) -> (String, String) {
        let mut raw = Raw::open(
            proxy.addr,
            ProtocolVersion::V3_0,
            &[("user", user), ("database", "app")],
        )
        .await;
        let m = raw.recv().await.unwrap();
        assert!(matches!(
            decode::auth_request(&m.body).unwrap(),
            decode::AuthRequest::Sasl { .. }
        ));
        let s = ScramSha256::new(b"whatever", ChannelBinding::unsupported());
        let mut b = BytesMut::new();
        encode::sasl_initial_response(&mut b, "SCRAM-SHA-256", s.message());
        raw.send(&b).await;
        let m = raw.recv().await.unwrap();
        let decode::AuthRequest::SaslContinue { data } = decode::auth_request(&m.body).unwrap()
        else {
            panic!("expected SASLContinue for {user}, got {:?}", m.tag());
        };
        let text = std::str::from_utf8(data).unwrap().to_owned();
        let field = |k: &str| {
            text.split(',')
                .find_map(|f| f.strip_prefix(k))
                .unwrap_or_else(|| panic!("{k} in {text}"))
                .to_owned()
        };
        (field("s="), field("i="))
    }

    let proxy = Proxy::start().await;
    let (_, known_iterations) = challenge(&proxy, ALICE.0).await;
    let (salt1, iterations1) = challenge(&proxy, "mallory").await;
    let (salt2, iterations2) = challenge(&proxy, "mallory").await;
    let (other_salt, _) = challenge(&proxy, "trudy").await;
    assert_eq!(iterations1, known_iterations);
    assert_eq!(iterations2, known_iterations);
    assert_eq!(salt1, salt2, "the mock salt is stable per user name");
    assert_ne!(salt1, other_salt, "and differs between user names");
}

/// A target whose host is a Unix socket directory, as in libpq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_over_a_unix_socket() {
    let c = cluster();
    let pw = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw.path(), c.superuser_password()).unwrap();
    let db = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("unix"))
        .await
        .unwrap();
    let proxy = Proxy::with(Setup {
        extra: format!(
            "[[target]]\nname = \"local\"\nenvironment = \"development\"\nhost = \"{}\"\nport = {}\ndatabase = \"{db}\"\nuser = \"postgres\"\npassword_file = \"{}\"\n",
            c.socket_dir().display(),
            c.port(),
            pw.path().display()
        ),
        ..Setup::default()
    })
    .await;
    let client = proxy
        .connect(&proxy.conn_str_for("local", ALICE, "sslmode=require"))
        .await
        .unwrap();
    let row = client
        .query_one("SELECT current_database(), inet_server_addr() IS NULL", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db);
    assert!(
        row.get::<_, bool>(1),
        "the upstream connection is a Unix socket"
    );
    // Cancel requests reach a Unix-socket upstream too.
    let token = client.cancel_token();
    let q = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    token
        .cancel_query(portcullis_testbed::RustlsConnect::from_pki(pki()))
        .await
        .unwrap();
    let err = q.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"));
}
