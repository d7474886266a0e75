//! The column types the rewriters know, resolved once per column from
//! RowDescription's OID and typmod.
//!
//! OIDs are PostgreSQL's fixed ones, from `src/include/catalog/pg_type.dat`.
//! Types created at run time (extensions such as citext, enums, domains,
//! composites) have OIDs that differ per database and are [`Scalar::Unknown`]
//! unless the proxy names them as text-like (`MaskSettings::text_oids`).

use crate::ColumnType;

pub(crate) mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const CIDR: u32 = 650;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const INET: u32 = 869;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
    /// `unknown`: the type of an undecorated literal in a select list. Its
    /// values are text.
    pub const UNKNOWN: u32 = 705;

    /// (array type, element type) pairs: `typarray` in pg_type.dat.
    pub const ARRAYS: [(u32, u32); 21] = [
        (1000, BOOL),
        (1001, BYTEA),
        (1003, NAME),
        (1016, INT8),
        (1005, INT2),
        (1007, INT4),
        (1009, TEXT),
        (199, JSON),
        (651, CIDR),
        (1021, FLOAT4),
        (1022, FLOAT8),
        (1041, INET),
        (1014, BPCHAR),
        (1015, VARCHAR),
        (1182, DATE),
        (1183, TIME),
        (1115, TIMESTAMP),
        (1185, TIMESTAMPTZ),
        (1231, NUMERIC),
        (2951, UUID),
        (3807, JSONB),
    ];
}

/// `NAMEDATALEN - 1`: the most bytes a `name` holds.
const NAME_MAX_BYTES: usize = 63;
/// `MaxAttrSize`: the longest varchar(n) / char(n) PostgreSQL accepts.
const MAX_CHAR_LENGTH: usize = 10 * 1024 * 1024;
/// `VARHDRSZ`: typmods of length-limited types count it in.
const VARHDRSZ: i32 = 4;

/// What a text value of this column may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextLimit {
    /// At most this many characters (varchar(n), char(n)).
    pub max_chars: Option<usize>,
    /// char(n): exactly `max_chars` characters, padded with spaces.
    pub pad: bool,
    /// At most this many bytes (`name`).
    pub max_bytes: Option<usize>,
}

/// numeric(precision, scale) from its typmod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NumericMod {
    pub precision: u32,
    /// May be negative (PostgreSQL 15+) or above the precision.
    pub scale: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    Text(TextLimit),
    Int2,
    Int4,
    Int8,
    Numeric(Option<NumericMod>),
    Float4,
    Float8,
    Bool,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    Uuid,
    Json,
    Jsonb,
    Inet,
    Cidr,
    Bytea,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Scalar(Scalar),
    /// An array; its typmod applies to each element.
    Array {
        elem: Scalar,
        elem_oid: u32,
    },
}

impl Kind {
    pub fn of(ty: ColumnType, text_oids: &[u32]) -> Kind {
        if let Some(&(_, elem_oid)) = oid::ARRAYS.iter().find(|(a, _)| *a == ty.oid) {
            let elem = Scalar::of(
                ColumnType {
                    oid: elem_oid,
                    typmod: ty.typmod,
                },
                text_oids,
            );
            return Kind::Array { elem, elem_oid };
        }
        Kind::Scalar(Scalar::of(ty, text_oids))
    }
}

/// The first OID of objects a database creates (`FirstNormalObjectId`):
/// types from here on are extensions' and users' (citext, enums,
/// composites, domains over domains), whose values may be text.
const FIRST_NORMAL_OID: u32 = 16384;

/// Whether values of type `oid` can hold free text someone wrote (text,
/// character types, JSON, XML, arrays of them, and types created in the
/// database), as opposed to numbers, dates, booleans, UUIDs and addresses,
/// which cannot carry an email or a token. Bytea is left out: files and
/// images, whose bytes the text detectors would read as noise.
pub(crate) fn may_hold_free_text(oid: u32) -> bool {
    const XML: u32 = 142;
    let elem = oid::ARRAYS
        .iter()
        .find(|(a, _)| *a == oid)
        .map_or(oid, |(_, e)| *e);
    matches!(
        elem,
        oid::TEXT
            | oid::VARCHAR
            | oid::BPCHAR
            | oid::NAME
            | oid::UNKNOWN
            | oid::JSON
            | oid::JSONB
            | XML
    ) || oid == 143
        || elem >= FIRST_NORMAL_OID
}

impl Scalar {
    pub fn of(ty: ColumnType, text_oids: &[u32]) -> Scalar {
        let unlimited = TextLimit {
            max_chars: None,
            pad: false,
            max_bytes: None,
        };
        // A length PostgreSQL would not accept cannot come from a real
        // server: read as no limit rather than padding to it.
        let chars = usize::try_from(ty.typmod.saturating_sub(VARHDRSZ))
            .ok()
            .filter(|&n| ty.typmod >= VARHDRSZ && n <= MAX_CHAR_LENGTH);
        match ty.oid {
            oid::TEXT | oid::UNKNOWN => Scalar::Text(unlimited),
            oid::VARCHAR => Scalar::Text(TextLimit {
                max_chars: chars,
                ..unlimited
            }),
            oid::BPCHAR => Scalar::Text(TextLimit {
                max_chars: chars,
                pad: chars.is_some(),
                max_bytes: None,
            }),
            oid::NAME => Scalar::Text(TextLimit {
                max_bytes: Some(NAME_MAX_BYTES),
                ..unlimited
            }),
            oid::INT2 => Scalar::Int2,
            oid::INT4 => Scalar::Int4,
            oid::INT8 => Scalar::Int8,
            oid::NUMERIC => Scalar::Numeric(numeric_mod(ty.typmod)),
            oid::FLOAT4 => Scalar::Float4,
            oid::FLOAT8 => Scalar::Float8,
            oid::BOOL => Scalar::Bool,
            oid::DATE => Scalar::Date,
            oid::TIMESTAMP => Scalar::Timestamp,
            oid::TIMESTAMPTZ => Scalar::TimestampTz,
            oid::TIME => Scalar::Time,
            oid::UUID => Scalar::Uuid,
            oid::JSON => Scalar::Json,
            oid::JSONB => Scalar::Jsonb,
            oid::INET => Scalar::Inet,
            oid::CIDR => Scalar::Cidr,
            oid::BYTEA => Scalar::Bytea,
            other if text_oids.contains(&other) => Scalar::Text(unlimited),
            _ => Scalar::Unknown,
        }
    }

    /// Whether the value's bytes are its text in both formats.
    pub fn is_text(self) -> bool {
        matches!(self, Scalar::Text(_))
    }
}

/// numeric's typmod: `((precision << 16) | (scale & 0x7ff)) + VARHDRSZ`,
/// the scale an 11-bit signed field (`numeric.c`, `make_numeric_typmod`).
fn numeric_mod(typmod: i32) -> Option<NumericMod> {
    if typmod < VARHDRSZ {
        return None;
    }
    let t = typmod - VARHDRSZ;
    let precision = ((t >> 16) & 0xffff) as u32;
    let scale = ((t & 0x7ff) ^ 0x400) - 0x400;
    (precision >= 1).then_some(NumericMod { precision, scale })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(oid: u32, typmod: i32) -> ColumnType {
        ColumnType { oid, typmod }
    }

    #[test]
    fn free_text_types() {
        for oid in [
            25, 1043, 1042, 114, 3802, 142, 1009, 1015, 3807, 143, 16385, 99999,
        ] {
            assert!(may_hold_free_text(oid), "{oid}");
        }
        for oid in [
            17, 1001, 16, 20, 23, 1700, 701, 1082, 1184, 2950, 869, 1007, 1000,
        ] {
            assert!(!may_hold_free_text(oid), "{oid}");
        }
    }

    #[test]
    fn limits_from_typmods() {
        assert_eq!(
            Scalar::of(ty(oid::VARCHAR, 8), &[]),
            Scalar::Text(TextLimit {
                max_chars: Some(4),
                pad: false,
                max_bytes: None
            })
        );
        assert_eq!(
            Scalar::of(ty(oid::BPCHAR, 10), &[]),
            Scalar::Text(TextLimit {
                max_chars: Some(6),
                pad: true,
                max_bytes: None
            })
        );
        assert_eq!(
            Scalar::of(ty(oid::NUMERIC, ((10 << 16) | 2) + 4), &[]),
            Scalar::Numeric(Some(NumericMod {
                precision: 10,
                scale: 2
            }))
        );
        // numeric(5, -2): scale stored as 11-bit two's complement.
        assert_eq!(
            Scalar::of(ty(oid::NUMERIC, ((5 << 16) | (0x7fe)) + 4), &[]),
            Scalar::Numeric(Some(NumericMod {
                precision: 5,
                scale: -2
            }))
        );
        assert_eq!(Scalar::of(ty(99999, -1), &[]), Scalar::Unknown);
        assert!(Scalar::of(ty(99999, -1), &[99999]).is_text());
        assert_eq!(
            Kind::of(ty(1015, 7), &[]),
            Kind::Array {
                elem: Scalar::Text(TextLimit {
                    max_chars: Some(3),
                    pad: false,
                    max_bytes: None
                }),
                elem_oid: oid::VARCHAR
            }
        );
    }
}
