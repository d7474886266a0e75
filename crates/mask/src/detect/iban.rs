//! IBAN (ISO 13616): two-letter country, two check digits, a BBAN of the
//! country's length; written whole or in groups of four split by single
//! spaces. The length comes from the SWIFT IBAN registry and the whole
//! must be 1 modulo 97.

use super::scan::{at as byte_at, before, is_alnum};

const MAX_LEN: usize = 34;

/// An IBAN whose check digits start at `check`, the country code being the
/// two bytes before: its (start, end).
pub(super) fn at(text: &[u8], check: usize) -> Option<(usize, usize)> {
    let start = check.checked_sub(2)?;
    let country = [text[start], text[start + 1]];
    if !country.iter().all(u8::is_ascii_uppercase) || before(text, start).is_some_and(is_alnum) {
        return None;
    }
    let expected = usize::from(length(country)?);
    let mut iban = [0u8; MAX_LEN];
    let mut len = 0;
    let mut i = start;
    let spaced = byte_at(text, start + 4) == Some(b' ');
    while len < expected {
        if spaced && len > 0 && len % 4 == 0 {
            if byte_at(text, i) != Some(b' ') {
                return None;
            }
            i += 1;
        }
        let b = byte_at(text, i)?;
        if !(b.is_ascii_digit() || b.is_ascii_uppercase()) {
            return None;
        }
        iban[len] = b;
        len += 1;
        i += 1;
    }
    if byte_at(text, i).is_some_and(is_alnum) || !iban[2..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    (mod97(&iban[..len]) == 1).then_some((start, i))
}

/// The IBAN's value mod 97 after moving the first four characters to the
/// end and reading letters as 10..35.
fn mod97(iban: &[u8]) -> u32 {
    let (head, bban) = iban.split_at(4);
    bban.iter().chain(head).fold(0u32, |r, &b| {
        if b.is_ascii_digit() {
            (r * 10 + u32::from(b - b'0')) % 97
        } else {
            (r * 100 + u32::from(b - b'A') + 10) % 97
        }
    })
}

/// The IBAN length per country, from the SWIFT IBAN registry.
fn length(country: [u8; 2]) -> Option<u8> {
    let n = match &country {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FO" | b"GL" | b"NL" | b"SD" | b"FK" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"XK" | b"MN" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"OM" | b"SO" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"LY" | b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"BI" | b"DJ" | b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"NI" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" | b"YE" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        _ => return None,
    };
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Option<&str> {
        let t = text.as_bytes();
        let check =
            (2..t.len()).find(|&i| t[i].is_ascii_digit() && t[i - 1].is_ascii_uppercase())?;
        at(t, check).map(|(s, e)| &text[s..e])
    }

    #[test]
    fn positives() {
        for (text, iban) in [
            ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
            ("iban: GB82WEST12345698765432.", "GB82WEST12345698765432"),
            ("DE89370400440532013000", "DE89370400440532013000"),
            ("DE89 3704 0044 0532 0130 00", "DE89 3704 0044 0532 0130 00"),
            ("FR1420041010050500013M02606", "FR1420041010050500013M02606"),
            ("NO9386011117947", "NO9386011117947"),
        ] {
            assert_eq!(find(text), Some(iban), "{text}");
        }
    }

    #[test]
    fn negatives() {
        for text in [
            "GB83 WEST 1234 5698 7654 32", // check digits
            "DE89370400440532013001",      // check
            "DE8937040044053201300",       // short
            "DE893704004405320130001",     // long
            "XDE89370400440532013000",     // glued
            "ZZ89370400440532013000",      // no such country
            "GB82 WEST 12345698 7654 32",  // groups
            "GB82WEST12345698765432a",
        ] {
            assert_eq!(find(text), None, "{text}");
        }
    }
}
