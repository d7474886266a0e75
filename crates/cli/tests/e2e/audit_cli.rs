//! `portcullis audit`, the real binary, over the trail a real proxy wrote:
//! statements run as alice through Portcullis in front of PostgreSQL (one
//! allowed SELECT of a table's columns, a denied DROP TABLE), the proxy
//! stopped so the store is complete and checkpointed, then verify, search,
//! who-read, tail, export (bundle and OCSF), and tampering caught.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use portcullis_audit::store::sqlite::tamper;
use serde_json::Value;

use crate::harness::*;

const SEED: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text, ssn text);
INSERT INTO customers VALUES (1, 'Ada', '536-22-8174'), (2, 'Bob', '078-05-1120');
";

fn audit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("audit")
        .args(args)
        .output()
        .expect("spawn portcullis audit")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The command's standard output; panics unless it exited with `code`.
fn expect(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A finished trail: its folder (the test configuration and the store
/// beside it) and the store's path.
struct Trail {
    dir: tempfile::TempDir,
    config: PathBuf,
    store: PathBuf,
}

impl Trail {
    fn store(&self) -> &str {
        self.store.to_str().unwrap()
    }
}

/// Starts a production proxy, runs statements as alice, stops it.
async fn trail() -> Trail {
    let mut proxy = Proxy::with(Setup {
        environment: "production",
        ..Default::default()
    })
    .await;
    proxy.upstream_sql(SEED);
    let client = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=require"))
        .await
        .unwrap();
    client
        .simple_query("SELECT id, ssn FROM customers WHERE id > 0")
        .await
        .unwrap();
    client
        .simple_query("SELECT name FROM customers")
        .await
        .unwrap();
    let e = client
        .simple_query("DROP TABLE customers")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    drop(client);
    // Keep the folder: stopping the proxy drops it with its TempDir.
    let dir = std::mem::replace(&mut proxy.dir, tempfile::tempdir().unwrap());
    let config = proxy.config_path.clone();
    proxy.stop().await;
    let store = dir.path().join("portcullis-audit.db");
    assert!(
        store.is_file(),
        "the default store is beside the configuration"
    );
    Trail { dir, config, store }
}

/// The public key PEM `verify` printed, written to a file: the auditor's
/// own copy from here on.
fn save_key(verify_out: &str, to: &Path) -> PathBuf {
    let begin = verify_out.find("-----BEGIN PUBLIC KEY-----").unwrap();
    let end =
        verify_out.find("-----END PUBLIC KEY-----").unwrap() + "-----END PUBLIC KEY-----".len();
    let path = to.join("auditor-copy.pem");
    std::fs::write(&path, &verify_out[begin..end]).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_search_who_read_tail_and_ocsf() {
    let t = trail().await;
    let store = t.store();

    // verify: clean, with the stored key, said plainly.
    let out = expect(&audit(&["verify", "--store", store]), 0);
    for want in [
        "chain        ok",
        "all valid",
        "(every record)",
        "an auditor should pass --key",
        "-----BEGIN PUBLIC KEY-----",
        "result       clean",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let key = save_key(&out, t.dir.path());
    let key = key.to_str().unwrap();
    // By the configuration, with the auditor's key.
    let config = t.config.to_str().unwrap();
    let out = expect(&audit(&["verify", "--config", config, "--key", key]), 0);
    assert!(out.contains("given with --key"), "{out}");
    let json: Value =
        serde_json::from_str(&expect(&audit(&["verify", "--store", store, "--json"]), 0)).unwrap();
    assert_eq!(json["clean"], true);
    assert_eq!(json["vouched_through"], json["last_seq"]);
    assert_eq!(json["key"]["from"], "store");

    // search --user alice --json: her statements with their outcomes.
    let lines = json_lines(&expect(
        &audit(&["search", "--store", store, "--user", "alice", "--json"]),
        0,
    ));
    assert!(!lines.is_empty());
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert!(lines.iter().all(|l| l["ts"].as_i64().unwrap() > 0));
    let statements: Vec<&Value> = lines
        .iter()
        .filter(|l| l["record"]["type"] == "statement")
        .collect();
    assert!(statements
        .iter()
        .all(|s| s["record"]["identity"]["subject"] == "alice"));
    let select = statements
        .iter()
        .find(|s| s["record"]["text"].as_str().unwrap().contains("ssn"))
        .expect("the SELECT of ssn is recorded");
    assert_eq!(select["record"]["decision"]["effect"], "allowed");
    assert_eq!(select["record"]["destination"]["environment"], "production");
    assert_eq!(select["outcome"]["rows"], 2, "{select}");
    assert!(
        !select.to_string().contains("536-22-8174"),
        "no value in the trail"
    );
    let drop = statements
        .iter()
        .find(|s| s["record"]["text"].as_str().unwrap().starts_with("DROP"))
        .expect("the DROP is recorded");
    assert_eq!(drop["record"]["decision"]["effect"], "denied");
    let drop_seq = drop["seq"].as_u64().unwrap();

    // The table for people, and filters.
    let out = expect(
        &audit(&["search", "--store", store, "--decision", "denied"]),
        0,
    );
    assert!(out.starts_with("TIME"), "{out}");
    assert!(out.contains("DROP TABLE customers"), "{out}");
    assert!(out.contains("not run"), "{out}");
    assert!(!out.contains("SELECT id, ssn"), "{out}");
    let out = expect(
        &audit(&[
            "search",
            "--store",
            store,
            "--table",
            "public.customers",
            "--read",
            "--since",
            "1h",
            "--kind",
            "statement",
        ]),
        0,
    );
    assert!(out.contains("SELECT id, ssn"), "{out}");
    assert!(out.contains("SELECT 2"), "rows from the outcome: {out}");
    let out = expect(&audit(&["search", "--store", store, "--user", "bob"]), 0);
    assert_eq!(out.trim(), "no records match");
    let bad = audit(&["search", "--store", store, "--table", "customers"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("public.customers"));

    // who-read: one command.
    let out = expect(
        &audit(&[
            "who-read",
            "public.customers.ssn",
            "--since",
            "30d",
            "--store",
            store,
        ]),
        0,
    );
    assert!(out.contains("who read public.customers.ssn since"), "{out}");
    let alice = out
        .lines()
        .find(|l| l.starts_with("alice "))
        .unwrap_or_else(|| panic!("alice read ssn:\n{out}"));
    let cols: Vec<&str> = alice.split_whitespace().collect();
    assert_eq!((cols[1], cols[2]), ("1", "0"), "{alice}");
    let json = json_lines(&expect(
        &audit(&[
            "who-read",
            "public.customers.name",
            "--store",
            store,
            "--json",
        ]),
        0,
    ));
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["user"], "alice");
    assert_eq!(json[0]["reads"], 1);
    let out = expect(
        &audit(&[
            "who-read",
            "public.customers.ssn",
            "--store",
            store,
            "--since",
            "1s",
            "--until",
            "1s",
        ]),
        0,
    );
    assert!(out.starts_with("nobody read"), "{out}");

    // tail: the last records, stopping by itself.
    let out = expect(&audit(&["tail", "--store", store, "-n", "3"]), 0);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 4, "header and three records:\n{out}");
    let out = expect(
        &audit(&[
            "tail",
            "--store",
            store,
            "-n",
            "5",
            "--follow",
            "--max-records",
            "2",
            "--json",
        ]),
        0,
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0]["seq"].as_u64() < lines[1]["seq"].as_u64(),
        "oldest first"
    );
    let started = std::time::Instant::now();
    expect(
        &audit(&[
            "tail", "--store", store, "-n", "0", "--follow", "--for", "300ms",
        ]),
        0,
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // OCSF: one event per statement.
    let events = json_lines(&expect(
        &audit(&[
            "export", "--format", "ocsf", "--store", store, "--from", "1h",
        ]),
        0,
    ));
    assert_eq!(events.len(), statements.len());
    assert!(events.iter().all(|e| e["class_uid"] == 6005
        && e["category_uid"] == 6
        && e["metadata"]["product"]["name"] == "Portcullis"
        && e["actor"]["user"]["name"] == "alice"
        && e["src_endpoint"]["ip"] == "127.0.0.1"));
    let dropped = events
        .iter()
        .find(|e| e["unmapped"]["seq"] == drop_seq)
        .unwrap();
    assert_eq!(dropped["activity_name"], "Delete");
    assert_eq!(dropped["status"], "Failure");
    assert_eq!(dropped["table"]["name"], "public.customers");
    let read = events
        .iter()
        .find(|e| {
            e["query_info"]["query_string"]
                .as_str()
                .unwrap()
                .contains("ssn")
        })
        .unwrap();
    assert_eq!(read["activity_name"], "Query");
    assert_eq!(read["status"], "Success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_bundle_verifies_offline_and_tampering_is_caught() {
    let t = trail().await;
    let store = t.store();
    let key = save_key(
        &expect(&audit(&["verify", "--store", store]), 0),
        t.dir.path(),
    );
    let key = key.to_str().unwrap();

    // The bundle, verified with the auditor's key.
    let bundle = t.dir.path().join("evidence");
    let b = bundle.to_str().unwrap();
    let out = expect(
        &audit(&[
            "export", "--store", store, "--from", "1h", "--to", "now", "--out", b,
        ]),
        0,
    );
    assert!(
        out.contains("every record is covered by a signed checkpoint"),
        "{out}"
    );
    assert!(out.contains("portcullis audit verify --bundle"), "{out}");
    for f in [
        "records.jsonl",
        "checkpoints.jsonl",
        "manifest.json",
        "public-key.pem",
        "VERIFY.md",
    ] {
        assert!(bundle.join(f).is_file(), "{f}");
    }
    let out = expect(&audit(&["verify", "--bundle", b, "--key", key]), 0);
    assert!(out.contains("result       clean"), "{out}");
    assert!(out.contains("given with --key"), "{out}");
    // The lines are the stored envelopes, byte for byte.
    let lines = std::fs::read(bundle.join("records.jsonl")).unwrap();
    let stored: Vec<Vec<u8>> = tamper::read(&t.store)
        .unwrap()
        .into_iter()
        .map(|r| r.envelope)
        .collect();
    let exported: Vec<&[u8]> = lines
        .strip_suffix(b"\n")
        .unwrap()
        .split(|&b| b == b'\n')
        .collect();
    assert_eq!(exported.len(), stored.len(), "a fresh log: the whole of it");
    assert!(exported.iter().zip(&stored).all(|(a, b)| a == b));

    // One byte of a bundle line changed.
    let tampered = t.dir.path().join("tampered-bundle");
    std::fs::create_dir(&tampered).unwrap();
    for f in std::fs::read_dir(&bundle).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), tampered.join(f.file_name())).unwrap();
    }
    let mut edited = lines.clone();
    let at = find(&edited, b"\"subject\":\"alice\"").unwrap() + 12;
    edited[at] = b'A';
    std::fs::write(tampered.join("records.jsonl"), &edited).unwrap();
    let out = expect(
        &audit(&[
            "verify",
            "--bundle",
            tampered.to_str().unwrap(),
            "--key",
            key,
        ]),
        1,
    );
    assert!(out.contains("chain        BROKEN"), "{out}");

    // One byte of one envelope changed in a copy of the store.
    let copy = t.dir.path().join("copy.db");
    std::fs::copy(&t.store, &copy).unwrap();
    let mut seq = 0;
    tamper::rewrite(&copy, |rows| {
        let r = rows
            .iter_mut()
            .find(|r| r.kind == "statement" && find(&r.envelope, b"DROP").is_some())
            .unwrap();
        let at = find(&r.envelope, b"DROP").unwrap();
        r.envelope[at] = b'd';
        seq = r.seq as i64;
    })
    .unwrap();
    let out = expect(
        &audit(&["verify", "--store", copy.to_str().unwrap(), "--key", key]),
        1,
    );
    assert!(
        out.contains(&format!("seq {seq} (position {seq}): edited")),
        "names seq {seq}:\n{out}"
    );
    assert!(out.contains("result       1 finding(s)"), "{out}");
    let json: Value = serde_json::from_str(&expect(
        &audit(&["verify", "--store", copy.to_str().unwrap(), "--json"]),
        1,
    ))
    .unwrap();
    assert_eq!(json["findings"][0]["finding"], "edited");
    assert_eq!(json["findings"][0]["seq"], seq);

    // Not a store: a usage problem.
    let out = audit(&[
        "verify",
        "--store",
        t.dir.path().join("nothing.db").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_a_running_proxy() {
    let proxy = Proxy::with(Setup {
        environment: "production",
        ..Default::default()
    })
    .await;
    proxy.upstream_sql(SEED);
    let client = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=require"))
        .await
        .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let mut tail = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "tail", "--config"])
        .arg(&proxy.config_path)
        .args([
            "-n",
            "1",
            "--follow",
            "--interval",
            "50ms",
            "--for",
            "8s",
            "--max-records",
            "3",
            "--kind",
            "statement",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(tail.stdout.take().unwrap());
    let read_line = |mut reader: std::io::BufReader<std::process::ChildStdout>| {
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            (reader, line)
        })
    };
    // The latest statement first: once it is printed, tail is following.
    let (r, first) = read_line(reader).await.unwrap();
    reader = r;
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["record"]["text"], "SELECT $1");
    // Production targets are strict: each record is committed before the
    // statement runs.
    client
        .simple_query("SELECT name FROM customers")
        .await
        .unwrap();
    client
        .simple_query("SELECT id FROM customers")
        .await
        .unwrap();
    let (rest, status) = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        (rest, tail.wait().unwrap())
    })
    .await
    .unwrap();
    assert!(status.success());
    let lines = json_lines(&rest);
    let texts: Vec<&str> = lines
        .iter()
        .map(|l| l["record"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["SELECT name FROM customers", "SELECT id FROM customers"]
    );
    drop(client);
    proxy.stop().await;
}

/// Retention: `rotate` moves the trail a proxy wrote into an archived
/// segment that verifies offline; the store then verifies from its
/// anchor, and a second rotation finds nothing older to move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_archives_a_verified_segment() {
    let t = trail().await;
    let out = expect(&audit(&["verify", "--store", t.store()]), 0);
    let key = save_key(&out, t.dir.path());
    let archive = t.dir.path().join("archive");
    let out = expect(
        &audit(&[
            "rotate",
            "--store",
            t.store(),
            "--before",
            "2999-01-01",
            "--archive",
            archive.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]),
        0,
    );
    assert!(out.contains("moved records 1..="), "{out}");
    let segment = std::fs::read_dir(&archive)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = expect(
        &audit(&[
            "verify",
            "--bundle",
            segment.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]),
        0,
    );
    assert!(out.contains("bundle       seqs 1..="), "{out}");
    // The store holds nothing older than its anchor, and still verifies.
    let out = expect(
        &audit(&[
            "verify",
            "--store",
            t.store(),
            "--key",
            key.to_str().unwrap(),
        ]),
        0,
    );
    assert!(out.contains("records      0 checked"), "{out}");
    assert_eq!(tamper::read(&t.store).unwrap().len(), 0);
    let out = expect(
        &audit(&[
            "rotate",
            "--store",
            t.store(),
            "--before",
            "2999-01-01",
            "--archive",
            archive.to_str().unwrap(),
        ]),
        0,
    );
    assert!(out.contains("nothing to rotate"), "{out}");
    // Forging the anchor (pretending older records were rotated) is caught.
    let conn = rusqlite::Connection::open(&t.store).unwrap();
    conn.execute(
        "UPDATE audit_meta SET value = ?1 WHERE key = 'anchor_hash'",
        ["00".repeat(32)],
    )
    .unwrap();
    expect(
        &audit(&[
            "verify",
            "--store",
            t.store(),
            "--key",
            key.to_str().unwrap(),
        ]),
        1,
    );
}
