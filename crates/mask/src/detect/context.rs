//! Weak detectors: they fire only when the column's catalog classification
//! says what the value holds, since the shapes they look for are common in
//! data that is not sensitive.
//!
//! | context        | what is reported                                          |
//! |----------------|-----------------------------------------------------------|
//! | `NationalId`   | nine bare digits in SSN ranges (in `digits`); otherwise a value that is one short id (5–24 characters with a digit) is reported whole |
//! | `Phone`        | national-format numbers, 7–15 digits (`(555) 123-4567`)   |
//! | `DateOfBirth`  | date-like spans (`1985-03-12`, `12/03/1985`, `19850312`); a value with none is reported whole (`12 March 1985`) |
//! | `BankAccount`  | runs of at least four digits, joined by single spaces or dashes |
//! | `Email`        | any `local@domain`, TLD or not (in `punctuation`)         |
//! | `Card`         | any Luhn-valid 12–19 digit number, issuer or not (in `digits`) |
//! | `PersonName`, `Address`, `Password`, `PasswordHash`, `Token`, `ApiKey`, `Secret` | the whole value, trimmed: these have no shape to find, or (hashes, tokens) the column says the whole value is one |
//! | `Iban`         | nothing more than the strong detector                     |

use crate::Class;

use super::scan::{before, digits_end, find_digit, is_alnum, number_ends, number_starts};
use super::{phone, Hit};

pub(super) fn find(text: &[u8], class: Class, hits: &mut Vec<Hit>) {
    let before_len = hits.len();
    match class {
        Class::Phone => each_number(text, hits, class, |text, start| {
            let start = if before(text, start) == Some(b'(') {
                start - 1
            } else {
                start
            };
            phone::national(text, start).map(|end| (start, end))
        }),
        Class::DateOfBirth => {
            each_number(text, hits, class, |text, start| {
                date(text, start).map(|end| (start, end))
            });
            if hits.len() == before_len {
                whole(text, class, hits);
            }
        }
        Class::BankAccount => each_number(text, hits, class, |text, start| {
            account(text, start).map(|end| (start, end))
        }),
        Class::NationalId => {
            if !hits.iter().any(|h| h.class == Class::NationalId) && is_one_id(text) {
                whole(text, class, hits);
            }
        }
        Class::PersonName
        | Class::Address
        | Class::Password
        | Class::PasswordHash
        | Class::Token
        | Class::ApiKey
        | Class::Secret => whole(text, class, hits),
        Class::Email | Class::Card | Class::Iban => {}
    }
}

/// Tries `detect` at the start of every digit run.
fn each_number(
    text: &[u8],
    hits: &mut Vec<Hit>,
    class: Class,
    detect: impl Fn(&[u8], usize) -> Option<(usize, usize)>,
) {
    let mut from = 0;
    while let Some(start) = find_digit(text, from) {
        from = match detect(text, start) {
            Some((s, end)) => {
                hits.push(Hit {
                    start: s,
                    end,
                    class,
                });
                end.max(start + 1)
            }
            None => digits_end(text, start),
        };
    }
}

/// The value without surrounding whitespace, if anything is left.
fn whole(text: &[u8], class: Class, hits: &mut Vec<Hit>) {
    let Some(start) = text.iter().position(|b| !b.is_ascii_whitespace()) else {
        return;
    };
    let end = text
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    hits.push(Hit { start, end, class });
}

/// Whether the trimmed value is a single identifier: a passport, tax or
/// national number in some country's format.
fn is_one_id(text: &[u8]) -> bool {
    let t = text.trim_ascii();
    (5..=24).contains(&t.len())
        && t.iter().any(u8::is_ascii_digit)
        && t.iter()
            .all(|&b| is_alnum(b) || matches!(b, b'-' | b'.' | b'/' | b' '))
}

/// Digits, at least four of them, joined by single spaces or dashes.
fn account(text: &[u8], start: usize) -> Option<usize> {
    if !number_starts(text, start) {
        return None;
    }
    let mut end = digits_end(text, start);
    let mut count = end - start;
    while matches!(text.get(end), Some(b' ' | b'-'))
        && text.get(end + 1).is_some_and(u8::is_ascii_digit)
    {
        let next = digits_end(text, end + 1);
        count += next - end - 1;
        end = next;
    }
    (count >= 4 && !text.get(end).is_some_and(|&b| is_alnum(b))).then_some(end)
}

/// A date at the digit `start`: `YYYY-MM-DD` (or `/`, `.`), `DD-MM-YYYY` /
/// `MM/DD/YYYY` (either order), or `YYYYMMDD`. Its end.
fn date(text: &[u8], start: usize) -> Option<usize> {
    if !number_starts(text, start) {
        return None;
    }
    let field = |from: usize| -> Option<(u32, usize, usize)> {
        let end = digits_end(text, from);
        let len = end - from;
        let value = text[from..end]
            .iter()
            .take(5)
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
        (len > 0).then_some((value, len, end))
    };
    let (first, first_len, end1) = field(start)?;
    if first_len == 8 {
        let (y, m, d) = (first / 10000, first / 100 % 100, first % 100);
        return (plausible_year(y)
            && (1..=12).contains(&m)
            && (1..=31).contains(&d)
            && number_ends(text, end1))
        .then_some(end1);
    }
    let sep = *text.get(end1)?;
    if !matches!(sep, b'-' | b'/' | b'.') {
        return None;
    }
    let (second, second_len, end2) = field(end1 + 1)?;
    if text.get(end2) != Some(&sep) {
        return None;
    }
    let (third, third_len, end3) = field(end2 + 1)?;
    if text.get(end3).is_some_and(|&b| is_alnum(b)) || second_len > 2 {
        return None;
    }
    let valid = if first_len == 4 {
        plausible_year(first)
            && third_len <= 2
            && (1..=12).contains(&second)
            && (1..=31).contains(&third)
    } else {
        first_len <= 2
            && third_len == 4
            && plausible_year(third)
            && (1..=31).contains(&first)
            && (1..=31).contains(&second)
            && (first <= 12 || second <= 12)
    };
    valid.then_some(end3)
}

fn plausible_year(y: u32) -> bool {
    (1850..=2100).contains(&y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str, class: Class) -> Vec<&str> {
        let mut hits = Vec::new();
        find(text.as_bytes(), class, &mut hits);
        hits.iter().map(|h| &text[h.start..h.end]).collect()
    }

    #[test]
    fn whole_values() {
        assert_eq!(
            spans("  Jane Q. Public \n", Class::PersonName),
            ["Jane Q. Public"]
        );
        assert_eq!(
            spans("1 Main St, Springfield", Class::Address),
            ["1 Main St, Springfield"]
        );
        assert_eq!(spans("hunter2", Class::Password), ["hunter2"]);
        assert!(spans("   ", Class::Secret).is_empty());
        assert!(spans("", Class::Token).is_empty());
    }

    #[test]
    fn dates_of_birth() {
        assert_eq!(spans("1985-03-12", Class::DateOfBirth), ["1985-03-12"]);
        assert_eq!(
            spans("born 12/03/1985 in Paris", Class::DateOfBirth),
            ["12/03/1985"]
        );
        assert_eq!(spans("19850312", Class::DateOfBirth), ["19850312"]);
        assert_eq!(
            spans("12 March 1985", Class::DateOfBirth),
            ["12 March 1985"]
        );
        assert_eq!(spans("1985-13-40", Class::DateOfBirth), ["1985-13-40"]);
    }

    #[test]
    fn phones_and_accounts() {
        assert_eq!(
            spans("home (555) 123-4567, work 020 7946 0958", Class::Phone),
            ["(555) 123-4567", "020 7946 0958"]
        );
        assert!(spans("ext 12", Class::Phone).is_empty());
        assert_eq!(
            spans("12-34-56 12345678", Class::BankAccount),
            ["12-34-56 12345678"]
        );
        assert!(spans("acct 123", Class::BankAccount).is_empty());
    }

    #[test]
    fn national_ids() {
        assert_eq!(spans("X1234567", Class::NationalId), ["X1234567"]);
        assert!(spans("none given", Class::NationalId).is_empty());
    }
}
