//! A target's row limit: what the file says, and what is in force.
//!
//! Production targets are limited unless the file says otherwise: a
//! forgotten key must not leave the one environment where an oversized
//! UPDATE hurts most without the guard. So `row_limit` has three states,
//! and only the explicit `"off"` turns the limit off.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The row limit a production target gets when its `row_limit` is left out.
/// Large enough for everyday batch corrections, small enough that a WHERE
/// clause that matches a whole table of any size is stopped.
pub const DEFAULT_PRODUCTION_ROW_LIMIT: u64 = 1000;

/// The environments that are not production. Every other label, including
/// `prod`, `live` or a typo, counts as production: the same rule as the
/// default policy bundle's, so the strict side wins when in doubt.
pub const NON_PRODUCTION_ENVIRONMENTS: [&str; 2] = ["staging", "development"];

/// Whether an environment label counts as production.
pub fn is_production(environment: &str) -> bool {
    !NON_PRODUCTION_ENVIRONMENTS.contains(&environment)
}

/// `row_limit` as written in a `[[target]]`: a number of rows, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLimit {
    /// At most this many rows per statement. Validation refuses 0.
    Rows(u64),
    /// No limit, said explicitly (`row_limit = "off"`).
    Off,
}

impl RowLimit {
    /// The limit in force for a target in `environment` whose file says
    /// `written` (`None`: the key is left out). `None` means no limit.
    pub fn effective(written: Option<RowLimit>, environment: &str) -> Option<u64> {
        match written {
            Some(RowLimit::Rows(n)) => Some(n),
            Some(RowLimit::Off) => None,
            None if is_production(environment) => Some(DEFAULT_PRODUCTION_ROW_LIMIT),
            None => None,
        }
    }
}

impl<'de> Deserialize<'de> for RowLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RowLimitVisitor)
    }
}

struct RowLimitVisitor;

const EXPECTED: &str = "a number of rows greater than zero, or \"off\" for no limit";

impl Visitor<'_> for RowLimitVisitor {
    type Value = RowLimit;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<RowLimit, E> {
        Ok(RowLimit::Rows(n))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<RowLimit, E> {
        u64::try_from(n)
            .map(RowLimit::Rows)
            .map_err(|_| E::custom(format!("row_limit is {n}; expected {EXPECTED}")))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<RowLimit, E> {
        if s == "off" {
            Ok(RowLimit::Off)
        } else {
            Err(E::custom(format!(
                "row_limit is {s:?}; expected {EXPECTED} (write the number without quotes)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_is_limited_unless_switched_off() {
        for env in ["production", "prod", "Staging", "live", ""] {
            assert_eq!(
                RowLimit::effective(None, env),
                Some(DEFAULT_PRODUCTION_ROW_LIMIT),
                "{env:?}"
            );
            assert_eq!(RowLimit::effective(Some(RowLimit::Off), env), None);
            assert_eq!(
                RowLimit::effective(Some(RowLimit::Rows(50_000)), env),
                Some(50_000)
            );
        }
        for env in NON_PRODUCTION_ENVIRONMENTS {
            assert_eq!(RowLimit::effective(None, env), None);
            assert_eq!(RowLimit::effective(Some(RowLimit::Rows(7)), env), Some(7));
        }
    }
}
