//! Detector throughput. Targets: at least 1 GB/s per core on text with no
//! findings, at least 200 MB/s when 5% of values hold one.
//!
//! `cargo bench -p portcullis-mask --bench detect`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis_mask::detect::Detectors;

const WORDS: &[&str] = &[
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "request",
    "session",
    "database",
    "proxy",
    "column",
    "policy",
    "returned",
    "rows",
    "with",
    "latency",
    "client",
    "server",
    "connection",
    "closed",
    "after",
    "retry",
    "timeout",
    "and",
    "of",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "on",
    "are",
    "by",
    "this",
    "be",
    "desk-top",
    "risk-based",
    "md5sum",
    "skills",
    "eyes",
    "begin",
    "task_id",
    "work_dir",
    "network_id",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn word(&mut self) -> &'static str {
        WORDS[self.below(WORDS.len())]
    }
}

fn prose(rng: &mut Rng, out: &mut String) {
    let n = 8 + rng.below(12);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(rng.word());
    }
    out.push_str(". ");
}

fn log_line(rng: &mut Rng, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "2024-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z INFO {} {} id={:08x}-{:04x}-4{:03x}-a{:03x}-{:012x} peer=10.{}.{}.{}:{} took {}.{}ms rows={}",
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1_000_000),
        rng.word(),
        rng.word(),
        rng.next() as u32,
        rng.next() as u16,
        rng.below(4096),
        rng.below(4096),
        rng.next() & 0xffff_ffff_ffff,
        rng.below(256),
        rng.below(256),
        rng.below(256),
        1024 + rng.below(60000),
        rng.below(500),
        rng.below(10),
        rng.below(100_000),
    );
}

fn json_object(rng: &mut Rng, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        r#"{{"id": {}, "sku": "{}-{}", "name": "{} {}", "price": {}.{:02}, "ratio": 0.{}, "created_at": "2023-{:02}-{:02} {:02}:{:02}:{:02}", "tags": ["{}", "{}"], "active": true}}"#,
        rng.below(10_000_000),
        rng.word(),
        rng.below(100_000),
        rng.word(),
        rng.word(),
        rng.below(1000),
        rng.below(100),
        rng.next() % 10_000_000_000_000_000,
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.word(),
        rng.word(),
    );
    out.push('\n');
}

/// About `size` bytes of prose, log lines and JSON with nothing sensitive.
fn clean_text(size: usize) -> String {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut out = String::with_capacity(size + 512);
    while out.len() < size {
        match rng.below(3) {
            0 => prose(&mut rng, &mut out),
            1 => log_line(&mut rng, &mut out),
            _ => json_object(&mut rng, &mut out),
        }
    }
    out
}

const SENSITIVE: &[&str] = &[
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "GB82 WEST 1234 5698 7654 32",
    "123-45-6789",
    "+44 20 7946 0958",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "postgres://app:s3cret@db/x",
    "AKIAIOSFODNN7EXAMPLE",
    "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
];

/// Column values (each a log line, JSON object or sentence), one in twenty
/// with something sensitive in it.
fn values(count: usize) -> Vec<String> {
    let mut rng = Rng(0x0fed_cba9_8765_4321);
    (0..count)
        .map(|i| {
            let mut v = String::new();
            match rng.below(3) {
                0 => prose(&mut rng, &mut v),
                1 => log_line(&mut rng, &mut v),
                _ => json_object(&mut rng, &mut v),
            }
            if i % 20 == 0 {
                let at = v.len() / 2;
                let at = (at..v.len())
                    .find(|&j| v.as_bytes()[j] == b' ')
                    .unwrap_or(v.len());
                v.insert_str(at, &format!(" {} ", SENSITIVE[(i / 20) % SENSITIVE.len()]));
            }
            v
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let detectors = Detectors::new();

    let text = clean_text(8 << 20);
    let found = detectors.find(text.as_bytes(), None);
    assert!(
        found.is_empty(),
        "clean text has findings: {:?}",
        &found[..found.len().min(5)]
    );
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("clean_8MiB_one_value", |b| {
        b.iter(|| detectors.find(black_box(text.as_bytes()), None))
    });

    let values = values(40_000);
    let bytes: usize = values.iter().map(String::len).sum();
    let hits: usize = values
        .iter()
        .map(|v| detectors.find(v.as_bytes(), None).len())
        .sum();
    assert!(hits >= values.len() / 20, "only {hits} hits");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("values_5pct_hits", |b| {
        b.iter(|| {
            let mut n = 0;
            for v in &values {
                n += detectors.find(black_box(v.as_bytes()), None).len();
            }
            n
        })
    });
    let clean_values: Vec<&String> = values
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 20 != 0)
        .map(|(_, v)| v)
        .collect();
    let clean_bytes: usize = clean_values.iter().map(|v| v.len()).sum();
    group.throughput(Throughput::Bytes(clean_bytes as u64));
    group.bench_function("values_clean", |b| {
        b.iter(|| {
            let mut n = 0;
            for v in &clean_values {
                n += detectors.find(black_box(v.as_bytes()), None).len();
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
