//! Portcullis guardrails: the statement analysis and the policy engine
//! joined for one session.
//!
//! The proxy keeps one [`Guard`] per target and one [`SessionState`] per
//! session, and asks the guard for a [`Judgement`] on every Query, Parse and
//! Bind before it reaches the server:
//!
//! - `describe`: analysis facts → the policy's operations and resources
//!   (names resolved through the session's search_path and the catalog);
//! - `session`: what a session set up that later statements depend on
//!   (search_path, prepared statements);
//! - `catalog`: a snapshot of the target's catalog and the queries that
//!   load it;
//! - `opaque_scan`: dangerous capabilities inside DO blocks and function
//!   bodies, which the analysis reports as opaque code;
//! - `guard`: the verdict, and what the client is told.
//!
//! Nothing here does I/O: the proxy loads catalogs and talks to clients.

pub mod catalog;
pub mod describe;
mod guard;
pub mod opaque_scan;
pub mod session;

pub use catalog::{CatalogError, CatalogSnapshot, CATALOG_QUERIES, CATALOG_RESULT_SETS};
pub use describe::{describe, describe_into, Scope};
pub use guard::{
    shared_analysis_cache, sqlstate, Guard, GuardSettings, Judgement, Refusal, StatementVerdict,
    Who,
};
pub use session::{Prepared, PreparedText, SessionState};
