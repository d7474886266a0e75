//! The statement-shape cache and the session memo through a real server:
//! texts that differ only in literals share one analysis, and still each
//! gets its own verdict where a literal decides. Database state is checked,
//! not only the answer.

use crate::harness::*;

async fn production() -> Proxy {
    let proxy = Proxy::with(Setup {
        environment: "production",
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql(
        "CREATE TABLE accounts (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
         INSERT INTO accounts (id) SELECT g FROM generate_series(1, 20) g;
         GRANT ALL ON accounts TO PUBLIC;",
    );
    proxy
}

fn changed(proxy: &Proxy) -> String {
    proxy.upstream_sql("SELECT count(*) FROM accounts WHERE v <> 0")
}

/// A tautology decides: `id = 1 OR 1 = 2` touches one row, `id = 1 OR 1 = 1`
/// every row. Alternating the two (same shape) through the simple and the
/// extended protocol, the first always runs and the second never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_tautology_is_judged_every_time() {
    let proxy = production().await;
    let client = proxy.client().await;
    for round in 1..=3 {
        let narrow = format!("UPDATE accounts SET v = {round} WHERE id = {round} OR 1 = 2");
        let wide = format!("UPDATE accounts SET v = {round} WHERE id = {round} OR 1 = 1");
        let wide_text = format!("UPDATE accounts SET v = {round} WHERE id = {round} OR 'a' = 'a'");
        client.simple_query(&narrow).await.unwrap();
        let e = client.simple_query(&wide).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{wide}: {e}");
        let e = client.execute(wide_text.as_str(), &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{wide_text}: {e}");
        assert_eq!(changed(&proxy).trim(), round.to_string(), "round {round}");
    }
    // The same shapes again, now that both analyses are cached.
    let e = client
        .simple_query("UPDATE accounts SET v = 9 WHERE id = 9 OR 7 = 7")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    assert_eq!(changed(&proxy).trim(), "3");
}

/// `set_config`'s first argument decides: a custom setting is harmless,
/// role is an identity change, refused everywhere. The role never changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_named_by_a_literal_is_judged_every_time() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    for _ in 0..3 {
        client
            .simple_query("SELECT set_config('myapp.tag', 'shapes', false)")
            .await
            .unwrap();
        let e = client
            .simple_query("SELECT set_config('role', 'postgres', false)")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    }
    let row = client
        .query_one(
            "SELECT current_user = session_user, current_setting('myapp.tag')",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the role never changed");
    assert_eq!(row.get::<_, String>(1), "shapes");
}

/// Many texts of one shape: every one answered exactly as PostgreSQL
/// answers it directly (values included), in one session and across
/// sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_of_one_shape_return_their_own_rows() {
    let proxy = production().await;
    let a = proxy.client().await;
    let b = proxy.client().await;
    for i in 1..=20 {
        let sql = format!("SELECT id, 'x' || {i} AS tag FROM accounts WHERE id = {i}");
        for client in [&a, &b] {
            let rows = client.query(sql.as_str(), &[]).await.unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].get::<_, i32>(0), i);
            assert_eq!(rows[0].get::<_, String>(1), format!("x{i}"));
        }
    }
}
