//! The SQLSTATE codes Portcullis puts in the ErrorResponses it makes, named
//! as in PostgreSQL's `src/backend/utils/errcodes.txt`
//! (<https://www.postgresql.org/docs/current/errcodes-appendix.html>).
//! Clients and drivers branch on these codes, so each refusal uses the code
//! PostgreSQL itself would raise for the same situation.

/// Class 08: the connection to the database was lost or could not be made.
pub const CONNECTION_FAILURE: &str = "08006";
pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// A byte sequence invalid in the encoding, or a NUL byte in text.
pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
/// A character with no equivalent in the target encoding.
pub const UNTRANSLATABLE_CHARACTER: &str = "22P05";
/// `invalid_authorization_specification`.
pub const INVALID_AUTHORIZATION: &str = "28000";
pub const INVALID_PASSWORD: &str = "28P01";
/// A statement sent in a transaction that failed earlier.
pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// A policy or a guardrail denied the statement or the connection.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
pub const SYNTAX_ERROR: &str = "42601";
/// Class 53: a resource Portcullis needs (the audit trail) cannot take
/// the statement now.
pub const INSUFFICIENT_RESOURCES: &str = "53000";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
/// Nested beyond what the analysis follows.
pub const STATEMENT_TOO_COMPLEX: &str = "54001";
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
/// A statement cancelled (by the user, or a timeout).
pub const QUERY_CANCELED: &str = "57014";
pub const ADMIN_SHUTDOWN: &str = "57P01";
pub const CANNOT_CONNECT_NOW: &str = "57P03";
pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
pub const SYSTEM_ERROR: &str = "58000";
pub const INTERNAL_ERROR: &str = "XX000";
