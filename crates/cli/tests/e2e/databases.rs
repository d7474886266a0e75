//! One target cannot reach another: a staging target and a production
//! target on the same server, logged in as the same upstream role (the
//! superuser, the worst case), and every way the staging session could
//! drop, rename, lock out or take over the production database refused
//! before it reaches the server. Each refusal is checked against the
//! server's own catalog, read directly, not through Portcullis.

use crate::harness::*;

/// Through target "app" (staging, database `proxy.db`) and target "prod"
/// (production, database `prod`), both as the upstream superuser.
async fn two_targets() -> (Proxy, String) {
    let prod = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("e2e_prod"))
        .await
        .unwrap();
    let c = cluster();
    let proxy = Proxy::with(Setup {
        environment: "staging",
        extra: format!(
            "[[target]]\nname = \"prod\"\nenvironment = \"production\"\nhost = \"127.0.0.1\"\n\
             port = {}\ndatabase = \"{prod}\"\nuser = \"postgres\"\npassword_file = \"pgpass\"\n\
             [approvals]\ntimeout = \"300ms\"\n",
            c.port()
        ),
        ..Setup::default()
    })
    .await;
    c.sql(
        &prod,
        "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1), (2)",
    )
    .unwrap();
    (proxy, prod)
}

/// The production database as the server has it: name, owner, whether it
/// takes connections, its connection limit, template flag, privileges and
/// comment; `None` once it is gone.
fn catalog_row(db: &str) -> Option<String> {
    let row = cluster()
        .sql(
            "postgres",
            &format!(
                "SELECT format('%s owner=%s allowconn=%s limit=%s template=%s acl=%s comment=%s', \
                 datname, datdba::regrole, datallowconn, datconnlimit, datistemplate, datacl, \
                 shobj_description(oid, 'pg_database')) \
                 FROM pg_database WHERE datname = '{db}'"
            ),
        )
        .unwrap();
    (!row.trim().is_empty()).then(|| row.trim().to_owned())
}

#[track_caller]
fn denied(e: &tokio_postgres::Error, policy: &str, sql: &str) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a server error: {e}"));
    assert_eq!(db.code().code(), "42501", "{sql}: {db:?}");
    assert!(
        db.message().contains(&format!("\"{policy}\"")),
        "{sql}: {}",
        db.message()
    );
    assert!(db.hint().is_some(), "{sql}: a hint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_target_cannot_drop_rename_or_take_over_production() {
    let (proxy, prod) = two_targets().await;
    let before = catalog_row(&prod).expect("the production database exists");

    // A production session is open the whole time: FORCE would end it.
    let production = proxy
        .connect(&proxy.conn_str_for("prod", ALICE, "sslmode=require"))
        .await
        .unwrap();
    let staging = proxy.client().await;

    let attempts = [
        (format!("DROP DATABASE \"{prod}\""), "deny-other-database"),
        (
            format!("DROP DATABASE IF EXISTS \"{prod}\""),
            "deny-other-database",
        ),
        // FORCE ends other sessions: refused as server administration
        // before anything else is considered.
        (
            format!("DROP DATABASE \"{prod}\" WITH (FORCE)"),
            "deny-dangerous-capabilities",
        ),
        (
            format!("ALTER DATABASE \"{prod}\" RENAME TO x"),
            "deny-other-database",
        ),
        (
            format!("alter database \"{prod}\" rename to \"{prod}_old\""),
            "deny-other-database",
        ),
        (
            format!("ALTER DATABASE \"{prod}\" OWNER TO pg_database_owner"),
            "deny-other-database",
        ),
        (
            format!("ALTER DATABASE \"{prod}\" WITH ALLOW_CONNECTIONS false"),
            "deny-other-database",
        ),
        (
            format!("ALTER DATABASE \"{prod}\" CONNECTION LIMIT 0"),
            "deny-other-database",
        ),
        (
            format!("ALTER DATABASE \"{prod}\" IS_TEMPLATE true"),
            "deny-other-database",
        ),
        (
            format!("CREATE DATABASE stolen TEMPLATE \"{prod}\""),
            "deny-other-database",
        ),
        // Privileges on a database change it too: this would lock
        // production's clients out.
        (
            format!("REVOKE CONNECT ON DATABASE \"{prod}\" FROM PUBLIC"),
            "deny-other-database",
        ),
        (
            format!("COMMENT ON DATABASE \"{prod}\" IS 'gone'"),
            "deny-other-database",
        ),
        // Inside code the name cannot be judged: server administration.
        (
            format!("DO $$ BEGIN ALTER DATABASE \"{prod}\" RENAME TO x; END $$"),
            "deny-dangerous-capabilities",
        ),
        (
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{prod}'"
            ),
            "deny-dangerous-capabilities",
        ),
    ];
    for (sql, policy) in &attempts {
        let e = staging.simple_query(sql).await.expect_err(sql);
        denied(&e, policy, sql);
        assert_eq!(catalog_row(&prod).as_ref(), Some(&before), "{sql}");
        // And through the extended protocol.
        let e = staging.execute(sql.as_str(), &[]).await.expect_err(sql);
        denied(&e, policy, sql);
        assert_eq!(catalog_row(&prod).as_ref(), Some(&before), "{sql}");
    }
    assert_eq!(
        cluster()
            .sql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'stolen'"
            )
            .unwrap(),
        "0"
    );

    // The production session was never ended, and its data is all there.
    let n: i64 = production
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .expect("the production session is alive")
        .get(0);
    assert_eq!(n, 2);
    // The staging session too: refusals are ordinary errors.
    staging.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targets_own_database_follows_the_ordinary_rules() {
    let (proxy, prod) = two_targets().await;
    let staging = proxy.client().await;
    let own = proxy.db.clone();

    // Staging allows ALTER DATABASE on its own database.
    staging
        .simple_query(&format!("ALTER DATABASE \"{own}\" CONNECTION LIMIT 50"))
        .await
        .unwrap();
    assert!(
        catalog_row(&own).unwrap().contains("limit=50"),
        "{:?}",
        catalog_row(&own)
    );
    // Dropping it passes the policies; the server refuses to drop the
    // database the session is on (55006), as it would without Portcullis.
    let e = staging
        .simple_query(&format!("DROP DATABASE \"{own}\""))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("55006"), "{e:?}");
    assert!(catalog_row(&own).is_some());

    // In production the ordinary rules are strict: ALTER DATABASE on its
    // own database is held for approval (and expires here), DROP DATABASE
    // refused.
    let production = proxy
        .connect(&proxy.conn_str_for("prod", ALICE, "sslmode=require"))
        .await
        .unwrap();
    let before = catalog_row(&prod).unwrap();
    let e = production
        .simple_query(&format!("ALTER DATABASE \"{prod}\" CONNECTION LIMIT 50"))
        .await
        .unwrap_err();
    // Nobody approves it here: it expires, without running.
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "57014");
    assert!(
        db.message().contains("was not approved within"),
        "{}",
        db.message()
    );
    let e = production
        .simple_query(&format!("DROP DATABASE \"{own}\""))
        .await
        .unwrap_err();
    denied(&e, "deny-drop-in-production", "DROP DATABASE of staging");
    assert_eq!(catalog_row(&prod), Some(before));
    assert!(catalog_row(&own).is_some());
}
