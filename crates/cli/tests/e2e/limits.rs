//! Limits per identity (`[[limit]]`): concurrent sessions, and a
//! statement_timeout the session cannot raise or disable on any route.
//! The server enforces the timeout; the test checks what it does.

use crate::harness::{sqlstate, Proxy, Setup, ALICE, BOB};

fn setup() -> Setup {
    Setup {
        extra: r#"
[[limit]]
name = "agents"
kinds = ["agent"]
max_sessions = 2
statement_timeout = "400ms"

[[limit]]
name = "loose"
groups = ["agents"]
max_sessions = 10
statement_timeout = "1h"
"#
        .into(),
        ..Setup::default()
    }
}

async fn show(c: &tokio_postgres::Client) -> String {
    c.query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_statement_timeout_holds_on_every_route() {
    let proxy = Proxy::with(setup()).await;
    // The client asks for no timeout at all, in both startup forms: the
    // stricter of the two matching limits holds.
    let bob = proxy
        .connect(&proxy.conn_str(BOB, "sslmode=require options='-c statement_timeout=0'"))
        .await
        .unwrap();
    assert_eq!(show(&bob).await, "400ms");
    let e = bob.simple_query("SELECT pg_sleep(2)").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{e:?}");

    for sql in [
        "SET statement_timeout = 0",
        "SET statement_timeout = '5s'",
        "SET SESSION statement_timeout TO 401",
        "SELECT set_config('statement_timeout', '0', false)",
        "WITH s AS (SELECT set_config('statement_timeout', '1h', false)) SELECT * FROM s",
        "DO $$ BEGIN PERFORM set_config('statement_timeout', '0', false); END $$",
        "DO $$ BEGIN EXECUTE 'SET statement_timeout = 0'; END $$",
        "CREATE FUNCTION slow() RETURNS void LANGUAGE sql SET statement_timeout = 0 AS $$ SELECT pg_sleep(2) $$",
        "SET statement_timeout = 'forever'",
        // The server rounds these to 0 (no limit at all).
        "SET statement_timeout = '0.4'",
        "SET statement_timeout = '400us'",
        "SELECT set_config('statement_timeout', '0.0001h', false)",
        // Cut by the cast to '0' on the server.
        "SELECT set_config('statement_timeout', '01'::varchar(1), false)",
        "SELECT set_config('statement_timeoutX'::varchar(17), '0', false)",
    ] {
        let e = bob.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e:?}");
        assert_eq!(show(&bob).await, "400ms", "after {sql}");
    }
    // In a transaction, SET LOCAL: refused too.
    bob.batch_execute("BEGIN").await.unwrap();
    let e = bob
        .simple_query("SET LOCAL statement_timeout = 0")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    bob.batch_execute("ROLLBACK").await.unwrap();
    // Extended protocol.
    let e = bob
        .query("SELECT set_config('statement_timeout', $1, false)", &[&"0"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));

    // Shorter is fine; RESET goes back to the limit, as does RESET ALL.
    bob.batch_execute("SET statement_timeout = '100ms'")
        .await
        .unwrap();
    assert_eq!(show(&bob).await, "100ms");
    bob.batch_execute("RESET statement_timeout").await.unwrap();
    assert_eq!(show(&bob).await, "400ms");
    bob.batch_execute("SET statement_timeout = 50; RESET ALL")
        .await
        .unwrap();
    assert_eq!(show(&bob).await, "400ms");
    bob.batch_execute("DISCARD ALL").await.unwrap();
    assert_eq!(show(&bob).await, "400ms");

    // A client asking for less keeps its own.
    let short = proxy
        .connect(&proxy.conn_str(BOB, "sslmode=require options='-c statement_timeout=150'"))
        .await
        .unwrap();
    assert_eq!(show(&short).await, "150ms");

    // A human has no such limit.
    let alice = proxy.client().await;
    assert_eq!(show(&alice).await, "0");
    alice
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_gets_at_most_its_sessions() {
    let proxy = Proxy::with(setup()).await;
    let a = proxy
        .connect(&proxy.conn_str(BOB, "sslmode=require"))
        .await
        .unwrap();
    let b = proxy
        .connect(&proxy.conn_str(BOB, "sslmode=require"))
        .await
        .unwrap();
    let Err(e) = proxy.connect(&proxy.conn_str(BOB, "sslmode=require")).await else {
        panic!("a third session");
    };
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"));
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(
        message.contains("the limit \"agents\" allows 2 sessions"),
        "{message}"
    );
    // Humans are not counted against it.
    let _alice = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=require"))
        .await
        .unwrap();
    let _alice2 = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=require"))
        .await
        .unwrap();
    let _alice3 = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=require"))
        .await
        .unwrap();
    // A closed session frees its slot.
    drop(a);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match proxy.connect(&proxy.conn_str(BOB, "sslmode=require")).await {
            Ok(_) => break,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("the slot was not freed: {e:?}"),
        }
    }
    drop(b);
}
