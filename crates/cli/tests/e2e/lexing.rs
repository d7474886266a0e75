//! Settings under which Portcullis and PostgreSQL would split SQL text
//! differently end the session (or refuse it at startup).

use crate::harness::*;
use crate::raw::{self, fe};

async fn ends_session_with_0a000(sql: &str) {
    let proxy = Proxy::start().await;
    let mut c = raw::login(&proxy, ALICE).await;
    c.send(&fe::query(sql)).await;
    let got = c.until_closed().await;
    let fatal = got
        .iter()
        .find(|m| m.tag == b'E' && m.severity().as_deref() == Some("FATAL"))
        .unwrap_or_else(|| panic!("{sql}: expected a FATAL, got {}", raw::tags(&got)));
    assert_eq!(fatal.code().as_deref(), Some("0A000"), "{sql}");
    assert!(fatal.message().unwrap().contains("Portcullis"), "{sql}");
    assert!(
        !got.iter().any(|m| m.tag == b'S'),
        "the ParameterStatus announcing the setting is not passed on"
    );
    // The proxy itself is fine.
    raw::login(&proxy, ALICE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_conforming_strings_off_ends_the_session() {
    ends_session_with_0a000("SET standard_conforming_strings = off").await;
    ends_session_with_0a000("SELECT set_config('standard_conforming_strings', 'off', false)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_client_encodings_end_the_session() {
    ends_session_with_0a000("SET client_encoding = 'SJIS'").await;
    ends_session_with_0a000("SET client_encoding TO 'big5'").await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_encoding_at_startup_is_refused() {
    let proxy = Proxy::start().await;
    let refused = raw::Raw::login(
        proxy.addr,
        portcullis_wire::ProtocolVersion::V3_0,
        &[
            ("user", ALICE.0),
            ("database", "app"),
            ("client_encoding", "SJIS"),
        ],
        ALICE.1,
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(refused.code().as_deref(), Some("0A000"));
    assert!(refused.hint().unwrap().contains("UTF8"));
}
