//! The kinds of sensitive data Portcullis knows.

use std::fmt;

/// A classification of a column or a piece of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Email,
    Phone,
    /// US SSN and other national identifiers.
    NationalId,
    /// Payment card numbers (PAN).
    Card,
    Iban,
    BankAccount,
    DateOfBirth,
    Address,
    PersonName,
    Password,
    PasswordHash,
    Token,
    ApiKey,
    Secret,
}

impl Class {
    pub const ALL: [Class; 14] = [
        Class::Email,
        Class::Phone,
        Class::NationalId,
        Class::Card,
        Class::Iban,
        Class::BankAccount,
        Class::DateOfBirth,
        Class::Address,
        Class::PersonName,
        Class::Password,
        Class::PasswordHash,
        Class::Token,
        Class::ApiKey,
        Class::Secret,
    ];

    /// The name used in configuration, policies and audit records.
    pub fn name(self) -> &'static str {
        match self {
            Class::Email => "email",
            Class::Phone => "phone",
            Class::NationalId => "national_id",
            Class::Card => "card",
            Class::Iban => "iban",
            Class::BankAccount => "bank_account",
            Class::DateOfBirth => "date_of_birth",
            Class::Address => "address",
            Class::PersonName => "person_name",
            Class::Password => "password",
            Class::PasswordHash => "password_hash",
            Class::Token => "token",
            Class::ApiKey => "api_key",
            Class::Secret => "secret",
        }
    }

    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Class::ALL {
            assert_eq!(Class::from_name(c.name()), Some(c));
        }
        assert_eq!(Class::from_name("ssn"), None);
    }
}
