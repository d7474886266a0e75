//! Payment card numbers (PAN): 13–19 digits, contiguous or in groups split
//! by one kind of separator (space or dash), with a known issuer prefix for
//! their length and a valid Luhn check digit.

use super::scan::{number_ends, number_starts};

const MAX_DIGITS: usize = 19;

/// A card number starting at the digit `start`: its end, if there is one.
/// `any_issuer` drops the issuer table (the column is known to hold cards)
/// and accepts 12 digits; Luhn still has to hold.
pub(super) fn at(text: &[u8], start: usize, any_issuer: bool) -> Option<usize> {
    if !number_starts(text, start) {
        return None;
    }
    let mut digits = [0u8; MAX_DIGITS];
    let mut count = 0;
    let mut i = start;
    let mut separator = None;
    let mut best = None;
    let mut group = 0;
    loop {
        let len = text[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if count + len > MAX_DIGITS {
            break;
        }
        // A number is either one run of digits or groups: four digits first,
        // then two to six each (Amex 4-6-5, Diners 4-6-4, 19 digits 4-4-4-4-3).
        let contiguous = group == 0 && len >= 12;
        let fits = if group == 0 {
            len == 4 || contiguous
        } else {
            (2..=6).contains(&len)
        };
        if !fits {
            break;
        }
        for (d, b) in digits[count..].iter_mut().zip(&text[i..i + len]) {
            *d = b - b'0';
        }
        count += len;
        i += len;
        group += 1;
        if is_card(&digits[..count], any_issuer) && number_ends(text, i) {
            best = Some(i);
        }
        if contiguous {
            break;
        }
        // Another group follows only after the same single separator.
        match (text.get(i), text.get(i + 1)) {
            (Some(&s), Some(d)) if (s == b' ' || s == b'-') && d.is_ascii_digit() => {
                if *separator.get_or_insert(s) != s {
                    break;
                }
                i += 1;
            }
            _ => break,
        }
    }
    best
}

fn is_card(digits: &[u8], any_issuer: bool) -> bool {
    let len = digits.len();
    let known = if any_issuer {
        (12..=19).contains(&len)
    } else {
        issuer_accepts(digits)
    };
    known && luhn(digits)
}

/// The issuer identification number ranges (first digits) and the lengths
/// each network issues.
fn issuer_accepts(d: &[u8]) -> bool {
    let len = d.len();
    if len < 13 {
        return false;
    }
    let prefix = |n: usize| d[..n].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    match p1 {
        // Visa
        4 => matches!(len, 13 | 16 | 19),
        // Mastercard 51–55, Maestro 50/56–58
        5 => match p2 {
            51..=55 => len == 16,
            50 | 56..=58 => (13..=19).contains(&len),
            _ => false,
        },
        // Mastercard 2221–2720, Mir 2200–2204
        2 => {
            ((2221..=2720).contains(&p4) && len == 16)
                || ((2200..=2204).contains(&p4) && (16..=19).contains(&len))
        }
        3 => match p2 {
            // Amex
            34 | 37 => len == 15,
            // JCB 3528–3589
            35 => (3528..=3589).contains(&p4) && (16..=19).contains(&len),
            // Diners Club
            36 | 38 | 39 => (14..=19).contains(&len),
            30 => ((300..=305).contains(&p3) || p4 == 3095) && (14..=19).contains(&len),
            _ => false,
        },
        6 => {
            // Discover 6011, 644–649, 65; UnionPay 62 (which also covers
            // Discover's 622126–622925); Maestro 6304, 6759, 6761–6763.
            let discover = p4 == 6011
                || (644..=649).contains(&p3)
                || p2 == 65
                || (622_126..=622_925).contains(&p6);
            let unionpay = p2 == 62;
            let maestro = matches!(p4, 6304 | 6759 | 6761..=6763);
            (discover || unionpay || maestro) && (16..=19).contains(&len)
                || maestro && (13..=19).contains(&len)
        }
        _ => false,
    }
}

/// The Luhn (mod 10) check over digit values.
pub(super) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 {
                    twice - 9
                } else {
                    twice
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Option<&str> {
        let t = text.as_bytes();
        let start = t.iter().position(u8::is_ascii_digit)?;
        at(t, start, false).map(|end| &text[start..end])
    }

    #[test]
    fn positives() {
        for (text, card) in [
            ("4111 1111 1111 1111", "4111 1111 1111 1111"),
            ("pan=4111111111111111;", "4111111111111111"),
            ("5555555555554444", "5555555555554444"),
            ("5555-5555-5555-4444", "5555-5555-5555-4444"),
            ("378282246310005", "378282246310005"),
            ("3782 822463 10005", "3782 822463 10005"),
            ("6011111111111117", "6011111111111117"),
            ("3530111333300000", "3530111333300000"),
            ("30569309025904", "30569309025904"),
            ("2223003122003222", "2223003122003222"),
            ("6200000000000005", "6200000000000005"),
            ("card 4111 1111 1111 1111 12/25", "4111 1111 1111 1111"),
            ("4222222222222", "4222222222222"),
            ("4111111111111111 12/25", "4111111111111111"),
            ("378282246310005 1", "378282246310005"),
        ] {
            assert_eq!(find(text), Some(card), "{text}");
        }
    }

    #[test]
    fn negatives() {
        for text in [
            "4111 1111 1111 1112",  // Luhn
            "1234567812345670",     // Luhn-valid, no issuer starts with 1
            "41111111111111111",    // Visa has no 17-digit numbers
            "x4111111111111111",    // glued to a word
            "0.4111111111111111",   // a decimal fraction
            "4111111111111111.25",  // a decimal
            "4111 1111-1111 1111",  // mixed separators
            "411 1111 1111 1111 1", // first group of three
            "2024-01-15 12:34:56.123456",
            "55555555555544440", // too long
        ] {
            assert_eq!(find(text), None, "{text}");
        }
    }

    #[test]
    fn any_issuer_with_card_context() {
        let t = b"1234567812345670";
        assert_eq!(at(t, 0, true), Some(16));
        assert_eq!(at(b"1234567812345671", 0, true), None);
    }

    #[test]
    fn luhn_values() {
        let d = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        assert!(luhn(&d("79927398713")));
        assert!(!luhn(&d("79927398710")));
    }
}
