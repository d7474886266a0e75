use crate::harness::*;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn tool(name: &str) -> Command {
    let mut cmd = Command::new(cluster().bin(name));
    portcullis_testbed::cluster::clear_libpq_env(&mut cmd);
    cmd.env("PGCONNECT_TIMEOUT", "10");
    cmd
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={} took={:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.ok, self.took, self.stdout, self.stderr
        )
    }
}

async fn run(mut cmd: Command) -> Run {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let out: Output = cmd.output().expect("spawn client tool");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: start.elapsed(),
        }
    })
    .await
    .unwrap()
}

/// psql as alice through the proxy, one `-c` per command.
fn psql(proxy: &Proxy, conn_extra: &str, commands: &[&str]) -> Command {
    let mut cmd = tool("psql");
    cmd.env("PGPASSWORD", ALICE.1)
        .arg("-X")
        .args(["-v", "ON_ERROR_STOP=1", "-A", "-t"])
        .arg("-d")
        .arg(format!(
            "host=127.0.0.1 port={} dbname=app user={} {conn_extra}",
            proxy.addr.port(),
            ALICE.0
        ));
    for c in commands {
        cmd.arg("-c").arg(c);
    }
    cmd
}

async fn psql_ok(proxy: &Proxy, conn_extra: &str, commands: &[&str]) -> String {
    let r = run(psql(proxy, conn_extra, commands)).await;
    assert!(r.ok, "psql {commands:?} failed: {r:?}");
    r.stdout
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_statements_copy_and_conninfo() {
    let proxy = Proxy::start().await;
    let dir = tempfile::tempdir().unwrap();

    // Several statements in one -c are one simple Query; psql 15 shows the
    // result of each.
    let out = psql_ok(
        &proxy,
        "sslmode=disable",
        &["CREATE TABLE t (id int primary key, v text); \
           INSERT INTO t SELECT i, 'row ' || i FROM generate_series(1, 1000) i; \
           SELECT count(*), sum(id) FROM t"],
    )
    .await;
    assert_eq!(out.trim(), "CREATE TABLE\nINSERT 0 1000\n1000|500500");

    // \copy in: COPY FROM STDIN with data from a local file, awkward values
    // included; \copy out must give back the same bytes.
    let input = dir.path().join("in.csv");
    let mut csv = String::new();
    for i in 1..=2000 {
        csv.push_str(&format!(
            "{i},\"text, with \"\"quotes\"\" and\nnewline {i}\",é✓{i}\n"
        ));
    }
    csv.push_str("2001,,\n");
    std::fs::write(&input, &csv).unwrap();
    let output = dir.path().join("out.csv");
    let out = psql_ok(
        &proxy,
        "sslmode=disable",
        &[
            "CREATE TABLE c (id int, a text, b text)",
            &format!("\\copy c FROM {} CSV", quote(&input)),
            &format!(
                "\\copy (SELECT * FROM c ORDER BY id) TO {} CSV",
                quote(&output)
            ),
            "SELECT count(*), count(a), sum(length(b)) FROM c",
        ],
    )
    .await;
    assert!(out.contains("COPY 2001"), "{out}");
    assert_eq!(out.lines().last().unwrap(), "2001|2000|10893", "{out}");
    let back = std::fs::read_to_string(&output).unwrap();
    assert_eq!(back.len(), csv.len());
    assert!(back == csv, "\\copy out differs from what went in");

    // \conninfo without TLS.
    let out = psql_ok(&proxy, "sslmode=disable", &["\\conninfo"]).await;
    assert!(
        out.contains(&format!(
            "You are connected to database \"app\" as user \"alice\" on host \"127.0.0.1\" at port \"{}\"",
            proxy.addr.port()
        )),
        "{out}"
    );
    assert!(!out.contains("SSL connection"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_large_objects_use_function_calls() {
    let proxy = Proxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("blob.bin");
    let dst = dir.path().join("blob.out");
    // 1 MB of pseudo-random bytes (every byte value, no pattern).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&src, &data).unwrap();

    // libpq's lo_import/lo_export run lo_creat, lo_open, lowrite, loread,
    // lo_close through the FunctionCall message.
    let out = psql_ok(
        &proxy,
        "sslmode=disable",
        &[&format!("\\lo_import {}", quote(&src))],
    )
    .await;
    let oid: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("lo_import "))
        .unwrap_or_else(|| panic!("no OID in: {out}"))
        .trim()
        .parse()
        .unwrap();
    let out = psql_ok(
        &proxy,
        "sslmode=disable",
        &[
            &format!("\\lo_export {oid} {}", quote(&dst)),
            &format!("SELECT length(lo_get({oid}))"),
        ],
    )
    .await;
    assert_eq!(out.lines().last().unwrap(), "1048576", "{out}");
    let back = std::fs::read(&dst).unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "large object exported with different bytes");

    // Over TLS as well.
    let dst2 = dir.path().join("blob.tls");
    psql_ok(
        &proxy,
        "sslmode=require",
        &[&format!("\\lo_export {oid} {}", quote(&dst2))],
    )
    .await;
    assert!(std::fs::read(&dst2).unwrap() == data);

    let out = psql_ok(
        &proxy,
        "sslmode=disable",
        &[
            &format!("\\lo_unlink {oid}"),
            &format!("SELECT count(*) FROM pg_largeobject_metadata WHERE oid = {oid}"),
        ],
    )
    .await;
    assert!(out.contains(&format!("lo_unlink {oid}")), "{out}");
    assert_eq!(out.lines().last().unwrap(), "0", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_over_tls() {
    let proxy = Proxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let files = pki().write_to(dir.path()).unwrap();

    let out = psql_ok(&proxy, "sslmode=require", &["\\conninfo", "SELECT 40 + 2"]).await;
    assert!(out.contains("SSL connection (protocol: TLSv1.3"), "{out}");
    assert!(out.contains("as user \"alice\""), "{out}");
    assert_eq!(out.lines().last().unwrap(), "42", "{out}");

    // Full verification against the test CA (the certificate names 127.0.0.1).
    let out = psql_ok(
        &proxy,
        &format!("sslmode=verify-full sslrootcert={}", quote(&files.ca_cert)),
        &["\\conninfo", "SELECT current_database()"],
    )
    .await;
    assert!(out.contains("SSL connection"), "{out}");
    assert!(
        out.lines().last().unwrap().starts_with("e2e"),
        "upstream database: {out}"
    );

    // A wrong password fails cleanly.
    let mut cmd = psql(&proxy, "sslmode=require", &["SELECT 1"]);
    cmd.env("PGPASSWORD", "not-the-password");
    let r = run(cmd).await;
    assert!(!r.ok, "{r:?}");
    assert!(r.stderr.contains("password authentication failed"), "{r:?}");
}

fn pgbench(proxy: &Proxy, args: &[&str]) -> Command {
    let mut cmd = tool("pgbench");
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", proxy.addr.port().to_string())
        .env("PGUSER", ALICE.0)
        .env("PGPASSWORD", ALICE.1)
        .env("PGDATABASE", "app")
        .env("PGSSLMODE", "disable")
        .args(args);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_in_every_query_mode() {
    let proxy = Proxy::start().await;
    let init = run(pgbench(&proxy, &["-i", "-s", "1"])).await;
    assert!(init.ok, "pgbench -i: {init:?}");
    assert!(init.stderr.contains("done in"), "{init:?}");
    let accounts = proxy.upstream_sql("SELECT count(*) FROM pgbench_accounts");
    assert_eq!(accounts, "100000");

    let mut failures = Vec::new();
    for mode in ["simple", "extended", "prepared"] {
        let r = run(pgbench(
            &proxy,
            &["-T", "3", "-c", "4", "-j", "2", "-M", mode],
        ))
        .await;
        let tps: f64 = r
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        eprintln!("pgbench -M {mode}: tps = {tps:.1}, took {:?}", r.took);
        if !r.ok {
            failures.push(format!("-M {mode}: exit failure: {r:?}"));
        } else if !r.stdout.contains("number of failed transactions: 0 ") {
            failures.push(format!("-M {mode}: failed transactions: {r:?}"));
        } else if !r.stdout.contains(&format!("query mode: {mode}")) {
            failures.push(format!("-M {mode}: wrong mode: {r:?}"));
        } else if tps <= 0.0 {
            failures.push(format!("-M {mode}: tps = {tps}: {r:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let history: i64 = proxy
        .upstream_sql("SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    assert!(history > 0);
}

/// `portcullis passwd` applies SASLprep as PostgreSQL and libpq do: a
/// verifier for `cha\u{ff6f}s` equals PostgreSQL's own, and psql logs in
/// with that password through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_passwords_are_normalised_like_postgresql() {
    const PASSWORD: &str = "cha\u{ff6f}s";
    // PostgreSQL's verifier for the password, recomputed here from its salt.
    let db = portcullis_testbed::fresh_database("saslprep");
    let role = format!("{db}_kana");
    cluster()
        .sql(
            &db,
            &format!("SET password_encryption = 'scram-sha-256'; CREATE ROLE {role} PASSWORD '{PASSWORD}'"),
        )
        .unwrap();
    let theirs = cluster()
        .sql(
            &db,
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
        )
        .unwrap();
    let theirs = portcullis_config::ScramVerifier::parse(&theirs).unwrap();
    assert!(theirs.matches_password(PASSWORD.as_bytes()));

    // A verifier from `portcullis passwd --stdin`, used through the proxy.
    let out = tokio::task::spawn_blocking(|| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["passwd", "--stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let verifier = out.trim().to_owned();
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{out}");
    let proxy = Proxy::with(Setup {
        extra: format!("[[user]]\nname = \"kana\"\nscram = \"{verifier}\"\n"),
        ..Setup::default()
    })
    .await;
    let mut cmd = tool("psql");
    cmd.env("PGPASSWORD", PASSWORD)
        .arg("-X")
        .args(["-A", "-t", "-c", "SELECT 1"])
        .arg("-d")
        .arg(format!(
            "host=127.0.0.1 port={} dbname=app user=kana",
            proxy.addr.port()
        ));
    let r = run(cmd).await;
    assert!(r.ok, "psql with a non-ASCII password: {r:?}");
    assert_eq!(r.stdout.trim(), "1");
}
