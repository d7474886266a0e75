//! API keys and tokens recognised by their vendor prefix: AWS access key
//! ids (and secret keys right after an `aws_secret_access_key` label),
//! GitHub (classic tokens' CRC32 checksum is verified), GitLab, Slack,
//! Stripe, OpenAI, Anthropic, Google, npm, PyPI, SendGrid, Shopify,
//! Hugging Face and DigitalOcean. Twilio's `SK…`/`AC…` ids are left out:
//! a two-letter prefix makes too poor an anchor.

use crate::Class;

use super::scan::{at as byte_at, before, is_alnum, is_token_byte, run_len};

/// What may follow a prefix.
#[derive(Debug, Clone, Copy)]
pub(super) enum Body {
    /// Exactly `n` bytes of the alphabet, then none.
    Exactly(usize, Alphabet),
    /// At least `n` bytes of the alphabet (all of them are the token).
    AtLeast(usize, Alphabet),
    /// GitHub classic: 30 base62 characters and their CRC32 in 6 more.
    GitHubClassic,
    /// GitHub fine-grained: 22 base62, `_`, 59 base62.
    GitHubFineGrained,
    /// SendGrid: 22 and 43 base64url characters split by a dot.
    SendGrid,
    /// After `sk-`: Anthropic (`sk-ant-`), OpenAI project/service/admin
    /// keys, or a legacy OpenAI key with the `T3BlbkFJ` marker.
    SkDash,
    /// After an AWS secret key label: up to a few quote/assignment bytes,
    /// then 40 base64 characters. Only those 40 are the hit.
    AwsSecret,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Alphabet {
    Base62,
    /// A–Z and 0–9.
    Upper,
    /// Base62, `_` and `-`.
    Url,
    Hex,
    Letters,
}

impl Alphabet {
    fn accepts(self, b: u8) -> bool {
        match self {
            Alphabet::Base62 => b.is_ascii_alphanumeric(),
            Alphabet::Upper => b.is_ascii_uppercase() || b.is_ascii_digit(),
            Alphabet::Url => is_token_byte(b),
            Alphabet::Hex => b.is_ascii_hexdigit(),
            Alphabet::Letters => b.is_ascii_alphabetic(),
        }
    }
}

pub(super) struct Prefix {
    pub literal: &'static str,
    pub body: Body,
    pub class: Class,
}

const fn p(literal: &'static str, body: Body, class: Class) -> Prefix {
    Prefix {
        literal,
        body,
        class,
    }
}

use Alphabet::*;
use Body::*;

/// Every prefix.
pub(super) const PREFIXES: &[Prefix] = &[
    p("AKIA", Exactly(16, Upper), Class::ApiKey),
    p("ASIA", Exactly(16, Upper), Class::ApiKey),
    p("aws_secret_access_key", AwsSecret, Class::Secret),
    p("AWS_SECRET_ACCESS_KEY", AwsSecret, Class::Secret),
    p("SecretAccessKey", AwsSecret, Class::Secret),
    p("ghp_", GitHubClassic, Class::Token),
    p("gho_", GitHubClassic, Class::Token),
    p("ghu_", GitHubClassic, Class::Token),
    p("ghs_", GitHubClassic, Class::Token),
    p("ghr_", GitHubClassic, Class::Token),
    p("github_pat_", GitHubFineGrained, Class::Token),
    p("glpat-", AtLeast(20, Url), Class::Token),
    p("gldt-", AtLeast(20, Url), Class::Token),
    p("glrt-", AtLeast(20, Url), Class::Token),
    p("xoxb-", AtLeast(10, Url), Class::Token),
    p("xoxp-", AtLeast(10, Url), Class::Token),
    p("xoxa-", AtLeast(10, Url), Class::Token),
    p("xoxr-", AtLeast(10, Url), Class::Token),
    p("xoxs-", AtLeast(10, Url), Class::Token),
    p("xoxe-", AtLeast(10, Url), Class::Token),
    p("xapp-", AtLeast(10, Url), Class::Token),
    p("sk_live_", AtLeast(16, Base62), Class::ApiKey),
    p("sk_test_", AtLeast(16, Base62), Class::ApiKey),
    p("rk_live_", AtLeast(16, Base62), Class::ApiKey),
    p("rk_test_", AtLeast(16, Base62), Class::ApiKey),
    p("whsec_", AtLeast(24, Base62), Class::Secret),
    p("sk-", SkDash, Class::ApiKey),
    p("AIza", Exactly(35, Url), Class::ApiKey),
    p("npm_", Exactly(36, Base62), Class::Token),
    p("pypi-AgEI", AtLeast(50, Url), Class::Token),
    p("SG.", SendGrid, Class::ApiKey),
    p("shpat_", Exactly(32, Hex), Class::Token),
    p("shpca_", Exactly(32, Hex), Class::Token),
    p("shppa_", Exactly(32, Hex), Class::Token),
    p("shpss_", Exactly(32, Hex), Class::Secret),
    p("hf_", Exactly(34, Letters), Class::Token),
    p("dop_v1_", Exactly(64, Hex), Class::Token),
];

/// A token whose prefix (`PREFIXES[index]`) starts at `start`: its
/// (start, end, class).
pub(super) fn at(text: &[u8], start: usize, index: usize) -> Option<(usize, usize, Class)> {
    let prefix = &PREFIXES[index];
    if before(text, start).is_some_and(is_alnum) {
        return None;
    }
    let body = start + prefix.literal.len();
    let (start, end) = match prefix.body {
        Exactly(n, alphabet) => {
            let len = run_len(text, body, n + 1, |b| alphabet.accepts(b));
            (len == n && !byte_at(text, body + n).is_some_and(is_token_byte))
                .then_some((start, body + n))?
        }
        AtLeast(n, alphabet) => {
            let len = run_len(text, body, usize::MAX, |b| alphabet.accepts(b));
            (len >= n).then_some((start, body + len))?
        }
        GitHubClassic => {
            let len = run_len(text, body, 37, |b| b.is_ascii_alphanumeric());
            (len == 36
                && !byte_at(text, body + 36).is_some_and(is_token_byte)
                && github_checksum_ok(&text[body..body + 36]))
            .then_some((start, body + 36))?
        }
        GitHubFineGrained => {
            let first = run_len(text, body, 23, |b| b.is_ascii_alphanumeric());
            let second = run_len(text, body + 23, 60, |b| b.is_ascii_alphanumeric());
            let end = body + 23 + 59;
            (first == 22
                && byte_at(text, body + 22) == Some(b'_')
                && second == 59
                && !byte_at(text, end).is_some_and(is_token_byte))
            .then_some((start, end))?
        }
        SendGrid => {
            let first = run_len(text, body, 23, is_token_byte);
            let second = run_len(text, body + 23, 44, is_token_byte);
            let end = body + 23 + 43;
            (first == 22
                && byte_at(text, body + 22) == Some(b'.')
                && second == 43
                && !byte_at(text, end).is_some_and(is_token_byte))
            .then_some((start, end))?
        }
        SkDash => (start, sk_dash(text, body)?),
        AwsSecret => aws_secret(text, body)?,
    };
    Some((start, end, prefix.class))
}

/// How far into an `sk-` token its kind is decided: the labels, or the
/// legacy marker (20 characters in, in real keys).
const SK_HEAD: usize = 64;

fn sk_dash(text: &[u8], body: usize) -> Option<usize> {
    // Decided from the head alone: a failed candidate must not cost a scan
    // of the whole run, or a value of `sk-` repeated costs quadratic time
    // (each occurrence is a candidate). Only a hit reads to the run's end,
    // and the search resumes after it.
    let head = run_len(text, body, SK_HEAD, is_token_byte);
    let token = &text[body..body + head];
    let labelled = [&b"ant-"[..], b"proj-", b"svcacct-", b"admin-"]
        .iter()
        .any(|l| token.starts_with(l) && token.len() >= l.len() + 20);
    let legacy = head >= 40 && memchr::memmem::find(token, b"T3BlbkFJ").is_some();
    (labelled || legacy).then(|| body + run_len(text, body, usize::MAX, is_token_byte))
}

fn aws_secret(text: &[u8], label_end: usize) -> Option<(usize, usize)> {
    let gap = run_len(text, label_end, 6, |b| {
        matches!(b, b' ' | b'\t' | b'"' | b'\'' | b'=' | b':')
    });
    let start = label_end + gap;
    let is_secret_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'/' || b == b'+';
    let len = run_len(text, start, 41, is_secret_byte);
    (gap > 0 && len == 40).then_some((start, start + 40))
}

/// Whether the last six characters of a GitHub token body are the base62
/// CRC32 (IEEE) of the first thirty, as GitHub's token format specifies.
fn github_checksum_ok(body: &[u8]) -> bool {
    let (random, check) = body.split_at(30);
    base62_6(crc32(random)) == check
}

/// `n` in six base62 digits (0-9, A-Z, a-z), zero-padded.
pub(super) fn base62_6(mut n: u32) -> [u8; 6] {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// CRC-32/ISO-HDLC (the zlib one), bit by bit: it only runs on the thirty
/// bytes of a GitHub token candidate.
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A GitHub classic token with a valid checksum for `prefix` and thirty
/// characters of `random` (for tests and fixtures).
pub fn github_token(prefix: &str, random: &[u8; 30]) -> String {
    let check = base62_6(crc32(random));
    format!(
        "{prefix}{}{}",
        String::from_utf8_lossy(random),
        String::from_utf8_lossy(&check)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Option<(&str, Class)> {
        let t = text.as_bytes();
        PREFIXES.iter().enumerate().find_map(|(i, p)| {
            let s = text.find(p.literal)?;
            at(t, s, i).map(|(s, e, c)| (&text[s..e], c))
        })
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn github_checksums() {
        // A token generated here, and one whose checksum was computed
        // independently (Python's zlib.crc32, base62 0-9A-Za-z).
        let made = github_token("ghp_", b"PortcullisFixtureToken0123456x");
        assert_eq!(find(&made), Some((made.as_str(), Class::Token)));
        let known = "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";
        assert_eq!(find(known), Some((known, Class::Token)));
        assert_eq!(find("ghp_Zq8vN3xLw0pT7rK2mYc5Hd9sJf4Ga11PpOr1"), None);
        assert_eq!(find("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x"), None);
        assert_eq!(
            find("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"),
            Some(("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", Class::Token))
        );
    }

    #[test]
    fn prefixed_tokens() {
        let fine_grained = format!("github_pat_{}_{}", "A".repeat(22), "b".repeat(59));
        let sendgrid = format!("SG.{}.{}", "a".repeat(22), "B".repeat(43));
        let legacy_openai = format!("sk-{}T3BlbkFJ{}", "a1".repeat(10), "Z9".repeat(10));
        for (text, token, class) in [
            (
                "key=AKIAIOSFODNN7EXAMPLE;",
                "AKIAIOSFODNN7EXAMPLE",
                Class::ApiKey,
            ),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                Class::Secret,
            ),
            (fine_grained.as_str(), fine_grained.as_str(), Class::Token),
            (
                "glpat-abcdefghij0123456789",
                "glpat-abcdefghij0123456789",
                Class::Token,
            ),
            (
                "xoxb-1234567890-abcdefghij",
                "xoxb-1234567890-abcdefghij",
                Class::Token,
            ),
            (
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                Class::ApiKey,
            ),
            (
                "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
                "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
                Class::ApiKey,
            ),
            (
                "sk-proj-abcdefghijklmnopqrstuvwxyz",
                "sk-proj-abcdefghijklmnopqrstuvwxyz",
                Class::ApiKey,
            ),
            (
                legacy_openai.as_str(),
                legacy_openai.as_str(),
                Class::ApiKey,
            ),
            (
                "AIzaSyA-1234567890abcdefghijklmnopqrstu",
                "AIzaSyA-1234567890abcdefghijklmnopqrstu",
                Class::ApiKey,
            ),
            (sendgrid.as_str(), sendgrid.as_str(), Class::ApiKey),
            (
                "shpat_0123456789abcdef0123456789abcdef",
                "shpat_0123456789abcdef0123456789abcdef",
                Class::Token,
            ),
        ] {
            assert_eq!(find(text), Some((token, class)), "{text}");
        }
    }

    #[test]
    fn not_tokens() {
        for text in [
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLEX",
            "xAKIAIOSFODNN7EXAMPLE",
            "desk-proj-abcdefghijklmnopqrstuvwxyz",
            "sk-abcdefghijklmnopqrstuvwxyz0123456789abcd",
            "sk_live_short",
            "risk-free",
            "aws_secret_access_key=short",
            "AIzaSyA-1234567890abcdefghijklmnopqrs",
        ] {
            assert_eq!(find(text), None, "{text}");
        }
    }
}
