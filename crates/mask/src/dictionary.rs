//! The zero-configuration classification of catalog columns: what a
//! column holds, judged from its name and its comment.
//!
//! Names are split into lower-case words at `_`, `-`, spaces, digits and
//! camelCase boundaries (`customerEmail2` → `customer email`), then matched
//! against phrases. The rules lean towards precision: a bare `name` or
//! `address_id` says too little, and flags, counts, timestamps and foreign
//! keys about a sensitive thing (`email_verified`, `token_count`,
//! `password_changed_at`, `card_type`, `phone_id`) are not the thing.
//! A comment may say outright what a column holds (`pii:email`,
//! `sensitive:secret`, `pii:none`), which wins over the name.

use crate::Class;

/// What `name` (with `comment`, if any) holds, or `None`.
pub fn classify_column(name: &str, comment: Option<&str>) -> Option<Class> {
    if let Some(tagged) = comment.and_then(tag) {
        return tagged;
    }
    let words = words(name);
    let by_name = classify_words(&words);
    if by_name.is_some() {
        return by_name;
    }
    comment.and_then(|c| classify_phrase(&c.to_lowercase()))
}

/// An explicit tag in a comment: `pii:<class>` or `sensitive:<class>`
/// (`Some(None)` for `pii:none`, `not sensitive`).
fn tag(comment: &str) -> Option<Option<Class>> {
    let lower = comment.to_lowercase();
    if lower.contains("not sensitive") || lower.contains("not pii") {
        return Some(None);
    }
    for prefix in ["pii:", "sensitive:", "portcullis:"] {
        if let Some(at) = lower.find(prefix) {
            let rest = lower[at + prefix.len()..].trim_start();
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if word == "none" {
                return Some(None);
            }
            if let Some(c) = Class::from_name(&word) {
                return Some(Some(c));
            }
        }
    }
    None
}

/// Lower-case words of an identifier.
fn words(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if !ch.is_alphanumeric() || ch.is_ascii_digit() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = ch.is_lowercase();
        cur.extend(ch.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Words that, last in a name, make it about a sensitive thing rather
/// than the thing: flags, counts, times, kinds, keys to other rows.
const NOT_THE_VALUE: &[&str] = &[
    "id",
    "ids",
    "count",
    "counts",
    "at",
    "on",
    "date",
    "time",
    "ts",
    "type",
    "types",
    "kind",
    "status",
    "verified",
    "confirmed",
    "valid",
    "enabled",
    "disabled",
    "required",
    "optin",
    "optout",
    "opt",
    "length",
    "len",
    "size",
    "hint",
    "policy",
    "format",
    "expiry",
    "expires",
    "expiration",
    "attempts",
    "changed",
    "updated",
    "created",
    "reset",
    "sent",
    "last",
    "brand",
    "provider",
    "country",
    "region",
    "bounced",
    "domain",
    "prefix",
    "suffix",
    "hashed",
    "algorithm",
    "algo",
    "salt",
    "version",
    "scope",
    "scopes",
    "label",
    "name",
];

/// Words that, first in a name, make it a flag (`is_email`, `has_phone`).
const FLAG_PREFIX: &[&str] = &[
    "is", "has", "can", "should", "allow", "use", "needs", "num", "n",
];

fn classify_words(w: &[String]) -> Option<Class> {
    if w.is_empty() {
        return None;
    }
    let has = |x: &str| w.iter().any(|y| y == x);
    let pair = |a: &str, b: &str| w.windows(2).any(|p| p[0] == a && p[1] == b);
    let last = w.last().map(String::as_str).unwrap_or("");
    let first = w[0].as_str();
    if FLAG_PREFIX.contains(&first) && w.len() > 1 {
        return None;
    }
    // Password hashes before passwords, secrets before tokens.
    let password = has("password") || has("passwd") || has("pwd") || has("passphrase");
    if password {
        if has("hash") || has("hashed") || has("digest") || has("encrypted") || has("crypt") {
            return Some(Class::PasswordHash);
        }
        if matches!(
            last,
            "at" | "date"
                | "changed"
                | "updated"
                | "reset"
                | "attempts"
                | "policy"
                | "hint"
                | "required"
                | "expires"
                | "expiry"
                | "length"
                | "algorithm"
                | "salt"
                | "version"
        ) {
            return None;
        }
        return Some(Class::Password);
    }
    let ends_about = NOT_THE_VALUE.contains(&last) && w.len() > 1;
    if (has("private") && has("key")) || pair("secret", "key") || pair("client", "secret") {
        return (!ends_about || last == "key").then_some(Class::Secret);
    }
    if pair("api", "key") || has("apikey") || pair("access", "key") {
        return (!ends_about || last == "key").then_some(Class::ApiKey);
    }
    if has("secret") || has("credentials") || has("credential") {
        return (!ends_about).then_some(Class::Secret);
    }
    if has("token") || has("jwt") || pair("session", "key") || has("bearer") {
        return (!ends_about).then_some(Class::Token);
    }
    let person = [
        "first",
        "last",
        "full",
        "given",
        "family",
        "middle",
        "maiden",
        "customer",
        "person",
        "contact",
        "legal",
        "display",
        "user",
        "patient",
        "employee",
        "holder",
        "cardholder",
        "account",
        "billing",
        "shipping",
        "recipient",
    ];
    if has("name") && w.len() >= 2 && person.iter().any(|p| has(p)) {
        return Some(Class::PersonName);
    }
    if has("surname") || has("forename") || has("firstname") || has("lastname") || has("fullname") {
        return Some(Class::PersonName);
    }
    // Dates of birth end in "date" and are the date itself.
    if has("dob") || has("birthday") || has("birthdate") || (has("birth") && has("date")) {
        return Some(Class::DateOfBirth);
    }
    // Identifiers that end in "id" and are the identifier itself.
    if pair("national", "id") || pair("tax", "id") || pair("personal", "id") {
        return Some(Class::NationalId);
    }
    if ends_about {
        return None;
    }
    if has("email") || has("mail") || pair("e", "mail") || has("emailaddress") {
        return Some(Class::Email);
    }
    if has("ssn")
        || pair("social", "security")
        || pair("national", "id")
        || pair("national", "identifier")
        || has("nin")
        || has("nino")
        || pair("tax", "id")
        || has("tin")
        || has("itin")
        || has("passport")
        || has("aadhaar")
        || pair("driver", "license")
        || pair("drivers", "license")
        || pair("licence", "number")
        || pair("id", "number")
        || has("sin") && w.len() == 1
    {
        return Some(Class::NationalId);
    }
    if pair("card", "number")
        || pair("card", "no")
        || pair("card", "num")
        || pair("credit", "card")
        || pair("cc", "number")
        || pair("cc", "num")
        || (has("pan") && w.len() <= 2)
        || has("ccnum")
    {
        return Some(Class::Card);
    }
    if has("iban") {
        return Some(Class::Iban);
    }
    if pair("account", "number")
        || pair("account", "no")
        || pair("acct", "no")
        || pair("acct", "number")
        || pair("bank", "account")
        || pair("routing", "number")
        || has("bic") && w.len() == 1
        || pair("sort", "code")
    {
        return Some(Class::BankAccount);
    }
    if has("phone")
        || has("mobile")
        || has("cellphone")
        || has("telephone")
        || has("tel")
        || has("fax")
        || has("msisdn")
        || (has("cell") && w.len() <= 2)
    {
        return Some(Class::Phone);
    }
    if has("address")
        || has("addr")
        || has("street")
        || pair("address", "line")
        || has("postcode")
        || has("zipcode")
        || (has("zip") && w.len() == 1)
    {
        // An IP or MAC address is not where someone lives.
        if has("ip") || has("mac") || has("ipv") || has("remote") || has("web") {
            return None;
        }
        return Some(Class::Address);
    }
    None
}

/// A comment's own words, for the common ways of saying what a column is.
fn classify_phrase(c: &str) -> Option<Class> {
    let rules: &[(&str, Class)] = &[
        ("social security", Class::NationalId),
        ("national id", Class::NationalId),
        ("passport", Class::NationalId),
        ("credit card", Class::Card),
        ("card number", Class::Card),
        ("iban", Class::Iban),
        ("bank account", Class::BankAccount),
        ("email address", Class::Email),
        ("e-mail", Class::Email),
        ("phone number", Class::Phone),
        ("date of birth", Class::DateOfBirth),
        ("birth date", Class::DateOfBirth),
        ("home address", Class::Address),
        ("postal address", Class::Address),
        ("password hash", Class::PasswordHash),
        ("hashed password", Class::PasswordHash),
        ("api key", Class::ApiKey),
        ("access token", Class::Token),
        ("private key", Class::Secret),
    ];
    rules
        .iter()
        .find(|(phrase, _)| c.contains(phrase))
        .map(|(_, k)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_hold_the_thing() {
        let cases: &[(&str, Class)] = &[
            ("email", Class::Email),
            ("customer_email", Class::Email),
            ("EmailAddress", Class::Email),
            ("e_mail", Class::Email),
            ("contactEmail2", Class::Email),
            ("phone", Class::Phone),
            ("phone_number", Class::Phone),
            ("mobile", Class::Phone),
            ("fax", Class::Phone),
            ("ssn", Class::NationalId),
            ("social_security_number", Class::NationalId),
            ("national_id", Class::NationalId),
            ("passport_number", Class::NationalId),
            ("tax_id", Class::NationalId),
            ("card_number", Class::Card),
            ("cc_number", Class::Card),
            ("credit_card", Class::Card),
            ("pan", Class::Card),
            ("iban", Class::Iban),
            ("account_number", Class::BankAccount),
            ("bank_account", Class::BankAccount),
            ("routing_number", Class::BankAccount),
            ("dob", Class::DateOfBirth),
            ("date_of_birth", Class::DateOfBirth),
            ("birth_date", Class::DateOfBirth),
            ("birthday", Class::DateOfBirth),
            ("address", Class::Address),
            ("street_address", Class::Address),
            ("billing_address", Class::Address),
            ("postcode", Class::Address),
            ("full_name", Class::PersonName),
            ("first_name", Class::PersonName),
            ("lastName", Class::PersonName),
            ("customer_name", Class::PersonName),
            ("surname", Class::PersonName),
            ("password", Class::Password),
            ("passwd", Class::Password),
            ("password_hash", Class::PasswordHash),
            ("hashed_password", Class::PasswordHash),
            ("encrypted_password", Class::PasswordHash),
            ("token", Class::Token),
            ("api_token", Class::Token),
            ("access_token", Class::Token),
            ("refresh_token", Class::Token),
            ("api_key", Class::ApiKey),
            ("apikey", Class::ApiKey),
            ("aws_access_key", Class::ApiKey),
            ("client_secret", Class::Secret),
            ("secret_key", Class::Secret),
            ("private_key", Class::Secret),
            ("webhook_secret", Class::Secret),
        ];
        for (name, want) in cases {
            assert_eq!(classify_column(name, None), Some(*want), "{name}");
        }
    }

    #[test]
    fn names_about_the_thing_are_not_it() {
        for name in [
            "name",
            "product_name",
            "email_verified",
            "is_email",
            "has_phone",
            "token_count",
            "password_changed_at",
            "password_reset_at",
            "card_type",
            "card_expiry",
            "address_id",
            "phone_id",
            "email_domain",
            "ip_address",
            "remote_addr",
            "mac_address",
            "token_expires_at",
            "id",
            "status",
            "created_at",
            "sku",
            "total_cents",
            "api_key_label",
            "secret_version",
            "company",
            "city",
        ] {
            assert_eq!(classify_column(name, None), None, "{name}");
        }
    }

    #[test]
    fn comments_can_say_or_unsay_it() {
        assert_eq!(
            classify_column("contact", Some("PII: email of the buyer")),
            Some(Class::Email)
        );
        assert_eq!(
            classify_column("x", Some("the customer's social security number")),
            Some(Class::NationalId)
        );
        assert_eq!(classify_column("email", Some("pii:none")), None);
        assert_eq!(
            classify_column("email", Some("Not sensitive: a shared inbox")),
            None
        );
        assert_eq!(
            classify_column("notes", Some("sensitive:secret")),
            Some(Class::Secret)
        );
        assert_eq!(classify_column("notes", Some("free text")), None);
    }

    #[test]
    fn odd_names_do_not_panic() {
        for name in ["", "_", "__x__", "Ünïcödé_Name", "123", "a1b2", "ÉMAIL"] {
            let _ = classify_column(name, Some(""));
        }
        assert_eq!(classify_column("ÉMAIL", None), None);
        assert_eq!(classify_column("EMAIL", None), Some(Class::Email));
    }
}
