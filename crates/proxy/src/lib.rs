//! The Portcullis data path.
//!
//! A client connection goes listener ([`server`]) → handshake (TLS, startup,
//! client authentication: [`handshake`], [`auth`]) → upstream login
//! ([`upstream`]) → relay ([`session`]) until either side ends it. See
//! `docs/ARCHITECTURE.md` for the whole picture.

pub mod admin;
pub mod approval_desk;
pub mod approval_notify;
pub mod approvals_api;
pub mod audit;
pub mod auth;
pub mod cancel;
pub mod catalog;
pub mod context;
pub mod control_store;
pub mod dry_run;
pub mod handshake;
pub mod masking;
pub mod metrics;
pub mod oidc;
mod revocations;
pub mod row_budgets;
pub mod runtime;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;
pub mod upstream;
mod workers;
