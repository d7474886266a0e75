//! The boundary with the PostgreSQL parser: text in, parse tree or a typed
//! error out, never a panic.
//!
//! The parser is libpg_query 18 (PostgreSQL's own grammar), linked by the
//! `pg_query` crate. We call its C entry point directly rather than
//! `pg_query::parse`, which walks the tree a second time to build table and
//! function summaries we do not use (with unchecked indexing and casts in it
//! that could panic).
//!
//! We ask for the tree as JSON (`pg_query_parse_opts`) and read it into the
//! same prost structs `pg_query::parse` returns (`json`, with generated
//! readers in `json_nodes`). The protobuf entry point gives the identical tree, but
//! its encoder (upb) tests every one of the ~270 fields of the `Node` oneof
//! for every node it writes: for an ORM join with ORDER BY/LIMIT that was
//! 29 µs of a 42 µs cold analysis, against 7 µs to write the JSON. Tests
//! check that both paths give equal trees.

mod json;
mod json_nodes;

use std::ffi::{c_char, c_int, CStr, CString};

use pg_query::protobuf::ParseResult;
use pg_query::ParserOptions;

use crate::error::AnalysisError;
use json::DecodeError;

// libpg_query's public C API (pg_query.h), as the `pg_query` crate binds it.
// The layouts must match pg_query.h of the libpg_query version `pg_query`
// links; they have been stable since libpg_query 13.

#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

#[repr(C)]
struct PgQueryParseResult {
    parse_tree: *mut c_char,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

extern "C" {
    fn pg_query_parse_opts(input: *const c_char, parser_options: c_int) -> PgQueryParseResult;
    fn pg_query_free_parse_result(result: PgQueryParseResult);
}

/// Parses `sql` with the server's own grammar, as a session with
/// `standard_conforming_strings = on` and the default `backslash_quote`
/// lexes it. The proxy refuses sessions where either differs (the issue's
/// lexing rule), so this is the only lexing the analysis needs.
///
/// `DISABLE_ESCAPE_STRING_WARNING` keeps the parser from producing
/// warnings, which it would otherwise collect from its stderr.
#[cfg(test)]
pub(crate) fn parse(sql: &str) -> Result<ParseResult, AnalysisError> {
    parse_traced(sql).map(|p| p.tree)
}

/// A parse tree with what the shape cache needs to know of it.
pub(crate) struct Parsed {
    pub tree: ParseResult,
    /// Byte offsets in the text where each `A_Const` node's token starts
    /// (for a negated number, its minus sign), sorted.
    pub a_const_locations: Vec<usize>,
}

/// [`parse`], also reporting where the tree's constants came from.
pub(crate) fn parse_traced(sql: &str) -> Result<Parsed, AnalysisError> {
    let input = CString::new(sql).map_err(|_| AnalysisError::NulByte)?;
    let options = ParserOptions::DISABLE_ESCAPE_STRING_WARNING.bits();
    // SAFETY: `input` is a NUL-terminated string that outlives the call.
    // libpg_query runs each call in its own thread-local memory context and
    // returns malloc'd buffers, which we only read before handing the whole
    // result back to its free function, exactly once.
    let result = unsafe { pg_query_parse_opts(input.as_ptr(), options) };
    let outcome = if result.error.is_null() {
        let tree: &[u8] = if result.parse_tree.is_null() {
            b""
        } else {
            // SAFETY: without an error, `parse_tree` is a NUL-terminated
            // string, valid until the free below.
            unsafe { CStr::from_ptr(result.parse_tree) }.to_bytes()
        };
        json::parse_result(tree)
            .map(|(tree, a_const_locations)| Parsed {
                tree,
                a_const_locations,
            })
            .map_err(|e| match e {
                DecodeError::TooDeep => AnalysisError::TooDeep,
                DecodeError::Unexpected => {
                    AnalysisError::Internal("the parse tree could not be decoded")
                }
            })
    } else {
        // SAFETY: a non-null error points to a PgQueryError whose message is
        // a NUL-terminated string (or null), valid until the free below.
        let message = unsafe {
            let error = &*result.error;
            if error.message.is_null() {
                String::from("syntax error")
            } else {
                CStr::from_ptr(error.message).to_string_lossy().into_owned()
            }
        };
        // The first is PostgreSQL's check_stack_depth (the grammar's actions,
        // writing the tree); the second is bison's parser stack (YYMAXDEPTH,
        // 10,000 open constructs such as parentheses).
        if message.contains("stack depth limit exceeded") || message.starts_with("memory exhausted")
        {
            Err(AnalysisError::TooDeep)
        } else {
            Err(AnalysisError::Syntax { message })
        }
    };
    // SAFETY: the result came from pg_query_parse_opts and is freed once;
    // nothing borrowed from it outlives this point (the reader copied what
    // it kept).
    unsafe { pg_query_free_parse_result(result) };
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            parse("SELEC 1"),
            Err(AnalysisError::Syntax { .. })
        ));
        assert_eq!(parse("SELECT 1\0"), Err(AnalysisError::NulByte));
        let chain = |n| format!("SELECT {}", vec!["a"; n].join(" || "));
        assert!(parse(&chain(200)).is_ok());
        assert_eq!(parse(&chain(10_000)), Err(AnalysisError::TooDeep));
        let parens = format!("SELECT {}1{}", "(".repeat(20_000), ")".repeat(20_000));
        assert_eq!(parse(&parens), Err(AnalysisError::TooDeep));
    }

    /// Both decodings of the parser's output must give the same tree: ours
    /// from JSON, `pg_query::parse`'s from protobuf. The protobuf decoder
    /// stops at 100 nested messages; deeper trees are only checked by us.
    fn assert_same_tree(sql: &str) {
        let theirs = pg_query::parse(sql, ParserOptions::DISABLE_ESCAPE_STRING_WARNING);
        match (parse(sql), theirs) {
            (Ok(ours), Ok(theirs)) => assert!(ours == theirs.protobuf, "trees differ: {sql}"),
            (Err(_), Err(_)) | (Ok(_), Err(pg_query::Error::Decode(_))) => {}
            (ours, theirs) => panic!(
                "outcomes differ: ours {:?}, pg_query {:?}: {sql}",
                ours.err(),
                theirs.err()
            ),
        }
    }

    /// Literals and spellings whose JSON needs care: escapes, control
    /// characters, `<` and `>`, empty strings, big and negative numbers,
    /// booleans (false is written as an empty object), one-character fields,
    /// 64-bit fields, enums of every kind.
    const SPELLINGS: &[&str] = &[
        "SELECT 1, -1, 2147483647, 2147483648, -2147483649, 9223372036854775807, 1.5, -0.0, 1e10, .5, 'x', '', E'a\\nb\\tc\\\\d\\'e', E'\\x01\\x1f', '<>&\"', '\u{e9}\u{1F600}', U&'\\0441', B'101', X'ff', true, false, NULL",
        "SELECT 'a\u{1}b', 'tab\there', 'cr\rlf\n', U&'d\\0061t\\+000061', $tag$ dollar \"quoted\" \\ $tag$, \"Quoted \"\"Name\"\"\" FROM \"\u{e9}t\u{e9}\"",
        "SELECT $1, $2::int, '{1,2}'::int[], (ARRAY[1,2])[1], (x).y, t.*, -x, +x, x ! y, @ x, a[1:2], a[:3], a[2:], (f(x)).y",
        "SELECT ARRAY(SELECT 1), EXISTS (SELECT 1), x = ANY (SELECT 1), x > ALL (ARRAY[1]), x IS DISTINCT FROM y, x NOT BETWEEN SYMMETRIC 1 AND 2, x SIMILAR TO 'a%' ESCAPE '#', x ILIKE ANY (ARRAY['a']), NULLIF(a, b), GREATEST(1, 2), COALESCE(a, b), 'a' COLLATE \"C\", x AT TIME ZONE 'UTC'",
        "SELECT CURRENT_DATE, CURRENT_TIME(3), LOCALTIMESTAMP, CURRENT_USER, SESSION_USER, CURRENT_CATALOG, INTERVAL '1' YEAR, '1 day'::interval(3), 1::numeric(10,2), 'x'::varchar(5), 'x'::bit varying(3), timestamp(3) with time zone 'now', 'x'::\"int4\"[][]",
        "SELECT xmlelement(name a, xmlattributes(1 as b)), json_object('a': 1), JSON_ARRAY(1, 2), json_scalar(1), 1 IS JSON OBJECT WITH UNIQUE KEYS",
        "SELECT * FROM ROWS FROM (f(1), g(2)) WITH ORDINALITY AS x(a, b), LATERAL json_table('[]', '$' COLUMNS (id FOR ORDINALITY, a int PATH '$.a' DEFAULT 1 ON EMPTY ERROR ON ERROR, NESTED PATH '$.b[*]' COLUMNS (c text))) jt",
        "SELECT a FROM t GROUP BY GROUPING SETS ((a), CUBE (b), ROLLUP (c), ()) HAVING count(*) FILTER (WHERE x) > 1 WINDOW w AS (PARTITION BY a ORDER BY b ROWS BETWEEN 1 PRECEDING AND CURRENT ROW EXCLUDE TIES)",
        "SELECT 1 FROM t FOR UPDATE OF t NOWAIT; SELECT 1 FROM t FOR KEY SHARE SKIP LOCKED; SELECT DISTINCT ON (a) a FROM t ORDER BY a USING <; TABLE t; VALUES (1, DEFAULT)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 10) SEARCH DEPTH FIRST BY n SET ord CYCLE n SET is_cycle USING path SELECT * FROM r; WITH m AS MATERIALIZED (SELECT 1), nm AS NOT MATERIALIZED (SELECT 2) SELECT * FROM m, nm",
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.x THEN UPDATE SET v = DEFAULT WHEN NOT MATCHED BY TARGET THEN INSERT OVERRIDING SYSTEM VALUE VALUES (s.id) WHEN NOT MATCHED BY SOURCE THEN DO NOTHING RETURNING merge_action(), old.*, new.*",
        "CREATE TEMP TABLE t (a int REFERENCES u MATCH FULL ON DELETE CASCADE ON UPDATE SET NULL, b text DEFAULT '' COLLATE \"C\", c int GENERATED ALWAYS AS (a*2) STORED, d int GENERATED BY DEFAULT AS IDENTITY)",
        "CREATE UNLOGGED TABLE u (x int); FETCH 5 FROM c; FETCH ALL FROM c; FETCH BACKWARD 2147483647 FROM c; MOVE -3 IN c",
        "CREATE TABLE p (a int, b text) PARTITION BY RANGE (a); CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (MINVALUE) TO (10); CREATE TABLE p2 PARTITION OF p FOR VALUES IN (1, 2); CREATE TABLE h PARTITION OF p FOR VALUES WITH (MODULUS 4, REMAINDER 1); CREATE TABLE d PARTITION OF p DEFAULT",
        "ALTER TABLE t ALTER COLUMN a SET STATISTICS 100, ALTER COLUMN b SET STORAGE EXTERNAL, ALTER COLUMN c SET COMPRESSION lz4, SET ACCESS METHOD heap, CLUSTER ON i, SET WITHOUT OIDS",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY t USING gin (a jsonb_path_ops, (lower(b)) DESC NULLS LAST) INCLUDE (c) NULLS NOT DISTINCT WITH (fillfactor = 70) WHERE d > 0",
        "CREATE SEQUENCE s AS bigint INCREMENT BY -1 MINVALUE -9223372036854775808 MAXVALUE 9223372036854775807 START 1 CACHE 10 CYCLE OWNED BY t.a",
        "CREATE FUNCTION f(a int = 1, OUT b text, VARIADIC c int[]) RETURNS SETOF record LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 10 ROWS 5 SET search_path = '' AS $$ SELECT 1 $$",
        "CREATE TRIGGER tr BEFORE INSERT OR UPDATE OF a ON t REFERENCING NEW TABLE AS n FOR EACH ROW WHEN (NEW.a IS NOT NULL) EXECUTE FUNCTION f('x')",
        "CREATE TYPE e AS ENUM ('a', ''); ALTER TYPE e ADD VALUE IF NOT EXISTS 'b' BEFORE 'a'; CREATE DOMAIN d AS int CHECK (VALUE > 0) NOT NULL; CREATE TYPE r AS RANGE (subtype = int)",
        "GRANT SELECT (a, b), UPDATE ON t TO PUBLIC, CURRENT_ROLE WITH GRANT OPTION GRANTED BY CURRENT_USER; REVOKE GRANT OPTION FOR ALL ON SCHEMA s FROM r CASCADE",
        "CREATE POLICY p ON t AS RESTRICTIVE FOR UPDATE TO r USING (a = current_user) WITH CHECK (true); CREATE PUBLICATION p FOR TABLE t (a) WHERE (a > 1), TABLES IN SCHEMA s",
        "CREATE STATISTICS s (dependencies, ndistinct) ON a, (b + 1) FROM t; ALTER STATISTICS s SET STATISTICS 10; COMMENT ON TABLE t IS ''; COMMENT ON COLUMN t.a IS NULL; SECURITY LABEL ON TABLE t IS 'x'",
        "EXPLAIN (ANALYZE false, BUFFERS, FORMAT yaml) SELECT 1; VACUUM (FULL, PARALLEL 2) t (a); ANALYZE VERBOSE t; REINDEX (VERBOSE) TABLE CONCURRENTLY t; CLUSTER t USING i",
        "COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER match, NULL '', FORCE_NOT_NULL (a), ON_ERROR ignore, DELIMITER E'\\t')",
        "SET LOCAL search_path TO a, \"B\"; SET x TO DEFAULT; SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE; RESET ALL; SET SESSION AUTHORIZATION DEFAULT; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
        "SELECT 1 INTO TEMP x; SELECT 1 INTO UNLOGGED y; CREATE MATERIALIZED VIEW v AS SELECT 1 WITH NO DATA; CREATE RECURSIVE VIEW rv (n) AS SELECT 1; CREATE OR REPLACE TEMP VIEW tv WITH (security_barrier) AS SELECT 1 WITH CASCADED CHECK OPTION",
        "",
        "-- only a comment",
        "SELECT 1;;; ;SELECT 2",
    ];

    #[test]
    fn agrees_with_pg_query_parse() {
        for sql in SPELLINGS {
            assert_same_tree(sql);
        }
        for case in corpus::CORPUS {
            assert_same_tree(case.sql);
        }
        // Deep, but within the protobuf decoder's reach.
        assert_same_tree(&format!("SELECT {}", vec!["a"; 40].join(" || ")));
    }

    /// Every prefix and suffix of the spellings: truncated strings,
    /// escapes and comments.
    #[test]
    fn agrees_on_fragments() {
        for sql in SPELLINGS.iter().take(3) {
            for (i, _) in sql.char_indices() {
                assert_same_tree(&sql[..i]);
                assert_same_tree(&sql[i..]);
            }
        }
    }

    /// The SQL scripts of the PostgreSQL installation (catalog views,
    /// extensions: some 4,000 statements of DDL), when there is one.
    #[test]
    fn agrees_on_the_postgresql_install_scripts() {
        let Ok(versions) = std::fs::read_dir("/usr/share/postgresql") else {
            eprintln!("no /usr/share/postgresql: skipped");
            return;
        };
        let mut scripts = Vec::new();
        let mut dirs: Vec<std::path::PathBuf> = versions.flatten().map(|e| e.path()).collect();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "sql") {
                    scripts.push(path);
                }
            }
        }
        for script in scripts {
            let Ok(text) = std::fs::read_to_string(&script) else {
                continue;
            };
            // psql meta-commands and extension placeholders are not SQL.
            let text: String = text
                .lines()
                .filter(|l| !l.starts_with('\\'))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                .replace("@extschema@", "public")
                .replace("@extowner@", "postgres");
            for statement in pg_query::split_with_parser(&text).unwrap_or_default() {
                assert_same_tree(statement);
            }
        }
    }

    #[allow(dead_code)] // `expect` is for tests/corpus.rs
    mod corpus {
        include!("../../tests/corpus/cases.rs");
    }
}
