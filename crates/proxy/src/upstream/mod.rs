//! Logging in to an upstream server on behalf of a client, and delivering
//! cancel requests to it.
//!
//! Portcullis holds the upstream credentials; the client never sees them, nor
//! the server's real cancel key.

mod login;
mod query;

pub use login::{connect, send_cancel, Upstream, UpstreamAddr, UpstreamError};
pub use query::{exchange, simple_query, Exchanged, Row};
