//! The shape cache against a fresh analysis: for every statement of the
//! corpus and of PostgreSQL's installed SQL scripts, once a text has left a
//! template for its shape, every other text of that shape must get from the
//! cache exactly what a full analysis gives it. The other texts replace each
//! constant with values chosen to tempt a wrong scan or a skipped check:
//! comment and quote starters, statement separators, tautologies, boolean
//! and setting words, extreme numbers.

use portcullis_analysis::shape::shape_of;
use portcullis_analysis::*;

include!("corpus/cases.rs");

const TEXTS: &[&str] = &[
    "''",
    "'x'",
    "'--'",
    "'/*'",
    "'*/'",
    "''''",
    "'; DROP TABLE t; --'",
    "'$$'",
    "'1 = 1'",
    "'é'",
    "'true'",
    "'off'",
    "'%'",
    "'role'",
    "'search_path'",
    "'standard_conforming_strings'",
    "'pg_catalog.pg_authid'",
    "'\"x\"'",
];
const INTEGERS: &[&str] = &["0", "1", "7", "2147483647", "0000000001"];
const NUMBERS: &[&str] = &[
    "0.0",
    "1e3",
    "2147483648",
    "99999999999999999999",
    "1.",
    "3.5E-2",
];

/// `sql` with its constants replaced by the `round`-th choice of each kind.
fn variant(sql: &str, constants: &[std::ops::Range<usize>], round: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut at = 0;
    for (n, c) in constants.iter().enumerate() {
        out.push_str(&sql[at..c.start]);
        let token = &sql[c.clone()];
        let digits = token.trim_start_matches('0');
        let big = digits.len() > 10 || (digits.len() == 10 && digits > "2147483647");
        let choices = if token.starts_with('\'') {
            TEXTS
        } else if token.contains(['.', 'e', 'E']) || big {
            NUMBERS
        } else {
            INTEGERS
        };
        out.push_str(choices[(round + n) % choices.len()]);
        at = c.end;
    }
    out.push_str(&sql[at..]);
    out
}

/// Checks one seed text; returns whether it left a template.
fn check(sql: &str) -> bool {
    let Some(shape) = shape_of(sql) else {
        return false;
    };
    if shape.constants.is_empty() || analyze(sql).is_err() {
        return false;
    }
    let mut cache = AnalysisCache::new(CacheLimits::default());
    let _ = cache.analyze(sql);
    for round in 0..TEXTS.len() {
        let other = variant(sql, &shape.constants, round);
        let before = cache.stats().shape_hits;
        let cached = cache.analyze(&other);
        if cache.stats().shape_hits == before {
            // No template for this shape (or the variant has another
            // shape): a full analysis was made, nothing to compare.
            return round > 0;
        }
        let fresh = analyze(&other);
        match (cached, fresh) {
            (Ok(c), Ok(f)) => assert_eq!(
                *c, f,
                "cache and analysis differ for {other:?} (seed {sql:?})"
            ),
            // A variant the grammar refuses (a value out of range for its
            // place) would be refused by the server too.
            (Ok(_), Err(_)) => {}
            (Err(e), _) => panic!("a shape hit cannot fail: {e} for {other:?}"),
        }
    }
    true
}

fn statements_of(text: &str) -> Vec<String> {
    match analyze(text) {
        Ok(a) => a
            .statements
            .iter()
            .map(|s| text[s.span.clone()].to_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn cached_shapes_agree_with_full_analysis_on_the_corpus() {
    let seeds: Vec<&str> = CORPUS.iter().map(|c| (c.sql, c.expect).0).collect();
    let templated = seeds.iter().filter(|s| check(s)).count();
    eprintln!(
        "{templated} of {} corpus texts left a template",
        seeds.len()
    );
    assert!(templated > 20, "the corpus exercises the cache");
}

#[test]
fn cached_shapes_agree_with_full_analysis_on_the_postgresql_scripts() {
    let Ok(versions) = std::fs::read_dir("/usr/share/postgresql") else {
        eprintln!("no /usr/share/postgresql: skipped");
        return;
    };
    let mut dirs: Vec<std::path::PathBuf> = versions.flatten().map(|e| e.path()).collect();
    let (mut seeds, mut templated) = (0, 0);
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "sql") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let text: String = text
                .lines()
                .filter(|l| !l.starts_with('\\'))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                .replace("@extschema@", "public")
                .replace("MODULE_PATHNAME", "'$libdir/x'");
            for stmt in statements_of(&text) {
                seeds += 1;
                templated += usize::from(check(&stmt));
            }
        }
    }
    eprintln!("{templated} of {seeds} script statements left a template");
}

#[test]
fn literal_dependent_verdicts_are_never_shared() {
    // Pairs of one shape whose facts differ: the cache must give each its own.
    let pairs = [
        (
            "DELETE FROM t WHERE id = 1 OR 1 = 1",
            "DELETE FROM t WHERE id = 1 OR 1 = 2",
        ),
        (
            "UPDATE t SET a = 1 WHERE 'x' = 'x'",
            "UPDATE t SET a = 1 WHERE 'x' = 'y'",
        ),
        (
            "UPDATE t SET a = 1 WHERE 5 IN (1, 5)",
            "UPDATE t SET a = 1 WHERE 5 IN (1, 6)",
        ),
        (
            "DELETE FROM t WHERE name LIKE '%'",
            "DELETE FROM t WHERE name LIKE 'a%'",
        ),
        (
            "SELECT set_config('role', 'admin', false)",
            "SELECT set_config('work_mem', '64MB', false)",
        ),
        (
            "SET search_path = 'evil', public",
            "SET search_path = 'app', public",
        ),
        (
            "SET standard_conforming_strings = 'off'",
            "SET standard_conforming_strings = 'on'",
        ),
    ];
    for (a, b) in pairs {
        let mut cache = AnalysisCache::new(CacheLimits::default());
        let first = cache.analyze(a).expect("parses");
        let second = cache.analyze(b).expect("parses");
        assert_eq!(*first, analyze(a).expect("parses"));
        assert_eq!(*second, analyze(b).expect("parses"), "{b} after {a}");
        assert_ne!(first.statements[0], second.statements[0], "{a} / {b}");
        // And in the other order.
        let mut cache = AnalysisCache::new(CacheLimits::default());
        let _ = cache.analyze(b);
        assert_eq!(
            *cache.analyze(a).expect("parses"),
            analyze(a).expect("parses")
        );
    }
}
