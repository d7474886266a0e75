//! Statements held for approval inside a live session: approved through
//! the CLI or the HTTP API, denied, expired, cancelled, abandoned; who may
//! decide; an approval bound to what was held. Every case checks what the
//! database holds afterwards, not only what the client was told.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use portcullis_config::ScramVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{cluster, sqlstate, Proxy, Setup, ALICE, BOB};
use crate::raw::{self, fe};

pub(crate) const DORA: (&str, &str) = ("dora", "dora-secret");
const DAN: (&str, &str) = ("dan", "dan-secret");
const ERIN: (&str, &str) = ("erin", "erin-secret");

/// A production target with an admin listener, two DBAs and someone who
/// is not one.
pub(crate) async fn proxy(approvals: &str) -> Proxy {
    proxy_with("", approvals).await
}

/// As [`proxy`], with `server` keys.
async fn proxy_with(server: &str, approvals: &str) -> Proxy {
    let user = |(name, password): (&str, &str), groups: &str| {
        format!(
            "[[user]]\nname = \"{name}\"\nscram = \"{}\"\ngroups = [{groups}]\n",
            ScramVerifier::generate(password.as_bytes())
        )
    };
    let proxy = Proxy::with(Setup {
        environment: "production",
        admin: true,
        server: server.into(),
        target_extra: "row_limit = \"off\"".into(),
        extra: format!(
            "{}{}{}[approvals]\n{approvals}\n",
            user(DORA, "\"dba\""),
            user(DAN, "\"dba\""),
            user(ERIN, "\"developers\""),
        ),
        ..Setup::default()
    })
    .await;
    direct(
        &proxy,
        "CREATE TABLE orders (id int PRIMARY KEY, total int, note text);\
         INSERT INTO orders SELECT g, g * 10, 'n' FROM generate_series(1, 5) g;",
    );
    proxy
}

pub(crate) fn direct(proxy: &Proxy, sql: &str) -> String {
    cluster()
        .sql(&proxy.db, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn indexes(proxy: &Proxy) -> String {
    direct(
        proxy,
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'orders'",
    )
    .trim()
    .to_owned()
}

/// One call to the approvals API as `who`.
pub(crate) async fn api(
    proxy: &Proxy,
    who: (&str, &str),
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    http(
        proxy,
        who,
        method,
        path,
        "Content-Type: application/json\r\n",
        body,
    )
    .await
}

/// One request to the admin listener with `headers` (each ending in CRLF).
async fn http(
    proxy: &Proxy,
    who: (&str, &str),
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", who.0, who.1));
    let mut s = tokio::net::TcpStream::connect(proxy.admin.expect("admin listener"))
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\n\
         {headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("HTTP response timed out")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Waits for the one pending request `who` may see; returns it.
pub(crate) async fn pending(proxy: &Proxy, who: (&str, &str)) -> serde_json::Value {
    for _ in 0..200 {
        let (status, v) = api(proxy, who, "GET", "/approvals", "").await;
        assert_eq!(status, 200, "{v}");
        if let Some(r) = v["requests"].as_array().and_then(|r| r.first()) {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending request appeared");
}

/// Approves or denies request `r` through the API as `who`.
pub(crate) async fn decide(
    proxy: &Proxy,
    who: (&str, &str),
    r: &serde_json::Value,
    verdict: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let path = format!("/approvals/{}/{verdict}", id(r));
    api(proxy, who, "POST", &path, body).await
}

/// Request `r` as `who` sees it through the API.
pub(crate) async fn show(
    proxy: &Proxy,
    who: (&str, &str),
    r: &serde_json::Value,
) -> (u16, serde_json::Value) {
    api(proxy, who, "GET", &format!("/approvals/{}", id(r)), "").await
}

pub(crate) fn id(r: &serde_json::Value) -> String {
    r["id"].as_str().unwrap().to_owned()
}

pub(crate) fn cli(proxy: &Proxy, who: (&str, &str), args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("approvals")
        .args(args)
        .args(["--url", &format!("http://{}", proxy.admin.unwrap())])
        .args(["--user", who.0])
        .env("PORTCULLIS_PASSWORD", who.1)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_then_approved_through_the_cli_runs_once_as_sent() {
    let proxy = proxy("").await;
    let alice = proxy.client().await;
    let run = tokio::spawn(async move {
        alice
            .simple_query("CREATE INDEX orders_total_idx ON orders (total)")
            .await
            .map(|_| ())
    });
    let r = pending(&proxy, DORA).await;
    // What approvers see.
    assert_eq!(
        r["statement"],
        "CREATE INDEX orders_total_idx ON orders (total)"
    );
    assert_eq!(r["requester"]["subject"], "alice");
    assert_eq!(r["target"], "app");
    assert_eq!(r["environment"], "production");
    assert_eq!(r["approvers"], "dba");
    assert_eq!(r["policy"], "approve-schema-change-in-production");
    assert_eq!(r["in_transaction"], false);
    assert_eq!(r["digest"].as_str().unwrap().len(), 64);
    assert!(
        r["analysis"][0].as_str().unwrap().contains("public.orders"),
        "{r}"
    );
    // And the lock it would take.
    assert!(
        r["analysis"][1]
            .as_str()
            .unwrap()
            .starts_with("takes the SHARE lock on the table (reads go on; writes wait)"),
        "{r}"
    );
    // Held: nothing ran yet.
    assert_eq!(indexes(&proxy), "orders_pkey");

    let shown = cli(&proxy, DORA, &["show", &id(&r)]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{shown:?}");
    assert!(text.contains("CREATE INDEX orders_total_idx"), "{text}");

    let started = Instant::now();
    let out = cli(&proxy, DORA, &["approve", &id(&r), "--reason", "planned"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("approved"));
    run.await
        .unwrap()
        .expect("the approved statement completes");
    eprintln!("approve command to statement done: {:?}", started.elapsed());
    assert_eq!(indexes(&proxy), "orders_pkey,orders_total_idx");

    // Decided once: a second approval is refused.
    let again = cli(&proxy, DAN, &["approve", &id(&r)]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let (_, v) = show(&proxy, DORA, &r).await;
    assert_eq!(v["state"], "approved");
    assert_eq!(v["decisions"][0]["approver"]["subject"], "dora");
    assert_eq!(v["decisions"][0]["reason"], "planned");

    // Audited with both identities: asked, approved, run.
    let dir = proxy.shutdown().await;
    let events: Vec<String> = approval_records(dir.path())
        .iter()
        .map(|a| {
            format!(
                "{:?} {} {}",
                a.event,
                a.actor.as_ref().map_or("-", |p| p.subject.as_str()),
                a.requester.as_ref().map_or("-", |p| p.subject.as_str()),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            "Requested alice alice",
            "Approved dora alice",
            "Executed - alice"
        ],
        "{events:?}"
    );
}

/// The approval records in the audit store of a proxy's folder.
fn approval_records(dir: &std::path::Path) -> Vec<portcullis_audit::record::ApprovalRecord> {
    use portcullis_audit::record::{Record, RecordKind};
    let store =
        portcullis_audit::SqliteStore::open_read_only(&dir.join("portcullis-audit.db")).unwrap();
    let found = portcullis_audit::search(
        &store,
        &portcullis_audit::search::Filter {
            kinds: vec![RecordKind::Approval],
            limit: 100,
            ..portcullis_audit::search::Filter::default()
        },
    )
    .unwrap();
    let mut records: Vec<_> = found
        .iter()
        .filter_map(|f| match &f.record {
            Record::Approval(a) => Some((f.seq, a.clone())),
            _ => None,
        })
        .collect();
    records.sort_by_key(|(seq, _)| *seq);
    records.into_iter().map(|(_, a)| a).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_then_approved_through_the_api_in_the_extended_protocol() {
    let proxy = proxy("").await;
    let mut raw = raw::login(&proxy, ALICE).await;
    // A pipeline: the held Bind and everything after it wait as a unit.
    raw.send(&fe::concat(&[
        fe::parse("", "ALTER TABLE orders ADD COLUMN shipped date", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
        fe::query("SELECT count(*) FROM orders"),
    ]))
    .await;
    let r = pending(&proxy, DAN).await;
    assert_eq!(r["statement"], "ALTER TABLE orders ADD COLUMN shipped date");
    let (status, v) = decide(&proxy, DAN, &r, "approve", "{}").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "approved");
    let got = raw.until_ready().await;
    // ParseComplete (preparing runs nothing), the notice, then the rest.
    assert_eq!(raw::tags(&got), "1N2CZ");
    let got = raw.until_ready().await;
    assert_eq!(
        raw::tags(&got),
        "TDCZ",
        "the query after the pipeline ran too"
    );
    assert!(direct(&proxy, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'shipped'").trim() == "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_with_a_reason_runs_nothing_and_the_session_goes_on() {
    let proxy = proxy("").await;
    let alice = proxy.client().await;
    let run = tokio::spawn(async move {
        let e = alice
            .simple_query("CREATE INDEX orders_note_idx ON orders (note)")
            .await
            .unwrap_err();
        let rows = alice.simple_query("SELECT 1").await.map(|r| r.len());
        (e, rows)
    });
    let r = pending(&proxy, DORA).await;
    // A denial needs a reason.
    let (status, v) = decide(&proxy, DORA, &r, "deny", "").await;
    assert_eq!(status, 400, "{v}");
    let out = cli(
        &proxy,
        DORA,
        &["deny", &id(&r), "--reason", "not during the sale"],
    );
    assert!(out.status.success(), "{out:?}");
    let (e, rows) = run.await.unwrap();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("denied by dora"), "{message}");
    assert!(message.contains("not during the sale"), "{message}");
    assert!(rows.is_ok(), "the session is usable");
    assert_eq!(indexes(&proxy), "orders_pkey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_expires() {
    let proxy = proxy("timeout = \"1s\"").await;
    let alice = proxy.client().await;
    let started = Instant::now();
    let e = alice
        .simple_query("CREATE INDEX orders_note_idx ON orders (note)")
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{e:?}");
    assert!(e.as_db_error().unwrap().hint().unwrap().contains("\"dba\""));
    assert_eq!(indexes(&proxy), "orders_pkey");
    let (_, v) = api(&proxy, DORA, "GET", "/approvals?all=1", "").await;
    assert_eq!(v["requests"][0]["state"], "expired", "{v}");
    // Too late to approve.
    let r = &v["requests"][0];
    let (status, _) = decide(&proxy, DORA, r, "approve", "").await;
    assert_eq!(status, 409);
    alice.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_ends_the_wait_and_withdraws_the_request() {
    let proxy = proxy("").await;
    let alice = proxy
        .connect(&proxy.conn_str(ALICE, "sslmode=disable"))
        .await
        .unwrap();
    let cancel = alice.cancel_token();
    let run = tokio::spawn(async move {
        let e = alice
            .simple_query("CREATE INDEX orders_note_idx ON orders (note)")
            .await
            .unwrap_err();
        (e, alice)
    });
    let r = pending(&proxy, DORA).await;
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (e, alice) = run.await.unwrap();
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{e:?}");
    let (_, v) = show(&proxy, DORA, &r).await;
    assert_eq!(v["state"], "withdrawn");
    // Withdrawn: approving it now does nothing.
    let (status, _) = decide(&proxy, DORA, &r, "approve", "").await;
    assert_eq!(status, 409);
    assert_eq!(indexes(&proxy), "orders_pkey");
    // The session goes on, and a later cancel reaches the server as usual.
    alice.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_withdraws_its_request() {
    let proxy = proxy("").await;
    let mut raw = raw::login(&proxy, ALICE).await;
    raw.send(&fe::query("CREATE INDEX orders_note_idx ON orders (note)"))
        .await;
    let r = pending(&proxy, DORA).await;
    drop(raw);
    let mut state = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, v) = show(&proxy, DORA, &r).await;
        state = v["state"].clone();
        if state != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "withdrawn");
    assert_eq!(indexes(&proxy), "orders_pkey");

    // A Terminate while held withdraws it too.
    let mut raw = raw::login(&proxy, ALICE).await;
    raw.send(&fe::query("CREATE INDEX orders_note_idx ON orders (note)"))
        .await;
    let r = pending(&proxy, DORA).await;
    raw.send(&fe::terminate()).await;
    let closed = raw.until_closed().await;
    assert!(
        raw::tags(&closed).starts_with('N'),
        "{}",
        raw::tags(&closed)
    );
    let (_, v) = show(&proxy, DORA, &r).await;
    assert_eq!(v["state"], "withdrawn");
    assert_eq!(indexes(&proxy), "orders_pkey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_others_in_the_group_may_decide() {
    let proxy = proxy("").await;
    // Dora asks; she may not approve her own request.
    let dora = proxy
        .connect(&proxy.conn_str(DORA, "sslmode=require"))
        .await
        .unwrap();
    let run = tokio::spawn(async move {
        dora.simple_query("CREATE INDEX orders_note_idx ON orders (note)")
            .await
            .map(|_| ())
    });
    let r = pending(&proxy, DAN).await;
    let path = format!("/approvals/{}/approve", id(&r));
    let (status, v) = api(&proxy, DORA, "POST", &path, "").await;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("someone else"), "{v}");
    // Erin is not a DBA: she does not even see it.
    let (status, _) = api(&proxy, ERIN, "POST", &path, "").await;
    assert_eq!(status, 404);
    let (_, v) = api(&proxy, ERIN, "GET", "/approvals", "").await;
    assert_eq!(v["requests"], serde_json::json!([]));
    // Bob (an agent) and a wrong password get nowhere either.
    let (status, _) = api(&proxy, BOB, "POST", &path, "").await;
    assert_eq!(status, 404);
    let (status, _) = api(&proxy, (DAN.0, "wrong"), "POST", &path, "").await;
    assert_eq!(status, 401);
    let out = cli(&proxy, ERIN, &["approve", &id(&r)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(indexes(&proxy), "orders_pkey", "still held");
    // What a web page could make a browser send is refused, even with
    // good credentials: a form, or anything from another origin.
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let (status, _) = http(&proxy, DAN, "POST", &path, form, "").await;
    assert_eq!(status, 415);
    let page = "Content-Type: application/json\r\nOrigin: https://evil.example\r\n";
    let (status, _) = http(&proxy, DAN, "POST", &path, page, "{}").await;
    assert_eq!(status, 403);
    let fetched = "Content-Type: application/json\r\nSec-Fetch-Site: cross-site\r\n";
    let (status, _) = http(&proxy, DAN, "POST", &path, fetched, "{}").await;
    assert_eq!(status, 403);
    assert_eq!(indexes(&proxy), "orders_pkey", "still held");
    let (status, _) = api(&proxy, DAN, "POST", &path, "").await;
    assert_eq!(status, 200);
    run.await.unwrap().unwrap();
    assert_eq!(indexes(&proxy), "orders_note_idx,orders_pkey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_covers_exactly_what_was_held() {
    // The default bundle and a rule of our own: updates of orders need a
    // DBA's approval, so that a held Bind carries parameters.
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("orders.cedar"),
        "@id(\"approve-order-updates\")\n@message(\"changes to orders need approval\")\n\
         @approvers(\"dba\")\nforbid(principal, action == Portcullis::Action::\"Update\", resource)\n\
         unless { context.approved };\n",
    )
    .unwrap();
    let bundle = concat!(env!("CARGO_MANIFEST_DIR"), "/../policy/policies");
    let proxy = proxy(&format!(
        "\n[policy]\nfiles = [\"{bundle}\", \"{}\"]\n",
        rules.path().join("orders.cedar").display()
    ))
    .await;
    let mut raw = raw::login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("s", "UPDATE orders SET note = 'x' WHERE id = $1", &[23]),
        fe::bind("", "s", &[Some(b"1")]),
        fe::execute("", 0),
        // Committed here: a later failure before a Sync would roll it back.
        fe::sync(),
        fe::bind("", "s", &[Some(b"2")]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let first = pending(&proxy, DORA).await;
    assert_eq!(
        first["statement"],
        "UPDATE orders SET note = 'x' WHERE id = $1"
    );
    assert_eq!(first["parameters"], serde_json::json!(["1"]));
    let (status, _) = decide(&proxy, DORA, &first, "approve", "").await;
    assert_eq!(status, 200);
    // The second Bind, with another value, is another request: the
    // approval of the first does not cover it.
    let mut second = serde_json::Value::Null;
    for _ in 0..200 {
        let (_, v) = api(&proxy, DORA, "GET", "/approvals", "").await;
        if let Some(r) = v["requests"].as_array().and_then(|r| r.first()) {
            second = r.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(second["parameters"], serde_json::json!(["2"]));
    assert_ne!(second["digest"], first["digest"]);
    assert_ne!(id(&second), id(&first));
    let (status, _) = decide(
        &proxy,
        DORA,
        &second,
        "deny",
        r#"{"reason": "one is enough"}"#,
    )
    .await;
    assert_eq!(status, 200);
    // ParseComplete, the notice, BindComplete and the update; then the
    // second notice and the denial.
    assert_eq!(raw::tags(&raw.until_ready().await), "1N2CZ");
    assert_eq!(raw::tags(&raw.until_ready().await), "NEZ");
    assert_eq!(
        direct(
            &proxy,
            "SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM orders WHERE id <= 2"
        )
        .trim(),
        "1:x,2:n"
    );
    // PREPARE and EXECUTE would show approvers a name, not the statement:
    // not held, refused; by SQL or through a protocol Parse. Nothing is
    // asked.
    for sql in [
        "PREPARE u (int) AS UPDATE orders SET note = 'y' WHERE id = $1",
        "PREPARE v AS UPDATE orders SET note = 'y' WHERE id = 3; EXECUTE v",
    ] {
        raw.send(&fe::query(sql)).await;
        let got = raw.until_ready().await;
        assert_eq!(raw::tags(&got), "EZ", "{sql}");
        assert!(
            got[0]
                .message()
                .unwrap()
                .contains("not a PREPARE or EXECUTE"),
            "{:?}",
            got[0].message()
        );
    }
    // Nor inside another statement: a schema change (held for a DBA)
    // made of a prepared query.
    raw.send(&fe::query("PREPARE w AS SELECT 1 AS n")).await;
    assert_eq!(raw::tags(&raw.until_ready().await), "CZ");
    raw.send(&fe::query("CREATE TABLE made AS EXECUTE w")).await;
    let got = raw.until_ready().await;
    assert_eq!(raw::tags(&got), "EZ");
    assert!(
        got[0]
            .message()
            .unwrap()
            .contains("not a PREPARE or EXECUTE"),
        "{:?}",
        got[0].message()
    );
    // Nor through a protocol Parse of a PREPARE.
    raw.send(&fe::concat(&[
        fe::parse(
            "e",
            "PREPARE x AS UPDATE orders SET note = 'y' WHERE id = 3",
            &[],
        ),
        fe::sync(),
    ]))
    .await;
    let got = raw.until_ready().await;
    assert_eq!(raw::tags(&got), "EZ");
    let (_, v) = api(&proxy, DORA, "GET", "/approvals?all=1", "").await;
    assert_eq!(
        v["requests"].as_array().unwrap().len(),
        2,
        "only the two Binds asked"
    );
    assert_eq!(
        direct(&proxy, "SELECT note FROM orders WHERE id = 3").trim(),
        "n"
    );
    raw.send(&fe::query("SELECT 1")).await;
    assert_eq!(raw::tags(&raw.until_ready().await), "TDCZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_the_notice_and_waits() {
    let proxy = proxy("").await;
    let port = proxy.addr.port().to_string();
    let psql = cluster().bin("psql");
    let child = std::thread::spawn(move || {
        Command::new(psql)
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
            ])
            .args(["-U", ALICE.0, "-d", "app", "-c"])
            .arg("CREATE INDEX orders_total_idx ON orders (total)")
            .env("PGPASSWORD", ALICE.1)
            .env("PGSSLMODE", "prefer")
            .output()
            .unwrap()
    });
    let r = pending(&proxy, DORA).await;
    let (status, _) = decide(&proxy, DORA, &r, "approve", "").await;
    assert_eq!(status, 200);
    let out = tokio::task::spawn_blocking(move || child.join().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        err.contains(&format!("held for approval: request {}", id(&r))),
        "{err}"
    );
    assert!(err.contains("portcullis approvals approve"), "{err}");
    assert_eq!(indexes(&proxy), "orders_pkey,orders_total_idx");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_sharing_a_postgresql_store_wake_each_other() {
    let control = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("control"))
        .await
        .unwrap();
    let store = format!(
        "[identity]\npostgres = \"postgres://postgres@127.0.0.1:{}/{control}?sslmode=disable\"\n\
         postgres_password_file = \"pgpass\"\n",
        cluster().port()
    );
    let one = proxy(&format!("\n{store}")).await;
    let two = proxy(&format!("\n{store}")).await;
    assert!(!one.dir.path().join("portcullis-control.db").exists());
    // Each proxy has its own upstream database; they share only the
    // control-plane store. The request is made through one, decided
    // through the other.
    let alice = one.client().await;
    let run = tokio::spawn(async move {
        alice
            .simple_query("CREATE INDEX orders_total_idx ON orders (total)")
            .await
            .map(|_| Instant::now())
    });
    // Seen through the other proxy: the same store.
    let r = pending(&two, DORA).await;
    assert_eq!(
        r["statement"],
        "CREATE INDEX orders_total_idx ON orders (total)"
    );
    // Anyone who can connect to the store's database can NOTIFY: a forged
    // announcement wakes the session, which reads the store and waits on.
    cluster()
        .sql(
            &control,
            &format!("NOTIFY portcullis_approvals, '{} approved'", id(&r)),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        indexes(&one),
        "orders_pkey",
        "a forged notification approves nothing"
    );
    assert!(!run.is_finished());
    let asked = Instant::now();
    let (status, v) = decide(&two, DAN, &r, "approve", "").await;
    assert_eq!(status, 200, "{v}");
    let done = run
        .await
        .unwrap()
        .expect("approved on the other node, it runs");
    eprintln!(
        "approved on node two to done on node one: {:?}",
        done.duration_since(asked)
    );
    assert!(done.duration_since(asked) < Duration::from_secs(2));
    assert_eq!(indexes(&one), "orders_pkey,orders_total_idx");
    assert_eq!(indexes(&two), "orders_pkey");
    let stored = cluster()
        .sql(
            &control,
            "SELECT state FROM portcullis_control.approval_requests",
        )
        .unwrap();
    assert_eq!(stored.trim(), "approved");
    // Each proxy listens on one connection, which has run nothing since
    // its LISTEN: woken, not polling.
    let listening = cluster()
        .sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{control}' \
                 AND application_name = 'portcullis-approvals' AND query = 'LISTEN portcullis_approvals'"
            ),
        )
        .unwrap();
    assert_eq!(listening.trim(), "2");

    // A denial on node one reaches a session held on node two.
    let erin = two
        .connect(&two.conn_str(ERIN, "sslmode=require"))
        .await
        .unwrap();
    let run = tokio::spawn(async move {
        erin.simple_query("CREATE INDEX orders_note_idx ON orders (note)")
            .await
            .unwrap_err()
    });
    let mut held = serde_json::Value::Null;
    for _ in 0..200 {
        let (_, v) = api(&one, DORA, "GET", "/approvals", "").await;
        if let Some(r) = v["requests"].as_array().and_then(|r| r.first()) {
            held = r.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = decide(&one, DORA, &held, "deny", r#"{"reason": "no"}"#).await;
    assert_eq!(status, 200);
    let e = run.await.unwrap();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    assert_eq!(indexes(&two), "orders_pkey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_session_outlasts_the_idle_timeout_and_keeps_its_transaction() {
    let proxy = proxy_with("idle_timeout = \"1s\"", "").await;
    let alice = proxy.client().await;
    alice.simple_query("BEGIN").await.unwrap();
    alice
        .simple_query("UPDATE orders SET note = 'in tx' WHERE id = 1")
        .await
        .unwrap();
    let run = tokio::spawn(async move {
        alice
            .simple_query("CREATE INDEX orders_total_idx ON orders (total)")
            .await
            .map(|_| ())?;
        alice.simple_query("COMMIT").await.map(|_| ())
    });
    let r = pending(&proxy, DORA).await;
    assert_eq!(r["in_transaction"], true, "{r}");
    // Longer than the idle timeout: the wait is not idleness.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = decide(&proxy, DORA, &r, "approve", "").await;
    assert_eq!(status, 200);
    run.await
        .unwrap()
        .expect("the session survived and committed");
    assert_eq!(indexes(&proxy), "orders_pkey,orders_total_idx");
    assert_eq!(
        direct(&proxy, "SELECT note FROM orders WHERE id = 1").trim(),
        "in tx"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_inside_transactions_can_be_refused() {
    let proxy = proxy("in_transaction = false").await;
    let alice = proxy.client().await;
    alice.simple_query("BEGIN").await.unwrap();
    let e = alice
        .simple_query("CREATE INDEX orders_total_idx ON orders (total)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    assert!(e
        .as_db_error()
        .unwrap()
        .hint()
        .unwrap()
        .contains("outside a transaction"));
    // PostgreSQL's own rule after an error: the transaction is aborted.
    let e = alice.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    alice.simple_query("ROLLBACK").await.unwrap();
    let (_, v) = api(&proxy, DORA, "GET", "/approvals?all=1", "").await;
    assert_eq!(v["requests"], serde_json::json!([]), "nothing was asked");
    assert_eq!(indexes(&proxy), "orders_pkey");
}

/// What the webhooks were sent: (path, headers, body).
type Posts = std::sync::Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap, String)>>>;

async fn collector() -> (std::net::SocketAddr, Posts) {
    use axum::extract::{Path, State};
    let posts = Posts::default();
    let app = axum::Router::new()
        .route(
            "/{what}",
            axum::routing::post(
                |State(p): State<Posts>,
                 Path(what): Path<String>,
                 headers: axum::http::HeaderMap,
                 body: String| async move {
                    p.lock().unwrap().push((what, headers, body));
                    "ok"
                },
            ),
        )
        .with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, posts)
}

async fn posted(posts: &Posts, what: &str, n: usize) -> Vec<(axum::http::HeaderMap, String)> {
    for _ in 0..200 {
        let found: Vec<_> = posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(w, _, _)| w == what)
            .map(|(_, h, b)| (h.clone(), b.clone()))
            .collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing posted to /{what}");
}

/// A Slack button press as Slack sends it, signed with `secret` at `at`.
async fn slack_press(
    proxy: &Proxy,
    secret: &str,
    at: i64,
    user: &str,
    action: &str,
    request: &str,
) -> (u16, serde_json::Value) {
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": {"id": user},
        "actions": [{"action_id": action, "value": request}],
        "state": {"values": {"b": {"portcullis_reason": {"value": null}}}},
    });
    let body = format!(
        "payload={}",
        percent_encoding::utf8_percent_encode(
            &payload.to_string(),
            percent_encoding::NON_ALPHANUMERIC
        )
    );
    let signature =
        portcullis_approvals::slack::sign(secret.as_bytes(), &at.to_string(), body.as_bytes());
    let mut s = tokio::net::TcpStream::connect(proxy.admin.unwrap())
        .await
        .unwrap();
    let req = format!(
        "POST /approvals/slack HTTP/1.1\r\nHost: localhost\r\nX-Slack-Request-Timestamp: {at}\r\n\
         X-Slack-Signature: {signature}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_and_webhooks_announce_and_only_signed_presses_decide() {
    let (addr, posts) = collector().await;
    let secrets = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = secrets.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let slack_secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let config = format!(
        "[approvals.notify]\nslack_webhook_file = \"{}\"\nwebhook_url = \"http://{addr}/hook\"\n\
         webhook_secret_file = \"{}\"\n[approvals.slack]\nsigning_secret_file = \"{}\"\n\
         users = {{ U0DORA = \"dora\", U0ERIN = \"erin\" }}\n",
        file("slack-url", &format!("http://{addr}/slack\n")),
        file("hook-secret", "hook-secret\n"),
        file("slack-secret", slack_secret),
    );
    let proxy = proxy(&format!("\n{config}")).await;
    let alice = proxy.client().await;
    let run = tokio::spawn(async move {
        alice
            .simple_query("CREATE INDEX orders_total_idx ON orders (total)")
            .await
            .map(|_| ())
    });
    let r = pending(&proxy, DORA).await;
    let rid = id(&r);

    // The Slack message: the request, the statement, buttons.
    let (_, slack) = posted(&posts, "slack", 1).await.remove(0);
    let message: serde_json::Value = serde_json::from_str(&slack).unwrap();
    let text = message.to_string();
    assert!(
        text.contains(&rid) && text.contains("CREATE INDEX orders_total_idx"),
        "{text}"
    );
    assert!(text.contains("portcullis_approve") && text.contains("portcullis_deny"));
    // The JSON webhook, signed.
    let (headers, body) = posted(&posts, "hook", 1).await.remove(0);
    let at: i64 = headers["x-portcullis-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        headers["x-portcullis-signature"].to_str().unwrap(),
        portcullis_proxy::approval_notify::signature("hook-secret", at, &body)
    );
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["event"], "requested");
    assert_eq!(event["request"]["id"], rid.as_str());

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let press = |secret: &'static str, at: i64, user: &'static str, action: &'static str| {
        slack_press(&proxy, secret, at, user, action, &rid)
    };
    // Forged (another secret) and stale (ten minutes old) presses.
    let (status, _) = press("not the secret", now, "U0DORA", "portcullis_approve").await;
    assert_eq!(status, 401);
    let (status, _) = press(slack_secret, now - 600, "U0DORA", "portcullis_approve").await;
    assert_eq!(status, 401);
    // Signed, but not someone who may decide, or no one at all.
    let (status, v) = press(slack_secret, now, "U0ERIN", "portcullis_approve").await;
    assert_eq!(status, 200);
    assert_eq!(v["text"], "No such request.");
    let (_, v) = press(slack_secret, now, "U0NOBODY", "portcullis_approve").await;
    assert!(v["text"].as_str().unwrap().contains("not mapped"), "{v}");
    // A denial needs a reason, in Slack too.
    let (_, v) = press(slack_secret, now, "U0DORA", "portcullis_deny").await;
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("a denial needs a reason"),
        "{v}"
    );
    assert_eq!(indexes(&proxy), "orders_pkey", "still held");
    let (status, v) = press(slack_secret, now, "U0DORA", "portcullis_approve").await;
    assert_eq!(status, 200);
    assert_eq!(v["text"], format!("{rid} is approved (by dora)."));
    run.await.unwrap().unwrap();
    assert_eq!(indexes(&proxy), "orders_pkey,orders_total_idx");
    // The webhook hears the decision too.
    let (_, body) = posted(&posts, "hook", 2).await.remove(1);
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["event"], "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_says_the_transaction_the_server_is_in() {
    let proxy = proxy("timeout = \"2s\"").await;
    // Executes without a Sync keep an implicit transaction (and its locks)
    // open: the request says so.
    let mut raw = raw::login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "UPDATE orders SET note = 'p' WHERE id = 1", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::parse("", "CREATE INDEX orders_total_idx ON orders (total)", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let r = pending(&proxy, DORA).await;
    assert_eq!(r["in_transaction"], true, "{r}");
    let (status, _) = decide(&proxy, DORA, &r, "deny", r#"{"reason": "no"}"#).await;
    assert_eq!(status, 200);
    let got = raw.until_ready().await;
    assert_eq!(raw::tags(&got), "12C1NEZ");
    // The whole pipeline rolled back with the denial, as PostgreSQL does
    // after an error before the Sync.
    assert_eq!(
        direct(&proxy, "SELECT note FROM orders WHERE id = 1").trim(),
        "n"
    );

    // In a failed transaction nothing is asked: the server would refuse it.
    raw.send(&fe::query("BEGIN")).await;
    raw.until_ready().await;
    raw.send(&fe::query("SELECT 1/0")).await;
    raw.until_ready().await;
    raw.send(&fe::query(
        "CREATE INDEX orders_total_idx ON orders (total)",
    ))
    .await;
    let got = raw.until_ready().await;
    assert_eq!(raw::tags(&got), "EZ");
    assert_eq!(got[0].code().as_deref(), Some("25P02"));
    let (_, v) = api(&proxy, DORA, "GET", "/approvals?all=1", "").await;
    assert_eq!(
        v["requests"].as_array().unwrap().len(),
        1,
        "only the first was asked"
    );
}

/// The approval latency benchmark (run by hand: `bench/approvals.sh`):
/// from the moment the approving API call is sent to the moment the held
/// statement's CommandComplete reaches the client (an upper bound of
/// "until it starts to run"), for a proxy with the SQLite store and for
/// two proxies sharing a PostgreSQL store (held on one, approved on the
/// other). The approver is a SCRAM user, so each call pays a PBKDF2
/// check, as a person's CLI call does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/approvals.sh"]
async fn approval_latency_benchmark() {
    let rounds: usize = std::env::var("APPROVAL_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let control = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("control"))
        .await
        .unwrap();
    let store = format!(
        "\n[identity]\npostgres = \"postgres://postgres@127.0.0.1:{}/{control}?sslmode=disable\"\n\
         postgres_password_file = \"pgpass\"\n",
        cluster().port()
    );
    let single = proxy("").await;
    let one = proxy(&store).await;
    let two = proxy(&store).await;
    for (label, held_on, decided_on) in [
        ("SQLite store, one proxy", &single, &single),
        ("PostgreSQL store, approved on the other proxy", &one, &two),
    ] {
        let mut took = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let alice = held_on.client().await;
            let sql = format!("CREATE INDEX bench_{i} ON orders (total)");
            let run =
                tokio::spawn(async move { alice.simple_query(&sql).await.map(|_| Instant::now()) });
            let r = pending(decided_on, DORA).await;
            let asked = Instant::now();
            let (status, _) = decide(decided_on, DAN, &r, "approve", "").await;
            assert_eq!(status, 200);
            let done = run.await.unwrap().expect("runs");
            took.push(done.duration_since(asked));
        }
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "{label}: {rounds} approvals, approve call to statement done: median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
            ms(took[rounds / 2]),
            ms(took[(rounds * 95 / 100).min(rounds - 1)]),
            ms(took[rounds - 1]),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_cannot_wait_are_refused_and_run_once_when_they_send_it_again() {
    let proxy = proxy("rerun_kinds = [\"agent\"]\nrerun_window = \"1m\"").await;
    // Bob is an agent: refused at once, with the request to have approved.
    let bob = proxy
        .connect(&proxy.conn_str(BOB, "sslmode=require"))
        .await
        .unwrap();
    let sql = "CREATE INDEX orders_total_idx ON orders (total)";
    let e = bob.simple_query(sql).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    let message = e.as_db_error().unwrap().message().to_owned();
    let rid = message
        .split_whitespace()
        .find(|w| w.starts_with("R-"))
        .expect("the request id")
        .to_owned();
    assert!(message.contains("send the same statement again once it is approved"));
    assert_eq!(indexes(&proxy), "orders_pkey");
    let r = pending(&proxy, DORA).await;
    assert_eq!(id(&r), rid);
    assert_eq!(r["rerun"], true);

    // Sent again before the approval: another request, still refused.
    let e = bob.simple_query(sql).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    let (status, _) = decide(&proxy, DORA, &r, "approve", "").await;
    assert_eq!(status, 200);
    // Another statement is not covered by it.
    let e = bob
        .simple_query("CREATE INDEX orders_note_idx ON orders (note)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    // The same one now runs, once.
    bob.simple_query(sql).await.expect("approved, it runs");
    assert_eq!(indexes(&proxy), "orders_pkey,orders_total_idx");
    bob.simple_query("DROP INDEX orders_total_idx")
        .await
        .unwrap_err(); // (DROP is denied in production anyway)
    let (_, v) = show(&proxy, DORA, &r).await;
    assert!(v["used_at"].is_number(), "{v}");
    direct(&proxy, "DROP INDEX orders_total_idx");
    let e = bob.simple_query(sql).await.unwrap_err();
    assert_eq!(
        sqlstate(&e).as_deref(),
        Some("42501"),
        "used once: asked again"
    );
    assert_eq!(indexes(&proxy), "orders_pkey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_on_one_sqlite_file_see_each_others_decisions() {
    let shared = tempfile::tempdir().unwrap();
    let store = format!(
        "\n[identity]\nstore = \"{}\"\n",
        shared.path().join("control.db").display()
    );
    let one = proxy(&store).await;
    let two = proxy(&store).await;
    let alice = one.client().await;
    let run = tokio::spawn(async move {
        alice
            .simple_query("CREATE INDEX orders_total_idx ON orders (total)")
            .await
            .map(|_| Instant::now())
    });
    let r = pending(&two, DORA).await;
    let asked = Instant::now();
    let (status, _) = decide(&two, DAN, &r, "approve", "").await;
    assert_eq!(status, 200);
    // No notification crosses processes here: the holding session looks
    // at its request every half second.
    let done = run.await.unwrap().expect("runs");
    assert!(done.duration_since(asked) < Duration::from_secs(2));
    assert_eq!(indexes(&one), "orders_pkey,orders_total_idx");
}

/// What approvers are told about a statement's lock, checked against what
/// PostgreSQL takes (`pg_locks` inside a transaction, rolled back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_notes_match_postgresql() {
    use portcullis_analysis::locks::{taken, LockMode};
    let db = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("locks"))
        .await
        .unwrap();
    let sql = |s: &str| cluster().sql(&db, s).unwrap_or_else(|e| panic!("{s}: {e}"));
    sql("CREATE TABLE customers (id int PRIMARY KEY);\
         CREATE TABLE orders (id int PRIMARY KEY, total int, note text);\
         ALTER TABLE orders ADD CONSTRAINT positive CHECK (total > 0) NOT VALID;\
         CREATE TRIGGER audit BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();");
    let cases = [
        "CREATE INDEX i1 ON orders (total)",
        "CREATE TRIGGER t2 BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        "CREATE POLICY p ON orders USING (true)",
        "ALTER TABLE orders ADD COLUMN x int",
        "ALTER TABLE orders ALTER COLUMN total SET DEFAULT 0",
        "ALTER TABLE orders ALTER COLUMN total SET NOT NULL",
        "ALTER TABLE orders ALTER COLUMN note SET STATISTICS 100",
        "ALTER TABLE orders ALTER COLUMN note SET (n_distinct = 10)",
        "ALTER TABLE orders SET (fillfactor = 70)",
        "ALTER TABLE orders RESET (fillfactor)",
        "ALTER TABLE orders CLUSTER ON orders_pkey",
        "ALTER TABLE orders VALIDATE CONSTRAINT positive",
        "ALTER TABLE orders ADD CONSTRAINT big CHECK (total < 1000000)",
        "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES customers (id)",
        "ALTER TABLE orders DISABLE TRIGGER audit",
        "ALTER TABLE orders ENABLE TRIGGER audit",
        "ALTER TABLE orders ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE orders FORCE ROW LEVEL SECURITY",
        "ALTER TABLE orders OWNER TO postgres",
    ];
    let mode_of = |name: &str| -> LockMode {
        LockMode::ALL
            .into_iter()
            .find(|m| m.pg_name() == name)
            .unwrap_or_else(|| panic!("unknown mode {name}"))
    };
    for case in cases {
        let said = portcullis_analysis::analyze(case).unwrap().statements[0]
            .actions
            .iter()
            .find_map(|a| taken(&a.kind))
            .unwrap_or_else(|| panic!("no lock note for {case}"));
        let held = sql(&format!(
            "BEGIN; {case}; SELECT string_agg(l.mode, ',') FROM pg_locks l \
             WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' \
             AND l.relation = 'orders'::regclass; ROLLBACK;"
        ));
        let strongest = held
            .trim()
            .split(',')
            .map(mode_of)
            .max()
            .unwrap_or_else(|| panic!("no lock on orders for {case}"));
        let expected = match said.except {
            Some((form, weaker)) if case.contains("FOREIGN KEY") => {
                assert_eq!(form, "a foreign key");
                weaker
            }
            _ => said.mode,
        };
        if said.at_most {
            assert!(
                strongest <= expected,
                "{case}: {strongest:?} above {expected:?}"
            );
        } else {
            assert_eq!(strongest, expected, "{case}: PostgreSQL took {held}");
        }
    }
}
