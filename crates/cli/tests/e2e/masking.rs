//! Dynamic masking, end to end: values of classified columns never reach
//! the client, whatever route the statement takes; everything else is
//! sent as it is.

use portcullis_wire::ProtocolVersion;
use tokio_postgres::SimpleQueryMessage;

use crate::harness::*;
use crate::raw::{fe, Raw};

/// Values that real detectors accept: a valid-range SSN, Luhn-valid
/// cards, mod-97-valid IBANs, a GitHub token with its checksum.
pub const SEEDED: &[&str] = &[
    "Alice Smithson",
    "alice.smithson@example.com",
    "+44 20 7946 0958",
    "536-22-8174",
    "4539148803436467",
    "GB82WEST12345698765432",
    "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",
    "Bob Okonkwo",
    "bob.okonkwo@example.org",
    "+1 415 555 0199",
    "078-05-1120",
    "5375123456789011",
    "DE89370400440532013000",
];

pub const SETUP: &str = "
CREATE TABLE customers (
    id int PRIMARY KEY,
    full_name text NOT NULL,
    email text NOT NULL,
    phone varchar(20),
    ssn char(11),
    card_number text,
    iban text,
    birth_date date,
    api_token text,
    note text,
    balance numeric(10,2)
);
INSERT INTO customers VALUES
 (1, 'Alice Smithson', 'alice.smithson@example.com', '+44 20 7946 0958', '536-22-8174',
  '4539148803436467', 'GB82WEST12345698765432', '1984-03-09',
  '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', 'prefers mornings', 120.50),
 (2, 'Bob Okonkwo', 'bob.okonkwo@example.org', '+1 415 555 0199', '078-05-1120',
  '5375123456789011', 'DE89370400440532013000', '1990-11-30', NULL, 'vip', 99.00);
CREATE TABLE plain_notes (id int, body text);
";

/// Every form of a seeded value a leak could take.
pub fn forms(value: &str) -> Vec<String> {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    let mut out = vec![
        value.to_owned(),
        value.to_lowercase(),
        value.chars().rev().collect(),
        value.bytes().map(|b| format!("{b:02x}")).collect(),
        base64(value.as_bytes()),
    ];
    if digits.len() >= 7 {
        out.push(digits);
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Panics if any form of any seeded value is in `received`.
pub fn assert_no_leak(what: &str, received: &[u8]) {
    let text = String::from_utf8_lossy(received).to_lowercase();
    let digits_only: String = text.chars().filter(char::is_ascii_digit).collect();
    for v in SEEDED {
        for f in forms(v) {
            let f = f.to_lowercase();
            let is_digits = f.chars().all(|c| c.is_ascii_digit());
            let hay = if is_digits { &digits_only } else { &text };
            assert!(!hay.contains(&f), "{what}: leaked {v:?} as {f:?}");
        }
    }
}

pub async fn proxy_with(extra: &str) -> Proxy {
    let proxy = Proxy::with(Setup {
        extra: extra.into(),
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql(SETUP);
    proxy
}

pub async fn raw(proxy: &Proxy) -> Raw {
    Raw::login(
        proxy.addr,
        ProtocolVersion::V3_0,
        &[("user", ALICE.0), ("database", "app")],
        ALICE.1,
    )
    .await
    .expect("login")
}

/// Every byte the client receives for `messages`, up to ReadyForQuery.
pub async fn received(raw: &mut Raw, messages: &[u8]) -> Vec<u8> {
    raw.send(messages).await;
    raw.until_ready()
        .await
        .iter()
        .flat_map(|m| m.bytes())
        .collect()
}

fn simple_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classified_columns_are_masked_and_the_rest_passes() {
    let proxy = proxy_with("").await;
    let client = proxy.client().await;
    let rows = simple_rows(
        &client
            .simple_query("SELECT * FROM customers ORDER BY id")
            .await
            .unwrap(),
    );
    assert_eq!(rows.len(), 2);
    let all: String = format!("{rows:?}");
    assert_no_leak("simple SELECT *", all.as_bytes());
    // Columns nothing classifies arrive as stored.
    assert_eq!(rows[0][0].as_deref(), Some("1"));
    assert_eq!(rows[0][9].as_deref(), Some("prefers mornings"));
    assert_eq!(rows[0][10].as_deref(), Some("120.50"));
    assert_eq!(rows[1][8], None, "NULL stays NULL");

    // The extended protocol, as tokio-postgres sends it: Describe of the
    // statement, then Bind/Execute without describing the portal.
    for _ in 0..2 {
        let rows = client
            .query(
                "SELECT id, email, full_name, note FROM customers ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        let email: String = rows[0].get(1);
        let name: String = rows[0].get(2);
        let note: String = rows[0].get(3);
        assert_no_leak("extended", format!("{email} {name}").as_bytes());
        assert_ne!(email, "alice.smithson@example.com");
        assert_eq!(note, "prefers mornings");
        assert_eq!(rows[0].get::<_, i32>(0), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_carries_a_seeded_value() {
    let proxy = proxy_with("").await;
    let mut raw = raw(&proxy).await;
    let queries = [
        "SELECT * FROM customers",
        "SELECT email AS contact, ssn AS x, card_number AS y FROM customers",
        "SELECT c.email, c.iban FROM customers c",
        "SELECT reverse(email), upper(full_name), lower(iban) FROM customers",
        "SELECT email || '', ssn::text, card_number::numeric FROM customers",
        "SELECT string_agg(email, ',') FROM customers",
        "SELECT json_agg(c) FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT c FROM customers c",
        "SELECT ARRAY[email, phone] FROM customers",
        "SELECT jsonb_build_object('e', email) FROM customers",
        "SELECT xmlelement(name x, email) FROM customers",
        "SELECT e FROM (SELECT email AS e FROM customers) s",
        "WITH x AS (SELECT ssn FROM customers) SELECT * FROM x",
        "SELECT email FROM customers UNION ALL SELECT 'x'",
        "SELECT (SELECT max(card_number) FROM customers)",
        "SELECT encode(convert_to(email, 'UTF8'), 'hex') FROM customers",
        "SELECT encode(convert_to(email, 'UTF8'), 'base64') FROM customers",
        "SELECT substr(ssn, 1, 3), substr(ssn, 4) FROM customers",
        "SELECT * FROM customers; SELECT email FROM customers",
    ];
    for q in queries {
        let got = received(&mut raw, &fe::query(q)).await;
        assert_no_leak(q, &got);
    }
    // Extended protocol without a Describe, twice (a driver that cached
    // the description), and with a binary result format.
    for q in queries.iter().take(15) {
        let mut m = fe::parse("", q, &[]);
        m.extend(fe::bind("", "", &[]));
        m.extend(fe::execute("", 0));
        m.extend(fe::execute("", 0));
        m.extend(fe::sync());
        let got = received(&mut raw, &m).await;
        assert_no_leak(q, &got);
    }
    // A portal fetched a row at a time.
    let mut m = fe::parse("s1", "SELECT email FROM customers", &[]);
    m.extend(fe::bind("p1", "s1", &[]));
    m.extend(fe::execute("p1", 1));
    m.extend(fe::flush());
    m.extend(fe::execute("p1", 1));
    m.extend(fe::sync());
    let got = received(&mut raw, &m).await;
    assert_no_leak("fetch one at a time", &got);
    // SQL PREPARE / EXECUTE and cursors.
    for q in [
        "PREPARE q AS SELECT reverse(email) FROM customers; EXECUTE q",
        "BEGIN; DECLARE c CURSOR FOR SELECT upper(email) FROM customers; FETCH ALL c; COMMIT",
        "BEGIN; DECLARE d CURSOR FOR SELECT ssn FROM customers; FETCH ALL d; COMMIT",
    ] {
        let got = received(&mut raw, &fe::query(q)).await;
        assert_no_leak(q, &got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_copy_masked_columns_away_are_refused() {
    let proxy = proxy_with("").await;
    let client = proxy.client().await;
    for sql in [
        "CREATE TABLE stolen AS SELECT * FROM customers",
        "SELECT email INTO stolen FROM customers",
        "CREATE MATERIALIZED VIEW stolen AS SELECT ssn FROM customers",
        "CREATE VIEW stolen AS SELECT email FROM customers",
        "INSERT INTO plain_notes SELECT id, email FROM customers",
        "WITH x AS (SELECT email FROM customers) INSERT INTO plain_notes SELECT 1, email FROM x",
        "UPDATE plain_notes SET body = c.email FROM customers c WHERE c.id = plain_notes.id",
        // COPY output whose layout the proxy cannot follow.
        "COPY customers TO STDOUT (ENCODING 'SJIS')",
    ] {
        let e = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
        let e = client.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    assert_eq!(
        proxy.upstream_sql("SELECT count(*) FROM pg_class WHERE relname = 'stolen'"),
        "0"
    );
    assert_eq!(proxy.upstream_sql("SELECT count(*) FROM plain_notes"), "0");
    // WHERE chooses rows: what is written is no one's secret.
    client
        .execute(
            "UPDATE customers SET note = 'called' WHERE email LIKE '%example.org'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        proxy.upstream_sql("SELECT note FROM customers WHERE id = 2"),
        "called"
    );
}

/// A second copy of customers, for statements that read one and write
/// the other.
const CUSTOMERS_2: &str = "CREATE TABLE customers_2 (LIKE customers INCLUDING ALL);
INSERT INTO customers_2 SELECT * FROM customers;";

/// The notes and emails of customers, as stored.
fn stored(proxy: &Proxy) -> String {
    proxy.upstream_sql(
        "SELECT string_agg(id || ':' || coalesce(note, '-') || ':' || email, ',' ORDER BY id) FROM customers",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_values_written_where_they_would_not_be_masked_are_refused() {
    let proxy = proxy_with("").await;
    proxy.upstream_sql(CUSTOMERS_2);
    let client = proxy.client().await;
    let before = stored(&proxy);
    for sql in [
        // note is not classified: a plain SELECT note would return them.
        "UPDATE customers SET note = ssn WHERE id = 1",
        "UPDATE customers SET note = ssn WHERE id = 1 RETURNING note",
        "UPDATE customers SET note = upper(full_name) WHERE id = 1",
        "UPDATE customers SET email = ssn WHERE id = 1",
        "UPDATE customers SET (note, balance) = (SELECT s.full_name, 1 FROM customers_2 s WHERE s.id = customers.id) WHERE id = 1",
        "INSERT INTO customers (id, full_name, email, note) SELECT id + 100, full_name, email, ssn FROM customers",
        "INSERT INTO customers (id, full_name, email) SELECT id, full_name, email FROM customers_2 \
         ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.full_name",
        "MERGE INTO customers c USING customers_2 s ON c.id = s.id WHEN MATCHED THEN UPDATE SET note = s.ssn",
        "WITH u AS (UPDATE customers SET note = phone WHERE id = 1 RETURNING id) SELECT count(*) FROM u",
        "ALTER TABLE customers ALTER COLUMN note TYPE text USING ssn",
    ] {
        let e = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
        assert_no_leak(sql, e.to_string().as_bytes());
        let e = client.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    assert_eq!(stored(&proxy), before, "nothing changed");
    let e = client
        .simple_query("UPDATE customers SET note = ssn WHERE id = 1")
        .await
        .unwrap_err();
    let db = e.as_db_error().expect("an ErrorResponse");
    assert!(
        db.message().contains("\"ssn\"") && db.message().contains("national_id"),
        "{}",
        db.message()
    );
    assert!(db.hint().is_some());

    // What is written from columns nobody protects, or into the column
    // it came from, runs: by either protocol.
    client
        .simple_query("INSERT INTO plain_notes SELECT id, 'x' FROM customers")
        .await
        .unwrap();
    client
        .execute("INSERT INTO plain_notes SELECT id, 'y' FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(
        proxy.upstream_sql("SELECT string_agg(id || body, ',' ORDER BY body, id) FROM plain_notes"),
        "1x,2x,1y,2y"
    );
    client
        .simple_query("CREATE TABLE ids AS SELECT id FROM customers")
        .await
        .unwrap();
    client
        .execute(
            "CREATE TABLE ids_again AS SELECT id, note FROM customers",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        proxy.upstream_sql("SELECT (SELECT count(*) FROM ids) + (SELECT count(*) FROM ids_again)"),
        "4"
    );
    client
        .simple_query("UPDATE customers SET email = lower(email) WHERE id = 1")
        .await
        .unwrap();
    client
        .execute(
            "UPDATE customers SET note = 'called' WHERE ssn LIKE '078%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        stored(&proxy),
        "1:prefers mornings:alice.smithson@example.com,2:called:bob.okonkwo@example.org"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_unmask_a_column_may_write_its_values_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policies.cedar"),
        r#"
@id("allow-statements")
permit(principal, action, resource);

@id("agents-see-ssns")
permit(principal in Portcullis::Group::"agents", action == Portcullis::Action::"Unmask", resource)
when { resource.classification == "national_id" && context.environment == "development" };
"#,
    )
    .unwrap();
    let proxy = proxy_with(&format!(
        "[policy]\nfiles = [\"{}\"]\n",
        dir.path().display()
    ))
    .await;
    let sql = "UPDATE customers SET note = ssn WHERE id = 2";
    // Alice may not see SSNs: refused.
    let alice = proxy.client().await;
    let e = alice.execute(sql, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    // Bob may: his to copy.
    let bob = proxy.connect(&proxy.conn_str(BOB, "")).await.unwrap();
    bob.execute(sql, &[]).await.unwrap();
    assert_eq!(
        proxy.upstream_sql("SELECT note FROM customers WHERE id = 2"),
        "078-05-1120"
    );
    // Not emails, though.
    let e = bob
        .simple_query("UPDATE customers SET note = email WHERE id = 2")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
}

/// Everything a COPY TO STDOUT sends, through the extended protocol.
async fn copy_out(client: &tokio_postgres::Client, sql: &str) -> Vec<u8> {
    use futures_util::StreamExt;
    let stream = client.copy_out(sql).await.expect(sql);
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect(sql));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_is_masked_in_every_format() {
    let proxy = proxy_with("").await;
    proxy.upstream_sql("CREATE TABLE customers_back (LIKE customers)");
    let client = proxy.client().await;
    let mut raw = raw(&proxy).await;
    for options in [
        "",
        "(FORMAT csv)",
        "WITH CSV HEADER",
        "(FORMAT csv, HEADER, DELIMITER ';', NULL 'NIL', QUOTE '''', FORCE_QUOTE *)",
        "(FORMAT text, DELIMITER '|', NULL '', HEADER true)",
        "(FORMAT binary)",
        "WITH BINARY",
    ] {
        let sql = format!("COPY customers TO STDOUT {options}");
        let data = copy_out(&client, &sql).await;
        assert_no_leak(&sql, &data);
        // Unclassified values pass as they are.
        let text = String::from_utf8_lossy(&data);
        assert!(text.contains("prefers mornings"), "{sql}: {text}");
        // The simple protocol.
        let got = received(&mut raw, &fe::query(&sql)).await;
        assert_no_leak(&sql, &got);
        // Every masked value is one its column's type accepts: PostgreSQL
        // reads the output back in the same format.
        proxy.upstream_sql("TRUNCATE customers_back");
        let sink = client
            .copy_in::<_, bytes::Bytes>(&format!(
                "COPY customers_back FROM STDIN {}",
                options.replace(", FORCE_QUOTE *", "")
            ))
            .await
            .unwrap();
        futures_util::pin_mut!(sink);
        use futures_util::SinkExt;
        sink.send(bytes::Bytes::from(data)).await.unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap(), 2, "{sql}");
        assert_eq!(
            proxy.upstream_sql(
                "SELECT count(*) FROM customers_back b JOIN customers c USING (id) \
                 WHERE b.note IS NOT DISTINCT FROM c.note AND b.balance = c.balance \
                 AND b.email <> c.email AND b.ssn <> c.ssn AND b.card_number <> c.card_number"
            ),
            "2",
            "{sql}"
        );
    }
    // Column lists, queries and several statements in one Query.
    for sql in [
        "COPY customers (id, email, note) TO STDOUT",
        "COPY customers (ssn, card_number, iban) TO STDOUT (FORMAT binary)",
        "COPY (SELECT id, email, upper(note) FROM customers) TO STDOUT (FORMAT csv)",
        "COPY (SELECT * FROM customers) TO STDOUT (FORMAT binary)",
        "COPY (SELECT reverse(email), ssn || '' FROM customers) TO STDOUT",
        "COPY (SELECT c FROM customers c) TO STDOUT (FORMAT csv)",
        "COPY (UPDATE customers SET note = note WHERE id = 1 RETURNING email, note) TO STDOUT",
    ] {
        let data = copy_out(&client, sql).await;
        assert_no_leak(sql, &data);
        let got = received(&mut raw, &fe::query(sql)).await;
        assert_no_leak(sql, &got);
    }
    let text = String::from_utf8_lossy(
        &copy_out(&client, "COPY customers (id, email, note) TO STDOUT").await,
    )
    .into_owned();
    assert!(
        text.contains("1\t") && text.contains("\tprefers mornings\n"),
        "{text}"
    );
    let script = "SELECT 1; COPY customers TO STDOUT (FORMAT csv); SELECT email FROM customers; COPY customers (ssn) TO STDOUT";
    let got = received(&mut raw, &fe::query(script)).await;
    assert_no_leak(script, &got);
    // A table with nothing classified is copied as it is, in any encoding.
    proxy.upstream_sql("INSERT INTO plain_notes VALUES (7, 'nothing to hide')");
    let data = copy_out(&client, "COPY plain_notes TO STDOUT (ENCODING 'LATIN1')").await;
    assert_eq!(data, b"7\tnothing to hide\n");
}

/// A CopyDone outside copy mode is ignored by the server. It must not
/// shift the proxy's count of a later Query's statements (the row masking
/// and the prepared statements of statement n would go by statement n-1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_copy_done_does_not_shift_later_statements() {
    let proxy = proxy_with("").await;
    let mut raw = raw(&proxy).await;
    for q in [
        "SET IntervalStyle = 'iso_8601'; SELECT upper(full_name), lower(email) FROM customers",
        "SELECT 1; COPY (SELECT upper(full_name) FROM customers) TO STDOUT",
    ] {
        let m = fe::concat(&[fe::copy_done(), fe::query(q)]);
        let got = received(&mut raw, &m).await;
        assert_no_leak(q, &got);
        assert!(
            !String::from_utf8_lossy(&got).contains("ALICE SMITHSON"),
            "{q}"
        );
    }
    // The prepared statement the second statement makes is known.
    let m = fe::concat(&[
        fe::copy_fail("none"),
        fe::query("SET IntervalStyle = 'postgres'; PREPARE p AS SELECT 42"),
    ]);
    received(&mut raw, &m).await;
    raw.send(&fe::query("EXECUTE p")).await;
    let got = raw.until_ready().await;
    assert!(
        crate::raw::tags(&got).contains('D'),
        "{}",
        crate::raw::tags(&got)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_notifications_do_not_carry_values() {
    let proxy = proxy_with("").await;
    let mut raw = raw(&proxy).await;
    for q in [
        "SELECT email::int FROM customers",
        "SELECT ssn::int FROM customers",
        "SELECT card_number::date FROM customers",
        "INSERT INTO customers (id, full_name, email) VALUES (1, 'x', 'alice.smithson@example.com')",
        "DO $$ BEGIN RAISE NOTICE 'card %', '4539148803436467'; END $$",
        "LISTEN ch; NOTIFY ch, 'iban GB82WEST12345698765432 ssn 536-22-8174'",
    ] {
        let got = received(&mut raw, &fe::query(q)).await;
        assert_no_leak(q, &got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_are_masked_whole_or_the_session_ends() {
    let proxy = proxy_with("[masking]\nmax_row_bytes = 1000000\n").await;
    let big = format!("{}alice.smithson@example.com", "x".repeat(300_000));
    proxy.upstream_sql(&format!(
        "INSERT INTO customers (id, full_name, email) VALUES (3, 'n', '{big}')"
    ));
    let client = proxy.client().await;
    let rows = client
        .query("SELECT email FROM customers WHERE id = 3", &[])
        .await
        .unwrap();
    let got: String = rows[0].get(0);
    assert_no_leak("300 KB value", got.as_bytes());
    // Over the limit: nothing of it reaches the client.
    let huge = "y".repeat(1_200_000);
    proxy.upstream_sql(&format!(
        "UPDATE customers SET email = '{huge}' WHERE id = 3"
    ));
    let mut raw = raw(&proxy).await;
    raw.send(&fe::query("SELECT email FROM customers WHERE id = 3"))
        .await;
    let msgs = raw.until_closed().await;
    let bytes: Vec<u8> = msgs.iter().flat_map(|m| m.bytes()).collect();
    assert!(!String::from_utf8_lossy(&bytes).contains(&huge[..1000]));
    let err = msgs.iter().find(|m| m.tag() == 'E').expect("an error");
    assert_eq!(err.code().as_deref(), Some("54000"));
    // Unclassified text is scanned, so it must arrive whole too...
    proxy.upstream_sql("INSERT INTO plain_notes SELECT 1, repeat('z', 2000000)");
    let mut plain = self::raw(&proxy).await;
    plain.send(&fe::query("SELECT body FROM plain_notes")).await;
    let msgs = plain.until_closed().await;
    let err = msgs.iter().find(|m| m.tag() == 'E').expect("an error");
    assert_eq!(err.code().as_deref(), Some("54000"));
    // ... but rows nobody masks or scans stream as before, however large.
    // (A comment made through the proxy: the catalog is reloaded after it.)
    proxy
        .client()
        .await
        .batch_execute("COMMENT ON COLUMN plain_notes.body IS 'pii:none'")
        .await
        .unwrap();
    let mut tries = 0;
    let rows = loop {
        let client = proxy.client().await;
        match client.query("SELECT body FROM plain_notes", &[]).await {
            Ok(rows) => break rows,
            Err(e) if tries < 50 => {
                assert_eq!(sqlstate(&e).as_deref(), Some("54000"), "{e}");
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the comment was not seen: {e}"),
        }
    };
    assert_eq!(rows[0].get::<_, String>(0).len(), 2_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masking_can_be_switched_off() {
    let proxy = proxy_with("[masking]\nenabled = false\n").await;
    let client = proxy.client().await;
    let rows = client
        .query("SELECT email FROM customers WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "alice.smithson@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_decides_who_sees_values_unmasked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policies.cedar"),
        r#"
@id("allow-statements")
permit(principal, action, resource);

@id("agents-see-emails")
permit(principal in Portcullis::Group::"agents", action == Portcullis::Action::"Unmask", resource)
when { resource.classification == "email" && context.environment == "development" };
"#,
    )
    .unwrap();
    let proxy = proxy_with(&format!(
        "[policy]\nfiles = [\"{}\"]\n",
        dir.path().display()
    ))
    .await;
    let sql = "SELECT email, ssn FROM customers WHERE id = 1";
    // Bob is in "agents": emails unmasked, SSNs still masked.
    let bob = proxy.connect(&proxy.conn_str(BOB, "")).await.unwrap();
    let rows = bob.query(sql, &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "alice.smithson@example.com");
    assert_ne!(rows[0].get::<_, String>(1), "536-22-8174");
    // A computed value of his own email column is his to see as well.
    let rows = bob
        .query("SELECT upper(email) FROM customers WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "ALICE.SMITHSON@EXAMPLE.COM");
    // Alice is not.
    let alice = proxy.client().await;
    let rows = alice.query(sql, &[]).await.unwrap();
    assert_ne!(rows[0].get::<_, String>(0), "alice.smithson@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_columns_are_masked_by_what_they_are_computed_from() {
    let proxy = proxy_with("").await;
    proxy.upstream_sql(
        "CREATE VIEW contacts AS SELECT id, email AS reach, upper(full_name) AS who, note FROM customers;
         CREATE VIEW contacts_again AS SELECT reach, id FROM contacts;",
    );
    let client = proxy.client().await;
    let rows = client
        .query(
            "SELECT id, reach, who, note FROM contacts WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 1, "id is no one's secret");
    assert_eq!(rows[0].get::<_, String>(3), "prefers mornings");
    let reach: String = rows[0].get(1);
    let who: String = rows[0].get(2);
    assert_no_leak("a view", format!("{reach} {who}").as_bytes());
    let rows = client
        .query("SELECT * FROM contacts_again WHERE id = 1", &[])
        .await
        .unwrap();
    let reach: String = rows[0].get(0);
    assert_no_leak("a view over a view", reach.as_bytes());
    assert_eq!(rows[0].get::<_, i32>(1), 1);
}
