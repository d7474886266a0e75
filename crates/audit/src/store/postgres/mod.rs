//! The shared store: several Portcullis nodes write to one PostgreSQL
//! database (the control-plane database keys and approvals use), each
//! node its own chain, side by side.
//!
//! - **One log per node.** A node is named in its configuration (`[audit]
//!   node`); the first time a name writes, the store gives it a log with a
//!   random id (`logs` table) and every later start under that name
//!   continues that chain. The name is the only thing a node must keep: a
//!   container whose disk is thrown away still finds its chain.
//! - **One writer per log.** The writer holds a session-level advisory
//!   lock keyed by the log's number for as long as its connection lives; a
//!   second process configured with the same name is refused
//!   ([`AuditError::WriterInUse`]). After a lost connection the writer
//!   takes the lock again and checks that the log's head is still the one
//!   it last committed before it writes on.
//! - **One transaction per batch**: the records (one multi-row insert),
//!   the checkpoint when one is due, and the new head, which is updated
//!   only from the head this writer last committed, so no two writers can
//!   both extend a log even if the lock were lost unseen.
//!
//! The schema (`portcullis_audit`, see [`schema`]) is created when missing.
//! Search reads every log at once ([`crate::search`]); verification reads
//! one log at a time through [`PgLog`].
//!
//! TLS: the URL says `sslmode=require` (TLS, the server's certificate
//! verified against `[audit] postgres_ca_file` or the system's roots, and
//! its name checked: stricter than libpq's `require`, see [`tls`]) or
//! `sslmode=disable` (a trusted network). libpq's default, `prefer`, would
//! fall back to plaintext when the server declines: it is refused, and so
//! is a URL that says nothing.

mod read;
mod schema;
mod tls;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::{Client, NoTls};

pub use read::{LogInfo, PgLog};

use crate::chain::LogId;
use crate::checkpoint::PublicKey;
use crate::log::{AuditConfig, AuditLog};
use crate::AuditError;

/// The advisory lock class of audit writers (`PCLA`), paired with a log's
/// number: the two-key form keeps clear of other users of single-key
/// locks in a shared database.
const LOCK_CLASS: i32 = 0x5043_4C41;

/// How long connecting to the store may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the store is: a parsed `postgres://` URL and its password.
///
/// Never printed whole: [`PgTarget::shown`] names user, host, port and
/// database only.
#[derive(Clone)]
pub struct PgTarget {
    config: postgres::Config,
    /// With `sslmode=require`: the CA the server's certificate must chain
    /// to (`None`: the system's roots).
    ca_file: Option<PathBuf>,
    shown: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgTarget {
    /// Parses `postgres://user@host:port/database?sslmode=disable`; the
    /// password, when one is needed, is given apart (from an environment
    /// variable or a file) and overrides one in the URL.
    pub fn parse(url: &str, password: Option<&str>) -> Result<PgTarget, AuditError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(AuditError::InvalidStore(
                "the PostgreSQL store is given as a URL: postgres://user@host:port/database?sslmode=disable".into(),
            ));
        }
        // The parser's message could quote part of the URL, password
        // included: say what is expected instead.
        let mut config: postgres::Config = url.parse().map_err(|_| {
            AuditError::InvalidStore(
                "not a valid PostgreSQL URL (postgres://user@host:port/database?sslmode=disable)"
                    .into(),
            )
        })?;
        match config.get_ssl_mode() {
            postgres::config::SslMode::Require => {}
            postgres::config::SslMode::Disable if url.contains("sslmode=disable") => {}
            _ => {
                return Err(AuditError::InvalidStore(
                    "say how to reach the PostgreSQL audit store: sslmode=require (TLS, the server's \
                     certificate checked against [audit] postgres_ca_file or the system's roots) or \
                     sslmode=disable (a trusted network); sslmode=prefer could fall back to plaintext"
                        .into(),
                ));
            }
        }
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("portcullis-audit");
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let shown = format!(
            "postgres://{}@{}:{}/{}",
            config.get_user().unwrap_or(""),
            host,
            config.get_ports().first().copied().unwrap_or(5432),
            config.get_dbname().unwrap_or("")
        );
        Ok(PgTarget {
            config,
            ca_file: None,
            shown,
        })
    }

    /// With `sslmode=require`: trust only the CA in `path` (PEM) for the
    /// server's certificate, instead of the system's roots. Refused on a
    /// URL without TLS, where it would protect nothing.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Result<Self, AuditError> {
        if !self.uses_tls() {
            return Err(AuditError::InvalidStore(
                "a CA file for the PostgreSQL audit store needs sslmode=require in its URL".into(),
            ));
        }
        self.ca_file = Some(path.into());
        Ok(self)
    }

    /// Gives up on a peer that stops answering mid-query after `timeout`
    /// (TCP user timeout and keepalives), instead of the system's two
    /// hours: for stores on the login path.
    pub fn with_network_timeout(mut self, timeout: Duration) -> Self {
        self.config.tcp_user_timeout(timeout);
        self.config.keepalives_idle(timeout);
        self.config.keepalives_interval(Duration::from_secs(1));
        self
    }

    /// Names the connections in `pg_stat_activity` (default
    /// `portcullis-audit`).
    pub fn with_application_name(mut self, name: &str) -> Self {
        self.config.application_name(name);
        self
    }

    /// Whether connections use TLS.
    pub fn uses_tls(&self) -> bool {
        self.config.get_ssl_mode() == postgres::config::SslMode::Require
    }

    /// The store as it may be printed: no password, no options.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A new connection to the store (TLS and its certificate check as
    /// the URL and CA file say). Also how the control-plane store of API
    /// keys reaches a shared database.
    pub fn connect(&self) -> Result<Client, AuditError> {
        if !self.uses_tls() {
            return Ok(self.config.connect(NoTls)?);
        }
        // Read at every connect, so a rotated CA file is picked up on the
        // next reconnect.
        let config = crate::tls::client_config(self.ca_file.as_deref()).map_err(|e| {
            AuditError::InvalidStore(format!("TLS to the PostgreSQL audit store: {e}"))
        })?;
        Ok(self.config.connect(tls::Rustls(config))?)
    }

    /// The CA file given, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }
}

/// A connection to the shared store: a node's writer (with
/// [`PostgresStore::open_writer`]) or a reader of every log
/// ([`PostgresStore::open_reader`]).
///
/// The blocking client runs a small runtime of its own, so it must not be
/// used from inside an async task: the proxy opens its writer through
/// [`open_log`], which does everything on threads of its own.
pub struct PostgresStore {
    target: PgTarget,
    /// Shared by reads through `&self` (search, verification).
    client: Mutex<Client>,
    /// The node's log, when this store writes.
    writer: Option<write::WriterState>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("store", &self.target.shown)
            .field("log", &self.writer.as_ref().map(|w| &w.head.log))
            .finish()
    }
}

impl PostgresStore {
    /// Opens the store for searching and verifying: the schema must exist.
    pub fn open_reader(target: &PgTarget) -> Result<PostgresStore, AuditError> {
        let mut client = target.connect()?;
        schema::check(&mut client)?;
        Ok(PostgresStore {
            target: target.clone(),
            client: Mutex::new(client),
            writer: None,
        })
    }

    /// Opens node `node`'s log for writing (creating the schema and the
    /// log when missing) and takes its writer lock. `public_key`, the
    /// checkpoint key's public half, is kept beside the log for
    /// convenience (an auditor uses a copy obtained elsewhere).
    pub fn open_writer(
        target: &PgTarget,
        node: &str,
        public_key: Option<&PublicKey>,
    ) -> Result<PostgresStore, AuditError> {
        if node.is_empty() || node.len() > 200 || node.chars().any(char::is_control) {
            return Err(AuditError::InvalidField {
                field: "node",
                why: "must be 1 to 200 printable characters",
            });
        }
        let mut client = target.connect()?;
        schema::ensure(&mut client)?;
        let (log, number) = read::log_of_node(&mut client, node)?;
        write::lock(&mut client, number, node)?;
        if let Some(k) = public_key {
            client.execute(
                "UPDATE portcullis_audit.logs SET public_key = $2 WHERE log_id = $1",
                &[&log.as_str(), &k.to_base64()],
            )?;
        }
        let head = write::start_head(&mut client, &log)?;
        Ok(PostgresStore {
            target: target.clone(),
            client: Mutex::new(client),
            writer: Some(write::WriterState::new(node, number, head)),
        })
    }

    /// The store as it may be printed.
    pub fn shown(&self) -> &str {
        self.target.shown()
    }

    /// The log this store writes, if it is a writer.
    pub fn writer_log(&self) -> Option<&LogId> {
        self.writer.as_ref().map(|w| &w.head.log)
    }

    pub(crate) fn client(&self) -> MutexGuard<'_, Client> {
        // A panic while holding the client leaves nothing half-done that
        // a later query could see: every write is one transaction.
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in one read-only snapshot of the whole store, so that
    /// records, checkpoints and heads read by several queries agree while
    /// nodes go on writing.
    pub fn in_snapshot<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        self.client()
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        let out = f(self);
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.client().batch_execute(end)?;
        out
    }
}

/// Opens node `node`'s log in the shared store and starts its writer
/// (see [`AuditLog::start`]), on threads of its own: callable from inside
/// an async runtime, which the blocking client refuses.
pub fn open_log(
    target: &PgTarget,
    node: &str,
    config: AuditConfig,
) -> Result<AuditLog, AuditError> {
    let public_key = config.signing_key.as_ref().map(|k| k.public_key());
    std::thread::scope(|s| {
        s.spawn(|| {
            let store = PostgresStore::open_writer(target, node, public_key.as_ref())?;
            AuditLog::start(store, config)
        })
        .join()
        .unwrap_or(Err(AuditError::StoreDown))
    })
}

/// A head whose size fits PostgreSQL's bigint.
fn size_i64(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}
