use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_queries() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    let msgs = client
        .simple_query("CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b'); SELECT v FROM t ORDER BY id")
        .await
        .unwrap();
    let rows: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(rows, vec!["a", "b"]);
    // Extended protocol, named statement, binary results.
    let stmt = client
        .prepare("SELECT id, v FROM t WHERE id = $1")
        .await
        .unwrap();
    let row = client.query_one(&stmt, &[&2i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    assert_eq!(row.get::<_, String>(1), "b");
    // Pipelining: several queries in flight on one connection.
    let (a, b, c) = tokio::join!(
        client.query_one("SELECT 1::int", &[]),
        client.query_one("SELECT $1::text", &[&"two"]),
        client.query_one(&stmt, &[&1i32]),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(b.unwrap().get::<_, String>(0), "two");
    assert_eq!(c.unwrap().get::<_, String>(1), "a");
    // Errors keep the session usable.
    let err = client
        .simple_query("SELECT * FROM missing")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42P01"));
    assert_eq!(
        client
            .query_one("SELECT 3::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_notices() {
    let proxy = Proxy::start().await;
    let mut client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    tx.rollback().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    tx.commit().await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // An error inside a transaction aborts it; ROLLBACK recovers.
    client.batch_execute("BEGIN").await.unwrap();
    assert!(client.batch_execute("SELECT 1/0").await.is_err());
    let e = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    client.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_carry_the_real_backend_pid() {
    use futures_util::StreamExt;
    let proxy = Proxy::start().await;
    let conn_str = proxy.conn_str(ALICE, "sslmode=require");
    let config: tokio_postgres::Config = conn_str.parse().unwrap();
    let (client, mut connection) = config
        .connect(portcullis_testbed::RustlsConnect::from_pki(pki()))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(async move {
        while let Some(m) = messages.next().await {
            if tx.send(m).is_err() {
                break;
            }
        }
    });
    client.batch_execute("LISTEN chan").await.unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // Notify from another session, and the client is idle meanwhile.
    let other = proxy.client().await;
    other.batch_execute("NOTIFY chan, 'hello'").await.unwrap();
    client.batch_execute("NOTIFY chan, 'self'").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("notification delivered")
            .unwrap()
            .unwrap();
        if let tokio_postgres::AsyncMessage::Notification(n) = m {
            got.push((n.process_id(), n.payload().to_owned()));
        }
    }
    let own = got.iter().find(|(_, p)| p == "self").unwrap();
    assert_eq!(
        own.0, pid,
        "NOTIFY from our own session carries our backend PID"
    );
    assert!(got.iter().any(|(_, p)| p == "hello"));
    // Notices pass through too.
    client
        .batch_execute("DO $$BEGIN RAISE NOTICE 'careful'; END$$")
        .await
        .unwrap();
    let notice = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(Ok(tokio_postgres::AsyncMessage::Notice(n))) = rx.recv().await {
                return n;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(notice.message(), "careful");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_running_query() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    let token = client.cancel_token();
    let started = std::time::Instant::now();
    let query = tokio::spawn(async move {
        let r = client.simple_query("SELECT pg_sleep(30)").await;
        (r, client)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    token
        .cancel_query(portcullis_testbed::RustlsConnect::from_pki(pki()))
        .await
        .unwrap();
    let (r, client) = query.await.unwrap();
    assert_eq!(sqlstate(&r.unwrap_err()).as_deref(), Some("57014"));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The session survives a cancel.
    assert_eq!(
        client
            .query_one("SELECT 1::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}
