//! API keys end to end: `portcullis keys` makes them in the control-plane
//! store, agents log in with them over TLS as their password, and every
//! way a key can be wrong is refused with the same answer as a wrong
//! password. Revocation holds for the next login, and with
//! `--end-sessions` ends the sessions the key opened.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use portcullis_audit::record::{ConnectionResult, EndReason, Record, RecordKind};
use portcullis_audit::search::Filter;
use portcullis_audit::{search, SqliteStore};
use portcullis_wire::{decode, encode, ProtocolVersion};

use crate::harness::{sqlstate, Proxy, Setup, ALICE};
use crate::tls::Wire;

pub(crate) fn keys(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run portcullis keys")
}

/// Makes a key and returns (its text, its id).
pub(crate) fn create(config: &Path, args: &[&str]) -> (String, String) {
    let out = keys(config, &[&["create"], args].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keys create failed: {stderr}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("pck_"), "{key}");
    let id = key[4..20].to_owned();
    assert!(stderr.contains(&id), "{stderr}");
    assert!(
        !stderr.contains(&key),
        "the key goes to stdout only: {stderr}"
    );
    (key, id)
}

/// Stops the proxy and returns the connection records naming `subject`.
async fn connections(proxy: Proxy, subject: &str) -> Vec<portcullis_audit::Found> {
    let dir = proxy.shutdown().await;
    let store = SqliteStore::open_read_only(&dir.path().join("portcullis-audit.db")).unwrap();
    search(
        &store,
        &Filter {
            kinds: vec![RecordKind::Connection],
            subject: Some(subject.into()),
            limit: 100,
            ..Filter::default()
        },
    )
    .unwrap()
}

fn setup() -> Setup {
    Setup {
        extra: "[identity]\nrevocation_poll = \"100ms\"\n".into(),
        ..Setup::default()
    }
}

async fn refused(proxy: &Proxy, user: &str, password: &str, extra: &str) -> String {
    let e = proxy
        .connect(&proxy.conn_str((user, password), extra))
        .await
        .err()
        .unwrap_or_else(|| panic!("{user} logged in with {extra}"));
    let db = e.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        db.message(),
        format!("password authentication failed for user \"{user}\""),
        "the same answer for every wrong credential"
    );
    sqlstate(&e).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_logs_in_with_its_key_and_every_wrong_key_is_refused() {
    let proxy = Proxy::with(setup()).await;
    let cfg = proxy.config_path.clone();
    let (key, id) = create(
        &cfg,
        &[
            "--agent",
            "etl",
            "--group",
            "loaders",
            "--group",
            "readers",
            "--on-behalf-of",
            "alice",
            "--expires",
            "1d",
        ],
    );

    let etl = proxy
        .connect(&proxy.conn_str(("etl", &key), "sslmode=require"))
        .await
        .expect("the key logs in over TLS");
    let rows = etl.simple_query("SELECT 41 + 1").await.unwrap();
    assert!(format!("{rows:?}").contains("42"));

    // Over plaintext the proxy never asks for the password in the clear:
    // it runs SCRAM (which does not send the password), and SCRAM fails.
    assert_eq!(
        refused(&proxy, "etl", &key, "sslmode=disable").await,
        "28P01"
    );
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut wire = Wire::new(tcp);
    let mut b = BytesMut::new();
    encode::startup_message(
        &mut b,
        ProtocolVersion::V3_0,
        [("user", "etl"), ("database", "app")],
    );
    wire.send(&b).await.unwrap();
    let first = wire.recv().await.expect("an authentication request");
    assert!(
        matches!(
            decode::auth_request(&first.body).unwrap(),
            decode::AuthRequest::Sasl { .. }
        ),
        "plaintext gets SASL, never a cleartext password request"
    );

    // Another user name, a changed secret, an unknown id, a token-shaped
    // password, a truncated key: all the same 28P01.
    assert_eq!(
        refused(&proxy, "other", &key, "sslmode=require").await,
        "28P01"
    );
    let mut tampered = key.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        refused(&proxy, "etl", &tampered, "sslmode=require").await,
        "28P01"
    );
    let unknown = format!("pck_0000000000000000{}", &key[20..]);
    assert_eq!(
        refused(&proxy, "etl", &unknown, "sslmode=require").await,
        "28P01"
    );
    assert_eq!(
        refused(&proxy, "etl", "eyJhbGciOiJub25lIn0.e30.", "sslmode=require").await,
        "28P01"
    );
    assert_eq!(
        refused(&proxy, "etl", &key[..key.len() - 1], "sslmode=require").await,
        "28P01"
    );
    // A configured SCRAM user cannot log in with a key (its name always
    // runs SCRAM), nor can the key's holder by naming that user.
    assert_eq!(
        refused(&proxy, ALICE.0, &key, "sslmode=require").await,
        "28P01"
    );

    // An expired key.
    let (short, _) = create(&cfg, &["--service", "nightly", "--expires", "1s"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        refused(&proxy, "nightly", &short, "sslmode=require").await,
        "28P01"
    );

    // Revoked without --end-sessions: the live session goes on, the next
    // login fails.
    let out = keys(&cfg, &["revoke", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    etl.simple_query("SELECT 1")
        .await
        .expect("the session stays");
    assert_eq!(
        refused(&proxy, "etl", &key, "sslmode=require").await,
        "28P01"
    );
    drop(etl);

    let listed = keys(&cfg, &["list", "--json"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    let lines: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{listed}");
    let etl_row = lines.iter().find(|l| l["name"] == "etl").unwrap();
    assert_eq!(etl_row["state"], "revoked");
    assert_eq!(etl_row["groups"], serde_json::json!(["loaders", "readers"]));
    assert_eq!(
        lines.iter().find(|l| l["name"] == "nightly").unwrap()["state"],
        "expired"
    );
    assert!(!listed.contains(&key[21..]), "secrets are never listed");

    // The trail names the agent, the person it acts for and the key.
    let found = connections(proxy, "etl").await;
    let succeeded: Vec<_> = found
        .iter()
        .filter_map(|f| match &f.record {
            Record::Connection(c) if matches!(c.result, ConnectionResult::Succeeded { .. }) => {
                Some(c)
            }
            _ => None,
        })
        .collect();
    assert_eq!(succeeded.len(), 1, "{found:?}");
    let c = succeeded[0];
    assert_eq!(c.auth_method.as_deref(), Some("api-key"));
    assert_eq!(c.credential.as_deref(), Some(id.as_str()));
    let who = c.identity.as_ref().unwrap();
    assert_eq!(who.kind, portcullis_audit::record::IdentityKind::Agent);
    assert_eq!(who.groups, ["loaders", "readers"]);
    assert_eq!(who.on_behalf_of.as_deref(), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_with_end_sessions_ends_the_keys_live_sessions() {
    let proxy = Proxy::with(setup()).await;
    let cfg = proxy.config_path.clone();
    let (key, id) = create(&cfg, &["--agent", "runaway"]);
    let (other_key, _) = create(&cfg, &["--agent", "steady"]);
    let runaway = proxy
        .connect(&proxy.conn_str(("runaway", &key), "sslmode=require"))
        .await
        .unwrap();
    let steady = proxy
        .connect(&proxy.conn_str(("steady", &other_key), "sslmode=require"))
        .await
        .unwrap();
    let alice = proxy.client().await;
    let pid: i32 = runaway
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    // Revoked first without --end-sessions: the session goes on...
    let out = keys(&cfg, &["revoke", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    runaway.simple_query("SELECT 1").await.expect("still open");
    // ... until the operator asks again, to end its sessions as well.
    let out = keys(&cfg, &["revoke", &id, "--end-sessions"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match runaway.simple_query("SELECT 1").await {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(_) => panic!("the revoked key's session is still open"),
        }
    };
    assert!(runaway.is_closed(), "{err}");
    // Its backend is gone too: the proxy ended the upstream session.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = proxy.upstream_sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        ));
        if n.trim() == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "backend {pid} still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Sessions of other keys and users are untouched.
    steady.simple_query("SELECT 1").await.unwrap();
    alice.simple_query("SELECT 1").await.unwrap();
    assert_eq!(
        refused(&proxy, "runaway", &key, "sslmode=require").await,
        "28P01"
    );
    drop((steady, alice));

    let found = connections(proxy, "runaway").await;
    assert!(
        found.iter().any(|f| matches!(
            &f.record,
            Record::Connection(c) if matches!(c.result, ConnectionResult::Ended { reason: EndReason::CredentialRevoked, .. })
        )),
        "{found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_refuse_names_that_cannot_work() {
    let proxy = Proxy::with(setup()).await;
    let cfg = proxy.config_path.clone();
    let out = keys(&cfg, &["create", "--agent", ALICE.0]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("configured SCRAM user"));
    let long = "x".repeat(64);
    let out = keys(&cfg, &["create", "--agent", &long]);
    assert_eq!(out.status.code(), Some(2));
    let out = keys(&cfg, &["revoke", "not-an-id"]);
    assert_eq!(out.status.code(), Some(2));
    let out = keys(&cfg, &["revoke", "0123456789abcdef"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key has id"));
    assert!(out.stdout.is_empty());
    drop(proxy);
}

/// A reload that turns API keys off refuses key logins at once (the
/// store stays open for a reload that turns them on again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_turns_keys_off_refuses_them() {
    let proxy = Proxy::with(setup()).await;
    let cfg = proxy.config_path.clone();
    let (key, _) = create(&cfg, &["--agent", "switched"]);
    proxy
        .connect(&proxy.conn_str(("switched", &key), "sslmode=require"))
        .await
        .expect("keys on");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("[identity]\n", "[identity]\napi_keys = false\n"),
    )
    .unwrap();
    proxy
        .handle
        .reload(portcullis_config::Config::load(&cfg).unwrap())
        .expect("reload");
    assert_eq!(
        refused(&proxy, "switched", &key, "sslmode=require").await,
        "28P01"
    );
}
