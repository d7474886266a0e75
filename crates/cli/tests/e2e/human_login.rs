//! A person's sign-in end to end: `portcullis login` against the test
//! bed's real OpenID provider, through the device flow (the approval step
//! played by a script over HTTP) and the code flow with PKCE (a script
//! playing the browser); then `portcullis psql`, `env` and `token` connect
//! through Portcullis as that person, with the token as the password, and
//! a token about to expire is refreshed.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use portcullis_audit::record::IdentityKind;
use portcullis_testbed::oidc::{self, OidcProvider};

use crate::harness::{cluster, login_record, sqlstate, Proxy, Setup};

const SCOPE: &str = "openid email groups offline_access db";
const WHO: &str = "SELECT current_setting('portcullis.identity') || '|' || \
                   current_setting('portcullis.identity_kind')";

async fn provider() -> OidcProvider {
    tokio::task::spawn_blocking(|| OidcProvider::start().expect("the test bed's OpenID provider"))
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
groups_claim = "groups"
allowed_domains = ["example.com", "evil.test"]
"#
        ),
        ..Setup::default()
    }
}

fn portcullis() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    c.env_remove("BROWSER")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("PORTCULLIS_TOKEN_CACHE");
    c
}

/// `portcullis login` arguments for this proxy and provider.
fn login_args(p: &OidcProvider, proxy: &Proxy, cache: &Path) -> Vec<String> {
    [
        "login",
        "--issuer",
        &p.issuer,
        "--resource",
        "urn:portcullis",
        "--scope",
        SCOPE,
        "--proxy",
        &format!("127.0.0.1:{}", proxy.addr.port()),
        "--proxy-ca",
        &proxy.dir.path().join("tls/ca.crt").display().to_string(),
        "--cache",
        &cache.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs a device-flow login, approving it as `person` once the CLI shows
/// where to; returns the CLI's output.
async fn device_login(p: &OidcProvider, proxy: &Proxy, cache: &Path, person: &str) -> Output {
    let args = login_args(p, proxy, cache);
    let issuer = p.issuer.clone();
    let person = person.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = portcullis()
            .args(&args)
            .arg("--device")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut shown = String::new();
        let mut url = None;
        for _ in 0..20 {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                break;
            }
            shown.push_str(&line);
            if let Some(u) = line.trim().strip_prefix("To sign in, open ") {
                url = Some(u.to_owned());
                break;
            }
        }
        let url = url.unwrap_or_else(|| panic!("no sign-in URL shown: {shown}"));
        assert!(url.contains("user_code="), "{url}");
        // A person who is not known is denied; the CLI's wait ends.
        let approved = oidc::approve_device(&issuer, &url, &person);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        let mut out = child.wait_with_output().unwrap();
        out.stderr = format!("{shown}{rest}").into_bytes();
        if person != "nobody" {
            approved.unwrap_or_else(|e| panic!("approval failed: {e}"));
        }
        out
    })
    .await
    .unwrap()
}

fn run(args: &[&str], cache: &Path) -> Output {
    portcullis()
        .args(args)
        .arg("--cache")
        .arg(cache)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `portcullis psql app -- -c WHO` through the cached login.
async fn psql_who(cache: PathBuf) -> Output {
    tokio::task::spawn_blocking(move || {
        let home = tempfile::tempdir().unwrap();
        portcullis()
            .env("HOME", home.path())
            .args(["psql", "app", "--cache"])
            .arg(&cache)
            .arg("--psql")
            .arg(cluster().bin("psql"))
            .args(["--", "-X", "-A", "-t", "-w", "-c", WHO])
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The `export NAME='value'` lines of `portcullis env`, as pairs.
fn exports(text: &str) -> Vec<(String, String)> {
    let mut lines = text.lines();
    // First, what would override the connection goes.
    assert_eq!(lines.next(), Some("unset PGSERVICE PGSERVICEFILE"));
    lines
        .map(|l| {
            let (name, value) = l.strip_prefix("export ").unwrap().split_once('=').unwrap();
            let value = value
                .strip_prefix('\'')
                .unwrap()
                .strip_suffix('\'')
                .unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

fn cached(cache: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(cache).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_the_device_flow_and_connects_with_psql_and_env() {
    let p = provider().await;
    let proxy = Proxy::with(setup(&p.issuer)).await;
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache/tokens.json");

    let out = device_login(&p, &proxy, &cache, "dana").await;
    ok(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Signed in as dana@example.com"), "{said}");
    // The token is cached for its owner only; nothing went to stdout.
    assert!(out.stdout.is_empty());
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let login = &cached(&cache)["logins"][0];
    assert_eq!(login["user"], "dana@example.com");
    assert!(login["refresh_token"].is_string());

    let out = psql_who(cache.clone()).await;
    assert_eq!(ok(&out), "dana@example.com|human");

    let env = exports(&ok(&run(&["env", "app"], &cache)));
    let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(get("PGUSER"), "dana@example.com");
    assert_eq!(get("PGSSLMODE"), "verify-full");
    assert_eq!(get("PGDATABASE"), "app");
    let token = get("PGPASSWORD");
    assert_eq!(ok(&run(&["token"], &cache)), token);
    let c = proxy
        .connect(&proxy.conn_str(("dana@example.com", &token), "sslmode=require"))
        .await
        .expect("the token from env logs in");
    let row = c.query_one(WHO, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "dana@example.com|human");
    // The token names dana, not erin.
    let e = proxy
        .connect(&proxy.conn_str(("erin@example.com", &token), "sslmode=require"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"));
    drop(c);

    // The trail names the person, with the groups the provider gave.
    let dir = proxy.shutdown().await;
    let c = login_record(dir.path(), "dana@example.com");
    assert_eq!(c.auth_method.as_deref(), Some("oidc"));
    let who = c.identity.as_ref().unwrap();
    assert_eq!(who.kind, IdentityKind::Human);
    assert_eq!(who.groups, vec!["engineers".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_about_to_expire_is_refreshed_when_used() {
    let p = provider().await;
    let proxy = Proxy::with(setup(&p.issuer)).await;
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("tokens.json");
    ok(&device_login(&p, &proxy, &cache, "erin").await);
    let before = cached(&cache)["logins"][0].clone();

    // As if the token had run out.
    let mut file = cached(&cache);
    file["logins"][0]["expires_at"] = serde_json::json!(0);
    std::fs::write(&cache, serde_json::to_vec(&file).unwrap()).unwrap();
    let token = ok(&run(&["token"], &cache));
    let after = cached(&cache)["logins"][0].clone();
    assert_ne!(token, before["token"].as_str().unwrap());
    assert_eq!(after["token"].as_str().unwrap(), token);
    assert!(after["expires_at"].as_i64().unwrap() > 0);
    // The provider rotates refresh tokens; the new one was kept.
    assert_ne!(after["refresh_token"], before["refresh_token"]);
    assert_eq!(ok(&psql_who(cache.clone()).await), "erin@example.com|human");

    // A refresh token the provider no longer honours: sign in again.
    let mut file = cached(&cache);
    file["logins"][0]["expires_at"] = serde_json::json!(0);
    file["logins"][0]["refresh_token"] = before["refresh_token"].clone();
    std::fs::write(&cache, serde_json::to_vec(&file).unwrap()).unwrap();
    let out = run(&["token"], &cache);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("portcullis login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_through_the_browser_with_pkce() {
    let p = provider().await;
    let proxy = Proxy::with(setup(&p.issuer)).await;
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("tokens.json");
    let browser = oidc::browser_command(home.path(), "dana").unwrap();
    let args = login_args(&p, &proxy, &cache);
    let out = tokio::task::spawn_blocking(move || {
        portcullis()
            .args(&args)
            .env("BROWSER", &browser)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    ok(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("code_challenge_method=S256"), "{said}");
    assert!(said.contains("Signed in as dana@example.com"), "{said}");
    assert_eq!(ok(&psql_who(cache.clone()).await), "dana@example.com|human");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_unverified_and_exposed_logins_go_nowhere() {
    let p = provider().await;
    let proxy = Proxy::with(setup(&p.issuer)).await;
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("tokens.json");

    // Nobody approves: the CLI says so and caches nothing.
    let out = device_login(&p, &proxy, &cache, "nobody").await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!cache.exists());

    // The provider signs mallory in, but does not vouch for the address:
    // Portcullis refuses the token.
    ok(&device_login(&p, &proxy, &cache, "mallory").await);
    let out = psql_who(cache.clone()).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A cache others can read is not used.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&["token"], &cache);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    assert!(out.stdout.is_empty());
}
