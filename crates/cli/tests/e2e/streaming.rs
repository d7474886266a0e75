use crate::harness::*;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lifecycle::Binary;
use crate::raw::{fe, Msg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest growth of the proxy's resident memory a stream may cause.
const MAX_GROWTH_KB: u64 = 20 * 1024;

/// VmRSS of a process, in kB.
fn rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Samples a process's RSS every 50 ms on its own thread.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: i32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kb(pid)));
        let samples = Arc::new(AtomicU64::new(1));
        let thread = {
            let (stop, peak, samples) = (stop.clone(), peak.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                    samples.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Sampler {
            stop,
            peak,
            samples,
            thread,
        }
    }

    /// Stops sampling; returns the peak RSS (kB) and the number of samples.
    fn finish(self, pid: i32) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
        (
            self.peak.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

/// Splits a backend byte stream into messages as it arrives, without ever
/// holding more than `capture` bytes of any one message.
struct Scanner {
    head: [u8; 5],
    head_len: usize,
    tag: u8,
    len: usize,
    left: usize,
    capture: usize,
    body: Vec<u8>,
    counts: Vec<u64>,
    total_bytes: u64,
    largest: usize,
    ready: bool,
    /// Complete ErrorResponse, CommandComplete and ReadyForQuery messages.
    notable: Vec<Msg>,
}

impl Scanner {
    fn new(capture: usize) -> Scanner {
        Scanner {
            head: [0; 5],
            head_len: 0,
            tag: 0,
            len: 0,
            left: 0,
            capture,
            body: Vec::with_capacity(capture),
            counts: vec![0; 256],
            total_bytes: 0,
            largest: 0,
            ready: false,
            notable: Vec::new(),
        }
    }

    fn count(&self, tag: u8) -> u64 {
        self.counts[tag as usize]
    }

    /// Feeds bytes; calls `on_msg(tag, body_len, first bytes of the body)`
    /// for every complete message.
    fn feed(&mut self, mut data: &[u8], on_msg: &mut impl FnMut(u8, usize, &[u8])) {
        self.total_bytes += data.len() as u64;
        while !data.is_empty() {
            if self.head_len < 5 {
                let take = (5 - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                self.head_len += take;
                data = &data[take..];
                if self.head_len == 5 {
                    self.tag = self.head[0];
                    let len = u32::from_be_bytes([
                        self.head[1],
                        self.head[2],
                        self.head[3],
                        self.head[4],
                    ]) as usize;
                    assert!(
                        len >= 4,
                        "bad message length {len} for {:?}",
                        self.tag as char
                    );
                    self.len = len - 4;
                    self.left = self.len;
                    self.body.clear();
                    if self.left == 0 {
                        self.complete(on_msg);
                    }
                }
                continue;
            }
            let take = self.left.min(data.len());
            let room = self.capture.saturating_sub(self.body.len()).min(take);
            self.body.extend_from_slice(&data[..room]);
            self.left -= take;
            data = &data[take..];
            if self.left == 0 {
                self.complete(on_msg);
            }
        }
    }

    fn complete(&mut self, on_msg: &mut impl FnMut(u8, usize, &[u8])) {
        self.counts[self.tag as usize] += 1;
        self.largest = self.largest.max(self.len);
        on_msg(self.tag, self.len, &self.body);
        if matches!(self.tag, b'E' | b'C' | b'Z') && self.body.len() == self.len {
            self.notable.push(Msg {
                tag: self.tag,
                body: self.body.clone(),
            });
        }
        if self.tag == b'Z' {
            self.ready = true;
        }
        self.head_len = 0;
    }
}

/// Sends one simple Query and reads its results straight from the socket
/// in chunks, up to ReadyForQuery.
async fn stream_query(
    stream: &mut TcpStream,
    sql: &str,
    capture: usize,
    mut on_msg: impl FnMut(u8, usize, &[u8]),
) -> Scanner {
    stream.write_all(&fe::query(sql)).await.unwrap();
    let mut scanner = Scanner::new(capture);
    let mut buf = vec![0u8; 256 << 10];
    while !scanner.ready {
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf))
            .await
            .expect("no data for 60 s")
            .expect("read");
        assert!(
            n > 0,
            "connection closed mid-result after {} bytes",
            scanner.total_bytes
        );
        scanner.feed(&buf[..n], &mut on_msg);
    }
    scanner
}

fn describe(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| match m.tag {
            b'E' => format!("E({:?} {:?})", m.code(), m.message()),
            b'C' => format!(
                "C({})",
                String::from_utf8_lossy(&m.body).trim_end_matches('\0')
            ),
            _ => m.tag().to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A logged-in plaintext session on the binary, warmed up so the baseline
/// includes whatever a first result allocates.
async fn session(bin: &Binary) -> TcpStream {
    let mut raw = bin.raw_login(ALICE).await;
    raw.send(&fe::query("SELECT repeat('w', 1000000)")).await;
    let msgs = raw.until_ready().await;
    assert_eq!(crate::raw::tags(&msgs), "TDCZ");
    raw.stream
}

fn report(what: &str, base: u64, peak: u64, samples: u64, took: Duration) {
    eprintln!(
        "{what}: proxy RSS {base} kB before, peak {peak} kB (+{} kB) over {samples} samples; took {took:?}",
        peak.saturating_sub(base)
    );
}

const HUNDRED_MB: usize = 100 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mb_field_streams_in_flat_memory() {
    let bin = Binary::start(Setup::default()).await;
    let pid = bin.pid();
    let mut stream = session(&bin).await;
    let base = rss_kb(pid);
    let sampler = Sampler::start(pid);
    let start = Instant::now();
    let mut field_len = None;
    let scan = stream_query(
        &mut stream,
        "SELECT repeat('x', 100*1024*1024)",
        64,
        |tag, len, head| {
            if tag == b'D' {
                assert_eq!(&head[..2], &[0, 1], "one column");
                field_len = Some(i32::from_be_bytes([head[2], head[3], head[4], head[5]]));
                assert_eq!(len, 6 + HUNDRED_MB);
                assert!(head[6..].iter().all(|&b| b == b'x'));
            }
        },
    )
    .await;
    let took = start.elapsed();
    let (peak, samples) = sampler.finish(pid);
    report("100 MB field", base, peak, samples, took);
    assert_eq!(describe(&scan.notable), "C(SELECT 1) Z");
    assert_eq!(scan.count(b'D'), 1);
    assert_eq!(field_len, Some(HUNDRED_MB as i32));
    assert!(scan.total_bytes > HUNDRED_MB as u64 && scan.total_bytes < HUNDRED_MB as u64 + 4096);
    assert!(
        peak.saturating_sub(base) < MAX_GROWTH_KB,
        "proxy RSS grew by {} kB (from {base} to {peak} kB) while relaying a 100 MB field",
        peak - base
    );
    // The session is fine afterwards.
    let scan = stream_query(&mut stream, "SELECT 1", 64, |_, _, _| {}).await;
    assert_eq!(describe(&scan.notable), "C(SELECT 1) Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_million_rows_stream_in_flat_memory() {
    const N: u64 = 10_000_000;
    let bin = Binary::start(Setup::default()).await;
    let pid = bin.pid();
    let mut stream = session(&bin).await;
    let base = rss_kb(pid);
    let sampler = Sampler::start(pid);
    let start = Instant::now();
    let mut sum: u64 = 0;
    let mut bad = 0u64;
    let scan = stream_query(
        &mut stream,
        "SELECT i FROM generate_series(1, 10000000) i",
        64,
        |tag, len, body| {
            if tag == b'D' {
                // ncols=1, length, digits
                if len < 7 || body.len() != len || body[..2] != [0, 1] {
                    bad += 1;
                    return;
                }
                let mut v = 0u64;
                for &d in &body[6..] {
                    v = v * 10 + u64::from(d - b'0');
                }
                sum += v;
            }
        },
    )
    .await;
    let took = start.elapsed();
    let (peak, samples) = sampler.finish(pid);
    report("10M rows", base, peak, samples, took);
    assert_eq!(describe(&scan.notable), format!("C(SELECT {N}) Z"));
    assert_eq!(scan.count(b'D'), N);
    assert_eq!(bad, 0);
    assert_eq!(sum, N * (N + 1) / 2, "rows lost, duplicated or altered");
    assert!(
        peak.saturating_sub(base) < MAX_GROWTH_KB,
        "proxy RSS grew by {} kB (from {base} to {peak} kB) while relaying 10M rows",
        peak - base
    );
}

async fn upstream(db: &str, sql: &str) -> String {
    let (db, sql) = (db.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || cluster().sql(&db, &sql).unwrap())
        .await
        .unwrap()
}

/// 100 MB: "abcdefghij" repeated.
fn big_value() -> String {
    "abcdefghij".repeat(HUNDRED_MB / 10)
}

async fn upload_bind_parameter(bin: &Binary, client: &tokio_postgres::Client, what: &str) {
    // Declared not sensitive: unclassified text is scanned, and scanned
    // rows must arrive whole (up to [masking] max_row_bytes).
    client
        .batch_execute("CREATE TABLE big (v text); COMMENT ON COLUMN big.v IS 'pii:none'")
        .await
        .unwrap();
    let big = big_value();
    let pid = bin.pid();
    let base = rss_kb(pid);
    let sampler = Sampler::start(pid);
    let start = Instant::now();
    let n = client
        .execute("INSERT INTO big VALUES ($1)", &[&big])
        .await
        .unwrap();
    let took = start.elapsed();
    let (peak, samples) = sampler.finish(pid);
    report(what, base, peak, samples, took);
    assert_eq!(n, 1);
    drop(big);
    assert_eq!(
        upstream(
            &bin.db,
            "SELECT length(v), v = repeat('abcdefghij', 10485760) FROM big"
        )
        .await,
        "104857600|t"
    );
    assert!(
        peak.saturating_sub(base) < MAX_GROWTH_KB,
        "proxy RSS grew by {} kB (from {base} to {peak} kB) during {what}",
        peak - base
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mb_bind_parameter_streams_in_flat_memory() {
    let bin = Binary::start(Setup::default()).await;
    let client = bin.connect(ALICE, "sslmode=disable").await.unwrap();
    client
        .simple_query("SELECT repeat('w', 1000000)")
        .await
        .unwrap();
    upload_bind_parameter(&bin, &client, "100 MB bind parameter").await;
    let v: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mb_each_way_over_tls_in_flat_memory() {
    let bin = Binary::start(Setup::default()).await;
    let client = bin.connect(ALICE, "sslmode=require").await.unwrap();
    client
        .simple_query("SELECT repeat('w', 1000000)")
        .await
        .unwrap();
    upload_bind_parameter(&bin, &client, "100 MB bind parameter over TLS").await;

    // And back down (tokio-postgres holds the row; the proxy must not).
    let pid = bin.pid();
    let base = rss_kb(pid);
    let sampler = Sampler::start(pid);
    let start = Instant::now();
    let row = client.query_one("SELECT v FROM big", &[]).await.unwrap();
    let took = start.elapsed();
    let (peak, samples) = sampler.finish(pid);
    report("100 MB field over TLS", base, peak, samples, took);
    let v: &str = row.get(0);
    assert_eq!(v.len(), HUNDRED_MB);
    assert!(v.as_bytes().chunks(10).all(|c| c == b"abcdefghij"));
    assert!(
        peak.saturating_sub(base) < MAX_GROWTH_KB,
        "proxy RSS grew by {} kB (from {base} to {peak} kB) relaying a 100 MB field over TLS",
        peak - base
    );
}
