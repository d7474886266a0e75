//! The rewriting of one value: what a column's rule means for its type and
//! format, decided once per column ([`ColumnMasker::new`]) and applied per
//! value ([`ColumnMasker::write`]).
//!
//! Every value written is a valid value of the column's type in the
//! column's format, so drivers decode it as they would the original:
//!
//! | type | Redact | Partial | Keyed | Generalise |
//! |---|---|---|---|---|
//! | text, varchar(n), char(n), name, citext* | `****` cut to n (char(n) padded) | letters/digits starred, shape kept (see `Strategy::Partial`) | `tok_` + 24 base32 chars, cut to n | an ISO date keeps its year, else Redact |
//! | int2/4/8 | 0 | Redact | HMAC number in the type's positive range | order of magnitude (12345 → 10000) |
//! | numeric(p,s) | 0 | Redact | HMAC number of ≤ min(p,15) digits at scale s | order of magnitude |
//! | float4/8 | 0 | Redact | HMAC integer exact in the type | order of magnitude |
//! | bool | false | Redact | Redact (one bit cannot be tokenised) | Redact |
//! | date | 1970-01-01 | Redact | HMAC date in 1900–2099 | 1 January of its year |
//! | timestamp[tz] | 1970-01-01 00:00:00[+00] | Redact | HMAC second in 1900–2099 | 1 January 00:00 of its year (UTC) |
//! | time | 00:00:00 | Redact | HMAC second of the day | the hour |
//! | uuid | all zeros | Redact | HMAC as a version-4 uuid | Redact |
//! | json, jsonb | `"****"` | Redact | `"tok_…"` | Redact |
//! | inet, cidr | 0.0.0.0 (/32) | Redact | HMAC address in 10/8 or fd00::/8 | the /24 (IPv4) or /48 (IPv6) network |
//! | bytea | empty | Redact | the 32 HMAC bytes | Redact |
//! | arrays of these | each element as above; NULL elements stay NULL |||||
//! | any other type | NULL | NULL | NULL | NULL |
//!
//! `Nullify` is NULL for every type. A value of a derived column (computed
//! from a protected one: no class) gets Redact. SQL NULL stays NULL under
//! every rule: it hides nothing.
//!
//! Types the proxy does not know by OID (enums, domains, composites,
//! extension types: their OIDs differ per database) are masked as NULL:
//! any text we wrote could be rejected by a driver that decodes the type,
//! and NULL never is. (*The proxy may name extension types that are text
//! on the wire, such as citext, in `MaskSettings::text_oids`.)

use crate::array;
use crate::detect::Detectors;
use crate::keyed::Keyer;
use crate::kind::{Kind, Scalar};
use crate::scalar::{self, Wrote};
use crate::{Class, ColumnType, Format, Strategy, Unmaskable};

/// A value after masking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Masked {
    Null,
    Value(Vec<u8>),
}

/// What the plan does to one column's non-NULL values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Pass,
    /// The same bytes for every value (None: NULL): Redact and Nullify of
    /// a non-array column cost one copy per value.
    Constant(Option<Box<[u8]>>),
    /// `class` None: derived from a protected column.
    Mask {
        class: Option<Class>,
        strategy: Strategy,
    },
    Scan {
        context: Option<Class>,
    },
}

/// What one column's values need, resolved once per result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnMasker {
    kind: Kind,
    format: Format,
    pub(crate) action: Action,
}

/// The masker's shared parts a value may need.
pub(crate) struct Ctx<'a> {
    pub keyer: Option<&'a Keyer>,
    pub detectors: &'a Detectors,
    /// Where scanned values' detector hits are counted, if anywhere.
    pub hits: Option<&'a crate::detect::HitTally>,
    /// Values longer than this in a column that must be read (not a
    /// constant) are replaced by the type's constant unread.
    pub max_value_bytes: usize,
}

impl ColumnMasker {
    /// `action` is Pass, Mask or Scan; Mask becomes a constant where it
    /// can. Keyed needs a key: without one the column is unmaskable.
    pub(crate) fn new(
        ty: ColumnType,
        format: Format,
        action: Action,
        text_oids: &[u32],
        has_key: bool,
    ) -> Result<ColumnMasker, Unmaskable> {
        let kind = Kind::of(ty, text_oids);
        let action = match action {
            Action::Mask { class, strategy } => {
                if class.is_some() && strategy == Strategy::Keyed && !has_key {
                    return Err(Unmaskable {
                        reason: "keyed masking is configured but no masking key is set",
                    });
                }
                let strategy = if class.is_none() {
                    Strategy::Redact
                } else {
                    strategy
                };
                match kind {
                    // A whole array is nulled, not each element.
                    _ if strategy == Strategy::Nullify => Action::Constant(None),
                    Kind::Scalar(s) if is_constant(s, strategy) => {
                        let mut bytes = Vec::new();
                        Action::Constant(match scalar::write_redacted(s, format, &mut bytes) {
                            Wrote::Null => None,
                            Wrote::Value => Some(bytes.into_boxed_slice()),
                        })
                    }
                    _ => Action::Mask { class, strategy },
                }
            }
            other => other,
        };
        Ok(ColumnMasker {
            kind,
            format,
            action,
        })
    }

    pub(crate) fn is_pass(&self) -> bool {
        self.action == Action::Pass
    }

    /// Appends the masked form of a non-NULL value (nothing for NULL).
    pub(crate) fn write(&self, v: &[u8], ctx: &Ctx<'_>, out: &mut Vec<u8>) -> Wrote {
        let text = self.format == Format::Text;
        match &self.action {
            Action::Pass => {
                out.extend_from_slice(v);
                return Wrote::Value;
            }
            Action::Constant(None) => return Wrote::Null,
            Action::Constant(Some(c)) => {
                out.extend_from_slice(c);
                return Wrote::Value;
            }
            _ if v.len() > ctx.max_value_bytes => {
                return match self.kind {
                    Kind::Scalar(s) => scalar::write_redacted(s, self.format, out),
                    Kind::Array { elem_oid, .. } => {
                        array::write_empty(text, elem_oid, out);
                        Wrote::Value
                    }
                };
            }
            _ => {}
        }
        let (kind, format) = (self.kind, self.format);
        let one = |s: Scalar, v: &[u8], out: &mut Vec<u8>| -> Wrote {
            match self.action {
                Action::Mask { class: None, .. } => scalar::write_redacted(s, format, out),
                Action::Mask {
                    class: Some(class),
                    strategy,
                } => scalar::write_masked(s, format, class, strategy, ctx.keyer, v, out),
                Action::Scan { context } => {
                    scalar::write_scanned(s, format, ctx.detectors, ctx.hits, context, v, out)
                }
                Action::Pass | Action::Constant(_) => unreachable!("handled above"),
            }
        };
        match kind {
            Kind::Scalar(s) => one(s, v, out),
            Kind::Array { elem, .. } if text => {
                array::rewrite_text(v, out, |e, out| one(elem, e, out));
                Wrote::Value
            }
            Kind::Array { elem, elem_oid } => {
                array::rewrite_binary(v, elem_oid, out, |e, out| one(elem, e, out));
                Wrote::Value
            }
        }
    }
}

/// Whether every value of `s` gets the same mask under `strategy`.
fn is_constant(s: Scalar, strategy: Strategy) -> bool {
    match strategy {
        Strategy::Redact | Strategy::Nullify => true,
        Strategy::Partial => !s.is_text(),
        Strategy::Keyed => matches!(s, Scalar::Bool | Scalar::Unknown),
        Strategy::Generalise => matches!(
            s,
            Scalar::Bool
                | Scalar::Uuid
                | Scalar::Json
                | Scalar::Jsonb
                | Scalar::Bytea
                | Scalar::Unknown
        ),
    }
}

/// Masks one non-NULL value: the door for a single value outside a plan
/// (notices, tests). `class` None means the value is derived from a
/// protected column and gets its type's constant. `key` is the HMAC key
/// for `Keyed`. Plans are the fast path: they resolve all of this once
/// per result set.
pub fn mask_value(
    ty: ColumnType,
    format: Format,
    class: Option<Class>,
    strategy: Strategy,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<Masked, Unmaskable> {
    let column = ColumnMasker::new(
        ty,
        format,
        Action::Mask { class, strategy },
        &[],
        key.is_some(),
    )?;
    let keyer = key.map(Keyer::new);
    let detectors = Detectors::new();
    let ctx = Ctx {
        keyer: keyer.as_ref(),
        detectors: &detectors,
        hits: None,
        max_value_bytes: usize::MAX,
    };
    let mut out = Vec::new();
    Ok(match column.write(value, &ctx, &mut out) {
        Wrote::Null => Masked::Null,
        Wrote::Value => Masked::Value(out),
    })
}

impl ColumnMasker {
    pub(crate) fn format(&self) -> Format {
        self.format
    }
}

#[cfg(test)]
#[path = "value_tests.rs"]
mod tests;
