//! JSON Web Tokens (and JWE): three to five base64url segments split by
//! dots, the first starting `eyJ` (`{"` encoded) and decoding to a JSON
//! object that names its `"alg"`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::scan::{before, is_token_byte};

/// Longer headers are not worth decoding; real ones are under 1 KiB.
const MAX_HEADER: usize = 4096;

fn segment_len(text: &[u8], from: usize) -> usize {
    text.get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&b| is_token_byte(b))
        .count()
}

/// A token whose header starts at `start` (at `eyJ`): its end.
pub(super) fn at(text: &[u8], start: usize) -> Option<usize> {
    if before(text, start).is_some_and(|b| is_token_byte(b) || b == b'.') {
        return None;
    }
    let header = segment_len(text, start);
    if header > MAX_HEADER || !header_names_alg(&text[start..start + header]) {
        return None;
    }
    let mut end = start + header;
    let mut segments = 1;
    while segments < 5 && text.get(end) == Some(&b'.') {
        let len = segment_len(text, end + 1);
        // The signature of an unsecured token (`"alg":"none"`) is empty.
        if len == 0 && segments != 2 {
            break;
        }
        end += 1 + len;
        segments += 1;
    }
    (segments >= 3).then_some(end)
}

fn header_names_alg(segment: &[u8]) -> bool {
    let Ok(json) = URL_SAFE_NO_PAD.decode(segment) else {
        return false;
    };
    let body = json.trim_ascii();
    body.first() == Some(&b'{')
        && body.last() == Some(&b'}')
        && memchr::memmem::find(body, b"\"alg\"").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"alg":"HS256","typ":"JWT"}` . `{"sub":"1234567890"}` . signature
    const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

    #[test]
    fn tokens() {
        let text = format!("Authorization: Bearer {TOKEN}\r\n");
        let start = text.find("eyJ").unwrap();
        assert_eq!(at(text.as_bytes(), start), Some(start + TOKEN.len()));
        // Unsecured: empty signature.
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
        assert_eq!(at(none.as_bytes(), 0), Some(none.len()));
    }

    #[test]
    fn not_tokens() {
        for text in [
            // `{"foo":"bar"}` — no alg
            "eyJmb28iOiJiYXIifQ.eyJzdWIiOiJ4In0.c2ln",
            // header does not decode
            "eyJ!!!.eyJzdWIiOiJ4In0.c2ln",
            "eyJhbGciOiJIUzI1NiJ9xx.eyJzdWIiOiJ4In0.c2ln",
            // two segments
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0",
        ] {
            assert_eq!(at(text.as_bytes(), 0), None, "{text}");
        }
        let glued = format!("x{TOKEN}");
        assert_eq!(at(glued.as_bytes(), 1), None);
    }
}
