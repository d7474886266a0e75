//! The shared cluster as integration tests will use it: TLS with channel
//! binding, one role per authentication method, per-test databases, psql.

use portcullis_testbed::{
    connect, fresh_database, shared, test_role_password, MD5_USER, PASSWORD_USER, SUPERUSER,
    TLS_ONLY_USER, TRUST_USER,
};

/// Connects and returns `current_user` and whether the session uses TLS.
async fn whoami(conn_str: &str, tls: bool) -> Result<(String, bool), tokio_postgres::Error> {
    let cluster = shared();
    let pki = if tls { cluster.tls() } else { None };
    let (client, task) = connect(conn_str, pki).await?;
    let row = client
        .query_one(
            "SELECT current_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    let result = (row.get(0), row.get(1));
    drop(client);
    task.await.expect("connection task panicked")?;
    Ok(result)
}

/// The server's message for a failed connection (tokio-postgres' Display
/// is just "db error").
fn server_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => err.to_string(),
    }
}

fn role_conn_str(db: &str, role: &str) -> String {
    shared().conn_str(db, role, &test_role_password(role))
}

#[tokio::test]
async fn superuser_over_tls_with_channel_binding() {
    let cluster = shared();
    assert!(cluster.tls_enabled());
    let db = fresh_database("tls_cb");
    let conn = format!(
        "{} sslmode=require channel_binding=require",
        cluster.superuser_conn_str(&db)
    );
    let (user, ssl) = whoami(&conn, true).await.unwrap_or_else(|e| {
        panic!("connect failed: {e}\n{}", cluster.log_tail(20));
    });
    assert_eq!(user, SUPERUSER);
    assert!(ssl);
}

#[tokio::test]
async fn channel_binding_required_without_tls_fails() {
    let db = fresh_database("nocb");
    let conn = format!(
        "{} channel_binding=require",
        shared().superuser_conn_str(&db)
    );
    assert!(whoami(&conn, false).await.is_err());
}

#[tokio::test]
async fn wrong_password_fails() {
    let db = fresh_database("badpw");
    let conn = shared().conn_str(&db, SUPERUSER, "wrong");
    let err = whoami(&conn, false).await.unwrap_err();
    let msg = server_message(&err);
    assert!(msg.contains("password authentication failed"), "{msg}");
}

#[tokio::test]
async fn each_auth_method_role_connects() {
    let db = fresh_database("roles");
    for role in [MD5_USER, PASSWORD_USER, TRUST_USER] {
        let (user, ssl) = whoami(&role_conn_str(&db, role), false)
            .await
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        assert_eq!(user, role);
        assert!(!ssl);
    }
    // trust means any password (or none) works.
    let conn = shared().conn_str(&db, TRUST_USER, "whatever");
    assert_eq!(whoami(&conn, false).await.unwrap().0, TRUST_USER);
    // md5 really checks the password.
    let conn = shared().conn_str(&db, MD5_USER, "wrong");
    assert!(whoami(&conn, false).await.is_err());
}

#[tokio::test]
async fn test_roles_can_create_tables_in_fresh_databases() {
    let db = fresh_database("ddl");
    let (client, _task) = connect(&role_conn_str(&db, PASSWORD_USER), None)
        .await
        .unwrap();
    client
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
        .await
        .unwrap();
}

#[tokio::test]
async fn tlsonly_requires_tls() {
    let db = fresh_database("tlsonly");
    let plain = format!("{} sslmode=disable", role_conn_str(&db, TLS_ONLY_USER));
    let err = whoami(&plain, false).await.unwrap_err();
    let msg = server_message(&err);
    assert!(msg.contains("pg_hba.conf rejects"), "{msg}");

    let tls = format!(
        "{} sslmode=require channel_binding=require",
        role_conn_str(&db, TLS_ONLY_USER)
    );
    let (user, ssl) = whoami(&tls, true).await.unwrap();
    assert_eq!(user, TLS_ONLY_USER);
    assert!(ssl);
}

#[test]
fn fresh_databases_are_distinct() {
    let a = fresh_database("distinct");
    let b = fresh_database("distinct");
    assert_ne!(a, b);
    let names = shared()
        .sql(
            "postgres",
            &format!("SELECT datname FROM pg_database WHERE datname IN ('{a}', '{b}') ORDER BY 1"),
        )
        .unwrap();
    assert_eq!(names.lines().count(), 2, "{names}");
}

#[test]
fn psql_works() {
    let cluster = shared();
    let db = fresh_database("psql");
    assert_eq!(cluster.sql(&db, "SELECT 1 + 1").unwrap(), "2");
    let err = cluster.sql(&db, "SELECT nonsense_column").unwrap_err();
    assert!(err.to_string().contains("nonsense_column"), "{err}");

    // psql over TCP as a test role, with the connection string.
    let out = std::process::Command::new(cluster.bin("psql"))
        .arg(role_conn_str(&db, PASSWORD_USER))
        .args(["-X", "-At", "-c", "SELECT current_user"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), PASSWORD_USER);
}
