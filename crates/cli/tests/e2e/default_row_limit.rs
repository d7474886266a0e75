//! Production targets are row-limited without saying so: a statement whose
//! WHERE clause passes every static rule but reaches more rows than the
//! default limit is rolled back. Only `row_limit = "off"` lifts it;
//! staging and development have no default.

use crate::harness::*;

/// 1500 rows: more than the default limit of 1000.
const SETUP: &str = "
CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL);
INSERT INTO orders SELECT g, 'pending' FROM generate_series(1, 1500) g;
";

async fn proxy(environment: &'static str, target_extra: &str) -> Proxy {
    let proxy = Proxy::with(Setup {
        environment,
        target_extra: target_extra.into(),
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql(SETUP);
    proxy
}

fn cancelled(proxy: &Proxy) -> String {
    proxy.upstream_sql("SELECT count(*) FROM orders WHERE status = 'cancelled'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_is_limited_by_default() {
    let proxy = proxy("production", "").await;
    let client = proxy.client().await;
    // A WHERE that depends on the rows satisfies the static rule; what it
    // matches is only known when it runs.
    for sql in [
        "UPDATE orders SET status = 'cancelled' WHERE id > 0",
        "UPDATE orders SET status = 'cancelled' WHERE id IN (SELECT id FROM orders)",
        "DELETE FROM orders WHERE status = 'pending'",
    ] {
        let e = client.simple_query(sql).await.expect_err(sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(db.code().code(), "54000", "{sql}: {db:?}");
        assert!(
            db.message().contains("more than 1000 rows"),
            "{}",
            db.message()
        );
        assert_eq!(cancelled(&proxy), "0", "{sql}");
        assert_eq!(proxy.upstream_sql("SELECT count(*) FROM orders"), "1500");
        // The extended protocol is limited the same way.
        let e = client.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("54000"), "{sql}");
        assert_eq!(proxy.upstream_sql("SELECT count(*) FROM orders"), "1500");
    }
    // Up to the limit runs.
    let n = client
        .execute(
            "UPDATE orders SET status = 'cancelled' WHERE id <= 1000",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1000);
    assert_eq!(cancelled(&proxy), "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_can_be_raised_or_switched_off_explicitly() {
    let raised = proxy("production", "row_limit = 2000").await;
    let client = raised.client().await;
    let n = client
        .execute("UPDATE orders SET status = 'cancelled' WHERE id > 0", &[])
        .await
        .unwrap();
    assert_eq!(n, 1500);

    let off = proxy("production", "row_limit = \"off\"").await;
    let client = off.client().await;
    let n = client
        .execute("UPDATE orders SET status = 'cancelled' WHERE id > 0", &[])
        .await
        .unwrap();
    assert_eq!(n, 1500);
    assert_eq!(cancelled(&off), "1500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_and_development_have_no_default_limit() {
    for environment in ["staging", "development"] {
        let proxy = proxy(environment, "").await;
        let client = proxy.client().await;
        let n = client
            .execute("UPDATE orders SET status = 'cancelled' WHERE id > 0", &[])
            .await
            .unwrap();
        assert_eq!(n, 1500, "{environment}");
    }
}
