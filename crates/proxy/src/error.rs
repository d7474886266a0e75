//! Errors that end in front of a client.
//!
//! Every refusal Portcullis sends is a [`Refusal`]: a SQLSTATE, a message a
//! person understands and a hint, written here and nowhere else. Internal
//! errors carry their detail to the log; what reaches the client is only what
//! [`Refusal`] says, so upstream addresses, credentials, policy internals and
//! statement text never leak into an ErrorResponse.

use bytes::BytesMut;
use portcullis_wire::encode::{self, Report, Severity};

use crate::metrics::ErrorKind;

/// SQLSTATE codes Portcullis uses (PostgreSQL `errcodes.txt`).
pub mod sqlstate {
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
}

/// A refusal as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub fatal: bool,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub kind: ErrorKind,
}

impl Refusal {
    pub fn fatal(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            fatal: true,
            code,
            message: message.into(),
            detail: None,
            hint: None,
            kind,
        }
    }

    pub fn error(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            fatal: false,
            ..Refusal::fatal(kind, code, message)
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

    /// Appends the ErrorResponse to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        encode::error_response(
            buf,
            &Report {
                severity: if self.fatal {
                    Severity::Fatal
                } else {
                    Severity::Error
                },
                code: self.code,
                message: &self.message,
                detail: self.detail.as_deref(),
                hint: self.hint.as_deref(),
            },
        );
    }

    pub fn to_bytes(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(128);
        self.encode(&mut b);
        b
    }

    /// A malformed or oversized message from the client.
    pub fn protocol(err: &portcullis_wire::WireError) -> Self {
        Refusal::fatal(
            ErrorKind::ClientProtocol,
            sqlstate::PROTOCOL_VIOLATION,
            format!("invalid message from client: {err}"),
        )
        .hint("The client sent bytes that are not valid PostgreSQL protocol; the connection is closed.")
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}
