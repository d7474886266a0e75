//! The detector set as a whole: anchors, context, ordering and overlap.

use super::*;

fn spans(text: &str, context: Option<Class>) -> Vec<(&str, Class)> {
    Detectors::new()
        .find(text.as_bytes(), context)
        .iter()
        .map(|h| (&text[h.start..h.end], h.class))
        .collect()
}

#[test]
fn a_value_with_many_findings() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    let text = format!(
        "user jane@example.com paid with 4111 1111 1111 1111 from GB82 WEST 1234 5698 7654 32; ssn 123-45-6789, \
         call +44 20 7946 0958; token {jwt}; db postgres://app:s3cret@db/x; key AKIAIOSFODNN7EXAMPLE"
    );
    assert_eq!(
        spans(&text, None),
        [
            ("jane@example.com", Class::Email),
            ("4111 1111 1111 1111", Class::Card),
            ("GB82 WEST 1234 5698 7654 32", Class::Iban),
            ("123-45-6789", Class::NationalId),
            ("+44 20 7946 0958", Class::Phone),
            (jwt, Class::Token),
            ("s3cret", Class::Password),
            ("AKIAIOSFODNN7EXAMPLE", Class::ApiKey),
        ]
    );
}

#[test]
fn nothing_in_ordinary_text() {
    for text in [
        "The quick brown fox jumps over the lazy dog.",
        "2024-01-15T10:23:45.123456Z INFO request id=550e8400-e29b-41d4-a716-446655440000 took 12.5ms",
        r#"{"id": 123456789, "version": "1.2.3", "price": 4111.11, "ratio": 0.4111111111111111}"#,
        "order 4111111111111112 shipped; ref 1234567812345670",
        "ssn 000-12-3456 666-12-3456 900-12-3456",
        "root@localhost a@b.notatld logo@2x.png",
        "order number 5551234567 and 020 7946 0958",
        "eyJmb28iOiJiYXIifQ.eyJzdWIiOiJ4In0.c2ln",
        "GB83 WEST 1234 5698 7654 32",
        "123456789",
        "pip install foo==1.2.3; cost $5 each; 3+4=7",
    ] {
        assert_eq!(spans(text, None), [], "{text}");
    }
}

#[test]
fn context_enables_weak_detectors() {
    assert_eq!(
        spans("123456789", Some(Class::NationalId)),
        [("123456789", Class::NationalId)]
    );
    assert_eq!(
        spans("(555) 123-4567", Some(Class::Phone)),
        [("(555) 123-4567", Class::Phone)]
    );
    assert_eq!(
        spans("root@localhost", Some(Class::Email)),
        [("root@localhost", Class::Email)]
    );
    assert_eq!(
        spans("1234567812345670", Some(Class::Card)),
        [("1234567812345670", Class::Card)]
    );
    assert_eq!(
        spans("Jane Doe", Some(Class::PersonName)),
        [("Jane Doe", Class::PersonName)]
    );
    // The whole value wins over what a strong detector finds inside it.
    assert_eq!(
        spans(" contact jane@example.com ", Some(Class::Secret)),
        [("contact jane@example.com", Class::Secret)]
    );
    // A context of another class does not enable the weak detector.
    assert_eq!(
        spans("123456789", Some(Class::Phone)),
        [("123456789", Class::Phone)]
    );
    assert_eq!(spans("123456789", Some(Class::Email)), []);
}

#[test]
fn private_key_block_is_one_hit() {
    let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ eyJhbGciOiJub25lIn0.e30.\n-----END OPENSSH PRIVATE KEY-----";
    assert_eq!(spans(text, None), [(text, Class::Secret)]);
}

#[test]
fn invalid_utf8_is_fine() {
    let mut text = b"\xff\xfe jane@example.com \xc3".to_vec();
    text.extend_from_slice(b"4111111111111111\x80");
    let hits = Detectors::new().find(&text, None);
    assert_eq!(hits.len(), 2);
    assert_eq!(&text[hits[1].start..hits[1].end], b"4111111111111111");
}

/// Random bytes, biased towards the anchors, never break the promises of
/// `find`.
#[test]
fn random_bytes_keep_the_promises() {
    const ALPHABET: &[u8] = b"0123456789@$+.-_ :/ABCDEGKSaeimoxyzJ\n\xff";
    let detectors = Detectors::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..4000 {
        let len = (next() % 200) as usize;
        let text: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                if round % 2 == 0 {
                    r as u8
                } else {
                    ALPHABET[(r % ALPHABET.len() as u64) as usize]
                }
            })
            .collect();
        for context in std::iter::once(None).chain(Class::ALL.into_iter().map(Some)) {
            check_hits(&text, &detectors.find(&text, context));
        }
    }
    exercise_detectors(b"4111 1111 1111 1111 jane@example.com");
}

/// [`Detectors::find`] written as plainly as it can be: every digit run and
/// every occurrence of every literal is tried. The bitmaps, the two
/// automata and the skipping must change nothing.
fn plain_find(text: &[u8], context: Option<Class>) -> Vec<Hit> {
    let mut hits = Vec::new();
    punctuation(text, context, &mut hits);
    let (mut from, mut resume) = (0, 0);
    while let Some(start) = scan::find_digit(text, from) {
        let end = scan::digits_end(text, start);
        if start >= resume {
            if let Some(hit) = digit_run(text, start, end, context) {
                resume = hit.end;
                hits.push(hit);
            }
        }
        from = end;
    }
    for start in 0..text.len() {
        for (literal, anchor) in literals() {
            if text[start..].starts_with(literal.as_bytes()) {
                hits.extend(literal_hit(text, start, anchor));
            }
        }
    }
    if let Some(class) = context {
        context::find(text, class, &mut hits);
    }
    settle(hits)
}

fn agrees_with_plain_find(detectors: &Detectors, text: &[u8]) {
    for context in [None, Some(Class::NationalId), Some(Class::Card)] {
        assert_eq!(
            detectors.find(text, context),
            plain_find(text, context),
            "{:?} in {context:?}",
            String::from_utf8_lossy(text)
        );
    }
}

/// Pieces of findings and near-misses, glued at random and cut at random
/// lengths, so that runs and literals straddle the 64-byte blocks of the
/// digit pass and each other.
#[test]
fn fast_passes_agree_with_plain_ones() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    let github = token::github_token("ghp_", b"PortcullisFixtureToken0123456x");
    let pieces = [
        "4111 1111 1111 1111",
        "4111111111111111",
        "1234",
        "123",
        "123-45-6789",
        "123 45 6789",
        "123456789",
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "DE",
        "GB8",
        "2024-01-15T10:23:45.123Z",
        "0.4111111111111111",
        "10.0.0.1:5432",
        " ",
        "-",
        ".",
        "_",
        "é",
        "日本",
        "\u{1F600}",
        "x",
        "ID",
        "jane@example.com",
        "+44 20 7946 0958",
        jwt,
        "eyJ",
        "md5",
        "md5a3556571e93b0d20722ba62be61e8c2d",
        "sk-",
        "sk-proj-abcdefghijklmnopqrstuvwxyz",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "task_id",
        "risk-based",
        "md5sum",
        "xoxb-",
        "xoxb-1234567890-abcdefghij",
        "-----BEGIN ",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
        "AKIAIOSFODNN7EXAMPLE",
        "SG.",
        "hf_",
        &github,
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "0123456789012345678901234567890123456789012345678901234567890123456789",
    ];
    let detectors = Detectors::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as usize
    };
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..next() % 12 {
            text.push_str(pieces[next() % pieces.len()]);
        }
        let text = text.as_bytes();
        agrees_with_plain_find(&detectors, text);
        // Cut anywhere, even inside a multibyte character.
        agrees_with_plain_find(&detectors, &text[next() % (text.len() + 1)..]);
        agrees_with_plain_find(&detectors, &text[..next() % (text.len() + 1)]);
    }
}

/// Every finding at every offset around a 64-byte block boundary, at the
/// start and at the end of the value, after multibyte text.
#[test]
fn findings_straddling_block_boundaries() {
    let detectors = Detectors::new();
    for (finding, class) in [
        ("4111 1111 1111 1111", Class::Card),
        ("4111111111111111", Class::Card),
        ("123-45-6789", Class::NationalId),
        ("GB82 WEST 1234 5698 7654 32", Class::Iban),
        ("md5a3556571e93b0d20722ba62be61e8c2d", Class::PasswordHash),
        ("sk-proj-abcdefghijklmnopqrstuvwxyz", Class::ApiKey),
        ("xoxb-1234567890-abcdefghij", Class::Token),
        ("AKIAIOSFODNN7EXAMPLE", Class::ApiKey),
    ] {
        for pad in 0..140 {
            // `é` is two bytes: odd pads put the finding at odd offsets.
            let before = "é".repeat(pad / 2) + &"x ".repeat(pad % 2);
            for after in ["", " ", " é", " 日本語のテキスト"] {
                let text = format!("{before}{finding}{after}");
                let start = before.len();
                assert_eq!(
                    detectors.find(text.as_bytes(), None),
                    [Hit {
                        start,
                        end: start + finding.len(),
                        class
                    }],
                    "{text:?}"
                );
            }
        }
    }
}

#[test]
fn a_failed_literal_does_not_hide_the_next_one() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----";
    for glue in ["sk", "xoxb", "glpat"] {
        let text = format!("{glue}{pem}");
        assert_eq!(
            spans(&text, None),
            [(&text[glue.len()..], Class::Secret)],
            "{text}"
        );
    }
}

#[test]
fn no_literal_anchored_finding_is_shorter_than_the_skip() {
    use token::Body;
    for p in token::PREFIXES {
        let body = match p.body {
            Body::Exactly(n, _) | Body::AtLeast(n, _) => n,
            Body::GitHubClassic => 36,
            Body::GitHubFineGrained => 82,
            Body::SendGrid => 66,
            Body::SkDash => 24,
            Body::AwsSecret => 40,
        };
        assert!(
            p.literal.len() + body >= MIN_LITERAL_FINDING,
            "{}",
            p.literal
        );
    }
    // The shortest JWT the detector accepts is exactly that long.
    let jwt = b"eyJhbGcifQ.x.";
    assert_eq!(jwt.len(), MIN_LITERAL_FINDING);
    assert_eq!(Detectors::new().find(jwt, None).len(), 1);
    // Values too short for any finding are not searched, and lose nothing.
    let d = Detectors::new();
    for short in ["a@b.co", "+14155550", "x@y.io z"] {
        assert_eq!(
            d.find(short.as_bytes(), None),
            plain_find(short.as_bytes(), None),
            "{short}"
        );
    }
}
