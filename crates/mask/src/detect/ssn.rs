//! US Social Security numbers. Delimited `AAA-GG-SSSS` (or with spaces) is
//! found anywhere; nine bare digits only in a national-id column. Both must
//! be outside the never-issued ranges (area 000, 666, 900–999; group 00;
//! serial 0000) and not part of a longer number.

use super::scan::{number_ends, number_starts};

/// A delimited SSN starting at the digit `start`: its end.
pub(super) fn delimited(text: &[u8], start: usize) -> Option<usize> {
    let s = text.get(start..start + 11)?;
    let sep = s[3];
    let shape = (sep == b'-' || sep == b' ')
        && s[6] == sep
        && s[..3]
            .iter()
            .chain(&s[4..6])
            .chain(&s[7..])
            .all(u8::is_ascii_digit);
    let end = start + 11;
    (shape
        && valid(&s[..3], &s[4..6], &s[7..])
        && number_starts(text, start)
        && number_ends(text, end))
    .then_some(end)
}

/// Nine bare digits starting at `start` (the whole digit run): its end.
pub(super) fn bare(text: &[u8], start: usize, run_end: usize) -> Option<usize> {
    let s = &text[start..run_end];
    (s.len() == 9
        && valid(&s[..3], &s[3..5], &s[5..])
        && number_starts(text, start)
        && number_ends(text, run_end))
    .then_some(run_end)
}

fn valid(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimited_numbers() {
        for (text, at) in [
            ("ssn 123-45-6789.", 4),
            ("078 05 1120", 0),
            ("(219-09-9999)", 1),
        ] {
            assert_eq!(delimited(text.as_bytes(), at), Some(at + 11), "{text}");
        }
        for (text, at) in [
            ("000-12-3456", 0),
            ("666-12-3456", 0),
            ("900-12-3456", 0),
            ("999-12-3456", 0),
            ("123-00-4567", 0),
            ("123-45-0000", 0),
            ("123-45 6789", 0),
            ("123.45.6789", 0),
            ("1123-45-6789", 1),
            ("123-45-67890", 0),
            ("123-45-6789-1", 0),
            ("a123-45-6789", 1),
            ("123-45-678", 0),
        ] {
            assert_eq!(delimited(text.as_bytes(), at), None, "{text}");
        }
    }

    #[test]
    fn bare_numbers() {
        assert_eq!(bare(b"123456789", 0, 9), Some(9));
        assert_eq!(bare(b"000456789", 0, 9), None);
        assert_eq!(bare(b"12345678", 0, 8), None);
        assert_eq!(bare(b"1.123456789", 2, 11), None);
    }
}
