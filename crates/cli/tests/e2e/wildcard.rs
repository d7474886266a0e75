//! A target for every database of a server (`name = "*"`): test suites and
//! tools create databases at run time and connect to them by name.

use crate::harness::*;
use crate::raw::{self, fe};

fn wildcard(environment: &str) -> Setup {
    Setup {
        extra: format!(
            "[[target]]\nname = \"*\"\nenvironment = \"{environment}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"postgres\"\npassword_file = \"pgpass\"\n",
            cluster().port()
        ),
        ..Setup::default()
    }
}

async fn login_to(proxy: &Proxy, db: &str) -> Result<raw::Raw, raw::Msg> {
    raw::Raw::login(
        proxy.addr,
        portcullis_wire::ProtocolVersion::V3_0,
        &[("user", ALICE.0), ("database", db)],
        ALICE.1,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_database_is_served_with_the_wildcard_targets_rules() {
    let proxy = Proxy::with(wildcard("production")).await;
    let other = portcullis_testbed::fresh_database("wild");
    cluster()
        .sql(
            &other,
            "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)",
        )
        .unwrap();

    // A database no target names is reached through "*", in that database.
    let mut c = login_to(&proxy, &other).await.expect("served");
    c.send(&fe::query("SELECT current_database(), count(*) FROM t"))
        .await;
    let got = c.until_ready().await;
    let row = got.iter().find(|m| m.tag == b'D').expect("a row");
    assert!(
        String::from_utf8_lossy(&row.body).contains(&other),
        "{}",
        raw::tags(&got)
    );
    // Judged as the "*" target's environment says: production.
    c.send(&fe::query("DROP TABLE t")).await;
    let got = c.until_ready().await;
    let err = got.iter().find(|m| m.tag == b'E').expect("refused");
    assert_eq!(err.code().as_deref(), Some("42501"));
    assert_eq!(
        cluster().sql(&other, "SELECT count(*) FROM t").unwrap(),
        "2"
    );

    // The named target keeps its own rules (development: DROP is fine).
    let mut app = login_to(&proxy, "app").await.expect("served");
    app.send(&fe::query("CREATE TABLE x (v int); DROP TABLE x"))
        .await;
    let got = app.until_ready().await;
    assert!(!got.iter().any(|m| m.tag == b'E'), "{}", raw::tags(&got));

    // A database that does not exist gets the server's own error.
    let e = login_to(&proxy, "no_such_database_here")
        .await
        .err()
        .expect("refused");
    assert_eq!(e.severity().as_deref(), Some("FATAL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_wildcard_unknown_databases_are_refused() {
    let proxy = Proxy::start().await;
    let other = portcullis_testbed::fresh_database("nowild");
    let e = login_to(&proxy, &other).await.err().expect("refused");
    assert_eq!(e.code().as_deref(), Some("3D000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_rules_may_name_a_database_the_wildcard_serves() {
    let other = portcullis_testbed::fresh_database("wildmask");
    cluster()
        .sql(
            &other,
            "CREATE TABLE t (id int, c1 text, c2 text); INSERT INTO t VALUES (7, 'opaque', 'plain')",
        )
        .unwrap();
    let mut setup = wildcard("staging");
    // As `portcullis discover` writes them: by database; and by the
    // wildcard target itself.
    setup.extra.push_str(&format!(
        "[[masking.column]]\ntarget = \"{other}\"\ncolumn = \"public.t.c1\"\nclass = \"secret\"\n\
         [[masking.column]]\ntarget = \"*\"\ncolumn = \"public.t.id\"\nclass = \"secret\"\n"
    ));
    let proxy = Proxy::with(setup).await;
    let mut c = login_to(&proxy, &other).await.expect("served");
    c.send(&fe::query("SELECT id, c1, c2 FROM t")).await;
    let got = c.until_ready().await;
    let row = got.iter().find(|m| m.tag == b'D').expect("a row");
    let text = String::from_utf8_lossy(&row.body).into_owned();
    assert!(!text.contains("opaque") && !text.contains('7'), "{text:?}");
    assert!(text.contains("plain"), "{text:?}");
}
