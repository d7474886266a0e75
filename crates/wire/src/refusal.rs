//! The one client-facing error: every ErrorResponse Portcullis makes is a
//! [`Refusal`] (server ErrorResponses are forwarded as the server's bytes
//! and never rebuilt).
//!
//! It lives here, in the wire crate, because this is the lowest crate both
//! `portcullis-guard` (which words statement refusals) and
//! `portcullis-proxy` (which words connection and protocol refusals) can
//! depend on: the wire crate depends on no other Portcullis crate, so the
//! guard gains one small, I/O-free dependency and no import circle, and the
//! ErrorResponse encoder can stay private to this crate, reachable only
//! through [`Refusal::encode`]. A crate of its own would have added a crate
//! and still needed this one's encoder.
//!
//! A refusal carries only text meant for the client: a SQLSTATE, a message
//! a person understands, and optionally a detail and a hint. Internal errors
//! carry their detail to the log; upstream addresses, credentials, policy
//! internals and statement text never go into a [`Refusal`]. Whatever else
//! the caller wants to record about it (the metrics kind, the deciding
//! policy) travels beside it, not in it.

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::encode;
use crate::sqlstate;
use crate::WireError;

/// How bad a refusal is: an ERROR fails the message and the session goes
/// on; a FATAL ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// A refusal as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub severity: Severity,
    /// Five-character SQLSTATE, one of [`sqlstate`].
    pub sqlstate: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Refusal {
    /// A refusal of one message; the session goes on.
    pub fn error(sqlstate: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            severity: Severity::Error,
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// A refusal that ends the connection.
    pub fn fatal(sqlstate: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            severity: Severity::Fatal,
            ..Refusal::error(sqlstate, message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// A malformed or oversized message from the client.
    pub fn protocol(err: &WireError) -> Self {
        Refusal::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("invalid message from client: {err}"),
        )
        .hint("The client sent bytes that are not valid PostgreSQL protocol; the connection is closed.")
    }

    /// Appends the ErrorResponse to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        encode::error_response(buf, self);
    }

    /// The ErrorResponse on its own.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(128);
        self.encode(&mut b);
        b.freeze()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.sqlstate, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_bytes() {
        let b = Refusal::error(sqlstate::INSUFFICIENT_PRIVILEGE, "no")
            .hint("h")
            .to_bytes();
        assert_eq!(&b[..], b"E\0\0\0\x21SERROR\0VERROR\0C42501\0Mno\0Hh\0\0");
    }

    #[test]
    fn fatal_with_detail_bytes() {
        let b = Refusal::fatal(sqlstate::CONNECTION_FAILURE, "m")
            .detail("d")
            .to_bytes();
        assert_eq!(&b[..], b"E\0\0\0\x20SFATAL\0VFATAL\0C08006\0Mm\0Dd\0\0");
    }
}
