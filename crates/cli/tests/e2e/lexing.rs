//! Settings under which Portcullis and PostgreSQL would split SQL text
//! differently are refused when they are judged, as ordinary errors; what
//! the judge cannot see (code inside a function or DO block) still ends
//! the session when the server announces it.

use crate::harness::*;
use crate::raw::{self, fe};

/// Sends `sql` and expects an ordinary ERROR with `code`, the session
/// usable afterwards.
async fn refused_as_error(c: &mut raw::Raw, sql: &str, code: &str) {
    c.send(&fe::query(sql)).await;
    let got = c.until_ready().await;
    let err = got
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("{sql}: expected an error, got {}", raw::tags(&got)));
    assert_eq!(err.severity().as_deref(), Some("ERROR"), "{sql}");
    assert_eq!(err.code().as_deref(), Some(code), "{sql}");
    assert!(err.hint().is_some(), "{sql}");
    assert!(
        !got.iter().any(|m| m.tag == b'S'),
        "{sql}: no setting changed: {}",
        raw::tags(&got)
    );
    c.send(&fe::query("SHOW standard_conforming_strings")).await;
    let got = c.until_ready().await;
    assert!(!got.iter().any(|m| m.tag == b'E'), "{}", raw::tags(&got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lexer_settings_are_refused_in_every_form() {
    let proxy = Proxy::start().await;
    let mut c = raw::login(&proxy, ALICE).await;
    for sql in [
        "SET standard_conforming_strings = off",
        "SET LOCAL standard_conforming_strings = off",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "BEGIN; SELECT set_config('standard_conforming_strings', 'off', true)",
        "SET client_encoding = 'SJIS'",
        "SET client_encoding TO 'big5'",
        "SET client_encoding TO 'Win-950'",
        "SET NAMES 'gbk'",
        "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
    ] {
        refused_as_error(
            &mut c,
            sql,
            if sql.contains("pg_settings") {
                "42501"
            } else {
                "0A000"
            },
        )
        .await;
        c.send(&fe::query("ROLLBACK")).await;
        c.until_ready().await;
    }
}

/// The attack from the issue: a SET and a statement that reads
/// differently under it, in one write. The SET is refused before the
/// second statement is judged, so both read it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_statement_cannot_ride_on_a_lexer_change() {
    let proxy = Proxy::with(Setup {
        environment: "production",
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)");
    let mut c = raw::login(&proxy, ALICE).await;
    // In SJIS, 0x95 0x5C is one character: the quote after it would end
    // the literal for the server.
    let sjis_attack = b"SELECT '\x95\\' ; DROP TABLE orders; --'";
    c.send(&fe::concat(&[
        fe::query("SET standard_conforming_strings = off"),
        fe::query("SELECT 'a\\' , ' ; DROP TABLE orders; -- '"),
        fe::query("SET client_encoding = 'SJIS'"),
        fe::query(sjis_attack),
    ]))
    .await;
    let mut errors = Vec::new();
    for _ in 0..4 {
        for m in c.until_ready().await {
            if m.tag == b'E' {
                errors.push(m.code().unwrap_or_default());
            }
        }
    }
    // The SETs are refused; the text after the first reads the same
    // either way; the bytes after the second are not UTF-8.
    assert_eq!(errors, ["0A000", "0A000", "22021"]);
    assert_eq!(
        proxy.upstream_sql("SELECT count(*) FROM orders"),
        "1",
        "the table survives"
    );
}

/// Code the judge cannot see may change a lexer setting: text sent behind
/// it that could read differently is refused until the server has
/// answered, and the server's announcement still ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_changes_are_caught_by_the_backstop() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)");
    proxy.upstream_sql(
        "CREATE FUNCTION lax() RETURNS void LANGUAGE plpgsql AS \
         $$BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END$$",
    );
    let mut c = raw::login(&proxy, ALICE).await;
    c.send(&fe::concat(&[
        fe::query("SELECT lax()"),
        fe::query("SELECT 'a\\' , ' ; DROP TABLE orders; -- '"),
    ]))
    .await;
    let got = c.until_closed().await;
    let codes: Vec<_> = got.iter().filter_map(|m| m.code()).collect();
    assert!(codes.contains(&"0A000".to_owned()), "{}", raw::tags(&got));
    assert_eq!(proxy.upstream_sql("SELECT count(*) FROM orders"), "1");
    raw::login(&proxy, ALICE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_settings_pass() {
    let proxy = Proxy::start().await;
    let mut c = raw::login(&proxy, ALICE).await;
    c.send(&fe::query(
        "SET client_encoding = 'LATIN1'; SET standard_conforming_strings = on",
    ))
    .await;
    let got = c.until_ready().await;
    assert!(got.iter().any(|m| m.tag == b'S'), "{}", raw::tags(&got));
    assert!(!got.iter().any(|m| m.tag == b'E'), "{}", raw::tags(&got));
    // LATIN1 text is transcoded exactly: é is one byte on the wire.
    c.send(&fe::query(b"SELECT '\xe9' AS x")).await;
    let got = c.until_ready().await;
    assert!(!got.iter().any(|m| m.tag == b'E'), "{}", raw::tags(&got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_settings_pass_only_with_safe_values() {
    let proxy = Proxy::start().await;
    for (name, value) in [
        ("client_encoding", "SJIS"),
        ("options", "-c standard_conforming_strings=off"),
        ("options", "-c client_encoding=Win-950"),
    ] {
        let refused = raw::Raw::login(
            proxy.addr,
            portcullis_wire::ProtocolVersion::V3_0,
            &[("user", ALICE.0), ("database", "app"), (name, value)],
            ALICE.1,
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{name}={value} accepted"));
        assert_eq!(refused.code().as_deref(), Some("0A000"));
        assert!(refused.hint().unwrap().contains("UTF8"));
    }
    // The safe value stays allowed (psycopg2's test suite sends it).
    raw::Raw::login(
        proxy.addr,
        portcullis_wire::ProtocolVersion::V3_0,
        &[
            ("user", ALICE.0),
            ("database", "app"),
            ("options", "-c standard_conforming_strings=on"),
        ],
        ALICE.1,
    )
    .await
    .unwrap_or_else(|e| panic!("refused: {:?}", e.message()));
}

/// Built-in volatile functions cannot change settings: text sent behind
/// them is read at once, backslashes and non-ASCII included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_functions_do_not_hold_up_the_pipeline() {
    let proxy = Proxy::start().await;
    proxy.upstream_sql("CREATE SEQUENCE s");
    let mut c = raw::login(&proxy, ALICE).await;
    c.send(&fe::concat(&[
        fe::query("SELECT nextval('s'), random()"),
        fe::query("SELECT 'café', E'a\\\\b'"),
    ]))
    .await;
    for _ in 0..2 {
        let got = c.until_ready().await;
        assert!(!got.iter().any(|m| m.tag == b'E'), "{}", raw::tags(&got));
    }
}
