//! The identity Portcullis gives the upstream session: `application_name`
//! names who is connected (after the client's own value) and
//! `portcullis.identity`, `portcullis.identity_kind` and
//! `portcullis.on_behalf_of` hold it, so server logs, pgaudit and
//! row-level security see it. No route lets a client change them; RESET
//! ALL and DISCARD ALL return them to what Portcullis set, as the server
//! does for startup values. Every refusal is checked against the
//! server's own view afterwards.

use crate::harness::{sqlstate, Proxy, BOB};

const WHO: &str = "SELECT current_setting('application_name') || '|' || \
                   current_setting('portcullis.identity') || '|' || \
                   current_setting('portcullis.identity_kind') || '|' || \
                   current_setting('portcullis.on_behalf_of')";

async fn who(c: &tokio_postgres::Client) -> String {
    let rows = c.simple_query(WHO).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_sees_who_is_connected_and_no_route_changes_it() {
    let proxy = Proxy::start().await;
    let c = proxy
        .connect(&proxy.conn_str(BOB, "sslmode=require application_name=report-job"))
        .await
        .unwrap();
    let expected = "report-job (portcullis: bob)|bob|agent|";
    assert_eq!(who(&c).await, expected);
    // The server's own view of the session, from outside it.
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        proxy
            .upstream_sql(&format!(
                "SELECT application_name FROM pg_stat_activity WHERE pid = {pid}"
            ))
            .trim(),
        "report-job (portcullis: bob)"
    );

    c.batch_execute(
        "CREATE TABLE t(x int); INSERT INTO t VALUES (1);
         CREATE FUNCTION plain() RETURNS text LANGUAGE sql AS $$ SELECT 'plain' $$",
    )
    .await
    .unwrap();

    let attempts = [
        "SET application_name = 'alice'",
        "SET SESSION \"Application_Name\" TO 'alice'",
        "RESET application_name",
        "SET application_name TO DEFAULT",
        "SELECT set_config('application_name', 'alice', false)",
        "SELECT set_config('APPLICATION_NAME', 'alice', false)",
        "WITH s AS (SELECT set_config('application_name', 'alice', false) AS v) SELECT v FROM s",
        "SELECT x FROM t WHERE set_config('portcullis.identity', 'alice', false) IS NOT NULL",
        "SET portcullis.identity = 'alice'",
        "SET \"portcullis.IDENTITY\" = 'alice'",
        "RESET portcullis.identity_kind",
        "SELECT set_config('portcullis.on_behalf_of', 'ceo', false)",
        "SELECT 1; SET application_name = 'alice'",
        "SET application_name = 'alice'; SELECT 1",
        "PREPARE p AS SELECT set_config('application_name', 'alice', false)",
        "SELECT set_config(n, 'alice', false) FROM (VALUES ('application_name')) v(n)",
        "SELECT set_config('application_nameX'::varchar(16), 'alice', false)",
        "SELECT set_config('application_name   '::char(19), 'alice', false)",
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql SET application_name = 'alice' AS $$ SELECT current_setting('application_name') $$",
        "ALTER FUNCTION plain() SET portcullis.identity = 'alice'",
        "ALTER ROLE CURRENT_USER SET application_name = 'alice'",
        "DO $$ BEGIN PERFORM set_config('application_name', 'alice', false); END $$",
        "DO $$ BEGIN EXECUTE 'SET application_name = ''alice'''; END $$",
    ];
    for sql in attempts {
        let e = c.simple_query(sql).await.expect_err(sql);
        assert!(
            matches!(sqlstate(&e).as_deref(), Some("42501" | "0A000")),
            "{sql}: {e:?}"
        );
        assert_eq!(who(&c).await, expected, "after {sql}");
    }

    // Inside a transaction, SET LOCAL and set_config(..., true): refused,
    // and the transaction is left as PostgreSQL would leave it after an
    // error (aborted), then rolled back.
    c.batch_execute("BEGIN").await.unwrap();
    let e = c
        .simple_query("SET LOCAL application_name = 'alice'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(who(&c).await, expected);

    // Extended protocol: Parse of a set_config, and a bound name.
    let e = c
        .query(
            "SELECT set_config('application_name', $1, false)",
            &[&"alice"],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    let e = c
        .query(
            "SELECT set_config($1, 'alice', false)",
            &[&"application_name"],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    assert_eq!(who(&c).await, expected);

    // RESET ALL and DISCARD ALL go back to the values Portcullis set.
    c.batch_execute("SET TimeZone = 'Asia/Tokyo'; RESET ALL")
        .await
        .unwrap();
    assert_eq!(who(&c).await, expected);
    c.batch_execute("DISCARD ALL").await.unwrap();
    assert_eq!(who(&c).await, expected);
    // Nothing stored for later sessions either.
    let stored = proxy.upstream_sql(
        "SELECT count(*) FROM pg_db_role_setting s, unnest(s.setconfig) c \
         WHERE c LIKE 'application_name=%' OR c LIKE 'portcullis.%'",
    );
    assert_eq!(stored.trim(), "0");
    let functions = proxy.upstream_sql(
        "SELECT count(*) FROM pg_proc WHERE proconfig IS NOT NULL AND pronamespace = 'public'::regnamespace",
    );
    assert_eq!(functions.trim(), "0");
}

/// A function made outside Portcullis can still change application_name
/// while it runs; the server announces it (ParameterStatus), and the
/// session ends rather than go on under another name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_the_proxy_never_saw_cannot_rename_the_session() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql(
        "CREATE FUNCTION rename_me() RETURNS text LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM set_config('application_name', 'alice', false); RETURN 'done'; END $$",
    );
    let c = proxy
        .connect(&proxy.conn_str(BOB, "sslmode=require"))
        .await
        .unwrap();
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let e = c.simple_query("SELECT rename_me()").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("changed application_name"),
        "{e:?}"
    );
    assert!(
        c.simple_query("SELECT 1").await.is_err(),
        "the session is over"
    );
    // The proxy ended the server's session as well.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while proxy
        .upstream_sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        ))
        .trim()
        != "0"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "backend {pid} still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
