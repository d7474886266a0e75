//! Byte-level helpers every detector shares: character classes, number
//! boundaries and the word-at-a-time search for the next ASCII digit.

pub(super) fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// A byte of a base64url body or of a typical API token.
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

pub(super) fn before(text: &[u8], i: usize) -> Option<u8> {
    i.checked_sub(1).and_then(|j| text.get(j).copied())
}

pub(super) fn at(text: &[u8], i: usize) -> Option<u8> {
    text.get(i).copied()
}

/// How many bytes from `from` on satisfy `pred`, counting at most `max`.
pub(super) fn run_len(text: &[u8], from: usize, max: usize, pred: impl Fn(u8) -> bool) -> usize {
    text.get(from..)
        .unwrap_or_default()
        .iter()
        .take(max)
        .take_while(|&&b| pred(b))
        .count()
}

/// Bytes that join two digit runs into one number (`3.14`, `1,000`,
/// `2024-01-15`, `12/25`): a number glued to another by one of these is a
/// piece of something larger, not a card or an SSN of its own.
fn is_joiner(b: u8) -> bool {
    matches!(b, b'.' | b',' | b'-' | b'/')
}

/// Whether a number may start at `start`: not glued to a word or to a
/// preceding number.
pub(super) fn number_starts(text: &[u8], start: usize) -> bool {
    match before(text, start) {
        None => true,
        Some(b) if is_alnum(b) => false,
        Some(b) if is_joiner(b) => !before(text, start - 1).is_some_and(|c| c.is_ascii_digit()),
        Some(_) => true,
    }
}

/// Whether a number may end at `end` (exclusive): not glued to a word or to
/// a following number.
pub(super) fn number_ends(text: &[u8], end: usize) -> bool {
    match at(text, end) {
        None => true,
        Some(b) if is_alnum(b) => false,
        Some(b) if is_joiner(b) => !at(text, end + 1).is_some_and(|c| c.is_ascii_digit()),
        Some(_) => true,
    }
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that is an ASCII digit. Exact for the
/// lowest flagged byte (borrows only travel upwards from a true match),
/// which is all [`find_digit`] reads.
fn digit_mask(word: u64) -> u64 {
    let x = word ^ (LOW_BITS * u64::from(b'0'));
    x.wrapping_sub(LOW_BITS * 10) & !x & HIGH_BITS
}

/// The position of the first ASCII digit at or after `from`. Reads sixteen
/// bytes a step: prose and most JSON go by at several bytes a cycle.
pub(super) fn find_digit(text: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 16 <= text.len() {
        let lo = u64::from_le_bytes(text[i..i + 8].try_into().expect("8 bytes"));
        let hi = u64::from_le_bytes(text[i + 8..i + 16].try_into().expect("8 bytes"));
        let (mlo, mhi) = (digit_mask(lo), digit_mask(hi));
        if mlo | mhi != 0 {
            return Some(if mlo != 0 {
                i + (mlo.trailing_zeros() / 8) as usize
            } else {
                i + 8 + (mhi.trailing_zeros() / 8) as usize
            });
        }
        i += 16;
    }
    text.get(i..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| i + p)
}

/// One bit per byte of `text[from..from + 64]` (fewer at the end): set
/// where the byte is in `lo..=hi` (ASCII). Exact for every byte: the
/// comparisons run on the low seven bits, where adding at most 0x7f cannot
/// carry into the next byte, and bytes with the high bit set are cleared.
pub(super) fn range_bits(text: &[u8], from: usize, lo: u8, hi: u8) -> u64 {
    let block = &text[from.min(text.len())..text.len().min(from + 64)];
    let mut bits = 0u64;
    let mut words = block.chunks_exact(8);
    for (k, word) in words.by_ref().enumerate() {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let low7 = w & !HIGH_BITS;
        let at_least_lo = low7 + LOW_BITS * u64::from(0x80 - lo);
        let above_hi = low7 + LOW_BITS * u64::from(0x7f - hi);
        let inside = at_least_lo & !above_hi & !w & HIGH_BITS;
        // Gather the eight high bits into one byte.
        let packed = ((inside >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        bits |= packed << (8 * k);
    }
    let done = block.len() - words.remainder().len();
    for (j, &b) in words.remainder().iter().enumerate() {
        bits |= u64::from((lo..=hi).contains(&b)) << (done + j);
    }
    bits
}

/// The end of the run of digits starting at `from`.
pub(super) fn digits_end(text: &[u8], from: usize) -> usize {
    from + run_len(text, from, usize::MAX, |b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_digit_agrees_with_a_plain_search() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..80 {
            for _ in 0..50 {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // Mostly non-digits, now and then a digit or a high byte.
                        match seed % 23 {
                            0 => b'0' + (seed >> 8) as u8 % 10,
                            1 => 0x80 | (seed >> 8) as u8,
                            _ => b'/' + (seed >> 8) as u8 % 2 * 11, // '/' or ':'
                        }
                    })
                    .collect();
                for from in 0..=len {
                    let expected = text[from..]
                        .iter()
                        .position(u8::is_ascii_digit)
                        .map(|p| from + p);
                    assert_eq!(find_digit(&text, from), expected, "{text:?} from {from}");
                }
            }
        }
    }

    #[test]
    fn range_bits_are_exact() {
        let text: Vec<u8> = (0..=255u8)
            .chain(b"0123456789/:AZ@[".iter().copied())
            .cycle()
            .take(1000)
            .collect();
        for from in 0..text.len() {
            let digits = range_bits(&text, from, b'0', b'9');
            let upper = range_bits(&text, from, b'A', b'Z');
            for j in 0..64 {
                let byte = text.get(from + j);
                assert_eq!(
                    digits >> j & 1 == 1,
                    byte.is_some_and(u8::is_ascii_digit),
                    "byte {}",
                    from + j
                );
                assert_eq!(
                    upper >> j & 1 == 1,
                    byte.is_some_and(u8::is_ascii_uppercase),
                    "byte {}",
                    from + j
                );
            }
        }
    }

    #[test]
    fn number_boundaries() {
        assert!(number_starts(b"x 12", 2));
        assert!(!number_starts(b"x12", 1));
        assert!(!number_starts(b"3.14", 2));
        assert!(number_starts(b"a.14", 2));
        assert!(number_ends(b"12.", 2));
        assert!(!number_ends(b"12.5", 2));
        assert!(!number_ends(b"12a", 2));
    }
}
