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
//!   (search_path, prepared statements and portals, as the server may hold
//!   them; changes count on the server's evidence);
//! - `encoding`: text and names exactly as the server reads them;
//! - `lexer`: settings that change how text is read, refused;
//! - `catalog`: a snapshot of the target's catalog and the queries that
//!   load it;
//! - `opaque_scan`: dangerous capabilities inside DO blocks and function
//!   bodies, which the analysis reports as opaque code;
//! - `guard`: the verdict, and what the client is told (a
//!   `portcullis_wire::Refusal`, the one client-facing error type).
//!
//! Nothing here does I/O: the proxy loads catalogs and talks to clients.

pub mod catalog;
pub mod copy_out;
pub mod describe;
pub mod encoding;
mod guard;
pub mod lexer;
pub mod limits;
pub mod masking;
mod memo;
pub mod opaque_scan;
pub mod session;

pub use catalog::{
    CatalogError, CatalogSnapshot, CatalogView, Classification, CATALOG_QUERIES,
    CATALOG_RESULT_SETS,
};
pub use copy_out::{copy_format, CopyColumn};
pub use describe::{describe, describe_into, Scope};
pub use encoding::{Encoding, EncodingError, Encodings, NameKey};
pub use guard::{
    encoding_refusal, reads_only, shared_analysis_cache, Guard, GuardSettings, Judgement,
    StatementVerdict, Who,
};
pub use limits::SessionLimits;
pub use masking::{Exposure, InferenceRule, Inferred, MaskingRules, OutputColumn};
pub use session::{Executing, Portal, PreparedText, SessionState, Source, Ticket};
