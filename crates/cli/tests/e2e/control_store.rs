//! The control-plane store in PostgreSQL (`[identity] postgres`): two
//! proxies and `portcullis keys` share one database, so a key made once
//! logs in through either proxy, and a revocation with `--end-sessions`
//! ends its sessions on both. One proxy reaches the store over TLS (the
//! certificate checked against the test CA), the other over plaintext on
//! this machine. With the store away, key logins fail closed while SCRAM
//! users go on.

use std::time::{Duration, Instant};

use crate::harness::{cluster, sqlstate, Proxy, Setup};
use crate::keys::{create, keys};

fn setup(db: &str, tls: bool) -> Setup {
    let sslmode = if tls {
        "require\"\npostgres_ca_file = \"tls/ca.crt"
    } else {
        "disable"
    };
    Setup {
        extra: format!(
            "[identity]\nrevocation_poll = \"100ms\"\n\
             postgres = \"postgres://postgres@127.0.0.1:{port}/{db}?sslmode={sslmode}\"\n\
             postgres_password_file = \"pgpass\"\n",
            port = cluster().port(),
        ),
        ..Setup::default()
    }
}

async fn control_db() -> String {
    tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("control"))
        .await
        .unwrap()
}

async fn login(
    proxy: &Proxy,
    user: &str,
    key: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    proxy
        .connect(&proxy.conn_str((user, key), "sslmode=require"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_share_keys_and_revocations() {
    let db = control_db().await;
    let one = Proxy::with(setup(&db, true)).await;
    let two = Proxy::with(setup(&db, false)).await;
    // Nothing local: no SQLite store beside either configuration.
    let (key, id) = create(&one.config_path, &["--agent", "roamer", "--group", "g"]);
    assert!(!one.dir.path().join("portcullis-control.db").exists());

    // Listed through the other proxy's configuration: the same store.
    let out = keys(&two.config_path, &["list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        listed.to_string().contains(&id),
        "the key made through one config is listed through the other: {listed}"
    );
    // The store holds the hash, never the key.
    let stored = cluster()
        .sql(
            &db,
            "SELECT id || ':' || encode(hash, 'hex') || ':' || name FROM portcullis_control.api_keys",
        )
        .unwrap();
    assert!(
        stored.contains(&id) && stored.contains(":roamer"),
        "{stored}"
    );
    assert!(!stored.contains(&key[20..]), "the secret is not stored");

    let a = login(&one, "roamer", &key)
        .await
        .expect("through proxy one");
    let b = login(&two, "roamer", &key)
        .await
        .expect("through proxy two");
    // Proxy one keeps its connection to the store over TLS, proxy two over
    // plaintext on this machine: as the server sees them.
    let seen = cluster()
        .sql(
            "postgres",
            &format!(
                "SELECT count(*) FILTER (WHERE s.ssl) || ',' || count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.application_name = 'portcullis-control' AND a.datname = '{db}'"
            ),
        )
        .unwrap();
    assert_eq!(seen.trim(), "1,1");

    // Revoked once, with --end-sessions: both proxies end their sessions.
    let out = keys(&one.config_path, &["revoke", &id, "--end-sessions"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for c in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.simple_query("SELECT 1").await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "a revoked key's session is still open"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(c.is_closed());
    }
    for proxy in [&one, &two] {
        let e = login(proxy, "roamer", &key).await.expect_err("revoked");
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_away_key_logins_fail_closed() {
    let db = control_db().await;
    let proxy = Proxy::with(setup(&db, false)).await;
    let (key, _) = create(&proxy.config_path, &["--agent", "roamer"]);
    login(&proxy, "roamer", &key)
        .await
        .expect("the store answers");
    // The store's database goes away (dropped with its connections).
    cluster()
        .sql("postgres", &format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .unwrap();
    let e = login(&proxy, "roamer", &key).await.expect_err("no store");
    assert_eq!(sqlstate(&e).as_deref(), Some("58000"), "{e:?}");
    assert_eq!(
        e.as_db_error().unwrap().message(),
        "Portcullis could not check the credential"
    );
    // SCRAM users do not need the store.
    proxy.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_of_another_owner_are_not_the_store() {
    let db = control_db().await;
    let proxy = Proxy::with(setup(&db, false)).await;
    let (key, _) = create(&proxy.config_path, &["--agent", "roamer"]);
    // Someone else's table in the store's schema.
    let role = format!("intruder_{}", std::process::id());
    cluster()
        .sql(
            &db,
            &format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role}; END IF; END$$; \
                 ALTER TABLE portcullis_control.api_keys OWNER TO {role}"
            ),
        )
        .unwrap();
    let fresh = Proxy::with(setup(&db, false)).await;
    let e = login(&fresh, "roamer", &key)
        .await
        .expect_err("not trusted");
    assert_eq!(sqlstate(&e).as_deref(), Some("58000"), "{e:?}");
}
