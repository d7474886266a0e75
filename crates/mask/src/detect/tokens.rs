//! Findings that start with something recognisable: prefixed tokens and
//! keys, JWTs, private keys, password hashes, URLs with a password; and
//! IBANs (two letters, two check digits).

use aho_corasick::{AhoCorasick, MatchKind};

use super::validate::{base62_6, base64url, crc32, iban_length, iban_mod97};
use super::Hit;
use crate::Class;

/// How the rest of a finding after its prefix is read.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// Characters of `set`, at least `min`, at most `max`.
    Run { set: Set, min: usize, max: usize },
    /// A GitHub token: 36 alphanumerics whose last six are the base-62
    /// CRC-32 of the first thirty.
    GitHub,
    /// An OpenAI key of the older form: alphanumerics with the
    /// `T3BlbkFJ` marker inside.
    OpenAiLegacy,
    /// `SG.` + 22 + `.` + 43 (SendGrid).
    SendGrid,
    /// Three base64url segments whose first is a JSON header with "alg".
    Jwt,
    /// A PEM or OpenSSH private key block, up to its END line.
    PrivateKey,
    /// `scheme://user:password@host`: the finding is the password.
    UrlPassword,
}

#[derive(Debug, Clone, Copy)]
enum Set {
    /// A-Z 0-9
    Upper,
    /// A-Z a-z 0-9
    Alnum,
    /// A-Z a-z 0-9 _ -
    Url,
    /// Base64 and crypt(3) characters, `$ = , + / .` too.
    Crypt,
    /// Lower-case hex.
    Hex,
}

impl Set {
    fn has(self, b: u8) -> bool {
        match self {
            Set::Upper => b.is_ascii_uppercase() || b.is_ascii_digit(),
            Set::Alnum => b.is_ascii_alphanumeric(),
            Set::Url => b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'),
            Set::Crypt => {
                b.is_ascii_alphanumeric() || matches!(b, b'$' | b'=' | b',' | b'+' | b'/' | b'.')
            }
            Set::Hex => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        }
    }
}

struct Rule {
    prefix: &'static str,
    class: Class,
    body: Body,
    /// The prefix must not follow a letter or digit.
    bounded: bool,
}

const fn run(set: Set, min: usize, max: usize) -> Body {
    Body::Run { set, min, max }
}

const RULES: &[Rule] = &[
    Rule {
        prefix: "AKIA",
        class: Class::ApiKey,
        body: run(Set::Upper, 16, 16),
        bounded: true,
    },
    Rule {
        prefix: "ASIA",
        class: Class::ApiKey,
        body: run(Set::Upper, 16, 16),
        bounded: true,
    },
    Rule {
        prefix: "ghp_",
        class: Class::Token,
        body: Body::GitHub,
        bounded: true,
    },
    Rule {
        prefix: "gho_",
        class: Class::Token,
        body: Body::GitHub,
        bounded: true,
    },
    Rule {
        prefix: "ghu_",
        class: Class::Token,
        body: Body::GitHub,
        bounded: true,
    },
    Rule {
        prefix: "ghs_",
        class: Class::Token,
        body: Body::GitHub,
        bounded: true,
    },
    Rule {
        prefix: "ghr_",
        class: Class::Token,
        body: Body::GitHub,
        bounded: true,
    },
    Rule {
        prefix: "github_pat_",
        class: Class::Token,
        body: run(Set::Url, 40, 255),
        bounded: true,
    },
    Rule {
        prefix: "glpat-",
        class: Class::Token,
        body: run(Set::Url, 20, 255),
        bounded: true,
    },
    Rule {
        prefix: "xoxb-",
        class: Class::Token,
        body: run(Set::Url, 10, 255),
        bounded: true,
    },
    Rule {
        prefix: "xoxp-",
        class: Class::Token,
        body: run(Set::Url, 10, 255),
        bounded: true,
    },
    Rule {
        prefix: "xoxa-",
        class: Class::Token,
        body: run(Set::Url, 10, 255),
        bounded: true,
    },
    Rule {
        prefix: "xoxr-",
        class: Class::Token,
        body: run(Set::Url, 10, 255),
        bounded: true,
    },
    Rule {
        prefix: "xoxs-",
        class: Class::Token,
        body: run(Set::Url, 10, 255),
        bounded: true,
    },
    Rule {
        prefix: "xapp-",
        class: Class::Token,
        body: run(Set::Url, 10, 255),
        bounded: true,
    },
    Rule {
        prefix: "sk_live_",
        class: Class::ApiKey,
        body: run(Set::Alnum, 16, 255),
        bounded: true,
    },
    Rule {
        prefix: "rk_live_",
        class: Class::ApiKey,
        body: run(Set::Alnum, 16, 255),
        bounded: true,
    },
    Rule {
        prefix: "sk_test_",
        class: Class::ApiKey,
        body: run(Set::Alnum, 16, 255),
        bounded: true,
    },
    Rule {
        prefix: "whsec_",
        class: Class::Secret,
        body: run(Set::Alnum, 16, 255),
        bounded: true,
    },
    Rule {
        prefix: "sk-proj-",
        class: Class::ApiKey,
        body: run(Set::Url, 20, 255),
        bounded: true,
    },
    Rule {
        prefix: "sk-svcacct-",
        class: Class::ApiKey,
        body: run(Set::Url, 20, 255),
        bounded: true,
    },
    Rule {
        prefix: "sk-admin-",
        class: Class::ApiKey,
        body: run(Set::Url, 20, 255),
        bounded: true,
    },
    Rule {
        prefix: "sk-ant-",
        class: Class::ApiKey,
        body: run(Set::Url, 20, 255),
        bounded: true,
    },
    Rule {
        prefix: "sk-",
        class: Class::ApiKey,
        body: Body::OpenAiLegacy,
        bounded: true,
    },
    Rule {
        prefix: "AIza",
        class: Class::ApiKey,
        body: run(Set::Url, 35, 35),
        bounded: true,
    },
    Rule {
        prefix: "npm_",
        class: Class::Token,
        body: run(Set::Alnum, 36, 36),
        bounded: true,
    },
    Rule {
        prefix: "pypi-AgEI",
        class: Class::Token,
        body: run(Set::Url, 50, 512),
        bounded: true,
    },
    Rule {
        prefix: "SG.",
        class: Class::ApiKey,
        body: Body::SendGrid,
        bounded: true,
    },
    Rule {
        prefix: "shpat_",
        class: Class::Token,
        body: run(Set::Hex, 32, 32),
        bounded: true,
    },
    Rule {
        prefix: "shpss_",
        class: Class::Secret,
        body: run(Set::Hex, 32, 32),
        bounded: true,
    },
    Rule {
        prefix: "shpca_",
        class: Class::Token,
        body: run(Set::Hex, 32, 32),
        bounded: true,
    },
    Rule {
        prefix: "eyJ",
        class: Class::Token,
        body: Body::Jwt,
        bounded: true,
    },
    Rule {
        prefix: "-----BEGIN ",
        class: Class::Secret,
        body: Body::PrivateKey,
        bounded: false,
    },
    Rule {
        prefix: "$2a$",
        class: Class::PasswordHash,
        body: run(Set::Crypt, 56, 56),
        bounded: false,
    },
    Rule {
        prefix: "$2b$",
        class: Class::PasswordHash,
        body: run(Set::Crypt, 56, 56),
        bounded: false,
    },
    Rule {
        prefix: "$2y$",
        class: Class::PasswordHash,
        body: run(Set::Crypt, 56, 56),
        bounded: false,
    },
    Rule {
        prefix: "$argon2",
        class: Class::PasswordHash,
        body: run(Set::Crypt, 30, 512),
        bounded: false,
    },
    Rule {
        prefix: "$5$",
        class: Class::PasswordHash,
        body: run(Set::Crypt, 40, 512),
        bounded: false,
    },
    Rule {
        prefix: "$6$",
        class: Class::PasswordHash,
        body: run(Set::Crypt, 80, 512),
        bounded: false,
    },
    Rule {
        prefix: "SCRAM-SHA-256$",
        class: Class::PasswordHash,
        body: run(Set::Crypt, 60, 512),
        bounded: true,
    },
    Rule {
        prefix: "://",
        class: Class::Secret,
        body: Body::UrlPassword,
        bounded: false,
    },
];

/// The prefix automaton.
#[derive(Debug, Clone)]
pub struct Prefixes {
    ac: AhoCorasick,
}

impl Prefixes {
    pub fn new() -> Prefixes {
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(RULES.iter().map(|r| r.prefix))
            .expect("the built-in prefixes build an automaton");
        Prefixes { ac }
    }

    pub fn find(&self, text: &[u8], hits: &mut Vec<Hit>) {
        for m in self.ac.find_iter(text) {
            let rule = &RULES[m.pattern().as_usize()];
            if rule.bounded && m.start() > 0 && text[m.start() - 1].is_ascii_alphanumeric() {
                continue;
            }
            if let Some((start, end)) = body(rule.body, text, m.start(), m.end()) {
                hits.push(Hit {
                    start,
                    end,
                    class: rule.class,
                });
            }
        }
    }
}

/// The finding's span, if the text after a prefix (at `p..q`) is one.
fn body(b: Body, text: &[u8], p: usize, q: usize) -> Option<(usize, usize)> {
    let run_of = |set: Set, max: usize| {
        let mut e = q;
        while e < text.len() && e - q < max + 1 && set.has(text[e]) {
            e += 1;
        }
        e
    };
    let bounded_after = |e: usize| e == text.len() || !text[e].is_ascii_alphanumeric();
    match b {
        Body::Run { set, min, max } => {
            let e = run_of(set, max);
            let n = e - q;
            (n >= min && n <= max && bounded_after(e)).then_some((p, e))
        }
        Body::GitHub => {
            let e = run_of(Set::Alnum, 36);
            if e - q != 36 || !bounded_after(e) {
                return None;
            }
            let body = &text[q..e];
            (base62_6(crc32(&body[..30]))[..] == body[30..]).then_some((p, e))
        }
        Body::OpenAiLegacy => {
            let e = run_of(Set::Alnum, 255);
            let body = &text[q..e];
            (body.len() >= 40 && memchr::memmem::find(body, b"T3BlbkFJ").is_some())
                .then_some((p, e))
        }
        Body::SendGrid => {
            let a = run_of(Set::Url, 22);
            if a - q != 22 || text.get(a) != Some(&b'.') {
                return None;
            }
            let mut e = a + 1;
            while e < text.len() && Set::Url.has(text[e]) {
                e += 1;
            }
            (e - a - 1 == 43).then_some((p, e))
        }
        Body::Jwt => jwt(text, p),
        Body::PrivateKey => private_key(text, p, q),
        Body::UrlPassword => url_password(text, p),
    }
}

/// `header.payload.signature`, base64url, the header a JSON object naming
/// its algorithm.
fn jwt(text: &[u8], p: usize) -> Option<(usize, usize)> {
    let seg = |from: usize| {
        let mut e = from;
        while e < text.len() && e - from < 8192 && Set::Url.has(text[e]) {
            e += 1;
        }
        e
    };
    let h = seg(p);
    if text.get(h) != Some(&b'.') {
        return None;
    }
    let pl = seg(h + 1);
    if pl == h + 1 || text.get(pl) != Some(&b'.') {
        return None;
    }
    let sig = seg(pl + 1);
    let header = base64url(&text[p..h])?;
    let header = std::str::from_utf8(&header).ok()?;
    let looks_json = header.trim_start().starts_with('{') && header.contains("\"alg\"");
    looks_json.then_some((p, sig))
}

/// `-----BEGIN ... PRIVATE KEY-----` through its END line (or the end of
/// the text when it has none).
fn private_key(text: &[u8], p: usize, q: usize) -> Option<(usize, usize)> {
    let line_end = memchr::memchr(b'\n', &text[q..]).map_or(text.len(), |i| q + i);
    let label = &text[q..line_end.min(q + 64)];
    let label_end = memchr::memmem::find(label, b"-----")?;
    if !label[..label_end].ends_with(b"PRIVATE KEY") {
        return None;
    }
    let end = match memchr::memmem::find(&text[q..], b"-----END ") {
        Some(i) => {
            let from = q + i + 9;
            match memchr::memmem::find(&text[from..], b"-----") {
                Some(j) => from + j + 5,
                None => text.len(),
            }
        }
        None => text.len(),
    };
    Some((p, end))
}

/// The password of `scheme://user:password@host`.
fn url_password(text: &[u8], p: usize) -> Option<(usize, usize)> {
    // A scheme before it.
    let mut s = p;
    while s > 0
        && p - s < 32
        && (text[s - 1].is_ascii_alphanumeric() || matches!(text[s - 1], b'+' | b'.' | b'-'))
    {
        s -= 1;
    }
    if s == p {
        return None;
    }
    let from = p + 3;
    let mut at = None;
    let mut colon = None;
    let mut e = from;
    while e < text.len() && e - from < 512 {
        match text[e] {
            b'@' => {
                at = Some(e);
                break;
            }
            b':' if colon.is_none() => colon = Some(e),
            b'/' | b'?' | b'#' | b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'\'' | b'<' | b'>' => break,
            _ => {}
        }
        e += 1;
    }
    let (colon, at) = (colon?, at?);
    (at > colon + 1).then_some((colon + 1, at))
}

/// IBANs: a country code, two check digits and the account, in groups of
/// four or not, with the country's length and a valid check.
pub fn find_iban(text: &[u8], hits: &mut Vec<Hit>) {
    let n = text.len();
    let mut i = 0;
    while i + 4 <= n {
        let c = &text[i..i + 4];
        let candidate = c[0].is_ascii_uppercase()
            && c[1].is_ascii_uppercase()
            && c[2].is_ascii_digit()
            && c[3].is_ascii_digit()
            && (i == 0 || !text[i - 1].is_ascii_alphanumeric());
        if !candidate {
            i += 1;
            continue;
        }
        let Some(len) = iban_length(&text[i..i + 2]) else {
            i += 1;
            continue;
        };
        // Gather `len` characters, single spaces between groups allowed.
        let mut buf = [0u8; 34];
        let mut k = 0;
        let mut e = i;
        while e < n && k < len {
            let b = text[e];
            if b.is_ascii_uppercase() || b.is_ascii_digit() {
                buf[k] = b;
                k += 1;
                e += 1;
            } else if b == b' ' && e + 1 < n && text[e + 1].is_ascii_alphanumeric() && k % 4 == 0 {
                e += 1;
            } else {
                break;
            }
        }
        let bounded = e == n || !text[e].is_ascii_alphanumeric();
        if k == len && bounded && iban_mod97(&buf[..k]) {
            hits.push(Hit {
                start: i,
                end: e,
                class: Class::Iban,
            });
            i = e;
        } else {
            i += 1;
        }
    }
}
