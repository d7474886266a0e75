//! PostgreSQL wire protocol (v3.0 and v3.2): framing, startup packets and the
//! few message bodies Portcullis needs to read or write.
//!
//! This crate does no I/O. The session engine feeds it bytes it has read and
//! asks what they are; messages it has no reason to touch are forwarded as the
//! original bytes. Fields are decoded only on demand.
//!
//! Protocol reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html>

pub mod bind_formats;
pub mod decode;
pub mod encode;
mod error;
pub mod framing;
pub mod fuzzing;
pub mod refusal;
pub mod sqlstate;
pub mod startup;
pub mod tags;

pub use error::WireError;
pub use framing::{Limits, Next, Splitter};
pub use refusal::Refusal;
pub use startup::{ProtocolVersion, Startup, StartupParams};
