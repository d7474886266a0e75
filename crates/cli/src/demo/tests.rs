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
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));

        for user in &demo.users {
            let shop = connect(&demo, proxy, "shop", user).await;
            let tokens = count_tokens(&shop).await;
            assert!(tokens > 0, "the seed has API tokens");
            for (sql, policy) in TRY_ON_PRODUCTION {
                let result = shop.batch_execute(sql).await;
                match policy {
                    None => result.unwrap_or_else(|e| panic!("{sql} as {}: {e}", user.name)),
                    Some(policy) => {
                        let e = result.expect_err(sql);
                        let db = e.as_db_error().expect("an ErrorResponse");
                        assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{sql}");
                        assert!(db.message().contains(policy), "{sql}: {}", db.message());
                        assert!(db.hint().is_some(), "{sql}: a hint");
                    }
                }
            }
            // Refused means not run: the table is there with every row.
            assert_eq!(count_tokens(&shop).await, tokens);

            // A refusal inside a transaction aborts it, so COMMIT cannot
            // commit what came before.
            shop.batch_execute("BEGIN; DELETE FROM api_tokens WHERE id > 0")
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

        // Staging runs all of them (the DELETE before the DROP, as listed).
        let staging = connect(&demo, proxy, "shop_staging", &demo.users[0]).await;
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

        let _ = stop.send(());
        let _ = task.await;
    });
}

#[test]
fn the_explain_example_is_refused_by_the_policy_named() {
    // The instructions' `policy explain` line shows a refused statement.
    let refused: Vec<_> = TRY_ON_PRODUCTION
        .iter()
        .filter(|(_, p)| p.is_some())
        .map(|(sql, _)| *sql)
        .collect();
    assert!(refused.contains(&EXPLAIN_EXAMPLE));
}
