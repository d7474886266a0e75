//! OIDC tokens end to end, from a real OpenID provider (the test bed's
//! `oidc-provider` under Node.js) through the real client-credentials
//! grant: agents and services log in with their tokens over TLS, every
//! bad token gets the same 28P01, keys fetched once keep working when the
//! provider goes down, and without keys a login fails closed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis_audit::record::IdentityKind;
use portcullis_testbed::oidc::OidcProvider;

use crate::harness::{login_record, sqlstate, Proxy, Setup};

async fn provider() -> OidcProvider {
    tokio::task::spawn_blocking(|| OidcProvider::start().expect("the test bed's OpenID provider"))
        .await
        .unwrap()
}

async fn token(p: &OidcProvider, client: &'static str, resource: Option<&'static str>) -> String {
    let issuer = p.issuer.clone();
    tokio::task::spawn_blocking(move || {
        portcullis_testbed::oidc::client_credentials(&issuer, client, resource).expect("a token")
    })
    .await
    .unwrap()
}

fn setup(issuer: &str) -> Setup {
    Setup {
        extra: format!(
            r#"
[[identity.oidc]]
issuer = "{issuer}"
audience = "urn:portcullis"
user_claim = "email"
leeway = "0s"
agents = ["report-bot", "short-lived"]
services = ["nightly-etl"]
"#
        ),
        ..Setup::default()
    }
}

async fn login(
    proxy: &Proxy,
    user: &str,
    token: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    proxy
        .connect(&proxy.conn_str((user, token), "sslmode=require"))
        .await
}

async fn refused(proxy: &Proxy, user: &str, token: &str) -> String {
    let e = login(proxy, user, token)
        .await
        .err()
        .unwrap_or_else(|| panic!("{user} logged in"));
    let db = e.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        db.message(),
        format!("password authentication failed for user \"{user}\""),
        "the same answer for every bad token"
    );
    sqlstate(&e).unwrap()
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn parts(token: &str) -> (serde_json::Value, serde_json::Value, String) {
    let p: Vec<&str> = token.split('.').collect();
    let json = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (json(p[0]), json(p[1]), p[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_services_log_in_with_provider_tokens() {
    let provider = provider().await;
    let proxy = Proxy::with(setup(&provider.issuer)).await;

    let agent = token(&provider, "report-bot", None).await;
    assert_eq!(parts(&agent).0["alg"], "ES256");
    let c = login(&proxy, "report-bot", &agent)
        .await
        .expect("the agent logs in");
    let rows = c.simple_query("SELECT 6 * 7").await.unwrap();
    assert!(format!("{rows:?}").contains("42"));

    let service = token(&provider, "nightly-etl", None).await;
    assert_eq!(parts(&service).0["alg"], "RS256");
    let s = login(&proxy, "nightly-etl", &service)
        .await
        .expect("the service logs in");
    s.simple_query("SELECT 1").await.unwrap();
    drop((c, s));

    let jti = parts(&agent).1["jti"].as_str().unwrap().to_owned();
    let dir = proxy.shutdown().await;
    for (who, kind) in [
        ("report-bot", IdentityKind::Agent),
        ("nightly-etl", IdentityKind::Service),
    ] {
        let c = login_record(dir.path(), who);
        assert_eq!(c.auth_method.as_deref(), Some("oidc"));
        assert_eq!(c.identity.as_ref().unwrap().kind, kind);
        let credential = c.credential.as_deref().unwrap();
        assert!(
            credential.starts_with(&format!("{}#", provider.issuer)),
            "{credential}"
        );
        if who == "report-bot" {
            assert_eq!(credential, format!("{}#{jti}", provider.issuer));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_refused_the_same_way() {
    let provider = provider().await;
    let proxy = Proxy::with(setup(&provider.issuer)).await;
    let good = token(&provider, "report-bot", None).await;
    login(&proxy, "report-bot", &good)
        .await
        .expect("the good token works");
    let (header, payload, sig) = parts(&good);

    // A token for another user name.
    assert_eq!(refused(&proxy, "nightly-etl", &good).await, "28P01");
    // Another audience.
    let other = token(&provider, "report-bot", Some("urn:other")).await;
    assert_eq!(refused(&proxy, "report-bot", &other).await, "28P01");
    // Expired (the provider's 2-second tokens, no leeway).
    let short = token(&provider, "short-lived", None).await;
    login(&proxy, "short-lived", &short).await.expect("fresh");
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(refused(&proxy, "short-lived", &short).await, "28P01");
    // alg none, with the real payload.
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "at+jwt"})),
        b64(&payload)
    );
    assert_eq!(refused(&proxy, "report-bot", &none).await, "28P01");
    // HS256 keyed with the issuer's public key material.
    let mut hs = header.clone();
    hs["alg"] = "HS256".into();
    let input = format!("{}.{}", b64(&hs), b64(&payload));
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, provider.issuer.as_bytes()),
        input.as_bytes(),
    );
    let hmac = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    assert_eq!(refused(&proxy, "report-bot", &hmac).await, "28P01");
    // A tampered payload under the provider's signature.
    let mut forged = payload.clone();
    forged["sub"] = "nightly-etl".into();
    forged["client_id"] = "nightly-etl".into();
    let tampered = format!("{}.{}.{sig}", b64(&header), b64(&forged));
    assert_eq!(refused(&proxy, "nightly-etl", &tampered).await, "28P01");
    // A key id the issuer never published.
    let mut unknown = header.clone();
    unknown["kid"] = "rotated-away".into();
    let unknown_kid = format!("{}.{}.{sig}", b64(&unknown), b64(&payload));
    assert_eq!(refused(&proxy, "report-bot", &unknown_kid).await, "28P01");
    // Another issuer's token (same shape, iss not configured).
    let mut foreign = payload.clone();
    foreign["iss"] = "https://evil.example".into();
    let foreign = format!("{}.{}.{sig}", b64(&header), b64(&foreign));
    assert_eq!(refused(&proxy, "report-bot", &foreign).await, "28P01");
    // Oversized (over the default 16 KiB bound).
    let mut big = payload.clone();
    big["pad"] = "x".repeat(20 << 10).into();
    let big = format!("{}.{}.{sig}", b64(&header), b64(&big));
    assert_eq!(refused(&proxy, "report-bot", &big).await, "28P01");
    // Over plaintext a token is never asked for: SCRAM runs, and fails.
    let Err(e) = proxy
        .connect(&proxy.conn_str(("report-bot", &good), "sslmode=disable"))
        .await
    else {
        panic!("a token logged in over plaintext");
    };
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"));
    // The session of the good token is unaffected by all this.
    login(&proxy, "report-bot", &good)
        .await
        .expect("still fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_outlive_the_provider_and_without_keys_logins_fail_closed() {
    let mut provider = provider().await;
    let proxy = Proxy::with(setup(&provider.issuer)).await;
    let first = token(&provider, "report-bot", None).await;
    let later = token(&provider, "nightly-etl", None).await;
    login(&proxy, "report-bot", &first)
        .await
        .expect("keys fetched");
    // The service's RS256 key came in the same key set.
    provider.stop();
    login(&proxy, "nightly-etl", &later)
        .await
        .expect("cached keys still verify after the provider went down");
    // A reload rebuilds the issuers but keeps their keys.
    let config = portcullis_config::Config::load(&proxy.config_path).unwrap();
    proxy.handle.reload(config).unwrap();
    login(&proxy, "report-bot", &first)
        .await
        .expect("keys survive a reload");

    // A proxy that never had the keys cannot check a token: it says so
    // (58000), it does not let the token through, nor call it wrong.
    let fresh = Proxy::with(setup(&provider.issuer)).await;
    let Err(e) = login(&fresh, "report-bot", &first).await else {
        panic!("a token logged in with no keys to check it");
    };
    assert_eq!(sqlstate(&e).as_deref(), Some("58000"), "{e:?}");
    assert_eq!(
        e.as_db_error().unwrap().message(),
        "Portcullis could not check the credential"
    );
}
