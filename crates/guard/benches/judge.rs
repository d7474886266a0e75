//! What judging one message costs the proxy: analysis (through the cache),
//! name resolution, the policy decision (through its cache), with the
//! default bundle on a production target and a loaded catalog, as in a
//! running proxy.
//!
//! - `judge_text hot`: the same text again, as an application repeating
//!   its statements (extended protocol, ORMs, pgbench `-M extended`): the
//!   per-statement cost in steady state.
//! - `judge_text cold`: a new text every time (literals inlined, as
//!   pgbench `-M simple` sends them): a full pg_query parse and analysis;
//!   the decision is still cached, the facts being the same.
//! - `judge_text cold, no decision cache`: the worst case, nothing cached.
//! - `judge_prepared`: a Bind of a statement prepared earlier (`-M prepared`).
//! - `parts`: the steps of a hot `judge_text`, to see where time goes.
//!
//! `cargo bench -p portcullis-guard --bench judge`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_guard::catalog::Row;
use portcullis_guard::{
    describe, shared_analysis_cache, CatalogSnapshot, CatalogView, Guard, GuardSettings,
    PreparedText, Scope, SessionState, Who,
};
use portcullis_policy::{
    Enforcement, PolicyEngine, Principal, PrincipalKind, Request, RequestContext, TargetRef,
};

/// Statements an application sends, smallest first.
const STATEMENTS: &[(&str, &str)] = &[
    (
        "pgbench select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    ),
    (
        "orm select join",
        r#"SELECT "orders"."id", "orders"."total_cents", "orders"."created_at", "customers"."full_name" FROM "orders" INNER JOIN "customers" ON "customers"."id" = "orders"."customer_id" WHERE "orders"."status" = $1 AND "orders"."created_at" > $2 ORDER BY "orders"."created_at" DESC LIMIT $3 OFFSET $4"#,
    ),
    (
        "orm insert returning",
        r#"INSERT INTO "orders" ("customer_id", "status", "total_cents", "created_at") VALUES ($1, $2, $3, now()) RETURNING "id""#,
    ),
    (
        "update by id",
        "UPDATE orders SET status = 'paid' WHERE id = $1",
    ),
    ("begin", "BEGIN"),
    ("drop table (refused)", "DROP TABLE orders"),
];

const THREE_STATEMENTS: &str = "BEGIN; UPDATE orders SET status = 'paid' WHERE id = 7; COMMIT";

fn row(cols: &[&str]) -> Row {
    cols.iter()
        .map(|c| (*c != "NULL").then(|| c.to_string()))
        .collect()
}

/// The demo shop and pgbench tables, and the functions the statements call.
fn catalog() -> CatalogSnapshot {
    let tables = [
        "customers",
        "payment_methods",
        "api_tokens",
        "products",
        "orders",
        "order_items",
        "payments",
        "pgbench_accounts",
        "pgbench_branches",
        "pgbench_tellers",
        "pgbench_history",
    ];
    let mut relations: Vec<Row> = tables.iter().map(|t| row(&["public", t, "r"])).collect();
    relations.push(row(&["public", "orders_id_seq", "S"]));
    CatalogSnapshot::from_rows(&[
        vec![row(&["public"]), row(&["pg_catalog"])],
        relations,
        vec![],
        vec![],
        vec![
            row(&["pg_catalog", "now", "0", "0", "false", "s", "NULL"]),
            row(&["pg_catalog", "lower", "1", "0", "false", "i", "NULL"]),
            row(&["pg_catalog", "count", "1", "0", "false", "i", "NULL"]),
            row(&["pg_catalog", "nextval", "1", "0", "false", "v", "NULL"]),
        ],
        vec![],
        vec![],
    ])
    .expect("valid catalog rows")
}

fn guard(engine: PolicyEngine) -> Guard {
    let g = Guard::new(
        Arc::new(engine),
        shared_analysis_cache(),
        GuardSettings {
            target: TargetRef::new("shop", "production"),
            enforcement: Enforcement::Enforce,
            row_limit: None,
            masking: Default::default(),
        },
    );
    g.set_catalog(catalog(), 0);
    g
}

fn who() -> Who {
    Who {
        principal: Principal {
            name: "dana".into(),
            kind: PrincipalKind::Human,
            groups: vec!["developers".into()],
            on_behalf_of: None,
        },
        source: Some("10.1.2.3".parse().expect("an address")),
        limits: Default::default(),
        approved: false,
    }
}

fn session() -> SessionState {
    SessionState::new("portcullis", Some("\"$user\", public"))
}

fn bench(c: &mut Criterion) {
    let g = guard(PolicyEngine::default_bundle().expect("default bundle"));
    let who = who();
    let s = session();

    // Sanity: what a production target says about each, so the bench
    // measures the paths it claims to.
    for (name, sql) in STATEMENTS {
        let refused = g.judge_text(sql, &who, &s).refusal.is_some();
        assert_eq!(refused, name.contains("refused"), "{name}: {sql}");
    }
    assert!(g.judge_text(THREE_STATEMENTS, &who, &s).refusal.is_none());

    let mut group = c.benchmark_group("judge_text hot");
    for (name, sql) in STATEMENTS {
        let _ = g.judge_text(sql, &who, &s);
        group.bench_function(*name, |b| b.iter(|| g.judge_text(black_box(sql), &who, &s)));
    }
    group.bench_function("3 statements", |b| {
        b.iter(|| g.judge_text(black_box(THREE_STATEMENTS), &who, &s))
    });
    group.finish();

    // Unique texts; built outside the timed part, a fresh batch per sample.
    // "New literals" changes only the literal (a shape-cache hit after the
    // first); "cold" also puts a unique comment in front, so that every
    // text is a new shape and is parsed in full.
    for (group_name, new_shape) in [
        ("judge_text new literals", false),
        ("judge_text cold", true),
    ] {
        let mut group = c.benchmark_group(group_name);
        let mut n = 0u64;
        let mut unique = |template: &str| {
            n += 1;
            let sql = template.replace("$1", &(1_000_000 + n).to_string());
            if new_shape {
                format!("/* {n} */ {sql}")
            } else {
                sql
            }
        };
        for (name, template) in [
            ("pgbench select", STATEMENTS[0].1),
            ("orm select join", STATEMENTS[1].1),
            ("update by id", STATEMENTS[3].1),
            (
                "3 statements",
                "BEGIN; UPDATE orders SET status = 'paid' WHERE id = $1; COMMIT",
            ),
        ] {
            group.bench_function(name, |b| {
                b.iter_batched(
                    || unique(template),
                    |sql| g.judge_text(&sql, &who, &s),
                    criterion::BatchSize::SmallInput,
                )
            });
        }
        group.finish();
    }

    let uncached = guard(
        PolicyEngine::default_bundle()
            .expect("default bundle")
            .with_cache_capacity(0),
    );
    let mut group = c.benchmark_group("judge_text cold, no decision cache");
    let mut n = 0u64;
    let mut unique = |template: &str| {
        n += 1;
        format!(
            "/* {n} */ {}",
            template.replace("$1", &(1_000_000 + n).to_string())
        )
    };
    for (name, template) in [
        ("pgbench select", STATEMENTS[0].1),
        ("orm select join", STATEMENTS[1].1),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || unique(template),
                |sql| uncached.judge_text(&sql, &who, &s),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    // A Bind: the statement was prepared (Parse) earlier in the session.
    let mut prepared = session();
    for (name, sql) in [("", STATEMENTS[0].1), ("orm", STATEMENTS[1].1)] {
        let j = g.judge_text(sql, &who, &prepared);
        assert!(j.refusal.is_none());
        let key = prepared.protocol_name(name.as_bytes()).expect("ASCII");
        let text = PreparedText {
            analysis: j.analysis.expect("parsed"),
            index: 0,
            source: None,
        };
        let ticket = prepared.parse(key, text).expect("room");
        prepared.settle(ticket, true);
    }
    let unnamed = prepared.protocol_name(b"").expect("ASCII");
    let orm = prepared.protocol_name(b"orm").expect("ASCII");
    let mut group = c.benchmark_group("judge_prepared");
    group.bench_function("pgbench select (unnamed)", |b| {
        b.iter(|| g.judge_prepared(black_box(&unnamed), &who, &prepared))
    });
    group.bench_function("orm select join (named)", |b| {
        b.iter(|| g.judge_prepared(black_box(&orm), &who, &prepared))
    });
    group.finish();

    // The steps of a hot judge_text, for the smallest statement and the
    // ORM join.
    let (_, snapshot) = g.catalog();
    let view = snapshot.as_deref().map(|snapshot| CatalogView {
        snapshot,
        functions_unseen: false,
    });
    let scope = Scope {
        search_path: s.search_path(),
        session_user: Some(&s.session_user),
        catalog: view.as_ref(),
    };
    let mut group = c.benchmark_group("parts");
    group.bench_function("catalog snapshot (read lock, Arc clone)", |b| {
        b.iter(|| g.catalog())
    });
    group.bench_function("RequestContext::now", |b| {
        b.iter(|| RequestContext::now(black_box(who.source)))
    });
    for (name, sql) in [STATEMENTS[0], STATEMENTS[1]] {
        let analysis = g.analyze(sql).expect("parses");
        let facts = describe(&analysis.statements[0], &scope, 1);
        let request = Request {
            principal: who.principal.clone(),
            target: g.settings().target.clone(),
            statement: facts.clone(),
            context: RequestContext::now(who.source),
        };
        let _ = g.engine().decide(&request);
        group.bench_function(format!("{name}: analysis cache hit"), |b| {
            b.iter(|| g.analyze(black_box(sql)))
        });
        group.bench_function(format!("{name}: describe"), |b| {
            b.iter(|| describe(black_box(&analysis.statements[0]), &scope, 1))
        });
        group.bench_function(format!("{name}: request build (clones)"), |b| {
            b.iter(|| Request {
                principal: who.principal.clone(),
                target: g.settings().target.clone(),
                statement: facts.clone(),
                context: RequestContext::now(who.source),
            })
        });
        group.bench_function(format!("{name}: decide (cached)"), |b| {
            b.iter(|| g.engine().decide(black_box(&request)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
