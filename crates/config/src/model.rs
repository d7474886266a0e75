//! The shape of the configuration file. Every struct denies unknown keys so a
//! typo is an error, not a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{ConfigError, Duration, RowLimit};

/// A validated configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    /// The admin HTTP listener (`/metrics`, `/health`, `POST /reload`).
    #[serde(default)]
    pub admin: Option<Admin>,
    /// Certificate and key Portcullis presents to clients.
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// Required (at least one); a missing table is reported by validation
    /// with a clearer message than serde's "missing field".
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Listener>,
    /// Required (at least one), like `listeners`.
    #[serde(default, rename = "target")]
    pub targets: Vec<Target>,
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
    /// Limits per identity, group or principal kind.
    #[serde(default, rename = "limit")]
    pub limits: Vec<crate::Limit>,
    /// Where the Cedar policies come from.
    #[serde(default)]
    pub policy: Policy,
    /// Dynamic masking of sensitive values in results.
    #[serde(default)]
    pub masking: crate::Masking,
    /// The audit trail.
    #[serde(default)]
    pub audit: crate::Audit,
    /// API keys and the control-plane store.
    #[serde(default)]
    pub identity: crate::IdentityConfig,
    /// Statements held for approval.
    #[serde(default)]
    pub approvals: crate::Approvals,
    /// Where the file was loaded from; relative paths inside it resolve
    /// against its folder. Not part of the file.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Time a client has to finish TLS, startup and authentication.
    pub handshake_timeout: Duration,
    /// Close client sessions idle (between queries, not in a transaction)
    /// for this long. Zero disables.
    pub idle_timeout: Duration,
    /// How long SIGTERM waits for sessions to finish before closing them.
    pub shutdown_grace: Duration,
    /// Largest Query or Parse message accepted from a client, in bytes.
    pub max_statement_bytes: usize,
    /// Log format: human-readable lines or one JSON object per line.
    pub log_format: LogFormat,
    /// Threads that run sessions, each session on one of them from login
    /// to end; 0 means one per CPU core.
    pub worker_threads: usize,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            handshake_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(0),
            shutdown_grace: Duration::from_secs(30),
            max_statement_bytes: 64 << 20,
            log_format: LogFormat::Human,
            worker_threads: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// The `[policy]` table.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Cedar policy files or directories (read recursively, in name
    /// order), relative to the configuration file. Empty: the default
    /// bundle built into Portcullis.
    pub files: Vec<PathBuf>,
}

/// Whether a target's policy decisions are enforced.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Refused statements never reach the database.
    #[default]
    Enforce,
    /// Decisions are computed and logged, and every statement runs: for
    /// rolling out a policy safely.
    Observe,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub listen: SocketAddr,
    /// Accept clients that do not use TLS. Off by default: passwords and data
    /// would cross the network in the clear.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Most concurrent client connections on this listener.
    #[serde(default = "default_listener_connections")]
    pub max_connections: usize,
}

fn default_listener_connections() -> usize {
    10_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The database name clients ask for to reach this target; `"*"` for
    /// the target that serves every other name (see [`Target::is_wildcard`]).
    pub name: String,
    /// production, staging, development or any label.
    pub environment: String,
    /// Host name or IP address, or a directory holding the server's Unix
    /// socket (a path starting with `/`, as in libpq).
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Database on the server; defaults to `name`.
    #[serde(default)]
    pub database: Option<String>,
    /// Role Portcullis logs in as.
    pub user: String,
    /// Environment variable holding the upstream password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the upstream password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub sslmode: SslMode,
    /// CA bundle for `verify-full`.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// `enforce` (default) or `observe`.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Most rows one INSERT / UPDATE / DELETE / MERGE may touch (cascades
    /// and triggers included); over it the statement is rolled back. As
    /// written: left out (`None`), a number, or `"off"`. What is in force
    /// is [`Target::effective_row_limit`].
    #[serde(default)]
    pub row_limit: Option<RowLimit>,
    /// `strict`, `queued` or `off`; left out: strict in production, queued
    /// elsewhere (see [`Target::audit_mode`]).
    #[serde(default)]
    pub audit: Option<crate::AuditMode>,
    /// `closed` (default) or `open`.
    #[serde(default)]
    pub audit_failure: crate::AuditFailure,
    /// Access profiles: the upstream role a session logs in as, by who it
    /// is. The first profile that matches the identity is used; none: the
    /// target's own `user`.
    #[serde(default, rename = "profile")]
    pub profiles: Vec<AccessProfile>,
}

/// Whether an identity (its kind, subject and groups) is one of those an
/// entry names by any of `kinds`, `groups` or `subjects` (the matching
/// rule of access profiles and limits alike).
pub(crate) fn matches_identity(
    kinds: &[IdentityKind],
    groups: &[String],
    subjects: &[String],
    (kind, subject, of): (IdentityKind, &str, &[String]),
) -> bool {
    kinds.contains(&kind)
        || subjects.iter().any(|s| s == subject)
        || groups.iter().any(|g| of.contains(g))
}

/// One `[[target.profile]]`: an upstream role (with its own password) for
/// the identities it matches: any of `kinds`, any of `groups`, or any of
/// `subjects`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessProfile {
    /// Named in logs and audit records.
    pub name: String,
    /// The role sessions matching this profile log in as.
    pub user: String,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub kinds: Vec<IdentityKind>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub subjects: Vec<String>,
}

impl AccessProfile {
    /// Whether an identity of `kind`, `subject` and `groups` gets this
    /// profile.
    pub fn matches(&self, kind: IdentityKind, subject: &str, groups: &[String]) -> bool {
        matches_identity(
            &self.kinds,
            &self.groups,
            &self.subjects,
            (kind, subject, groups),
        )
    }

    /// Reads the profile's password, as [`Target::read_password`] does.
    pub fn read_password(
        &self,
        target: &str,
        base: Option<&Path>,
    ) -> Result<Option<String>, ConfigError> {
        read_secret(
            &format!("{target} (profile {})", self.name),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
            base,
        )
    }
}

fn default_pg_port() -> u16 {
    5432
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Target {
    /// The target named `"*"`: it serves every database name that no other
    /// target has, each as the upstream database of that name on its server,
    /// with its environment, policies and limits (like pgbouncer's `*`
    /// entry). Test suites and tools that create databases need it.
    pub fn is_wildcard(&self) -> bool {
        self.name == "*"
    }

    /// The target serving database `name` through this wildcard target.
    pub fn for_database(&self, name: &str) -> Target {
        Target {
            name: name.to_owned(),
            database: Some(name.to_owned()),
            ..self.clone()
        }
    }

    pub fn upstream_database(&self) -> &str {
        self.database.as_deref().unwrap_or(&self.name)
    }

    /// The row limit in force: `row_limit` when given (`"off"`: none), and
    /// when it is left out, [`crate::DEFAULT_PRODUCTION_ROW_LIMIT`] for a
    /// production target (see [`crate::is_production`]) and none for
    /// staging and development.
    pub fn effective_row_limit(&self) -> Option<u64> {
        RowLimit::effective(self.row_limit, &self.environment)
    }

    /// The audit mode in force: `audit` when given, otherwise strict in
    /// production and queued elsewhere.
    pub fn audit_mode(&self) -> crate::AuditMode {
        crate::AuditMode::effective(self.audit, &self.environment)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    #[default]
    Disable,
    Require,
    VerifyFull,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    #[default]
    Human,
    Agent,
    Service,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// SCRAM-SHA-256 verifier as printed by `portcullis passwd`:
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub scram: String,
    #[serde(default)]
    pub kind: IdentityKind,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Most concurrent sessions for this user; unlimited when absent.
    #[serde(default)]
    pub max_connections: Option<usize>,
}

/// Where a target's upstream password comes from, resolved at load.
impl Target {
    /// Reads the upstream password from the environment or the file. The
    /// error never contains the password.
    pub fn read_password(&self, base: Option<&Path>) -> Result<Option<String>, ConfigError> {
        read_secret(
            &self.name,
            self.password_env.as_deref(),
            self.password_file.as_deref(),
            base,
        )
    }
}

/// A password from an environment variable or a file (trailing newline
/// ignored); `owner` names it in errors, which never contain it.
fn read_secret(
    owner: &str,
    env: Option<&str>,
    file: Option<&Path>,
    base: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    if let Some(var) = env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| ConfigError::Secret {
                target: owner.to_owned(),
                what: format!("environment variable {var} is not set"),
            });
    }
    if let Some(file) = file {
        let path = match base {
            Some(b) if file.is_relative() => b.join(file),
            _ => file.to_path_buf(),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Secret {
            target: owner.to_owned(),
            what: format!("cannot read password file {}: {e}", path.display()),
        })?;
        return Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
    }
    Ok(None)
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: path.to_path_buf(),
            error: e.to_string(),
        })?;
        let mut config = Config::parse(&text, Some(path))?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates configuration text. `origin` is used in errors
    /// and to resolve relative paths. Files named by `[masking] include`
    /// are read, validated and merged into `masking.columns`.
    pub fn parse(text: &str, origin: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::syntax(origin, text, e))?;
        config.source = origin.map(Path::to_path_buf);
        crate::validate::validate(&config)?;
        let included = crate::include::read(&config)?;
        crate::validate::included(&config, &included)?;
        for file in included {
            config.masking.columns.extend(file.columns);
        }
        Ok(config)
    }

    /// The folder relative paths resolve against.
    pub fn base_dir(&self) -> Option<&Path> {
        self.source.as_deref().and_then(Path::parent)
    }

    /// Resolves a path from the file against its folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.base_dir() {
            Some(b) if path.is_relative() => b.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The target serving database `name`: the one of that name, or the
    /// `"*"` target's for that database.
    pub fn target(&self, name: &str) -> Option<std::borrow::Cow<'_, Target>> {
        use std::borrow::Cow;
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| t.name == name && !t.is_wildcard())
        {
            return Some(Cow::Borrowed(t));
        }
        self.targets
            .iter()
            .find(|t| t.is_wildcard())
            .map(|w| Cow::Owned(w.for_database(name)))
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}
