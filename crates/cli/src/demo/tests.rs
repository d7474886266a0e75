//! The demo as a user meets it: the statements its instructions suggest do
//! what the instructions say, on both targets.

use super::*;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

async fn connect(demo: &Demo, proxy: SocketAddr, db: &str, user: &DemoUser) -> Client {
    let dsn = dsn(
        &proxy.ip().to_string(),
        proxy.port(),
        db,
        user.name,
        &user.password,
    );
    let (client, _task) = portcullis_testbed::client::connect(&dsn, Some(&demo.pki))
        .await
        .unwrap_or_else(|e| panic!("connect to {db} as {}: {e}", user.name));
    client
}

/// The orders' ids and statuses, to tell whether a statement changed them.
async fn orders_fingerprint(client: &Client) -> (i64, String) {
    let row = client
        .query_one(
            "SELECT count(*), md5(string_agg(id || ':' || status, ',' ORDER BY id)) FROM orders",
            &[],
        )
        .await
        .expect("orders is readable");
    (row.get(0), row.get(1))
}

/// Asks PostgreSQL directly, not through Portcullis.
fn database_exists(demo: &Demo, name: &str) -> bool {
    let out = demo
        .cluster
        .sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        )
        .expect("pg_database is readable");
    out.trim() == "1"
}

async fn count_tokens(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM api_tokens", &[])
        .await
        .expect("api_tokens is readable")
        .get(0)
}

#[test]
fn production_refuses_what_the_instructions_say_and_staging_runs_it() {
    let demo = set_up(None, &"127.0.0.1:0".parse().unwrap()).expect("demo set up");
    let config = Config::load(&demo.config_path).expect("the demo configuration loads");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = Server::bind(config).await.expect("bind");
        let proxy = server.local_addrs()[0].1;
        let admin = server.admin_addr().expect("the demo has an admin listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));

        // The agent with an API key: it reads, and the database refuses
        // its writes (its access profile's role is read-only); it cannot
        // lift its statement timeout.
        let dsn = agent_dsn(proxy, &demo.agent_key);
        let (agent, _task) = portcullis_testbed::client::connect(&dsn, Some(&demo.pki))
            .await
            .expect("the agent's key logs in");
        let row = agent
            .query_one(
                "SELECT current_user::text, current_setting('portcullis.identity'), \
                 current_setting('portcullis.on_behalf_of'), current_setting('statement_timeout'), \
                 (SELECT count(*) FROM orders)",
                &[],
            )
            .await
            .expect("the agent reads");
        assert_eq!(row.get::<_, String>(0), READER_ROLE);
        assert_eq!(row.get::<_, String>(1), KEY_AGENT);
        assert_eq!(row.get::<_, String>(2), "dana");
        assert_eq!(row.get::<_, String>(3), "30s");
        assert!(row.get::<_, i64>(4) > 0);
        let e = agent
            .batch_execute("UPDATE orders SET status = 'x' WHERE id = 1")
            .await
            .expect_err("the read-only role cannot write");
        assert_eq!(
            e.as_db_error().unwrap().code(),
            &SqlState::INSUFFICIENT_PRIVILEGE
        );
        let e = agent
            .batch_execute("SET statement_timeout = 0")
            .await
            .expect_err("the limit holds");
        assert_eq!(
            e.as_db_error().unwrap().code(),
            &SqlState::INSUFFICIENT_PRIVILEGE
        );
        // Its exfiltration budget: 1000 rows per statement.
        let e = agent
            .simple_query("SELECT * FROM orders")
            .await
            .expect_err("1500 orders are over the limit");
        assert_eq!(
            e.as_db_error().unwrap().code(),
            &SqlState::PROGRAM_LIMIT_EXCEEDED
        );
        let some = agent
            .query("SELECT id FROM orders ORDER BY id LIMIT 1000", &[])
            .await
            .expect("1000 rows are within it");
        assert_eq!(some.len(), 1000);
        drop(agent);

        // A person signing in at the demo's OpenID provider, with the
        // CLI's own OAuth code (the approval played by the test bed), then
        // connecting with the token as the password.
        let sso = demo
            .sso
            .as_ref()
            .expect("the demo's OpenID provider runs (scripts/setup.sh installs it)");
        let login = sso_login_args(&sso.issuer, proxy, &demo.ca_cert);
        use clap::Parser;
        crate::Cli::try_parse_from(std::iter::once("portcullis".to_owned()).chain(login))
            .expect("the printed login line parses");
        let provider = crate::login::oauth::discover(&sso.issuer, "portcullis-cli", None, None)
            .await
            .expect("discovery");
        let issuer = sso.issuer.clone();
        let tokens = provider
            .device_flow(SSO_SCOPE, Some(SSO_RESOURCE), move |code| {
                let url = code
                    .verification_uri_complete
                    .clone()
                    .expect("a complete URL");
                std::thread::spawn(move || {
                    portcullis_testbed::oidc::approve_device(&issuer, &url, "dana")
                        .expect("approved")
                });
            })
            .await
            .expect("the sign-in");
        let token = tokens.access_token.expect("an access token");
        let person_dsn = super::dsn(
            &proxy.ip().to_string(),
            proxy.port(),
            "shop",
            "dana@example.com",
            &token,
        );
        let (person, _task) = portcullis_testbed::client::connect(&person_dsn, Some(&demo.pki))
            .await
            .expect("the person's token logs in");
        let row = person
            .query_one(
                "SELECT current_setting('portcullis.identity'), \
                 current_setting('portcullis.identity_kind')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "dana@example.com");
        assert_eq!(row.get::<_, String>(1), "human");
        drop(person);

        for user in &demo.users {
            let shop = connect(&demo, proxy, "shop", user).await;
            let tokens = count_tokens(&shop).await;
            assert!(tokens > 0, "the seed has API tokens");
            for (sql, verdict) in TRY_ON_PRODUCTION {
                let orders = orders_fingerprint(&shop).await;
                let result = shop.batch_execute(sql).await;
                match verdict {
                    Verdict::Runs => {
                        result.unwrap_or_else(|e| panic!("{sql} as {}: {e}", user.name))
                    }
                    Verdict::Policy(policy) => {
                        let e = result.expect_err(sql);
                        let db = e.as_db_error().expect("an ErrorResponse");
                        assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{sql}");
                        assert!(db.message().contains(policy), "{sql}: {}", db.message());
                        assert!(db.hint().is_some(), "{sql}: a hint");
                    }
                    Verdict::OverRowLimit => {
                        let e = result.expect_err(sql);
                        let db = e.as_db_error().expect("an ErrorResponse");
                        assert_eq!(db.code(), &SqlState::PROGRAM_LIMIT_EXCEEDED, "{sql}");
                        let limit = portcullis_config::DEFAULT_PRODUCTION_ROW_LIMIT;
                        assert!(
                            db.message().contains(&format!("more than {limit} rows")),
                            "{sql}: {}",
                            db.message()
                        );
                        // Rolled back: not one order changed.
                        assert_eq!(orders_fingerprint(&shop).await, orders, "{sql}");
                        assert!(orders.0 > limit as i64, "the seed has enough orders");
                    }
                }
            }
            // Refused means not run: the table is there with every row.
            assert_eq!(count_tokens(&shop).await, tokens);

            // A refusal inside a transaction aborts it, so COMMIT cannot
            // commit what came before. (Each data-changing statement goes
            // alone: production has a row limit, which counts per query.)
            shop.batch_execute("BEGIN").await.expect("BEGIN");
            shop.batch_execute("DELETE FROM api_tokens WHERE id > 0")
                .await
                .expect("a filtered DELETE runs");
            let e = shop
                .batch_execute("DROP TABLE api_tokens")
                .await
                .expect_err("DROP refused");
            assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
            let e = shop
                .batch_execute("SELECT 1")
                .await
                .expect_err("the transaction is aborted");
            assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
            shop.batch_execute("COMMIT")
                .await
                .expect("COMMIT rolls back");
            assert_eq!(count_tokens(&shop).await, tokens);
        }

        // Staging cannot reach production's database, and logs in as a
        // role that owns nothing there.
        let staging = connect(&demo, proxy, "shop_staging", &demo.users[0]).await;
        for (sql, policy) in TRY_ON_STAGING {
            let e = staging.batch_execute(sql).await.expect_err(sql);
            let db = e.as_db_error().expect("an ErrorResponse");
            assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{sql}");
            assert!(db.message().contains(policy), "{sql}: {}", db.message());
            assert!(database_exists(&demo, "shop"), "{sql} dropped shop");
        }
        let role: String = staging
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(role, STAGING_ROLE);
        let owners = demo
            .cluster
            .sql(
                "postgres",
                "SELECT string_agg(datname || '=' || datdba::regrole::text, ',' ORDER BY datname) \
                 FROM pg_database WHERE datname LIKE 'shop%'",
            )
            .unwrap();
        assert_eq!(
            owners.trim(),
            format!("shop={UPSTREAM_ROLE},shop_staging={STAGING_ROLE}")
        );

        // Masking: on production every user sees classified columns
        // masked; on staging the DBA (olga) sees them as stored.
        let stored = demo
            .cluster
            .sql("shop", "SELECT email FROM customers ORDER BY id LIMIT 1")
            .unwrap();
        let stored = stored.trim().to_owned();
        assert!(stored.contains('@'), "{stored}");
        for user in &demo.users {
            for db in ["shop", "shop_staging"] {
                let client = connect(&demo, proxy, db, user).await;
                let rows = client
                    .query(&format!("{} ", super::TRY_MASKING), &[])
                    .await
                    .unwrap_or_else(|e| panic!("{db} as {}: {e}", user.name));
                assert_eq!(rows.len(), 3);
                let email: String = rows[0].get(1);
                let unmasked = db == "shop_staging" && user.groups.contains(&"dba");
                if unmasked {
                    assert_eq!(email, stored, "{db} as {}", user.name);
                } else {
                    assert_ne!(email, stored, "{db} as {}", user.name);
                    let ssn: String = rows[0].get(3);
                    assert!(!ssn.chars().take(3).any(|c| c.is_ascii_digit()), "{ssn}");
                }
            }
        }

        // Staging runs everything tried on production (the DELETE before
        // the DROP, as listed; no row limit there).
        for (sql, _) in TRY_ON_PRODUCTION {
            staging
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql} on staging: {e}"));
        }
        let e = staging
            .query_one("SELECT count(*) FROM api_tokens", &[])
            .await
            .expect_err("dropped on staging");
        assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE));

        // The developer's schema change on production waits for the DBA,
        // who approves it through the admin listener; then it completes.
        let dana = connect(&demo, proxy, "shop", &demo.users[0]).await;
        let held = tokio::spawn(async move { dana.batch_execute(TRY_APPROVAL).await });
        let olga = &demo.users[1];
        let request = loop {
            let (_, v) = admin_call(admin, olga, "GET", "/approvals", "").await;
            if let Some(r) = v["requests"].as_array().and_then(|r| r.first()) {
                break r["id"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let (status, v) = admin_call(
            admin,
            olga,
            "POST",
            &format!("/approvals/{request}/approve"),
            "{}",
        )
        .await;
        assert_eq!(status, 200, "{v}");
        held.await
            .unwrap()
            .expect("the approved schema change completes");

        let _ = stop.send(());
        let _ = task.await;
    });
}

/// One call to the demo's approvals API as `who`.
async fn admin_call(
    admin: SocketAddr,
    who: &DemoUser,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", who.name, who.password));
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[test]
fn the_explain_example_is_refused_by_the_policy_named() {
    // The instructions' `policy explain` line shows a refused statement.
    let refused: Vec<_> = TRY_ON_PRODUCTION
        .iter()
        .filter(|(_, v)| matches!(v, Verdict::Policy(_)))
        .map(|(sql, _)| *sql)
        .collect();
    assert!(refused.contains(&EXPLAIN_EXAMPLE));
}

/// `--dir` given a directory made by `mktemp -d` (mode 0700): run as root,
/// PostgreSQL (as the postgres user) can still reach it.
#[test]
fn a_private_directory_works_as_root() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let demo = set_up(Some(dir.path()), &"127.0.0.1:0".parse().unwrap());
    assert!(demo.is_ok(), "{:?}", demo.err());
}
