//! The `[masking]` table: dynamic masking of sensitive values in results.
//!
//! Masking is on with no configuration: columns are classified from their
//! names and comments, and values nothing vouches for are scanned. This
//! table only adjusts that.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Masking {
    /// Masking on every target (default true). Turning it off sends every
    /// value as the database holds it.
    pub enabled: bool,
    /// Largest row (DataRow or CopyData) masked whole; a larger one in a
    /// masked result set ends the session, never passes. Bytes.
    pub max_row_bytes: usize,
    /// The key of the `keyed` strategy (HMAC-SHA256), from this
    /// environment variable or file (at least 32 bytes). Without one,
    /// `keyed` columns are redacted instead.
    pub key_env: Option<String>,
    pub key_file: Option<PathBuf>,
    /// Text columns (text, character types, JSON, XML, arrays of them,
    /// types created in the database) that nothing classifies are
    /// scanned by the content detectors (default true). False trusts the
    /// classification and scans only values the catalog does not know.
    pub scan_unclassified: bool,
    /// Refuse, before it runs, a statement that would return a value
    /// computed from a protected column (or columns that cannot be traced
    /// while it may read one), instead of masking such values whole.
    /// Default false. Principals who may unmask the column are exempt.
    pub strict: bool,
    /// What to do with a statement that chooses, groups or orders rows by
    /// a protected column (WHERE, JOIN, GROUP BY, ORDER BY...), which lets
    /// a caller infer values it cannot see. Default `flag`.
    pub inference: Inference,
    /// Classifications added, changed or removed per column: those of
    /// this table first, then those of the `include` files in order.
    #[serde(rename = "column")]
    pub columns: Vec<ColumnRule>,
    /// Files of `[[column]]` entries (as `portcullis discover` writes
    /// them), relative to the configuration file's folder. Read and
    /// merged into `columns` at load, so a reload re-reads them.
    pub include: Vec<PathBuf>,
}

impl Default for Masking {
    fn default() -> Self {
        Masking {
            enabled: true,
            max_row_bytes: 64 << 20,
            key_env: None,
            key_file: None,
            scan_unclassified: true,
            strict: false,
            inference: Inference::Flag,
            columns: Vec::new(),
            include: Vec::new(),
        }
    }
}

/// `[masking] inference`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Inference {
    /// Let the statement run, and record the columns (a log event, a
    /// metric, the audit).
    #[default]
    Flag,
    /// Refuse the statement with SQLSTATE 42501.
    Refuse,
}

/// `[[masking.column]]`: one column's classification.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    /// The target it applies to; every target when left out.
    #[serde(default)]
    pub target: Option<String>,
    /// `schema.table.column`, as PostgreSQL stores the names (lower case
    /// unless created quoted).
    pub column: String,
    /// A class name (`email`, `phone`, ...) or `none` (not sensitive).
    pub class: String,
    /// How to mask it: `redact`, `partial`, `keyed`, `nullify` or
    /// `generalise`; the class's default when left out.
    #[serde(default)]
    pub strategy: Option<String>,
}

impl ColumnRule {
    /// The column's schema, table and column names.
    pub fn parts(&self) -> Option<(&str, &str, &str)> {
        let mut it = self.column.splitn(3, '.');
        let (s, t, c) = (it.next()?, it.next()?, it.next()?);
        (!s.is_empty() && !t.is_empty() && !c.is_empty() && !c.contains('.')).then_some((s, t, c))
    }
}
