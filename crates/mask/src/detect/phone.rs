//! Phone numbers. International (`+` and a country code, E.164: at most 15
//! digits, at least 8) are found anywhere; national formats
//! (`(555) 123-4567`, `020 7946 0958`) only in a phone column, because
//! without the `+` they look like every other number.

use super::scan::{before, is_alnum, number_ends};

const MAX_DIGITS: usize = 15;

/// Reads a phone number from `from`: groups of digits joined by one of
/// ` -.()` or by a parenthesis and one of those (`) `, ` (`). Returns the
/// longest reading with `min..=15` digits that ends the number cleanly.
fn read(text: &[u8], from: usize, min: usize) -> Option<usize> {
    let mut i = from;
    let mut count = 0;
    let mut best = None;
    loop {
        let run = text[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if run == 0 {
            break;
        }
        count += run;
        if count > MAX_DIGITS {
            break;
        }
        i += run;
        if count >= min && number_ends(text, i) {
            best = Some(i);
        }
        let gap = text[i..]
            .iter()
            .take(3)
            .take_while(|&&b| matches!(b, b' ' | b'-' | b'.' | b'(' | b')'))
            .count();
        let paren = text[i..i + gap].iter().any(|&b| b == b'(' || b == b')');
        if gap == 0
            || gap > 2
            || (gap == 2 && !paren)
            || !text.get(i + gap).is_some_and(u8::is_ascii_digit)
        {
            break;
        }
        i += gap;
    }
    // More digits than E.164 allows is not a phone number at all.
    if count > MAX_DIGITS {
        return None;
    }
    best
}

/// An international number whose `+` is at `plus`: its end.
pub(super) fn international(text: &[u8], plus: usize) -> Option<usize> {
    if before(text, plus).is_some_and(|b| is_alnum(b) || b == b'+') {
        return None;
    }
    // Country codes do not start with 0.
    if !text.get(plus + 1).is_some_and(|b| matches!(b, b'1'..=b'9')) {
        return None;
    }
    read(text, plus + 1, 8)
}

/// A national-format number starting at `start` (a digit, or the `(` of an
/// area code): its end.
pub(super) fn national(text: &[u8], start: usize) -> Option<usize> {
    if before(text, start).is_some_and(|b| is_alnum(b) || matches!(b, b'+' | b'.' | b'-')) {
        return None;
    }
    let from = if text[start] == b'(' {
        start + 1
    } else {
        start
    };
    read(text, from, 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intl(text: &str) -> Option<&str> {
        let t = text.as_bytes();
        let p = t.iter().position(|&b| b == b'+')?;
        international(t, p).map(|e| &text[p..e])
    }

    #[test]
    fn international_numbers() {
        for (text, phone) in [
            ("call +1 (555) 123-4567 now", "+1 (555) 123-4567"),
            ("+44 20 7946 0958", "+44 20 7946 0958"),
            ("+44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
            ("tel:+4915112345678", "+4915112345678"),
            ("+33.1.23.45.67.89", "+33.1.23.45.67.89"),
            ("+44 20 7946 0958  12.5ms", "+44 20 7946 0958"),
        ] {
            assert_eq!(intl(text), Some(phone), "{text}");
        }
        for text in [
            "+1234567",          // too short
            "+1234567890123456", // longer than E.164
            "+0123456789",       // no country code starts with 0
            "2024-01-15T10:00:00+0000",
            "x+12345678901",
            "+05:30",
            "1+1234567890",
            "+12345678901a",
        ] {
            assert_eq!(intl(text), None, "{text}");
        }
    }

    #[test]
    fn national_numbers() {
        assert_eq!(national(b"(555) 123-4567", 0), Some(14));
        assert_eq!(national(b"020 7946 0958", 0), Some(13));
        assert_eq!(national(b"555.123.4567", 0), Some(12));
        assert_eq!(national(b"12345", 0), None);
        assert_eq!(national(b"x5551234567", 1), None);
    }
}
