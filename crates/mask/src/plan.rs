//! Plans: what to do with each column of one result set, resolved once
//! from its RowDescription, then applied to every row.
//!
//! A plan that masks nothing says so ([`Plan::masks_nothing`]) so the proxy
//! keeps forwarding rows from its read buffer untouched and never calls
//! the plan per row. Otherwise [`Plan::data_row`] writes the rewritten row
//! straight into the proxy's output buffer: no allocation per value for
//! constants (Redact, Nullify, derived columns), one memcmp per value to
//! tell whether anything changed.

use std::sync::Arc;

use crate::detect::Detectors;
use crate::keyed::Keyer;
use crate::scalar::Wrote;
use crate::value::{Action, ColumnMasker, Ctx};
use crate::{Class, ColumnType, Format, MaskError, Strategy, Unmaskable};

/// What the exposure decision says about one output column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The session may see it.
    Pass,
    /// A protected column: hide it as `strategy` says for `class`.
    Mask { class: Class, strategy: Strategy },
    /// Computed from a protected column: the type's constant.
    Derived,
    /// Nobody vouches for it: mask whatever the content detectors find.
    /// `context` is the column's class if it has one.
    Scan { context: Option<Class> },
}

/// One RowDescription column and its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSpec {
    pub ty: ColumnType,
    pub format: Format,
    pub rule: Rule,
}

/// The masking configuration shared by every plan of a target.
#[derive(Clone)]
pub struct MaskSettings {
    /// The HMAC key of `Keyed`. Without one, a plan with a keyed column is
    /// refused.
    pub key: Option<Vec<u8>>,
    /// Values longer than this in a column that must be read (partial,
    /// keyed, generalised, scanned) are replaced by their type's constant
    /// without being read, which bounds the work one value can cause.
    pub max_value_bytes: usize,
    /// OIDs of extension types that are text on the wire in both formats
    /// (citext): masked as text rather than nulled.
    pub text_oids: Vec<u32>,
}

impl Default for MaskSettings {
    fn default() -> MaskSettings {
        MaskSettings {
            key: None,
            max_value_bytes: 1 << 20,
            text_oids: Vec::new(),
        }
    }
}

impl std::fmt::Debug for MaskSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskSettings")
            .field("key", &self.key.as_ref().map(|_| ".."))
            .field("max_value_bytes", &self.max_value_bytes)
            .field("text_oids", &self.text_oids)
            .finish()
    }
}

struct Shared {
    keyer: Option<Keyer>,
    max_value_bytes: usize,
    text_oids: Vec<u32>,
    detectors: Detectors,
}

/// Makes plans. Build one per configuration and share it: cloning is cheap,
/// and plans keep what they need of it.
#[derive(Clone)]
pub struct Masker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("keyed", &self.shared.keyer.is_some())
            .finish_non_exhaustive()
    }
}

impl Masker {
    pub fn new(settings: MaskSettings, detectors: Detectors) -> Masker {
        let shared = Shared {
            keyer: settings.key.as_deref().map(Keyer::new),
            max_value_bytes: settings.max_value_bytes,
            text_oids: settings.text_oids,
            detectors,
        };
        Masker {
            shared: Arc::new(shared),
        }
    }

    /// The plan for one result set. Refused when a column cannot be masked
    /// as configured (keyed masking without a key).
    pub fn plan(&self, columns: &[ColumnSpec]) -> Result<Plan, Unmaskable> {
        let has_key = self.shared.keyer.is_some();
        let columns = columns
            .iter()
            .map(|c| {
                let action = match c.rule {
                    Rule::Pass => Action::Pass,
                    Rule::Mask { class, strategy } => Action::Mask {
                        class: Some(class),
                        strategy,
                    },
                    Rule::Derived => Action::Mask {
                        class: None,
                        strategy: Strategy::Redact,
                    },
                    Rule::Scan { context } => Action::Scan { context },
                };
                ColumnMasker::new(c.ty, c.format, action, &self.shared.text_oids, has_key)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let masks_nothing = columns.iter().all(ColumnMasker::is_pass);
        Ok(Plan {
            columns,
            masks_nothing,
            shared: Arc::clone(&self.shared),
            hits: Default::default(),
        })
    }

    /// Free text (an error's message, a notification's payload, a
    /// setting's value) with whatever the detectors find masked by its
    /// class's shape, or `None` when they find nothing.
    pub fn scan_text(&self, text: &[u8]) -> Option<Vec<u8>> {
        let hits = self.shared.detectors.find(text, None);
        if hits.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(text.len());
        crate::scalar::replace_hits(text, &hits, &mut out);
        Some(out)
    }
}

/// Whether a row had to be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Nothing changed: forward the original message; nothing was
    /// appended to `out`.
    Unchanged,
    /// The new message was appended to `out`.
    Rewritten,
}

/// One result set's masking.
pub struct Plan {
    pub(crate) columns: Vec<ColumnMasker>,
    masks_nothing: bool,
    shared: Arc<Shared>,
    /// Detector hits in scanned columns since the last `take_hits`.
    hits: crate::detect::HitTally,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// DataRow's type byte.
const DATA_ROW: u8 = b'D';

impl Plan {
    /// Every column passes: rows need not be looked at.
    pub fn masks_nothing(&self) -> bool {
        self.masks_nothing
    }

    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    pub(crate) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            keyer: self.shared.keyer.as_ref(),
            detectors: &self.shared.detectors,
            hits: Some(&self.hits),
            max_value_bytes: self.shared.max_value_bytes,
        }
    }

    /// Detector hits, per class, in the values this plan scanned since
    /// the last call (the proxy takes them when a result set ends).
    pub fn take_hits(&self) -> Vec<(crate::Class, u64)> {
        self.hits.take()
    }

    /// Rewrites one DataRow. `body` is the message without its type byte
    /// and length. When a value changes, the whole new message (type byte,
    /// length, body) is appended to `out`; otherwise `out` is left as it
    /// was. A row that does not match the plan is an error: the proxy can
    /// no longer tell which bytes belong to which column.
    pub fn data_row(&self, body: &[u8], out: &mut Vec<u8>) -> Result<Rewrite, MaskError> {
        wrap_message(DATA_ROW, out, |out| self.rewrite_fields(body, out))
    }

    /// Writes `count` and the fields of a DataRow body (or a binary COPY
    /// tuple, which has the same layout) masked; true when any changed.
    /// On error `out` may hold a partial write: the caller truncates.
    pub(crate) fn rewrite_fields(&self, body: &[u8], out: &mut Vec<u8>) -> Result<bool, MaskError> {
        let count = body.get(..2).ok_or(MaskError::Malformed)?;
        let got = i16::from_be_bytes([count[0], count[1]]);
        if usize::try_from(got).ok() != Some(self.columns.len()) {
            return Err(MaskError::ColumnCount {
                expected: self.columns.len(),
                got: got.max(0) as usize,
            });
        }
        out.extend_from_slice(count);
        let ctx = self.ctx();
        let mut pos = 2;
        let mut changed = false;
        for column in &self.columns {
            let len_bytes = body.get(pos..pos + 4).ok_or(MaskError::Malformed)?;
            let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            pos += 4;
            if len == -1 {
                out.extend_from_slice(len_bytes);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| MaskError::Malformed)?;
            let value = body.get(pos..pos + len).ok_or(MaskError::Malformed)?;
            pos += len;
            if column.is_pass() {
                out.extend_from_slice(len_bytes);
                out.extend_from_slice(value);
                continue;
            }
            let len_at = out.len();
            out.extend_from_slice(&[0; 4]);
            match column.write(value, &ctx, out) {
                Wrote::Null => {
                    out.truncate(len_at);
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                    changed = true;
                }
                Wrote::Value => {
                    let written = &out[len_at + 4..];
                    changed |= written != value;
                    let n = i32::try_from(written.len()).map_err(|_| MaskError::Malformed)?;
                    out[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
                }
            }
        }
        if pos != body.len() {
            return Err(MaskError::Malformed);
        }
        Ok(changed)
    }
}

/// Appends a message (type byte, length, then what `body` writes) when
/// `body` reports a change, and leaves `out` as it was otherwise or on
/// error.
pub(crate) fn wrap_message(
    tag: u8,
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<bool, MaskError>,
) -> Result<Rewrite, MaskError> {
    let start = out.len();
    out.push(tag);
    out.extend_from_slice(&[0; 4]);
    let changed = match body(out) {
        Ok(changed) => changed,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    if !changed {
        out.truncate(start);
        return Ok(Rewrite::Unchanged);
    }
    let Ok(len) = i32::try_from(out.len() - start - 1) else {
        out.truncate(start);
        return Err(MaskError::Malformed);
    };
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    Ok(Rewrite::Rewritten)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
