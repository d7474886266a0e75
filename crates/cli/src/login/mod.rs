//! `portcullis login`, `token`, `psql` and `env`: a person signs in at the
//! company's identity provider once, and any PostgreSQL client then
//! connects through Portcullis with the token as its password.
//!
//! - `login` runs the authorization code flow with PKCE on a loopback
//!   redirect when a browser can be opened, else (or with `--device`) the
//!   device authorization flow, and caches the token (see [`cache`]).
//! - `token` prints a fresh token (refreshed when it has less than a
//!   minute left), for scripts and clients of any kind.
//! - `psql TARGET` runs psql with the connection in its environment (the
//!   token in `PGPASSWORD`, never on a command line).
//! - `env TARGET` prints the same settings as `export` lines for a shell.

mod cache;
mod callback;
pub(crate) mod oauth;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use portcullis_identity::keys::unix_now;

use cache::{CacheError, Login, ProxyAddress};
use oauth::{OAuthError, Provider, Tokens};

const EXIT_PROBLEM: u8 = 2;
/// libpq settings that would take precedence over the connection
/// `psql` and `env` set (a service's host or sslmode).
const OVERRIDING: [&str; 2] = ["PGSERVICE", "PGSERVICEFILE"];
/// A token with less time left than this is refreshed before use.
const REFRESH_MARGIN_SECS: i64 = 60;
/// How long the code flow waits for the browser to come back.
const BROWSER_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
enum LoginError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("{0}")]
    Usage(String),
}

/// Where the token cache is.
#[derive(Args)]
pub struct CacheArg {
    /// The token cache (default: $PORTCULLIS_TOKEN_CACHE, else
    /// $XDG_CACHE_HOME/portcullis/tokens.json, else
    /// ~/.cache/portcullis/tokens.json).
    #[arg(long, value_name = "FILE")]
    cache: Option<PathBuf>,
}

impl CacheArg {
    fn path(&self) -> Result<PathBuf, LoginError> {
        self.cache
            .clone()
            .or_else(cache::default_path)
            .ok_or_else(|| {
                LoginError::Usage("no home folder for the token cache; give --cache FILE".into())
            })
    }
}

#[derive(Args)]
pub struct LoginArgs {
    /// The OpenID issuer URL, as Portcullis trusts it ([[identity.oidc]]
    /// issuer).
    #[arg(long)]
    issuer: String,
    /// The OAuth client registered for the CLI at the provider (a public,
    /// native client with the device flow and a loopback redirect
    /// http://127.0.0.1/callback).
    #[arg(long, default_value = "portcullis-cli")]
    client_id: String,
    /// An environment variable holding the client's secret, for providers
    /// that give native apps one (Google).
    #[arg(long, value_name = "VAR")]
    client_secret_env: Option<String>,
    /// Ask for tokens for this resource (RFC 8707 `resource`, the
    /// audience Portcullis expects); implies --token access.
    #[arg(long)]
    resource: Option<String>,
    /// Which token Portcullis gets: the access token (a JWT for the
    /// audience Portcullis expects) or the ID token (audience: the client
    /// id). Default: access with --resource, else id.
    #[arg(long, value_enum)]
    token: Option<TokenKind>,
    /// The scopes to ask for.
    #[arg(long, default_value = "openid email profile offline_access")]
    scope: String,
    /// The claim holding the user name Portcullis knows you by (its
    /// [[identity.oidc]] user_claim).
    #[arg(long, default_value = "email")]
    user_claim: String,
    /// Use the device flow (a code to enter on any device) even where a
    /// browser could be opened.
    #[arg(long, conflicts_with = "browser")]
    device: bool,
    /// Open a browser for the code flow even where none seems available
    /// (the URL is printed too).
    #[arg(long)]
    browser: bool,
    /// PEM roots for the provider's HTTPS certificate (default: the
    /// system's).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Where Portcullis listens, HOST:PORT, remembered for `psql` and `env`.
    #[arg(long, value_name = "HOST:PORT")]
    proxy: Option<String>,
    /// PEM roots for Portcullis' certificate (default: the system's).
    #[arg(long, value_name = "FILE")]
    proxy_ca: Option<PathBuf>,
    #[command(flatten)]
    cache: CacheArg,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TokenKind {
    Access,
    Id,
}

#[derive(Args)]
pub struct TokenArgs {
    /// Which login (default: the only one cached).
    #[arg(long)]
    issuer: Option<String>,
    #[command(flatten)]
    cache: CacheArg,
}

/// How to reach the proxy, over what the login remembered.
#[derive(Args)]
pub struct ConnectArgs {
    /// The target (the database name clients connect to).
    target: String,
    /// Which login (default: the only one cached).
    #[arg(long)]
    issuer: Option<String>,
    /// Portcullis' host (default: from `login --proxy`).
    #[arg(long)]
    host: Option<String>,
    /// Portcullis' port (default: from `login --proxy`, else 5432).
    #[arg(long)]
    port: Option<u16>,
    /// PEM roots for Portcullis' certificate (default: from `login
    /// --proxy-ca`, else the system's).
    #[arg(long, value_name = "FILE")]
    sslrootcert: Option<PathBuf>,
    #[command(flatten)]
    cache: CacheArg,
}

#[derive(Args)]
pub struct PsqlArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The psql to run (default: psql on PATH).
    #[arg(long, value_name = "PATH", default_value = "psql")]
    psql: PathBuf,
    /// Arguments for psql, after `--`.
    #[arg(last = true)]
    args: Vec<String>,
}

fn runtime() -> Result<tokio::runtime::Runtime, LoginError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoginError::Usage(format!("cannot start: {e}")))
}

fn finish(r: Result<(), LoginError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_PROBLEM)
        }
    }
}

pub fn login(args: LoginArgs) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(run_login(args))))
}

pub fn token(args: TokenArgs) -> ExitCode {
    finish(runtime().and_then(|rt| {
        let login = rt.block_on(fresh(&args.cache, args.issuer.as_deref()))?;
        println!("{}", login.token);
        Ok(())
    }))
}

pub fn env(args: ConnectArgs) -> ExitCode {
    finish(runtime().and_then(|rt| {
        let login = rt.block_on(fresh(&args.cache, args.issuer.as_deref()))?;
        println!("unset {}", OVERRIDING.join(" "));
        for (name, value) in connection_env(&login, &args)? {
            println!("export {name}={}", shell_quote(&value));
        }
        Ok(())
    }))
}

pub fn psql(args: PsqlArgs) -> ExitCode {
    finish(runtime().and_then(|rt| {
        let login = rt.block_on(fresh(&args.connect.cache, args.connect.issuer.as_deref()))?;
        let vars = connection_env(&login, &args.connect)?;
        drop(rt);
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(&args.psql);
        // A service file would override the host and sslmode set here.
        for name in OVERRIDING {
            cmd.env_remove(name);
        }
        cmd.args(&args.args).envs(vars);
        // Only returns when psql could not be started.
        let e = cmd.exec();
        Err(LoginError::Usage(format!(
            "cannot run {}: {e}",
            args.psql.display()
        )))
    }))
}

async fn run_login(args: LoginArgs) -> Result<(), LoginError> {
    let path = args.cache.path()?;
    // Read (and so check) the cache before anyone signs in.
    cache::load(&path)?;
    let proxy = args
        .proxy
        .as_deref()
        .map(parse_proxy)
        .transpose()?
        .map(|(host, port)| ProxyAddress {
            host,
            port,
            sslrootcert: args.proxy_ca.clone().map(absolute),
        });
    let secret = match &args.client_secret_env {
        Some(var) => Some(
            std::env::var(var)
                .map_err(|_| LoginError::Usage(format!("environment variable {var} is not set")))?,
        ),
        None => None,
    };
    let provider = connect(
        &args.issuer,
        &args.client_id,
        secret,
        args.ca_file.as_deref(),
    )
    .await?;
    let resource = args.resource.as_deref();
    let tokens = if args.device || (!args.browser && !browser_available()) {
        provider
            .device_flow(&args.scope, resource, |code| {
                match &code.verification_uri_complete {
                    Some(complete) => eprintln!(
                        "To sign in, open {complete}\n(or open {} and enter the code {})",
                        code.verification_uri, code.user_code
                    ),
                    None => eprintln!(
                        "To sign in, open {} and enter the code {}",
                        code.verification_uri, code.user_code
                    ),
                }
                eprintln!("Waiting for the sign-in to be approved...");
            })
            .await?
    } else {
        code_flow(&provider, &args.scope, resource).await?
    };
    let access = match args.token {
        Some(kind) => kind == TokenKind::Access,
        None => resource.is_some(),
    };
    let chosen = presented(&tokens, access)?;
    let claims = oauth::claims(&chosen)
        .ok_or_else(|| LoginError::Usage("the provider's token is not a JWT".into()))?;
    let user = oauth::user_of(&claims, &args.user_claim).ok_or_else(|| {
        LoginError::Usage(format!(
            "the token carries no {} claim; ask for its scope (--scope) or name another claim (--user-claim)",
            args.user_claim
        ))
    })?;
    let expires_at = claims.get("exp").and_then(|v| v.as_i64()).unwrap_or(0);
    let login = Login {
        issuer: args.issuer.trim_end_matches('/').to_owned(),
        client_id: args.client_id,
        client_secret_env: args.client_secret_env,
        resource: args.resource,
        access_token: access,
        token_endpoint: provider.token_endpoint.clone(),
        ca_file: args.ca_file.map(absolute),
        user: user.clone(),
        token: chosen,
        expires_at,
        refresh_token: tokens.refresh_token,
        proxy,
    };
    let refreshable = login.refresh_token.is_some();
    // What others wrote while the person signed in stays: read again
    // under the lock and replace only this issuer's login.
    let _lock = cache::lock(&path)?;
    let logins = cache::load(&path)?;
    cache::store(&path, &cache::replace(logins, login))?;
    eprintln!(
        "Signed in as {user}; the token expires in {} minutes{}. Cached in {}.",
        expires_at.saturating_sub(unix_now()).max(0) / 60,
        if refreshable {
            " and is refreshed when used after that"
        } else {
            " (no refresh token: run `portcullis login` again then)"
        },
        path.display()
    );
    Ok(())
}

/// The code flow: a loopback listener, the browser, the code.
async fn code_flow(
    provider: &Provider,
    scope: &str,
    resource: Option<&str>,
) -> Result<Tokens, LoginError> {
    let mut callback = callback::Callback::listen().await?;
    let (verifier, challenge) = oauth::pkce()?;
    let state = oauth::random_state()?;
    let url =
        provider.authorization_url(&callback.redirect_uri, scope, resource, &state, &challenge)?;
    eprintln!("Opening a browser to sign in. If none opens, open this URL:\n{url}");
    // The browser gets a page of the user's own that redirects to the URL,
    // not the URL itself: a command line is readable by every local user,
    // and the URL's state and challenge would let one of them finish the
    // sign-in with their own account first.
    let page = redirect_page(&url)?;
    open_browser(&format!(
        "file://{}",
        page.path().join("sign-in.html").display()
    ));
    let code = callback
        .code(&state, &provider.issuer, BROWSER_WAIT)
        .await?;
    Ok(provider
        .exchange_code(&code, &callback.redirect_uri, &verifier, resource)
        .await?)
}

/// A private folder (0700) holding `sign-in.html` (0600), which sends the
/// browser on to `url`; removed when dropped.
fn redirect_page(url: &str) -> Result<tempfile::TempDir, LoginError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| LoginError::Usage(format!("cannot write the sign-in page: {e}"));
    let dir = tempfile::Builder::new()
        .prefix("portcullis-login-")
        .tempdir()
        .map_err(io)?;
    // Before the page is in it.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .map_err(io)?;
    let escaped = url
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.path().join("sign-in.html"))
        .map_err(io)?;
    write!(
        f,
        "<!doctype html><meta charset=\"utf-8\"><title>Portcullis sign-in</title>\
         <meta http-equiv=\"refresh\" content=\"0;url={escaped}\">\
         <p><a href=\"{escaped}\">Continue to sign in</a></p>"
    )
    .map_err(io)?;
    Ok(dir)
}

/// The token given to Portcullis: the access token or the ID token.
fn presented(tokens: &Tokens, access: bool) -> Result<String, LoginError> {
    let (token, which) = if access {
        (&tokens.access_token, "access")
    } else {
        (&tokens.id_token, "ID")
    };
    token.clone().ok_or(OAuthError::NoToken(which).into())
}

async fn connect(
    issuer: &str,
    client_id: &str,
    secret: Option<String>,
    ca_file: Option<&std::path::Path>,
) -> Result<Provider, LoginError> {
    Ok(oauth::discover(issuer, client_id, secret, provider_tls(ca_file)?).await?)
}

fn provider_tls(
    ca_file: Option<&std::path::Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, LoginError> {
    portcullis_audit::tls::client_config(ca_file)
        .map(Some)
        .map_err(|e| LoginError::Usage(format!("provider TLS roots: {e}")))
}

/// The cached login, refreshed first when its token is about to expire.
/// Under the cache's lock: two commands at once refresh once (a refresh
/// token spent twice makes providers revoke the whole grant).
async fn fresh(cache_arg: &CacheArg, issuer: Option<&str>) -> Result<Login, LoginError> {
    let path = cache_arg.path()?;
    let _lock = cache::lock(&path)?;
    let logins = cache::load(&path)?;
    let mut login = cache::pick(&logins, issuer)?.clone();
    if login.expires_at.saturating_sub(unix_now()) > REFRESH_MARGIN_SECS {
        return Ok(login);
    }
    let again = format!(
        "the token from {} has expired; run `portcullis login --issuer {}` again",
        login.issuer, login.issuer
    );
    let Some(refresh_token) = login.refresh_token.clone() else {
        return Err(LoginError::Usage(again));
    };
    let secret = login
        .client_secret_env
        .as_ref()
        .and_then(|v| std::env::var(v).ok());
    let provider = Provider {
        issuer: login.issuer.clone(),
        client_id: login.client_id.clone(),
        client_secret: secret,
        tls: provider_tls(login.ca_file.as_deref())?,
        token_endpoint: login.token_endpoint.clone(),
        device_endpoint: None,
        authorization_endpoint: None,
    };
    let tokens = match provider
        .refresh(&refresh_token, login.resource.as_deref())
        .await
    {
        Ok(t) => t,
        Err(e) => return Err(LoginError::Usage(format!("{again} (refresh failed: {e})"))),
    };
    // Providers that rotate refresh tokens send a new one, and the old
    // one is spent: keep the new one before anything else can fail.
    if tokens.refresh_token.is_some() {
        login.refresh_token = tokens.refresh_token.clone();
    }
    let token = presented(&tokens, login.access_token).and_then(|token| {
        let claims = oauth::claims(&token)
            .ok_or_else(|| LoginError::Usage("the provider's token is not a JWT".into()))?;
        Ok((
            token,
            claims.get("exp").and_then(|v| v.as_i64()).unwrap_or(0),
        ))
    });
    if let Ok((token, expires_at)) = &token {
        login.token = token.clone();
        login.expires_at = *expires_at;
    }
    cache::store(&path, &cache::replace(logins, login.clone()))?;
    token.map(|_| login)
}

/// The libpq environment for connecting to `args.target` with `login`.
fn connection_env(
    login: &Login,
    args: &ConnectArgs,
) -> Result<Vec<(&'static str, String)>, LoginError> {
    let remembered = login.proxy.as_ref();
    let host = args
        .host
        .clone()
        .or_else(|| remembered.map(|p| p.host.clone()))
        .ok_or_else(|| {
            LoginError::Usage(
                "where is Portcullis? give --host (or log in with --proxy HOST:PORT)".into(),
            )
        })?;
    let port = args
        .port
        .or_else(|| remembered.map(|p| p.port))
        .unwrap_or(5432);
    if host.starts_with('/') || host.starts_with('@') {
        // libpq ignores sslmode on a Unix socket: the token would go to
        // whoever owns it, in the clear.
        return Err(LoginError::Usage(format!(
            "{host}: Portcullis is reached over TCP with TLS, not a Unix socket"
        )));
    }
    let root = args
        .sslrootcert
        .clone()
        .map(absolute)
        .or_else(|| remembered.and_then(|p| p.sslrootcert.clone()));
    Ok(vec![
        ("PGHOST", host),
        ("PGPORT", port.to_string()),
        ("PGDATABASE", args.target.clone()),
        ("PGUSER", login.user.clone()),
        ("PGPASSWORD", login.token.clone()),
        // A token is a bearer secret: only to a proxy whose certificate
        // checks out (libpq 16 and later read "system" as the system's
        // roots).
        ("PGSSLMODE", "verify-full".into()),
        (
            "PGSSLROOTCERT",
            root.map_or("system".into(), |p| p.display().to_string()),
        ),
        // A client certificate libpq would send by itself
        // (~/.postgresql/postgresql.crt) would make it a certificate
        // login instead (libpq 16 and later).
        ("PGSSLCERTMODE", "disable".into()),
    ])
}

fn parse_proxy(s: &str) -> Result<(String, u16), LoginError> {
    let bad = || LoginError::Usage(format!("--proxy {s:?}: give HOST:PORT"));
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port.parse().map_err(|_| bad())?))
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// `s` as one word for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether a browser can be opened: `$BROWSER`, or a desktop session.
fn browser_available() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    set("BROWSER") || cfg!(target_os = "macos") || set("DISPLAY") || set("WAYLAND_DISPLAY")
}

/// Starts the browser on `url` without waiting for it: `$BROWSER` (a
/// command, `%s` standing for the URL or the URL appended), else the
/// desktop's opener. The URL is printed anyway, so a failure here only
/// means the person opens it by hand.
fn open_browser(url: &str) {
    let command = std::env::var("BROWSER")
        .ok()
        .and_then(|b| b.split(':').next().map(str::to_owned))
        .filter(|b| !b.trim().is_empty());
    let (program, args) = match &command {
        Some(c) => {
            let mut words = c.split_whitespace().map(str::to_owned);
            let program = words.next().unwrap_or_default();
            let mut args: Vec<String> = words.collect();
            if args.iter().any(|a| a.contains("%s")) {
                for a in &mut args {
                    *a = a.replace("%s", url);
                }
            } else {
                args.push(url.to_owned());
            }
            (program, args)
        }
        None if cfg!(target_os = "macos") => ("open".to_owned(), vec![url.to_owned()]),
        None => ("xdg-open".to_owned(), vec![url.to_owned()]),
    };
    let spawned = std::process::Command::new(&program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("(could not start {program}: {e})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_page_is_private_and_carries_the_url_escaped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = redirect_page("https://idp/auth?a=1&b=\"<x>").unwrap();
        let page = dir.path().join("sign-in.html");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&page), 0o600);
        assert_eq!(mode(dir.path()), 0o700);
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(
            text.contains("content=\"0;url=https://idp/auth?a=1&amp;b=&quot;&lt;x&gt;\""),
            "{text}"
        );
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn shell_words_survive_quotes() {
        assert_eq!(shell_quote("eyJ.a-b_c"), "'eyJ.a-b_c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn proxy_addresses() {
        assert_eq!(
            parse_proxy("db.example:6432").unwrap(),
            ("db.example".into(), 6432)
        );
        assert_eq!(parse_proxy("[::1]:5432").unwrap(), ("::1".into(), 5432));
        assert!(parse_proxy("db.example").is_err());
        assert!(parse_proxy(":5432").is_err());
        assert!(parse_proxy("h:99999").is_err());
    }

    #[test]
    fn the_environment_always_verifies_the_proxy() {
        let login = Login {
            issuer: "https://idp".into(),
            client_id: "c".into(),
            client_secret_env: None,
            resource: None,
            access_token: false,
            token_endpoint: "https://idp/token".into(),
            ca_file: None,
            user: "dana@example.com".into(),
            token: "eyJ.t.s".into(),
            expires_at: 0,
            refresh_token: None,
            proxy: Some(ProxyAddress {
                host: "proxy".into(),
                port: 6432,
                sslrootcert: None,
            }),
        };
        let args = |host: Option<&str>| ConnectArgs {
            target: "shop".into(),
            issuer: None,
            host: host.map(str::to_owned),
            port: None,
            sslrootcert: None,
            cache: CacheArg { cache: None },
        };
        let env = connection_env(&login, &args(None)).unwrap();
        let get =
            |env: &[(&str, String)], k: &str| env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get(&env, "PGHOST"), "proxy");
        assert_eq!(get(&env, "PGPORT"), "6432");
        assert_eq!(get(&env, "PGDATABASE"), "shop");
        assert_eq!(get(&env, "PGUSER"), "dana@example.com");
        assert_eq!(get(&env, "PGPASSWORD"), "eyJ.t.s");
        assert_eq!(get(&env, "PGSSLMODE"), "verify-full");
        assert_eq!(get(&env, "PGSSLROOTCERT"), "system");
        let env = connection_env(&login, &args(Some("other"))).unwrap();
        assert_eq!(get(&env, "PGHOST"), "other");
        let mut nowhere = login.clone();
        nowhere.proxy = None;
        assert!(connection_env(&nowhere, &args(None)).is_err());
        assert!(connection_env(&login, &args(Some("/var/run/postgresql"))).is_err());
        assert!(connection_env(&login, &args(Some("@abstract"))).is_err());
        assert_eq!(get(&env, "PGSSLCERTMODE"), "disable");
    }
}
