//! Findings made of digits: payment cards, US SSNs, international phone
//! numbers; with the column's class, bare national identifiers, national
//! phone numbers and bank account numbers.

use super::validate::{card_network, luhn, ssn};
use super::Hit;
use crate::Class;

/// Longest run of digits looked at as one number: anything longer is a
/// number, not an identifier.
const MAX_DIGITS: usize = 40;

/// One number as written: its digits and the sizes of its groups.
struct Number {
    start: usize,
    end: usize,
    plus: bool,
    digits: [u8; MAX_DIGITS],
    len: usize,
    groups: [u8; 8],
    ngroups: usize,
    /// The one separator used between groups, if any.
    sep: Option<u8>,
    mixed: bool,
}

impl Number {
    fn digits(&self) -> &[u8] {
        &self.digits[..self.len]
    }

    fn groups(&self) -> &[u8] {
        &self.groups[..self.ngroups.min(8)]
    }
}

fn separator(b: u8, phone: bool) -> bool {
    matches!(b, b' ' | b'-') || (phone && matches!(b, b'.' | b'(' | b')'))
}

pub fn find(text: &[u8], context: Option<Class>, hits: &mut Vec<Hit>) {
    let n = text.len();
    let mut i = 0;
    while i < n {
        if !text[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let plus = start > 0 && text[start - 1] == b'+';
        let bounded_left = start == 0
            || plus
            || !(text[start - 1].is_ascii_alphanumeric() || matches!(text[start - 1], b'_' | b'.'));
        let mut num = Number {
            start: if plus { start - 1 } else { start },
            end: start,
            plus,
            digits: [0; MAX_DIGITS],
            len: 0,
            groups: [0; 8],
            ngroups: 0,
            sep: None,
            mixed: false,
        };
        let mut j = i;
        let mut too_long = false;
        loop {
            let g = j;
            while j < n && text[j].is_ascii_digit() {
                if num.len < MAX_DIGITS {
                    num.digits[num.len] = text[j];
                    num.len += 1;
                } else {
                    too_long = true;
                }
                j += 1;
            }
            if num.ngroups < 8 {
                num.groups[num.ngroups] = (j - g).min(255) as u8;
            }
            num.ngroups += 1;
            num.end = j;
            // Up to two separator characters ("(415) 555") between groups.
            let mut k = j;
            while k < n && k - j < 2 && separator(text[k], plus) {
                k += 1;
            }
            if k > j && k < n && text[k].is_ascii_digit() {
                let s = text[j];
                match num.sep {
                    None => num.sep = Some(s),
                    Some(prev) if prev != s || k - j > 1 => num.mixed = true,
                    _ => {}
                }
                j = k;
                continue;
            }
            break;
        }
        i = num.end.max(i + 1);
        let bounded_right =
            num.end == n || !(text[num.end].is_ascii_alphanumeric() || text[num.end] == b'_');
        if too_long || !bounded_left || !bounded_right {
            continue;
        }
        if let Some(class) = classify(&num, context) {
            hits.push(Hit {
                start: num.start,
                end: num.end,
                class,
            });
        }
    }
}

fn value(d: &[u8]) -> u32 {
    d.iter().fold(0, |acc, b| acc * 10 + u32::from(b - b'0'))
}

fn classify(num: &Number, context: Option<Class>) -> Option<Class> {
    let d = num.digits();
    let groups = num.groups();
    if num.plus {
        // E.164: a country code and at most 15 digits in all.
        return (8..=15).contains(&d.len()).then_some(Class::Phone);
    }
    // AAA-GG-SSSS (or with spaces).
    if groups == [3, 2, 4] && !num.mixed {
        let (a, g, s) = (value(&d[..3]), value(&d[3..5]), value(&d[5..]));
        if ssn(a, g, s) {
            return Some(Class::NationalId);
        }
    }
    if (13..=19).contains(&d.len())
        && !num.mixed
        && groups.iter().all(|&g| g >= 3)
        && card_network(d)
        && luhn(d)
    {
        return Some(Class::Card);
    }
    match context? {
        Class::NationalId if d.len() == 9 && groups.len() == 1 => {
            ssn(value(&d[..3]), value(&d[3..5]), value(&d[5..])).then_some(Class::NationalId)
        }
        Class::Phone if (7..=15).contains(&d.len()) => Some(Class::Phone),
        Class::BankAccount if (6..=34).contains(&d.len()) => Some(Class::BankAccount),
        Class::Card if (12..=19).contains(&d.len()) => Some(Class::Card),
        _ => None,
    }
}
