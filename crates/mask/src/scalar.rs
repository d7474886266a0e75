//! One non-array value under one strategy, written straight into the
//! output buffer. Whatever cannot be read (a text date in another
//! DateStyle, a malformed binary value) gets the type's constant: it is a
//! valid value and says nothing, so nothing is ever passed through because
//! it was not understood.

use std::io::Write;

use crate::datetime::{self, PG_EPOCH_DAYS, USECS_PER_DAY, USECS_PER_HOUR};
use crate::detect::{Detectors, Hit};
use crate::inet::Net;
use crate::keyed::{self, Keyer};
use crate::kind::{NumericMod, Scalar};
use crate::numeric;
use crate::textmask::{self, REDACTED};
use crate::{Class, Format, Strategy};

/// What a writer put in the buffer: a value (its bytes appended) or SQL
/// NULL (nothing appended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrote {
    Null,
    Value,
}

/// Generalised network prefixes: a /24 is a street of addresses, a /48 one
/// site's allocation.
const V4_PREFIX: u8 = 24;
const V6_PREFIX: u8 = 48;
/// Keyed dates fall in 1900-01-01 .. 2100-01-01 (73,049 days), a range
/// every client library can represent.
const KEYED_DAYS: u64 = 73_049;
/// Keyed numerics have at most this many digits when the column has no
/// precision: they stay exact in a double.
const KEYED_NUMERIC_DIGITS: u32 = 15;
const UUID_TEXT_ZERO: &[u8] = b"00000000-0000-0000-0000-000000000000";

/// The type's constant under `Redact` (and the fallback of every other
/// strategy). Unknown types get NULL: it is the only value sure to be
/// valid for an enum, a domain or a composite.
pub(crate) fn write_redacted(s: Scalar, format: Format, out: &mut Vec<u8>) -> Wrote {
    let text = format == Format::Text;
    match s {
        Scalar::Text(limit) => {
            let start = out.len();
            out.extend_from_slice(REDACTED);
            textmask::fit(limit, out, start);
        }
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 | Scalar::Float4 | Scalar::Float8 if text => {
            out.push(b'0')
        }
        Scalar::Int2 => out.extend_from_slice(&0i16.to_be_bytes()),
        Scalar::Int4 | Scalar::Float4 => out.extend_from_slice(&[0; 4]),
        Scalar::Int8 | Scalar::Float8 => out.extend_from_slice(&[0; 8]),
        Scalar::Numeric(_) if text => out.push(b'0'),
        // ndigits 0, weight 0, sign positive, dscale 0.
        Scalar::Numeric(_) => out.extend_from_slice(&[0; 8]),
        Scalar::Bool => out.push(if text { b'f' } else { 0 }),
        Scalar::Date if text => out.extend_from_slice(b"1970-01-01"),
        Scalar::Date => out.extend_from_slice(&(-(PG_EPOCH_DAYS as i32)).to_be_bytes()),
        Scalar::Timestamp if text => out.extend_from_slice(b"1970-01-01 00:00:00"),
        Scalar::TimestampTz if text => out.extend_from_slice(b"1970-01-01 00:00:00+00"),
        Scalar::Timestamp | Scalar::TimestampTz => {
            out.extend_from_slice(&(-PG_EPOCH_DAYS * USECS_PER_DAY).to_be_bytes())
        }
        Scalar::Time if text => out.extend_from_slice(b"00:00:00"),
        Scalar::Time => out.extend_from_slice(&0i64.to_be_bytes()),
        Scalar::Uuid if text => out.extend_from_slice(UUID_TEXT_ZERO),
        Scalar::Uuid => out.extend_from_slice(&[0; 16]),
        Scalar::Json => out.extend_from_slice(b"\"****\""),
        Scalar::Jsonb => {
            if !text {
                out.push(1);
            }
            out.extend_from_slice(b"\"****\"");
        }
        Scalar::Inet | Scalar::Cidr => {
            let zero = Net {
                v6: false,
                bits: 32,
                addr: [0; 16],
            };
            write_net(zero, s, format, out);
        }
        Scalar::Bytea if text => out.extend_from_slice(b"\\x"),
        Scalar::Bytea => {}
        Scalar::Unknown => return Wrote::Null,
    }
    Wrote::Value
}

/// One non-NULL value of a protected column under `strategy`.
pub(crate) fn write_masked(
    s: Scalar,
    format: Format,
    class: Class,
    strategy: Strategy,
    keyer: Option<&Keyer>,
    v: &[u8],
    out: &mut Vec<u8>,
) -> Wrote {
    let start = out.len();
    let done = match strategy {
        Strategy::Redact => false,
        Strategy::Nullify => return Wrote::Null,
        Strategy::Partial => match s {
            Scalar::Text(limit) => {
                textmask::write_shape(class, v, out);
                textmask::fit(limit, out, start);
                true
            }
            _ => false,
        },
        Strategy::Keyed => keyer.is_some_and(|k| write_keyed(s, format, k, v, out)),
        Strategy::Generalise => write_generalised(s, format, v, out),
    };
    if done {
        return Wrote::Value;
    }
    out.truncate(start);
    write_redacted(s, format, out)
}

fn write_int(s: Scalar, format: Format, n: i64, out: &mut Vec<u8>) {
    match (format, s) {
        (Format::Text, _) => {
            let _ = write!(out, "{n}");
        }
        (Format::Binary, Scalar::Int2) => out.extend_from_slice(&(n as i16).to_be_bytes()),
        (Format::Binary, Scalar::Int4) => out.extend_from_slice(&(n as i32).to_be_bytes()),
        (Format::Binary, _) => out.extend_from_slice(&n.to_be_bytes()),
    }
}

fn read_int(s: Scalar, format: Format, v: &[u8]) -> Option<i64> {
    match format {
        Format::Text => {
            let n: i64 = std::str::from_utf8(v).ok()?.parse().ok()?;
            // Out of the type's range is not a value of it.
            let fits = match s {
                Scalar::Int2 => i16::try_from(n).is_ok(),
                Scalar::Int4 => i32::try_from(n).is_ok(),
                _ => true,
            };
            fits.then_some(n)
        }
        Format::Binary => match (s, v.len()) {
            (Scalar::Int2, 2) => Some(i64::from(i16::from_be_bytes([v[0], v[1]]))),
            (Scalar::Int4, 4) => Some(i64::from(i32::from_be_bytes(v.try_into().ok()?))),
            (Scalar::Int8, 8) => Some(i64::from_be_bytes(v.try_into().ok()?)),
            _ => None,
        },
    }
}

fn write_net(net: Net, s: Scalar, format: Format, out: &mut Vec<u8>) {
    let cidr = s == Scalar::Cidr;
    match format {
        Format::Text => net.write_text(cidr, out),
        Format::Binary => net.write_binary(cidr, out),
    }
}

fn read_net(format: Format, v: &[u8]) -> Option<Net> {
    match format {
        Format::Text => Net::read_text(v),
        Format::Binary => Net::read_binary(v),
    }
}

fn read_f64(s: Scalar, format: Format, v: &[u8]) -> Option<f64> {
    match (format, s, v.len()) {
        (Format::Text, _, _) => std::str::from_utf8(v).ok()?.parse().ok(),
        (Format::Binary, Scalar::Float4, 4) => {
            Some(f64::from(f32::from_be_bytes(v.try_into().ok()?)))
        }
        (Format::Binary, Scalar::Float8, 8) => Some(f64::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

/// A float: text as Rust writes finite ones (PostgreSQL and every driver
/// read it) and as PostgreSQL writes the others, binary IEEE big-endian.
fn write_float(s: Scalar, format: Format, x: f64, out: &mut Vec<u8>) {
    let x = if s == Scalar::Float4 {
        f64::from(x as f32)
    } else {
        x
    };
    match (format, s) {
        (Format::Text, _) if x.is_nan() => out.extend_from_slice(b"NaN"),
        (Format::Text, _) if x.is_infinite() => {
            out.extend_from_slice(if x > 0.0 { b"Infinity" } else { b"-Infinity" })
        }
        (Format::Text, Scalar::Float4) => {
            let _ = write!(out, "{}", x as f32);
        }
        (Format::Text, _) => {
            let _ = write!(out, "{x}");
        }
        (Format::Binary, Scalar::Float4) => out.extend_from_slice(&(x as f32).to_be_bytes()),
        (Format::Binary, _) => out.extend_from_slice(&x.to_be_bytes()),
    }
}

/// The bytes a keyed token is computed from. Equal values must give equal
/// inputs wherever a join could meet them: text-like types hash their text
/// (char(n) without its padding, so it meets varchar), integers their
/// decimal form (int4 meets int8, text format meets binary), uuids their
/// lowercase text. Other types hash their wire bytes, so their tokens are
/// stable within one format.
fn keyed_input<'v>(
    s: Scalar,
    format: Format,
    v: &'v [u8],
    scratch: &'v mut Vec<u8>,
) -> Option<&'v [u8]> {
    match s {
        Scalar::Text(limit) if limit.pad => {
            let end = v.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
            Some(&v[..end])
        }
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => {
            let _ = write!(scratch, "{}", read_int(s, format, v)?);
            Some(scratch)
        }
        Scalar::Uuid if format == Format::Binary => {
            let b: &[u8; 16] = v.try_into().ok()?;
            write_uuid_text(b, scratch);
            Some(scratch)
        }
        Scalar::Uuid => {
            scratch.extend(v.iter().map(u8::to_ascii_lowercase));
            Some(scratch)
        }
        _ => Some(v),
    }
}

fn write_uuid_text(b: &[u8; 16], out: &mut Vec<u8>) {
    for (i, chunk) in [&b[0..4], &b[4..6], &b[6..8], &b[8..10], &b[10..16]]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b'-');
        }
        textmask::write_hex(chunk, out);
    }
}

/// The keyed token of `v` in its type's domain; false when the value
/// cannot be read (the caller writes the constant instead).
fn write_keyed(s: Scalar, format: Format, keyer: &Keyer, v: &[u8], out: &mut Vec<u8>) -> bool {
    let mut scratch = Vec::new();
    let Some(input) = keyed_input(s, format, v, &mut scratch) else {
        return false;
    };
    let d = keyer.digest(input);
    let n = keyed::number(&d);
    let text = format == Format::Text;
    match s {
        Scalar::Text(limit) => {
            let start = out.len();
            textmask::write_token(&d, out);
            textmask::fit(limit, out, start);
        }
        Scalar::Int2 => write_int(s, format, (n % (1 << 15)) as i64, out),
        Scalar::Int4 => write_int(s, format, (n % (1 << 31)) as i64, out),
        Scalar::Int8 => write_int(s, format, (n >> 1) as i64, out),
        Scalar::Numeric(m) => return write_keyed_numeric(m, format, n, out),
        Scalar::Float4 => write_float(s, format, (n >> 40) as f64, out),
        Scalar::Float8 => write_float(s, format, (n >> 11) as f64, out),
        // One bit cannot be tokenised without being the value itself.
        Scalar::Bool => return false,
        Scalar::Date => {
            let days = datetime::days_from_civil(1900, 1, 1) + (n % KEYED_DAYS) as i64;
            if text {
                datetime::write_date(days, out);
            } else {
                out.extend_from_slice(&((days - PG_EPOCH_DAYS) as i32).to_be_bytes());
            }
        }
        Scalar::Timestamp | Scalar::TimestampTz => {
            let secs =
                datetime::days_from_civil(1900, 1, 1) * 86_400 + (n % (KEYED_DAYS * 86_400)) as i64;
            if text {
                datetime::write_date(secs.div_euclid(86_400), out);
                out.push(b' ');
                datetime::write_time(secs.rem_euclid(86_400), out);
                if s == Scalar::TimestampTz {
                    out.extend_from_slice(b"+00");
                }
            } else {
                let usecs = (secs - PG_EPOCH_DAYS * 86_400) * 1_000_000;
                out.extend_from_slice(&usecs.to_be_bytes());
            }
        }
        Scalar::Time => {
            let secs = (n % 86_400) as i64;
            if text {
                datetime::write_time(secs, out);
            } else {
                out.extend_from_slice(&(secs * 1_000_000).to_be_bytes());
            }
        }
        Scalar::Uuid => {
            let mut b: [u8; 16] = d[..16].try_into().unwrap_or([0; 16]);
            // Version 4, RFC 4122 variant: it looks like any random uuid.
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            if text {
                write_uuid_text(&b, out);
            } else {
                out.extend_from_slice(&b);
            }
        }
        Scalar::Json | Scalar::Jsonb => {
            if s == Scalar::Jsonb && !text {
                out.push(1);
            }
            out.push(b'"');
            textmask::write_token(&d, out);
            out.push(b'"');
        }
        Scalar::Inet | Scalar::Cidr => {
            let Some(orig) = read_net(format, v) else {
                return false;
            };
            // Private ranges (10/8, fd00::/8), full length so a cidr is valid.
            let mut addr = [0; 16];
            let net = if orig.v6 {
                addr[0] = 0xfd;
                addr[1..].copy_from_slice(&d[8..23]);
                Net {
                    v6: true,
                    bits: 128,
                    addr,
                }
            } else {
                addr[..4].copy_from_slice(&[10, d[8], d[9], d[10]]);
                Net {
                    v6: false,
                    bits: 32,
                    addr,
                }
            };
            write_net(net, s, format, out);
        }
        Scalar::Bytea if text => {
            out.extend_from_slice(b"\\x");
            textmask::write_hex(&d, out);
        }
        Scalar::Bytea => out.extend_from_slice(&d),
        Scalar::Unknown => return false,
    }
    true
}

/// A keyed numeric: a number of at most `precision` digits placed at the
/// column's scale, so it fits numeric(p, s).
fn write_keyed_numeric(m: Option<NumericMod>, format: Format, n: u64, out: &mut Vec<u8>) -> bool {
    let (digits, scale) = m.map_or((KEYED_NUMERIC_DIGITS, 0), |m| {
        (m.precision.min(KEYED_NUMERIC_DIGITS), m.scale)
    });
    let value = n % 10u64.pow(digits);
    let mut text = format!("{value}").into_bytes();
    if scale > 0 {
        let scale = scale as usize;
        if text.len() <= scale {
            let pad = scale + 1 - text.len();
            text.splice(0..0, std::iter::repeat_n(b'0', pad));
        }
        text.insert(text.len() - scale, b'.');
    } else if value != 0 {
        text.extend(std::iter::repeat_n(b'0', scale.unsigned_abs() as usize));
    }
    match format {
        Format::Text => {
            out.extend_from_slice(&text);
            true
        }
        Format::Binary => numeric::text_to_binary(&text, out).is_some(),
    }
}

/// The order of magnitude of an integer, same sign.
fn int_magnitude(n: i64) -> i64 {
    if n == 0 {
        return 0;
    }
    let p = 10i64.pow(n.unsigned_abs().ilog10());
    if n < 0 {
        -p
    } else {
        p
    }
}

fn float_magnitude(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let a = x.abs();
    let mut e = a.log10().floor() as i32;
    // log10 is not exact at powers of ten; correct by one either way.
    if 10f64.powi(e + 1) <= a {
        e += 1;
    } else if 10f64.powi(e) > a {
        e -= 1;
    }
    10f64.powi(e).copysign(x)
}

/// The coarser value of the same type; false when there is none (the
/// caller writes the constant).
fn write_generalised(s: Scalar, format: Format, v: &[u8], out: &mut Vec<u8>) -> bool {
    let text = format == Format::Text;
    match s {
        // A text birth date such as 1985-04-12 keeps its year.
        Scalar::Text(limit) if v.len() == 10 && datetime::iso_year(v).is_some() => {
            let start = out.len();
            datetime::write_text_year(v, false, false, out);
            textmask::fit(limit, out, start);
            true
        }
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => match read_int(s, format, v) {
            Some(n) => {
                write_int(s, format, int_magnitude(n), out);
                true
            }
            None => false,
        },
        Scalar::Numeric(_) if text => match numeric::parse_text(v) {
            Some(d) => {
                numeric::write_magnitude(&d, out);
                true
            }
            None => false,
        },
        Scalar::Numeric(_) => {
            let mut t = Vec::new();
            numeric::binary_to_text(v, &mut t).is_some()
                && numeric::parse_text(&t).is_some_and(|d| {
                    let mut m = Vec::new();
                    numeric::write_magnitude(&d, &mut m);
                    numeric::text_to_binary(&m, out).is_some()
                })
        }
        Scalar::Float4 | Scalar::Float8 => match read_f64(s, format, v) {
            // NaN and the infinities say nothing and stay.
            Some(x) => {
                write_float(s, format, float_magnitude(x), out);
                true
            }
            None => false,
        },
        Scalar::Date | Scalar::Timestamp | Scalar::TimestampTz if text => {
            if matches!(v, b"infinity" | b"-infinity") {
                out.extend_from_slice(v);
                return true;
            }
            datetime::write_text_year(v, s != Scalar::Date, s == Scalar::TimestampTz, out)
        }
        Scalar::Date => match <[u8; 4]>::try_from(v) {
            Ok(b) => {
                out.extend_from_slice(&datetime::date_to_year(i32::from_be_bytes(b)).to_be_bytes());
                true
            }
            Err(_) => false,
        },
        Scalar::Timestamp | Scalar::TimestampTz => match <[u8; 8]>::try_from(v) {
            Ok(b) => {
                out.extend_from_slice(
                    &datetime::timestamp_to_year(i64::from_be_bytes(b)).to_be_bytes(),
                );
                true
            }
            Err(_) => false,
        },
        Scalar::Time if text => match datetime::text_hour(v) {
            Some(h) => {
                let _ = write!(out, "{h:02}:00:00");
                true
            }
            None => false,
        },
        Scalar::Time => match <[u8; 8]>::try_from(v).map(i64::from_be_bytes) {
            Ok(us) if (0..=24 * USECS_PER_HOUR).contains(&us) => {
                out.extend_from_slice(&(us - us % USECS_PER_HOUR).to_be_bytes());
                true
            }
            _ => false,
        },
        Scalar::Inet | Scalar::Cidr => match read_net(format, v) {
            Some(net) => {
                write_net(net.generalise(V4_PREFIX, V6_PREFIX), s, format, out);
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// A value of a column no one classified: the detectors look at its text
/// and each hit is masked. Text-like types (and json) keep everything
/// around the hits; other types become their constant on any hit. Floats,
/// booleans, dates, times, uuids and addresses hold no free text and are
/// not scanned. Unknown types are scanned as raw bytes (a binary composite
/// carries its text fields verbatim) and become NULL on a hit.
pub(crate) fn write_scanned(
    s: Scalar,
    format: Format,
    detectors: &Detectors,
    tally: Option<&crate::detect::HitTally>,
    context: Option<Class>,
    v: &[u8],
    out: &mut Vec<u8>,
) -> Wrote {
    let text = format == Format::Text;
    let find = |t: &[u8]| {
        let hits = detectors.find(t, context);
        if let (Some(tally), false) = (tally, hits.is_empty()) {
            tally.add(&hits);
        }
        hits
    };
    let hit = |t: &[u8]| !find(t).is_empty();
    let clean = match s {
        Scalar::Text(limit) => {
            let start = out.len();
            replace_hits(v, &find(v), out);
            textmask::fit(limit, out, start);
            return Wrote::Value;
        }
        Scalar::Json => {
            replace_hits(v, &find(v), out);
            return Wrote::Value;
        }
        Scalar::Jsonb if text => {
            replace_hits(v, &find(v), out);
            return Wrote::Value;
        }
        Scalar::Jsonb => match v.split_first() {
            Some((1, json)) => {
                out.push(1);
                replace_hits(json, &find(json), out);
                return Wrote::Value;
            }
            _ => false,
        },
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 if text => !hit(v),
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => {
            read_int(s, format, v).is_some_and(|n| !hit(n.to_string().as_bytes()))
        }
        Scalar::Numeric(_) if text => !hit(v),
        Scalar::Numeric(_) => {
            let mut t = Vec::new();
            numeric::binary_to_text(v, &mut t).is_some() && !hit(&t)
        }
        Scalar::Bytea if text => match textmask::read_bytea_hex(v) {
            Some(bytes) => !hit(&bytes),
            None => !hit(v),
        },
        Scalar::Bytea => !hit(v),
        Scalar::Unknown => {
            if hit(v) {
                return Wrote::Null;
            }
            true
        }
        Scalar::Float4
        | Scalar::Float8
        | Scalar::Bool
        | Scalar::Date
        | Scalar::Timestamp
        | Scalar::TimestampTz
        | Scalar::Time
        | Scalar::Uuid
        | Scalar::Inet
        | Scalar::Cidr => true,
    };
    if clean {
        out.extend_from_slice(v);
        Wrote::Value
    } else {
        write_redacted(s, format, out)
    }
}

/// Copies `v` with each hit replaced by its class's shape mask. Hits come
/// from a detector and are not trusted: they are clamped to the value,
/// widened to whole characters and whole escapes, and overlaps skipped.
pub(crate) fn replace_hits(v: &[u8], hits: &[Hit], out: &mut Vec<u8>) {
    let mut at = 0;
    for hit in hits {
        let mut start = hit.start.min(v.len());
        let mut end = hit.end.min(v.len());
        // Not in the middle of a UTF-8 sequence.
        while start > 0 && start < v.len() && (v[start] & 0xC0) == 0x80 {
            start -= 1;
        }
        while end < v.len() && (v[end] & 0xC0) == 0x80 {
            end += 1;
        }
        // Not right after the backslash that escapes the hit's first byte.
        let backslashes = v[..start].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 1 {
            start -= 1;
        }
        if start < at || end <= start {
            continue;
        }
        out.extend_from_slice(&v[at..start]);
        textmask::write_shape(hit.class, &v[start..end], out);
        at = end;
    }
    out.extend_from_slice(&v[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitudes() {
        assert_eq!(int_magnitude(12345), 10000);
        assert_eq!(int_magnitude(-9), -1);
        assert_eq!(int_magnitude(i64::MIN), -1_000_000_000_000_000_000);
        assert_eq!(float_magnitude(1000.0), 1000.0);
        assert_eq!(float_magnitude(999.9), 100.0);
        assert_eq!(float_magnitude(-0.05), -0.01);
        assert!(float_magnitude(f64::NAN).is_nan());
    }

    #[test]
    fn hits_are_sanitised() {
        let mut out = Vec::new();
        let hits = [
            Hit {
                start: 3,
                end: 99,
                class: Class::Secret,
            },
            Hit {
                start: 0,
                end: 2,
                class: Class::Secret,
            },
        ];
        replace_hits(b"ab cd", &hits, &mut out);
        assert_eq!(out, b"ab **");
        out.clear();
        // A hit starting inside "é" covers all of it; one right after an
        // escaping backslash takes the backslash along.
        let hits = [
            Hit {
                start: 1,
                end: 2,
                class: Class::Secret,
            },
            Hit {
                start: 3,
                end: 4,
                class: Class::Secret,
            },
        ];
        replace_hits("é\\nx".as_bytes(), &hits, &mut out);
        assert_eq!(out, b"***x");
    }
}
