//! Canonical encoding: the exact bytes a record is hashed as.
//!
//! A record's canonical form is JSON with:
//! - object keys sorted by their UTF-8 bytes, each key once;
//! - no whitespace anywhere;
//! - integers only, in plain decimal (`-0`, exponents, fractions and
//!   floats are refused: the record model has none);
//! - strings escaped minimally: `"` as `\"`, `\` as `\\`, the control
//!   characters U+0008, U+0009, U+000A, U+000C, U+000D as `\b \t \n \f \r`,
//!   other characters below U+0020 as `\u00xx` (lower-case hex), every other
//!   character as its UTF-8 bytes (no `\u` escapes for non-ASCII, no
//!   escaping of `/`);
//! - absent optional fields left out (the model skips `None`, empty lists
//!   and empty maps), so a field added in a later version does not change
//!   the bytes of records that do not use it.
//!
//! This is RFC 8785 (JSON Canonicalization Scheme) restricted to inputs
//! without floats, except that keys are ordered by UTF-8 bytes rather than
//! UTF-16 code units; the two orders agree for every key the model uses
//! (all ASCII). Anyone can re-derive the bytes from the stored JSON with a
//! few lines in any language, which is the point: an auditor need not trust
//! this code.
//!
//! The envelope that the chain hashes (log id, seq, timestamp, previous
//! hash, the record) is itself a canonical object, built by [`entry`]
//! around the record's canonical bytes without re-encoding them.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    #[error("floats have no canonical form")]
    Float,
    #[error("{0}")]
    Serde(String),
}

mod direct;

/// The canonical bytes of any serialisable value (a [`crate::Record`], a
/// checkpoint statement), written directly (see `direct.rs`).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(768);
    value.serialize(direct::Writer { out: &mut out })?;
    Ok(out)
}

/// The same bytes by way of a `serde_json::Value` tree: the reference
/// [`encode`] is tested against, and what an auditor's own few lines
/// would do.
pub fn encode_via_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let v = serde_json::to_value(value).map_err(|e| CanonicalError::Serde(e.to_string()))?;
    let mut out = Vec::with_capacity(512);
    write_value(&v, &mut out)?;
    Ok(out)
}

/// Writes `v` canonically. Keys are sorted here rather than trusting the
/// map's iteration order, which a dependency's cargo feature
/// (`preserve_order`) could change under us.
pub fn write_value(v: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_u64(u, out);
            } else if let Some(i) = n.as_i64() {
                write_i64(i, out);
            } else {
                return Err(CanonicalError::Float);
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_value(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

pub fn write_u64(mut u: u64, out: &mut Vec<u8>) {
    // Plain decimal, no sign or padding (what `Display` writes), without
    // the formatting machinery: this runs for every number of every record.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

pub fn write_i64(i: i64, out: &mut Vec<u8>) {
    if i < 0 {
        out.push(b'-');
    }
    write_u64(i.unsigned_abs(), out);
}

/// Whether a byte must be escaped in a JSON string.
const fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

pub fn write_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Most strings need no escape: find the first byte that does, and
    // copy everything before it at once.
    let mut start = 0;
    while let Some(off) = bytes[start..].iter().position(|&b| needs_escape(b)) {
        let i = start + off;
        out.extend_from_slice(&bytes[start..i]);
        let b = bytes[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The fields of the chain envelope other than the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeFields<'a> {
    pub log: &'a str,
    pub prev: &'a [u8; 32],
    pub seq: u64,
    pub ts_micros: i64,
    pub version: u32,
}

/// The canonical envelope
/// `{"log":…,"prev":"<hex>","record":<record>,"seq":…,"ts":…,"v":…}`
/// around already-canonical record bytes. The keys are written in sorted
/// order by construction; a test checks this equals [`write_value`] of the
/// same object.
pub fn entry(fields: &EnvelopeFields<'_>, record: &[u8]) -> Vec<u8> {
    // Room for all of it, so the buffer is never grown (a grown one is
    // copied): the fixed parts, the log id (escapes aside), the 64 hex
    // digits of `prev`, the record, and the widest numbers.
    const FIXED: usize = r#"{"log":"","prev":"","record":,"seq":,"ts":,"v":}"#.len();
    const NUMBERS: usize = 20 + 20 + 10;
    let mut out = Vec::with_capacity(FIXED + fields.log.len() + 64 + record.len() + NUMBERS);
    out.extend_from_slice(b"{\"log\":");
    write_str(fields.log, &mut out);
    out.extend_from_slice(b",\"prev\":\"");
    crate::hex::encode_into(fields.prev, &mut out);
    out.extend_from_slice(b"\",\"record\":");
    out.extend_from_slice(record);
    out.extend_from_slice(b",\"seq\":");
    write_u64(fields.seq, &mut out);
    out.extend_from_slice(b",\"ts\":");
    write_i64(fields.ts_micros, &mut out);
    out.extend_from_slice(b",\"v\":");
    write_u64(u64::from(fields.version), &mut out);
    out.push(b'}');
    out
}

/// Adds the member `"key":value` to a canonical object in key order, in
/// place, without re-encoding the object: `value` must be canonical and
/// `key` absent. This is how an outcome is folded into a statement record
/// that is already encoded (a test checks the bytes equal encoding the
/// whole again). Fails if `object` is not an object, or holds `key`.
pub fn insert_member(object: &mut Vec<u8>, key: &str, value: &[u8]) -> Result<(), CanonicalError> {
    let at = member_slot(object, key.as_bytes())
        .ok_or_else(|| CanonicalError::Serde(format!("cannot add {key:?} to this object")))?;
    insert_member_at(object, at, key, value);
    Ok(())
}

/// [`insert_member`] at a slot already found by [`member_slot`] in an
/// object whose members before `at` are the same (a record rendered from
/// a template, see [`crate::template`]).
pub(crate) fn insert_member_at(object: &mut Vec<u8>, at: usize, key: &str, value: &[u8]) {
    insert_member_with(object, at, key, |o| o.extend_from_slice(value));
}

/// [`insert_member_at`], the value written by `write_value` (which appends
/// it to the vector it is given): no buffer of its own.
pub(crate) fn insert_member_with(
    object: &mut Vec<u8>,
    at: usize,
    key: &str,
    write_value: impl FnOnce(&mut Vec<u8>),
) {
    let first = object[at - 1] == b'{';
    let last = object[at] == b'}';
    // Keys in the model need no escapes (see `string_at`).
    debug_assert!(!key.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
    // The member is written at the end, then rotated into place: one move
    // of the bytes after `at`, and no buffer for the value.
    let end = object.len();
    object.extend_from_slice(if first { b"\"" } else { b",\"" });
    object.extend_from_slice(key.as_bytes());
    object.extend_from_slice(b"\":");
    write_value(object);
    if first && !last {
        object.push(b',');
    }
    let n = object.len() - end;
    object[at..].rotate_right(n);
}

/// The bytes of the value of the top-level member `key` of the canonical
/// object `object`, as a range; `None` if it has no such member.
pub(crate) fn member_value(object: &[u8], key: &[u8]) -> Option<std::ops::Range<usize>> {
    if object.first() != Some(&b'{') || object.last() != Some(&b'}') {
        return None;
    }
    let mut i = 1;
    while i < object.len() - 1 {
        let (member_key, after) = string_at(object, i)?;
        let end = value_end(object, after + 1)?;
        if member_key == key {
            return Some(after + 1..end);
        }
        i = end;
        if object[i] == b',' {
            i += 1;
        }
    }
    None
}

/// Where a member with `key` goes in the canonical object `object`: the
/// offset of the `,` or `}` that ends the last member whose key sorts
/// before it (or just after the `{`). `None` if `object` is not an object
/// or already holds `key`.
pub(crate) fn member_slot(object: &[u8], key: &[u8]) -> Option<usize> {
    if object.first() != Some(&b'{') || object.last() != Some(&b'}') {
        return None;
    }
    let mut slot = 1;
    let mut i = 1;
    while i < object.len() - 1 {
        // At the start of a member: its key.
        let (member_key, after) = string_at(object, i)?;
        match member_key.cmp(key) {
            std::cmp::Ordering::Equal => return None,
            std::cmp::Ordering::Greater => return Some(slot),
            std::cmp::Ordering::Less => {}
        }
        // Past the `:` and the value, to the `,` or the closing `}`.
        i = value_end(object, after + 1)?;
        slot = i;
        if object[i] == b',' {
            i += 1;
        }
    }
    Some(slot)
}

/// The raw (escaped) bytes of the string starting at `at`, and the offset
/// just past its closing quote. Keys in the model need no escapes, so
/// comparing raw bytes orders them as their values.
fn string_at(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if b.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some((&b[at + 1..i], i + 1)),
            _ => i += 1,
        }
    }
    None
}

/// The offset just past the value starting at `at` (at the `,` or `}`
/// that follows it in its object).
fn value_end(b: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = string_at(b, i)?.1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b'}' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inserting_a_member_equals_encoding_the_whole() {
        let value = json!({"b": 1});
        let mut v = Vec::new();
        write_value(&value, &mut v).unwrap();
        let objects = [
            json!({}),
            json!({"a": "x"}),
            json!({"z": "x"}),
            json!({"a": {"m": [1, {"n": "}]\"\\"}]}, "z": "\"m\":,}"}),
            json!({"a": [], "l": "{", "n": {}, "p": null, "q": true}),
            json!({"aa": 1, "m": -2, "ma": "x", "n": 0, "n00": 1}),
        ];
        for o in objects {
            let mut bytes = Vec::new();
            write_value(&o, &mut bytes).unwrap();
            insert_member(&mut bytes, "n0", &v).unwrap();
            let mut whole = o.clone();
            whole["n0"] = value.clone();
            assert_eq!(String::from_utf8(bytes).unwrap(), canon(whole), "{o}");
        }
        // A key already there, or not an object: refused, untouched.
        let mut bytes = br#"{"m":1}"#.to_vec();
        assert!(insert_member(&mut bytes, "m", b"2").is_err());
        assert_eq!(bytes, br#"{"m":1}"#);
        for bad in [&b"[1]"[..], b"", b"{\"a\":1", b"{\"a"] {
            let mut bytes = bad.to_vec();
            assert!(insert_member(&mut bytes, "m", b"2").is_err(), "{bad:?}");
        }
    }

    fn canon(v: Value) -> String {
        let mut out = Vec::new();
        write_value(&v, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn keys_sorted_no_whitespace() {
        assert_eq!(
            canon(json!({"b": 1, "a": [true, null], "A": "x"})),
            r#"{"A":"x","a":[true,null],"b":1}"#
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            canon(json!("a\"b\\c\n\u{1}\u{7f}é/")),
            "\"a\\\"b\\\\c\\n\\u0001\u{7f}é/\""
        );
    }

    #[test]
    fn integers_plain_floats_refused() {
        assert_eq!(
            canon(json!([0, -5, u64::MAX])),
            format!("[0,-5,{}]", u64::MAX)
        );
        let mut out = Vec::new();
        assert!(matches!(
            write_value(&json!(1.5), &mut out),
            Err(CanonicalError::Float)
        ));
    }

    #[test]
    fn envelope_matches_generic_encoding() {
        let record = json!({"type": "admin", "z": "q\"", "a": 1});
        let mut record_bytes = Vec::new();
        write_value(&record, &mut record_bytes).unwrap();
        let prev = [7u8; 32];
        let fields = EnvelopeFields {
            log: "log-\u{1}",
            prev: &prev,
            seq: 42,
            ts_micros: -3,
            version: 1,
        };
        let spliced = entry(&fields, &record_bytes);
        let whole = json!({
            "v": 1, "ts": -3, "seq": 42, "record": record,
            "prev": crate::hex::encode(&prev), "log": "log-\u{1}",
        });
        assert_eq!(String::from_utf8(spliced).unwrap(), canon(whole));
    }
}
