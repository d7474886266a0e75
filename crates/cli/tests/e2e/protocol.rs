//! Raw protocol bytes in, exact messages out: what a client sees through
//! Portcullis must be what PostgreSQL itself sends, message for message.

use std::time::{Duration, Instant};

use portcullis_wire::ProtocolVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;
use crate::raw::*;

/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(600);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A logged-in raw connection straight to the upstream database (superuser),
/// bypassing the proxy: the reference for what PostgreSQL sends.
pub(crate) async fn direct(proxy: &Proxy) -> Raw {
    let c = cluster();
    Raw::login(
        c.addr(),
        ProtocolVersion::V3_0,
        &[("user", c.superuser()), ("database", &proxy.db)],
        c.superuser_password(),
    )
    .await
    .unwrap_or_else(|e| panic!("direct login refused: {:?}", e.message()))
}

/// A readable rendering of messages for assertion failures.
pub(crate) fn show(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| match m.tag {
            b'E' | b'N' => format!(
                "{}[{} {} {}]",
                m.tag(),
                m.severity().unwrap_or_default(),
                m.code().unwrap_or_default(),
                m.message().unwrap_or_default()
            ),
            b'C' | b'Z' | b'S' => format!(
                "{}[{}]",
                m.tag(),
                String::from_utf8_lossy(&m.body).replace('\0', " ")
            ),
            _ => m.tag().to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn assert_tags(msgs: &[Msg], want: &str) {
    assert_eq!(tags(msgs), want, "message sequence: {}", show(msgs));
}

fn cstr(b: &[u8]) -> (String, &[u8]) {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .expect("NUL-terminated string");
    (String::from_utf8(b[..end].to_vec()).unwrap(), &b[end + 1..])
}

/// The tag of a CommandComplete.
pub(crate) fn command_tag(m: &Msg) -> String {
    assert_eq!(
        m.tag(),
        'C',
        "expected CommandComplete, got {}",
        show(std::slice::from_ref(m))
    );
    cstr(&m.body).0
}

/// The transaction status of a ReadyForQuery.
pub(crate) fn status(m: &Msg) -> char {
    assert_eq!(
        m.tag(),
        'Z',
        "expected ReadyForQuery, got {}",
        show(std::slice::from_ref(m))
    );
    assert_eq!(m.body.len(), 1);
    m.body[0] as char
}

pub(crate) fn data_row(m: &Msg) -> Vec<Option<String>> {
    assert_eq!(m.tag(), 'D');
    let b = &m.body;
    let n = i16::from_be_bytes([b[0], b[1]]) as usize;
    let mut at = 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            let len = len as usize;
            out.push(Some(String::from_utf8_lossy(&b[at..at + len]).into_owned()));
            at += len;
        }
    }
    out
}

/// The first column of every DataRow.
pub(crate) fn first_column(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| data_row(m)[0].clone().unwrap_or_else(|| "NULL".into()))
        .collect()
}

fn parameter_status(m: &Msg) -> (String, String) {
    assert_eq!(m.tag(), 'S');
    let (k, rest) = cstr(&m.body);
    let (v, _) = cstr(rest);
    (k, v)
}

/// Asserts an ErrorResponse with this SQLSTATE and returns its message.
pub(crate) fn expect_error(m: &Msg, code: &str) -> String {
    assert_eq!(
        m.tag(),
        'E',
        "expected ErrorResponse {code}, got {}",
        show(std::slice::from_ref(m))
    );
    assert_eq!(
        m.code().as_deref(),
        Some(code),
        "{}",
        show(std::slice::from_ref(m))
    );
    m.message().unwrap_or_default()
}

/// Asserts that nothing arrives for a while (and the connection stays open).
pub(crate) async fn expect_quiet(raw: &mut Raw, what: &str) {
    match tokio::time::timeout(QUIET, raw.recv()).await {
        Err(_) => {}
        Ok(Some(m)) => panic!("{what}: unexpected message {}", show(&[m])),
        Ok(None) => panic!("{what}: connection closed"),
    }
}

pub(crate) async fn simple(raw: &mut Raw, sql: &str) -> Vec<Msg> {
    raw.send(&fe::query(sql)).await;
    raw.until_ready().await
}

/// One value from a one-row query.
pub(crate) async fn scalar(raw: &mut Raw, sql: &str) -> String {
    let msgs = simple(raw, sql).await;
    assert_tags(&msgs, "TDCZ");
    data_row(&msgs[1])[0].clone().unwrap()
}

/// The proxy still accepts and serves new sessions.
pub(crate) async fn assert_proxy_alive(proxy: &Proxy) {
    let mut raw = login(proxy, ALICE).await;
    assert_eq!(scalar(&mut raw, "SELECT 41 + 1").await, "42");
    raw.send(&fe::terminate()).await;
}

/// Reads until the connection closes, failing if that takes too long.
pub(crate) async fn until_closed(raw: &mut Raw) -> Vec<Msg> {
    tokio::time::timeout(Duration::from_secs(10), raw.until_closed())
        .await
        .expect("the connection should be closed")
}

fn be32(v: i32) -> [u8; 4] {
    v.to_be_bytes()
}

/// The value of a FunctionCallResponse with a 4-byte binary result.
fn function_result_i32(m: &Msg) -> i32 {
    assert_eq!(
        m.tag(),
        'V',
        "expected FunctionCallResponse, got {}",
        show(std::slice::from_ref(m))
    );
    let len = i32::from_be_bytes(m.body[0..4].try_into().unwrap());
    assert_eq!(len, 4, "4-byte result");
    i32::from_be_bytes(m.body[4..8].try_into().unwrap())
}

const INV_WRITE: i32 = 0x20000;
const INV_READ: i32 = 0x40000;
const LO_CREAT: u32 = 957;
const LO_OPEN: u32 = 952;
const LOWRITE: u32 = 955;
const LO_UNLINK: u32 = 964;
const NOW: u32 = 1299;
const LO_IMPORT_SERVER: u32 = 764;

async fn send_cancel(proxy: &Proxy, pid: i32, key: &[u8]) {
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut b = vec![0, 0, 0, 8 + 4 + key.len() as u8, 0x04, 0xd2, 0x16, 0x2e];
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(key);
    s.write_all(&b).await.unwrap();
    // The proxy answers nothing and closes.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "a CancelRequest gets no reply, got {rest:?}"
    );
}

// ---------------------------------------------------------------------------
// Simple query protocol
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_statements_in_one_query_end_in_one_ready() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    let msgs = simple(
        &mut raw,
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2); SELECT 'one'; SELECT a FROM t ORDER BY a",
    )
    .await;
    assert_tags(&msgs, "CCTDCTDDCZ");
    assert_eq!(command_tag(&msgs[0]), "CREATE TABLE");
    assert_eq!(command_tag(&msgs[1]), "INSERT 0 2");
    assert_eq!(data_row(&msgs[3]), vec![Some("one".to_owned())]);
    assert_eq!(command_tag(&msgs[4]), "SELECT 1");
    assert_eq!(first_column(&msgs[5..]), vec!["1", "2"]);
    assert_eq!(command_tag(&msgs[8]), "SELECT 2");
    assert_eq!(status(&msgs[9]), 'I');
    expect_quiet(&mut raw, "after the one ReadyForQuery").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_in_a_multi_statement_query_stops_the_rest() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE t (a int)");
    let mut raw = login(&proxy, ALICE).await;
    let msgs = simple(
        &mut raw,
        "INSERT INTO t VALUES (1); SELECT 1/0; INSERT INTO t VALUES (2); SELECT 'never'",
    )
    .await;
    assert_tags(&msgs, "CEZ");
    assert_eq!(command_tag(&msgs[0]), "INSERT 0 1");
    expect_error(&msgs[1], "22012");
    assert_eq!(status(&msgs[2]), 'I');
    expect_quiet(&mut raw, "after the error's ReadyForQuery").await;
    // The statements ran in one implicit transaction: the first insert is
    // rolled back with it.
    assert_eq!(scalar(&mut raw, "SELECT count(*) FROM t").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_query_gets_empty_query_response() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    let msgs = simple(&mut raw, "").await;
    assert_tags(&msgs, "IZ");
    assert!(msgs[0].body.is_empty());
    assert_eq!(status(&msgs[1]), 'I');
    let msgs = simple(&mut raw, "  ;  ").await;
    assert_tags(&msgs, "IZ");
    assert_eq!(scalar(&mut raw, "SELECT 'still here'").await, "still here");
}

// ---------------------------------------------------------------------------
// Extended query protocol
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_without_sync_delivers_results_without_ready() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "SELECT g FROM generate_series(1, 3) g", &[]),
        fe::bind("", "", &[]),
        fe::describe(b'P', ""),
        fe::execute("", 0),
        fe::flush(),
    ]))
    .await;
    let mut got = Vec::new();
    for _ in 0..7 {
        got.push(raw.recv().await.expect("results after Flush"));
    }
    assert_tags(&got, "12TDDDC");
    assert_eq!(first_column(&got), vec!["1", "2", "3"]);
    assert_eq!(command_tag(&got[6]), "SELECT 3");
    expect_quiet(&mut raw, "no ReadyForQuery before Sync").await;
    raw.send(&fe::sync()).await;
    let z = raw.until_ready().await;
    assert_tags(&z, "Z");
    assert_eq!(status(&z[0]), 'I');
    // Flush alone, with nothing pending, produces nothing.
    raw.send(&fe::flush()).await;
    expect_quiet(&mut raw, "a bare Flush").await;
    assert_eq!(scalar(&mut raw, "SELECT 'after'").await, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batch_in_one_write_answers_in_order() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("double", "SELECT $1::int * 2", &[23]),
        fe::bind("", "double", &[Some(b"21")]),
        fe::describe(b'P', ""),
        fe::execute("", 0),
        fe::parse("", "SELECT 'x' || $1::text", &[]),
        fe::bind("", "", &[Some(b"y")]),
        fe::describe(b'P', ""),
        fe::execute("", 0),
        fe::sync(),
        fe::bind("", "double", &[Some(b"5")]),
        fe::execute("", 0),
        fe::sync(),
        fe::parse("", "SELECT $1::int + 1", &[]),
        fe::bind("", "", &[Some(b"99")]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let first = raw.until_ready().await;
    assert_tags(&first, "12TDC12TDCZ");
    assert_eq!(first_column(&first), vec!["42", "xy"]);
    let second = raw.until_ready().await;
    assert_tags(&second, "2DCZ");
    assert_eq!(first_column(&second), vec!["10"]);
    let third = raw.until_ready().await;
    assert_tags(&third, "12DCZ");
    assert_eq!(first_column(&third), vec!["100"]);
    expect_quiet(&mut raw, "after three Syncs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_split_across_many_writes_are_reassembled() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    let bytes = fe::concat(&[
        fe::query("SELECT 'simple'"),
        fe::parse("", "SELECT $1::text || '!'", &[]),
        fe::bind("", "", &[Some(b"split")]),
        fe::execute("", 0),
        fe::sync(),
    ]);
    // One byte per write, with pauses so the proxy reads them separately.
    for (i, b) in bytes.iter().enumerate() {
        raw.send(&[*b]).await;
        if i % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let a = raw.until_ready().await;
    assert_tags(&a, "TDCZ");
    assert_eq!(first_column(&a), vec!["simple"]);
    let b = raw.until_ready().await;
    assert_tags(&b, "12DCZ");
    assert_eq!(first_column(&b), vec!["split!"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pipelined_queries_do_not_deadlock() {
    // tokio-postgres writes requests while it reads results: thousands of
    // queries in flight, each with a few kilobytes of result, must all come
    // back, in order, without the proxy stalling one direction.
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    let stmt = client
        .prepare("SELECT $1::int, repeat('x', 4000)")
        .await
        .unwrap();
    let futs = (0..2000i32).map(|i| {
        let client = &client;
        let stmt = &stmt;
        async move { client.query_one(stmt, &[&i]).await }
    });
    let rows = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(futs),
    )
    .await
    .expect("pipeline finished");
    for (i, r) in rows.into_iter().enumerate() {
        let r = r.unwrap();
        assert_eq!(r.get::<_, i32>(0), i as i32);
        assert_eq!(r.get::<_, String>(1).len(), 4000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_and_portals_live_across_syncs() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;

    raw.send(&fe::concat(&[
        fe::parse("s1", "SELECT $1::int + 1", &[]),
        fe::sync(),
    ]))
    .await;
    assert_tags(&raw.until_ready().await, "1Z");

    // Used after the Sync that ended its Parse, twice.
    for (arg, want) in [(&b"1"[..], "2"), (&b"41"[..], "42")] {
        raw.send(&fe::concat(&[
            fe::bind("", "s1", &[Some(arg)]),
            fe::execute("", 0),
            fe::sync(),
        ]))
        .await;
        let msgs = raw.until_ready().await;
        assert_tags(&msgs, "2DCZ");
        assert_eq!(first_column(&msgs), vec![want]);
    }

    // Describe without a Parse in the same batch.
    raw.send(&fe::concat(&[fe::describe(b'S', "s1"), fe::sync()]))
        .await;
    assert_tags(&raw.until_ready().await, "tTZ");

    // The name is taken.
    raw.send(&fe::concat(&[
        fe::parse("s1", "SELECT 'other'", &[]),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "42P05");
    assert_eq!(status(&msgs[1]), 'I');

    // Close frees it; closing again is not an error.
    raw.send(&fe::concat(&[
        fe::close(b'S', "s1"),
        fe::close(b'S', "s1"),
        fe::sync(),
    ]))
    .await;
    assert_tags(&raw.until_ready().await, "33Z");
    raw.send(&fe::concat(&[fe::describe(b'S', "s1"), fe::sync()]))
        .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "26000");

    raw.send(&fe::concat(&[
        fe::parse("s1", "SELECT 'again ' || $1::text", &[]),
        fe::bind("", "s1", &[Some(b"s1")]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12DCZ");
    assert_eq!(first_column(&msgs), vec!["again s1"]);

    // A named portal inside a transaction survives Syncs until closed.
    assert_tags(&simple(&mut raw, "BEGIN").await, "CZ");
    raw.send(&fe::concat(&[
        fe::bind("p1", "s1", &[Some(b"portal")]),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "2Z");
    assert_eq!(status(&msgs[1]), 'T');
    raw.send(&fe::concat(&[
        fe::describe(b'P', "p1"),
        fe::execute("p1", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "TDCZ");
    assert_eq!(first_column(&msgs), vec!["again portal"]);
    raw.send(&fe::concat(&[fe::close(b'P', "p1"), fe::sync()]))
        .await;
    assert_tags(&raw.until_ready().await, "3Z");
    raw.send(&fe::concat(&[fe::execute("p1", 0), fe::sync()]))
        .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "34000");
    assert_eq!(status(&msgs[1]), 'E');
    let msgs = simple(&mut raw, "ROLLBACK").await;
    assert_eq!(command_tag(&msgs[0]), "ROLLBACK");
    assert_eq!(status(&msgs[1]), 'I');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_and_protocol_parse_share_one_namespace() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    assert_tags(
        &simple(&mut raw, "PREPARE p AS SELECT 'from sql'").await,
        "CZ",
    );
    raw.send(&fe::concat(&[
        fe::parse("p", "SELECT 'from parse'", &[]),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "42P05");
    // The SQL-level statement can be bound by the protocol...
    raw.send(&fe::concat(&[
        fe::bind("", "p", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "2DCZ");
    assert_eq!(first_column(&msgs), vec!["from sql"]);
    // ...and a protocol-level statement can be run with EXECUTE.
    raw.send(&fe::concat(&[
        fe::parse("q", "SELECT 'from parse'", &[]),
        fe::sync(),
    ]))
    .await;
    assert_tags(&raw.until_ready().await, "1Z");
    assert_eq!(scalar(&mut raw, "EXECUTE q").await, "from parse");
    let msgs = simple(&mut raw, "PREPARE q AS SELECT 1").await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "42P05");
    // DEALLOCATE frees a name for Parse.
    assert_tags(&simple(&mut raw, "DEALLOCATE p").await, "CZ");
    raw.send(&fe::concat(&[
        fe::parse("p", "SELECT 'reparsed'", &[]),
        fe::sync(),
    ]))
    .await;
    assert_tags(&raw.until_ready().await, "1Z");
    assert_eq!(scalar(&mut raw, "EXECUTE p").await, "reparsed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_as_a_prepared_statement_commits() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE t (a int)");
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("begin", "BEGIN", &[]),
        fe::parse("ins", "INSERT INTO t VALUES ($1::int)", &[]),
        fe::parse("commit", "COMMIT", &[]),
        fe::sync(),
    ]))
    .await;
    assert_tags(&raw.until_ready().await, "111Z");
    raw.send(&fe::concat(&[
        fe::bind("", "begin", &[]),
        fe::execute("", 0),
        fe::bind("", "ins", &[Some(b"7")]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "2C2CZ");
    assert_eq!(status(&msgs[4]), 'T');
    raw.send(&fe::concat(&[
        fe::bind("", "commit", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "2CZ");
    assert_eq!(command_tag(&msgs[1]), "COMMIT");
    assert_eq!(status(&msgs[2]), 'I');
    assert_eq!(proxy.upstream_sql("SELECT a FROM t").trim(), "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_with_a_row_limit_suspends_the_portal() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    // Outside a transaction block the unnamed portal dies at Sync.
    raw.send(&fe::concat(&[
        fe::parse("", "SELECT g FROM generate_series(1, 5) g", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 2),
        fe::sync(),
        fe::execute("", 2),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12DDsZ");
    assert_eq!(first_column(&msgs), vec!["1", "2"]);
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "34000");

    // Inside one, it can be resumed across Syncs.
    let msgs = simple(&mut raw, "BEGIN").await;
    assert_eq!(status(&msgs[1]), 'T');
    raw.send(&fe::concat(&[
        fe::parse("", "SELECT g FROM generate_series(1, 5) g", &[]),
        fe::bind("", "", &[]),
        fe::describe(b'P', ""),
        fe::execute("", 2),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12TDDsZ");
    assert_eq!(first_column(&msgs), vec!["1", "2"]);
    assert_eq!(status(&msgs[6]), 'T');
    raw.send(&fe::concat(&[fe::execute("", 2), fe::sync()]))
        .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "DDsZ");
    assert_eq!(first_column(&msgs), vec!["3", "4"]);
    raw.send(&fe::concat(&[fe::execute("", 2), fe::sync()]))
        .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "DCZ");
    assert_eq!(first_column(&msgs), vec!["5"]);
    assert_eq!(command_tag(&msgs[1]), "SELECT 1");

    // Several limited Executes in one batch, and one past the end.
    raw.send(&fe::concat(&[
        fe::bind("", "", &[]),
        fe::execute("", 2),
        fe::execute("", 2),
        fe::execute("", 2),
        fe::execute("", 2),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "2DDsDDsDCCZ");
    assert_eq!(first_column(&msgs), vec!["1", "2", "3", "4", "5"]);
    assert_eq!(command_tag(&msgs[8]), "SELECT 1");
    assert_eq!(command_tag(&msgs[9]), "SELECT 0");
    assert_tags(&simple(&mut raw, "COMMIT").await, "CZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_statement_returns_parameter_description() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse(
            "d",
            "SELECT $1::int + $2::int8 AS sum, $3::text AS label",
            &[],
        ),
        fe::describe(b'S', "d"),
        fe::parse("n", "SET search_path = public", &[]),
        fe::describe(b'S', "n"),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "1tT1tnZ");
    let t = &msgs[1].body;
    assert_eq!(i16::from_be_bytes([t[0], t[1]]), 3);
    let oids: Vec<u32> = t[2..]
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(oids, vec![23, 20, 25], "int4, int8, text");
    let rd = &msgs[2].body;
    assert_eq!(i16::from_be_bytes([rd[0], rd[1]]), 2);
    let (first, _) = cstr(&rd[2..]);
    assert_eq!(first, "sum");
    assert_eq!(&msgs[4].body[..], &[0, 0], "no parameters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_in_an_extended_batch_discards_until_sync() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "SELECT 1", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::parse("", "SELECT * FROM missing_table", &[]),
        fe::bind("", "", &[]),
        fe::describe(b'P', ""),
        fe::execute("", 0),
        fe::parse("later", "SELECT 2", &[]),
        fe::flush(),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12DCEZ");
    expect_error(&msgs[4], "42P01");
    assert_eq!(status(&msgs[5]), 'I');
    expect_quiet(&mut raw, "exactly one ReadyForQuery").await;
    // The Parse after the error was skipped too.
    raw.send(&fe::concat(&[fe::describe(b'S', "later"), fe::sync()]))
        .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "26000");
    // Usable afterwards, both ways.
    assert_eq!(scalar(&mut raw, "SELECT 'ok'").await, "ok");
    raw.send(&fe::concat(&[
        fe::parse("", "SELECT 3", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    assert_tags(&raw.until_ready().await, "12DCZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_in_an_extended_batch_inside_a_transaction_aborts_it() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    assert_tags(&simple(&mut raw, "BEGIN").await, "CZ");
    raw.send(&fe::concat(&[
        fe::parse("", "SELECT 1 / g FROM generate_series(0, 0) g", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12EZ");
    expect_error(&msgs[2], "22012");
    assert_eq!(status(&msgs[3]), 'E');
    let msgs = simple(&mut raw, "SELECT 1").await;
    expect_error(&msgs[0], "25P02");
    let msgs = simple(&mut raw, "COMMIT").await;
    assert_eq!(command_tag(&msgs[0]), "ROLLBACK");
    assert_eq!(status(&msgs[1]), 'I');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_with_two_statements_gets_the_server_error() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "SELECT 1; SELECT 2", &[]),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "42601");
    assert_eq!(scalar(&mut raw, "SELECT 'fine'").await, "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notice_in_the_extended_protocol_arrives_in_place() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "DO $$BEGIN RAISE NOTICE 'careful %', 1; END$$", &[]),
        fe::bind("", "", &[]),
        fe::describe(b'P', ""),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "12nNCZ");
    assert_eq!(msgs[3].severity().as_deref(), Some("NOTICE"));
    assert_eq!(msgs[3].message().as_deref(), Some("careful 1"));
    assert_eq!(command_tag(&msgs[4]), "DO");
}

// ---------------------------------------------------------------------------
// COPY in the simple protocol (more in copy.rs)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_copy_data_in_one_write() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE t (a int, b text)");
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::query("COPY t FROM STDIN"),
        fe::copy_data(b"1\tone\n2\ttwo\n"),
        fe::copy_data(b"3\tthree\n"),
        fe::copy_done(),
        fe::query("SELECT count(*), string_agg(b, ',' ORDER BY a) FROM t"),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "GCZ");
    assert_eq!(command_tag(&msgs[1]), "COPY 3");
    assert_eq!(status(&msgs[2]), 'I');
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "TDCZ");
    assert_eq!(
        data_row(&msgs[1]),
        vec![Some("3".to_owned()), Some("one,two,three".to_owned())]
    );
}

/// PostgreSQL answers a Query sent in copy-in mode with ERROR 08P01, then
/// FATAL 08P01 (protocol synchronization lost), and closes.
async fn query_during_copy_in(mut raw: Raw) -> Vec<Msg> {
    raw.send(&fe::query("COPY t FROM STDIN")).await;
    let g = raw.recv().await.expect("CopyInResponse");
    assert_eq!(g.tag(), 'G');
    raw.send(&fe::concat(&[
        fe::copy_data(b"1\tx\n"),
        fe::query("SELECT 1"),
    ]))
    .await;
    let msgs = until_closed(&mut raw).await;
    assert!(msgs.len() >= 2, "got {}", show(&msgs));
    assert_eq!(
        msgs[0].severity().as_deref(),
        Some("ERROR"),
        "{}",
        show(&msgs)
    );
    let m = expect_error(&msgs[0], "08P01");
    assert!(
        m.contains("unexpected message type 0x51 during COPY"),
        "{m}"
    );
    assert_eq!(
        msgs[1].severity().as_deref(),
        Some("FATAL"),
        "{}",
        show(&msgs)
    );
    expect_error(&msgs[1], "08P01");
    msgs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_during_copy_in_gets_the_server_protocol_violation() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE t (a int, b text)");
    // Directly, for reference: ERROR, FATAL, close.
    let reference = query_during_copy_in(direct(&proxy).await).await;
    assert_tags(&reference, "EE");
    // Through the proxy the server's messages reach the client.
    query_during_copy_in(login(&proxy, ALICE).await).await;
    assert_eq!(proxy.upstream_sql("SELECT count(*) FROM t").trim(), "0");
    assert_proxy_alive(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_fatal_is_the_last_message_the_client_gets() {
    // After the server's own FATAL the session is over; PostgreSQL sends
    // nothing more. The proxy must not add a second FATAL of its own
    // ("the connection to the database was lost", 08006) for a connection
    // the server closed on purpose.
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE t (a int, b text)");
    let msgs = query_during_copy_in(login(&proxy, ALICE).await).await;
    assert_tags(&msgs, "EE");
}

// ---------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------

/// Sends `bytes` on a fresh session and returns everything until close.
async fn send_and_expect_close(proxy: &Proxy, bytes: &[u8]) -> Vec<Msg> {
    let mut raw = login(proxy, ALICE).await;
    raw.send(bytes).await;
    until_closed(&mut raw).await
}

pub(crate) fn expect_single_fatal(msgs: &[Msg], code: &str) -> String {
    assert_tags(msgs, "E");
    assert_eq!(
        msgs[0].severity().as_deref(),
        Some("FATAL"),
        "{}",
        show(msgs)
    );
    expect_error(&msgs[0], code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_word_below_four_is_fatal() {
    let proxy = Proxy::start().await;
    for bad in [
        &b"Q\0\0\0\x02"[..],
        &b"S\0\0\0\x00"[..],
        &b"P\xff\xff\xff\xff"[..],
    ] {
        let msgs = send_and_expect_close(&proxy, bad).await;
        let m = expect_single_fatal(&msgs, "08P01");
        assert!(m.contains("length"), "{m}");
        assert_proxy_alive(&proxy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_type_is_fatal() {
    let proxy = Proxy::start().await;
    for bad in [
        &b"@\0\0\0\x04"[..],
        &b"\0\0\0\0\x04"[..],
        &b"Z\0\0\0\x05I"[..],
    ] {
        let msgs = send_and_expect_close(&proxy, bad).await;
        let m = expect_single_fatal(&msgs, "08P01");
        assert!(m.contains("message type"), "{m}");
        assert_proxy_alive(&proxy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_larger_than_max_statement_bytes_is_fatal() {
    let proxy = Proxy::with(Setup {
        server: "max_statement_bytes = 2048".into(),
        ..Default::default()
    })
    .await;
    // Below the limit: fine.
    let mut raw = login(&proxy, ALICE).await;
    let ok = format!("SELECT length('{}')", "a".repeat(1500));
    assert_eq!(scalar(&mut raw, &ok).await, "1500");

    let big = format!("SELECT length('{}')", "a".repeat(4000));
    let msgs = send_and_expect_close(&proxy, &fe::query(&big)).await;
    let m = expect_single_fatal(&msgs, "08P01");
    assert!(m.contains("2048"), "mentions the limit: {m}");
    assert_proxy_alive(&proxy).await;

    // Parse carries SQL text too.
    let msgs =
        send_and_expect_close(&proxy, &fe::concat(&[fe::parse("", &big, &[]), fe::sync()])).await;
    let m = expect_single_fatal(&msgs, "08P01");
    assert!(m.contains("2048"), "mentions the limit: {m}");
    assert_proxy_alive(&proxy).await;

    // Refused from the header alone: the client need not send the body.
    let mut raw = login(&proxy, ALICE).await;
    raw.send(b"Q\x00\x10\x00\x00SELECT").await;
    let msgs = until_closed(&mut raw).await;
    expect_single_fatal(&msgs, "08P01");
    assert_proxy_alive(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_message_after_login_is_fatal() {
    let proxy = Proxy::start().await;
    let msgs = send_and_expect_close(&proxy, b"p\0\0\0\x0ahello\0").await;
    expect_single_fatal(&msgs, "08P01");
    assert_proxy_alive(&proxy).await;
    // PostgreSQL itself: FATAL 08P01 too.
    let mut d = direct(&proxy).await;
    d.send(b"p\0\0\0\x0ahello\0").await;
    expect_single_fatal(&until_closed(&mut d).await, "08P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_inside_a_query_gets_the_server_error() {
    let proxy = Proxy::start().await;
    // "SELECT\01\0": the string ends early and a byte is left over.
    let bad = b"Q\0\0\0\x0eSELECT\x001\0\0".to_vec();
    let mut d = direct(&proxy).await;
    d.send(&bad).await;
    let reference = d.until_ready().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&bad).await;
    let msgs = raw.until_ready().await;
    assert_eq!(
        tags(&msgs),
        tags(&reference),
        "proxy {} / direct {}",
        show(&msgs),
        show(&reference)
    );
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "08P01");
    assert_eq!(msgs[0].severity().as_deref(), Some("ERROR"));
    assert_eq!(msgs[0].message(), reference[0].message());
    // The session goes on, as it does on PostgreSQL.
    assert_eq!(scalar(&mut raw, "SELECT 'alive'").await, "alive");
    assert_proxy_alive(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_a_malformed_one_are_answered_first() {
    // PostgreSQL handles messages in order: everything the client sent
    // before the bad message is executed and answered, then comes the
    // FATAL. A client must learn whether its INSERT ran.
    let proxy = Proxy::with(Setup {
        server: "max_statement_bytes = 2048".into(),
        ..Default::default()
    })
    .await;
    proxy.upstream_sql("CREATE TABLE t (a int)");
    let huge = fe::query(format!("SELECT '{}'", "x".repeat(4000)));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown type", b"@\0\0\0\x04".to_vec()),
        ("length below four", b"Q\0\0\0\x02".to_vec()),
        ("password", b"p\0\0\0\x0ahello\0".to_vec()),
        ("over max_statement_bytes", huge),
    ];
    let mut failures = Vec::new();
    for (i, (name, bad)) in cases.into_iter().enumerate() {
        let insert = fe::query(format!("INSERT INTO t VALUES ({i})"));
        let mut raw = login(&proxy, ALICE).await;
        raw.send(&fe::concat(&[insert, bad])).await;
        let msgs = until_closed(&mut raw).await;
        let inserted = proxy.upstream_sql(&format!("SELECT count(*) FROM t WHERE a = {i}"));
        let got = format!("{} (row inserted: {})", show(&msgs), inserted.trim());
        if tags(&msgs) != "CZE"
            || msgs[2].code().as_deref() != Some("08P01")
            || inserted.trim() != "1"
        {
            failures.push(format!("{name}: {got}"));
        }
        assert_proxy_alive(&proxy).await;
    }
    // For reference, PostgreSQL itself (no statement size limit of its own
    // at this size, so without the last case).
    let mut d = direct(&proxy).await;
    d.send(&fe::concat(&[
        fe::query("INSERT INTO t VALUES (100)"),
        b"@\0\0\0\x04".to_vec(),
    ]))
    .await;
    let reference = until_closed(&mut d).await;
    assert_tags(&reference, "CZE");
    assert!(
        failures.is_empty(),
        "expected CommandComplete, ReadyForQuery, then FATAL 08P01, as PostgreSQL sends ({}); got:\n{}",
        show(&reference),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// FunctionCall
// ---------------------------------------------------------------------------

async fn call(raw: &mut Raw, oid: u32, args: &[&[u8]]) -> Vec<Msg> {
    raw.send(&fe::function_call(oid, args)).await;
    raw.until_ready().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_to_large_object_functions_passes() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    let msgs = call(&mut raw, LO_CREAT, &[&be32(INV_READ | INV_WRITE)]).await;
    assert_tags(&msgs, "VZ");
    let oid = function_result_i32(&msgs[0]) as u32;
    assert!(oid > 0);
    assert_eq!(status(&msgs[1]), 'I');
    let exists = format!("SELECT count(*) FROM pg_largeobject_metadata WHERE oid = {oid}");
    assert_eq!(scalar(&mut raw, &exists).await, "1");
    let msgs = call(&mut raw, LO_UNLINK, &[&oid.to_be_bytes()]).await;
    assert_tags(&msgs, "VZ");
    assert_eq!(function_result_i32(&msgs[0]), 1);
    assert_eq!(scalar(&mut raw, &exists).await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_with_a_large_argument_streams_through() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    assert_tags(&simple(&mut raw, "BEGIN").await, "CZ");
    let msgs = call(&mut raw, LO_CREAT, &[&be32(INV_READ | INV_WRITE)]).await;
    let oid = function_result_i32(&msgs[0]) as u32;
    let msgs = call(&mut raw, LO_OPEN, &[&oid.to_be_bytes(), &be32(INV_WRITE)]).await;
    assert_tags(&msgs, "VZ");
    let fd = function_result_i32(&msgs[0]);
    const N: usize = 300_000;
    let data = vec![0xabu8; N];
    let msgs = call(&mut raw, LOWRITE, &[&be32(fd)[..], &data[..]]).await;
    assert_tags(&msgs, "VZ");
    assert_eq!(function_result_i32(&msgs[0]), N as i32);
    assert_eq!(status(&msgs[1]), 'T');
    assert_tags(&simple(&mut raw, "COMMIT").await, "CZ");
    let check = format!("SELECT lo_get({oid}) = decode(repeat('ab', {N}), 'hex')");
    assert_eq!(scalar(&mut raw, &check).await, "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_to_other_functions_is_refused() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    let read_file: u32 = scalar(&mut raw, "SELECT 'pg_read_file(text)'::regprocedure::oid")
        .await
        .parse()
        .unwrap();
    let cases: Vec<(u32, Vec<&[u8]>)> = vec![
        (NOW, vec![]),
        (read_file, vec![&b"postgresql.conf"[..]]),
        (LO_IMPORT_SERVER, vec![&b"/etc/passwd"[..]]),
    ];
    for (oid, args) in cases {
        let msgs = call(&mut raw, oid, &args).await;
        assert_tags(&msgs, "EZ");
        let m = expect_error(&msgs[0], "42501");
        assert!(m.contains("Portcullis"), "oid {oid}: {m}");
        assert_eq!(status(&msgs[1]), 'I');
    }
    // Directly, the superuser could have read the file: the refusal is the proxy's.
    let mut d = direct(&proxy).await;
    d.send(&fe::function_call(read_file, &[b"postgresql.conf"]))
        .await;
    assert_tags(&d.until_ready().await, "VZ");
    assert_eq!(scalar(&mut raw, "SELECT 'usable'").await, "usable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_function_call_aborts_the_transaction() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE t (a int)");
    let mut raw = login(&proxy, ALICE).await;
    assert_tags(
        &simple(&mut raw, "BEGIN; INSERT INTO t VALUES (1)").await,
        "CCZ",
    );
    let msgs = call(&mut raw, NOW, &[]).await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "42501");
    assert_eq!(status(&msgs[1]), 'E', "transaction aborted");
    let msgs = simple(&mut raw, "COMMIT").await;
    assert_tags(&msgs, "CZ");
    assert_eq!(command_tag(&msgs[0]), "ROLLBACK");
    assert_eq!(status(&msgs[1]), 'I');
    assert_eq!(scalar(&mut raw, "SELECT count(*) FROM t").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_function_call_with_a_large_argument_is_dropped_whole() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    // Bigger than the proxy's streaming threshold, and followed in the same
    // write by a query that must still be seen as a message of its own.
    let big = vec![b'Q'; 400_000];
    raw.send(&fe::concat(&[
        fe::function_call(NOW, &[&big[..]]),
        fe::query("SELECT 'next'"),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "42501");
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "TDCZ");
    assert_eq!(first_column(&msgs), vec!["next"]);
}

// ---------------------------------------------------------------------------
// Session state reported by the server
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_reports_parameter_status() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    let msgs = simple(&mut raw, "SET IntervalStyle = 'iso_8601'").await;
    assert_tags(&msgs, "CSZ");
    assert_eq!(
        parameter_status(&msgs[1]),
        ("IntervalStyle".into(), "iso_8601".into())
    );

    // Several in one Query, and in one pipeline: same as PostgreSQL.
    let sql = "SET IntervalStyle = 'postgres_verbose'; SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'SQL, DMY'";
    let pipeline = fe::concat(&[
        fe::parse("", "SET IntervalStyle = 'sql_standard'", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
        fe::parse("", "SET IntervalStyle = 'iso_8601'", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::parse("", "SET TimeZone = 'Europe/Paris'", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]);
    let mut d = direct(&proxy).await;
    for raw in [&mut d, &mut raw] {
        raw.send(&fe::query(sql)).await;
        let msgs = raw.until_ready().await;
        assert_tags(&msgs, "CCCSSSZ");
        let mut params: Vec<_> = msgs[3..6].iter().map(parameter_status).collect();
        params.sort();
        assert_eq!(
            params,
            vec![
                ("DateStyle".into(), "SQL, DMY".into()),
                ("IntervalStyle".into(), "postgres_verbose".into()),
                ("TimeZone".into(), "Asia/Tokyo".into()),
            ]
        );
        raw.send(&pipeline).await;
        let a = raw.until_ready().await;
        assert_tags(&a, "12CSZ");
        assert_eq!(parameter_status(&a[3]).1, "sql_standard");
        let b = raw.until_ready().await;
        assert_tags(&b, "12C12CSSZ");
    }
    assert_eq!(scalar(&mut raw, "SHOW IntervalStyle").await, "iso_8601");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_key_data_carries_the_real_backend_pid() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    let k: Vec<&Msg> = raw.startup.iter().filter(|m| m.tag == b'K').collect();
    assert_eq!(k.len(), 1, "one BackendKeyData: {}", show(&raw.startup));
    assert_eq!(raw.key.len(), 4, "protocol 3.0 keys are 4 bytes");
    let pid: i32 = scalar(&mut raw, "SELECT pg_backend_pid()")
        .await
        .parse()
        .unwrap();
    assert_eq!(raw.pid, pid);
    // Startup ends with ReadyForQuery and reports the usual parameters.
    assert_eq!(raw.startup.last().unwrap().tag(), 'Z');
    let params: Vec<String> = raw
        .startup
        .iter()
        .filter(|m| m.tag == b'S')
        .map(|m| parameter_status(m).0)
        .collect();
    for p in [
        "server_version",
        "client_encoding",
        "integer_datetimes",
        "standard_conforming_strings",
    ] {
        assert!(params.iter().any(|x| x == p), "{p} reported: {params:?}");
    }
    // Two sessions get different keys.
    let other = login(&proxy, ALICE).await;
    assert_ne!((other.pid, other.key.clone()), (raw.pid, raw.key.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_a_wrong_key_is_ignored() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::query("SELECT pg_sleep(3)")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wrong: Vec<u8> = raw.key.iter().map(|b| b ^ 0x5a).collect();
    send_cancel(&proxy, raw.pid, &wrong).await;
    send_cancel(&proxy, raw.pid, &[0, 0, 0, 0]).await;
    send_cancel(&proxy, raw.pid.wrapping_add(1), &raw.key.clone()).await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "TDCZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_the_right_key_cancels() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    let started = Instant::now();
    raw.send(&fe::query("SELECT pg_sleep(30)")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_cancel(&proxy, raw.pid, &raw.key.clone()).await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "TEZ");
    expect_error(&msgs[1], "57014");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        scalar(&mut raw, "SELECT 'after cancel'").await,
        "after cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_arrives_while_idle_with_the_backend_pid() {
    let proxy = Proxy::start().await;
    let mut raw = login(&proxy, ALICE).await;
    assert_tags(&simple(&mut raw, "LISTEN chan").await, "CZ");
    let other = proxy.client().await;
    other
        .batch_execute("NOTIFY chan, 'from other'")
        .await
        .unwrap();
    let a = raw.recv().await.expect("notification");
    assert_eq!(a.tag(), 'A', "{}", show(std::slice::from_ref(&a)));
    let pid = i32::from_be_bytes(a.body[0..4].try_into().unwrap());
    let (channel, rest) = cstr(&a.body[4..]);
    let (payload, _) = cstr(rest);
    assert_eq!((channel.as_str(), payload.as_str()), ("chan", "from other"));
    assert_ne!(pid, raw.pid, "sent by the other session");
    // Our own NOTIFY names our own PID, the one BackendKeyData gave.
    let msgs = simple(&mut raw, "NOTIFY chan, 'self'").await;
    assert_tags(&msgs, "CAZ");
    let pid = i32::from_be_bytes(msgs[1].body[0..4].try_into().unwrap());
    assert_eq!(pid, raw.pid);
}

// ---------------------------------------------------------------------------
// The proxy's request ledger (pending.rs), observed through idle_timeout
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_discarded_in_a_failed_batch_does_not_keep_the_session_busy() {
    // After an error in an extended batch the server discards everything up
    // to Sync, a Query included: it never answers that Query. The session is
    // idle after the Sync's ReadyForQuery, so idle_timeout must apply.
    let proxy = Proxy::with(Setup {
        server: "idle_timeout = \"1s\"".into(),
        ..Default::default()
    })
    .await;
    let mut raw = login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "SELEC oops", &[]),
        fe::query("SELECT 'discarded'"),
        fe::sync(),
    ]))
    .await;
    let msgs = raw.until_ready().await;
    assert_tags(&msgs, "EZ");
    expect_error(&msgs[0], "42601");
    let idle_since = Instant::now();
    let msgs = tokio::time::timeout(Duration::from_secs(8), raw.until_closed())
        .await
        .unwrap_or_else(|_| {
            panic!("no idle timeout after 8s: the proxy still counts the discarded Query as awaiting ReadyForQuery")
        });
    expect_single_fatal(&msgs, "57P05");
    assert!(idle_since.elapsed() >= Duration::from_millis(900));
}
