//! Approvals of held statements.
//!
//! A statement a policy holds for approval becomes a [`Request`]: who asked
//! (and the human behind an agent), where, the statement and its masked
//! parameters, why it is held, and a [`Digest`] that binds any approval to
//! exactly those bytes for that identity on that target. [`rules`] decide
//! who may approve or deny it (the policy's group, never the requester,
//! N of M, an optional time window, a reason for every denial); the
//! [`store`] keeps requests where every proxy sharing the control plane
//! sees them, and the [`hub`] wakes the session waiting for a decision.
//!
//! This crate runs no statements and knows no sockets: the proxy holds the
//! message, asks here, and releases or refuses on the answer.

pub mod digest;
pub mod hub;
pub mod request;
pub mod rules;
pub mod slack;
pub mod store;

pub use digest::Digest;
pub use hub::{Hub, Watch};
pub use request::{
    Decided, DryRun, DryRunMethod, NewRequest, Person, Request, RequestId, State, Verdict,
};
pub use rules::{Rule, RuleError, Window};
pub use store::{DecideError, Store, StoreError};

/// The time as approvals record it: milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
