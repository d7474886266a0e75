//! What the wire says about one output column (RowDescription).

/// The wire format of a column's values (RowDescription format code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    /// From a RowDescription / Bind format code: 0 text, 1 binary.
    pub fn from_code(code: i16) -> Option<Format> {
        match code {
            0 => Some(Format::Text),
            1 => Some(Format::Binary),
            _ => None,
        }
    }
}

/// A column's type as RowDescription gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ColumnType {
    /// The type's OID (`pg_type.oid`).
    pub oid: u32,
    /// The type modifier (`atttypmod`): -1 when none. For varchar(n) and
    /// char(n) it is n + 4.
    pub typmod: i32,
}

impl ColumnType {
    /// Whether its values can hold free text someone wrote (text,
    /// character types, JSON, XML, arrays of them, types created in the
    /// database), where an email or a token may hide in a column no
    /// rule classifies.
    pub fn may_hold_free_text(&self) -> bool {
        crate::kind::may_hold_free_text(self.oid)
    }
}
