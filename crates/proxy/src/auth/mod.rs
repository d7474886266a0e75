//! Proving who a client is. Pure state machines: no I/O here.

pub mod channel_binding;
pub mod identity;
pub mod scram;
