//! The `[identity]` table: how clients other than the configured SCRAM
//! users prove who they are.

use std::path::PathBuf;

use serde::Deserialize;

use crate::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The control-plane store (API keys), a SQLite file relative to the
    /// configuration file's folder. `portcullis keys` writes it; the proxy
    /// reads it at every key login.
    pub store: PathBuf,
    /// Accept Portcullis API keys, presented as the password over TLS by
    /// user names that are not configured SCRAM users (default true).
    pub api_keys: bool,
    /// How often the proxy looks for keys revoked with `--end-sessions`,
    /// to end the sessions they opened.
    pub revocation_poll: Duration,
    /// Trusted OIDC issuers, whose tokens clients present as the password
    /// over TLS.
    pub oidc: Vec<OidcIssuer>,
    /// Client certificates (mutual TLS): `[identity.certificates]`.
    pub certificates: Option<ClientCertificates>,
    /// The control-plane store in a PostgreSQL database shared by several
    /// proxies, instead of the `store` file:
    /// `postgres://user@host:port/database?sslmode=require` (the same rules
    /// as `[audit] postgres`). Its password comes from
    /// `postgres_password_env` or `postgres_password_file`.
    pub postgres: Option<String>,
    pub postgres_password_env: Option<String>,
    pub postgres_password_file: Option<PathBuf>,
    /// With sslmode=require: the CA the store's certificate must chain to
    /// (default: the system's roots).
    pub postgres_ca_file: Option<PathBuf>,
}

/// The `[identity.certificates]` table: clients that present a
/// certificate issued by `ca_file` are who it names, without a password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificates {
    /// PEM certificates of the CA(s) that issue client certificates,
    /// relative to the configuration file.
    pub ca_file: PathBuf,
    /// PEM certificate revocation lists of those CAs; a revoked
    /// certificate fails the TLS handshake. Read at start and reload.
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
    /// Which field names the principal: `cn` (the subject's common name),
    /// or a subjectAltName: `email`, `dns`, `uri`.
    #[serde(default = "default_cert_name")]
    pub name: String,
    /// With `name = "uri"`: the URI must start with this, and the rest is
    /// the user name (`spiffe://corp.example/ns/etl/sa/`).
    #[serde(default)]
    pub uri_prefix: Option<String>,
    /// Names that are AI agents (kind agent) and jobs (kind service);
    /// every other name is a person.
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    /// The subject's organizational units (OU) are the principal's groups.
    #[serde(default)]
    pub groups_from_ou: bool,
}

fn default_cert_name() -> String {
    "cn".into()
}

/// The words `[identity.certificates] name` takes.
pub const CERTIFICATE_NAMES: &[&str] = &["cn", "email", "dns", "uri"];

/// The signature algorithms an issuer may be allowed: what the identity
/// crate verifies (`portcullis_identity::oidc::SUPPORTED_ALGORITHMS`; a
/// proxy test keeps the two lists equal). Never `none`, never HMAC.
pub const OIDC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// One `[[identity.oidc]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuer {
    /// The issuer URL, exactly as tokens carry it in `iss`: `https://`, or
    /// `http://` on a loopback address only (a provider on this machine).
    pub issuer: String,
    /// What the token's `aud` must be or include.
    pub audience: String,
    /// The claim whose value must equal the user name a person logs in
    /// with (`email`, `preferred_username`, `upn`, `sub`).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// The claim listing a person's groups (for policies); none when left
    /// out.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Allowed signature algorithms; default: all of [`OIDC_ALGORITHMS`].
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on exp, nbf and iat.
    #[serde(default = "default_leeway")]
    pub leeway: Duration,
    /// Larger tokens are refused before they are decoded.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// OAuth client ids whose tokens are AI agents' (principal kind agent),
    /// and jobs' (kind service). Their client-credentials tokens log in as
    /// the client id; a person named in the token is who they act for.
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    /// When given, a person's user name (the `user_claim` value) must be
    /// an email address in one of these domains. Required for issuers
    /// that vouch for anyone (Google's).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// When given, a person's token must carry this `hd` (Google
    /// Workspace's hosted domain).
    #[serde(default)]
    pub hosted_domain: Option<String>,
    /// Where the discovery document is; default
    /// `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// PEM roots for the provider's HTTPS certificate, relative to the
    /// configuration file; default: the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Signing keys older than this are fetched again (old keys stay in
    /// use while the provider cannot be reached).
    #[serde(default = "default_keys_max_age")]
    pub keys_max_age: Duration,
}

fn default_user_claim() -> String {
    "email".into()
}

fn default_algorithms() -> Vec<String> {
    OIDC_ALGORITHMS.iter().map(|s| s.to_string()).collect()
}

fn default_leeway() -> Duration {
    Duration::from_secs(60)
}

fn default_max_token_bytes() -> usize {
    16 << 10
}

fn default_keys_max_age() -> Duration {
    Duration::from_secs(3600)
}

/// Issuers that sign tokens for anyone with an account, whatever the
/// organisation: trusting one needs `allowed_domains` or `hosted_domain`.
pub const OPEN_ISSUERS: &[&str] = &[
    "https://accounts.google.com",
    "accounts.google.com",
    // GitHub Actions and GitLab CI: any repository's workflow, with the
    // audience it chooses.
    "https://token.actions.githubusercontent.com",
    "https://gitlab.com",
    // Microsoft's tenant of personal accounts.
    "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
];

impl OidcIssuer {
    pub fn discovery(&self) -> String {
        match &self.discovery_url {
            Some(u) => u.clone(),
            None => format!(
                "{}/.well-known/openid-configuration",
                self.issuer.trim_end_matches('/')
            ),
        }
    }
}

/// Whether `url` may be fetched for keys: https, or http to a loopback
/// address (`localhost`, `127.0.0.0/8`, `::1`).
pub fn secure_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return url.len() > "https://".len();
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            store: PathBuf::from("portcullis-control.db"),
            api_keys: true,
            revocation_poll: Duration::from_secs(2),
            oidc: Vec::new(),
            certificates: None,
            postgres: None,
            postgres_password_env: None,
            postgres_password_file: None,
            postgres_ca_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::secure_url;

    #[test]
    fn only_https_or_loopback_http() {
        for ok in [
            "https://login.example.com",
            "http://127.0.0.1:8080/realms/x",
            "http://localhost:3000",
            "http://[::1]:9000/",
            "http://127.8.9.10",
        ] {
            assert!(secure_url(ok), "{ok}");
        }
        for bad in [
            "http://login.example.com",
            "http://127.0.0.1.evil.com/",
            "http://localhost.evil.com",
            "http://evil.com@127.0.0.1/",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "https://",
            "",
        ] {
            assert!(!secure_url(bad), "{bad}");
        }
    }
}
