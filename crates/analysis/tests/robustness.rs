//! No input may panic the analysis: garbage, truncated SQL, spliced
//! fragments, deep nesting, huge statements. Every case must end in facts
//! or a typed error.
//!
//! The generator is a fixed-seed xorshift, so a failure reproduces; set
//! `ANALYSIS_FUZZ_ITERATIONS` to run longer.

use portcullis_analysis::{analyze, AnalysisCache, AnalysisError, CacheLimits};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const SEEDS: &[&str] = &[
    "WITH d AS (DELETE FROM t WHERE id = $1 RETURNING *) SELECT * FROM d JOIN u ON u.id = d.uid",
    "INSERT INTO t (a, b) VALUES (1, 'x'), (2, $$y$$) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b RETURNING *",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.x THEN UPDATE SET v = s.v WHEN NOT MATCHED BY SOURCE THEN DELETE",
    "CREATE RULE r AS ON INSERT TO t WHERE NEW.x > 0 DO ALSO (DELETE FROM a; UPDATE b SET c = 1)",
    "CREATE FUNCTION f(a int DEFAULT 1) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a; END",
    "EXPLAIN (ANALYZE, FORMAT json) SELECT * FROM t WHERE x IS NOT NULL OR x IS NULL",
    "COPY (SELECT pg_read_file('/etc/passwd')) TO PROGRAM 'cat > /tmp/x'",
    "ALTER TABLE t DROP COLUMN a, ALTER COLUMN b TYPE int USING b::int; ALTER TABLE p DETACH PARTITION p1",
    "SELECT U&\"d\\0061ta\" FROM U&\"t\" UESCAPE '!' WHERE E'\\x41' = 'A' AND B'101' = X'5'",
    "DO $body$ BEGIN EXECUTE 'DROP TABLE t'; END $body$ LANGUAGE plpgsql",
    "SELECT set_config('role', 'admin', false), current_setting('search_path')",
    "PREPARE p(int) AS UPDATE t SET a = a + 1 WHERE id = $1; EXECUTE p(1); DEALLOCATE p",
    "SELECT * FROM t1 TABLESAMPLE SYSTEM (10) NATURAL JOIN t2 LEFT JOIN LATERAL (SELECT * FROM f(t1.x)) s ON true",
    "SELECT json_object('a' VALUE 1), xmlelement(name a), j.x FROM JSON_TABLE('[]', '$[*]' COLUMNS (x int PATH '$.x')) AS j",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO r; REVOKE r FROM s; ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO r",
];

const FRAGMENTS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "(",
    ")",
    ",",
    ";",
    "'",
    "\"",
    "$$",
    "$a$",
    "--",
    "/*",
    "*/",
    "E'\\",
    "U&\"",
    "DROP",
    "TABLE",
    "t",
    "1",
    "=",
    "OR",
    "AND",
    "NOT",
    "NULL",
    "WITH",
    "AS",
    "DELETE",
    "INSERT INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "RETURNING",
    "*",
    ".",
    "::",
    "[",
    "]",
    "CASE",
    "WHEN",
    "THEN",
    "END",
    "\u{e9}",
    "\u{1F600}",
    " ",
    "\n",
    "\t",
    "$1",
    "ON CONFLICT",
    "DO",
    "MERGE",
    "USING",
    "COPY",
    "PROGRAM",
    "EXPLAIN",
    "ANALYZE",
];

fn must_not_panic(sql: &str) {
    // The test fails if this panics; any Ok or Err is acceptable.
    let _ = analyze(sql);
}

fn iterations() -> usize {
    std::env::var("ANALYSIS_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn truncated_statements_never_panic() {
    for seed in SEEDS {
        assert!(analyze(seed).is_ok(), "seed must parse: {seed}");
        for (i, _) in seed.char_indices() {
            must_not_panic(&seed[..i]);
            must_not_panic(&seed[i..]);
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..iterations() {
        let len = rng.below(120);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xFF) as u8).collect();
        // Statement text reaches the analysis as UTF-8 (the proxy refuses
        // other client encodings); lossy conversion keeps odd bytes in play.
        must_not_panic(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn random_token_soup_never_panics() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..iterations() {
        let n = 1 + rng.below(30);
        let sql: Vec<&str> = (0..n).map(|_| rng.pick(FRAGMENTS)).collect();
        must_not_panic(&sql.join(" "));
    }
}

#[test]
fn spliced_statements_never_panic() {
    let mut rng = Rng(0x94D0_49BB_1331_11EB);
    for _ in 0..iterations() {
        let a = rng.pick(SEEDS);
        let b = rng.pick(SEEDS);
        let cut_a = a
            .char_indices()
            .map(|(i, _)| i)
            .nth(rng.below(a.chars().count()))
            .unwrap_or(0);
        let cut_b = b
            .char_indices()
            .map(|(i, _)| i)
            .nth(rng.below(b.chars().count()))
            .unwrap_or(0);
        must_not_panic(&format!("{}{}", &a[..cut_a], &b[cut_b..]));
    }
}

#[test]
fn deep_nesting_fails_closed() {
    for depth in [10, 50, 200, 2000, 20000] {
        let parens = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
        let subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(depth), ")".repeat(depth));
        let operators = format!("SELECT {}", vec!["a"; depth].join(" || "));
        let nots = format!("SELECT {} true", "NOT ".repeat(depth));
        for sql in [parens, subqueries, operators, nots] {
            match analyze(&sql) {
                Ok(_) => {}
                Err(AnalysisError::TooDeep | AnalysisError::Syntax { .. }) => {}
                Err(other) => panic!("unexpected error at depth {depth}: {other}"),
            }
        }
    }
    let deep = format!("SELECT {}", vec!["a"; 100].join(" || "));
    assert_eq!(analyze(&deep), Err(AnalysisError::TooDeep));
}

#[test]
fn large_statements_are_analysed() {
    let values: Vec<String> = (0..5000)
        .map(|i| format!("({i}, 'name {i}', now())"))
        .collect();
    let sql = format!(
        "INSERT INTO t (id, name, created) VALUES {}",
        values.join(", ")
    );
    let analysis = analyze(&sql).expect("parses");
    assert_eq!(analysis.statements[0].functions.len(), 1);
    let many: Vec<String> = (0..2000).map(|i| format!("SELECT {i}")).collect();
    assert_eq!(
        analyze(&many.join(";")).expect("parses").statement_count(),
        2000
    );
    let in_list: Vec<String> = (0..10000).map(|i| i.to_string()).collect();
    let sql = format!("DELETE FROM t WHERE id IN ({})", in_list.join(","));
    assert!(analyze(&sql).expect("parses").statements[0]
        .unfiltered_modifications()
        .is_empty());
}

#[test]
fn nul_bytes_are_refused() {
    assert_eq!(
        analyze("SELECT 1\0; DROP TABLE t"),
        Err(AnalysisError::NulByte)
    );
}

#[test]
fn the_cache_survives_garbage() {
    let mut cache = AnalysisCache::new(CacheLimits {
        max_entries: 64,
        max_text_len: 256,
    });
    let mut rng = Rng(0xBF58_476D_1CE4_E5B9);
    for _ in 0..iterations() {
        let n = 1 + rng.below(12);
        let sql: Vec<&str> = (0..n).map(|_| rng.pick(FRAGMENTS)).collect();
        let _ = cache.analyze(&sql.join(" "));
        assert!(cache.len() <= 64);
    }
}
