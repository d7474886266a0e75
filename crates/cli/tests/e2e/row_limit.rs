//! Row limits: a statement that changes more rows than the target allows
//! is rolled back and the client is told; under the limit nothing changes
//! for the client, in either protocol and inside or outside transactions.

use crate::harness::*;

const SETUP: &str = "
CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO t SELECT g, 0 FROM generate_series(1, 10) g;
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent ON DELETE CASCADE);
INSERT INTO parent VALUES (1), (2);
INSERT INTO child SELECT g, 1 FROM generate_series(1, 6) g;
INSERT INTO child VALUES (7, 2);
CREATE TABLE audit (at timestamptz DEFAULT now(), id int);
CREATE FUNCTION audit_t() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO audit (id) VALUES (NEW.id); RETURN NEW; END$$;
CREATE TABLE watched (id int PRIMARY KEY, v int);
INSERT INTO watched SELECT g, 0 FROM generate_series(1, 10) g;
CREATE TRIGGER audit_watched AFTER UPDATE ON watched FOR EACH ROW EXECUTE FUNCTION audit_t();
";

async fn limited_proxy() -> Proxy {
    let proxy = Proxy::with(Setup {
        target_extra: "row_limit = 5".into(),
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql(SETUP);
    proxy
}

fn over_limit(e: &tokio_postgres::Error) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    assert_eq!(db.code().code(), "54000", "{db:?}");
    assert!(db.message().contains("5 rows"), "{}", db.message());
    assert!(db.hint().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_protocol_under_and_over_the_limit() {
    let proxy = limited_proxy().await;
    let client = proxy.client().await;
    let n = client
        .simple_query("UPDATE t SET v = 1 WHERE id <= 3 -- a trailing comment")
        .await
        .unwrap();
    let affected: Vec<u64> = n
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(affected, [3], "the client sees only its own statement");
    assert_eq!(proxy.upstream_sql("SELECT sum(v) FROM t"), "3");

    let e = client
        .simple_query("UPDATE t SET v = 9 WHERE id > 0")
        .await
        .unwrap_err();
    over_limit(&e);
    assert_eq!(
        proxy.upstream_sql("SELECT sum(v) FROM t"),
        "3",
        "rolled back"
    );
    // The session goes on, outside any transaction.
    let e = client
        .simple_query("INSERT INTO t VALUES (11, 0), (12, 0)")
        .await;
    assert!(e.is_ok(), "{e:?}");
    assert_eq!(proxy.upstream_sql("SELECT count(*) FROM t"), "12");
    // Exactly the limit is allowed.
    client
        .simple_query("UPDATE t SET v = 2 WHERE id BETWEEN 1 AND 5")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascades_and_triggers_count() {
    let proxy = limited_proxy().await;
    let client = proxy.client().await;
    // One parent row, six children by cascade: seven rows.
    let e = client
        .simple_query("DELETE FROM parent WHERE id = 1")
        .await
        .unwrap_err();
    over_limit(&e);
    assert_eq!(proxy.upstream_sql("SELECT count(*) FROM child"), "7");
    client
        .simple_query("DELETE FROM parent WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(proxy.upstream_sql("SELECT count(*) FROM child"), "6");
    // Three updates and three audit rows written by the trigger: six.
    let e = client
        .execute("UPDATE watched SET v = 1 WHERE id <= $1", &[&3i32])
        .await
        .unwrap_err();
    over_limit(&e);
    assert_eq!(proxy.upstream_sql("SELECT count(*) FROM audit"), "0");
    client
        .execute("UPDATE watched SET v = 1 WHERE id <= $1", &[&2i32])
        .await
        .unwrap();
    assert_eq!(proxy.upstream_sql("SELECT count(*) FROM audit"), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_under_and_over_the_limit() {
    let proxy = limited_proxy().await;
    let client = proxy.client().await;
    let stmt = client
        .prepare("UPDATE t SET v = $1 WHERE id <= $2 RETURNING id")
        .await
        .unwrap();
    let rows = client.query(&stmt, &[&7i32, &4i32]).await.unwrap();
    assert_eq!(rows.len(), 4);
    let e = client.query(&stmt, &[&8i32, &10i32]).await.unwrap_err();
    over_limit(&e);
    assert_eq!(proxy.upstream_sql("SELECT sum(v) FROM t"), "28");
    // The same prepared statement again, under the limit; then a plain query.
    assert_eq!(client.execute(&stmt, &[&1i32, &1i32]).await.unwrap(), 1);
    let row = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 10);
    // Pipelined: an over-limit statement and a later one in flight together.
    let (a, b) = tokio::join!(
        client.execute("UPDATE t SET v = 0 WHERE id > $1", &[&0i32]),
        client.query_one("SELECT 'after'::text", &[]),
    );
    over_limit(&a.unwrap_err());
    assert_eq!(b.unwrap().get::<_, String>(0), "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_transaction() {
    let proxy = limited_proxy().await;
    let mut client = proxy.client().await;
    // Each statement is counted on its own.
    client.simple_query("BEGIN; ").await.unwrap();
    client
        .simple_query("UPDATE t SET v = 1 WHERE id <= 4")
        .await
        .unwrap();
    client
        .simple_query("UPDATE t SET v = 1 WHERE id > 6")
        .await
        .unwrap();
    client.simple_query("COMMIT").await.unwrap();
    assert_eq!(proxy.upstream_sql("SELECT sum(v) FROM t"), "8");

    // Over the limit inside a transaction: it fails like any failing
    // statement, and COMMIT cannot keep the earlier work.
    client.simple_query("BEGIN").await.unwrap();
    client
        .simple_query("INSERT INTO t VALUES (20, 0)")
        .await
        .unwrap();
    let e = client
        .simple_query("UPDATE t SET v = 5 WHERE id > 0")
        .await
        .unwrap_err();
    over_limit(&e);
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    client.simple_query("COMMIT").await.unwrap();
    assert_eq!(
        proxy.upstream_sql("SELECT count(*) FROM t WHERE id = 20"),
        "0"
    );
    assert_eq!(proxy.upstream_sql("SELECT sum(v) FROM t"), "8");

    // The extended protocol inside a transaction.
    let tx = client.transaction().await.unwrap();
    tx.execute("UPDATE t SET v = 0 WHERE id <= $1", &[&2i32])
        .await
        .unwrap();
    let e = tx
        .execute("DELETE FROM t WHERE id > $1", &[&0i32])
        .await
        .unwrap_err();
    over_limit(&e);
    drop(tx);
    assert_eq!(proxy.upstream_sql("SELECT count(*) FROM t"), "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_statements_with_a_write_are_refused_together() {
    let proxy = limited_proxy().await;
    let client = proxy.client().await;
    let e = client
        .simple_query("UPDATE t SET v = 1 WHERE id = 1; SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    assert_eq!(proxy.upstream_sql("SELECT sum(v) FROM t"), "0");
    // Reads in one string are fine.
    client.simple_query("SELECT 1; SELECT 2").await.unwrap();
}
