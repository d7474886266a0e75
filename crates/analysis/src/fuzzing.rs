//! One entry point for fuzzing the shape cache, shared by the cargo-fuzz
//! target (`fuzz/`, `shapes`) and the randomized test below, so the property
//! is checked on every `cargo test` too.
//!
//! The property: once a text has left a template for its shape, any other
//! text of that shape gets from the cache exactly what a full analysis
//! gives it. The input is split at its first NUL into a seed text and the
//! material for the other text's literals; the other text is the seed with
//! each constant replaced by a literal of the same kind built from that
//! material (strings with anything in them but backslashes, integers and
//! numbers of any size), so the scan, the node check and the tracking of
//! value reads are all exercised.

use crate::cache::{AnalysisCache, CacheLimits};
use crate::shape::shape_of;

/// Checks the property on `data`; returns whether a cached analysis was
/// compared with a full one. Panics only on a bug.
pub fn exercise(data: &[u8]) -> bool {
    let (seed, material) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(seed) = std::str::from_utf8(seed) else {
        return false;
    };
    let Some(shape) = shape_of(seed) else {
        return false;
    };
    if shape.constants.is_empty() || crate::analyze(seed).is_err() {
        return false;
    }
    let mut cache = AnalysisCache::new(CacheLimits::default());
    let _ = cache.analyze(seed);
    let mut chunks = material.split(|&b| b == 0xff);
    let mut other = String::with_capacity(seed.len() + material.len());
    let mut at = 0;
    for c in &shape.constants {
        other.push_str(&seed[at..c.start]);
        let chunk = chunks.next().unwrap_or(b"");
        let token = &seed[c.clone()];
        other.push_str(&literal_like(token, chunk));
        at = c.end;
    }
    other.push_str(&seed[at..]);
    let Some(other_shape) = shape_of(&other) else {
        return false;
    };
    if other_shape.key != shape.key {
        // Another kind of number (an integer grown past 32 bits): another
        // shape, analysed in full.
        return false;
    }
    let before = cache.stats().shape_hits;
    let cached = cache.analyze(&other);
    if cache.stats().shape_hits == before {
        return false; // the seed left no template
    }
    match (cached, crate::analyze(&other)) {
        (Ok(c), Ok(f)) => assert_eq!(
            *c, f,
            "cache and analysis differ for {other:?} (seed {seed:?})"
        ),
        // The grammar refuses the value where it stands (the server would too).
        (Ok(_), Err(_)) => {}
        (Err(e), _) => panic!("a shape hit failed: {e}"),
    }
    true
}

/// A literal of the same token kind as `token`, built from `chunk`.
fn literal_like(token: &str, chunk: &[u8]) -> String {
    if token.starts_with('\'') {
        let text = String::from_utf8_lossy(chunk)
            .replace('\\', "/")
            .replace('\0', "");
        return format!("'{}'", text.replace('\'', "''"));
    }
    let digits: String = chunk
        .iter()
        .map(|b| char::from(b'0' + b % 10))
        .take(40)
        .collect();
    let digits = if digits.is_empty() {
        "0".to_owned()
    } else {
        digits
    };
    if token.contains(['.', 'e', 'E']) {
        format!("{digits}.5")
    } else {
        digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_literals_never_split_cache_and_analysis() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [
            "SELECT a, 'x' FROM t WHERE id = 1 AND b = 'y' LIMIT 10",
            "UPDATE t SET v = 'a' WHERE id = 5 -- 'c'\n",
            "SELECT /* ' */ 1, '/*', 2 /* nested /* x */ ' */ FROM t",
            "SELECT -1, - 2, 3-4, a-5 FROM t",
            "SELECT 'a'\n'b' FROM t",
            "SELECT 1.5e3, 2e-2, 007, 2147483648, 2147483647",
            "UPDATE t SET a = 'x' WHERE id = $1 AND b = 5 OR c = 'q'",
            "DELETE FROM t WHERE id = 1 OR 1 = 1",
            "SELECT set_config('role', 'x', false)",
            "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y') RETURNING id",
            "SELECT '1'::int, 'x'::regclass, interval '1 day', varchar(5) 'abc'",
            "SELECT 1; SELECT 'two'; UPDATE t SET a = 3 WHERE b = 4",
            // Output lineage over constants of every kind.
            "SELECT substr(c.ssn, 1, 4) || 'x', row_to_json(c), (SELECT s.v FROM s WHERE s.id = 7 LIMIT 1), * FROM customers c JOIN orders USING (id), generate_series(1, 3) g WHERE total > 10.5",
            "WITH RECURSIVE r(n, e) AS (SELECT 1, 'a' UNION ALL SELECT n + 2, e || 'b' FROM r WHERE n < 5) SELECT n, e, 'c' FROM r UNION SELECT 3, 'd', 'e'",
        ];
        let mut compared = 0;
        for seed in seeds {
            for _ in 0..40 {
                let mut data = seed.as_bytes().to_vec();
                data.push(0);
                let n = next() % 64;
                for _ in 0..n {
                    let r = next();
                    // Mostly printable, with quotes, comment starters and
                    // separators over-represented.
                    let b = match r % 8 {
                        0 => b'\'',
                        1 => b'-',
                        2 => b'/',
                        3 => b'*',
                        4 => 0xff,
                        5 => b';',
                        _ => (32 + (r >> 8) % 95) as u8,
                    };
                    data.push(b);
                }
                compared += usize::from(exercise(&data));
            }
        }
        // 208 with the first twelve seeds: literal-dependent ones leave no template.
        assert!(compared > 150, "only {compared} comparisons");
    }
}
