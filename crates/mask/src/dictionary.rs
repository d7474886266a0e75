//! The zero-configuration classification of catalog columns, from their
//! name and comment.
//!
//! A name is split into lowercase words (`_`, `-`, spaces, camelCase and
//! digits all split; digits are dropped, so `address_line2` reads as
//! `address line`). The rightmost known phrase decides the class, and
//! only if every word after it merely qualifies the value (`number`,
//! `value`, `encrypted`, …). Any other trailing word means the column holds
//! something *about* the value, not the value: `email_verified` (a flag),
//! `phone_type`, `token_count`, `address_id` (a foreign key),
//! `password_changed_at`. Columns named like flags or counts (`is_*`,
//! `has_*`, `num_*`, `max_*`) are never classified.
//!
//! Deliberately not classified:
//! - bare `name` (products, files and tables have names too), `username`
//!   (a handle, not a person's name), `title`;
//! - postcode/zip and city on their own: coarse location that analytics
//!   depend on; masking them is a policy choice, not a default;
//! - `*_id` columns, including `session_id` and `passport_id`: ids are keys
//!   into other tables (`national_id` and `tax_id` are the exceptions);
//! - `ip_address`, `mac_address` and other machine addresses;
//! - partial values such as `card_last4`;
//! - plural `tokens` (in practice an LLM token count).
//!
//! A comment can add a class (`'Customer social security number'`), name
//! one explicitly (`pii:email`, `sensitive: card`) or remove one
//! (`pii:none`, `not sensitive`). An explicit tag wins over the name;
//! phrases in a comment only count when the name says nothing and is not
//! itself a flag, count, id or timestamp (a boolean `verified` commented
//! "whether the email address was verified" is not an email).

use crate::Class;

/// The class of a catalog column, if its name or comment says it holds
/// sensitive values.
pub fn classify_column(name: &str, comment: Option<&str>) -> Option<Class> {
    let comment = comment.map(str::to_ascii_lowercase);
    if let Some(tag) = comment.as_deref().and_then(explicit_tag) {
        return tag;
    }
    let words = words(name);
    match by_name(&words) {
        Reading::Class(class) => Some(class),
        Reading::About => None,
        Reading::Silent => comment
            .as_deref()
            .and_then(|c| by_phrase(&words_of_comment(c))),
    }
}

/// Whether a comment says outright that the column is not sensitive
/// (`pii:none`, `not sensitive`, ...): a person decided, and a proposal
/// from the column's content should not overrule them.
pub fn declared_not_sensitive(comment: &str) -> bool {
    explicit_tag(&comment.to_ascii_lowercase()) == Some(None)
}

/// What a name says.
enum Reading {
    Class(Class),
    /// The name describes something about a value (a flag, count, id,
    /// timestamp, type): the comment cannot make it a value.
    About,
    /// Nothing either way.
    Silent,
}

/// Words that start the name of a flag or an aggregate.
const FLAG_OR_COUNT_PREFIXES: &[&str] = &[
    "is", "has", "have", "can", "should", "was", "did", "does", "allow", "allows", "enable",
    "enabled", "use", "uses", "num", "count", "total", "max", "min", "avg", "n", "number",
];

/// Words after the phrase that leave the value what it is.
const QUALIFIERS: &[&str] = &[
    "number",
    "no",
    "num",
    "nr",
    "nbr",
    "value",
    "val",
    "text",
    "txt",
    "str",
    "string",
    "raw",
    "plain",
    "plaintext",
    "full",
    "line",
    "primary",
    "secondary",
    "home",
    "work",
    "mobile",
    "main",
    "alt",
    "alternate",
    "other",
    "old",
    "new",
    "current",
    "prev",
    "previous",
    "original",
    "normalized",
    "normalised",
    "formatted",
    "e164",
    "intl",
    "international",
    "national",
    "local",
    "encrypted",
    "enc",
    "cipher",
    "ciphertext",
    "data",
    "info",
    "address",
    "addr",
    "contact",
    "personal",
    "private",
    "billing",
    "shipping",
    "mailing",
    "postal",
    "backup",
    "recovery",
    "temp",
    "tmp",
    "initial",
];

/// Words that, at the end of a name, say it is about a value rather than
/// one. Only used to keep comments from classifying such a column.
const ABOUT_WORDS: &[&str] = &[
    "id",
    "ids",
    "uuid",
    "at",
    "on",
    "date",
    "time",
    "ts",
    "timestamp",
    "count",
    "cnt",
    "type",
    "kind",
    "status",
    "state",
    "verified",
    "confirmed",
    "valid",
    "flag",
    "enabled",
    "length",
    "len",
    "format",
    "hint",
    "changed",
    "updated",
    "expires",
    "expiry",
    "attempts",
    "policy",
    "strength",
    "version",
    "scope",
    "scopes",
    "ttl",
    "prefix",
    "suffix",
    "last",
    "hash",
    "digest",
    "domain",
    "provider",
    "template",
    "sent",
    "opt",
    "optin",
    "consent",
    "preference",
    "preferences",
    "visibility",
    "algorithm",
    "algo",
    "salt",
    "required",
    "set",
    "used",
    "reset",
];

/// (phrase, class). Phrases ending at the same word are tried in this
/// order, so longer or more specific ones come first. `None` marks a
/// phrase that is known not to be sensitive (`ip address`).
const PHRASES: &[(&[&str], Option<Class>)] = &[
    // Not what they seem.
    (&["ip", "address"], None),
    (&["ip", "addr"], None),
    (&["ipv4", "address"], None),
    (&["ipv6", "address"], None),
    (&["mac", "address"], None),
    (&["remote", "address"], None),
    (&["server", "address"], None),
    (&["host", "address"], None),
    (&["wallet", "address"], None),
    (&["contract", "address"], None),
    (&["memory", "address"], None),
    (&["web", "address"], None),
    (&["url", "address"], None),
    (&["bind", "address"], None),
    (&["listen", "address"], None),
    (&["peer", "address"], None),
    (&["network", "address"], None),
    (&["user", "name"], None),
    (&["card", "last"], None),
    // Password hashes before passwords.
    (&["password", "hash"], Some(Class::PasswordHash)),
    (&["password", "digest"], Some(Class::PasswordHash)),
    (&["passwd", "hash"], Some(Class::PasswordHash)),
    (&["pwd", "hash"], Some(Class::PasswordHash)),
    (&["pw", "hash"], Some(Class::PasswordHash)),
    (&["pass", "hash"], Some(Class::PasswordHash)),
    (&["hashed", "password"], Some(Class::PasswordHash)),
    (&["encrypted", "password"], Some(Class::PasswordHash)),
    (&["crypted", "password"], Some(Class::PasswordHash)),
    (&["rolpassword"], Some(Class::PasswordHash)),
    (&["password"], Some(Class::Password)),
    (&["passwd"], Some(Class::Password)),
    (&["pwd"], Some(Class::Password)),
    (&["passphrase"], Some(Class::Password)),
    (&["passcode"], Some(Class::Password)),
    // Keys and secrets.
    (&["private", "key"], Some(Class::Secret)),
    (&["secret", "access", "key"], Some(Class::Secret)),
    (&["encryption", "key"], Some(Class::Secret)),
    (&["signing", "key"], Some(Class::Secret)),
    (&["api", "key"], Some(Class::ApiKey)),
    (&["api", "secret"], Some(Class::ApiKey)),
    (&["access", "key"], Some(Class::ApiKey)),
    (&["secret", "key"], Some(Class::ApiKey)),
    (&["client", "secret"], Some(Class::Secret)),
    (&["secret"], Some(Class::Secret)),
    (&["credentials"], Some(Class::Secret)),
    (&["credential"], Some(Class::Secret)),
    (&["creds"], Some(Class::Secret)),
    // Tokens.
    (&["token"], Some(Class::Token)),
    (&["jwt"], Some(Class::Token)),
    (&["bearer"], Some(Class::Token)),
    // Email.
    (&["email", "address"], Some(Class::Email)),
    (&["mail", "address"], Some(Class::Email)),
    (&["e", "mail"], Some(Class::Email)),
    (&["email"], Some(Class::Email)),
    (&["emails"], Some(Class::Email)),
    // Phone.
    (&["phone"], Some(Class::Phone)),
    (&["phones"], Some(Class::Phone)),
    (&["telephone"], Some(Class::Phone)),
    (&["tel"], Some(Class::Phone)),
    (&["mobile", "number"], Some(Class::Phone)),
    (&["mobile"], Some(Class::Phone)),
    (&["cell"], Some(Class::Phone)),
    (&["cellphone"], Some(Class::Phone)),
    (&["fax"], Some(Class::Phone)),
    (&["msisdn"], Some(Class::Phone)),
    // National identifiers.
    (&["social", "security"], Some(Class::NationalId)),
    (&["ssn"], Some(Class::NationalId)),
    (&["national", "id"], Some(Class::NationalId)),
    (&["national", "identifier"], Some(Class::NationalId)),
    (&["national", "insurance"], Some(Class::NationalId)),
    (&["tax", "id"], Some(Class::NationalId)),
    (&["taxpayer", "id"], Some(Class::NationalId)),
    (&["tax", "number"], Some(Class::NationalId)),
    (&["government", "id"], Some(Class::NationalId)),
    (&["govt", "id"], Some(Class::NationalId)),
    (&["passport"], Some(Class::NationalId)),
    (&["driver", "license"], Some(Class::NationalId)),
    (&["drivers", "license"], Some(Class::NationalId)),
    (&["driving", "licence"], Some(Class::NationalId)),
    (&["nin"], Some(Class::NationalId)),
    (&["nino"], Some(Class::NationalId)),
    (&["sin"], Some(Class::NationalId)),
    (&["tin"], Some(Class::NationalId)),
    (&["itin"], Some(Class::NationalId)),
    (&["aadhaar"], Some(Class::NationalId)),
    (&["pesel"], Some(Class::NationalId)),
    (&["bsn"], Some(Class::NationalId)),
    (&["cpf"], Some(Class::NationalId)),
    (&["nric"], Some(Class::NationalId)),
    (&["curp"], Some(Class::NationalId)),
    // Cards (before bank accounts: a PAN is the primary account number).
    (&["credit", "card"], Some(Class::Card)),
    (&["debit", "card"], Some(Class::Card)),
    (&["card", "number"], Some(Class::Card)),
    (&["card", "no"], Some(Class::Card)),
    (&["card", "num"], Some(Class::Card)),
    (&["card", "pan"], Some(Class::Card)),
    (&["cc", "number"], Some(Class::Card)),
    (&["cc", "num"], Some(Class::Card)),
    (&["cc", "no"], Some(Class::Card)),
    (&["ccn"], Some(Class::Card)),
    (&["primary", "account", "number"], Some(Class::Card)),
    (&["pan"], Some(Class::Card)),
    (&["iban"], Some(Class::Iban)),
    // Bank accounts.
    (&["bank", "account"], Some(Class::BankAccount)),
    (&["account", "number"], Some(Class::BankAccount)),
    (&["account", "no"], Some(Class::BankAccount)),
    (&["account", "num"], Some(Class::BankAccount)),
    (&["acct", "number"], Some(Class::BankAccount)),
    (&["acct", "no"], Some(Class::BankAccount)),
    (&["acct", "num"], Some(Class::BankAccount)),
    (&["routing", "number"], Some(Class::BankAccount)),
    (&["sort", "code"], Some(Class::BankAccount)),
    // Dates of birth.
    (&["date", "of", "birth"], Some(Class::DateOfBirth)),
    (&["birth", "date"], Some(Class::DateOfBirth)),
    (&["birthdate"], Some(Class::DateOfBirth)),
    (&["birthday"], Some(Class::DateOfBirth)),
    (&["dob"], Some(Class::DateOfBirth)),
    // Addresses.
    (&["street", "name"], Some(Class::Address)),
    (&["street"], Some(Class::Address)),
    (&["address"], Some(Class::Address)),
    (&["addr"], Some(Class::Address)),
    // People's names.
    (&["first", "name"], Some(Class::PersonName)),
    (&["last", "name"], Some(Class::PersonName)),
    (&["full", "name"], Some(Class::PersonName)),
    (&["middle", "name"], Some(Class::PersonName)),
    (&["given", "name"], Some(Class::PersonName)),
    (&["family", "name"], Some(Class::PersonName)),
    (&["maiden", "name"], Some(Class::PersonName)),
    (&["legal", "name"], Some(Class::PersonName)),
    (&["display", "name"], Some(Class::PersonName)),
    (&["customer", "name"], Some(Class::PersonName)),
    (&["person", "name"], Some(Class::PersonName)),
    (&["contact", "name"], Some(Class::PersonName)),
    (&["patient", "name"], Some(Class::PersonName)),
    (&["employee", "name"], Some(Class::PersonName)),
    (&["cardholder", "name"], Some(Class::PersonName)),
    (&["holder", "name"], Some(Class::PersonName)),
    (&["recipient", "name"], Some(Class::PersonName)),
    (&["sender", "name"], Some(Class::PersonName)),
    (&["billing", "name"], Some(Class::PersonName)),
    (&["shipping", "name"], Some(Class::PersonName)),
    (&["surname"], Some(Class::PersonName)),
    (&["forename"], Some(Class::PersonName)),
    (&["fname"], Some(Class::PersonName)),
    (&["lname"], Some(Class::PersonName)),
];

/// Run-together spellings, read as their words.
const COMPOUNDS: &[(&str, &[&str])] = &[
    ("firstname", &["first", "name"]),
    ("lastname", &["last", "name"]),
    ("fullname", &["full", "name"]),
    ("middlename", &["middle", "name"]),
    ("givenname", &["given", "name"]),
    ("familyname", &["family", "name"]),
    ("displayname", &["display", "name"]),
    ("username", &["user", "name"]),
    ("emailaddress", &["email", "address"]),
    ("mailaddress", &["mail", "address"]),
    ("phonenumber", &["phone", "number"]),
    ("phoneno", &["phone", "no"]),
    ("mobilenumber", &["mobile", "number"]),
    ("mobileno", &["mobile", "no"]),
    ("mobilephone", &["mobile", "phone"]),
    ("telno", &["tel", "no"]),
    ("dateofbirth", &["date", "of", "birth"]),
    ("birthdate", &["birthdate"]),
    ("apikey", &["api", "key"]),
    ("secretkey", &["secret", "key"]),
    ("privatekey", &["private", "key"]),
    ("accesskey", &["access", "key"]),
    ("clientsecret", &["client", "secret"]),
    ("accesstoken", &["access", "token"]),
    ("refreshtoken", &["refresh", "token"]),
    ("authtoken", &["auth", "token"]),
    ("sessiontoken", &["session", "token"]),
    ("idtoken", &["id", "token"]),
    ("passwordhash", &["password", "hash"]),
    ("hashedpassword", &["hashed", "password"]),
    ("pwhash", &["pw", "hash"]),
    ("creditcard", &["credit", "card"]),
    ("cardnumber", &["card", "number"]),
    ("ccnumber", &["cc", "number"]),
    ("ccnum", &["cc", "num"]),
    ("accountnumber", &["account", "number"]),
    ("acctno", &["acct", "no"]),
    ("bankaccount", &["bank", "account"]),
    ("routingnumber", &["routing", "number"]),
    ("streetaddress", &["street", "address"]),
    ("socialsecuritynumber", &["social", "security", "number"]),
    ("nationalid", &["national", "id"]),
    ("taxid", &["tax", "id"]),
    ("ipaddress", &["ip", "address"]),
    ("macaddress", &["mac", "address"]),
    ("last4", &["last"]),
    ("lastfour", &["last"]),
];

/// Lowercase words of an identifier: split at non-alphanumerics, at
/// lower-to-upper and at letter/digit changes (`HTTPServer` → `http
/// server`); digits are dropped; compounds are expanded.
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut raw: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let split = if !c.is_alphanumeric() {
            true
        } else if let Some(&prev) = i.checked_sub(1).and_then(|j| chars.get(j)) {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_uppercase() && c.is_uppercase() && next_lower)
                || (prev.is_ascii_digit() != c.is_ascii_digit() && prev.is_alphanumeric())
        } else {
            false
        };
        if split && !current.is_empty() {
            raw.push(std::mem::take(&mut current));
        }
        if c.is_alphanumeric() {
            current.extend(c.to_lowercase());
        }
    }
    if !current.is_empty() {
        raw.push(current);
    }
    let mut out = Vec::with_capacity(raw.len());
    for word in raw {
        // `last4` splits into `last` and `4`; keep the digit's meaning.
        if word.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        match COMPOUNDS.iter().find(|(compound, _)| *compound == word) {
            Some((_, parts)) => out.extend(parts.iter().map(|p| p.to_string())),
            None => out.push(word),
        }
    }
    out
}

/// A comment's words (no camelCase splitting: prose is lowercase already).
fn words_of_comment(comment: &str) -> Vec<String> {
    comment
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .flat_map(
            |w| match COMPOUNDS.iter().find(|(compound, _)| *compound == w) {
                Some((_, parts)) => parts.iter().map(|p| p.to_string()).collect(),
                None => vec![w.to_string()],
            },
        )
        .collect()
}

/// The rightmost phrase in `words`: (its class, the index after it).
fn rightmost_phrase(words: &[String]) -> Option<(Option<Class>, usize)> {
    (1..=words.len()).rev().find_map(|end| {
        PHRASES.iter().find_map(|(phrase, class)| {
            let start = end.checked_sub(phrase.len())?;
            words[start..end]
                .iter()
                .zip(phrase.iter())
                .all(|(w, p)| w == p)
                .then_some((*class, end))
        })
    })
}

fn by_name(words: &[String]) -> Reading {
    let Some(first) = words.first() else {
        return Reading::Silent;
    };
    if words.len() > 1 && FLAG_OR_COUNT_PREFIXES.contains(&first.as_str()) {
        return Reading::About;
    }
    let about = || {
        if ABOUT_WORDS.contains(&words[words.len() - 1].as_str()) {
            Reading::About
        } else {
            Reading::Silent
        }
    };
    match rightmost_phrase(words) {
        Some((class, end))
            if words[end..]
                .iter()
                .all(|w| QUALIFIERS.contains(&w.as_str())) =>
        {
            match class {
                Some(class) => Reading::Class(class),
                None => Reading::About,
            }
        }
        _ => about(),
    }
}

/// A class named by a comment's words, anywhere in it.
fn by_phrase(words: &[String]) -> Option<Class> {
    // Comments describing flags and counts talk about values they do not hold.
    const ABOUT: &[&str] = &[
        "whether",
        "flag",
        "count",
        "references",
        "foreign",
        "indicates",
        "hash",
        "hashed",
    ];
    if words.iter().any(|w| ABOUT.contains(&w.as_str())) {
        // A comment saying "bcrypt hash of the password" still classifies.
        let hashes_password = words.iter().any(|w| w == "password" || w == "passwords");
        return hashes_password
            .then_some(Class::PasswordHash)
            .filter(|_| words.iter().any(|w| w == "hash" || w == "hashed"));
    }
    // The ones a bare word would be too loose for (`pan`, `tel`, `sin`,
    // `street`) are not read from comments.
    const LOOSE: &[&str] = &[
        "pan", "tel", "sin", "tin", "nin", "cell", "mobile", "street", "addr", "secret", "bearer",
    ];
    (1..=words.len()).find_map(|end| {
        PHRASES.iter().find_map(|(phrase, class)| {
            if phrase.len() == 1 && LOOSE.contains(&phrase[0]) {
                return None;
            }
            let start = end.checked_sub(phrase.len())?;
            words[start..end]
                .iter()
                .zip(phrase.iter())
                .all(|(w, p)| w == p)
                .then_some(*class)?
        })
    })
}

/// `pii:<class>`, `sensitive:<class>` (`:` or `=`, spaces allowed),
/// `pii:none`, `not sensitive`, `non-sensitive`, `not pii`. `Some(None)`
/// removes any class; an unknown class name is ignored.
fn explicit_tag(comment: &str) -> Option<Option<Class>> {
    for negation in [
        "not sensitive",
        "non-sensitive",
        "nonsensitive",
        "not pii",
        "non-pii",
        "no pii",
    ] {
        if comment.contains(negation) {
            return Some(None);
        }
    }
    for tag in ["pii", "sensitive"] {
        let mut rest = comment;
        while let Some(at) = rest.find(tag) {
            let after = &rest[at + tag.len()..];
            let word_start = at == 0 || !rest[..at].ends_with(|c: char| c.is_alphanumeric());
            rest = after;
            let Some(value) = after.trim_start().strip_prefix([':', '=']) else {
                continue;
            };
            if !word_start {
                continue;
            }
            let value = value.trim_start();
            let word: String = value
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            let word = word.replace('-', "_");
            if matches!(word.as_str(), "none" | "no" | "false" | "off") {
                return Some(None);
            }
            if let Some(class) = Class::from_name(&word).or_else(|| alias(&word)) {
                return Some(Some(class));
            }
        }
    }
    None
}

fn alias(word: &str) -> Option<Class> {
    Some(match word {
        "mail" | "e_mail" | "email_address" => Class::Email,
        "telephone" | "mobile" | "phone_number" => Class::Phone,
        "ssn" | "national_identifier" | "tax_id" | "passport" => Class::NationalId,
        "credit_card" | "pan" | "card_number" | "cc" => Class::Card,
        "account" | "bank" | "account_number" => Class::BankAccount,
        "dob" | "birthdate" | "birth_date" | "birthday" => Class::DateOfBirth,
        "addr" | "postal_address" => Class::Address,
        "name" | "full_name" => Class::PersonName,
        "hash" | "password_digest" => Class::PasswordHash,
        "pwd" | "passwd" => Class::Password,
        "jwt" | "access_token" => Class::Token,
        "apikey" | "key" => Class::ApiKey,
        "credentials" | "private_key" => Class::Secret,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases: &[(&str, Option<Class>)] = &[
            ("email", Some(Class::Email)),
            ("e_mail", Some(Class::Email)),
            ("EmailAddress", Some(Class::Email)),
            ("customer_email", Some(Class::Email)),
            ("mail_address", Some(Class::Email)),
            ("contact_email_2", Some(Class::Email)),
            ("phone", Some(Class::Phone)),
            ("phone_number", Some(Class::Phone)),
            ("mobilePhone", Some(Class::Phone)),
            ("cell", Some(Class::Phone)),
            ("fax_no", Some(Class::Phone)),
            ("tel", Some(Class::Phone)),
            ("ssn", Some(Class::NationalId)),
            ("SSN", Some(Class::NationalId)),
            ("social_security_number", Some(Class::NationalId)),
            ("national_id", Some(Class::NationalId)),
            ("tax_id", Some(Class::NationalId)),
            ("passport_number", Some(Class::NationalId)),
            ("nino", Some(Class::NationalId)),
            ("aadhaar", Some(Class::NationalId)),
            ("card_number", Some(Class::Card)),
            ("cc_number", Some(Class::Card)),
            ("credit_card", Some(Class::Card)),
            ("creditCardNumber", Some(Class::Card)),
            ("pan", Some(Class::Card)),
            ("iban", Some(Class::Iban)),
            ("IBAN", Some(Class::Iban)),
            ("account_number", Some(Class::BankAccount)),
            ("bank_account", Some(Class::BankAccount)),
            ("routing_number", Some(Class::BankAccount)),
            ("acct_no", Some(Class::BankAccount)),
            ("dob", Some(Class::DateOfBirth)),
            ("birth_date", Some(Class::DateOfBirth)),
            ("date_of_birth", Some(Class::DateOfBirth)),
            ("dateOfBirth", Some(Class::DateOfBirth)),
            ("birthday", Some(Class::DateOfBirth)),
            ("address", Some(Class::Address)),
            ("street", Some(Class::Address)),
            ("addr", Some(Class::Address)),
            ("postal_address", Some(Class::Address)),
            ("billing_address", Some(Class::Address)),
            ("address_line_1", Some(Class::Address)),
            ("address2", Some(Class::Address)),
            ("first_name", Some(Class::PersonName)),
            ("last_name", Some(Class::PersonName)),
            ("lastName", Some(Class::PersonName)),
            ("firstname", Some(Class::PersonName)),
            ("full_name", Some(Class::PersonName)),
            ("surname", Some(Class::PersonName)),
            ("given_name", Some(Class::PersonName)),
            ("customer_name", Some(Class::PersonName)),
            ("person_name", Some(Class::PersonName)),
            ("contact_name", Some(Class::PersonName)),
            ("password", Some(Class::Password)),
            ("passwd", Some(Class::Password)),
            ("pwd", Some(Class::Password)),
            ("user_password", Some(Class::Password)),
            ("password_hash", Some(Class::PasswordHash)),
            ("pw_hash", Some(Class::PasswordHash)),
            ("hashed_password", Some(Class::PasswordHash)),
            ("encrypted_password", Some(Class::PasswordHash)),
            ("passwordHash", Some(Class::PasswordHash)),
            ("rolpassword", Some(Class::PasswordHash)),
            ("token", Some(Class::Token)),
            ("access_token", Some(Class::Token)),
            ("refresh_token", Some(Class::Token)),
            ("session_token", Some(Class::Token)),
            ("auth_token", Some(Class::Token)),
            ("password_reset_token", Some(Class::Token)),
            ("api_key", Some(Class::ApiKey)),
            ("apikey", Some(Class::ApiKey)),
            ("apiKey", Some(Class::ApiKey)),
            ("secret_key", Some(Class::ApiKey)),
            ("client_secret", Some(Class::Secret)),
            ("secret", Some(Class::Secret)),
            ("webhook_secret", Some(Class::Secret)),
            ("private_key", Some(Class::Secret)),
            ("credentials", Some(Class::Secret)),
            ("aws_secret_access_key", Some(Class::Secret)),
            // Not values.
            ("name", None),
            ("product_name", None),
            ("file_name", None),
            ("username", None),
            ("user_name", None),
            ("token_count", None),
            ("tokens", None),
            ("prompt_tokens", None),
            ("max_tokens", None),
            ("token_type", None),
            ("token_expires_at", None),
            ("email_verified", None),
            ("emailVerified", None),
            ("email_verified_at", None),
            ("is_email", None),
            ("has_password", None),
            ("phone_type", None),
            ("password_changed_at", None),
            ("password_updated_at", None),
            ("card_type", None),
            ("card_last4", None),
            ("address_id", None),
            ("customer_id", None),
            ("api_key_id", None),
            ("session_id", None),
            ("ip_address", None),
            ("IPAddress", None),
            ("mac_address", None),
            ("created_at", None),
            ("num_phones", None),
            ("email_domain", None),
            ("email_hash", None),
            ("email_template_name", None),
            ("postcode", None),
            ("zip", None),
            ("city", None),
            ("card", None),
            ("key", None),
            ("cache_key", None),
            ("", None),
            ("_", None),
            ("id", None),
        ];
        for (name, class) in cases {
            assert_eq!(classify_column(name, None), *class, "{name}");
        }
    }

    #[test]
    fn comments() {
        let cases: &[(&str, &str, Option<Class>)] = &[
            ("c1", "PII: email", Some(Class::Email)),
            ("c1", "pii:national_id", Some(Class::NationalId)),
            ("c1", "sensitive: card", Some(Class::Card)),
            ("c1", "Sensitive=SSN", Some(Class::NationalId)),
            (
                "c1",
                "Customer social security number",
                Some(Class::NationalId),
            ),
            ("c1", "The credit card used", Some(Class::Card)),
            ("c1", "primary email address", Some(Class::Email)),
            ("c1", "Customer's date of birth", Some(Class::DateOfBirth)),
            (
                "c1",
                "bcrypt hash of the password",
                Some(Class::PasswordHash),
            ),
            (
                "legacy_field",
                "holds the user's phone number",
                Some(Class::Phone),
            ),
            // An explicit tag wins over the name.
            ("email", "pii:none", None),
            ("email", "Not sensitive: a shared role mailbox", None),
            ("notes", "PII: person_name", Some(Class::PersonName)),
            ("phone", "pii: email", Some(Class::Email)),
            // A name that describes a value is not classified by its comment.
            ("verified", "whether the email address was verified", None),
            ("email_verified", "email address verified", None),
            ("contact_id", "references the contact's email address", None),
            // Unknown tags and prose without phrases say nothing.
            ("c1", "pii: maybe", None),
            ("c1", "free text", None),
            ("email", "free text", Some(Class::Email)),
            ("c1", "the pan handle", None),
            ("api", "pii:api_key", Some(Class::ApiKey)),
        ];
        for (name, comment, class) in cases {
            assert_eq!(
                classify_column(name, Some(comment)),
                *class,
                "{name} / {comment}"
            );
        }
    }

    #[test]
    fn splitting() {
        assert_eq!(words("HTTPServerAddress"), ["http", "server", "address"]);
        assert_eq!(words("address_line2"), ["address", "line"]);
        assert_eq!(words("cardLast4"), ["card", "last"]);
        assert_eq!(words("e-mail"), ["e", "mail"]);
        assert_eq!(words("  "), Vec::<String>::new());
    }
}

#[cfg(test)]
mod declared_tests {
    use super::*;

    #[test]
    fn comments_that_say_not_sensitive() {
        for c in [
            "pii:none",
            "PII: none",
            "Not sensitive: test data",
            "sensitive=no",
        ] {
            assert!(declared_not_sensitive(c), "{c}");
        }
        for c in ["pii:email", "customer contact", "", "sensitive"] {
            assert!(!declared_not_sensitive(c), "{c}");
        }
    }
}
