//! `[masking] strict` and `inference`, end to end: statements refused
//! before they reach the server (so nothing is computed and nothing
//! changes), by every route, and the session goes on.

use crate::harness::*;
use crate::masking::{assert_no_leak, proxy_with};
use crate::raw::fe;

/// Refused with 42501 and a hint, through the simple and the extended
/// protocol; the session still answers afterwards.
async fn assert_refused(client: &tokio_postgres::Client, sql: &str, message: &str) {
    for extended in [false, true] {
        let e = if extended {
            client.query(sql, &[]).await.map(|_| ()).expect_err(sql)
        } else {
            client.simple_query(sql).await.map(|_| ()).expect_err(sql)
        };
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(db.code().code(), "42501", "{sql}: {e}");
        assert!(db.message().contains(message), "{sql}: {}", db.message());
        assert!(db.hint().is_some(), "{sql}: a hint");
        assert_no_leak(sql, format!("{db:?}").as_bytes());
    }
    let rows = client
        .query("SELECT 1", &[])
        .await
        .expect("session goes on");
    assert_eq!(rows[0].get::<_, i32>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_masking_refuses_computed_values_and_returns_plain_ones_masked() {
    let proxy = proxy_with("[masking]\nstrict = true\n").await;
    proxy.upstream_sql(
        "CREATE VIEW contacts AS SELECT id, email AS reach, upper(full_name) AS who FROM customers;",
    );
    let client = proxy.client().await;
    for sql in [
        "SELECT reverse(email) FROM customers",
        "SELECT id, email || '' FROM customers",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT c FROM customers c",
        "SELECT upper(ssn) FROM customers WHERE id = 1",
        "SELECT who FROM contacts",
    ] {
        assert_refused(&client, sql, "strict masking").await;
    }
    // Refused before it runs: the UPDATE changed nothing.
    assert_refused(
        &client,
        "UPDATE customers SET note = 'touched' WHERE id = 1 RETURNING upper(email)",
        "strict masking",
    )
    .await;
    assert_eq!(
        proxy.upstream_sql("SELECT note FROM customers WHERE id = 1"),
        "prefers mornings"
    );
    // SQL PREPARE is judged by its body; EXECUTE of a name that was never
    // prepared is refused too.
    let e = client
        .simple_query("PREPARE p AS SELECT reverse(email) FROM customers")
        .await
        .expect_err("PREPARE");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    let e = client.simple_query("EXECUTE p").await.expect_err("EXECUTE");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    // Plain columns still come back, masked.
    let rows = client
        .query(
            "SELECT email, reach FROM customers JOIN contacts USING (id) WHERE id = 1",
            &[],
        )
        .await
        .expect("plain columns");
    let (email, reach): (String, String) = (rows[0].get(0), rows[0].get(1));
    assert_no_leak("plain columns", format!("{email} {reach}").as_bytes());
    assert!(
        email.ends_with("@example.com"),
        "partial email mask: {email}"
    );
    assert!(
        reach.ends_with("@example.com"),
        "a view's email is an email: {reach}"
    );
    client
        .simple_query("PREPARE q AS SELECT email, upper(note) FROM customers")
        .await
        .expect("PREPARE of plain columns");
    let got = client.simple_query("EXECUTE q").await.expect("EXECUTE");
    assert_no_leak("EXECUTE", format!("{got:?}").as_bytes());
    // The raw extended protocol, without Describe.
    let mut raw = crate::masking::raw(&proxy).await;
    let got = crate::masking::received(
        &mut raw,
        &fe::concat(&[
            fe::parse("", "SELECT md5(email) FROM customers", &[]),
            fe::bind("", "", &[]),
            fe::execute("", 0),
            fe::sync(),
        ]),
    )
    .await;
    assert_no_leak("raw extended", &got);
    assert!(String::from_utf8_lossy(&got).contains("strict masking"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_refuse_refuses_rows_chosen_by_protected_columns() {
    let proxy = proxy_with("[masking]\ninference = \"refuse\"\n").await;
    proxy.upstream_sql(
        "CREATE TABLE orders (id int, customer_email text, total int);
         INSERT INTO orders VALUES (1, 'alice.smithson@example.com', 10);
         CREATE VIEW fives AS SELECT id FROM customers WHERE ssn LIKE '5%';",
    );
    let client = proxy.client().await;
    for sql in [
        "SELECT id FROM customers WHERE ssn LIKE '5%'",
        "SELECT id FROM customers ORDER BY email",
        "SELECT count(*) FROM customers GROUP BY ssn",
        "SELECT o.id FROM orders o JOIN customers c ON c.email = o.customer_email",
        "WITH x AS (SELECT id FROM customers WHERE email LIKE 'a%') SELECT id FROM x",
        "SELECT id FROM (SELECT id, ssn FROM customers) s WHERE ssn > '5'",
        "SELECT id FROM orders WHERE EXISTS (SELECT 1 FROM customers c WHERE c.email = orders.customer_email)",
        "SELECT id FROM fives",
    ] {
        assert_refused(&client, sql, "chooses, groups or orders rows").await;
    }
    assert_refused(
        &client,
        "UPDATE customers SET note = 'guessed' WHERE ssn = '536-22-8174'",
        "chooses, groups or orders rows",
    )
    .await;
    assert_eq!(
        proxy.upstream_sql("SELECT count(*) FROM customers WHERE note = 'guessed'"),
        "0"
    );
    // Choosing rows by what is not protected runs.
    let rows = client
        .query(
            "SELECT id, email FROM customers WHERE id = 2 ORDER BY id",
            &[],
        )
        .await
        .expect("not protected");
    assert_eq!(rows.len(), 1);
    client
        .simple_query("UPDATE customers SET note = 'seen' WHERE id = 2")
        .await
        .expect("UPDATE by id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_is_flagged_by_default_and_runs() {
    let proxy = proxy_with("").await;
    let client = proxy.client().await;
    let rows = client
        .query("SELECT id FROM customers WHERE ssn LIKE '5%'", &[])
        .await
        .expect("flagged, not refused");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), 1);
    let rows = client
        .query("SELECT reverse(email) FROM customers ORDER BY email", &[])
        .await
        .expect("not strict");
    assert_eq!(rows.len(), 2);
    assert_no_leak("masked whole", rows[0].get::<_, String>(0).as_bytes());
}
