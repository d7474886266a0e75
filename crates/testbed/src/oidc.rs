//! A real OpenID provider for tests: the `oidc-provider` npm package run
//! by the machine's Node.js (`crates/testbed/oidc/provider.mjs`, installed
//! by `scripts/setup.sh`), and a real OAuth client (`client.mjs`) that
//! gets tokens from it through the client-credentials grant. The provider
//! listens on 127.0.0.1 on a port of its own and is killed on drop.
//!
//! Its machine clients are `report-bot`, `nightly-etl` and `short-lived`
//! (tokens that expire after 2 seconds), each with secret `<id>-secret`.
//! Tokens are JWT access tokens whose audience is the resource asked for
//! (default `urn:portcullis`), signed with ES256, or with RS256 for
//! `nightly-etl`.
//!
//! People sign in through the public native client `portcullis-cli`
//! (device flow, or code flow with PKCE on a `http://127.0.0.1:PORT/callback`
//! redirect). The accounts are `dana` (dana@example.com, groups
//! engineers), `erin` (erin@example.com, analysts) and `mallory`
//! (mallory@evil.test, email not verified); any other login is denied.
//! [`approve_device`] and [`browser_command`] play the person's part over
//! plain HTTP (`approve-device.mjs`, `approve-browser.mjs`); the provider
//! header comment documents the parameters.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The folder with the provider's scripts and packages.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// A running provider; killed on drop.
pub struct OidcProvider {
    child: Option<Child>,
    /// The issuer URL, as tokens carry it: `http://127.0.0.1:PORT`.
    pub issuer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the test bed's OpenID provider is not installed in {0} (run scripts/setup.sh)")]
    NotInstalled(PathBuf),
    #[error("cannot run node: {0}")]
    Spawn(std::io::Error),
    #[error("the OpenID provider did not start: {0}")]
    Start(String),
    #[error("token request failed: {0}")]
    Token(String),
}

impl OidcProvider {
    /// Starts the provider and waits (up to 20 s) until it listens.
    pub fn start() -> Result<OidcProvider, OidcError> {
        let dir = dir();
        if !dir.join("node_modules/oidc-provider").is_dir() {
            return Err(OidcError::NotInstalled(dir));
        }
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(OidcError::Spawn)?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining: a provider writing to a closed pipe dies.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                return Err(OidcError::Start("no answer within 20 s".into()));
            }
        };
        let issuer = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("issuer")?.as_str().map(str::to_owned));
        match issuer {
            Some(issuer) => Ok(OidcProvider {
                child: Some(child),
                issuer,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(OidcError::Start(format!("unexpected first line {line:?}")))
            }
        }
    }

    /// Stops the provider (as if it went down); its issuer URL no longer
    /// answers.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An access token from the provider at `issuer` for `client` through the
/// client-credentials grant (the real OAuth client, `client.mjs`), for
/// `resource` (default `urn:portcullis`). Blocking.
pub fn client_credentials(
    issuer: &str,
    client: &str,
    resource: Option<&str>,
) -> Result<String, OidcError> {
    let mut cmd = Command::new("node");
    cmd.arg("client.mjs")
        .arg(issuer)
        .arg(client)
        .arg(format!("{client}-secret"))
        .current_dir(dir());
    if let Some(r) = resource {
        cmd.arg(r);
    }
    let out = cmd.output().map_err(OidcError::Spawn)?;
    if !out.status.success() {
        return Err(OidcError::Token(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Approves a device sign-in as `login`, given the verification URL with
/// the user code in it (`verification_uri_complete`). Blocking.
pub fn approve_device(issuer: &str, complete_url: &str, login: &str) -> Result<(), OidcError> {
    let out = Command::new("node")
        .args(["approve-device.mjs", issuer, "-", login, complete_url])
        .current_dir(dir())
        .output()
        .map_err(OidcError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(OidcError::Token(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Writes into `folder` an executable that behaves as a browser signing in
/// as `login`: given an authorization URL as its argument, it logs in,
/// consents and follows the redirect to the waiting loopback listener.
/// For `BROWSER=<path>`.
pub fn browser_command(folder: &std::path::Path, login: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = folder.join(format!("browser-{login}.sh"));
    let script = dir().join("approve-browser.mjs");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec node '{}' '{login}' \"$1\" >/dev/null\n",
            script.display()
        ),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}
