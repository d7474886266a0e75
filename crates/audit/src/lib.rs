//! Portcullis' audit trail: who connected, what they ran, what data they
//! touched and what was decided, in a tamper-evident log an auditor can
//! verify and search.
//!
//! The crate knows nothing of the proxy. Its door:
//!
//! - [`AuditLog::open`] a store, then [`AuditLog::submit`] records (never
//!   blocks; `QueueFull`/`StoreDown` tell the caller to fail closed) or
//!   [`AuditLog::submit_durable`] / [`AuditLog::submit_with_receipt`] to
//!   wait, with a timeout, until the record is committed (`strict` mode);
//! - [`verify::verify`] a store (or any [`verify::LogSource`]) and read the
//!   [`verify::Report`];
//! - [`search::search`] a store with a [`search::Filter`];
//! - or keep the trail in PostgreSQL, shared by several nodes, one chain
//!   each ([`store::postgres`]: [`store::postgres::open_log`] for a node's
//!   writer, [`PostgresStore`] to read every log);
//! - [`bundle::export`] a time range as an evidence bundle that
//!   [`bundle::read`] and [`bundle::verify`] check offline, or
//!   [`export::ocsf`] it as OCSF events for a SIEM, or forward it to a
//!   collector over HTTP ([`export::webhook`]);
//! - [`retention::rotate`] the oldest records out into an archived,
//!   verified bundle, leaving the store anchored at a signed checkpoint.
//!
//! Inside, by concern: [`record`] (what a record can say), [`params`]
//! (what may stand for a bind value), [`canonical`] (the exact bytes that
//! are hashed), [`chain`] (seq, prev hash, genesis), [`checkpoint`]
//! (Ed25519-signed heads), [`verify`], [`store`] (SQLite, PostgreSQL),
//! [`search`], [`template`] (records encoded ahead of the queue) and
//! [`log`] (the queue and the writer thread). `docs/AUDIT.md` describes the
//! format for users and auditors.

pub mod bundle;
pub mod canonical;
pub mod chain;
pub mod checkpoint;
mod error;
pub mod export;
mod hex;
pub mod journal;
pub mod log;
pub mod params;
pub mod record;
pub mod retention;
pub mod search;
pub mod store;
pub mod template;
pub mod tls;
pub mod verify;

pub use chain::{Hash, Head, LogId};
pub use checkpoint::{Checkpoint, CheckpointPolicy, PublicKey, SigningKey};
pub use error::AuditError;
pub use log::{Accepted, AuditConfig, AuditLog, Committed, Completed, Receipt};
pub use record::Record;
pub use search::{search, Filter, Found, SearchSource};
pub use store::postgres::{PgTarget, PostgresStore};
pub use store::sqlite::{SqliteStore, Synchronous};
pub use store::Store;
pub use template::{Encoded, StatementTemplate};
pub use verify::{verify, Finding, Report};
