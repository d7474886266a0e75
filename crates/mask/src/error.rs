//! What can go wrong when masking, split by who must act on it.

use thiserror::Error;

/// A column (or value) the masker cannot rewrite into a valid value of its
/// type. The proxy refuses the statement rather than let the value through.
/// The reason names types and settings only, never data, so it may be shown
/// to the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot mask this result: {reason}")]
pub struct Unmaskable {
    pub reason: &'static str,
}

/// A row the plan cannot read. The server sent something that does not
/// match the description the plan was made for; the proxy ends the session
/// (fail closed) because it can no longer tell which bytes are which value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MaskError {
    #[error("row has {got} columns, its description announced {expected}")]
    ColumnCount { expected: usize, got: usize },
    #[error("row is truncated or has trailing bytes")]
    Malformed,
    #[error("COPY data is malformed: {0}")]
    Copy(&'static str),
}
