//! The masking leak corpus: queries of every family that could carry a
//! seeded value out, each through every route, asserting that no form of
//! any seeded value is in the bytes the client received; and
//! type-correctness: every masked value is a value of its column's type,
//! in text and in binary format, as PostgreSQL itself reads it.

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

use crate::harness::*;
use crate::masking::{assert_no_leak, raw, received, SETUP};
use crate::raw::fe;

/// Views and functions over the seeded table, made before the first
/// session so the catalog knows them.
const MORE: &str = "
CREATE VIEW contacts AS SELECT id, email AS contact, phone AS reach FROM customers;
CREATE VIEW notes_only AS SELECT id, note FROM customers;
CREATE FUNCTION contact_of(i int) RETURNS text LANGUAGE sql AS 'SELECT email FROM customers WHERE id = i';
CREATE TABLE customers_2 (LIKE customers INCLUDING ALL);
INSERT INTO customers_2 SELECT * FROM customers;
";

/// One query per line of attack; each runs as a simple Query and, where
/// it is a single statement returning rows, through the extended protocol
/// without a Describe, in text and in binary.
const CORPUS: &[&str] = &[
    // Plain columns and aliases.
    "SELECT * FROM customers",
    "TABLE customers",
    "SELECT email FROM customers",
    "SELECT email AS x FROM customers",
    "SELECT c.ssn AS \"not a secret\" FROM customers c",
    "SELECT customers.card_number FROM customers",
    "SELECT public.customers.iban FROM public.customers",
    "SELECT full_name, phone, api_token FROM customers ORDER BY id",
    "SELECT * FROM customers_2",
    // Expressions and casts.
    "SELECT email || '' FROM customers",
    "SELECT '' || ssn FROM customers",
    "SELECT ssn::text FROM customers",
    "SELECT card_number::numeric FROM customers",
    "SELECT card_number::numeric + 0 FROM customers",
    "SELECT CAST(iban AS varchar(40)) FROM customers",
    "SELECT birth_date::text FROM customers",
    "SELECT COALESCE(email, 'x') FROM customers",
    "SELECT NULLIF(ssn, 'x') FROM customers",
    "SELECT CASE WHEN id > 0 THEN email END FROM customers",
    "SELECT GREATEST(email, '') FROM customers",
    "SELECT (email) FROM customers",
    // String functions.
    "SELECT reverse(email) FROM customers",
    "SELECT upper(full_name) FROM customers",
    "SELECT lower(iban) FROM customers",
    "SELECT substr(card_number, 1, 8), substr(card_number, 9) FROM customers",
    "SELECT replace(ssn, '-', '') FROM customers",
    "SELECT split_part(email, '@', 1), split_part(email, '@', 2) FROM customers",
    "SELECT translate(card_number, '0123456789', '9876543210') FROM customers",
    "SELECT encode(convert_to(email, 'UTF8'), 'hex') FROM customers",
    "SELECT encode(convert_to(ssn, 'UTF8'), 'base64') FROM customers",
    "SELECT md5(email) = md5(email), length(email) FROM customers",
    "SELECT format('%s/%s', full_name, phone) FROM customers",
    "SELECT concat_ws(',', email, ssn) FROM customers",
    "SELECT regexp_replace(email, '@', ' at ') FROM customers",
    "SELECT left(api_token, 20), right(api_token, 20) FROM customers",
    "SELECT overlay(card_number placing 'x' from 1 for 1) FROM customers",
    "SELECT string_to_array(ssn, '-') FROM customers",
    "SELECT regexp_split_to_table(email, '@') FROM customers",
    "SELECT unnest(string_to_array(card_number, '5')) FROM customers",
    "SELECT quote_literal(email) FROM customers",
    // Aggregates and windows.
    "SELECT string_agg(email, ',') FROM customers",
    "SELECT max(card_number), min(ssn) FROM customers",
    "SELECT array_agg(phone) FROM customers",
    "SELECT first_value(email) OVER (ORDER BY id) FROM customers",
    "SELECT lag(iban) OVER (ORDER BY id) FROM customers",
    "SELECT count(*), string_agg(full_name, ' ' ORDER BY id) FROM customers",
    // JSON, XML, arrays, rows.
    "SELECT row_to_json(c) FROM customers c",
    "SELECT to_jsonb(c.*) FROM customers c",
    "SELECT json_agg(c) FROM customers c",
    "SELECT jsonb_agg(email) FROM customers",
    "SELECT json_build_object('e', email, 's', ssn) FROM customers",
    "SELECT jsonb_build_array(card_number) FROM customers",
    "SELECT json_object_agg(id, email) FROM customers",
    "SELECT xmlelement(name c, email) FROM customers",
    "SELECT xmlforest(email, ssn) FROM customers",
    "SELECT xmlagg(xmlelement(name e, iban)) FROM customers",
    "SELECT ARRAY[email, phone, ssn] FROM customers",
    "SELECT ARRAY(SELECT card_number FROM customers)",
    "SELECT c FROM customers c",
    "SELECT c::text FROM customers c",
    "SELECT ROW(email, ssn) FROM customers",
    "SELECT (c).email FROM customers c",
    // Sub-queries, set operations, CTEs, joins, LATERAL.
    "SELECT (SELECT email FROM customers LIMIT 1)",
    "SELECT e FROM (SELECT email AS e FROM customers) s",
    "SELECT * FROM (SELECT reverse(email) AS e, id FROM customers) s",
    "SELECT x FROM (SELECT ssn FROM customers) AS s(x)",
    "SELECT email FROM customers UNION SELECT 'x'",
    "SELECT 'x' UNION ALL SELECT ssn FROM customers",
    "SELECT card_number FROM customers INTERSECT SELECT card_number FROM customers",
    "SELECT iban FROM customers EXCEPT SELECT 'x'",
    "WITH x AS (SELECT ssn FROM customers) SELECT * FROM x",
    "WITH x(a) AS (SELECT email FROM customers) SELECT upper(a) FROM x",
    "WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers WHERE id = 1 UNION ALL SELECT n + 1, e FROM r WHERE n < 3) SELECT e FROM r",
    "SELECT a.email, b.ssn FROM customers a JOIN customers b USING (id)",
    "SELECT * FROM customers a JOIN customers_2 b USING (id)",
    "SELECT * FROM customers NATURAL JOIN customers_2",
    "SELECT l.x FROM customers c, LATERAL (SELECT c.email AS x) l",
    "SELECT v FROM customers c, LATERAL unnest(ARRAY[c.phone, c.iban]) v",
    "SELECT DISTINCT ON (id) email FROM customers ORDER BY id",
    "SELECT email FROM customers GROUP BY email",
    // Views and functions.
    "SELECT * FROM contacts",
    "SELECT contact FROM contacts",
    "SELECT upper(reach) FROM contacts",
    "SELECT contact_of(1)",
    "SELECT * FROM notes_only",
    // Returning rows from writes.
    "UPDATE customers SET note = note WHERE id = 1 RETURNING email, ssn",
    "WITH u AS (UPDATE customers SET note = note RETURNING card_number) SELECT * FROM u",
    "DELETE FROM customers_2 WHERE id = 99 RETURNING *",
    "INSERT INTO customers_2 SELECT * FROM customers_2 WHERE false RETURNING email",
    // SHOW / catalog reads that could hold values.
    "SELECT current_setting('application_name')",
];

/// Several statements, cursors, prepared statements and copies: simple
/// Query only.
const SCRIPTS: &[&str] = &[
    "SELECT email FROM customers; SELECT ssn FROM customers",
    "PREPARE q AS SELECT reverse(email) FROM customers; EXECUTE q; DEALLOCATE q",
    "PREPARE p(int) AS SELECT card_number FROM customers WHERE id = $1; EXECUTE p(1); DEALLOCATE p",
    "BEGIN; DECLARE c CURSOR FOR SELECT upper(email) FROM customers; FETCH ALL c; COMMIT",
    "BEGIN; DECLARE d CURSOR FOR SELECT ssn FROM customers; FETCH 1 d; FETCH NEXT d; MOVE BACKWARD 1 d; FETCH d; COMMIT",
    "BEGIN; DECLARE b BINARY CURSOR FOR SELECT email, ssn FROM customers; FETCH ALL b; COMMIT",
    "COPY customers TO STDOUT",
    "COPY customers (email) TO STDOUT WITH (FORMAT csv)",
    "COPY (SELECT ssn FROM customers) TO STDOUT WITH (FORMAT binary)",
    "COPY customers TO STDOUT WITH CSV HEADER",
    "COPY customers (full_name, phone, api_token) TO STDOUT (FORMAT csv, FORCE_QUOTE *)",
    "COPY customers TO STDOUT (FORMAT text, DELIMITER '@', NULL 'ghp_')",
    "COPY customers TO STDOUT (FORMAT csv, QUOTE '4', DELIMITER '5')",
    "COPY (SELECT email || '' FROM customers) TO STDOUT",
    "COPY (SELECT row_to_json(c) FROM customers c) TO STDOUT (FORMAT csv)",
    "COPY (SELECT * FROM customers c JOIN customers_2 USING (id)) TO STDOUT (FORMAT binary)",
    "BEGIN; DECLARE k CURSOR FOR SELECT email FROM customers; COPY (SELECT 1) TO STDOUT; FETCH ALL k; COMMIT",
    "SELECT email::int FROM customers",
    "SELECT ssn::date FROM customers",
    "SELECT card_number::int FROM customers",
    "SELECT iban::uuid FROM customers",
    "INSERT INTO customers (id, full_name, email) VALUES (1, 'x', 'alice.smithson@example.com')",
    "INSERT INTO customers (id, full_name, email, ssn) VALUES (9, 'x', 'y', '536-22-8174'); ALTER TABLE customers ADD CONSTRAINT u UNIQUE (ssn)",
    "DO $$ BEGIN RAISE NOTICE '%', (SELECT email FROM customers LIMIT 1); END $$",
    "DO $$ BEGIN RAISE EXCEPTION 'card %', (SELECT card_number FROM customers LIMIT 1); END $$",
    "DO $$ BEGIN RAISE WARNING 'x' USING DETAIL = 'GB82WEST12345698765432'; END $$",
    "LISTEN ch; NOTIFY ch, 'iban GB82WEST12345698765432 ssn 536-22-8174'",
    "LISTEN ch2; SELECT pg_notify('ch2', 'card 4539148803436467')",
    "SET application_name = 'bob.okonkwo@example.org'",
    "SELECT set_config('application_name', '078-05-1120', false)",
];

/// Bind with every result column in `format` (0 text, 1 binary).
fn bind_all(format: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(b'B');
    b.put_i32(0);
    b.put_slice(b"\0\0");
    b.put_i16(0);
    b.put_i16(0);
    b.put_i16(1);
    b.put_i16(format);
    let len = (b.len() - 1) as i32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    b.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_query_of_the_corpus_leaks_a_seeded_value() {
    assert!(
        CORPUS.len() + SCRIPTS.len() >= 80,
        "the corpus covers at least 80 queries"
    );
    let proxy = Proxy::with(Setup::default()).await;
    proxy.upstream_sql(SETUP);
    proxy.upstream_sql(MORE);
    let mut raw = raw(&proxy).await;
    for q in CORPUS.iter().chain(SCRIPTS) {
        let got = received(&mut raw, &fe::query(q)).await;
        assert_no_leak(q, &got);
    }
    for q in CORPUS {
        for format in [0, 1] {
            // A driver that cached the description: Parse, Bind, Execute
            // twice, no Describe.
            let mut m = fe::parse("", q, &[]);
            m.extend(bind_all(format));
            m.extend(fe::execute("", 0));
            m.extend(fe::sync());
            let got = received(&mut raw, &m).await;
            assert_no_leak(&format!("{q} (extended, format {format})"), &got);
        }
    }
    // A pipeline: all of them in one write, one Sync at the end.
    let mut m = Vec::new();
    for (i, q) in CORPUS.iter().enumerate() {
        let name = format!("s{i}");
        m.extend(fe::parse(&name, q, &[]));
        m.extend(fe::bind("", &name, &[]));
        m.extend(fe::describe(b'P', ""));
        m.extend(fe::execute("", 1));
        m.extend(fe::execute("", 0));
    }
    m.extend(fe::sync());
    let got = received(&mut raw, &m).await;
    assert_no_leak("the pipeline", &got);
    // The session is fine afterwards.
    let got = received(
        &mut raw,
        &fe::query("SELECT note FROM customers WHERE id = 1"),
    )
    .await;
    assert!(String::from_utf8_lossy(&got).contains("prefers mornings"));
}

/// A value as it came, in whatever format, to hand back to the server.
#[derive(Debug)]
struct Wire(Option<Vec<u8>>);

impl<'a> FromSql<'a> for Wire {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Wire(Some(raw.to_vec())))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Wire(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

impl ToSql for Wire {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(v) => {
                out.put_slice(v);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

/// Classified columns of many types (by comment), one row of values.
const TYPED: &str = "
CREATE TABLE typed (
    t text, v varchar(5), c char(11), i int4, b bigint, n numeric(10,2), f float8,
    d date, ts timestamptz, u uuid, j jsonb, js json, a text[], ia int[], ip inet, by bytea, bo bool
);
INSERT INTO typed VALUES ('alice.smithson@example.com', 'a@b.c', '536-22-8174', 536228174,
    4539148803436467, 12345678.90, 3.25, '1984-03-09', '2024-05-01 10:00+00',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"email\": \"alice.smithson@example.com\"}',
    '{\"ssn\": \"536-22-8174\"}', ARRAY['4539148803436467', NULL, 'x'], ARRAY[1, NULL, 3],
    '192.168.12.34', '\\x0102', true);
INSERT INTO typed VALUES (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL);
";

const TYPED_COLUMNS: &[(&str, &str, &str)] = &[
    ("t", "text", "email"),
    ("v", "varchar(5)", "email"),
    ("c", "char(11)", "national_id"),
    ("i", "int4", "national_id"),
    ("b", "bigint", "card"),
    ("n", "numeric(10,2)", "bank_account"),
    ("f", "float8", "secret"),
    ("d", "date", "date_of_birth"),
    ("ts", "timestamptz", "date_of_birth"),
    ("u", "uuid", "token"),
    ("j", "jsonb", "secret"),
    ("js", "json", "secret"),
    ("a", "text[]", "card"),
    ("ia", "int[]", "national_id"),
    ("ip", "inet", "address"),
    ("by", "bytea", "secret"),
    ("bo", "bool", "secret"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_values_are_values_of_their_type_in_both_formats() {
    let proxy = Proxy::with(Setup::default()).await;
    proxy.upstream_sql(TYPED);
    let comments: String = TYPED_COLUMNS
        .iter()
        .map(|(c, _, class)| format!("COMMENT ON COLUMN typed.{c} IS 'pii:{class}';"))
        .collect();
    proxy.upstream_sql(&comments);
    let through = proxy.client().await;
    let c = cluster();
    let (direct, _task) =
        portcullis_testbed::connect(&c.superuser_conn_str(&proxy.db), Some(pki()))
            .await
            .expect("direct connection");
    let stored = direct.query("SELECT * FROM typed", &[]).await.unwrap();
    for (col, ty, _) in TYPED_COLUMNS {
        // Binary: tokio-postgres asks for binary results; the server must
        // accept the masked bytes back through the type's receive function.
        let rows = through
            .query(
                &format!("SELECT {col} FROM typed ORDER BY ({col} IS NULL)"),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{col}: {e}"));
        let masked: Wire = rows[0].get(0);
        let original: Wire = stored[0].get(*col);
        assert!(masked.0 != original.0, "{col} ({ty}) was not masked");
        let back = direct
            .query_one(&format!("SELECT $1::{ty}::text"), &[&masked])
            .await
            .unwrap_or_else(|e| panic!("{col} ({ty}) binary {masked:?}: {e}"));
        let _: Option<String> = back.get(0);
        let null: Wire = rows[1].get(0);
        assert!(null.0.is_none(), "{col}: NULL stays NULL");
        // Text: the server must parse the masked text as the type.
        let msgs = through
            .simple_query(&format!("SELECT {col} FROM typed ORDER BY ({col} IS NULL)"))
            .await
            .unwrap();
        let text = msgs.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
            _ => None,
        });
        let text = text.expect("a row").expect("masked, not nulled");
        direct
            .query_one(&format!("SELECT $1::text::{ty}"), &[&text])
            .await
            .unwrap_or_else(|e| panic!("{col} ({ty}) text {text:?}: {e}"));
        if *ty == "varchar(5)" {
            assert!(text.chars().count() <= 5, "{text:?}");
        }
        if *ty == "char(11)" {
            assert_eq!(text.chars().count(), 11, "{text:?}");
        }
    }
}
