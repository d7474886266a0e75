//! The dry run approvers see for a held data change: the rows it would
//! touch, counted on the server without changing any, and never by
//! running code the approval is meant to gate.

use crate::approvals::{api, cli, decide, direct, pending, proxy, show, DORA};
use crate::harness::{sqlstate, Proxy, ALICE};
use crate::raw::{self, fe};

/// The default bundle and a rule of our own: every data change on this
/// target needs a DBA's approval. `approvals`: more `[approvals]` keys.
async fn changes_held(approvals: &str) -> (Proxy, tempfile::TempDir) {
    let rules = tempfile::tempdir().unwrap();
    let file = rules.path().join("changes.cedar");
    std::fs::write(
        &file,
        "@id(\"approve-data-changes\")\n@message(\"data changes need approval\")\n\
         @approvers(\"dba\")\nforbid(principal, action in [Portcullis::Action::\"Update\", \
         Portcullis::Action::\"Delete\", Portcullis::Action::\"Insert\"], resource)\n\
         unless { context.approved };\n",
    )
    .unwrap();
    let bundle = concat!(env!("CARGO_MANIFEST_DIR"), "/../policy/policies");
    let proxy = proxy(&format!(
        "{approvals}\n[policy]\nfiles = [\"{bundle}\", \"{}\"]\n",
        file.display()
    ))
    .await;
    (proxy, rules)
}

/// The dry run of the one pending request, as the API shows it.
async fn dry_run_shown(proxy: &Proxy) -> (serde_json::Value, serde_json::Value) {
    let r = pending(proxy, DORA).await;
    let (status, full) = show(proxy, DORA, &r).await;
    assert_eq!(status, 200, "{full}");
    (r, full["dry_run"].clone())
}

fn orders(proxy: &Proxy) -> String {
    direct(
        proxy,
        "SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM orders",
    )
    .trim()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_see_how_many_rows_a_held_change_would_touch() {
    let (proxy, _rules) = changes_held("").await;
    let before = orders(&proxy);
    assert_eq!(before, "1:n,2:n,3:n,4:n,5:n");

    // Simple protocol: totals are 10..50.
    let alice = proxy.client().await;
    let run = tokio::spawn(async move {
        alice
            .simple_query("UPDATE orders SET note = 'big' WHERE total > 20")
            .await
            .map(|_| ())
    });
    let (r, d) = dry_run_shown(&proxy).await;
    assert_eq!(d["method"], "counted", "{d}");
    assert_eq!(d["rows"], 3, "{d}");
    let summary = d["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("would update 3 rows of orders (counted in a read-only transaction"),
        "{summary}"
    );
    assert_eq!(orders(&proxy), before, "counting changed nothing");
    let out = cli(&proxy, DORA, &["show", r["id"].as_str().unwrap()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("dry run       would update 3 rows"),
        "{shown}"
    );
    let (status, _) = decide(&proxy, DORA, &r, "approve", "").await;
    assert_eq!(status, 200);
    run.await.unwrap().unwrap();
    assert_eq!(orders(&proxy), "1:n,2:n,3:big,4:big,5:big");

    // Extended protocol: $1 only in the SET list (its type inferred from
    // it), $2 chooses the rows, sent as binary.
    let mut raw = raw::login(&proxy, ALICE).await;
    raw.send(&fe::concat(&[
        fe::parse("", "UPDATE orders SET note = $1 WHERE id <= $2", &[0, 23]),
        fe::bind_formats(
            "",
            "",
            &[0, 1],
            &[Some(b"small"), Some(&2i32.to_be_bytes())],
        ),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let (r, d) = dry_run_shown(&proxy).await;
    assert_eq!(
        (d["method"].as_str(), d["rows"].as_u64()),
        (Some("counted"), Some(2)),
        "{d}"
    );
    let (status, _) = decide(&proxy, DORA, &r, "deny", r#"{"reason": "not now"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(raw::tags(&raw.until_ready().await), "1NEZ");
    assert_eq!(orders(&proxy), "1:n,2:n,3:big,4:big,5:big");

    // A join counts each target row once; an INSERT counts what its
    // SELECT produces, or its VALUES list.
    for (sql, verb, rows) in [
        (
            "DELETE FROM orders USING (VALUES (1), (1), (2)) AS v(id) WHERE orders.id = v.id",
            "delete 2 rows of orders",
            2,
        ),
        (
            "INSERT INTO orders SELECT id + 100, total, note FROM orders WHERE id < 4",
            "insert 3 rows into orders",
            3,
        ),
        (
            "INSERT INTO orders VALUES (200, 1, 'a'), (201, 2, 'b') ON CONFLICT DO NOTHING",
            "insert at most 2 rows into orders",
            2,
        ),
    ] {
        raw.send(&fe::query(sql)).await;
        let (r, d) = dry_run_shown(&proxy).await;
        assert_eq!(d["rows"].as_u64(), Some(rows), "{sql}: {d}");
        assert!(
            d["summary"]
                .as_str()
                .unwrap()
                .starts_with(&format!("would {verb}")),
            "{sql}: {d}"
        );
        let (status, _) = decide(&proxy, DORA, &r, "deny", r#"{"reason": "no"}"#).await;
        assert_eq!(status, 200);
        assert_eq!(raw::tags(&raw.until_ready().await), "NEZ", "{sql}");
    }
    // The requester does not see it: a count of rows chosen by any
    // predicate would be an oracle on data its read policies may hide.
    raw.send(&fe::query("UPDATE orders SET note = 'mine' WHERE id = 1"))
        .await;
    let r = pending(&proxy, DORA).await;
    let (status, mine) = show(&proxy, ALICE, &r).await;
    assert_eq!(status, 200, "{mine}");
    assert!(mine.get("dry_run").is_none(), "{mine}");
    let (_, theirs) = show(&proxy, DORA, &r).await;
    assert!(theirs.get("dry_run").is_some(), "{theirs}");
    let (status, _) = decide(&proxy, DORA, &r, "deny", r#"{"reason": "no"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(raw::tags(&raw.until_ready().await), "NEZ");

    // What a trigger does is not counted, and the approvers are told.
    direct(
        &proxy,
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\
         CREATE TRIGGER touched BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();",
    );
    raw.send(&fe::query("UPDATE orders SET note = 'x' WHERE id = 2"))
        .await;
    let (r, d) = dry_run_shown(&proxy).await;
    let summary = d["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("would update 1 row of orders")
            && summary.ends_with("; not counted: what its trigger does"),
        "{summary}"
    );
    let (status, _) = decide(&proxy, DORA, &r, "deny", r#"{"reason": "no"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(raw::tags(&raw.until_ready().await), "NEZ");

    // Inside a transaction: what it counts is what is committed.
    raw.send(&fe::query("BEGIN")).await;
    assert_eq!(raw::tags(&raw.until_ready().await), "CZ");
    raw.send(&fe::query("DELETE FROM orders WHERE id = 1"))
        .await;
    let (r, d) = dry_run_shown(&proxy).await;
    let summary = d["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("would delete 1 row of orders")
            && summary.contains("outside the session's open transaction"),
        "{summary}"
    );
    let (status, _) = decide(&proxy, DORA, &r, "deny", r#"{"reason": "no"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(raw::tags(&raw.until_ready().await), "NEZ");
    assert_eq!(orders(&proxy), "1:n,2:n,3:big,4:big,5:big");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_never_runs_code_from_outside_pg_catalog() {
    let (proxy, _rules) = changes_held("").await;
    // A stable function (so the guard lets it be held) with an effect a
    // read-only transaction does not stop: it ends another session.
    direct(
        &proxy,
        "CREATE TABLE victims (pid int);\
         CREATE FUNCTION pick() RETURNS int LANGUAGE plpgsql STABLE AS \
         $$ BEGIN PERFORM pg_terminate_backend(pid) FROM victims; RETURN 1; END $$;\
         CREATE DOMAIN note_t AS text CHECK (pick() = 1);\
         CREATE TABLE labels (id int, tags note_t[]);\
         CREATE FUNCTION imm(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS \
         $$ BEGIN PERFORM pick(); RETURN $1; END $$;\
         CREATE TABLE indexed (id int);\
         CREATE FUNCTION hook(orders) RETURNS bool LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_terminate_backend(pid) FROM victims; RETURN false; END $$;\
         CREATE INDEX ON indexed ((id + imm(0)));\
         CREATE VIEW big_orders AS SELECT id FROM orders WHERE total > 20;\
         GRANT SELECT ON big_orders, victims TO PUBLIC;",
    );
    let victim = proxy.client().await;
    let pid = victim
        .simple_query("SELECT pg_backend_pid()")
        .await
        .unwrap();
    let pid = pid
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
            _ => None,
        })
        .unwrap();
    direct(&proxy, &format!("INSERT INTO victims VALUES ({pid})"));
    let note_t: u32 = direct(&proxy, "SELECT 'note_t'::regtype::oid")
        .trim()
        .parse()
        .unwrap();

    let mut raw = raw::login(&proxy, ALICE).await;
    for (sql, why) in [
        (
            "DELETE FROM orders WHERE id = pick()",
            "not run: it calls pick",
        ),
        (
            "DELETE FROM orders WHERE id IN (SELECT id FROM big_orders)",
            "not run: it reads public.big_orders",
        ),
        (
            "DELETE FROM orders WHERE note = 'z'::note_t",
            "not run: it reads values of domains with CHECK constraints",
        ),
        // A literal read as an array of the domain, named nowhere.
        (
            "DELETE FROM labels WHERE tags = '{z}'",
            "not run: it reads values of domains with CHECK constraints",
        ),
        (
            "DELETE FROM labels WHERE id = 1 AND domain_in('z', 'note_t'::regtype, -1) IS NULL",
            "not run: it calls domain_in",
        ),
        // `o.hook` is a call of hook(o): orders has no column hook.
        (
            "DELETE FROM orders o WHERE o.id = 1 AND o.hook",
            "not run: it names hook after a dot",
        ),
        // The planner folds an immutable function in an index expression
        // when it loads the table's indexes.
        (
            "DELETE FROM indexed WHERE id = 1",
            "not run: it reads public.indexed",
        ),
    ] {
        raw.send(&fe::query(sql)).await;
        let (r, d) = dry_run_shown(&proxy).await;
        assert_eq!(d["method"], "not_run", "{sql}: {d}");
        assert!(
            d["summary"].as_str().unwrap().starts_with(why),
            "{sql}: {d}"
        );
        let (status, _) = decide(&proxy, DORA, &r, "deny", r#"{"reason": "no"}"#).await;
        assert_eq!(status, 200);
        let got = raw.until_ready().await;
        assert_eq!(raw::tags(&got), "NEZ", "{sql}");
    }
    // A parameter declared of a domain: binding it runs the domain's
    // CHECK, which may call anything.
    raw.send(&fe::concat(&[
        fe::parse("", "DELETE FROM orders WHERE note = $1", &[note_t]),
        fe::bind("", "", &[Some(b"z")]),
        fe::execute("", 0),
        fe::sync(),
    ]))
    .await;
    let (r, d) = dry_run_shown(&proxy).await;
    assert!(
        d["summary"]
            .as_str()
            .unwrap()
            .starts_with("not run: it reads values of domains with CHECK constraints, which may call any function: public.note_t"),
        "{d}"
    );
    let (status, _) = decide(&proxy, DORA, &r, "deny", r#"{"reason": "no"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(raw::tags(&raw.until_ready().await), "1NEZ");

    let alive = victim.simple_query("SELECT 1").await;
    assert!(alive.is_ok(), "the victim's session was ended: {alive:?}");
    assert_eq!(
        direct(&proxy, "SELECT count(*) FROM orders").trim(),
        "5",
        "nothing was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_that_takes_too_long_shows_the_planners_estimate() {
    let (proxy, _rules) = changes_held("dry_run_timeout = \"300ms\"").await;
    let alice = proxy.client().await;
    let started = std::time::Instant::now();
    let run = tokio::spawn(async move {
        alice
            .simple_query(
                "DELETE FROM orders WHERE id IN \
                 (SELECT g FROM generate_series(1, 200000000) AS g WHERE g % 7 = 1)",
            )
            .await
    });
    let (r, d) = dry_run_shown(&proxy).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the dry run is bounded"
    );
    assert_eq!(d["method"], "estimated", "{d}");
    assert!(
        d["summary"]
            .as_str()
            .unwrap()
            .starts_with("would delete about "),
        "{d}"
    );
    let (status, _) = decide(&proxy, DORA, &r, "deny", r#"{"reason": "no"}"#).await;
    assert_eq!(status, 200);
    let e = run.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    // Nothing is left running on the server (once it has removed what
    // the cancelled count spilled to disk).
    let mut busy = String::new();
    for _ in 0..100 {
        busy = direct(
            &proxy,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'portcullis-dry-run'",
        );
        if busy.trim() == "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(busy.trim(), "0");
    let (_, all) = api(&proxy, DORA, "GET", "/approvals?all=1", "").await;
    assert_eq!(all["requests"].as_array().unwrap().len(), 1);
}

/// What a dry run adds before the client hears its statement is held
/// (`bench/approvals.sh` runs it): from sending the statement to its
/// notice, with dry runs off and on, on a table of 100,000 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by bench/approvals.sh"]
async fn dry_run_benchmark() {
    let rounds: usize = std::env::var("APPROVAL_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    for (label, approvals) in [("off", "dry_run_timeout = \"0s\""), ("on", "")] {
        let (proxy, _rules) = changes_held(approvals).await;
        direct(
            &proxy,
            "INSERT INTO orders SELECT g, g % 1000, 'n' FROM generate_series(6, 100000) g; ANALYZE orders",
        );
        for (what, sql) in [
            (
                "by key, 100 rows",
                "UPDATE orders SET note = 'x' WHERE id <= 100",
            ),
            (
                "full scan, 100 rows",
                "UPDATE orders SET note = 'x' WHERE total = 7",
            ),
        ] {
            let mut took = Vec::with_capacity(rounds);
            let mut raw = raw::login(&proxy, ALICE).await;
            for _ in 0..rounds {
                let sent = std::time::Instant::now();
                raw.send(&fe::query(sql)).await;
                let first = raw.recv().await.expect("a notice");
                assert_eq!(first.tag(), 'N');
                took.push(sent.elapsed());
                let r = pending(&proxy, DORA).await;
                let (status, _) = decide(&proxy, DORA, &r, "deny", r#"{"reason": "no"}"#).await;
                assert_eq!(status, 200);
                raw.until_ready().await;
            }
            took.sort();
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            eprintln!(
                "dry run {label}, {what}: {rounds} holds, statement sent to notice: median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
                ms(took[rounds / 2]),
                ms(took[(rounds * 95 / 100).min(rounds - 1)]),
                ms(took[rounds - 1]),
            );
        }
    }
}
