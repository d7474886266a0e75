//! Masks for text: the shape mask (partial masking and the replacement of
//! a detector's hit), and fitting a value to its column's length limits.
//!
//! The shape mask only ever writes `*` or a byte that was already there, so
//! it introduces no quote, backslash, comma or brace: a hit masked inside a
//! JSON document, an array literal or a CSV line leaves it well formed.

use crate::kind::TextLimit;
use crate::Class;

/// The mask of a whole value under `Redact`.
pub const REDACTED: &[u8] = b"****";
/// Letters and digits an identifier must have before its last four may be
/// shown: with fewer, the tail would be most of it.
const MIN_ALNUM_FOR_TAIL: usize = 8;
const TAIL: usize = 4;

/// Whether `Partial` keeps the last four letters or digits of this class:
/// people recognise cards, phones and accounts by them. Secrets, names and
/// addresses keep nothing but their shape.
fn keeps_tail(class: Class) -> bool {
    matches!(
        class,
        Class::Phone
            | Class::NationalId
            | Class::Card
            | Class::Iban
            | Class::BankAccount
            | Class::ApiKey
            | Class::Token
    )
}

/// The length of the character at `v[i]`: 1 for ASCII and for a byte that
/// does not start a valid UTF-8 sequence (which then counts as a character
/// of its own, as everywhere here).
pub fn char_len(v: &[u8], i: usize) -> usize {
    let b = v[i];
    if b < 0x80 {
        return 1;
    }
    let n = match b {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return 1,
    };
    match v.get(i..i + n).map(std::str::from_utf8) {
        Some(Ok(_)) => n,
        _ => 1,
    }
}

/// Appends `value` with its shape kept: every ASCII letter and digit, every
/// non-ASCII character and every invalid byte becomes one `*`; spaces and
/// ASCII punctuation stay (a backslash that starts an escape such as `\n`
/// or `\u00e9` is starred with it, so no escape is left half-written).
/// Under `class` the last four letters/digits of a long enough identifier,
/// or the first character of an email's local part and its domain, stay.
pub fn write_shape(class: Class, value: &[u8], out: &mut Vec<u8>) {
    if class == Class::Email {
        if let Some(at) = value.iter().rposition(|&b| b == b'@') {
            let local = &value[..at];
            let first = if local.is_empty() {
                0
            } else {
                char_len(local, 0)
            };
            if first < local.len() && local[0] != b'\\' {
                out.extend_from_slice(&local[..first]);
                star(&local[first..], usize::MAX, out);
            } else {
                star(local, usize::MAX, out);
            }
            out.extend_from_slice(&value[at..]);
            return;
        }
    }
    let alnum = value.iter().filter(|b| b.is_ascii_alphanumeric()).count();
    let keep_from = if keeps_tail(class) && alnum >= MIN_ALNUM_FOR_TAIL {
        alnum - TAIL
    } else {
        usize::MAX
    };
    star(value, keep_from, out);
}

/// Stars `value` as [`write_shape`] says, keeping letters and digits from
/// the `keep_from`th one on.
fn star(value: &[u8], keep_from: usize, out: &mut Vec<u8>) {
    // The common case, plain ASCII without escapes: copy, then star in
    // place (a tight loop the compiler vectorises when nothing is kept).
    if value.is_ascii() && memchr::memchr(b'\\', value).is_none() {
        let start = out.len();
        out.extend_from_slice(value);
        let written = &mut out[start..];
        if keep_from == usize::MAX {
            for b in written.iter_mut() {
                if b.is_ascii_alphanumeric() {
                    *b = b'*';
                }
            }
        } else {
            let mut seen = 0;
            for b in written.iter_mut() {
                if b.is_ascii_alphanumeric() {
                    if seen < keep_from {
                        *b = b'*';
                    }
                    seen += 1;
                }
            }
        }
        return;
    }
    let mut seen = 0;
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b.is_ascii_alphanumeric() {
            out.push(if seen >= keep_from { b } else { b'*' });
            seen += 1;
            i += 1;
        } else if b == b'\\' {
            // An escape pair: starred with its letter, or kept whole so an
            // escaped backslash never ends up escaping a star.
            match value.get(i + 1) {
                Some(n) if n.is_ascii_alphanumeric() => {
                    out.push(b'*');
                    i += 1;
                }
                Some(&n) if n < 0x80 => {
                    out.extend_from_slice(&[b'\\', n]);
                    i += 2;
                }
                _ => {
                    out.push(b'\\');
                    i += 1;
                }
            }
        } else if b < 0x80 {
            out.push(b);
            i += 1;
        } else {
            out.push(b'*');
            i += char_len(value, i);
        }
    }
}

/// Cuts the text appended since `start` to the column's limits, then pads
/// char(n) with spaces to exactly n characters.
pub fn fit(limit: TextLimit, out: &mut Vec<u8>, start: usize) {
    if limit.max_chars.is_none() && limit.max_bytes.is_none() {
        return;
    }
    let max_chars = limit.max_chars.unwrap_or(usize::MAX);
    let max_bytes = limit.max_bytes.unwrap_or(usize::MAX);
    let v = &out[start..];
    let (mut i, mut chars) = (0, 0);
    while i < v.len() && chars < max_chars {
        let n = char_len(v, i);
        if i + n > max_bytes {
            break;
        }
        i += n;
        chars += 1;
    }
    out.truncate(start + i);
    if limit.pad {
        out.extend(std::iter::repeat_n(b' ', max_chars - chars));
    }
}

/// Appends the text token of a keyed mask: `tok_` and 24 base32 letters
/// (120 bits) of the HMAC.
pub fn write_token(mac: &[u8; 32], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    out.extend_from_slice(b"tok_");
    for chunk in mac[..15].chunks_exact(5) {
        let n = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        for k in (0..8).rev() {
            out.push(ALPHABET[((n >> (5 * k)) & 31) as usize]);
        }
    }
}

pub fn write_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// Decodes bytea's text hex form (`\x0a1b...`). None for the escape form
/// or bad hex.
pub fn read_bytea_hex(text: &[u8]) -> Option<Vec<u8>> {
    let hex = text.strip_prefix(b"\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(class: Class, v: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_shape(class, v, &mut out);
        out
    }

    #[test]
    fn shapes() {
        assert_eq!(
            shape(Class::Card, b"4111 1111 1111 1234"),
            b"**** **** **** 1234"
        );
        assert_eq!(
            shape(Class::Phone, b"+1 (555) 010-9999"),
            b"+* (***) ***-9999"
        );
        // Too short to spare a tail.
        assert_eq!(shape(Class::Phone, b"555-12"), b"***-**");
        assert_eq!(
            shape(Class::PersonName, b"Zo\xc3\xab O'Neil"),
            b"*** *'****"
        );
        assert_eq!(
            shape(Class::Email, b"alice@example.com"),
            b"a****@example.com"
        );
        assert_eq!(shape(Class::Email, b"a@example.com"), b"*@example.com");
        assert_eq!(shape(Class::Email, b"no-at-sign"), b"**-**-****");
        // Escapes are starred whole; escaped quotes and backslashes stay.
        assert_eq!(
            shape(Class::Secret, br#"ab\u00e9\"\\n"#),
            br#"********\"\\*"#
        );
        // Invalid UTF-8 becomes stars, one per byte.
        assert_eq!(shape(Class::Secret, b"a\xff\xc3"), b"***");
    }

    #[test]
    fn fitting() {
        let limit = |max_chars, pad| TextLimit {
            max_chars,
            pad,
            max_bytes: None,
        };
        let mut out = b"xx".to_vec();
        out.extend_from_slice("héllo".as_bytes());
        fit(limit(Some(2), false), &mut out, 2);
        assert_eq!(out, "xxhé".as_bytes());
        let mut out = b"ab".to_vec();
        fit(limit(Some(6), true), &mut out, 0);
        assert_eq!(out, b"ab    ");
        let mut out = "ééé".as_bytes().to_vec();
        fit(
            TextLimit {
                max_chars: None,
                pad: false,
                max_bytes: Some(5),
            },
            &mut out,
            0,
        );
        assert_eq!(out, "éé".as_bytes());
    }

    #[test]
    fn tokens_and_hex() {
        let mut out = Vec::new();
        write_token(&[0; 32], &mut out);
        assert_eq!(out, b"tok_aaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(read_bytea_hex(b"\\x00ff"), Some(vec![0, 255]));
        assert_eq!(read_bytea_hex(b"\\x0"), None);
        assert_eq!(read_bytea_hex(b"abc"), None);
        let mut h = Vec::new();
        write_hex(&[0xab, 1], &mut h);
        assert_eq!(h, b"ab01");
    }
}
