//! Checks that a value is a valid value of its type in its format, as a
//! driver decoding it would see it. Used by the tests and the fuzz entry
//! point to hold the rewriters to their promise.

use crate::array;
use crate::datetime;
use crate::inet::Net;
use crate::kind::{Kind, Scalar};
use crate::numeric;
use crate::scalar::Wrote;
use crate::textmask::{self, char_len};
use crate::Format;

/// Nesting deeper than this is not followed (the fuzzer would otherwise
/// overflow the stack); such a document counts as invalid.
const MAX_JSON_DEPTH: usize = 128;

pub(crate) fn check(kind: Kind, format: Format, v: &[u8]) -> Result<(), &'static str> {
    match kind {
        Kind::Scalar(s) => check_scalar(s, format, v),
        Kind::Array { elem, elem_oid } => {
            let mut bad = None;
            let mut copy = Vec::new();
            let mut each = |e: &[u8], out: &mut Vec<u8>| {
                if let Err(why) = check_scalar(elem, format, e) {
                    bad = Some(why);
                }
                out.extend_from_slice(e);
                Wrote::Value
            };
            match format {
                Format::Text => array::rewrite_text(v, &mut copy, &mut each),
                Format::Binary => array::rewrite_binary(v, elem_oid, &mut copy, &mut each),
            }
            if let Some(why) = bad {
                return Err(why);
            }
            // A malformed array reads back as the empty one.
            if copy != v {
                return Err("malformed array");
            }
            Ok(())
        }
    }
}

fn check_scalar(s: Scalar, format: Format, v: &[u8]) -> Result<(), &'static str> {
    let text = format == Format::Text;
    let ok = |b: bool, why| if b { Ok(()) } else { Err(why) };
    match s {
        Scalar::Text(limit) => {
            let mut chars = 0;
            let mut i = 0;
            while i < v.len() {
                i += char_len(v, i);
                chars += 1;
            }
            if let Some(max) = limit.max_chars {
                ok(
                    if limit.pad {
                        chars == max
                    } else {
                        chars <= max
                    },
                    "text length",
                )?;
            }
            ok(limit.max_bytes.is_none_or(|m| v.len() <= m), "name length")
        }
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 if text => {
            let n: Option<i64> = std::str::from_utf8(v).ok().and_then(|t| t.parse().ok());
            let fits = match (s, n) {
                (Scalar::Int2, Some(n)) => i16::try_from(n).is_ok(),
                (Scalar::Int4, Some(n)) => i32::try_from(n).is_ok(),
                (_, n) => n.is_some(),
            };
            ok(fits, "integer text")
        }
        Scalar::Int2 => ok(v.len() == 2, "int2 length"),
        Scalar::Numeric(_) if text => ok(numeric::parse_text(v).is_some(), "numeric text"),
        Scalar::Numeric(_) => ok(
            numeric::binary_to_text(v, &mut Vec::new()).is_some(),
            "numeric binary",
        ),
        Scalar::Float4 | Scalar::Float8 if text => ok(
            matches!(v, b"NaN" | b"Infinity" | b"-Infinity")
                || std::str::from_utf8(v)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .is_some_and(f64::is_finite),
            "float text",
        ),
        Scalar::Int4 | Scalar::Float4 => ok(v.len() == 4, "4-byte length"),
        Scalar::Timestamp | Scalar::TimestampTz if text => {
            ok(is_infinity(v) || iso_timestamp(v), "timestamp text")
        }
        Scalar::Int8 | Scalar::Float8 | Scalar::Timestamp | Scalar::TimestampTz => {
            ok(v.len() == 8, "8-byte length")
        }
        Scalar::Bool if text => ok(v == b"t" || v == b"f", "bool text"),
        Scalar::Bool => ok(v == [0] || v == [1], "bool binary"),
        Scalar::Date if text => ok(
            is_infinity(v) || iso_date_len(v).is_some_and(|n| rest_is_bc(&v[n..])),
            "date text",
        ),
        Scalar::Date => ok(v.len() == 4, "date length"),
        Scalar::Time if text => ok(datetime::text_hour(v).is_some(), "time text"),
        Scalar::Time => ok(
            <[u8; 8]>::try_from(v).is_ok_and(|b| {
                (0..=24 * datetime::USECS_PER_HOUR).contains(&i64::from_be_bytes(b))
            }),
            "time binary",
        ),
        Scalar::Uuid if text => ok(
            v.len() == 36
                && v.iter().enumerate().all(|(i, b)| {
                    if [8, 13, 18, 23].contains(&i) {
                        *b == b'-'
                    } else {
                        b.is_ascii_hexdigit()
                    }
                }),
            "uuid text",
        ),
        Scalar::Uuid => ok(v.len() == 16, "uuid length"),
        Scalar::Json => ok(is_json(v), "json"),
        Scalar::Jsonb if text => ok(is_json(v), "json"),
        Scalar::Jsonb => ok(v.first() == Some(&1) && is_json(&v[1..]), "jsonb binary"),
        Scalar::Inet | Scalar::Cidr => {
            let net = if text {
                Net::read_text(v)
            } else {
                Net::read_binary(v)
            };
            let net = net.ok_or("inet")?;
            if s == Scalar::Cidr {
                ok(net.generalise(net.bits, net.bits) == net, "cidr host bits")?;
                if !text {
                    ok(v[2] == 1, "cidr flag")?;
                }
            }
            Ok(())
        }
        Scalar::Bytea if text => ok(textmask::read_bytea_hex(v).is_some(), "bytea hex"),
        Scalar::Bytea | Scalar::Unknown => Ok(()),
    }
}

fn is_infinity(v: &[u8]) -> bool {
    v == b"infinity" || v == b"-infinity"
}

fn rest_is_bc(rest: &[u8]) -> bool {
    rest.is_empty() || rest == b" BC"
}

/// The length of a leading `YYYY-MM-DD`.
fn iso_date_len(v: &[u8]) -> Option<usize> {
    let (year, _) = datetime::iso_year(v)?;
    Some(year.len() + 6)
}

/// `YYYY-MM-DD HH:MM:SS[.f][±zz[:zz]][ BC]`
fn iso_timestamp(v: &[u8]) -> bool {
    let Some(n) = iso_date_len(v) else {
        return false;
    };
    let rest = &v[n..];
    let Some(time) = rest.strip_prefix(b" ") else {
        return false;
    };
    if datetime::text_hour(time).is_none() {
        return false;
    }
    let mut tail = &time[8..];
    if let Some(frac) = tail.strip_prefix(b".") {
        let d = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        tail = &frac[d..];
    }
    if let Some(zone) = tail.strip_prefix(b"+").or_else(|| tail.strip_prefix(b"-")) {
        let d = zone
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b':')
            .count();
        tail = &zone[d..];
    }
    rest_is_bc(tail)
}

/// A small JSON (RFC 8259) recogniser.
pub(crate) fn is_json(v: &[u8]) -> bool {
    let mut p = Json { v, pos: 0 };
    p.ws();
    p.value(0)
        && {
            p.ws();
            p.pos == v.len()
        }
        && std::str::from_utf8(v).is_ok()
}

struct Json<'a> {
    v: &'a [u8],
    pos: usize,
}

impl Json<'_> {
    fn peek(&self) -> Option<u8> {
        self.v.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.v[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_JSON_DEPTH {
            return false;
        }
        match self.peek() {
            Some(b'{') => self.seq(b'}', depth, true),
            Some(b'[') => self.seq(b']', depth, false),
            Some(b'"') => self.string(),
            Some(b't') => self.eat(b"true"),
            Some(b'f') => self.eat(b"false"),
            Some(b'n') => self.eat(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn seq(&mut self, close: u8, depth: usize, object: bool) -> bool {
        self.pos += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return true;
        }
        loop {
            if object {
                if !self.string() {
                    return false;
                }
                self.ws();
                if !self.eat(b":") {
                    return false;
                }
                self.ws();
            }
            if !self.value(depth + 1) {
                return false;
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(c) if c == close => {
                    self.pos += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    fn string(&mut self) -> bool {
        if !self.eat(b"\"") {
            return false;
        }
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => return true,
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                    Some(b'u')
                        if self
                            .v
                            .get(self.pos + 1..self.pos + 5)
                            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                    {
                        self.pos += 5
                    }
                    _ => return false,
                },
                0..=0x1f => return false,
                _ => {}
            }
        }
        false
    }

    fn number(&mut self) -> bool {
        let digits = |p: &mut Self| {
            let n = p.v[p.pos..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            p.pos += n;
            n
        };
        self.eat(b"-");
        if !self.eat(b"0") && digits(self) == 0 {
            return false;
        }
        if self.eat(b".") && digits(self) == 0 {
            return false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json() {
        for good in [
            r#"{"a": [1, -2.5e3, true, null, "x\u00e9\n"]}"#,
            r#""****""#,
            "0",
            " [ ] ",
        ] {
            assert!(is_json(good.as_bytes()), "{good}");
        }
        for bad in [
            r#"{"a" 1}"#,
            r#""\*""#,
            "01",
            "[1,]",
            "",
            "\"a",
            &"[".repeat(1000),
        ] {
            assert!(!is_json(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert!(iso_timestamp(b"2024-05-03 10:11:12.5+02:30 BC"));
        assert!(iso_timestamp(b"1970-01-01 00:00:00"));
        assert!(!iso_timestamp(b"1970-01-01"));
        assert!(!iso_timestamp(b"1970-01-01 00:00:00 junk"));
    }
}
