//! Two proxies writing one shared PostgreSQL audit store: each node keeps
//! its own chain, the command line searches both and verifies each.

use crate::harness::{cluster, Proxy, Setup, ALICE, BOB};

fn portcullis(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run portcullis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The store's URL: node-a reaches it in plaintext, node-b over TLS
/// (checked against the cluster's CA, which the harness writes to
/// `tls/ca.crt` beside each proxy's configuration).
fn store_url(db: &str, tls: bool) -> String {
    let c = cluster();
    format!(
        "postgres://{}@{}:{}/{db}?sslmode={}",
        c.superuser(),
        c.host(),
        c.port(),
        if tls { "require" } else { "disable" }
    )
}

fn node(db: &str, name: &str) -> Setup {
    let tls = name == "node-b";
    Setup {
        // `pgpass` (the upstream password file the harness writes) is the
        // superuser's password, which the store uses too.
        extra: format!(
            "[audit]\npostgres = \"{}\"\npostgres_password_file = \"pgpass\"\nnode = \"{name}\"\n{}",
            store_url(db, tls),
            if tls {
                "postgres_ca_file = \"tls/ca.crt\"\n"
            } else {
                ""
            }
        ),
        ..Setup::default()
    }
}

#[tokio::test]
async fn two_proxies_share_one_postgres_audit_store_and_both_chains_verify() {
    let audit_db =
        tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("audit_shared"))
            .await
            .unwrap();
    let a = Proxy::with(node(&audit_db, "node-a")).await;
    let b = Proxy::with(node(&audit_db, "node-b")).await;
    // Node b's writer reaches the store over TLS, node a's in plaintext.
    let sessions = cluster()
        .sql(
            &audit_db,
            "SELECT string_agg(s.ssl::text, ',' ORDER BY s.ssl) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'portcullis-audit' AND a.datname = current_database()",
        )
        .unwrap();
    assert_eq!(sessions.trim(), "false,true", "{sessions}");
    // A second proxy under a name already writing is refused at start.
    let dir = tempfile::tempdir().unwrap();
    let path =
        crate::harness::write_config(dir.path(), &a.db, &node(&audit_db, "node-a"), "127.0.0.1:0");
    let config = portcullis_config::Config::load(&path).unwrap();
    let err = portcullis_proxy::server::Server::bind(config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("node-a"), "{err}");

    let alice = a.client().await;
    alice.simple_query("SELECT 1 AS from_node_a").await.unwrap();
    alice.simple_query("SELECT 2 AS from_node_a").await.unwrap();
    let bob = b.connect(&b.conn_str(BOB, "")).await.unwrap();
    bob.simple_query("SELECT 3 AS from_node_b").await.unwrap();
    let alice_b = b.connect(&b.conn_str(ALICE, "")).await.unwrap();
    alice_b
        .simple_query("SELECT 4 AS from_node_b")
        .await
        .unwrap();
    drop((alice, bob, alice_b));
    let config = a.config_path.to_str().unwrap().to_owned();
    let _dir_a = a.shutdown().await;
    let _dir_b = b.shutdown().await;

    // Search through node a's configuration finds both nodes' statements,
    // each naming its node, newest first.
    let (code, out, err) = portcullis(
        &[
            "audit",
            "search",
            "--config",
            &config,
            "--kind",
            "statement",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["node"].as_str().unwrap(),
                l["record"]["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        texts,
        [
            ("node-b", "SELECT $1 AS from_node_b"),
            ("node-b", "SELECT $1 AS from_node_b"),
            ("node-a", "SELECT $1 AS from_node_a"),
            ("node-a", "SELECT $1 AS from_node_a"),
        ],
        "{out}"
    );
    assert!(
        lines.iter().all(|l| l["outcome"]["command"] == "SELECT"),
        "{out}"
    );
    assert!(lines
        .windows(2)
        .all(|w| w[0]["ts"].as_i64() >= w[1]["ts"].as_i64()));

    let (code, out, err) = portcullis(
        &[
            "audit",
            "search",
            "--config",
            &config,
            "--user",
            ALICE.0,
            "--kind",
            "statement",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node-a:") && out.contains("node-b:"), "{out}");

    // The store in PostgreSQL holds both logs, each with its records.
    let counts = cluster()
        .sql(
            &audit_db,
            "SELECT string_agg(l.node || '=' || (SELECT count(*) FROM portcullis_audit.records r \
             WHERE r.log_id = l.log_id AND r.kind = 'statement'), ',' ORDER BY l.node) \
             FROM portcullis_audit.logs l",
        )
        .unwrap();
    assert_eq!(counts.trim(), "node-a=2,node-b=2");

    // Verify: every node's chain, each with the key its node keeps.
    let (code, out, err) = portcullis(&["audit", "verify", "--config", &config], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("node node-a") && out.contains("node node-b"),
        "{out}"
    );
    assert_eq!(out.matches("result       clean").count(), 2, "{out}");

    // The same by URL over TLS, the password from PGPASSWORD and the CA
    // from PGSSLROOTCERT, as libpq takes them.
    let url = store_url(&audit_db, true);
    let pw = cluster().superuser_password().to_owned();
    let ca = dir.path().join("tls").join("ca.crt");
    let (code, out, err) = portcullis(
        &["audit", "verify", "--store", &url, "--json"],
        &[("PGPASSWORD", &pw), ("PGSSLROOTCERT", ca.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(!out.contains(&pw) && !err.contains(&pw));
    // Without the CA, the store's certificate is not trusted: refused.
    let (code, out, err) = portcullis(
        &["audit", "verify", "--store", &url, "--json"],
        &[("PGPASSWORD", &pw), ("SSL_CERT_FILE", "/nonexistent")],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(!out.contains(&pw) && !err.contains(&pw));

    // Tamper with a node b record: verify names that node and fails.
    cluster()
        .sql(
            &audit_db,
            "UPDATE portcullis_audit.records SET envelope = convert_to(replace(convert_from(envelope, 'UTF8'), 'from_node_b', 'from_node_x'), 'UTF8') \
             WHERE log_id = (SELECT log_id FROM portcullis_audit.logs WHERE node = 'node-b') AND kind = 'statement'",
        )
        .unwrap();
    let (code, out, err) = portcullis(&["audit", "verify", "--config", &config], &[]);
    assert_eq!(code, 1, "{out}{err}");
    let b_report = out.split("node node-b").nth(1).unwrap();
    assert!(b_report.contains("edited"), "{out}");
    assert_eq!(out.matches("result       clean").count(), 1, "{out}");

    // Export is not built for this store: it says so.
    let (code, _, err) = portcullis(
        &[
            "audit",
            "export",
            "--config",
            &config,
            "--out",
            dir.path().join("bundle").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("not built for the PostgreSQL store"), "{err}");
}
