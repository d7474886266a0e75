//! Cost of one policy decision, the price every statement pays.
//!
//! `cargo bench -p portcullis-policy --bench decide`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_policy::{
    default_bundle, Action, Operation, PolicyEngine, PolicySource, Principal, PrincipalKind,
    Request, RequestContext, ResourceRef, StatementFacts, TargetRef, TimeOfDay,
};

fn request(environment: &str, operations: Vec<Operation>) -> Request {
    Request {
        principal: Principal {
            name: "alice".into(),
            kind: PrincipalKind::Human,
            groups: vec!["developers".into(), "analysts".into()],
            on_behalf_of: None,
        },
        target: TargetRef::new("shop", environment),
        statement: StatementFacts {
            operations,
            functions: ["pg_catalog.now".to_owned()].into(),
            statement_count: 1,
            ..Default::default()
        },
        context: RequestContext {
            time: TimeOfDay::from_unix_seconds(1_709_387_110),
            source_address: Some("10.1.2.3".parse().unwrap()),
            approved: false,
            row_limit: Some(1000),
        },
    }
}

fn bench(c: &mut Criterion) {
    // Cold: every decision evaluated by Cedar. Cached: the same request
    // again, as an application repeating its statements.
    let cold = PolicyEngine::default_bundle()
        .unwrap()
        .with_cache_capacity(0);
    let cached = PolicyEngine::default_bundle().unwrap();
    // A bundle with a column rule and a group test: policies that mention
    // `resource` and `principal` make every object its own Cedar request.
    let mut sources = default_bundle();
    sources.push(PolicySource {
        name: "pii.cedar".into(),
        text: r#"@id("pii") @message("personal data")
            forbid(principal, action == Portcullis::Action::"Select",
                   resource == Portcullis::Column::"public.customers.email")
            unless { principal in Portcullis::Group::"pii-readers" };"#
            .into(),
    });
    let per_object = PolicyEngine::from_sources(sources)
        .unwrap()
        .with_cache_capacity(0);
    let cases = [
        (
            "select one table",
            request(
                "production",
                vec![Operation::new(
                    Action::Select,
                    vec![ResourceRef::table("public", "orders")],
                )],
            ),
        ),
        (
            "orm select 2 tables 6 columns",
            request(
                "production",
                vec![Operation::new(
                    Action::Select,
                    vec![
                        ResourceRef::table("public", "orders"),
                        ResourceRef::table("public", "customers"),
                        ResourceRef::column("public", "orders", "id"),
                        ResourceRef::column("public", "orders", "total"),
                        ResourceRef::column("public", "orders", "customer_id"),
                        ResourceRef::column("public", "customers", "id"),
                        ResourceRef::column("public", "customers", "name"),
                        ResourceRef::column("public", "customers", "email"),
                    ],
                )],
            ),
        ),
        (
            "update with where",
            request(
                "production",
                vec![
                    Operation::new(Action::Update, vec![ResourceRef::table("public", "orders")])
                        .with_effective_where(true),
                ],
            ),
        ),
        (
            "begin (no resources)",
            request(
                "production",
                vec![Operation::new(Action::Transaction, vec![])],
            ),
        ),
        (
            "drop denied",
            request(
                "production",
                vec![Operation::new(
                    Action::Drop,
                    vec![ResourceRef::table("public", "orders")],
                )],
            ),
        ),
        (
            "schema change needs approval",
            request(
                "production",
                vec![Operation::new(
                    Action::SchemaChange,
                    vec![ResourceRef::table("public", "orders")],
                )],
            ),
        ),
    ];
    let mut group = c.benchmark_group("decide cold");
    for (name, req) in &cases {
        group.bench_function(*name, |b| b.iter(|| cold.decide(black_box(req))));
    }
    group.finish();
    let mut group = c.benchmark_group("decide cold, per-object bundle");
    for (name, req) in &cases[..2] {
        group.bench_function(*name, |b| b.iter(|| per_object.decide(black_box(req))));
    }
    group.finish();
    let mut group = c.benchmark_group("decide cached");
    for (name, req) in &cases {
        group.bench_function(*name, |b| b.iter(|| cached.decide(black_box(req))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
