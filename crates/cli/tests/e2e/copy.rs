//! COPY through the proxy: every format in both directions with a real
//! driver, failure and abort paths, a large transfer, and the raw protocol
//! sequences (simple and extended) whose ReadyForQuery accounting the proxy
//! must get right.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::Type;

use crate::harness::*;
use crate::protocol::{
    assert_tags, command_tag, data_row, expect_error, expect_quiet, expect_single_fatal,
    first_column, scalar, show, simple, status,
};
use crate::raw::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Sends `chunks` as COPY data and finishes; returns the row count.
async fn copy_in(client: &tokio_postgres::Client, sql: &str, chunks: &[&[u8]]) -> u64 {
    let sink = client.copy_in::<_, Bytes>(sql).await.unwrap();
    futures_util::pin_mut!(sink);
    for c in chunks {
        sink.send(Bytes::copy_from_slice(c)).await.unwrap();
    }
    sink.as_mut().finish().await.unwrap()
}

/// Everything a COPY TO STDOUT produces.
async fn copy_out(client: &tokio_postgres::Client, sql: &str) -> Vec<u8> {
    let stream = client.copy_out(sql).await.unwrap();
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])
        .await
        .unwrap()
        .get(0)
}

/// Rows of `a` missing from `b` plus rows of `b` missing from `a`
/// (multiset difference).
async fn difference(client: &tokio_postgres::Client, a: &str, b: &str) -> i64 {
    client
        .query_one(
            format!(
                "SELECT (SELECT count(*) FROM (TABLE {a} EXCEPT ALL TABLE {b}) x) \
                      + (SELECT count(*) FROM (TABLE {b} EXCEPT ALL TABLE {a}) y)"
            )
            .as_str(),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A table with awkward values in every column type COPY formats differ on.
const SOURCE: &str = "
CREATE TABLE src (id int, t text, n numeric, b bytea, f float8, ok bool, ts timestamptz, j jsonb, arr int[]);
INSERT INTO src VALUES
  (1, 'plain', 1.5, '\\x00ff10', 1.25, true, '2024-01-02 03:04:05+00', '{\"k\": [1, 2]}', '{1,2,3}'),
  (2, E'tab\\there, comma', -0.001, '', -1e300, false, '1999-12-31 23:59:59.999999+00', '\"s\"', '{}'),
  (3, E'new\\nline and \\r return', NULL, NULL, 'NaN', NULL, NULL, NULL, NULL),
  (4, E'back\\\\slash \"quote\" ''single''', 123456789012345678901234567890, decode(repeat('7f80', 50), 'hex'), 'Infinity', true, 'infinity', 'null', '{NULL,4}'),
  (5, '', 0, '\\x', 0, false, '2000-01-01 00:00:00+00', '{}', '{-1}'),
  (6, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (7, 'üñíçødé ✓ 中文', 42, '\\xdeadbeef', 3.14159, true, '2038-01-19 03:14:08+00', '[1, \"two\", null]', '{7,7}'),
  (8, '\\N', 1, '\\x5c4e', 1, true, '1970-01-01 00:00:00+00', '1', '{8}');
INSERT INTO src SELECT 100 + g, repeat(chr(65 + g % 26), g), g, decode(lpad(to_hex(g), 8, '0'), 'hex'), g / 7.0, g % 2 = 0,
  '2020-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', jsonb_build_object('g', g), ARRAY[g, -g]
  FROM generate_series(1, 500) g;
";

// ---------------------------------------------------------------------------
// COPY FROM STDIN
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_text() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE t (id int, v text, n numeric)")
        .await
        .unwrap();
    // Rows split across CopyData messages at arbitrary points.
    let data: &[u8] =
        b"1\thello\t1.5\n2\ttab\\there\t\\N\n3\tnew\\nline\t-2\n4\tback\\\\slash\t0\n5\t\t7\n";
    let chunks: Vec<&[u8]> = vec![&data[..3], &data[3..17], &data[17..18], &data[18..]];
    assert_eq!(
        copy_in(&client, "COPY t (id, v, n) FROM STDIN", &chunks).await,
        5
    );
    let rows: Vec<(i32, Option<String>, Option<String>)> = client
        .query("SELECT id, v, n::text FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows,
        vec![
            (1, s("hello"), s("1.5")),
            (2, s("tab\there"), None),
            (3, s("new\nline"), s("-2")),
            (4, s("back\\slash"), s("0")),
            (5, s(""), s("7")),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_csv_with_header_and_quoted_fields() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE t (id int, v text, n int)")
        .await
        .unwrap();
    let data = "id,v,n\n\
                1,\"a, b\",1\n\
                2,\"multi\nline, with comma\",2\n\
                3,\"say \"\"hi\"\"\",\n\
                4,,3\n\
                5,\"\",4\n\
                6,plain,5\n";
    let n = copy_in(
        &client,
        "COPY t FROM STDIN (FORMAT csv, HEADER true)",
        &[data.as_bytes()],
    )
    .await;
    assert_eq!(n, 6);
    let rows: Vec<(i32, Option<String>, Option<i32>)> = client
        .query("SELECT id, v, n FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows,
        vec![
            (1, s("a, b"), Some(1)),
            (2, s("multi\nline, with comma"), Some(2)),
            (3, s("say \"hi\""), None),
            (4, None, Some(3)),
            (5, s(""), Some(4)),
            (6, s("plain"), Some(5)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_binary() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE t (id int, v text, b bytea, f float8)")
        .await
        .unwrap();
    let sink = client
        .copy_in("COPY t FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let writer =
        BinaryCopyInWriter::new(sink, &[Type::INT4, Type::TEXT, Type::BYTEA, Type::FLOAT8]);
    futures_util::pin_mut!(writer);
    for i in 0..2000i32 {
        let v: Option<String> = if i % 10 == 0 {
            None
        } else {
            Some(format!("row {i}\t\n\\"))
        };
        let b: Vec<u8> = (0..(i % 300)).map(|x| x as u8).collect();
        let f = i as f64 / 3.0;
        writer.as_mut().write(&[&i, &v, &b, &f]).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 2000);
    assert_eq!(count(&client, "t").await, 2000);
    let r = client
        .query_one("SELECT v, b, f FROM t WHERE id = 299", &[])
        .await
        .unwrap();
    assert_eq!(
        r.get::<_, Option<String>>(0).as_deref(),
        Some("row 299\t\n\\")
    );
    assert_eq!(
        r.get::<_, Vec<u8>>(1),
        (0..299).map(|x| x as u8).collect::<Vec<u8>>()
    );
    assert_eq!(r.get::<_, f64>(2), 299.0 / 3.0);
    let nulls: i64 = client
        .query_one("SELECT count(*) FROM t WHERE v IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, 200);
}

// ---------------------------------------------------------------------------
// COPY TO STDOUT
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_out_text_csv_and_binary() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int, v text, n int);
             INSERT INTO t VALUES (1, 'a, b', 1), (2, E'tab\\there', NULL), (3, E'line\\nbreak \"q\"', 3), (4, NULL, 4);",
        )
        .await
        .unwrap();
    let text = copy_out(&client, "COPY (SELECT * FROM t ORDER BY id) TO STDOUT").await;
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "1\ta, b\t1\n2\ttab\\there\t\\N\n3\tline\\nbreak \"q\"\t3\n4\t\\N\t4\n"
    );
    let csv = copy_out(
        &client,
        "COPY (SELECT * FROM t ORDER BY id) TO STDOUT (FORMAT csv, HEADER true)",
    )
    .await;
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "id,v,n\n1,\"a, b\",1\n2,tab\there,\n3,\"line\nbreak \"\"q\"\"\",3\n4,,4\n"
    );
    let stream = client
        .copy_out("COPY (SELECT * FROM t ORDER BY id) TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    let rows = BinaryCopyOutStream::new(stream, &[Type::INT4, Type::TEXT, Type::INT4]);
    futures_util::pin_mut!(rows);
    let mut got = Vec::new();
    while let Some(r) = rows.next().await {
        let r = r.unwrap();
        got.push((
            r.get::<i32>(0),
            r.get::<Option<String>>(1),
            r.get::<Option<i32>>(2),
        ));
    }
    assert_eq!(
        got,
        vec![
            (1, Some("a, b".to_owned()), Some(1)),
            (2, Some("tab\there".to_owned()), None),
            (3, Some("line\nbreak \"q\"".to_owned()), Some(3)),
            (4, None, Some(4)),
        ]
    );
    // The session is back to normal afterwards.
    assert_eq!(count(&client, "t").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_round_trips_in_every_format() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    client.batch_execute(SOURCE).await.unwrap();
    for format in ["text", "csv", "binary"] {
        let dst = format!("dst_{format}");
        client
            .batch_execute(&format!("CREATE TABLE {dst} (LIKE src)"))
            .await
            .unwrap();
        let opts = format!("(FORMAT {format})");
        let data = copy_out(&client, &format!("COPY src TO STDOUT {opts}")).await;
        // Send it back in pieces that do not line up with rows.
        let chunks: Vec<&[u8]> = data.chunks(1000).collect();
        let n = copy_in(&client, &format!("COPY {dst} FROM STDIN {opts}"), &chunks).await;
        assert_eq!(n, 508, "{format}");
        assert_eq!(
            difference(&client, "src", &dst).await,
            0,
            "{format} round trip"
        );
        // And the copy of the copy is byte-identical.
        let again = copy_out(&client, &format!("COPY {dst} TO STDOUT {opts}")).await;
        assert!(again == data, "{format}: second export differs");
    }
}

// ---------------------------------------------------------------------------
// Aborted and failed copies
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_copy_sink_aborts_the_copy() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (0)")
        .await
        .unwrap();
    {
        let sink = client
            .copy_in::<_, Bytes>("COPY t FROM STDIN")
            .await
            .unwrap();
        futures_util::pin_mut!(sink);
        for i in 1..=100 {
            sink.send(Bytes::from(format!("{i}\n"))).await.unwrap();
        }
        // Dropped without finish: tokio-postgres sends CopyFail and Sync.
    }
    assert_eq!(count(&client, "t").await, 1, "table unchanged");
    assert_eq!(
        client
            .query_one("SELECT 'usable'::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "usable"
    );
    // A later copy on the same session works.
    assert_eq!(copy_in(&client, "COPY t FROM STDIN", &[b"5\n6\n"]).await, 2);
    assert_eq!(count(&client, "t").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_fail_message_gets_the_server_error() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE t (id int); INSERT INTO t VALUES (0)");
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::query("COPY t FROM STDIN")).await;
    let g = raw.recv().await.unwrap();
    assert_eq!(g.tag(), 'G');
    raw.send(&fe::concat(&[
        fe::copy_data(b"1\n2\n"),
        fe::copy_fail("client gave up"),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    let m = expect_error(&msgs[0], "57014");
    assert!(m.contains("client gave up"), "{m}");
    assert_eq!(status(&msgs[1]), 'I');
    assert_eq!(scalar(&mut raw, "SELECT count(*) FROM t").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_copy_data_fails_and_the_session_goes_on() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let sink = client
        .copy_in::<_, Bytes>("COPY t FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    let mut err = None;
    for chunk in ["1\n2\n", "three\n", "4\n"] {
        if let Err(e) = sink.send(Bytes::from(chunk)).await {
            err = Some(e);
            break;
        }
    }
    let err = match err {
        Some(e) => e,
        None => sink.as_mut().finish().await.unwrap_err(),
    };
    assert_eq!(sqlstate(&err).as_deref(), Some("22P02"), "{err}");
    assert_eq!(count(&client, "t").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_inside_a_transaction_rolls_back() {
    let proxy = Proxy::start().await;
    let mut client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    {
        let sink = tx.copy_in::<_, Bytes>("COPY t FROM STDIN").await.unwrap();
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from_static(b"1\n2\n3\n")).await.unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap(), 3);
    }
    let inside: i64 = tx
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(inside, 3);
    tx.rollback().await.unwrap();
    assert_eq!(count(&client, "t").await, 0);
    assert_eq!(proxy.upstream_sql("SELECT count(*) FROM t").trim(), "0");

    // And committed, it stays.
    let tx = client.transaction().await.unwrap();
    {
        let sink = tx.copy_in::<_, Bytes>("COPY t FROM STDIN").await.unwrap();
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from_static(b"4\n")).await.unwrap();
        sink.as_mut().finish().await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(count(&client, "t").await, 1);
}

// ---------------------------------------------------------------------------
// Volume
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_in_and_out() {
    const ROWS: usize = 50_000;
    const WIDTH: usize = 1000;
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE big (id int, payload text)")
        .await
        .unwrap();
    let started = Instant::now();
    let sink = client
        .copy_in::<_, Bytes>("COPY big FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    let mut sent = 0usize;
    let mut chunk = Vec::with_capacity(300 << 10);
    for i in 0..ROWS {
        let fill = (b'a' + (i % 26) as u8) as char;
        let line = format!("{i}\t{}\n", fill.to_string().repeat(WIDTH));
        chunk.extend_from_slice(line.as_bytes());
        if chunk.len() >= 256 << 10 || i == ROWS - 1 {
            sent += chunk.len();
            sink.send(Bytes::from(std::mem::take(&mut chunk)))
                .await
                .unwrap();
        }
    }
    assert!(sent > 50_000_000, "{sent} bytes");
    assert_eq!(sink.as_mut().finish().await.unwrap(), ROWS as u64);
    let r = client
        .query_one(
            "SELECT count(*), sum(length(payload))::int8, count(DISTINCT id) FROM big",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), ROWS as i64);
    assert_eq!(r.get::<_, i64>(1), (ROWS * WIDTH) as i64);
    assert_eq!(r.get::<_, i64>(2), ROWS as i64);

    // And back out, counted as it streams.
    let stream = client.copy_out("COPY big TO STDOUT").await.unwrap();
    futures_util::pin_mut!(stream);
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        bytes += c.len();
        lines += c.iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(lines, ROWS);
    assert_eq!(bytes, sent);
    eprintln!("50 MB in and out in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// Raw protocol sequences
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_out_raw_messages() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    let msgs = simple(
        &mut raw,
        "COPY (SELECT g, 'v' || g FROM generate_series(1, 3) g) TO STDOUT",
    )
    .await;
    assert_tags(&msgs, "HdddcCZ");
    assert_eq!(msgs[1].body, b"1\tv1\n");
    assert_eq!(msgs[3].body, b"3\tv3\n");
    assert_eq!(command_tag(&msgs[5]), "COPY 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_copy_in_step_by_step() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE t (a int, b text)");
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "COPY t FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(raw.recv().await.unwrap());
    }
    assert_tags(&got, "12G");
    // The server ignores that Sync while it is in copy-in mode.
    expect_quiet(&mut raw, "Sync during copy-in").await;
    // Sync and Flush inside the copy data are ignored too.
    raw.send(&fe::concat(&[
        fe::copy_data(b"1\tone\n"),
        fe::sync(),
        fe::flush(),
        fe::copy_data(b"2\ttwo\n"),
    ]))
    .await;
    expect_quiet(&mut raw, "Sync inside copy data").await;
    raw.send(&fe::concat(&[fe::copy_done(), fe::sync()])).await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "CZ");
    assert_eq!(command_tag(&msgs[0]), "COPY 2");
    assert_eq!(status(&msgs[1]), 'I');
    expect_quiet(&mut raw, "exactly one ReadyForQuery").await;
    // Normal service afterwards, both protocols.
    assert_eq!(
        scalar(&mut raw, "SELECT string_agg(b, ',' ORDER BY a) FROM t").await,
        "one,two"
    );
    raw.send(&fe::concat(&[
        fe::parse("", "SELECT count(*) FROM t", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12DCZ");
    assert_eq!(first_column(&msgs), vec!["2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_copy_in_one_write() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE t (a int, b text)");
    let mut raw = login(&proxy, ALICE).await;
    // Everything at once, before the server has said anything: the proxy
    // sees three Syncs (one inside the copy data) and must expect only two
    // ReadyForQuery (the COPY's and the SELECT's).
    raw.send(&fe::concat(&[
        fe::parse("", "COPY t FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
        fe::copy_data(b"1\tone\n"),
        fe::sync(),
        fe::copy_data(b"2\ttwo\n3\tthree\n"),
        fe::copy_done(),
        fe::sync(),
        fe::parse("", "SELECT count(*) FROM t", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12GCZ");
    assert_eq!(command_tag(&msgs[3]), "COPY 3");
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12DCZ");
    assert_eq!(first_column(&msgs), vec!["3"]);
    expect_quiet(&mut raw, "no further ReadyForQuery").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_copy_fail_and_errors() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE t (a int, b text)");
    let mut raw = login(&proxy, ALICE).await;

    // CopyFail after Flush: error, then the server waits for Sync.
    raw.send(&fe::concat(&[
        fe::parse("", "COPY t FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::flush(),
    ]))
    .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(raw.recv().await.unwrap());
    }
    assert_tags(&got, "12G");
    raw.send(&fe::concat(&[
        fe::copy_data(b"1\tx\n"),
        fe::copy_fail("stop"),
    ]))
    .await;
    let e = raw.recv().await.unwrap();
    expect_error(&e, "57014");
    expect_quiet(&mut raw, "no ReadyForQuery before Sync").await;
    raw.send(&fe::sync()).await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "Z");
    assert_eq!(status(&msgs[0]), 'I');

    // Bad data mid-copy: the server discards the rest up to Sync.
    raw.send(&fe::concat(&[
        fe::parse("", "COPY t FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
        fe::copy_data(b"zz\tx\n"),
        fe::copy_data(b"2\ty\n"),
        fe::copy_done(),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12GEZ");
    expect_error(&msgs[3], "22P02");
    expect_quiet(&mut raw, "one ReadyForQuery for the bad copy").await;

    // The COPY fails before copy mode (no such table): the server answers
    // the first Sync, drops the copy data, and answers the second Sync.
    raw.send(&fe::concat(&[
        fe::parse("", "COPY missing FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
        fe::copy_data(b"1\tx\n"),
        fe::copy_done(),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12EZ");
    expect_error(&msgs[2], "42P01");
    assert_tags(&raw.until_ready().await, "Z");
    expect_quiet(&mut raw, "two ReadyForQuery, no more").await;

    assert_eq!(scalar(&mut raw, "SELECT count(*) FROM t").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_copy_that_fails_before_copy_mode_drops_the_data() {
    // Copy mode follows the server's CopyInResponse, not the client's SQL
    // text: the data the client sent anyway is dropped by the server.
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::query("COPY missing FROM STDIN"),
        fe::copy_data(b"1\n"),
        fe::copy_done(),
        fe::query("SELECT 'COPY t FROM STDIN'"),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "42P01");
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "TDCZ");
    assert_eq!(first_column(&msgs), vec!["COPY t FROM STDIN"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_in_one_query() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE a (x int); CREATE TABLE b (y text)");
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::query("COPY a FROM STDIN; COPY b FROM STDIN; SELECT (SELECT sum(x) FROM a), (SELECT string_agg(y, '') FROM b)"),
        fe::copy_data(b"1\n2\n"),
        fe::copy_done(),
        fe::copy_data(b"p\nq\n"),
        fe::copy_done(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "GCGCTDCZ");
    assert_eq!(command_tag(&msgs[1]), "COPY 2");
    assert_eq!(command_tag(&msgs[3]), "COPY 2");
    assert_eq!(
        data_row(&msgs[5]),
        vec![Some("3".to_owned()), Some("pq".to_owned())]
    );
    expect_quiet(&mut raw, "one ReadyForQuery").await;
}

// ---------------------------------------------------------------------------
// The proxy's request ledger after COPY, observed through idle_timeout: the
// session must time out when (and only when) it is really idle.
// ---------------------------------------------------------------------------

async fn idle_proxy() -> Proxy {
    let proxy = Proxy::with(Setup {
        server: "idle_timeout = \"1s\"".into(),
        ..Default::default()
    })
    .await;
    proxy.upstream_sql("CREATE TABLE t (a int, b text)");
    proxy
}

/// Messages up to the next ReadyForQuery, or to the end of the connection.
async fn until_ready_or_closed(raw: &mut Raw) -> Vec<Msg> {
    let mut out = Vec::new();
    while let Some(m) = raw.recv().await {
        let done = m.tag == b'Z';
        out.push(m);
        if done {
            break;
        }
    }
    out
}

/// Runs a query that takes longer than the idle timeout with the extended
/// protocol; it must complete, not be cut off as idle.
async fn long_extended_query(raw: &mut Raw) {
    raw.send(&fe::concat(&[
        fe::parse("", "SELECT pg_sleep(2.5)", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = until_ready_or_closed(raw).await;
    assert_eq!(
        tags(&msgs),
        "12DCZ",
        "a query running longer than idle_timeout was cut off: {}",
        show(&msgs)
    );
}

/// The session, now idle, is closed by the idle timeout.
async fn expect_idle_timeout(raw: &mut Raw) {
    let msgs = tokio::time::timeout(Duration::from_secs(8), raw.until_closed())
        .await
        .unwrap_or_else(|_| panic!("no idle timeout within 8s"));
    expect_single_fatal(&msgs, "57P05");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_is_tracked_correctly_after_extended_copy() {
    let proxy = idle_proxy().await;
    // Step by step.
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "COPY t FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    for want in ['1', '2', 'G'] {
        assert_eq!(raw.recv().await.unwrap().tag(), want);
    }
    raw.send(&fe::concat(&[
        fe::copy_data(b"1\tx\n"),
        fe::copy_done(),
        fe::sync(),
    ]))
    .await;
    assert_tags(&raw.until_ready().await, "CZ");
    long_extended_query(&mut raw).await;
    expect_idle_timeout(&mut raw).await;

    // All in one write.
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "COPY t FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
        fe::copy_data(b"2\ty\n"),
        fe::copy_done(),
        fe::sync(),
    ]))
    .await;
    assert_tags(&raw.until_ready().await, "12GCZ");
    long_extended_query(&mut raw).await;
    expect_idle_timeout(&mut raw).await;

    // Through tokio-postgres, which sends Bind/Execute/Sync, then the data,
    // CopyDone and Sync.
    let client = proxy.client().await;
    assert_eq!(copy_in(&client, "COPY t FROM STDIN", &[b"3\tz\n"]).await, 1);
    client.batch_execute("SELECT pg_sleep(2.5)").await.unwrap();
    let r = client.query_one("SELECT pg_sleep(2.5)", &[]).await;
    assert!(r.is_ok(), "long query after COPY: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_aborted_by_the_server_does_not_hide_later_queries() {
    // Simple-protocol COPY; the server rejects a row, answers ErrorResponse
    // and ReadyForQuery and leaves copy mode. The client need not (and psql
    // does not) send CopyDone then. Its next extended-protocol query, running
    // longer than idle_timeout, must not be cut off as "idle".
    let proxy = idle_proxy().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::query("COPY t FROM STDIN")).await;
    assert_eq!(raw.recv().await.unwrap().tag(), 'G');
    raw.send(&fe::copy_data(b"not a number\tx\n")).await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "22P02");
    raw.send(&fe::concat(&[
        fe::parse("", "SELECT pg_sleep(2.5)", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = until_ready_or_closed(&mut raw).await;
    assert_eq!(
        tags(&msgs),
        "12DCZ",
        "the running query was cut off: {} (the proxy still believes the \
         session is in copy-in mode and ignores its Sync, so it looks idle)",
        show(&msgs)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_copy_pipelined_without_a_sync_before_the_data() {
    // Parse/Bind/Execute(COPY), the data, CopyDone and only then Sync, all
    // in one write: valid protocol (the Sync ends the whole batch), and the
    // server answers with exactly one ReadyForQuery. After it the session
    // must be tracked as usual: a long query is not "idle".
    let proxy = idle_proxy().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "COPY t FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::copy_data(b"1\tx\n"),
        fe::copy_done(),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12GCZ");
    long_extended_query(&mut raw).await;
    expect_idle_timeout(&mut raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_extended_copies_in_one_batch() {
    let proxy = idle_proxy().await;
    proxy.upstream_sql("CREATE TABLE u (a int)");
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "COPY t FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::copy_data(b"1\tx\n"),
        fe::copy_done(),
        fe::parse("", "COPY u FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::copy_data(b"1\n2\n"),
        fe::copy_done(),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12GC12GCZ");
    assert_eq!(command_tag(&msgs[3]), "COPY 1");
    assert_eq!(command_tag(&msgs[7]), "COPY 2");
    long_extended_query(&mut raw).await;
    expect_idle_timeout(&mut raw).await;
}
