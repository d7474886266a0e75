//! Portcullis' audit trail.
pub mod canonical;
pub mod chain;
pub mod checkpoint;
mod error;
mod hex;
pub mod params;
pub mod record;
pub mod verify;

pub use error::AuditError;
pub use record::Record;
