//! The audit trail as the data path uses it.
//!
//! One [`AuditTrail`] serves the whole proxy. It lives in the server's
//! shared state, not in the runtime that a reload replaces, so a reload
//! never cuts the chain. Sessions hand it records and never wait on disk in
//! the judge: `submit` is a bounded `try_send`. On a `strict` target the
//! client pump then waits, asynchronously, for the commit of the batch
//! holding the record before it forwards the statement (group commit: many
//! sessions' records share one write). A record that cannot be queued or
//! committed refuses its statement, unless the target says
//! `audit_failure = "open"`.
//!
//! [`records`] builds the records from what the handshake, the guard and
//! the ledger know: pure functions that unit tests drive without sockets.

pub mod records;
mod retention;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portcullis_audit::params::ParamHasher;
use portcullis_audit::record::{BindParams, Record, StatementOutcome};
use portcullis_audit::store::postgres::{open_log, PgTarget};
use portcullis_audit::{
    AuditConfig, AuditError, AuditLog, CheckpointPolicy, Encoded, Receipt, SigningKey, Synchronous,
};
use portcullis_config::{AuditFailure, AuditMode, Config, ParamsMode};
use portcullis_wire::{sqlstate, Refusal};
use thiserror::Error;
use tracing::{info, warn};

#[derive(Debug, Error)]
pub enum AuditSetupError {
    #[error("cannot open the audit store {path}: {error}")]
    Store { path: String, error: AuditError },
    #[error("cannot read or create the audit key {path}: {error}")]
    Key { path: String, error: String },
    #[error("cannot read the audit store's password: {0}")]
    Password(String),
}

/// The proxy's audit trail.
pub struct AuditTrail {
    log: Arc<AuditLog>,
    /// Rotates old records out hourly (`[audit] retain`).
    retention: Option<retention::Retention>,
    /// Keyed hashes of bind parameter values (`params = "keyed_hash"`).
    params: Option<ParamHasher>,
    commit_timeout: Duration,
    /// Records refused (queue full, store down), for the log's rate limit.
    refused: AtomicU64,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTrail").finish_non_exhaustive()
    }
}

/// How a target's sessions submit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetAudit {
    pub strict: bool,
    pub fail_open: bool,
}

impl TargetAudit {
    /// The target's setting; `None` when its records are off.
    pub fn of(target: &portcullis_config::Target) -> Option<TargetAudit> {
        let strict = match target.audit_mode() {
            AuditMode::Off => return None,
            AuditMode::Strict => true,
            AuditMode::Queued => false,
        };
        Some(TargetAudit {
            strict,
            fail_open: target.audit_failure == AuditFailure::Open,
        })
    }
}

/// A record handed to the trail.
pub enum Submitted {
    /// Queued; `seq` is its place in the chain.
    Queued(u64),
    /// Queued; the statement may be forwarded once the receipt resolves.
    Waiting(u64, Receipt),
}

impl Submitted {
    pub fn seq(&self) -> u64 {
        match self {
            Submitted::Queued(s) | Submitted::Waiting(s, _) => *s,
        }
    }
}

impl AuditTrail {
    /// Opens the store the configuration names (creating it, and the
    /// signing key if none is configured). `None` when auditing is off.
    pub fn open(config: &Config) -> Result<Option<Arc<AuditTrail>>, AuditSetupError> {
        let a = &config.audit;
        if !a.enabled {
            info!("audit trail off ([audit] enabled = false)");
            return Ok(None);
        }
        let path = config.audit_store_path();
        let key_path = config.audit_signing_key_path();
        let key = signing_key(&key_path, a.signing_key_file.is_none())?;
        let mut c = AuditConfig::new(&path);
        c.synchronous = match a.synchronous {
            portcullis_config::Synchronous::Normal => Synchronous::Normal,
            portcullis_config::Synchronous::Full => Synchronous::Full,
        };
        c.queue_capacity = a.queue_capacity;
        c.checkpoints = CheckpointPolicy {
            every_records: a.checkpoint_records,
            every: a.checkpoint_interval.into(),
        };
        c.signing_key = Some(key);
        c.max_queued_age = Some(a.max_queued_age.into());
        let params = match a.params {
            ParamsMode::Off => None,
            ParamsMode::KeyedHash => Some(params_hasher(config)?),
        };
        let (log, shown) = match &a.postgres {
            Some(url) => open_shared(config, url, c)?,
            None => {
                let log = AuditLog::open(c).map_err(|error| AuditSetupError::Store {
                    path: path.display().to_string(),
                    error,
                })?;
                (log, path.display().to_string())
            }
        };
        let log = Arc::new(log);
        info!(
            store = %shown,
            log = %log.log_id(),
            key_id = %log.public_key().map(|k| k.key_id()).unwrap_or_default(),
            "audit trail open"
        );
        let retention = a.retain.map(|retain| {
            retention::Retention::start(
                log.clone(),
                path.clone(),
                config.audit_archive_dir(),
                retain.into(),
            )
        });
        Ok(Some(Arc::new(AuditTrail {
            log,
            retention,
            params,
            commit_timeout: a.commit_timeout.into(),
            refused: AtomicU64::new(0),
        })))
    }

    /// The record form of a Bind's parameter values.
    pub fn params(&self, values: Option<&[Option<&[u8]>]>) -> BindParams {
        match (&self.params, values) {
            (Some(h), Some(v)) => h.hash_all(v.iter().copied()),
            _ => BindParams::Off,
        }
    }

    /// How long a strict statement waits for its record's commit.
    pub fn commit_timeout(&self) -> Duration {
        self.commit_timeout
    }

    /// Hands `record` to the writer without waiting; with `strict`, also
    /// returns the receipt to await before the statement is forwarded.
    /// On a queued target a receipt comes back too when the writer is
    /// further behind than a queued record may be: the statement then
    /// waits for its record, as on a strict target, rather than be refused
    /// or widen what a crash could lose.
    pub fn submit(&self, record: Encoded, strict: bool) -> Result<Submitted, AuditError> {
        let r = self.log.submit_encoded(record, strict).map(|r| match r {
            (a, Some(receipt)) => Submitted::Waiting(a.seq, receipt),
            (a, None) => Submitted::Queued(a.seq),
        });
        if let Err(e) = &r {
            self.log_refusal(e);
        }
        r
    }

    /// Hands over a record whose loss refuses nothing (an outcome, a
    /// session's end, a refused connection): a failure is logged, not
    /// returned.
    pub fn submit_quietly(&self, record: &Record) {
        if let Err(e) = self.log.submit_follow_up(record) {
            self.log_refusal(&e);
        }
    }

    /// Hands over a statement's outcome (see [`AuditLog::complete`]);
    /// like [`submit_quietly`](Self::submit_quietly), a failure is logged.
    pub fn complete(
        &self,
        statement_seq: u64,
        session_id: &str,
        statement_id: u64,
        outcome: &StatementOutcome,
    ) {
        if let Err(e) = self
            .log
            .complete(statement_seq, session_id, statement_id, outcome)
        {
            self.log_refusal(&e);
        }
    }

    /// One line per thousand refusals: a full queue refuses many records
    /// at once.
    fn log_refusal(&self, e: &AuditError) {
        if self
            .refused
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1000)
        {
            warn!(error = %e, "audit record not accepted");
        }
    }

    /// Writes what is queued and a final checkpoint (at shutdown).
    pub fn close(&self) {
        if let Some(r) = &self.retention {
            r.stop();
        }
        self.log.close();
    }
}

/// Opens this node's log in the shared PostgreSQL store (`[audit]
/// postgres`); the returned text names the store without its password.
fn open_shared(
    config: &Config,
    url: &str,
    c: AuditConfig,
) -> Result<(AuditLog, String), AuditSetupError> {
    let password = config
        .audit_store_password()
        .map_err(|e| AuditSetupError::Password(e.to_string()))?;
    let store_err = |shown: String| move |error| AuditSetupError::Store { path: shown, error };
    let mut target =
        PgTarget::parse(url, password.as_deref()).map_err(store_err("[audit] postgres".into()))?;
    if let Some(ca) = config.audit_store_ca_file() {
        target = target
            .with_ca_file(ca)
            .map_err(store_err("[audit] postgres_ca_file".into()))?;
    }
    let shown = target.shown().to_owned();
    // Validation requires a node name with a PostgreSQL store.
    let node = config.audit.node.as_deref().unwrap_or_default();
    let log = open_log(&target, node, c).map_err(store_err(shown.clone()))?;
    Ok((log, format!("{shown} (node {node})")))
}

/// The refusal for a statement whose record could not be written.
pub fn unavailable(error: &AuditError) -> Refusal {
    let message = match error {
        AuditError::QueueFull => "the audit trail is saturated: statement not run",
        AuditError::Timeout(_) => {
            "the audit trail did not confirm the record in time: statement not run"
        }
        _ => "the audit trail is unavailable: statement not run",
    };
    Refusal::error(sqlstate::INSUFFICIENT_RESOURCES, message).hint(
        "Every statement on this target is recorded before it runs. Retry shortly; if it persists, tell the Portcullis administrator.",
    )
}

/// The refusal for a connection whose record could not be written.
pub fn unavailable_at_login() -> Refusal {
    Refusal::fatal(
        sqlstate::INSUFFICIENT_RESOURCES,
        "the audit trail is unavailable: connection not accepted",
    )
    .hint("Every connection to this target is recorded. Retry shortly; if it persists, tell the Portcullis administrator.")
}

/// The bind parameter hashing key, from the environment or a file.
fn params_hasher(config: &Config) -> Result<ParamHasher, AuditSetupError> {
    let a = &config.audit;
    let (what, key) = match (&a.params_key_env, &a.params_key_file) {
        (Some(var), _) => (
            format!("environment variable {var}"),
            std::env::var(var)
                .map(String::into_bytes)
                .map_err(|e| e.to_string()),
        ),
        (None, Some(file)) => {
            let path = config.resolve(file);
            (
                path.display().to_string(),
                fs::read(&path).map_err(|e| e.to_string()),
            )
        }
        (None, None) => ("(none)".into(), Err("no key configured".into())),
    };
    let err = |error: String| AuditSetupError::Key {
        path: what.clone(),
        error,
    };
    let mut key = key.map_err(err)?;
    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        key.pop();
    }
    ParamHasher::new(&key).map_err(|e| err(e.to_string()))
}

/// Reads the signing key, or creates one (readable by its owner only)
/// when `create` and the file does not exist.
fn signing_key(path: &Path, create: bool) -> Result<SigningKey, AuditSetupError> {
    let err = |error: String| AuditSetupError::Key {
        path: path.display().to_string(),
        error,
    };
    if create && !path.exists() {
        let der = SigningKey::generate_pkcs8().map_err(|e| err(e.to_string()))?;
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
        f.write_all(&der).map_err(|e| err(e.to_string()))?;
        f.sync_all().map_err(|e| err(e.to_string()))?;
        warn!(
            key = %path.display(),
            "created an audit signing key beside the store; keep a copy of its public key \
             (`portcullis audit verify` prints it) away from this machine"
        );
    }
    SigningKey::from_file(path).map_err(|e| err(e.to_string()))
}
