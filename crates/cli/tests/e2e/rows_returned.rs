//! Limits on what a session is returned (`[[limit]] max_rows_returned`,
//! `max_bytes_returned` and their per-session forms): a statement that
//! would return more fails with 54000 naming the limit, on every route,
//! and the server fails it too: its changes are rolled back, an open
//! transaction is aborted, and nothing the client pipelined after it runs.
//! Every step is checked against the database itself.

use crate::harness::{
    agents_limit_error as limit_error, sqlstate, tls_client as connect, Proxy, Setup, ALICE, BOB,
};
use crate::raw::{fe, Raw};
use futures_util::{SinkExt, StreamExt, TryStreamExt};

/// bob is an agent and gets `limits`; alice is not limited.
fn setup(limits: &str) -> Setup {
    Setup {
        extra: format!("[[limit]]\nname = \"agents\"\nkinds = [\"agent\"]\n{limits}\n"),
        ..Setup::default()
    }
}

fn upstream(proxy: &Proxy, sql: &str) -> String {
    proxy.upstream_sql(sql).trim().to_owned()
}

/// items(id 1..=100, v 0); an empty log; all open to everyone.
fn prepare(proxy: &Proxy) {
    proxy.upstream_sql(
        "CREATE TABLE items(id int PRIMARY KEY, v int NOT NULL DEFAULT 0); \
         INSERT INTO items(id) SELECT generate_series(1, 100); \
         CREATE TABLE log(n int); \
         GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC",
    );
}

fn row_count(messages: &[tokio_postgres::SimpleQueryMessage]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_over_its_row_limit_fails_on_every_route() {
    let proxy = Proxy::with(setup("max_rows_returned = 10")).await;
    prepare(&proxy);
    let bob = connect(&proxy, BOB).await;

    // Up to the limit, on both protocols.
    let r = bob
        .simple_query("SELECT * FROM items WHERE id <= 10")
        .await
        .unwrap();
    assert_eq!(row_count(&r), 10);
    let r = bob
        .query("SELECT * FROM items WHERE id <= $1", &[&10i32])
        .await
        .unwrap();
    assert_eq!(r.len(), 10);
    assert_eq!(
        bob.query_one("SHOW search_path", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "\"$user\", public"
    );

    // Past it, every route fails and the session goes on.
    let e = bob.simple_query("SELECT * FROM items").await.unwrap_err();
    limit_error(&e, "returns more than 10 rows");
    let e = bob.query("SELECT * FROM items", &[]).await.unwrap_err();
    limit_error(&e, "returns more than 10 rows");
    bob.batch_execute("PREPARE s AS SELECT * FROM items")
        .await
        .unwrap();
    let e = bob.simple_query("EXECUTE s").await.unwrap_err();
    limit_error(&e, "returns more than 10 rows");
    let e = bob
        .simple_query("VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10), (11)")
        .await
        .unwrap_err();
    limit_error(&e, "returns more than 10 rows");
    let e = bob
        .simple_query("EXPLAIN (COSTS OFF, VERBOSE) SELECT * FROM items i JOIN log l ON l.n = i.id JOIN items j ON j.id = l.n WHERE i.v > 0 ORDER BY i.v")
        .await
        .map(|r| row_count(&r));
    match e {
        Ok(n) => assert!(n <= 10, "{n} plan lines"),
        Err(e) => limit_error(&e, "returns more than 10 rows"),
    }
    // COPY TO STDOUT counts each row.
    let copy = bob
        .copy_out("COPY items TO STDOUT")
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await;
    limit_error(&copy.unwrap_err(), "returns more than 10 rows");
    let copy = bob
        .copy_out("COPY (SELECT * FROM items WHERE id <= 10) TO STDOUT")
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    assert_eq!(copy.len(), 10);
    // A cursor's FETCH is a statement of its own.
    bob.batch_execute("BEGIN").await.unwrap();
    bob.batch_execute("DECLARE c CURSOR FOR SELECT * FROM items")
        .await
        .unwrap();
    let r = bob.simple_query("FETCH 10 FROM c").await.unwrap();
    assert_eq!(row_count(&r), 10);
    let e = bob.simple_query("FETCH 11 FROM c").await.unwrap_err();
    limit_error(&e, "returns more than 10 rows");
    let e = bob.simple_query("FETCH 1 FROM c").await.unwrap_err();
    assert_eq!(
        sqlstate(&e).as_deref(),
        Some("25P02"),
        "the transaction failed"
    );
    bob.batch_execute("ROLLBACK").await.unwrap();

    // The session is usable, and someone without the limit reads it all.
    assert_eq!(
        bob.query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        100
    );
    let alice = connect(&proxy, ALICE).await;
    assert_eq!(
        alice.query("SELECT * FROM items", &[]).await.unwrap().len(),
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_of_a_statement_over_the_limit_are_rolled_back() {
    let proxy = Proxy::with(setup("max_rows_returned = 10")).await;
    prepare(&proxy);
    let bob = connect(&proxy, BOB).await;

    // Within the limit a change commits.
    let r = bob
        .simple_query("UPDATE items SET v = 1 WHERE id <= 5 RETURNING id")
        .await
        .unwrap();
    assert_eq!(row_count(&r), 5);
    assert_eq!(upstream(&proxy, "SELECT sum(v) FROM items"), "5");

    // Over it, the statement fails on the server too: simple and extended.
    let e = bob
        .simple_query("UPDATE items SET v = v + 10 RETURNING id")
        .await
        .unwrap_err();
    limit_error(&e, "returns more than 10 rows");
    let e = bob
        .query("DELETE FROM items WHERE id > $1 RETURNING *", &[&50i32])
        .await
        .unwrap_err();
    limit_error(&e, "returns more than 10 rows");
    assert_eq!(
        upstream(&proxy, "SELECT count(*), sum(v) FROM items"),
        "100|5"
    );

    // Inside a transaction the error aborts it, as any error does.
    bob.batch_execute("BEGIN").await.unwrap();
    bob.simple_query("INSERT INTO log VALUES (1)")
        .await
        .unwrap();
    let e = bob
        .simple_query("DELETE FROM items RETURNING id")
        .await
        .unwrap_err();
    limit_error(&e, "returns more than 10 rows");
    let e = bob.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    // COMMIT of a failed transaction rolls back.
    bob.batch_execute("COMMIT").await.unwrap();
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM items"), "100");
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM log"), "0");

    // A rule can make an INSERT return rows in a simple Query; sent as
    // extended messages, PostgreSQL sends them to no one.
    proxy.upstream_sql(
        "CREATE TABLE sink(n int); GRANT ALL ON sink TO PUBLIC; \
         CREATE RULE leak AS ON INSERT TO sink DO INSTEAD SELECT id, v FROM items",
    );
    let r = bob
        .simple_query("INSERT INTO sink VALUES (1)")
        .await
        .unwrap();
    assert_eq!(row_count(&r), 0);

    // A function that writes, called by a query over the limit: undone.
    proxy.upstream_sql(
        "CREATE FUNCTION note(i int) RETURNS int LANGUAGE sql AS 'INSERT INTO log VALUES (i) RETURNING i'",
    );
    let e = bob
        .simple_query("SELECT note(id) FROM items")
        .await
        .unwrap_err();
    assert!(
        matches!(sqlstate(&e).as_deref(), Some("54000" | "42501")),
        "{e:?}"
    );
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM log"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_messages_after_a_statement_over_the_limit_do_not_run() {
    let proxy = Proxy::with(setup("max_rows_returned = 10")).await;
    prepare(&proxy);
    let mut raw = raw_as(&proxy, BOB).await;

    // One write: a read over the limit, then an insert, then Sync.
    let mut batch = Vec::new();
    batch.extend(fe::parse("", "SELECT id FROM items ORDER BY id", &[]));
    batch.extend(fe::bind("", "", &[]));
    batch.extend(fe::execute("", 0));
    batch.extend(fe::parse("", "INSERT INTO log VALUES (1)", &[]));
    batch.extend(fe::bind("", "", &[]));
    batch.extend(fe::execute("", 0));
    batch.extend(fe::sync());
    raw.send(&batch).await;
    let replies = raw.until_ready().await;
    let tags = crate::raw::tags(&replies);
    assert_eq!(tags, format!("12{}EZ", "D".repeat(10)), "{tags}");
    let error = replies.iter().find(|m| m.tag == b'E').unwrap();
    assert_eq!(error.code().as_deref(), Some("54000"));
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM log"), "0");

    // A driver fetching a portal in pieces (JDBC's fetchSize): each
    // Execute is a statement, as for statement_timeout.
    let mut batch = Vec::new();
    batch.extend(fe::query("BEGIN"));
    raw.send(&batch).await;
    raw.until_ready().await;
    let mut batch = Vec::new();
    batch.extend(fe::parse("", "SELECT id FROM items ORDER BY id", &[]));
    batch.extend(fe::bind("p", "", &[]));
    batch.extend(fe::execute("p", 8));
    batch.extend(fe::execute("p", 8));
    batch.extend(fe::execute("p", 11));
    batch.extend(fe::execute("p", 1));
    batch.extend(fe::sync());
    raw.send(&batch).await;
    let tags = crate::raw::tags(&raw.until_ready().await);
    let eight = "D".repeat(8);
    assert_eq!(
        tags,
        format!("12{eight}s{eight}s{}EZ", "D".repeat(10)),
        "{tags}"
    );

    // Several statements in one Query cannot be counted one by one.
    raw.send(&fe::query("ROLLBACK")).await;
    raw.until_ready().await;
    raw.send(&fe::query("SELECT 1; INSERT INTO log VALUES (2)"))
        .await;
    let replies = raw.until_ready().await;
    assert_eq!(replies[0].code().as_deref(), Some("42501"), "{replies:?}");
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM log"), "0");

    // A FunctionCall's result cannot be counted.
    let mut call = Vec::new();
    call.push(b'F');
    let body: &[u8] = &[0, 0, 3, 189, 0, 0, 0, 0, 0, 0];
    call.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    call.extend_from_slice(body);
    raw.send(&call).await;
    let replies = raw.until_ready().await;
    assert_eq!(replies[0].code().as_deref(), Some("42501"), "{replies:?}");
    assert!(replies[0].message().unwrap().contains("cannot be counted"));

    // The session goes on.
    raw.send(&fe::query("SELECT count(*) FROM items")).await;
    let replies = raw.until_ready().await;
    assert_eq!(crate::raw::tags(&replies), "TDCZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_limit_spans_statements() {
    let proxy = Proxy::with(setup("max_rows_returned_per_session = 25")).await;
    prepare(&proxy);
    let bob = connect(&proxy, BOB).await;
    for _ in 0..2 {
        let r = bob.query("SELECT * FROM items WHERE id <= 10", &[]).await;
        assert_eq!(r.unwrap().len(), 10);
    }
    let e = bob
        .simple_query("SELECT * FROM items WHERE id <= 10")
        .await
        .unwrap_err();
    limit_error(&e, "allows a session 25 rows, and 25 have been returned");
    // Statements that return nothing still run.
    bob.simple_query("INSERT INTO log VALUES (1)")
        .await
        .unwrap();
    let r = bob
        .simple_query("SELECT * FROM items WHERE id < 0")
        .await
        .unwrap();
    assert_eq!(row_count(&r), 0);
    let e = bob.query("SELECT 1", &[]).await.unwrap_err();
    limit_error(&e, "allows a session 25 rows");
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM log"), "1");
    // Each session has its own.
    let again = connect(&proxy, BOB).await;
    assert_eq!(again.query("SELECT 1", &[]).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_limited_too_streamed_rows_included() {
    let proxy = Proxy::with(setup(
        "max_bytes_returned = 100000\nmax_bytes_returned_per_session = 1000000",
    ))
    .await;
    prepare(&proxy);
    let bob = connect(&proxy, BOB).await;
    let r = bob
        .query("SELECT repeat('x', 1000) FROM generate_series(1, 50)", &[])
        .await
        .unwrap();
    assert_eq!(r.len(), 50);
    let e = bob
        .query("SELECT repeat('x', 1000) FROM generate_series(1, 200)", &[])
        .await
        .unwrap_err();
    limit_error(&e, "returns more than 100000 bytes");
    // One row larger than the proxy reads at once: dropped as it streams.
    let e = bob
        .simple_query("SELECT repeat('y', 3000000)")
        .await
        .unwrap_err();
    limit_error(&e, "returns more than 100000 bytes");
    // COPY data counts.
    let sink = bob.copy_in("COPY log FROM STDIN").await.unwrap();
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from_static(b"7\n8\n"))
        .await
        .unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 2);
    let copy = bob
        .copy_out("COPY (SELECT repeat('z', 1000) FROM generate_series(1, 200)) TO STDOUT")
        .await
        .unwrap();
    let mut copy = std::pin::pin!(copy);
    let mut got = 0;
    let err = loop {
        match copy.next().await {
            Some(Ok(chunk)) => got += chunk.len(),
            Some(Err(e)) => break e,
            None => panic!("the COPY ended without the limit's error"),
        }
    };
    limit_error(&err, "returns more than 100000 bytes");
    assert!(got <= 100000, "{got} bytes reached the client");
    assert_eq!(
        bob.query_one("SELECT count(*) FROM log", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_the_limit_and_its_hint() {
    let proxy = Proxy::with(setup("max_rows_returned = 10")).await;
    prepare(&proxy);
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=app user={} sslmode=require",
        proxy.addr.port(),
        BOB.0
    );
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(crate::harness::cluster().bin("psql"));
        portcullis_testbed::cluster::clear_libpq_env(&mut cmd);
        cmd.env("PGPASSWORD", BOB.1)
            .args(["-X", "-A", "-t", "-d", &conninfo])
            .args(["-c", "SELECT count(*) FROM items"])
            .args(["-c", "SELECT * FROM items"])
            .args(["-c", "\\copy (SELECT id FROM items) TO STDOUT"])
            .args(["-c", "SELECT id FROM items WHERE id = 3"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A COPY sends its rows as they come: up to the limit, then the error
    // (as after any error in the middle of a COPY).
    let copied: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
    let mut want = vec!["100".to_owned()];
    want.extend(copied);
    want.push("3".to_owned());
    assert_eq!(stdout.lines().collect::<Vec<_>>(), want, "{stderr}");
    assert_eq!(
        stderr.matches("returns more than 10 rows").count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("HINT:"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_changed_and_rows_returned_hold_together_and_masking_still_applies() {
    let proxy = Proxy::with(setup(
        "max_rows_changed = 50\nrows_changed_window = \"1h\"\nmax_rows_returned = 10",
    ))
    .await;
    prepare(&proxy);
    proxy.upstream_sql(crate::masking::SETUP);
    proxy.upstream_sql(
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC; \
         CREATE PROCEDURE touch() LANGUAGE sql AS 'INSERT INTO log VALUES (42)'",
    );
    let bob = connect(&proxy, BOB).await;

    let r = bob
        .simple_query("DELETE FROM items WHERE id <= 5 RETURNING id")
        .await
        .unwrap();
    assert_eq!(row_count(&r), 5);
    // Returns too many: rolled back by the returned-rows limit.
    let e = bob
        .simple_query("DELETE FROM items WHERE id <= 30 RETURNING id")
        .await
        .unwrap_err();
    limit_error(&e, "returns more than 10 rows");
    // Changes too many (45 left): rolled back by the rows-changed limit.
    let e = bob
        .simple_query("DELETE FROM items WHERE id > 40")
        .await
        .unwrap_err();
    limit_error(&e, "what is left");
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM items"), "95");
    let r = bob
        .query(
            "UPDATE items SET v = 2 WHERE id <= $1 RETURNING id",
            &[&13i32],
        )
        .await
        .unwrap();
    assert_eq!(r.len(), 8);
    assert_eq!(
        upstream(&proxy, "SELECT count(*) FROM items WHERE v = 2"),
        "8"
    );
    // A procedure could commit out of the count's reach.
    let e = bob.simple_query("CALL touch()").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM log"), "0");

    // Masking plans the rows of a Query sent as extended messages.
    let r = bob
        .simple_query("SELECT * FROM customers ORDER BY id")
        .await
        .unwrap();
    let mut text = String::new();
    for m in &r {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            for i in 0..row.len() {
                text.push_str(row.get(i).unwrap_or(""));
                text.push('\n');
            }
        }
    }
    assert_eq!(row_count(&r), 2);
    crate::masking::assert_no_leak("a counted Query", text.as_bytes());
}

/// A protocol-level session of `who`.
async fn raw_as(proxy: &Proxy, who: (&str, &str)) -> Raw {
    Raw::login(
        proxy.addr,
        portcullis_wire::ProtocolVersion::V3_0,
        &[("user", who.0), ("database", "app")],
        who.1,
    )
    .await
    .unwrap()
}

async fn raw_bob(proxy: &Proxy) -> Raw {
    raw_as(proxy, BOB).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_of_the_proxys_own_statements_are_reserved() {
    let proxy = Proxy::with(setup("max_rows_returned = 10")).await;
    prepare(&proxy);
    for who in [ALICE, BOB] {
        let c = connect(&proxy, who).await;
        for sql in [
            "PREPARE \"portcullis.query\" AS SELECT 1",
            "EXECUTE \"portcullis.query\"",
            "DEALLOCATE \"portcullis.query\"",
            "DEALLOCATE \"portcullis.rowlimit\"",
            "DECLARE \"portcullis.query\" CURSOR FOR SELECT 1",
            "FETCH 1 FROM \"portcullis.query\"",
            "CLOSE \"Portcullis.Query\"",
        ] {
            let e = c.simple_query(sql).await.unwrap_err();
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e:?}");
            let m = e.as_db_error().unwrap().message().to_owned();
            assert!(
                m.contains("reserved") || m.contains("not prepared through Portcullis"),
                "{sql}: {m}"
            );
        }
    }
}

/// A Sync the client slips into a COPY's data would be answered by the
/// server only if the copy failed on earlier data, which the proxy cannot
/// know: it is not sent (in copy mode the server ignores it anyway), so
/// every later reply stays tied to its request, in every session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_failing_after_a_sync_cannot_slip_a_statement_past_the_count() {
    let proxy = Proxy::with(setup("max_rows_returned = 10")).await;
    prepare(&proxy);
    for _ in 0..5 {
        let mut raw = raw_bob(&proxy).await;
        raw.send(&fe::query("COPY log FROM STDIN")).await;
        let started = raw.recv().await.unwrap();
        assert_eq!(started.tag(), 'G');
        let mut batch = fe::copy_data(b"x\n");
        batch.extend(fe::sync());
        batch.extend(fe::query("UPDATE items SET v = 99 RETURNING id"));
        raw.send(&batch).await;
        let mut rows = 0;
        while let Some(m) = raw.recv().await {
            rows += usize::from(m.tag == b'D');
            if m.tag == b'E' && m.code().as_deref() == Some("54000") {
                break;
            }
        }
        assert!(rows <= 10, "{rows} rows reached the client");
        assert_eq!(
            upstream(&proxy, "SELECT count(*) FROM items WHERE v = 99"),
            "0"
        );
    }
    // Not limited: the session goes on, and the SET after the failed COPY
    // is followed.
    let mut raw = raw_as(&proxy, ALICE).await;
    raw.send(&fe::query("COPY log FROM STDIN")).await;
    assert_eq!(raw.recv().await.unwrap().tag(), 'G');
    let mut batch = fe::copy_data(b"x\n");
    batch.extend(fe::sync());
    batch.extend(fe::query("SET search_path = pg_catalog"));
    raw.send(&batch).await;
    let copy = raw.until_ready().await;
    assert_eq!(crate::raw::tags(&copy), "EZ", "{copy:?}");
    assert_eq!(crate::raw::tags(&raw.until_ready().await), "CZ");
    raw.send(&fe::query("SHOW search_path")).await;
    let shown = raw.until_ready().await;
    let row = shown.iter().find(|m| m.tag == b'D').unwrap();
    assert!(
        String::from_utf8_lossy(&row.body).contains("pg_catalog"),
        "{shown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_sent_into_a_copy_ends_the_session_instead_of_hanging() {
    let proxy = Proxy::with(setup("max_rows_returned = 10")).await;
    prepare(&proxy);
    let mut raw = raw_bob(&proxy).await;
    let mut batch = fe::query("COPY log FROM STDIN");
    batch.extend(fe::parse("", "SELECT * FROM items", &[]));
    batch.extend(fe::bind("", "", &[]));
    batch.extend(fe::execute("", 0));
    batch.extend(fe::sync());
    raw.send(&batch).await;
    let replies = tokio::time::timeout(std::time::Duration::from_secs(10), raw.until_closed())
        .await
        .expect("the session must end, not hang");
    let last = replies.iter().rfind(|m| m.tag == b'E').unwrap();
    assert_eq!(last.code().as_deref(), Some("08P01"), "{replies:?}");
    assert!(!replies.iter().any(|m| m.tag == b'D'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_and_notifications_count_as_bytes() {
    let proxy = Proxy::with(setup(
        "max_bytes_returned = 100000\nmax_bytes_returned_per_session = 200000",
    ))
    .await;
    prepare(&proxy);
    let bob = connect(&proxy, BOB).await;
    // A DO block raising a large notice is over, and rolled back.
    let e = bob
        .simple_query(
            "DO $$ BEGIN INSERT INTO log VALUES (5); RAISE NOTICE '%', repeat('n', 150000); END $$",
        )
        .await
        .unwrap_err();
    limit_error(&e, "returns more than 100000 bytes");
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM log"), "0");
    bob.simple_query("DO $$ BEGIN RAISE NOTICE 'small'; END $$")
        .await
        .unwrap();

    // Several statements with a DO block cannot be counted one by one.
    let e = bob
        .simple_query("DO $$ BEGIN RAISE NOTICE 'x'; END $$; SET x.y = '1'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");

    // Notifications arrive between statements, where none can fail: a
    // limited session may not LISTEN, on either protocol.
    let e = bob.simple_query("LISTEN c").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    let e = bob.execute("LISTEN c", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    // Code that listens anyway gets nothing through.
    let mut listener = raw_bob(&proxy).await;
    listener
        .send(&fe::query("DO $$ BEGIN LISTEN c; END $$"))
        .await;
    assert_eq!(crate::raw::tags(&listener.until_ready().await), "CZ");
    listener
        .send(&fe::query("SELECT pg_notify('c', 'secret')"))
        .await;
    let replies = listener.until_ready().await;
    assert!(!replies.iter().any(|m| m.tag == b'A'), "{replies:?}");
    listener.send(&fe::query("SELECT 1")).await;
    let replies = listener.until_ready().await;
    assert!(!replies.iter().any(|m| m.tag == b'A'), "{replies:?}");

    // Notices of a statement Portcullis does not count: within the
    // limits they pass, past them they are dropped.
    proxy.upstream_sql(
        "CREATE FUNCTION noisy(n int) RETURNS int LANGUAGE plpgsql AS \
         $$ BEGIN RAISE NOTICE '%', repeat('n', n); RETURN 1; END $$",
    );
    let mut raw = raw_bob(&proxy).await;
    raw.send(&fe::query(
        "CREATE TABLE quiet AS SELECT noisy(150000) AS n",
    ))
    .await;
    assert_eq!(crate::raw::tags(&raw.until_ready().await), "CZ");
    raw.send(&fe::query("CREATE TABLE loud AS SELECT noisy(10) AS n"))
        .await;
    assert_eq!(crate::raw::tags(&raw.until_ready().await), "NCZ");
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM quiet"), "1");

    // An error whose text quotes a whole column: the SQLSTATE comes
    // through, the text does not.
    let e = bob
        .simple_query(
            "SELECT (SELECT string_agg(repeat('s', 1000), ',') FROM generate_series(1, 200))::int",
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22P02"), "{e:?}");
    let db = e.as_db_error().unwrap();
    assert!(db.message().contains("withheld"), "{}", db.message());
    assert!(!db.message().contains("sss"));
    // A short error still reads as PostgreSQL wrote it.
    let e = bob.simple_query("SELECT 'x'::int").await.unwrap_err();
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("invalid input syntax"));
}

/// A COPY that fails after CopyInResponse before reading any data (COPY
/// FREEZE on a table the transaction did not create) answers the Sync the
/// client pipelined after its Execute: the proxy's model must follow, so
/// what a statement prepared after it does (here: a search_path that lets
/// a writing function stand in for a read-only one) is what the server
/// does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_failing_before_its_data_does_not_leave_the_model_behind() {
    let proxy = Proxy::with(Setup {
        environment: "production",
        target_extra: "row_limit = 5\n".into(),
        ..Setup::default()
    })
    .await;
    prepare(&proxy);
    proxy.upstream_sql(
        "CREATE SCHEMA shadow; GRANT USAGE ON SCHEMA shadow TO PUBLIC; \
         CREATE FUNCTION shadow.lower(text) RETURNS text LANGUAGE sql \
         AS 'DELETE FROM public.items; SELECT ''gone''::text'",
    );
    let mut raw = raw_as(&proxy, ALICE).await;
    let mut first = fe::parse("s1", "SELECT 1", &[]);
    first.extend(fe::sync());
    raw.send(&first).await;
    raw.until_ready().await;
    let mut batch = fe::query("COPY log FROM STDIN (FREEZE)");
    batch.extend(fe::sync());
    batch.extend(fe::close(b'S', "s1"));
    batch.extend(fe::parse("s1", "SET search_path = shadow, pg_catalog", &[]));
    batch.extend(fe::sync());
    raw.send(&batch).await;
    let mut run = fe::bind("", "s1", &[]);
    run.extend(fe::execute("", 0));
    run.extend(fe::sync());
    raw.send(&run).await;
    raw.send(&fe::query("SELECT lower('X')")).await;
    let mut replies = Vec::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(std::time::Duration::from_secs(2), raw.recv()).await
    {
        replies.push(m);
    }
    // The copy fails. Its Sync went only once the server had said: not
    // at all if the proxy saw the server in copy mode first (one
    // ReadyForQuery), or after the failure, answered (two), as PostgreSQL
    // would. Then the Close, Parse and their Sync, the Bind and Execute of
    // the SET, and the last Query, refused by Portcullis itself with its
    // own error in its place: the function it calls is the writing one
    // under the new search_path.
    let tags = crate::raw::tags(&replies);
    assert!(
        tags == "GEZ31Z2CZEZ" || tags == "GEZZ31Z2CZEZ",
        "{tags}: {replies:?}"
    );
    let refusal = &replies[replies.len() - 2];
    assert_eq!(refusal.code().as_deref(), Some("42501"), "{replies:?}");
    assert_eq!(upstream(&proxy, "SELECT count(*) FROM items"), "100");
}
