//! Email addresses: `local@domain.tld` with a real top-level domain.

use super::validate::is_tld;
use super::Hit;
use crate::Class;

fn local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

fn domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// The longest run the local part may be (RFC 5321).
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;

pub fn find(text: &[u8], hits: &mut Vec<Hit>) {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'@', &text[from..]) {
        let at = from + i;
        from = at + 1;
        // The local part, leftwards.
        let mut start = at;
        while start > 0 && at - start < MAX_LOCAL && local_char(text[start - 1]) {
            start -= 1;
        }
        while start < at && text[start] == b'.' {
            start += 1;
        }
        if start == at {
            continue;
        }
        // The domain, rightwards.
        let mut end = at + 1;
        while end < text.len() && end - at <= MAX_DOMAIN && domain_char(text[end]) {
            end += 1;
        }
        // A trailing dot or hyphen ends a sentence, not the domain.
        while end > at + 1 && matches!(text[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[at + 1..end];
        let Some(dot) = domain.iter().rposition(|&b| b == b'.') else {
            continue;
        };
        if dot == 0 || domain.windows(2).any(|w| w == b"..") {
            continue;
        }
        if is_tld(&domain[dot + 1..]) {
            hits.push(Hit {
                start,
                end,
                class: Class::Email,
            });
            from = end;
        }
    }
}
