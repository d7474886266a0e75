//! Access profiles: each target maps identities (by kind, group or
//! subject) to the upstream role their sessions log in as, with that
//! role's own password held by the proxy. The database then enforces the
//! role's privileges whatever the statement: an agent on a read-only
//! profile cannot write even where the policies would let it.

use crate::harness::{sqlstate, Proxy, Setup, ALICE, BOB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_logs_in_as_its_profiles_role() {
    // Roles are per cluster: one of its own for this test.
    let role = format!("e2e_reader_{}", std::process::id());
    let var = format!("E2E_READER_PASSWORD_{}", std::process::id());
    // SAFETY: set once, before the proxy reads it; no other test reads it.
    unsafe { std::env::set_var(&var, "reader-secret") };
    let setup = Setup {
        target_extra: format!(
            r#"
[[target.profile]]
name = "agents-read-only"
user = "{role}"
password_env = "{var}"
kinds = ["agent"]
"#
        ),
        ..Setup::default()
    };
    let proxy = Proxy::with(setup).await;
    proxy.upstream_sql(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN \
           CREATE ROLE {role} LOGIN PASSWORD 'reader-secret'; END IF; END $$; \
         CREATE TABLE orders (id int PRIMARY KEY, total int); \
         INSERT INTO orders VALUES (1, 10); \
         GRANT USAGE ON SCHEMA public TO {role}; \
         GRANT SELECT ON orders TO {role}"
    ));

    // A human: the target's own role, which may write.
    let alice = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=require"))
        .await
        .unwrap();
    let who: String = alice
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "postgres");
    alice
        .execute("UPDATE orders SET total = 11 WHERE id = 1", &[])
        .await
        .unwrap();

    // An agent: the read-only role. Reads work; the database refuses the
    // write the development policies would have let through.
    let bob = proxy
        .connect(&proxy.conn_str(BOB, "sslmode=require"))
        .await
        .unwrap();
    let row = bob
        .query_one(
            "SELECT current_user::text, session_user::text, total FROM orders WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), role);
    assert_eq!(row.get::<_, String>(1), role);
    assert_eq!(row.get::<_, i32>(2), 11);
    let e = bob
        .execute("UPDATE orders SET total = 0 WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    assert_eq!(proxy.upstream_sql("SELECT total FROM orders").trim(), "11");
    // The session still names who is connected.
    let ident: String = bob
        .query_one("SELECT current_setting('portcullis.identity')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ident, "bob");
    drop((alice, bob));

    // The trail says which role and profile each session used.
    let dir = proxy.shutdown().await;
    let store =
        portcullis_audit::SqliteStore::open_read_only(&dir.path().join("portcullis-audit.db"))
            .unwrap();
    let found = portcullis_audit::search(
        &store,
        &portcullis_audit::search::Filter {
            kinds: vec![portcullis_audit::record::RecordKind::Connection],
            limit: 100,
            ..Default::default()
        },
    )
    .unwrap();
    let login = |who: &str| {
        found
            .iter()
            .find_map(|f| match &f.record {
                portcullis_audit::record::Record::Connection(c)
                    if c.identity.as_ref().is_some_and(|i| i.subject == who)
                        && matches!(
                            c.result,
                            portcullis_audit::record::ConnectionResult::Succeeded { .. }
                        ) =>
                {
                    Some(c.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no login of {who}"))
    };
    let b = login("bob");
    assert_eq!(b.upstream_role.as_deref(), Some(role.as_str()));
    assert_eq!(b.profile.as_deref(), Some("agents-read-only"));
    let a = login("alice");
    assert_eq!(a.upstream_role.as_deref(), Some("postgres"));
    assert_eq!(a.profile, None);
    crate::harness::cluster()
        .sql(
            "postgres",
            &format!("DROP OWNED BY {role} CASCADE; DROP ROLE IF EXISTS {role}"),
        )
        .ok();
}
