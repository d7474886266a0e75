//! The crate's errors. None of them carries record content: a message may
//! end up in a log line or in front of a client, and records hold
//! identities and statement shapes.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The writer's queue is full: the store is behind. Fail closed.
    #[error("audit queue is full")]
    QueueFull,
    /// The writer has stopped, or its last commit failed and it is retrying.
    #[error("audit store is unavailable")]
    StoreDown,
    /// A durable submit was not committed in time. The record may still be
    /// committed later; the caller must treat the statement as unrecorded.
    #[error("audit record not committed within {0:?}")]
    Timeout(Duration),
    /// The oldest queued record has waited longer than the configured
    /// bound: the writer is behind. Fail closed.
    #[error("audit writer is behind: the oldest queued record waited {0:?}")]
    Behind(Duration),
    #[error("invalid {field}: {why}")]
    InvalidField {
        field: &'static str,
        why: &'static str,
    },
    #[error("record cannot be encoded canonically: {0}")]
    Canonical(#[from] crate::canonical::CanonicalError),
    #[error("audit store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The shared PostgreSQL store, with the causes the client keeps
    /// apart (the server's message, the TLS verdict). PostgreSQL's messages
    /// name roles and databases, never passwords.
    #[error("audit store (PostgreSQL): {}", with_causes(.0))]
    Postgres(#[from] postgres::Error),
    /// A store named in a way this build cannot open.
    #[error("audit store: {0}")]
    InvalidStore(String),
    /// Another process writes this node's log in the shared store.
    #[error("the audit log of node {node:?} in the PostgreSQL store is being written by another Portcullis process; give each node its own [audit] node name")]
    WriterInUse { node: String },
    #[error("audit store {what}: {why}")]
    Corrupt { what: &'static str, why: String },
    /// Another writer holds the store.
    #[error("the audit store {0} is in use by another Portcullis process; give each its own [audit] path")]
    InUse(String),
    #[error("signing key: {0}")]
    Key(String),
    /// An evidence bundle that cannot be written or read.
    #[error("evidence bundle: {0}")]
    Bundle(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `e` and each of its sources, `: `-separated: the PostgreSQL client says
/// only "db error" or "error performing TLS handshake" on its own.
fn with_causes(e: &postgres::Error) -> String {
    let mut out = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}
