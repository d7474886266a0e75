use super::validate::{base62_6, crc32};
use super::*;

fn classes(text: &str) -> Vec<(String, Class)> {
    let d = Detectors::new();
    d.find(text.as_bytes(), None)
        .into_iter()
        .map(|h| (text[h.start..h.end].to_owned(), h.class))
        .collect()
}

fn one(text: &str) -> Option<Class> {
    match classes(text).as_slice() {
        [] => None,
        [(_, c)] => Some(*c),
        more => panic!("{text}: {more:?}"),
    }
}

fn github_token(body30: &str) -> String {
    let sum = base62_6(crc32(body30.as_bytes()));
    format!("ghp_{body30}{}", std::str::from_utf8(&sum).unwrap())
}

#[test]
fn what_is_found() {
    let cases: &[(&str, &str, Class)] = &[
        (
            "mail alice.smithson@example.com now",
            "alice.smithson@example.com",
            Class::Email,
        ),
        (
            "<bob+tag@mail.example.co.uk>.",
            "bob+tag@mail.example.co.uk",
            Class::Email,
        ),
        ("card 4539148803436467 ok", "4539148803436467", Class::Card),
        (
            "card 4539 1488 0343 6467",
            "4539 1488 0343 6467",
            Class::Card,
        ),
        ("amex 3782-822463-10005", "3782-822463-10005", Class::Card),
        ("mc 5555555555554444", "5555555555554444", Class::Card),
        ("ssn 536-22-8174.", "536-22-8174", Class::NationalId),
        (
            "call +44 20 7946 0958 today",
            "+44 20 7946 0958",
            Class::Phone,
        ),
        ("call +1 (415) 555-0199", "+1 (415) 555-0199", Class::Phone),
        (
            "iban GB82WEST12345698765432",
            "GB82WEST12345698765432",
            Class::Iban,
        ),
        (
            "iban DE89 3704 0044 0532 0130 00 x",
            "DE89 3704 0044 0532 0130 00",
            Class::Iban,
        ),
        (
            "key AKIAIOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPLE",
            Class::ApiKey,
        ),
        (
            "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            Class::ApiKey,
        ),
        (
            "x AIzaSyA-1234567890abcdefghijklmnopqrstu y",
            "AIzaSyA-1234567890abcdefghijklmnopqrstu",
            Class::ApiKey,
        ),
        (
            "postgres://app:s3cr3t-pw@db.internal:5432/shop",
            "s3cr3t-pw",
            Class::Secret,
        ),
        (
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            Class::PasswordHash,
        ),
        (
            "xoxb-2401234567-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "xoxb-2401234567-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            Class::Token,
        ),
        (
            "glpat-abcdefghij0123456789",
            "glpat-abcdefghij0123456789",
            Class::Token,
        ),
    ];
    for (text, want, class) in cases {
        assert_eq!(classes(text), vec![(want.to_string(), *class)], "{text}");
    }
}

#[test]
fn github_tokens_need_their_checksum() {
    let good = github_token("Ky9Pf34qY6Nb3wWD25RQ4F5ZR3qa7y");
    assert_eq!(good, "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");
    assert_eq!(one(&format!("token {good} end")), Some(Class::Token));
    let bad = format!("{}AAAAAA", &good[..34]);
    assert_eq!(one(&bad), None);
}

#[test]
fn jwts_need_a_header() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    assert_eq!(one(&format!("Bearer {jwt}")), Some(Class::Token));
    // "eyJ" + a segment that decodes to something else.
    assert_eq!(one("eyJub3RoaW5nIjoxfQ.eyJ4IjoxfQ.sig"), None);
    assert_eq!(one("eyJhbGciOiJIUzI1NiJ9"), None, "one segment");
}

#[test]
fn private_keys_are_found_whole() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
    let text = format!("key:\n{pem}\nafter");
    assert_eq!(classes(&text), vec![(pem.to_owned(), Class::Secret)]);
    let ssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n-----END OPENSSH PRIVATE KEY-----";
    assert_eq!(one(ssh), Some(Class::Secret));
    assert_eq!(
        one("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
        None
    );
}

#[test]
fn what_is_not_found() {
    for text in [
        "user@localhost",
        "a@b.notatld",
        "icon@2x.png",
        "4539148803436468",
        "1234567812345678",
        "000-12-3456",
        "666-12-3456",
        "912-12-3456",
        "123-00-4567",
        "123-45-0000",
        "GB82WEST12345698765433",
        "DE89370400440532013001",
        "order 123456789",
        "v1.2.3-4",
        "2024-01-15 10:30:00",
        "550e8400-e29b-41d4-a716-446655440000",
        "ghp_short",
        "sk-notakey",
        "AKIA123",
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16",
        "ssn12345678901234",
        "https://example.com/path?x=1",
    ] {
        assert_eq!(classes(text), vec![], "{text}");
    }
}

#[test]
fn weak_detectors_need_the_column_class() {
    let d = Detectors::new();
    assert!(d.find(b"536228174", None).is_empty());
    assert_eq!(d.find(b"536228174", Some(Class::NationalId)).len(), 1);
    assert!(d.find(b"020 7946 0958", None).is_empty());
    assert_eq!(d.find(b"020 7946 0958", Some(Class::Phone)).len(), 1);
    assert_eq!(
        d.find(b"Alice Smithson", Some(Class::PersonName)),
        vec![Hit {
            start: 0,
            end: 14,
            class: Class::PersonName
        }]
    );
    assert!(d.find(b"   ", Some(Class::PersonName)).is_empty());
}

#[test]
fn hits_are_ordered_and_disjoint_on_any_input() {
    let d = Detectors::new();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let alphabet = b"0123456789 -+@.:/$abcxyzABCXYZ_eyJGBDEghp\n";
    for round in 0..3000 {
        let len = (round % 97) + 1;
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let b = if seed.is_multiple_of(5) {
                (seed >> 8) as u8
            } else {
                alphabet[(seed >> 8) as usize % alphabet.len()]
            };
            v.push(b);
        }
        exercise(&d, &v);
    }
}
