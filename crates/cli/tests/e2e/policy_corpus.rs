//! The policy corpus: statements sent through Portcullis with the default
//! policy bundle, each with the verdict it must get. `policy.rs` runs them
//! against the fixture database it describes; adding a case is one line.
//!
//! Placeholders, filled in per fixture: `{db}` (the database), `{role}` (a
//! role the fixture created), `{marker}` (a server-side path that must never
//! be written).

use Env::*;
use Expect::*;

/// The target's environment label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Env {
    Production,
    Staging,
    Development,
    /// "Staging" with a capital S: not exactly `staging`, so the strict
    /// production rules apply.
    Mislabelled,
}

impl Env {
    pub fn label(self) -> &'static str {
        match self {
            Production => "production",
            Staging => "staging",
            Development => "development",
            Mislabelled => "Staging",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Allowed, and the server runs it without error.
    Ok,
    /// Allowed; the server itself fails it with this SQLSTATE.
    ServerError(&'static str),
    /// Refused by this policy: 42501 naming it.
    Denied(&'static str),
    /// Held for approval by group "dba" (nobody approves it in the
    /// corpus: it expires, having run nothing).
    Approval,
    /// Refused by Portcullis (42501) with a message containing this, before
    /// any policy could hold it for approval (no approval would help).
    RefusedBy(&'static str),
    /// Refused by Portcullis because it does not parse: 42601.
    Unparsable,
    /// Refused: EXECUTE of a name Portcullis never saw prepared.
    NotPrepared,
}

pub const DROP: Expect = Denied("deny-drop-in-production");
pub const TRUNCATE: Expect = Denied("deny-truncate-in-production");
pub const RENAME: Expect = Denied("deny-rename-in-production");
pub const DESTRUCTIVE: Expect = Denied("deny-destructive-alter-in-production");
pub const UNFILTERED: Expect = Denied("deny-unfiltered-write-in-production");
pub const OPAQUE: Expect = Denied("deny-opaque-code-in-production");
pub const DANGEROUS: Expect = Denied("deny-dangerous-capabilities");

/// What the fixture must offer for a case to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// The dblink extension is installed on the server.
    Dblink,
}

#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub env: Env,
    pub sql: &'static str,
    pub expect: Expect,
    /// Sent through the proxy on the same session first; must succeed.
    pub before: &'static str,
    /// Sent afterwards to restore the session; must succeed.
    pub after: &'static str,
    /// Allowed cases run inside BEGIN ... ROLLBACK so the fixture stays as
    /// it is; false for statements that cannot run in a transaction block.
    pub in_transaction: bool,
    pub needs: Needs,
    /// A Portcullis bug makes this case fail: it is skipped by the corpus
    /// tests and run (and expected to fail) by the ignored bug test.
    pub known_bug: Option<&'static str>,
}

impl Case {
    const fn new(env: Env, sql: &'static str, expect: Expect) -> Case {
        Case {
            env,
            sql,
            expect,
            before: "",
            after: "",
            in_transaction: true,
            needs: Needs::Nothing,
            known_bug: None,
        }
    }

    const fn before(mut self, sql: &'static str) -> Case {
        self.before = sql;
        self
    }

    const fn after(mut self, sql: &'static str) -> Case {
        self.after = sql;
        self
    }

    const fn autocommit(mut self) -> Case {
        self.in_transaction = false;
        self
    }

    const fn dblink(mut self) -> Case {
        self.needs = Needs::Dblink;
        self
    }

    #[allow(dead_code)]
    const fn known_bug(mut self, why: &'static str) -> Case {
        self.known_bug = Some(why);
        self
    }

    /// Whether Portcullis must keep the statement from the server.
    pub fn refused(&self) -> bool {
        !matches!(self.expect, Ok | ServerError(_))
    }
}

const fn prod(sql: &'static str, expect: Expect) -> Case {
    Case::new(Production, sql, expect)
}

const fn staging(sql: &'static str, expect: Expect) -> Case {
    Case::new(Staging, sql, expect)
}

const fn dev(sql: &'static str, expect: Expect) -> Case {
    Case::new(Development, sql, expect)
}

const fn mislabelled(sql: &'static str, expect: Expect) -> Case {
    Case::new(Mislabelled, sql, expect)
}

/// The fixture every group starts from, run directly on the database as
/// superuser before the proxy's first session (so its catalog snapshot
/// knows these objects).
pub const FIXTURE: &str = r#"
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text);
CREATE TABLE orders (
    id int PRIMARY KEY,
    customer_id int REFERENCES customers (id),
    status text NOT NULL DEFAULT 'new',
    total numeric(10, 2),
    "drop" text,
    "truncate" int,
    note text,
    CONSTRAINT orders_total_positive CHECK (total >= 0)
);
CREATE TABLE order_items (order_id int REFERENCES orders (id), sku text, qty int);
CREATE TABLE delete_log (id serial PRIMARY KEY, what text, at timestamptz DEFAULT '2025-01-01');
CREATE TABLE "CamelOrders" (id int);
CREATE TABLE events (id int, at date NOT NULL, payload jsonb) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE VIEW order_totals AS SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id;
CREATE VIEW new_orders AS SELECT * FROM orders WHERE status = 'new';
CREATE MATERIALIZED VIEW customer_counts AS SELECT count(*) AS n FROM customers;
CREATE SEQUENCE invoice_seq;
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped');
CREATE DOMAIN positive_int AS int CHECK (VALUE > 0);
CREATE INDEX orders_status_idx ON orders (status);

CREATE FUNCTION truncate_text(t text, n int) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT left(t, n) $$;
CREATE FUNCTION bump_total(p_id int) RETURNS void
    LANGUAGE sql VOLATILE AS $$ UPDATE orders SET total = total + 1 WHERE id = p_id $$;
CREATE PROCEDURE archive_orders()
    LANGUAGE sql AS $$ DELETE FROM order_items WHERE order_id = 3 $$;
CREATE FUNCTION orders_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO delete_log (what) VALUES (TG_OP); RETURN NULL; END $$;
CREATE TRIGGER orders_audit AFTER DELETE ON orders FOR EACH ROW EXECUTE FUNCTION orders_audit();

CREATE SCHEMA archive;
CREATE TABLE archive.orders (id int PRIMARY KEY, note text);
CREATE RULE archive_read_only AS ON UPDATE TO archive.orders DO INSTEAD NOTHING;

-- A table of the same name in another schema, for search_path tricks.
CREATE SCHEMA shadow;
CREATE TABLE shadow.orders (id int PRIMARY KEY, note text);

-- An int = int operator that writes when it runs: reached by an
-- unqualified `=` when search_path lists evil before pg_catalog.
CREATE SCHEMA evil;
CREATE FUNCTION evil.int4eq(a int, b int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO public.delete_log (what) VALUES ('evil operator ran');
    RETURN a OPERATOR(pg_catalog.=) b;
END $$;
CREATE OPERATOR evil.= (LEFTARG = int, RIGHTARG = int, FUNCTION = evil.int4eq);

CREATE FOREIGN DATA WRAPPER dummy_fdw;
CREATE SERVER dummy_server FOREIGN DATA WRAPPER dummy_fdw;

GRANT SELECT ON orders TO "{role}";

INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com'), (2, 'Bob', NULL), (3, 'Cy', 'cy@example.com');
INSERT INTO orders (id, customer_id, status, total, "drop", "truncate", note) VALUES
    (1, 1, 'new', 10.00, NULL, NULL, 'first'),
    (2, 1, 'paid', 20.50, 'x', 1, NULL),
    (3, 2, 'shipped', 5.00, NULL, NULL, 'third'),
    (4, 3, 'new', 0, NULL, NULL, NULL);
INSERT INTO order_items VALUES (1, 'A', 1), (1, 'B', 2), (2, 'A', 1), (3, 'C', 5);
INSERT INTO delete_log (what) VALUES ('fixture');
INSERT INTO "CamelOrders" VALUES (1);
INSERT INTO events VALUES (1, '2024-03-01', '{"k": 1}'), (2, '2025-02-01', '{"k": 2}');
INSERT INTO archive.orders VALUES (100, 'archived');
INSERT INTO shadow.orders VALUES (1, 'shadow one'), (2, 'shadow two');
SELECT setval('invoice_seq', 7);
REFRESH MATERIALIZED VIEW customer_counts;
"#;

/// Every case, in the order each group runs them.
pub const CORPUS: &[Case] = &[
    // ---------------------------------------------------------------
    // Production: every DROP form.
    // ---------------------------------------------------------------
    prod("DROP TABLE orders", DROP),
    prod("DROP TABLE IF EXISTS orders, customers CASCADE", DROP),
    prod("DROP TABLE public.order_items", DROP),
    prod("DROP TABLE events_2024", DROP),
    prod("DROP TABLE events CASCADE", DROP),
    prod("DROP TABLE shadow.orders", DROP),
    prod("DROP TABLE IF EXISTS no_such_table", DROP),
    prod("DROP VIEW order_totals", DROP),
    prod("DROP VIEW IF EXISTS order_totals CASCADE", DROP),
    prod("DROP MATERIALIZED VIEW customer_counts", DROP),
    prod("DROP SCHEMA archive CASCADE", DROP),
    prod("DROP SCHEMA IF EXISTS shadow, archive CASCADE", DROP),
    prod("DROP TYPE order_status", DROP),
    prod("DROP TYPE IF EXISTS order_status CASCADE", DROP),
    prod("DROP DOMAIN positive_int", DROP),
    prod("DROP FUNCTION truncate_text(text, int)", DROP),
    prod("DROP FUNCTION IF EXISTS bump_total", DROP),
    prod("DROP PROCEDURE archive_orders", DROP),
    prod("DROP ROUTINE truncate_text", DROP),
    prod("DROP INDEX orders_status_idx", DROP),
    prod("DROP INDEX CONCURRENTLY orders_status_idx", DROP),
    prod("DROP SEQUENCE invoice_seq", DROP),
    prod("DROP TRIGGER orders_audit ON orders", DROP),
    prod("DROP RULE archive_read_only ON archive.orders", DROP),
    prod("DROP OPERATOR evil.= (int, int)", DROP),
    prod("DROP EXTENSION plpgsql CASCADE", DROP),
    prod("DROP OWNED BY \"{role}\"", DROP),
    prod("DROP OWNED BY \"{role}\" CASCADE", DROP),
    prod("DROP DATABASE \"{db}_decoy\"", DROP),
    // Ends other sessions: an administration capability, refused first.
    prod("DROP DATABASE IF EXISTS \"{db}_decoy\" WITH (FORCE)", DANGEROUS),
    prod("DROP ROLE \"{role}\"", DROP),
    prod("DROP USER IF EXISTS \"{role}\"", DROP),
    prod("DROP AGGREGATE IF EXISTS total_agg (int)", DROP),
    prod("DROP CAST IF EXISTS (int AS order_status)", DROP),
    prod("DROP COLLATION IF EXISTS my_collation", DROP),
    prod("DROP CONVERSION IF EXISTS my_conversion", DROP),
    prod("DROP EVENT TRIGGER IF EXISTS my_event_trigger", DROP),
    prod("DROP POLICY IF EXISTS own_rows ON orders", DROP),
    prod("DROP PUBLICATION IF EXISTS my_publication", DROP),
    // Subscriptions connect out; user mappings are foreign data.
    prod("DROP SUBSCRIPTION IF EXISTS my_subscription", DANGEROUS),
    prod("DROP STATISTICS IF EXISTS my_statistics", DROP),
    prod("DROP TABLESPACE IF EXISTS my_tablespace", DROP),
    prod("DROP TEXT SEARCH CONFIGURATION IF EXISTS my_config", DROP),
    prod("DROP ACCESS METHOD IF EXISTS my_am", DROP),
    prod("DROP LANGUAGE IF EXISTS plperl", DROP),
    prod("DROP OPERATOR CLASS IF EXISTS my_opclass USING btree", DROP),
    prod("DROP FOREIGN TABLE IF EXISTS ft", DROP),
    prod("DROP SERVER dummy_server", DROP),
    prod("DROP FOREIGN DATA WRAPPER dummy_fdw CASCADE", DROP),
    prod(
        "DROP USER MAPPING IF EXISTS FOR CURRENT_USER SERVER dummy_server",
        DANGEROUS,
    ),
    prod("ALTER TABLE orders DROP COLUMN note", DROP),
    prod(
        "ALTER TABLE IF EXISTS orders DROP COLUMN IF EXISTS note CASCADE",
        DROP,
    ),
    prod("ALTER TABLE orders DROP CONSTRAINT orders_total_positive", DROP),
    prod("ALTER TABLE orders ADD COLUMN extra int, DROP COLUMN note", DROP),
    // ---------------------------------------------------------------
    // Production: every rename form.
    // ---------------------------------------------------------------
    prod("ALTER TABLE orders RENAME TO orders_old", RENAME),
    prod("ALTER TABLE orders RENAME COLUMN note TO remark", RENAME),
    prod("ALTER TABLE orders RENAME note TO remark", RENAME),
    prod("ALTER VIEW new_orders RENAME COLUMN note TO remark", RENAME),
    prod("ALTER SERVER dummy_server RENAME TO other_server", RENAME),
    prod("ALTER DATABASE \"{db}_decoy\" RENAME TO \"{db}_renamed\"", RENAME),
    prod("ALTER ROLE \"{role}\" RENAME TO \"{role}_renamed\"", RENAME),
    prod("ALTER TABLE events RENAME COLUMN payload TO body", RENAME),
    prod(
        "ALTER TABLE orders RENAME CONSTRAINT orders_total_positive TO total_ok",
        RENAME,
    ),
    prod(
        "ALTER TYPE order_status RENAME VALUE 'paid' TO 'settled'",
        RENAME,
    ),
    prod("ALTER TYPE order_status RENAME TO status_t", RENAME),
    prod("ALTER TABLE orders SET SCHEMA archive", RENAME),
    prod("ALTER TABLE order_items SET SCHEMA shadow", RENAME),
    prod("ALTER VIEW order_totals RENAME TO totals", RENAME),
    prod("ALTER MATERIALIZED VIEW customer_counts RENAME TO cc", RENAME),
    prod("ALTER INDEX orders_status_idx RENAME TO orders_idx", RENAME),
    prod("ALTER SEQUENCE invoice_seq RENAME TO inv_seq", RENAME),
    prod(
        "ALTER FUNCTION truncate_text(text, int) RENAME TO tt",
        RENAME,
    ),
    prod(
        "ALTER FUNCTION truncate_text(text, int) SET SCHEMA archive",
        RENAME,
    ),
    prod("ALTER TYPE order_status SET SCHEMA archive", RENAME),
    prod("ALTER SCHEMA archive RENAME TO archive_old", RENAME),
    prod("ALTER TRIGGER orders_audit ON orders RENAME TO audit", RENAME),
    prod("ALTER TABLE \"CamelOrders\" RENAME TO camel", RENAME),
    // ---------------------------------------------------------------
    // Production: TRUNCATE.
    // ---------------------------------------------------------------
    prod("TRUNCATE orders", TRUNCATE),
    prod("TRUNCATE TABLE order_items, delete_log", TRUNCATE),
    prod("TRUNCATE customers CASCADE", TRUNCATE),
    prod("TRUNCATE ONLY events_2024", TRUNCATE),
    prod("TRUNCATE events RESTART IDENTITY", TRUNCATE),
    prod("truncate \"orders\", \"customers\", order_items", TRUNCATE),
    // ---------------------------------------------------------------
    // Production: ALTER TABLE that destroys or rewrites data.
    // ---------------------------------------------------------------
    prod("ALTER TABLE orders ALTER COLUMN total TYPE int", DESTRUCTIVE),
    prod(
        "ALTER TABLE orders ALTER COLUMN status TYPE order_status USING status::order_status",
        DESTRUCTIVE,
    ),
    prod(
        "ALTER TABLE orders ALTER total SET DATA TYPE numeric(5, 0)",
        DESTRUCTIVE,
    ),
    prod(
        "ALTER TABLE orders ADD COLUMN extra int, ALTER COLUMN note TYPE varchar(3)",
        DESTRUCTIVE,
    ),
    prod("ALTER TABLE events DETACH PARTITION events_2024", DESTRUCTIVE),
    prod(
        "ALTER TABLE events DETACH PARTITION events_2025 CONCURRENTLY",
        DESTRUCTIVE,
    ),
    // ---------------------------------------------------------------
    // Production: UPDATE / DELETE / MERGE without an effective WHERE.
    // ---------------------------------------------------------------
    prod("UPDATE orders SET note = 'x'", UNFILTERED),
    prod("DELETE FROM order_items", UNFILTERED),
    prod("DELETE FROM ONLY order_items", UNFILTERED),
    prod("DELETE FROM events", UNFILTERED),
    prod("UPDATE orders SET note = 'x' WHERE true", UNFILTERED),
    prod("DELETE FROM order_items WHERE 1 = 1", UNFILTERED),
    prod("DELETE FROM order_items WHERE order_id = order_id", UNFILTERED),
    prod("UPDATE orders SET status = 'paid' WHERE 'a' = 'a'", UNFILTERED),
    prod("DELETE FROM order_items WHERE NOT false", UNFILTERED),
    prod("DELETE FROM order_items WHERE order_id = 1 OR true", UNFILTERED),
    prod("UPDATE orders SET total = 0 WHERE id > 0 OR 1 = 1", UNFILTERED),
    prod("DELETE FROM order_items WHERE true AND true", UNFILTERED),
    prod("DELETE FROM order_items WHERE (true)", UNFILTERED),
    prod("DELETE FROM order_items WHERE NOT NOT true", UNFILTERED),
    prod("DELETE FROM order_items WHERE order_id = order_id AND true", UNFILTERED),
    prod("DELETE FROM order_items WHERE NULL IS NULL", UNFILTERED),
    prod("DELETE FROM order_items WHERE 2 > 1", UNFILTERED),
    prod("DELETE FROM order_items WHERE 'a' <> 'b'", UNFILTERED),
    prod("DELETE FROM order_items WHERE 1 IN (1, 2)", UNFILTERED),
    prod("DELETE FROM order_items WHERE order_id IS NOT DISTINCT FROM order_id", UNFILTERED),
    // A view's own WHERE is not the statement's.
    prod("UPDATE new_orders SET note = 'x'", UNFILTERED),
    prod("DELETE FROM new_orders", UNFILTERED),
    prod("delete from \"orders\" where TRUE", UNFILTERED),
    prod("DELETE FROM orders RETURNING *", UNFILTERED),
    prod("UPDATE orders SET note = 'x' WHERE id = id RETURNING id", UNFILTERED),
    prod("DELETE FROM order_items USING orders", UNFILTERED),
    prod(
        "MERGE INTO orders o USING (SELECT 1 AS k) s ON true \
         WHEN MATCHED THEN UPDATE SET note = 'merged'",
        UNFILTERED,
    ),
    prod(
        "MERGE INTO order_items i USING (SELECT 1 AS k) s ON 1 = 1 WHEN MATCHED THEN DELETE",
        UNFILTERED,
    ),
    // Data-modifying CTEs, referenced or not: PostgreSQL runs them all.
    prod(
        "WITH d AS (DELETE FROM order_items RETURNING *) SELECT count(*) FROM d",
        UNFILTERED,
    ),
    prod("WITH d AS (DELETE FROM order_items) SELECT 1", UNFILTERED),
    prod(
        "WITH u AS (UPDATE orders SET note = 'x' RETURNING id) \
         INSERT INTO delete_log (what) SELECT id::text FROM u",
        UNFILTERED,
    ),
    prod(
        "WITH ok AS (SELECT id FROM orders WHERE id = 1), gone AS (DELETE FROM order_items) \
         SELECT * FROM ok",
        UNFILTERED,
    ),
    // EXPLAIN ANALYZE runs its statement.
    prod("EXPLAIN ANALYZE DELETE FROM orders", UNFILTERED),
    prod(
        "EXPLAIN (ANALYZE, BUFFERS) UPDATE orders SET note = NULL",
        UNFILTERED,
    ),
    prod(
        "COPY (DELETE FROM order_items RETURNING *) TO STDOUT",
        UNFILTERED,
    ),
    // ---------------------------------------------------------------
    // Production: schema changes are held for approval.
    // ---------------------------------------------------------------
    prod("CREATE TABLE t_new (id int PRIMARY KEY)", Approval),
    prod("CREATE TEMP TABLE scratch (id int)", Approval),
    prod("CREATE TABLE orders_copy AS SELECT * FROM orders", Approval),
    prod("CREATE TABLE empty_copy AS SELECT * FROM orders WITH NO DATA", Approval),
    prod("SELECT * INTO orders_backup FROM orders", Approval),
    prod("SELECT id INTO TEMP ids FROM orders", Approval),
    prod("CREATE MATERIALIZED VIEW mv AS SELECT * FROM orders", Approval),
    prod("CREATE VIEW recent AS SELECT * FROM orders WHERE id > 2", Approval),
    prod("CREATE INDEX orders_note_idx ON orders (note)", Approval),
    prod("CREATE INDEX CONCURRENTLY orders_note_idx ON orders (note)", Approval),
    prod("ALTER TABLE orders ADD COLUMN extra int", Approval),
    prod("ALTER TABLE orders ALTER COLUMN note SET DEFAULT 'n'", Approval),
    prod("ALTER TABLE orders ENABLE TRIGGER orders_audit", Approval),
    prod("ALTER TYPE order_status ADD VALUE 'cancelled'", Approval),
    prod("COMMENT ON TABLE orders IS 'all orders'", Approval),
    prod("CREATE SCHEMA reporting", Approval),
    prod("CREATE SEQUENCE other_seq", Approval),
    prod("CREATE TYPE mood AS ENUM ('happy')", Approval),
    prod("GRANT SELECT ON customers TO \"{role}\"", Approval),
    prod("REVOKE ALL ON orders FROM \"{role}\"", Approval),
    prod("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO \"{role}\"", Approval),
    prod("CREATE ROLE \"{role}_new\"", Approval),
    prod("ALTER ROLE \"{role}\" LOGIN", Approval),
    prod("EXPLAIN ANALYZE CREATE TABLE t_explained AS SELECT 1 AS one", Approval),
    // ---------------------------------------------------------------
    // Production: code Portcullis cannot inspect.
    // ---------------------------------------------------------------
    prod("DO $$ BEGIN DELETE FROM order_items; END $$", OPAQUE),
    prod(
        "DO $body$ BEGIN RAISE NOTICE 'harmless; DROP TABLE orders'; END $body$",
        OPAQUE,
    ),
    prod("DO LANGUAGE plpgsql 'BEGIN PERFORM 1; END'", OPAQUE),
    prod("CALL archive_orders()", OPAQUE),
    prod(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        OPAQUE,
    ),
    prod(
        "CREATE OR REPLACE FUNCTION truncate_text(t text, n int) RETURNS text \
         LANGUAGE sql IMMUTABLE AS $$ SELECT t $$",
        OPAQUE,
    ),
    prod(
        "CREATE PROCEDURE p() LANGUAGE sql AS $$ DELETE FROM order_items $$",
        OPAQUE,
    ),
    prod(
        "CREATE TRIGGER orders_audit_2 BEFORE INSERT ON orders \
         FOR EACH ROW EXECUTE FUNCTION orders_audit()",
        OPAQUE,
    ),
    prod(
        "CREATE RULE sneaky AS ON INSERT TO delete_log DO ALSO DELETE FROM order_items",
        OPAQUE,
    ),
    prod("SELECT bump_total(1)", OPAQUE),
    prod("SELECT public.bump_total(id) FROM orders WHERE id = 1", OPAQUE),
    prod(
        "SELECT * FROM orders WHERE id = 1 AND bump_total(1) IS NULL",
        OPAQUE,
    ),
    prod(
        "INSERT INTO delete_log (what) VALUES (bump_total(1)::text)",
        OPAQUE,
    ),
    prod("SELECT nextval('invoice_seq')", OPAQUE),
    prod("SELECT setval('invoice_seq', 42)", OPAQUE),
    prod("EXPLAIN ANALYZE SELECT bump_total(2)", OPAQUE),
    prod("CREATE TABLE bumped AS SELECT bump_total(1)", OPAQUE),
    // ---------------------------------------------------------------
    // Production: dangerous capabilities.
    // ---------------------------------------------------------------
    prod("COPY orders TO '{marker}'", DANGEROUS),
    prod("COPY (SELECT 1) TO '{marker}'", DANGEROUS),
    prod("COPY delete_log (what) FROM '/etc/hostname'", DANGEROUS),
    prod("COPY orders TO PROGRAM 'cat > {marker}'", DANGEROUS),
    prod("COPY delete_log (what) FROM PROGRAM 'echo pwned'", DANGEROUS),
    prod("SELECT pg_read_file('/etc/hostname')", DANGEROUS),
    prod("SELECT pg_read_binary_file('postgresql.conf')", DANGEROUS),
    prod("SELECT * FROM pg_ls_dir('.')", DANGEROUS),
    prod("SELECT lo_import('/etc/hostname')", DANGEROUS),
    prod("SELECT lo_export(12345, '{marker}')", DANGEROUS),
    prod(
        "SELECT * FROM dblink('dbname={db}', 'DELETE FROM order_items') AS t(r text)",
        DANGEROUS,
    )
    .dblink(),
    prod("SELECT dblink_connect('c', 'dbname={db}')", DANGEROUS).dblink(),
    prod("CREATE FOREIGN DATA WRAPPER evil_fdw", DANGEROUS),
    prod("CREATE SERVER evil_server FOREIGN DATA WRAPPER dummy_fdw", DANGEROUS),
    prod("CREATE USER MAPPING FOR CURRENT_USER SERVER dummy_server", DANGEROUS),
    prod("CREATE FOREIGN TABLE ft (id int) SERVER dummy_server", DANGEROUS),
    prod("SET ROLE \"{role}\"", DANGEROUS),
    prod("SET SESSION AUTHORIZATION \"{role}\"", DANGEROUS),
    prod("SET LOCAL ROLE \"{role}\"", DANGEROUS),
    prod("SELECT set_config('role', '{role}', false)", DANGEROUS),
    prod(
        "SELECT set_config('session_authorization', '{role}', false)",
        DANGEROUS,
    ),
    prod("ALTER ROLE \"{role}\" SET search_path = evil, pg_catalog", DANGEROUS),
    prod("ALTER ROLE ALL IN DATABASE \"{db}\" SET work_mem = '1MB'", DANGEROUS),
    prod("ALTER DATABASE \"{db}\" SET session_replication_role = replica", DANGEROUS),
    prod("ALTER SYSTEM SET work_mem = '1MB'", DANGEROUS),
    prod("ALTER SYSTEM RESET ALL", DANGEROUS),
    prod("LOAD 'auto_explain'", DANGEROUS),
    prod(
        "BEGIN; INSERT INTO delete_log (what) VALUES ('2pc'); PREPARE TRANSACTION 'portcullis_2pc'",
        DANGEROUS,
    ),
    prod("ALTER TABLE orders DISABLE TRIGGER orders_audit", DANGEROUS),
    prod("ALTER TABLE orders DISABLE TRIGGER ALL", DANGEROUS),
    prod("ALTER TABLE orders DISABLE TRIGGER USER", DANGEROUS),
    prod("SET session_replication_role = replica", DANGEROUS),
    prod("SET LOCAL session_replication_role TO 'replica'", DANGEROUS),
    prod(
        "SELECT set_config('session_replication_role', 'replica', false)",
        DANGEROUS,
    ),
    // ---------------------------------------------------------------
    // Production: evasions.
    // ---------------------------------------------------------------
    prod("drop table orders", DROP),
    prod("DrOp TaBlE OrDeRs", DROP),
    prod("DROP TABLE \"orders\"", DROP),
    prod("DROP TABLE \"CamelOrders\"", DROP),
    prod(r#"DROP TABLE U&"\006f\0072ders""#, DROP),
    prod(r#"DELETE FROM U&"!006f!0072der_items" UESCAPE '!'"#, UNFILTERED),
    prod("DELETE FROM public . order_items", UNFILTERED),
    prod("DROP/**/TABLE/**/orders", DROP),
    prod(
        "/* a comment */ DROP /* nested /* comment */ still comment */ TABLE orders",
        DROP,
    ),
    prod("-- a comment\nDROP TABLE orders", DROP),
    prod("DELETE FROM order_items -- WHERE order_id = 1", UNFILTERED),
    prod("DELETE FROM order_items WHERE /* order_id = 1 AND */ true", UNFILTERED),
    prod("\t DROP\n\tTABLE\r\n orders ;", DROP),
    // Statements hidden after harmless ones: none of the message runs.
    prod("SELECT 1; DROP TABLE orders", DROP),
    prod(
        "INSERT INTO delete_log (what) VALUES ('first'); DROP TABLE orders",
        DROP,
    ),
    prod(
        "INSERT INTO delete_log (what) VALUES ('first'); SELECT 2; TRUNCATE order_items; SELECT 3",
        TRUNCATE,
    ),
    prod(
        "BEGIN; INSERT INTO delete_log (what) VALUES ('in tx'); DROP TABLE orders; COMMIT",
        DROP,
    ),
    prod("SELECT 1 /* ; */ ; TRUNCATE orders", TRUNCATE),
    prod("SELECT '/*'; DROP TABLE orders; SELECT '*/'", DROP),
    prod("SELECT \"/*\" FROM (SELECT 1 AS \"/*\") s; DROP TABLE orders; SELECT '*/'", DROP),
    prod("SELECT '--'; DROP TABLE orders", DROP),
    prod("SELECT $a$ $b$ $a$; DROP TABLE orders", DROP),
    prod("DROP TABLE \"or\"\"ders\"", DROP),
    prod("SELECT $$ ; $$; DROP TABLE orders", DROP),
    prod("SELECT $x$ ' $x$; DELETE FROM order_items", UNFILTERED),
    // standard_conforming_strings is on: the backslash does not escape.
    prod(r"SELECT 'a\'; DROP TABLE orders; --'", DROP),
    prod("SELECT 'it''s'; DROP TABLE orders", DROP),
    prod("PREPARE hidden AS DELETE FROM order_items", UNFILTERED),
    prod("PREPARE hidden_drop AS DROP TABLE orders", Unparsable),
    prod("DROP TABLE", Unparsable),
    prod("SELEC 1", Unparsable),
    prod("DROP TABLE orders; SELEC 1", Unparsable),
    // ---------------------------------------------------------------
    // Production: search_path tricks.
    // ---------------------------------------------------------------
    prod("DELETE FROM orders", UNFILTERED)
        .before("SET search_path = shadow, public")
        .after("RESET search_path"),
    prod("DROP TABLE orders", DROP)
        .before("SET search_path = shadow, public")
        .after("RESET search_path"),
    prod("SELECT * FROM orders WHERE id = 1", Ok)
        .before("SET search_path = shadow, public")
        .after("RESET search_path"),
    // evil.= shadows pg_catalog's int = int: every unqualified operator is
    // code Portcullis cannot see.
    prod("SELECT * FROM orders WHERE id = 1", OPAQUE)
        .before("SET search_path = evil, pg_catalog, public")
        .after("RESET search_path"),
    prod("DELETE FROM order_items WHERE order_id = 1", OPAQUE)
        .before("SET search_path = evil, pg_catalog, public")
        .after("RESET search_path"),
    // set_config is volatile and not on the allow-list: opaque itself.
    prod(
        "SELECT set_config('search_path', 'evil, pg_catalog, public', false)",
        OPAQUE,
    ),
    prod("SELECT count(*) FROM public.orders WHERE id = 2", OPAQUE)
        .before("SET search_path TO evil, pg_catalog")
        .after("RESET search_path"),
    prod("SELECT * FROM orders WHERE id = 1", OPAQUE)
        .before("BEGIN; SET LOCAL search_path = evil, pg_catalog, public")
        .after("ROLLBACK"),
    prod(
        "SELECT * FROM orders WHERE id OPERATOR(pg_catalog.=) 1",
        Ok,
    )
    .before("SET search_path = evil, pg_catalog, public")
    .after("RESET search_path"),
    // The change and its use in one message.
    prod(
        "SET search_path = evil, pg_catalog, public; SELECT * FROM orders WHERE id = 1",
        OPAQUE,
    ),
    prod(
        "BEGIN; SET LOCAL search_path = evil, pg_catalog, public; \
         DELETE FROM order_items WHERE order_id = 1; COMMIT",
        OPAQUE,
    ),
    prod("SET search_path = shadow, public; TRUNCATE orders", TRUNCATE),
    prod(
        "SELECT set_config('search_path', 'evil, pg_catalog, public', false); \
         SELECT * FROM orders WHERE id = 1",
        OPAQUE,
    ),
    // Back to the default path after a ROLLBACK of the change.
    prod("SELECT * FROM orders WHERE id = 1", Ok)
        .before("BEGIN; SET search_path = evil, pg_catalog, public; ROLLBACK"),
    // ---------------------------------------------------------------
    // Production: PREPARE / EXECUTE / DEALLOCATE.
    // ---------------------------------------------------------------
    prod("PREPARE pol_sel (int) AS SELECT * FROM orders WHERE id = $1", Ok)
        .autocommit()
        .after("DEALLOCATE pol_sel"),
    prod("EXECUTE pol_sel (1)", Ok)
        // Reading no table: from one masked for alice, masking refuses it
        // outright (values it cannot trace), and no approval would help.
        .before("PREPARE pol_sel (int) AS SELECT $1 AS n")
        .after("DEALLOCATE pol_sel"),
    prod("EXECUTE pol_upd (2)", Ok)
        .before("PREPARE pol_upd (int) AS UPDATE orders SET note = 'p' WHERE id = $1")
        .after("DEALLOCATE pol_upd"),
    prod("EXPLAIN ANALYZE EXECUTE pol_upd (2)", Ok)
        .before("PREPARE pol_upd (int) AS UPDATE orders SET note = 'p' WHERE id = $1")
        .after("DEALLOCATE pol_upd"),
    prod("DEALLOCATE pol_sel", Ok)
        .autocommit()
        // Reading no table: from one masked for alice, masking refuses it
        // outright (values it cannot trace), and no approval would help.
        .before("PREPARE pol_sel (int) AS SELECT $1 AS n"),
    prod("PREPARE pol_del AS DELETE FROM order_items", UNFILTERED),
    prod("EXECUTE pol_del", NotPrepared),
    prod("EXECUTE never_prepared", NotPrepared),
    prod("PREPARE pol_same AS SELECT 1; EXECUTE pol_same", Ok)
        .autocommit()
        .after("DEALLOCATE pol_same"),
    prod(
        "PREPARE pol_same (int) AS DELETE FROM order_items WHERE order_id = $1; \
         EXECUTE pol_same (1); DEALLOCATE pol_same",
        Ok,
    ),
    prod("EXECUTE never_prepared (1, 2)", NotPrepared),
    prod("EXECUTE pol_gone (1)", NotPrepared)
        .before("PREPARE pol_gone (int) AS SELECT $1; DEALLOCATE pol_gone"),
    prod("EXECUTE pol_gone (1)", NotPrepared)
        .before("PREPARE pol_gone (int) AS SELECT $1; DEALLOCATE ALL"),
    // A schema change (held for approval), but masking refuses it first: a
    // prepared body's values cannot be traced into the new table, and an
    // approval would not change that.
    prod(
        "CREATE TABLE from_prepared AS EXECUTE pol_sel (1)",
        RefusedBy("values it cannot trace"),
    )
    .before("PREPARE pol_sel (int) AS SELECT * FROM orders WHERE id = $1")
        .after("DEALLOCATE pol_sel"),
    // Prepared under the default path, run after the path changed: judged
    // as the server will run it (re-parsed with the new path).
    prod("EXECUTE pol_d (1)", OPAQUE)
        .before(
            "PREPARE pol_d (int) AS DELETE FROM order_items WHERE order_id = $1; \
             SET search_path = evil, pg_catalog, public",
        )
        .after("RESET search_path; DEALLOCATE pol_d"),
    // ---------------------------------------------------------------
    // Production: allowed.
    // ---------------------------------------------------------------
    prod("SELECT * FROM orders", Ok),
    prod("SELECT * FROM orders WHERE id = 1 FOR UPDATE", Ok),
    prod("SELECT * FROM new_orders", Ok),
    prod("UPDATE new_orders SET note = 'x' WHERE id = 4", Ok),
    prod("DELETE FROM new_orders WHERE id = 4", Ok),
    prod("DELETE FROM order_items WHERE order_id = (SELECT min(id) FROM orders)", Ok),
    prod("REFRESH MATERIALIZED VIEW customer_counts", Ok),
    prod("REINDEX TABLE orders", Ok),
    // The README lists CHECKPOINT under Maintenance; the analysis counts it
    // as server administration.
    prod("CHECKPOINT", DANGEROUS),
    // An extension's script is code Portcullis does not see.
    prod("CREATE EXTENSION IF NOT EXISTS pgcrypto", OPAQUE),
    prod("SELECT * FROM orders WHERE id = 1", Ok),
    prod("TABLE customers", Ok),
    prod("VALUES (1, 'a'), (2, 'b')", Ok),
    prod("SELECT * FROM order_totals", Ok),
    prod("SELECT * FROM events WHERE at > '2024-06-01'", Ok),
    prod("SELECT * FROM shadow.orders", Ok),
    prod("SELECT count(*) FROM pg_class", Ok),
    prod("SELECT now(), lower('ABC'), count(*) FROM orders", Ok),
    prod(
        "SELECT jsonb_build_object('id', id, 'status', status) FROM orders",
        Ok,
    ),
    prod("SELECT random(), gen_random_uuid()", Ok),
    prod("SELECT truncate_text(note, 3) FROM orders", Ok),
    prod("SELECT upper(name), length(email), coalesce(email, '-') FROM customers", Ok),
    prod("INSERT INTO delete_log (what) VALUES ('x') RETURNING id", Ok),
    prod(
        "INSERT INTO delete_log (what) SELECT note FROM orders WHERE note IS NOT NULL",
        Ok,
    ),
    prod(
        "INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'paid', 10) \
         ON CONFLICT (id) DO UPDATE SET status = excluded.status",
        Ok,
    ),
    prod(
        "INSERT INTO orders (id, customer_id, status, total) VALUES (2, 1, 'paid', 10) \
         ON CONFLICT (id) DO UPDATE SET status = excluded.status WHERE orders.status = 'new' \
         RETURNING *",
        Ok,
    ),
    prod(
        "INSERT INTO orders (id, customer_id) VALUES (1, 1) ON CONFLICT DO NOTHING",
        Ok,
    ),
    prod("UPDATE orders SET note = 'x' WHERE id = 1", Ok),
    prod("UPDATE orders SET note = 'x' WHERE id = 1 RETURNING *", Ok),
    prod("DELETE FROM order_items WHERE order_id = 2 RETURNING *", Ok),
    prod(
        "DELETE FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE status = 'shipped')",
        Ok,
    ),
    prod("DELETE FROM order_items WHERE true AND order_id = 1", Ok),
    prod(
        "MERGE INTO orders o USING (VALUES (1, 'm')) AS v (id, note) ON o.id = v.id \
         WHEN MATCHED THEN UPDATE SET note = v.note \
         WHEN NOT MATCHED THEN INSERT (id, customer_id) VALUES (v.id, 1)",
        Ok,
    ),
    prod(
        "WITH d AS (DELETE FROM order_items WHERE order_id = 1 RETURNING *) SELECT count(*) FROM d",
        Ok,
    ),
    prod("EXPLAIN DELETE FROM orders", Ok),
    prod("EXPLAIN SELECT * FROM orders", Ok),
    prod("EXPLAIN ANALYZE DELETE FROM order_items WHERE order_id = 1", Ok),
    prod("COPY orders TO STDOUT", Ok),
    prod(
        "COPY (SELECT id, status FROM orders) TO STDOUT WITH (FORMAT csv, HEADER)",
        Ok,
    ),
    prod("COPY delete_log (what) FROM STDIN", Ok),
    prod("SHOW search_path", Ok),
    prod("SET statement_timeout = '5s'", Ok),
    prod("BEGIN; SET LOCAL statement_timeout = '5s'; SELECT 1; COMMIT", Ok).autocommit(),
    prod("ANALYZE orders", Ok),
    prod("VACUUM order_items", Ok).autocommit(),
    prod("LOCK TABLE orders IN SHARE MODE", Ok),
    prod("DECLARE c CURSOR FOR SELECT * FROM orders", Ok),
    prod("LISTEN portcullis_channel", Ok),
    prod("NOTIFY portcullis_channel, 'hello'", Ok),
    prod("SELECT 1; SELECT 2; SELECT 3", Ok),
    prod("DISCARD ALL", Ok).autocommit(),
    prod("SELECT * FROM no_such_table", ServerError("42P01")),
    prod("SELECT 1 / 0", ServerError("22012")),
    // False positives: must not be refused.
    prod("SELECT 'DROP TABLE x'", Ok),
    prod("SELECT 1 -- DROP TABLE orders", Ok),
    prod("SELECT /* DROP TABLE orders */ 1", Ok),
    prod(
        "/* outer /* inner */ DROP TABLE orders; still a comment */ SELECT 1",
        Ok,
    ),
    prod("SELECT \"drop\", \"truncate\" FROM orders", Ok),
    prod("UPDATE orders SET \"drop\" = 'y', \"truncate\" = 2 WHERE id = 2", Ok),
    prod("SELECT 'a; DROP TABLE orders; --' AS s", Ok),
    prod(
        "INSERT INTO delete_log (what) VALUES ('; DROP TABLE orders; --')",
        Ok,
    ),
    prod("SELECT $$ DROP TABLE orders; $$", Ok),
    prod("SELECT $a$ $b$ ; DROP TABLE orders $b$ $a$", Ok),
    prod("SELECT $DROP$ TRUNCATE orders $DROP$", Ok),
    prod("SELECT '*/ DROP TABLE orders /*'", Ok),
    prod("SELECT $tag$ ; DROP TABLE orders; DELETE FROM orders $tag$", Ok),
    prod(r"SELECT E'\'; DROP TABLE orders; --'", Ok),
    prod("SELECT * FROM delete_log", Ok),
    prod("INSERT INTO delete_log (what) VALUES ('truncate')", Ok),
    prod("DELETE FROM delete_log WHERE what = 'fixture'", Ok),
    prod("SELECT id AS \"DROP TABLE orders\" FROM orders", Ok),
    // ---------------------------------------------------------------
    // Staging: destructive statements are allowed; dangerous ones not.
    // ---------------------------------------------------------------
    staging("DROP TABLE order_items", Ok),
    staging("DROP TABLE orders CASCADE", Ok),
    staging("DROP SCHEMA archive CASCADE", Ok),
    staging("TRUNCATE orders CASCADE", Ok),
    staging("ALTER TABLE orders RENAME TO orders_old", Ok),
    staging("ALTER TABLE order_items ALTER COLUMN sku TYPE varchar(10)", Ok),
    staging("DELETE FROM order_items", Ok),
    staging("UPDATE orders SET note = 'x' WHERE 1 = 1", Ok),
    staging("CREATE TABLE t_new (id int)", Ok),
    staging("DO $$ BEGIN PERFORM 1; END $$", Ok),
    staging("SELECT nextval('invoice_seq')", Ok),
    staging("COPY orders TO PROGRAM 'cat > {marker}'", DANGEROUS),
    staging("SET ROLE \"{role}\"", DANGEROUS),
    staging("ALTER SYSTEM SET work_mem = '1MB'", DANGEROUS),
    staging("ALTER TABLE orders DISABLE TRIGGER ALL", DANGEROUS),
    staging("SELECT pg_read_file('/etc/hostname')", DANGEROUS),
    staging("SELECT 1; SET session_replication_role = replica", DANGEROUS),
    // Hidden in code Portcullis reads: refused; everyday code: allowed.
    staging("DO $$ BEGIN SET ROLE \"{role}\"; END $$", DANGEROUS),
    staging(
        "DO $$ BEGIN CREATE SERVER evil_server FOREIGN DATA WRAPPER dummy_fdw; END $$",
        DANGEROUS,
    ),
    staging(
        "CREATE FUNCTION sneaky() RETURNS text LANGUAGE sql AS $$ SELECT pg_read_file('/etc/hostname') $$",
        DANGEROUS,
    ),
    staging(
        "DO $$ BEGIN EXECUTE 'ALTER TABLE orders DISABLE TRIGGER ALL'; END $$",
        DANGEROUS,
    ),
    staging(
        "DO $$ BEGIN FOR i IN 1..3 LOOP INSERT INTO delete_log (what) VALUES (i::text); END LOOP; \
         RAISE NOTICE 'done'; END $$",
        Ok,
    ),
    staging(
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM orders LOOP \
         RAISE NOTICE 'order %', r.id; END LOOP; END $$",
        Ok,
    ),
    staging(
        "CREATE FUNCTION plus_one(n int) RETURNS int LANGUAGE sql AS $$ SELECT n + 1 $$",
        Ok,
    ),
    // ---------------------------------------------------------------
    // Development: everything but dangerous capabilities.
    // ---------------------------------------------------------------
    dev("DROP TABLE orders CASCADE", Ok),
    dev("DROP TABLE IF EXISTS orders, customers CASCADE", Ok),
    dev("DROP VIEW order_totals", Ok),
    dev("DROP SCHEMA archive CASCADE", Ok),
    dev("DROP TYPE order_status", Ok),
    dev("DROP FUNCTION truncate_text(text, int)", Ok),
    dev("DROP INDEX orders_status_idx", Ok),
    dev("DROP SEQUENCE invoice_seq", Ok),
    dev("DROP OWNED BY \"{role}\"", Ok),
    // Another target's database is out of reach in every environment.
    dev(
        "DROP DATABASE IF EXISTS \"{db}_never_created\"",
        Denied("deny-other-database"),
    )
    .autocommit(),
    dev("DROP ROLE IF EXISTS \"{role}_never_created\"", Ok),
    dev("TRUNCATE order_items, delete_log", Ok),
    dev("TRUNCATE customers CASCADE", Ok),
    dev("ALTER TABLE orders RENAME COLUMN note TO remark", Ok),
    dev("ALTER TYPE order_status RENAME VALUE 'paid' TO 'settled'", Ok),
    dev("ALTER TABLE order_items SET SCHEMA archive", Ok),
    // Allowed by Portcullis, refused by PostgreSQL (the view depends on it).
    dev("ALTER TABLE orders ALTER COLUMN total TYPE int", ServerError("0A000")),
    dev("ALTER TABLE events DETACH PARTITION events_2024", Ok),
    dev("UPDATE orders SET note = 'x'", Ok),
    dev("DELETE FROM order_items WHERE true", Ok),
    dev("DELETE FROM orders", ServerError("23503")),
    dev(
        "MERGE INTO orders o USING (SELECT 1 AS k) s ON true WHEN MATCHED THEN UPDATE SET note = 'm'",
        Ok,
    ),
    dev("WITH d AS (DELETE FROM order_items) SELECT 1", Ok),
    dev("EXPLAIN ANALYZE DELETE FROM order_items", Ok),
    dev("CREATE TABLE t_new (id int)", Ok),
    dev("CREATE TABLE orders_copy AS SELECT * FROM orders", Ok),
    dev("SELECT * INTO orders_backup FROM orders", Ok),
    dev("DO $$ BEGIN DELETE FROM order_items; END $$", Ok),
    dev("CALL archive_orders()", Ok),
    dev(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        Ok,
    ),
    dev(
        "CREATE TRIGGER t2 BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_audit()",
        Ok,
    ),
    dev("SELECT bump_total(1)", Ok),
    dev("SELECT nextval('invoice_seq')", Ok),
    dev("SELECT truncate_text(note, 3) FROM orders", Ok),
    dev("SELECT truncate_text('DROP TABLE orders', 4)", Ok),
    dev("SELECT 'DROP TABLE x'", Ok),
    dev("SELECT \"drop\", \"truncate\" FROM orders", Ok),
    dev("INSERT INTO delete_log (what) VALUES ('; DROP TABLE orders; --')", Ok),
    dev("SELECT * FROM delete_log -- DROP TABLE delete_log", Ok),
    dev("PREPARE pol_del AS DELETE FROM order_items", Ok)
        .autocommit()
        .after("DEALLOCATE pol_del"),
    dev("EXECUTE pol_del", Ok)
        .before("PREPARE pol_del AS DELETE FROM order_items")
        .after("DEALLOCATE pol_del"),
    dev("EXECUTE never_prepared", NotPrepared),
    dev("COPY orders TO '{marker}'", DANGEROUS),
    // Inside a DO block or a function body, which development allows:
    // Portcullis reads the code and finds the capability there.
    dev(
        "DO $$ BEGIN COPY orders TO PROGRAM 'cat > {marker}'; END $$",
        DANGEROUS,
    ),
    dev("DO $$ BEGIN EXECUTE 'SET ROLE \"{role}\"'; END $$", DANGEROUS),
    staging(
        "DO $$ BEGIN PERFORM set_config('session_replication_role', 'replica', false); END $$",
        DANGEROUS,
    ),
    dev(
        "DO $$ BEGIN PERFORM pg_read_file('/etc/hostname'); END $$",
        DANGEROUS,
    ),
    dev(
        "DO $$ DECLARE s text; BEGIN s := pg_read_file('/etc/hostname'); END $$",
        DANGEROUS,
    ),
    dev(
        "DO $$ BEGIN IF true THEN EXECUTE 'COPY orders TO ''{marker}'''; END IF; END $$",
        DANGEROUS,
    ),
    dev(
        "DO $$ BEGIN EXECUTE 'DO $i$ BEGIN EXECUTE ''SET ROLE \"{role}\"''; END $i$'; END $$",
        DANGEROUS,
    ),
    dev(
        "DO $$ BEGIN ALTER ROLE \"{role}\" SET search_path = evil, pg_catalog; END $$",
        DANGEROUS,
    ),
    dev("DO $$ BEGIN LOAD 'auto_explain'; END $$", DANGEROUS),
    dev(
        "DO $$ BEGIN ALTER TABLE orders DISABLE TRIGGER orders_audit; END $$",
        DANGEROUS,
    ),
    dev(
        "DO $$ BEGIN PERFORM dblink_connect('c', 'dbname={db}'); END $$",
        DANGEROUS,
    )
    .dblink(),
    dev(
        "INSERT INTO delete_log (what) VALUES ('first'); DO $$ BEGIN SET ROLE \"{role}\"; END $$",
        DANGEROUS,
    ),
    // What Portcullis cannot read counts as every capability.
    dev(
        "DO $$ BEGIN EXECUTE format('SET ROLE %I', '{role}'); END $$",
        DANGEROUS,
    ),
    dev(
        "DO $$ DECLARE q text := 'SELECT 1'; BEGIN EXECUTE q; END $$",
        DANGEROUS,
    ),
    dev("DO LANGUAGE plperl $$ 1; $$", DANGEROUS),
    dev(
        "CREATE FUNCTION sneaky() RETURNS void LANGUAGE plpgsql AS $$ \
         BEGIN COPY orders TO PROGRAM 'cat > {marker}'; END $$",
        DANGEROUS,
    ),
    dev(
        "CREATE FUNCTION sneaky_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM set_config('session_replication_role', 'replica', false); RETURN NEW; END $$",
        DANGEROUS,
    ),
    dev(
        "CREATE PROCEDURE sneaky_role() LANGUAGE sql AS $$ SET ROLE \"{role}\" $$",
        DANGEROUS,
    ),
    // Everyday code stays allowed.
    dev(
        "DO $$ BEGIN INSERT INTO delete_log (what) VALUES ('from do'); END $$",
        Ok,
    ),
    dev(
        "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM orders; \
         IF n > 0 THEN UPDATE orders SET note = 'x' WHERE id = 1; END IF; END $$",
        Ok,
    ),
    dev(
        "DO $$ BEGIN EXECUTE 'UPDATE orders SET note = ''y'' WHERE id = 2'; END $$",
        Ok,
    ),
    dev("DO $$ BEGIN RESET ROLE; END $$", Ok),
    dev(
        "CREATE FUNCTION touch_note() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN NEW.note := coalesce(NEW.note, TG_OP); RETURN NEW; END $$",
        Ok,
    ),
    dev(
        "CREATE FUNCTION order_note(p_id orders.id%TYPE) RETURNS text LANGUAGE plpgsql AS $$ \
         DECLARE o orders%ROWTYPE; BEGIN SELECT * INTO o FROM orders WHERE id = p_id; \
         o.note := coalesce(o.note, '-'); RETURN o.note; END $$",
        Ok,
    ),
    dev(
        "CREATE PROCEDURE bump_first() LANGUAGE plpgsql AS $$ \
         BEGIN UPDATE orders SET total = total + 1 WHERE id = 1; END $$",
        Ok,
    ),
    dev("COPY delete_log (what) FROM '/etc/hostname'", DANGEROUS),
    dev("COPY orders TO PROGRAM 'cat > {marker}'", DANGEROUS),
    dev("COPY delete_log (what) FROM PROGRAM 'echo pwned'", DANGEROUS),
    dev("SELECT pg_read_file('/etc/hostname')", DANGEROUS),
    dev("SELECT lo_import('/etc/hostname')", DANGEROUS),
    dev(
        "SELECT * FROM dblink('dbname={db}', 'DELETE FROM order_items') AS t(r text)",
        DANGEROUS,
    )
    .dblink(),
    dev("CREATE FOREIGN DATA WRAPPER evil_fdw", DANGEROUS),
    dev("CREATE SERVER evil_server FOREIGN DATA WRAPPER dummy_fdw", DANGEROUS),
    dev("SET ROLE \"{role}\"", DANGEROUS),
    dev("SET SESSION AUTHORIZATION \"{role}\"", DANGEROUS),
    dev("SELECT set_config('role', '{role}', false)", DANGEROUS),
    dev("ALTER ROLE \"{role}\" SET search_path = evil, pg_catalog", DANGEROUS),
    dev("ALTER SYSTEM SET work_mem = '1MB'", DANGEROUS),
    dev("LOAD 'auto_explain'", DANGEROUS),
    dev(
        "BEGIN; INSERT INTO delete_log (what) VALUES ('2pc'); PREPARE TRANSACTION 'portcullis_2pc'",
        DANGEROUS,
    ),
    dev("ALTER TABLE orders DISABLE TRIGGER orders_audit", DANGEROUS),
    dev("SET session_replication_role = replica", DANGEROUS),
    dev(
        "INSERT INTO delete_log (what) VALUES ('first'); SET ROLE \"{role}\"",
        DANGEROUS,
    ),
    dev(
        "DO $$ BEGIN PERFORM 1; END $$; COPY orders TO PROGRAM 'cat > {marker}'",
        DANGEROUS,
    ),
    // ---------------------------------------------------------------
    // A label that is not exactly "staging" gets the production rules.
    // ---------------------------------------------------------------
    mislabelled("DROP TABLE orders", DROP),
    mislabelled("TRUNCATE orders", TRUNCATE),
    mislabelled("DELETE FROM order_items", UNFILTERED),
    mislabelled("DO $$ BEGIN PERFORM 1; END $$", OPAQUE),
    mislabelled("CREATE TABLE t_new (id int)", Approval),
    mislabelled("SELECT * FROM orders", Ok),
];

/// One step of a session sequence.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// A simple Query; the server may fail it (that is often the point).
    Query(&'static str),
    /// Parse, Bind, Execute of each statement, then one Sync.
    Batch(&'static [&'static str]),
}

/// A session that changes its search_path one way or another. Afterwards
/// Portcullis must judge `SELECT * FROM orders WHERE id = 1` by the path the
/// server really has (as SHOW reports it): refused when `evil` comes first,
/// since evil.= would run, allowed otherwise.
#[derive(Clone, Copy, Debug)]
pub struct PathSequence {
    pub steps: &'static [Step],
    pub known_bug: Option<&'static str>,
}

const EVIL: Step = Step::Query("SET search_path = evil, pg_catalog, public");

const fn path(steps: &'static [Step]) -> PathSequence {
    PathSequence {
        steps,
        known_bug: None,
    }
}

pub const PATH_SEQUENCES: &[PathSequence] = &[
    path(&[]),
    path(&[EVIL]),
    path(&[EVIL, Step::Query("RESET search_path")]),
    path(&[EVIL, Step::Query("SET search_path TO DEFAULT")]),
    path(&[EVIL, Step::Query("RESET ALL")]),
    path(&[EVIL, Step::Query("DISCARD ALL")]),
    path(&[EVIL, Step::Query("SET search_path = public, evil")]),
    path(&[Step::Query("SET search_path = shadow, public")]),
    path(&[Step::Query("BEGIN"), EVIL, Step::Query("ROLLBACK")]),
    path(&[Step::Query("BEGIN"), EVIL, Step::Query("COMMIT")]),
    path(&[
        Step::Query("BEGIN"),
        EVIL,
        Step::Query("SELECT 1 / 0"),
        Step::Query("ROLLBACK"),
    ]),
    path(&[
        EVIL,
        Step::Query("BEGIN"),
        Step::Query("SET LOCAL search_path = public"),
        Step::Query("COMMIT"),
    ]),
    path(&[
        Step::Query("BEGIN"),
        Step::Query("SET LOCAL search_path = evil, pg_catalog, public"),
        Step::Query("COMMIT"),
    ]),
    path(&[
        EVIL,
        Step::Query("BEGIN"),
        Step::Query("SAVEPOINT s"),
        Step::Query("SET search_path = public"),
        Step::Query("RELEASE SAVEPOINT s"),
        Step::Query("COMMIT"),
    ]),
    path(&[Step::Batch(&["SET search_path = evil, pg_catalog, public"])]),
    path(&[EVIL, Step::Batch(&["SET search_path = public", "SELECT 1"])]),
    path(&[EVIL, Step::Query("SET search_path = public; SELECT 1 / 0")]),
    // The server undoes the SET in the failed batch.
    path(&[
        EVIL,
        Step::Batch(&["SET search_path = public", "SELECT 1 / 0"]),
    ]),
    path(&[
        EVIL,
        Step::Query("BEGIN"),
        Step::Query("SELECT 1 / 0"),
        Step::Query("SET search_path = public"),
        Step::Query("COMMIT"),
    ]),
    // A refused statement aborts the transaction like any error.
    path(&[
        EVIL,
        Step::Query("BEGIN"),
        Step::Query("DROP TABLE orders"),
        Step::Query("SET search_path = public"),
        Step::Query("COMMIT"),
    ]),
    path(&[
        EVIL,
        Step::Query("BEGIN"),
        Step::Query("SAVEPOINT s"),
        Step::Query("SET search_path = public"),
        Step::Query("ROLLBACK TO SAVEPOINT s"),
        Step::Query("COMMIT"),
    ]),
];
