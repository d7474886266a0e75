//! A cluster started the way `portcullis demo` does: in a given directory,
//! with certificate files, reused across restarts.

use portcullis_testbed::{
    client::RustlsConnect, test_role_password, ClusterOptions, ClusterTls, PgCluster, TestPki,
    MD5_USER, PASSWORD_USER, TRUST_USER,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_dir_with_cert_files_survives_restart() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("pg");
    let pki = TestPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let files = pki.write_to(&root.path().join("certs")).unwrap();
    let options = ClusterOptions {
        dir: Some(dir.clone()),
        superuser_password: "first secret".to_owned(),
        tls: Some(ClusterTls::Files {
            cert: files.server_cert.clone(),
            key: files.server_key.clone(),
            ca: Some(files.ca_cert.clone()),
        }),
        // Takes precedence over the built-in `trust` rule for trustuser.
        extra_hba_lines: vec![format!("host all {TRUST_USER} 127.0.0.1/32 reject")],
        ..ClusterOptions::default()
    };

    let opts = options.clone();
    let cluster = tokio::task::spawn_blocking(move || PgCluster::start(opts))
        .await
        .unwrap()
        .unwrap();
    assert!(cluster.is_running());
    assert!(cluster.tls().is_none(), "no TestPki for cert files");

    // Password verifiers are stored the way each auth method needs.
    let kinds = cluster
        .sql(
            "postgres",
            &format!(
                "SELECT rolname || ':' || left(rolpassword, 3) FROM pg_authid \
                 WHERE rolname IN ('{MD5_USER}', '{PASSWORD_USER}') ORDER BY 1"
            ),
        )
        .unwrap();
    assert_eq!(kinds, "md5user:md5\npwuser:SCR");

    // TLS with channel binding via an explicitly built connector.
    let conn = format!(
        "{} sslmode=require channel_binding=require",
        cluster.superuser_conn_str("postgres")
    );
    let (client, connection) = tokio_postgres::connect(&conn, RustlsConnect::from_pki(&pki))
        .await
        .unwrap();
    tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(client);

    let trust = cluster.conn_str("postgres", TRUST_USER, &test_role_password(TRUST_USER));
    assert!(portcullis_testbed::connect(&trust, None).await.is_err());

    let port = cluster.port();
    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
    drop(cluster);
    assert!(dir.join("data/PG_VERSION").exists(), "given dir is kept");

    // Reuse: no initdb, the new superuser password takes effect.
    let opts = ClusterOptions {
        superuser_password: "second secret".to_owned(),
        ..options
    };
    let cluster = tokio::task::spawn_blocking(move || PgCluster::start(opts))
        .await
        .unwrap()
        .unwrap();
    let (client, _task) =
        portcullis_testbed::connect(&cluster.superuser_conn_str("postgres"), Some(&pki))
            .await
            .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}
