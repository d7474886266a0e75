//! How a sensitive value is hidden. The strategy says what the reader keeps
//! (nothing, a recognisable tail, equality, a coarser value); `value.rs`
//! says what that means for each column type.

use crate::Class;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// A constant of the column's type (`****`, 0, 1970-01-01, ...).
    Redact,
    /// Keep the shape and a little of the value: for text, every letter and
    /// digit becomes `*` except the last four of an identifier long enough
    /// to spare them (cards, phones, IBANs, accounts, national ids, API
    /// keys, tokens) and the first character of an email's local part and
    /// its domain. Other types fall back to `Redact`.
    Partial,
    /// A deterministic token: HMAC-SHA256 of the value under the configured
    /// key, rendered in the column's type, so equal values stay equal
    /// (joins, GROUP BY, DISTINCT still work) but cannot be read back.
    Keyed,
    /// SQL NULL.
    Nullify,
    /// A coarser value of the same type: dates and timestamps to the first
    /// day of their year, addresses to their network, numbers to their
    /// order of magnitude. Types without a coarser form fall back to
    /// `Redact`.
    Generalise,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::Redact,
        Strategy::Partial,
        Strategy::Keyed,
        Strategy::Nullify,
        Strategy::Generalise,
    ];

    /// The name used in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Redact => "redact",
            Strategy::Partial => "partial",
            Strategy::Keyed => "keyed",
            Strategy::Nullify => "nullify",
            Strategy::Generalise => "generalise",
        }
    }

    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What a class gets when the configuration does not say. Identifiers
    /// people recognise by their tail keep it (`Partial`); a birth date
    /// keeps its year; anything that is a secret in full, or identifies a
    /// person by any part of it, is redacted.
    pub fn default_for(class: Class) -> Strategy {
        match class {
            Class::Email
            | Class::Phone
            | Class::NationalId
            | Class::Card
            | Class::Iban
            | Class::BankAccount => Strategy::Partial,
            Class::DateOfBirth => Strategy::Generalise,
            Class::Address
            | Class::PersonName
            | Class::Password
            | Class::PasswordHash
            | Class::Token
            | Class::ApiKey
            | Class::Secret => Strategy::Redact,
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::from_name(s.name()), Some(s));
        }
        assert_eq!(Strategy::from_name("generalize"), None);
    }

    #[test]
    fn defaults() {
        assert_eq!(Strategy::default_for(Class::Email), Strategy::Partial);
        assert_eq!(Strategy::default_for(Class::Card), Strategy::Partial);
        assert_eq!(
            Strategy::default_for(Class::DateOfBirth),
            Strategy::Generalise
        );
        assert_eq!(Strategy::default_for(Class::PersonName), Strategy::Redact);
        assert_eq!(Strategy::default_for(Class::ApiKey), Strategy::Redact);
    }
}
