//! No input may panic the analysis: garbage, truncated SQL, spliced
//! fragments, deep nesting, huge statements. Every case must end in facts
//! or a typed error.
//!
//! The generator is a fixed-seed xorshift, so a failure reproduces; set
//! `ANALYSIS_FUZZ_ITERATIONS` to run longer.

use portcullis_analysis::{analyze, AnalysisCache, AnalysisError, CacheLimits, StatementClass};

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

/// Ways to nest a statement deeply, each `depth` levels deep.
fn nested(shape: &str, depth: usize) -> String {
    match shape {
        "concat" => format!("SELECT {}", vec!["a"; depth].join(" || ")),
        "plus" => format!("SELECT {}", vec!["1"; depth].join(" + ")),
        "cast" => format!("SELECT 1{}", "::int".repeat(depth)),
        "and" => format!(
            "SELECT 1 WHERE {}true{}",
            "(x = 1 AND ".repeat(depth),
            ")".repeat(depth)
        ),
        "or_in_delete" => format!(
            "DELETE FROM t WHERE {}true{}",
            "(x = 1 OR ".repeat(depth),
            ")".repeat(depth)
        ),
        "not" => format!("SELECT {} true", "NOT ".repeat(depth)),
        "calls" => format!("SELECT {}1{}", "f(".repeat(depth), ")".repeat(depth)),
        "arrays" => format!("SELECT {}1{}", "ARRAY[".repeat(depth), "]".repeat(depth)),
        "rows" => format!("SELECT {}1{}", "ROW(".repeat(depth), ")".repeat(depth)),
        "union" => vec!["SELECT 1"; depth].join(" UNION "),
        "case" => format!(
            "SELECT {}1{}",
            "CASE WHEN x THEN ".repeat(depth),
            " END".repeat(depth)
        ),
        "subqueries" => format!("SELECT {}1{}", "(SELECT ".repeat(depth), ")".repeat(depth)),
        "parens" => format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth)),
        _ => unreachable!("no shape {shape}"),
    }
}

/// The deepest tree of each shape the analysis accepts (see the "Limits"
/// paragraph of lib.rs): CASE and sub-queries cost more levels of the
/// tree per level of SQL.
const DEEPEST_ACCEPTED: &[(&str, usize)] = &[
    ("concat", 990),
    ("plus", 990),
    ("cast", 990),
    ("and", 990),
    ("or_in_delete", 990),
    ("not", 990),
    ("calls", 990),
    ("arrays", 990),
    ("rows", 990),
    ("union", 990),
    ("case", 490),
    ("subqueries", 330),
    ("parens", 9990),
];

/// Runs `f` on a thread with the stack of a tokio worker (2 MiB): a stack
/// overflow aborts the test process, so passing means it did not happen.
fn on_a_2_mib_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("thread starts")
        .join()
        .expect("no panic")
}

#[test]
fn long_operator_chains_are_analysed() {
    on_a_2_mib_stack(|| {
        for shape in ["concat", "plus"] {
            let analysis = analyze(&nested(shape, 200)).expect("a 200-term chain is analysed");
            assert_eq!(analysis.statements[0].class, StatementClass::Select);
        }
        let concat = analyze(&nested("concat", 200)).expect("analysed");
        assert_eq!(
            concat.statements[0].operators.len(),
            1,
            "`||` once, however often used"
        );
    });
}

#[test]
fn the_deepest_accepted_trees_fit_a_2_mib_stack() {
    on_a_2_mib_stack(|| {
        for &(shape, depth) in DEEPEST_ACCEPTED {
            if let Err(e) = analyze(&nested(shape, depth)) {
                panic!("{shape} at depth {depth}: {e}");
            }
        }
    });
}

#[test]
fn nesting_10000_deep_is_refused_on_a_2_mib_stack() {
    on_a_2_mib_stack(|| {
        for &(shape, _) in DEEPEST_ACCEPTED {
            if shape == "parens" {
                continue; // redundant parentheses add no depth to the tree
            }
            assert_eq!(
                analyze(&nested(shape, 10_000)),
                Err(AnalysisError::TooDeep),
                "{shape}"
            );
        }
    });
}

#[test]
fn any_depth_fails_closed() {
    on_a_2_mib_stack(|| {
        for &(shape, deepest) in DEEPEST_ACCEPTED {
            for depth in [
                1,
                10,
                100,
                deepest,
                deepest + 20,
                2 * deepest,
                3000,
                20_000,
                100_000,
            ] {
                match analyze(&nested(shape, depth)) {
                    Ok(_) => assert!(depth <= deepest, "{shape} at {depth} accepted"),
                    Err(AnalysisError::TooDeep) => assert!(depth > deepest, "{shape} at {depth}"),
                    Err(other) => panic!("{shape} at depth {depth}: {other}"),
                }
            }
        }
    });
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
