//! The trail in other formats, for systems that do not read the chain.
//! An export is a copy for search and alerting, not evidence: it is not
//! chained or signed (an evidence bundle, [`crate::bundle`], is).

pub mod ocsf;
pub mod otlp;
pub mod webhook;
