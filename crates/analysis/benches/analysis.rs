//! Cold analysis of typical ORM statements, and cache hits.
//!
//! Targets (issue 3): a cache hit under 1 µs; a cold analysis of a typical
//! ORM statement under 20 µs median. Run with
//! `cargo bench -p portcullis-analysis`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_analysis::{analyze, AnalysisCache, CacheLimits, SharedAnalysisCache};

/// Statements as ORMs send them (quoted identifiers, parameters), small to
/// large.
const ORM_STATEMENTS: &[(&str, &str)] = &[
    (
        "select_by_id",
        r#"SELECT "users"."id", "users"."email", "users"."name" FROM "users" WHERE "users"."id" = $1 LIMIT $2"#,
    ),
    (
        "select_join_order",
        r#"SELECT "orders"."id", "orders"."total", "orders"."created_at", "customers"."name" FROM "orders" INNER JOIN "customers" ON "customers"."id" = "orders"."customer_id" WHERE "orders"."status" = $1 AND "orders"."created_at" > $2 ORDER BY "orders"."created_at" DESC LIMIT $3 OFFSET $4"#,
    ),
    (
        "insert_returning",
        r#"INSERT INTO "orders" ("customer_id", "total", "status", "created_at", "updated_at") VALUES ($1, $2, $3, $4, $5) RETURNING "id""#,
    ),
    (
        "update_by_id",
        r#"UPDATE "orders" SET "status" = $1, "updated_at" = $2 WHERE "orders"."id" = $3"#,
    ),
    (
        "delete_by_id",
        r#"DELETE FROM "sessions" WHERE "sessions"."id" = $1"#,
    ),
];

fn cold(c: &mut Criterion) {
    let mut group = c.benchmark_group("cold");
    for (name, sql) in ORM_STATEMENTS {
        group.bench_function(*name, |b| b.iter(|| analyze(black_box(sql))));
    }
    group.finish();
}

fn cache_hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_hit");
    let (_, sql) = ORM_STATEMENTS[1];
    let mut cache = AnalysisCache::new(CacheLimits::default());
    // A realistic population, so the hit is not on a one-entry table.
    for i in 0..1000 {
        let _ = cache.analyze(&format!("SELECT {i} FROM t"));
    }
    let _ = cache.analyze(sql);
    group.bench_function("local", |b| b.iter(|| cache.get(black_box(sql))));
    let shared = SharedAnalysisCache::new(CacheLimits::default());
    for i in 0..1000 {
        let _ = shared.analyze(&format!("SELECT {i} FROM t"));
    }
    let _ = shared.analyze(sql);
    group.bench_function("shared", |b| b.iter(|| shared.analyze(black_box(sql))));
    group.finish();
}

criterion_group!(benches, cold, cache_hit);
criterion_main!(benches);
