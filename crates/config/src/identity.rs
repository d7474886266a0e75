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
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            store: PathBuf::from("portcullis-control.db"),
            api_keys: true,
            revocation_poll: Duration::from_secs(2),
        }
    }
}
