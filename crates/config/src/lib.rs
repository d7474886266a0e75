//! Portcullis configuration: one TOML file, validated completely at load so a
//! running proxy never meets a half-valid setting.
//!
//! [`Config::load`] reads and validates a file; [`Config::parse`] does the same
//! for text. Errors name the file, the key and what is wrong with it.

mod approvals;
mod audit;
mod duration;
mod error;
mod identity;
mod include;
mod limits;
mod masking;
mod model;
mod row_limit;
mod validate;
mod verifier;

pub use approvals::{Approvals, ApproverGroup, DAY_NAMES};
pub use audit::{Audit, AuditFailure, AuditMode, ParamsMode, Synchronous};
pub use duration::Duration;
pub use error::ConfigError;
pub use identity::{
    secure_url, ClientCertificates, IdentityConfig, OidcIssuer, CERTIFICATE_NAMES, OIDC_ALGORITHMS,
};
pub use limits::{
    effective as effective_limits, EffectiveLimits, Limit, Returned, RowsChanged,
    DEFAULT_ROWS_CHANGED_WINDOW,
};
pub use masking::{ColumnRule, Inference, Masking};
pub use model::*;
pub use row_limit::{
    is_production, RowLimit, DEFAULT_PRODUCTION_ROW_LIMIT, NON_PRODUCTION_ENVIRONMENTS,
};
pub use verifier::{prepare_password, ScramVerifier, MIN_ITERATIONS, SALT_LEN};
