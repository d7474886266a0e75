//! Judging with the target's catalog: views, partitions and inheritance
//! children resolve to the tables they reach, the search_path decides
//! which table a name means, and the catalog says which user functions
//! are read-only.

use crate::harness::*;

const FIXTURE: &str = "
CREATE SCHEMA secret;
CREATE TABLE secret.base (id int PRIMARY KEY, card text);
INSERT INTO secret.base VALUES (1, '4111');
CREATE VIEW public.harmless AS SELECT id FROM secret.base;
CREATE VIEW public.nested AS SELECT id FROM public.harmless;
CREATE TABLE public.events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE secret.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.base (id int);
CREATE FUNCTION public.tidy(text) RETURNS text IMMUTABLE LANGUAGE sql AS $$SELECT lower($1)$$;
CREATE FUNCTION public.bump() RETURNS int VOLATILE LANGUAGE sql AS $$SELECT 1$$;
";

/// The default bundle plus a rule keeping everyone away from the secret
/// schema.
fn policies(dir: &std::path::Path) {
    for p in portcullis_policy::default_bundle() {
        let file = dir.join(std::path::Path::new(&p.name).file_name().unwrap());
        std::fs::write(file, &p.text).unwrap();
    }
    std::fs::write(
        dir.join("zz-secret.cedar"),
        r#"
@id("deny-secret-schema")
@message("the secret schema is off limits")
@hint("ask the data owners for an extract")
forbid(principal, action, resource in Portcullis::Schema::"secret");
"#,
    )
    .unwrap();
}

async fn proxy(dir: &tempfile::TempDir) -> Proxy {
    policies(dir.path());
    let proxy = Proxy::with(Setup {
        environment: "production",
        extra: format!("[policy]\nfiles = [\"{}\"]\n", dir.path().display()),
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql(FIXTURE);
    proxy
}

async fn refused_by(client: &tokio_postgres::Client, sql: &str, policy: &str) {
    let e = client.simple_query(sql).await.unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
    assert_eq!(db.code().code(), "42501", "{sql}: {db:?}");
    assert!(db.message().contains(policy), "{sql}: {}", db.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_and_partitions_reach_their_tables() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(&dir).await;
    let client = proxy.client().await;
    refused_by(&client, "SELECT * FROM secret.base", "deny-secret-schema").await;
    // Through a view, and a view of a view.
    refused_by(&client, "SELECT * FROM harmless", "deny-secret-schema").await;
    refused_by(
        &client,
        "SELECT count(*) FROM public.nested",
        "deny-secret-schema",
    )
    .await;
    // A partition in the secret schema behind a public partitioned table.
    refused_by(
        &client,
        "DELETE FROM events WHERE at = '2025-02-01'",
        "deny-secret-schema",
    )
    .await;
    // ONLY the parent does not reach the partition.
    client
        .simple_query("SELECT * FROM ONLY events")
        .await
        .unwrap();
    // An unrelated table of the same name in public.
    client.simple_query("SELECT * FROM base").await.unwrap();
    // search_path decides which `base` is meant.
    client
        .simple_query("SET search_path = secret, public")
        .await
        .unwrap();
    refused_by(&client, "SELECT * FROM base", "deny-secret-schema").await;
    client.simple_query("RESET search_path").await.unwrap();
    client.simple_query("SELECT * FROM base").await.unwrap();
    // A search_path change that is rolled back is undone.
    client
        .simple_query("BEGIN; SET search_path = secret; ROLLBACK")
        .await
        .unwrap();
    client.simple_query("SELECT * FROM base").await.unwrap();
    // The extended protocol: judged at Parse, and again at Bind under the
    // path in force then.
    let stmt = client.prepare("SELECT * FROM base").await.unwrap();
    client.query(&stmt, &[]).await.unwrap();
    client
        .simple_query("SET search_path = secret")
        .await
        .unwrap();
    let e = client.query(&stmt, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_says_which_user_functions_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(&dir).await;
    let client = proxy.client().await;
    // Immutable in pg_proc: everyday SQL.
    let rows = client.simple_query("SELECT tidy('ABC')").await.unwrap();
    assert!(rows.len() >= 2);
    // Volatile user function: opaque, refused in production.
    refused_by(&client, "SELECT bump()", "deny-opaque-code-in-production").await;
    // A function the catalog has never seen is opaque too.
    refused_by(
        &client,
        "SELECT no_such_function(1)",
        "deny-opaque-code-in-production",
    )
    .await;
}

/// A storm of schema changes (a migration, a test suite) costs a bounded
/// number of catalog loads, and the snapshot still catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_ddl_costs_a_few_catalog_loads() {
    let proxy = Proxy::start().await;
    let client = proxy.client().await;
    let runtime = proxy.handle.runtime();
    let target = runtime.targets.get("app").expect("target app").clone();
    let before = target.catalog.background_loads();
    for i in 0..150 {
        client
            .simple_query(&format!(
                "CREATE TABLE storm_{i} (id int); ALTER TABLE storm_{i} ADD COLUMN v int"
            ))
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let knows_last = |t: &portcullis_proxy::runtime::TargetRuntime| {
        use portcullis_analysis::RelationCatalog;
        t.guard.catalog().1.is_some_and(|c| {
            c.find_relation("storm_149", &["public".to_owned()])
                .is_some()
        })
    };
    while !knows_last(&target) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let loads = target.catalog.background_loads() - before;
    eprintln!("{loads} catalog loads for 150 schema changes");
    assert!(
        (1..=20).contains(&loads),
        "{loads} loads for 150 schema changes"
    );
    assert!(knows_last(&target), "the snapshot caught up");
}

/// Development, plus a rule refusing reads that run code Portcullis cannot
/// inspect: creating functions is allowed, calling a volatile one is not.
async fn development_denying_opaque_reads(dir: &tempfile::TempDir) -> Proxy {
    for p in portcullis_policy::default_bundle() {
        let file = dir
            .path()
            .join(std::path::Path::new(&p.name).file_name().unwrap());
        std::fs::write(file, &p.text).unwrap();
    }
    std::fs::write(
        dir.path().join("zz-opaque-reads.cedar"),
        r#"
@id("deny-opaque-reads")
@message("reads that run code Portcullis cannot inspect are not allowed here")
@hint("call read-only functions only")
forbid(principal, action == Portcullis::Action::"Select", resource)
when { context.opaque };
"#,
    )
    .unwrap();
    let proxy = Proxy::with(Setup {
        environment: "development",
        extra: format!("[policy]\nfiles = [\"{}\"]\n", dir.path().display()),
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql(
        "CREATE FUNCTION public.label(int) RETURNS text STABLE LANGUAGE sql AS $$SELECT 'l' || $1$$;
         CREATE TABLE public.audit (n int);",
    );
    proxy
}

const MAKE_VOLATILE: &str = "CREATE OR REPLACE FUNCTION public.label(int) RETURNS text VOLATILE \
     LANGUAGE sql AS $$INSERT INTO public.audit VALUES ($1) RETURNING 'w'$$";

/// A session's own schema change is seen by its very next statement, before
/// any catalog refresh: the function it just made volatile (and writing)
/// is judged as such, outside and inside a transaction and within one
/// string. Other sessions see it once the refreshed snapshot lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_own_ddl_is_seen_by_its_next_statement() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = development_denying_opaque_reads(&dir).await;
    let client = proxy.client().await;
    let other = proxy.client().await;
    client.simple_query("SELECT label(1)").await.unwrap();
    other.simple_query("SELECT label(1)").await.unwrap();

    // Within one string: the call after the replacement is refused, so
    // nothing of the string runs.
    refused_by(
        &client,
        &format!("{MAKE_VOLATILE}; SELECT label(2)"),
        "deny-opaque-reads",
    )
    .await;
    let volatility =
        || proxy.upstream_sql("SELECT provolatile FROM pg_proc WHERE proname = 'label'");
    assert_eq!(volatility().trim(), "s", "the replacement did not run");

    // Inside a transaction: no catalog load can see the change yet.
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query(MAKE_VOLATILE).await.unwrap();
    refused_by(&client, "SELECT label(3)", "deny-opaque-reads").await;
    // The refusal failed the transaction, so COMMIT rolls it back.
    let _ = client.simple_query("COMMIT").await;
    assert_eq!(volatility().trim(), "s");

    // Committed, and judged at once (no waiting for the refresh).
    client.simple_query(MAKE_VOLATILE).await.unwrap();
    assert_eq!(volatility().trim(), "v");
    refused_by(&client, "SELECT label(4)", "deny-opaque-reads").await;
    let e = client
        .query("SELECT label($1)", &[&5i32])
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate(&e).as_deref(),
        Some("42501"),
        "extended protocol: {e}"
    );
    assert_eq!(
        proxy
            .upstream_sql("SELECT count(*) FROM public.audit")
            .trim(),
        "0"
    );

    // Other sessions follow once the refresh lands.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match other.simple_query("SELECT label(6)").await {
            Err(e) => {
                assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
                break;
            }
            Ok(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the snapshot never caught up"
                );
                proxy.upstream_sql("TRUNCATE public.audit");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Several queries in one write: the call after the replacement is judged
/// before the server has run either, and is refused all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_call_after_its_own_ddl_is_judged_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = development_denying_opaque_reads(&dir).await;
    let client = proxy.client().await;
    client.simple_query("SELECT label(1)").await.unwrap();
    let (first, replace, call) = tokio::join!(
        client.simple_query("SELECT 1"),
        client.simple_query(MAKE_VOLATILE),
        client.simple_query("SELECT label(2)"),
    );
    first.unwrap();
    replace.unwrap();
    let e = call.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    assert_eq!(
        proxy
            .upstream_sql("SELECT count(*) FROM public.audit")
            .trim(),
        "0"
    );
}
