//! Rows changed per time window (`[[limit]] max_rows_changed`): an
//! identity's statements, across all its sessions and every route, change
//! at most so many rows per window. Deleting in chunks of 25 does not get
//! around it; cascades count; a statement that would go over is rolled
//! back whole; the session stays usable. Every step is checked against
//! the database itself.

use crate::harness::{
    agents_limit_error as limit_error, sqlstate, tls_client as connect, Proxy, Setup, ALICE, BOB,
};

/// bob is an agent; the window is long enough that nothing leaves it
/// during a test.
fn setup(max: u64) -> Setup {
    Setup {
        extra: format!(
            "[[limit]]\nname = \"agents\"\nkinds = [\"agent\"]\nmax_rows_changed = {max}\n\
             rows_changed_window = \"1h\"\n"
        ),
        ..Setup::default()
    }
}

fn rows(proxy: &Proxy, table: &str) -> u64 {
    proxy
        .upstream_sql(&format!("SELECT count(*) FROM {table}"))
        .trim()
        .parse()
        .unwrap()
}

fn prepare(proxy: &Proxy) {
    proxy.upstream_sql(
        "CREATE TABLE items(id int PRIMARY KEY); \
         INSERT INTO items SELECT generate_series(1, 200); \
         CREATE TABLE parents(id int PRIMARY KEY); \
         CREATE TABLE children(id serial PRIMARY KEY, parent int REFERENCES parents ON DELETE CASCADE); \
         INSERT INTO parents SELECT generate_series(1, 5); \
         INSERT INTO children(parent) SELECT p FROM generate_series(1, 5) p, generate_series(1, 10); \
         GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_deletes_do_not_get_around_the_window() {
    let proxy = Proxy::with(setup(60)).await;
    prepare(&proxy);
    let bob = connect(&proxy, BOB).await;

    // 25 at a time: two chunks fit, the third would pass 60 and is rolled
    // back whole.
    for chunk in 0..2 {
        bob.simple_query(&format!(
            "DELETE FROM items WHERE id > {} AND id <= {}",
            chunk * 25,
            chunk * 25 + 25
        ))
        .await
        .unwrap();
    }
    assert_eq!(rows(&proxy, "items"), 150);
    let e = bob
        .simple_query("DELETE FROM items WHERE id > 50 AND id <= 75")
        .await
        .unwrap_err();
    limit_error(&e, "what is left");
    assert_eq!(rows(&proxy, "items"), 150, "rolled back whole");

    // What is left (10) can still be used, through the extended protocol.
    let n = bob
        .execute(
            "DELETE FROM items WHERE id > $1 AND id <= $2",
            &[&50i32, &60i32],
        )
        .await
        .unwrap();
    assert_eq!(n, 10);
    assert_eq!(rows(&proxy, "items"), 140);

    // Nothing is left: a change of one row is refused, on every route,
    // in another session too; a statement that changes nothing still runs,
    // and so do reads.
    let again = connect(&proxy, BOB).await;
    for route in 0..4 {
        let r = match route {
            0 => bob
                .simple_query("DELETE FROM items WHERE id = 61")
                .await
                .map(|_| ()),
            1 => bob
                .execute("UPDATE items SET id = -id WHERE id = $1", &[&62i32])
                .await
                .map(|_| ()),
            2 => {
                bob.batch_execute("PREPARE d AS DELETE FROM items WHERE id = 63")
                    .await
                    .unwrap();
                bob.batch_execute("EXECUTE d").await
            }
            _ => again
                .simple_query("INSERT INTO items VALUES (1000)")
                .await
                .map(|_| ()),
        };
        let e = r.expect_err("the budget is spent");
        limit_error(&e, "allows 60 rows changed per 1h");
        let _ = bob.batch_execute("DEALLOCATE ALL").await;
    }
    assert_eq!(rows(&proxy, "items"), 140);
    assert_eq!(
        proxy
            .upstream_sql("SELECT count(*) FROM items WHERE id < 0 OR id = 1000")
            .trim(),
        "0"
    );
    // Several statements in one query cannot be counted one by one: they
    // are refused together.
    let e = bob
        .batch_execute("SELECT 1; DELETE FROM items WHERE id = 64")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("the rows you change are counted against a limit"));
    bob.simple_query("DELETE FROM items WHERE id = 1")
        .await
        .unwrap();
    let count: i64 = again
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 140);

    // Someone else's budget is their own.
    let alice = connect(&proxy, ALICE).await;
    alice
        .simple_query("DELETE FROM items WHERE id <= 100")
        .await
        .unwrap();
    assert_eq!(rows(&proxy, "items"), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascades_count_and_transactions_are_counted_as_they_go() {
    let proxy = Proxy::with(setup(30)).await;
    prepare(&proxy);
    let bob = connect(&proxy, BOB).await;

    // One parent takes its ten children with it: 11 rows.
    bob.simple_query("DELETE FROM parents WHERE id = 1")
        .await
        .unwrap();
    // Two more parents would be 22 rows, over the 19 left: rolled back.
    let e = bob
        .simple_query("DELETE FROM parents WHERE id IN (2, 3)")
        .await
        .unwrap_err();
    limit_error(&e, "more than 19 rows");
    assert_eq!(rows(&proxy, "parents"), 4);
    assert_eq!(rows(&proxy, "children"), 40);

    // Inside a transaction each statement is charged as it completes; an
    // error ends the transaction as any error does, and the session goes
    // on.
    bob.batch_execute("BEGIN").await.unwrap();
    bob.simple_query("DELETE FROM items WHERE id <= 10")
        .await
        .unwrap();
    let e = bob
        .simple_query("DELETE FROM items WHERE id > 10 AND id <= 20")
        .await
        .unwrap_err();
    limit_error(&e, "more than 9 rows");
    let e = bob.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    bob.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(rows(&proxy, "items"), 200);
    // The rolled-back ten stay charged: the budget counts changes as they
    // are made.
    let e = bob
        .simple_query("DELETE FROM items WHERE id <= 10")
        .await
        .unwrap_err();
    limit_error(&e, "more than 9 rows");
    bob.simple_query("DELETE FROM items WHERE id <= 9")
        .await
        .unwrap();
    assert_eq!(rows(&proxy, "items"), 191);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_share_one_budget() {
    let proxy = Proxy::with(setup(50)).await;
    prepare(&proxy);
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(connect(&proxy, BOB).await);
    }
    // Four sessions at once, 20 rows each: at most 50 rows change.
    let runs = sessions.iter().enumerate().map(|(i, c)| {
        let sql = format!(
            "DELETE FROM items WHERE id > {} AND id <= {}",
            i * 20,
            i * 20 + 20
        );
        async move { c.simple_query(&sql).await.is_ok() }
    });
    let done = futures_util::future::join_all(runs).await;
    let deleted = 200 - rows(&proxy, "items");
    assert!(deleted <= 50, "{deleted} rows deleted");
    assert_eq!(deleted, 20 * done.iter().filter(|ok| **ok).count() as u64);
    assert!(done.iter().any(|ok| *ok));
}

/// `COPY items FROM STDIN` through psql (libpq sends it as a simple
/// query), as bob, with `rows` as its data.
async fn copy_in(proxy: &Proxy, rows: std::ops::Range<u32>) -> (bool, String) {
    let data: String = rows.map(|i| format!("{i}\n")).collect();
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=app user={} sslmode=require",
        proxy.addr.port(),
        BOB.0
    );
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(crate::harness::cluster().bin("psql"))
            .env("PGPASSWORD", BOB.1)
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", &conninfo])
            .args(["-c", "COPY items FROM STDIN"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(data.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_is_counted_too() {
    let proxy = Proxy::with(setup(30)).await;
    prepare(&proxy);
    let (ok, err) = copy_in(&proxy, 1001..1021).await;
    assert!(ok, "{err}");
    assert_eq!(rows(&proxy, "items"), 220);
    let (ok, err) = copy_in(&proxy, 2001..2021).await;
    assert!(!ok);
    assert!(
        err.contains("what is left of the limit \"agents\""),
        "{err}"
    );
    assert_eq!(rows(&proxy, "items"), 220, "rolled back whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_that_changes_rows_is_counted_on_every_route() {
    let proxy = Proxy::with(setup(30)).await;
    prepare(&proxy);
    proxy.upstream_sql(
        "CREATE FUNCTION purge(n int) RETURNS int LANGUAGE plpgsql AS \
         $$BEGIN DELETE FROM items WHERE id <= n; RETURN n; END$$; \
         CREATE PROCEDURE purge_p(n int) LANGUAGE plpgsql AS \
         $$BEGIN DELETE FROM items WHERE id <= n; END$$",
    );
    let bob = connect(&proxy, BOB).await;
    for sql in [
        "SELECT purge(50)",
        "SELECT * FROM purge(50)",
        "CALL purge_p(50)",
        "DO $$BEGIN DELETE FROM items WHERE id <= 50; END$$",
        "WITH x AS (SELECT purge(50)) SELECT * FROM x",
    ] {
        let e = bob.simple_query(sql).await.expect_err(sql);
        limit_error(&e, "more than 30 rows");
        assert_eq!(rows(&proxy, "items"), 200, "{sql}");
    }
    // The extended protocol, and a prepared call.
    let e = bob
        .query("SELECT purge($1)", &[&50i32])
        .await
        .expect_err("extended");
    limit_error(&e, "more than 30 rows");
    bob.batch_execute("PREPARE p AS SELECT purge(50)")
        .await
        .unwrap();
    let e = bob.batch_execute("EXECUTE p").await.expect_err("EXECUTE");
    limit_error(&e, "more than 30 rows");
    assert_eq!(rows(&proxy, "items"), 200);
    bob.simple_query("SELECT purge(20)").await.unwrap();
    assert_eq!(rows(&proxy, "items"), 180);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_over_code_that_may_change_rows_are_refused() {
    let proxy = Proxy::with(setup(30)).await;
    prepare(&proxy);
    proxy.upstream_sql(
        "CREATE FUNCTION purge(n int) RETURNS int LANGUAGE plpgsql AS \
         $$BEGIN DELETE FROM items WHERE id <= n; RETURN n; END$$",
    );
    let bob = connect(&proxy, BOB).await;
    for sql in [
        "DECLARE c CURSOR WITH HOLD FOR SELECT purge(100)",
        "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM purge(100)",
    ] {
        let e = bob.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
        assert!(e.as_db_error().unwrap().message().contains("cursor"));
    }
    // Inside a transaction too, and with the transaction committed.
    bob.batch_execute("BEGIN").await.unwrap();
    let e = bob
        .simple_query("DECLARE c CURSOR FOR SELECT purge(100)")
        .await
        .expect_err("in a transaction");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    bob.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(rows(&proxy, "items"), 200);
    // A cursor over a plain query is fine.
    bob.batch_execute("BEGIN; DECLARE c CURSOR FOR SELECT id FROM items ORDER BY id")
        .await
        .unwrap();
    let r = bob.simple_query("FETCH 2 FROM c").await.unwrap();
    assert_eq!(
        r.iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count(),
        2
    );
    bob.batch_execute("COMMIT").await.unwrap();
}

/// The counting statements name every type in pg_catalog: a type called
/// `text` (with a cast that reports no rows) in a schema the session puts
/// before pg_catalog changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_named_text_before_pg_catalog_does_not_change_the_count() {
    let proxy = Proxy::with(setup(30)).await;
    prepare(&proxy);
    proxy.upstream_sql(
        "CREATE SCHEMA evil; CREATE TYPE evil.text AS (x int); \
         CREATE FUNCTION evil.zero(numeric) RETURNS evil.text LANGUAGE sql \
           AS $$ SELECT ROW(0)::evil.text $$; \
         CREATE CAST (numeric AS evil.text) WITH FUNCTION evil.zero(numeric); \
         GRANT USAGE ON SCHEMA evil TO PUBLIC",
    );
    let bob = connect(&proxy, BOB).await;
    bob.batch_execute("SET search_path = evil, pg_catalog, public")
        .await
        .unwrap();
    for chunk in 0..3 {
        bob.simple_query(&format!(
            "DELETE FROM public.items WHERE id > {} AND id <= {}",
            chunk * 10,
            chunk * 10 + 10
        ))
        .await
        .unwrap();
    }
    let e = bob
        .simple_query("DELETE FROM public.items WHERE id = 31")
        .await
        .expect_err("the budget is spent");
    limit_error(&e, "allows 30 rows changed per 1h");
    assert_eq!(rows(&proxy, "items"), 170);
}

/// Through the extended protocol a procedure or DO block could COMMIT
/// before the check after it; there they are refused, and as a simple
/// query they run inside the counted transaction, where COMMIT fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procedures_cannot_commit_around_the_count() {
    let proxy = Proxy::with(setup(30)).await;
    prepare(&proxy);
    proxy.upstream_sql(
        "CREATE PROCEDURE purge_commit(n int) LANGUAGE plpgsql AS \
         $$BEGIN DELETE FROM items WHERE id <= n; COMMIT; END$$",
    );
    let bob = connect(&proxy, BOB).await;
    for sql in [
        "CALL purge_commit(150)",
        "DO $$BEGIN DELETE FROM items WHERE id <= 150; COMMIT; END$$",
    ] {
        // tokio-postgres' execute goes through Parse/Bind/Execute.
        let e = bob.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
        assert!(e.as_db_error().unwrap().message().contains("simple query"));
        let e = bob.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("2D000"), "{e:?}");
        assert_eq!(rows(&proxy, "items"), 200, "{sql}");
    }
}

/// Code in the client's statement cannot stand in for the check after it:
/// the check is parsed once the statement has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_cannot_replace_the_check() {
    let proxy = Proxy::with(setup(30)).await;
    prepare(&proxy);
    proxy.upstream_sql(
        "CREATE FUNCTION sneaky(n int) RETURNS int LANGUAGE plpgsql AS $f$BEGIN \
           DELETE FROM items WHERE id <= n; \
           BEGIN EXECUTE 'DEALLOCATE \"portcullis.rowlimit\"'; EXCEPTION WHEN OTHERS THEN NULL; END; \
           EXECUTE 'PREPARE \"portcullis.rowlimit\" AS SELECT ''0''::pg_catalog.text'; \
           RETURN n; END$f$",
    );
    let bob = connect(&proxy, BOB).await;
    let e = bob
        .query("SELECT sneaky($1)", &[&150i32])
        .await
        .expect_err("over the limit");
    limit_error(&e, "more than 30 rows");
    assert_eq!(rows(&proxy, "items"), 200);
    // Within the budget it runs, and is charged what it really changed.
    bob.query("SELECT sneaky($1)", &[&20i32]).await.unwrap();
    assert_eq!(rows(&proxy, "items"), 180);
    let e = bob
        .execute("DELETE FROM items WHERE id <= $1", &[&31i32])
        .await
        .expect_err("10 rows left, 11 asked");
    limit_error(&e, "more than 10 rows");
}

/// An operator `=` of the session's own, before pg_catalog, is never
/// called by the counting statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_calls_no_operator_of_the_session() {
    let proxy = Proxy::with(setup(30)).await;
    prepare(&proxy);
    proxy.upstream_sql(
        "CREATE TABLE victims(id int); INSERT INTO victims SELECT generate_series(1, 100); \
         GRANT ALL ON victims TO PUBLIC; CREATE SCHEMA evil; \
         CREATE FUNCTION evil.eq(text, text) RETURNS bool LANGUAGE plpgsql AS \
           $$BEGIN DELETE FROM public.victims; RETURN $1 OPERATOR(pg_catalog.=) $2; END$$; \
         CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq); \
         GRANT USAGE ON SCHEMA evil TO PUBLIC",
    );
    let bob = connect(&proxy, BOB).await;
    bob.batch_execute("SET search_path = evil, pg_catalog, public")
        .await
        .unwrap();
    bob.simple_query("DELETE FROM public.items WHERE id OPERATOR(pg_catalog.<=) 10")
        .await
        .unwrap();
    bob.execute(
        "DELETE FROM public.items WHERE id OPERATOR(pg_catalog.<=) $1",
        &[&20i32],
    )
    .await
    .unwrap();
    assert_eq!(rows(&proxy, "items"), 180);
    assert_eq!(rows(&proxy, "victims"), 100, "the session's = never ran");
}

/// Code that looks read-only, and cursors opened inside code, are counted
/// under a budget; TRUNCATE, which the count cannot see, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_that_looks_read_only_and_truncate() {
    let proxy = Proxy::with(setup(30)).await;
    prepare(&proxy);
    proxy.upstream_sql(
        "CREATE FUNCTION purge(n int) RETURNS int LANGUAGE plpgsql AS \
         $$BEGIN DELETE FROM items WHERE id <= n; RETURN n; END$$; \
         CREATE FUNCTION looks_stable(n int) RETURNS int STABLE LANGUAGE sql AS \
         $$SELECT purge(n)$$",
    );
    let bob = connect(&proxy, BOB).await;
    // It looks like a read: it may use only a share of the budget.
    let e = bob
        .simple_query("SELECT looks_stable(50)")
        .await
        .expect_err("counted");
    limit_error(&e, "what is left of the limit");
    assert_eq!(rows(&proxy, "items"), 200);

    bob.batch_execute("BEGIN").await.unwrap();
    bob.simple_query(
        "DO $$DECLARE c refcursor := 'mycur'; BEGIN OPEN c FOR SELECT purge(150); END$$",
    )
    .await
    .unwrap();
    let e = bob
        .simple_query("FETCH ALL FROM mycur")
        .await
        .expect_err("the FETCH runs the code, and is counted");
    limit_error(&e, "what is left of the limit");
    bob.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(rows(&proxy, "items"), 200);

    for sql in [
        "TRUNCATE items",
        "DO $$BEGIN TRUNCATE items; END$$",
        "CREATE FUNCTION t() RETURNS void LANGUAGE sql AS $$TRUNCATE items$$",
    ] {
        let e = bob.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e:?}");
        assert!(e.as_db_error().unwrap().message().contains("TRUNCATE"));
    }
    assert_eq!(rows(&proxy, "items"), 200);
}

/// A portal Portcullis never saw bound (a cursor opened inside code) is
/// not executed where rows are counted; nor are WITH HOLD cursors (their
/// query runs at COMMIT) under a budget; REFRESH MATERIALIZED VIEW is
/// counted; track_counts stays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_cursors_views_and_counting_itself() {
    use crate::raw::{fe, Raw};
    use portcullis_wire::ProtocolVersion;
    let proxy = Proxy::with(setup(30)).await;
    prepare(&proxy);
    proxy.upstream_sql(
        "CREATE FUNCTION purge(n int) RETURNS int LANGUAGE plpgsql AS \
         $$BEGIN DELETE FROM items WHERE id <= n; RETURN n; END$$; \
         CREATE VIEW purging AS SELECT purge(150) AS n; GRANT ALL ON purging TO PUBLIC; \
         CREATE MATERIALIZED VIEW mv AS SELECT purge(150) AS n WITH NO DATA",
    );
    let mut raw = Raw::login(
        proxy.addr,
        ProtocolVersion::V3_0,
        &[("user", BOB.0), ("database", "app")],
        BOB.1,
    )
    .await
    .expect("bob logs in");
    raw.send(&fe::query("BEGIN")).await;
    raw.until_ready().await;
    raw.send(&fe::query(
        "DO $$DECLARE c refcursor := 'mycur'; BEGIN OPEN c FOR SELECT purge(150); END$$",
    ))
    .await;
    let msgs = raw.until_ready().await;
    assert!(
        msgs.iter().all(|m| m.tag != b'E'),
        "{}",
        crate::raw::tags(&msgs)
    );
    // Execute the cursor's portal directly, through the protocol.
    raw.send(&fe::concat(&[fe::execute("mycur", 0), fe::sync()]))
        .await;
    let msgs = raw.until_ready().await;
    let e = msgs.iter().find(|m| m.tag == b'E').expect("refused");
    assert_eq!(e.code().as_deref(), Some("42501"), "{:?}", e.message());
    raw.send(&fe::query("ROLLBACK")).await;
    raw.until_ready().await;
    assert_eq!(rows(&proxy, "items"), 200);

    let bob = connect(&proxy, BOB).await;
    let e = bob
        .simple_query("DECLARE h CURSOR WITH HOLD FOR SELECT * FROM purging")
        .await
        .expect_err("WITH HOLD under a budget");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    assert_eq!(rows(&proxy, "items"), 200);
    let e = bob
        .simple_query("REFRESH MATERIALIZED VIEW mv")
        .await
        .expect_err("the view's query deletes 150 rows");
    limit_error(&e, "more than 30 rows");
    assert_eq!(rows(&proxy, "items"), 200);
    for sql in [
        "SET track_counts = off",
        "SELECT set_config('track_counts', 'off', false)",
    ] {
        let e = bob.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}");
    }
}

/// A long read does not hold the rest of the identity's budget: it
/// reserves only a share of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_read_leaves_the_budget_to_other_sessions() {
    let proxy = Proxy::with(setup(40)).await;
    prepare(&proxy);
    let reader = connect(&proxy, BOB).await;
    let writer = connect(&proxy, BOB).await;
    let read = tokio::spawn(async move {
        reader
            .simple_query("SELECT count(*) FROM generate_series(1, 20000000)")
            .await
            .map(|_| ())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    writer
        .simple_query("DELETE FROM items WHERE id <= 30")
        .await
        .expect("the write is not held back by the read");
    read.await.unwrap().expect("the read runs");
    assert_eq!(rows(&proxy, "items"), 170);
}
