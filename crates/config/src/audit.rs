//! The `[audit]` table and each target's audit mode.
//!
//! The audit trail is on with no configuration: a SQLite file beside the
//! configuration file, `strict` on production targets and `queued`
//! elsewhere, failing closed everywhere. This table only adjusts that.

use std::path::PathBuf;

use serde::Deserialize;

use crate::duration::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// Keep an audit trail (default true).
    pub enabled: bool,
    /// The SQLite store, relative to the configuration file's folder.
    pub path: PathBuf,
    /// The Ed25519 key that signs checkpoints: a PKCS#8 file (PEM or DER)
    /// or a file of 32 raw bytes. Left out, Portcullis creates one beside
    /// the store on first start (`<path>.key`, readable by its owner only)
    /// and says so in its log: keep a copy of its public key elsewhere.
    pub signing_key_file: Option<PathBuf>,
    /// A signed checkpoint after this many records, or `checkpoint_interval`,
    /// whichever comes first.
    pub checkpoint_records: u64,
    pub checkpoint_interval: Duration,
    /// `normal` (a committed batch survives Portcullis being killed) or
    /// `full` (every commit is fsynced: survives power loss, slower).
    pub synchronous: Synchronous,
    /// Records waiting to be written before new statements are refused.
    pub queue_capacity: usize,
    /// How long a statement on a `strict` target waits for its record to
    /// be committed before it is refused.
    pub commit_timeout: Duration,
    /// On `queued` targets, while the oldest record not yet written has
    /// waited longer than this, new statements wait for their own record
    /// (as on `strict` targets): what a crash can lose is at most this old
    /// (plus the write under way).
    pub max_queued_age: Duration,
    /// What statement records keep of bind parameter values: `off`
    /// (nothing, the default) or `keyed_hash` (an HMAC-SHA256 per value
    /// under `params_key_env`/`params_key_file`, at least 16 bytes, so that
    /// whoever holds the key can test whether a value was used).
    pub params: ParamsMode,
    pub params_key_env: Option<String>,
    pub params_key_file: Option<PathBuf>,
    /// Keep this long in the store (`90d`); older records are rotated out
    /// every hour into verified bundles under `archive_dir` (see `portcullis
    /// audit rotate`). Left out, the store keeps everything.
    pub retain: Option<Duration>,
    /// Where rotated segments go, relative to the configuration file's
    /// folder.
    pub archive_dir: PathBuf,
    /// The shared PostgreSQL store instead of the SQLite file at `path`:
    /// `postgres://user@host:port/database?sslmode=require` (TLS, the
    /// server's certificate checked against `postgres_ca_file` or the
    /// system's roots, and its name) or `sslmode=disable` (a trusted
    /// network). Several proxies write one store, each its own chain,
    /// named by `node`. No password in the URL: give it with
    /// `postgres_password_env` or `postgres_password_file`.
    pub postgres: Option<String>,
    pub postgres_password_env: Option<String>,
    pub postgres_password_file: Option<PathBuf>,
    /// The CA (PEM) the store's certificate must chain to, relative to the
    /// configuration file's folder; left out, the system's roots.
    pub postgres_ca_file: Option<PathBuf>,
    /// This proxy's name in the shared store: its chain is kept under it
    /// across restarts. Required with `postgres`, unique per proxy.
    pub node: Option<String>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            enabled: true,
            path: PathBuf::from("portcullis-audit.db"),
            signing_key_file: None,
            checkpoint_records: 10_000,
            checkpoint_interval: Duration::from_secs(30),
            synchronous: Synchronous::Normal,
            queue_capacity: 65_536,
            commit_timeout: Duration::from_secs(2),
            max_queued_age: Duration(std::time::Duration::from_millis(250)),
            params: ParamsMode::Off,
            params_key_env: None,
            params_key_file: None,
            retain: None,
            archive_dir: PathBuf::from("portcullis-audit-archive"),
            postgres: None,
            postgres_password_env: None,
            postgres_password_file: None,
            postgres_ca_file: None,
            node: None,
        }
    }
}

impl crate::Config {
    /// The audit store's path, resolved against the configuration's folder.
    pub fn audit_store_path(&self) -> PathBuf {
        self.resolve(&self.audit.path)
    }

    /// The PostgreSQL store's password, from the environment or a file
    /// (trailing newline dropped); `None` when neither is configured. The
    /// error never holds the password.
    pub fn audit_store_password(&self) -> Result<Option<String>, crate::ConfigError> {
        self.store_password(
            "[audit] postgres",
            self.audit.postgres_password_env.as_deref(),
            self.audit.postgres_password_file.as_deref(),
        )
    }

    /// The password of the control-plane store's PostgreSQL database
    /// (`[identity] postgres`), as [`Self::audit_store_password`].
    pub fn identity_store_password(&self) -> Result<Option<String>, crate::ConfigError> {
        self.store_password(
            "[identity] postgres",
            self.identity.postgres_password_env.as_deref(),
            self.identity.postgres_password_file.as_deref(),
        )
    }

    /// The Slack incoming-webhook URL of `[approvals.notify]`, if set.
    pub fn approvals_slack_webhook(&self) -> Result<Option<String>, crate::ConfigError> {
        let n = &self.approvals.notify;
        self.store_password(
            "[approvals.notify] slack_webhook",
            n.slack_webhook_env.as_deref(),
            n.slack_webhook_file.as_deref(),
        )
    }

    /// The JSON webhook's signing key, if set.
    pub fn approvals_webhook_secret(&self) -> Result<Option<String>, crate::ConfigError> {
        let n = &self.approvals.notify;
        self.store_password(
            "[approvals.notify] webhook_secret",
            n.webhook_secret_env.as_deref(),
            n.webhook_secret_file.as_deref(),
        )
    }

    /// The Slack app's signing secret, with `[approvals.slack]`.
    pub fn approvals_slack_secret(&self) -> Result<Option<String>, crate::ConfigError> {
        let Some(s) = &self.approvals.slack else {
            return Ok(None);
        };
        self.store_password(
            "[approvals.slack] signing_secret",
            s.signing_secret_env.as_deref(),
            s.signing_secret_file.as_deref(),
        )
    }

    pub(crate) fn store_password(
        &self,
        store: &str,
        env: Option<&str>,
        file: Option<&std::path::Path>,
    ) -> Result<Option<String>, crate::ConfigError> {
        let secret = |what: String| crate::ConfigError::Secret {
            target: store.into(),
            what,
        };
        if let Some(var) = env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| secret(format!("environment variable {var} is not set")));
        }
        if let Some(file) = file {
            let path = self.resolve(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                secret(format!("cannot read password file {}: {e}", path.display()))
            })?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
        }
        Ok(None)
    }

    /// The PostgreSQL store's CA file, resolved against the configuration's
    /// folder.
    pub fn audit_store_ca_file(&self) -> Option<PathBuf> {
        self.audit
            .postgres_ca_file
            .as_ref()
            .map(|p| self.resolve(p))
    }

    /// The control-plane store database's CA file, resolved.
    pub fn identity_store_ca_file(&self) -> Option<PathBuf> {
        self.identity
            .postgres_ca_file
            .as_ref()
            .map(|p| self.resolve(p))
    }

    /// Where rotated segments are written.
    pub fn audit_archive_dir(&self) -> PathBuf {
        self.resolve(&self.audit.archive_dir)
    }

    /// Where the checkpoint signing key is read from (or created).
    pub fn audit_signing_key_path(&self) -> PathBuf {
        match &self.audit.signing_key_file {
            Some(p) => self.resolve(p),
            None => {
                let mut p = self.audit_store_path().into_os_string();
                p.push(".key");
                PathBuf::from(p)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ParamsMode {
    #[default]
    Off,
    KeyedHash,
}

/// A target's `audit` key.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    /// A statement is forwarded only once its record is committed.
    Strict,
    /// Records are queued and the statement runs at once; a crash can
    /// lose the batch being written.
    Queued,
    /// No audit records for this target.
    Off,
}

impl AuditMode {
    /// The mode in force for a target in `environment` whose file says
    /// `written`: strict in production, queued elsewhere.
    pub fn effective(written: Option<AuditMode>, environment: &str) -> AuditMode {
        written.unwrap_or(if crate::is_production(environment) {
            AuditMode::Strict
        } else {
            AuditMode::Queued
        })
    }
}

/// A target's `audit_failure` key: what happens to a statement whose
/// record cannot be written (queue full, store down, commit too slow).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuditFailure {
    /// Refuse it (SQLSTATE 53000); the session stays usable.
    #[default]
    Closed,
    /// Let it run unrecorded, logging a warning: for development.
    Open,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn production_is_strict_unless_told() {
        assert_eq!(AuditMode::effective(None, "production"), AuditMode::Strict);
        assert_eq!(AuditMode::effective(None, "prod"), AuditMode::Strict);
        assert_eq!(AuditMode::effective(None, "staging"), AuditMode::Queued);
        assert_eq!(
            AuditMode::effective(Some(AuditMode::Queued), "production"),
            AuditMode::Queued
        );
    }

    #[test]
    fn paths_resolve_beside_the_configuration() {
        let mut c = crate::Config::parse(MINIMAL, None).unwrap();
        c.source = Some(PathBuf::from("/etc/portcullis/portcullis.toml"));
        assert_eq!(
            c.audit_store_path(),
            Path::new("/etc/portcullis/portcullis-audit.db")
        );
        assert_eq!(
            c.audit_signing_key_path(),
            Path::new("/etc/portcullis/portcullis-audit.db.key")
        );
    }

    const MINIMAL: &str = r#"
[[listener]]
name = "l"
listen = "127.0.0.1:6432"
allow_plaintext = true

[[target]]
name = "app"
environment = "production"
host = "127.0.0.1"
user = "app"
"#;
}
