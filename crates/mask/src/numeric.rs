//! `numeric` between its binary form and decimal text.
//!
//! Binary (`numeric.c`, `numeric_send`): i16 ndigits, i16 weight, u16 sign,
//! u16 dscale, then ndigits base-10000 digits (i16 each); the value is
//! Σ digit[i] × 10000^(weight − i). Text: `[-]digits[.digits]`, `NaN`,
//! `Infinity`, `-Infinity`, never an exponent.

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
/// `NUMERIC_DSCALE_MAX`.
const DSCALE_MAX: u16 = 0x3FFF;
const NBASE: u16 = 10_000;

/// A decimal read from text: sign, integer digits without leading zeros,
/// fraction digits as written. Special values are kept apart.
#[derive(Debug, PartialEq, Eq)]
pub enum Decimal<'a> {
    Special(&'a [u8]),
    Finite {
        negative: bool,
        int: &'a [u8],
        frac: &'a [u8],
    },
}

/// Reads numeric text; None when it is not numeric's output form.
pub fn parse_text(text: &[u8]) -> Option<Decimal<'_>> {
    if matches!(text, b"NaN" | b"Infinity" | b"-Infinity") {
        return Some(Decimal::Special(text));
    }
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &body[body.len()..]),
    };
    if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    if usize::from(DSCALE_MAX) < frac.len() {
        return None;
    }
    let lead = int.iter().take_while(|&&b| b == b'0').count();
    Some(Decimal::Finite {
        negative,
        int: &int[lead..],
        frac,
    })
}

/// Binary numeric → text appended to `out`. None (nothing appended that
/// matters: the caller truncates) when the binary is not a valid numeric.
pub fn binary_to_text(bin: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let field =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*bin.get(i)?, *bin.get(i + 1)?])) };
    let ndigits = usize::from(field(0)?);
    let weight = i32::from(field(2)? as i16);
    let sign = field(4)?;
    let dscale = field(6)?;
    if bin.len() != 8 + 2 * ndigits || dscale > DSCALE_MAX {
        return None;
    }
    let special: &[u8] = match sign {
        NUMERIC_NAN => b"NaN",
        NUMERIC_PINF => b"Infinity",
        NUMERIC_NINF => b"-Infinity",
        NUMERIC_POS | NUMERIC_NEG => b"",
        _ => return None,
    };
    if !special.is_empty() {
        out.extend_from_slice(special);
        return Some(());
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| field(8 + 2 * i))
        .collect::<Option<_>>()?;
    if digits.iter().any(|&d| d >= NBASE) {
        return None;
    }
    // Weights beyond what PostgreSQL can hold would make absurdly long text.
    if !(-(i32::from(DSCALE_MAX) / 4) - 2..=(131_072 / 4)).contains(&weight) {
        return None;
    }
    let digit_at = |w: i32| -> u16 {
        // Digit of weight w (10000^w).
        let i = weight - w;
        if i < 0 || i as usize >= ndigits {
            0
        } else {
            digits[i as usize]
        }
    };
    if sign == NUMERIC_NEG && digits.iter().any(|&d| d != 0) {
        out.push(b'-');
    }
    // Integer part.
    if weight < 0 {
        out.push(b'0');
    } else {
        let mut leading = true;
        for w in (0..=weight).rev() {
            let d = digit_at(w);
            if leading {
                if d == 0 && w > 0 {
                    continue;
                }
                leading = false;
                push_decimal(u32::from(d), 0, out);
            } else {
                push_decimal(u32::from(d), 4, out);
            }
        }
    }
    // Fraction: dscale decimal digits.
    if dscale > 0 {
        out.push(b'.');
        let mut left = usize::from(dscale);
        let mut w = -1;
        while left > 0 {
            let d = digit_at(w);
            let s = [d / 1000, d / 100 % 10, d / 10 % 10, d % 10];
            for &x in s.iter().take(left.min(4)) {
                out.push(b'0' + x as u8);
            }
            left = left.saturating_sub(4);
            w -= 1;
        }
    }
    Some(())
}

fn push_decimal(n: u32, width: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{n:0width$}");
}

/// Decimal text → binary numeric appended to `out`. The text must come
/// from [`parse_text`]'s accepted forms.
pub fn text_to_binary(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let (negative, int, frac) = match parse_text(text)? {
        Decimal::Special(s) => {
            let sign = match s {
                b"NaN" => NUMERIC_NAN,
                b"Infinity" => NUMERIC_PINF,
                _ => NUMERIC_NINF,
            };
            push_header(0, 0, sign, 0, out);
            return Some(());
        }
        Decimal::Finite {
            negative,
            int,
            frac,
        } => (negative, int, frac),
    };
    // Base-10000 groups aligned on the decimal point.
    let int_groups = int.len().div_ceil(4);
    let frac_groups = frac.len().div_ceil(4);
    let mut groups = Vec::with_capacity(int_groups + frac_groups);
    let pad = int_groups * 4 - int.len();
    let mut acc = 0u16;
    for (i, &b) in std::iter::repeat_n(&b'0', pad).chain(int).enumerate() {
        acc = acc * 10 + u16::from(b - b'0');
        if i % 4 == 3 {
            groups.push(acc);
            acc = 0;
        }
    }
    for (i, &b) in frac
        .iter()
        .chain(std::iter::repeat_n(&b'0', frac_groups * 4 - frac.len()))
        .enumerate()
    {
        acc = acc * 10 + u16::from(b - b'0');
        if i % 4 == 3 {
            groups.push(acc);
            acc = 0;
        }
    }
    let mut weight = int_groups as i64 - 1;
    let lead = groups.iter().take_while(|&&g| g == 0).count();
    weight -= lead as i64;
    let groups = &groups[lead..];
    let trail = groups.iter().rev().take_while(|&&g| g == 0).count();
    let groups = &groups[..groups.len() - trail];
    let dscale = u16::try_from(frac.len()).ok()?;
    if groups.is_empty() {
        push_header(0, 0, NUMERIC_POS, dscale, out);
        return Some(());
    }
    let weight = i16::try_from(weight).ok()?;
    let ndigits = u16::try_from(groups.len()).ok()?;
    push_header(
        ndigits,
        weight,
        if negative { NUMERIC_NEG } else { NUMERIC_POS },
        dscale,
        out,
    );
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(())
}

fn push_header(ndigits: u16, weight: i16, sign: u16, dscale: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
}

/// The order of magnitude of a decimal, same sign: 12345.6 → 10000,
/// 0.0345 → 0.01, 0 → 0. It never has more digits than the value, so it
/// fits the column's precision and scale. Specials are kept.
pub fn write_magnitude(d: &Decimal<'_>, out: &mut Vec<u8>) {
    match *d {
        Decimal::Special(s) => out.extend_from_slice(s),
        Decimal::Finite {
            negative,
            int,
            frac,
        } => {
            let first_frac = frac.iter().position(|&b| b != b'0');
            if int.is_empty() && first_frac.is_none() {
                out.push(b'0');
                return;
            }
            if negative {
                out.push(b'-');
            }
            if !int.is_empty() {
                out.push(b'1');
                out.extend(std::iter::repeat_n(b'0', int.len() - 1));
            } else if let Some(k) = first_frac {
                out.extend_from_slice(b"0.");
                out.extend(std::iter::repeat_n(b'0', k));
                out.push(b'1');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let mut bin = Vec::new();
        text_to_binary(text.as_bytes(), &mut bin).unwrap();
        let mut back = Vec::new();
        binary_to_text(&bin, &mut back).unwrap();
        String::from_utf8(back).unwrap()
    }

    #[test]
    fn binary_text_round_trips() {
        for t in [
            "0",
            "1",
            "-1",
            "12345.678",
            "0.0001",
            "10000",
            "99999999",
            "0.00",
            "-0.5",
            "NaN",
            "Infinity",
            "-Infinity",
        ] {
            assert_eq!(round_trip(t), t);
        }
        // Leading zeros go, as in PostgreSQL's output.
        assert_eq!(round_trip("007.10"), "7.10");
    }

    #[test]
    fn known_binary() {
        // 12345.678 = 1 2345 . 6780 → ndigits 3, weight 1, dscale 3.
        let mut bin = Vec::new();
        text_to_binary(b"12345.678", &mut bin).unwrap();
        assert_eq!(bin, [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]);
        assert!(binary_to_text(&bin[..bin.len() - 1], &mut Vec::new()).is_none());
        // A digit of 10000 is invalid.
        assert!(binary_to_text(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10], &mut Vec::new()).is_none());
    }

    #[test]
    fn magnitudes() {
        let m = |t: &str| {
            let mut out = Vec::new();
            write_magnitude(&parse_text(t.as_bytes()).unwrap(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(m("12345.6"), "10000");
        assert_eq!(m("-987"), "-100");
        assert_eq!(m("0.0345"), "0.01");
        assert_eq!(m("0.000"), "0");
        assert_eq!(m("NaN"), "NaN");
        assert!(parse_text(b"1e5").is_none());
        assert!(parse_text(b"").is_none());
        assert!(parse_text(b".5").is_none());
    }
}
