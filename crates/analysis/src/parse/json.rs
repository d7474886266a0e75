//! A reader for the JSON libpg_query writes (`pg_query_parse_opts`), straight
//! into pg_query's prost structs.
//!
//! It reads exactly the dialect `pg_query_outfuncs_json.c` produces and
//! nothing more general: no whitespace, object keys without escapes, every
//! key known. Anything else is an error, never a guess, so the tree either
//! matches what the protobuf path would have decoded or the statement is
//! refused. The per-message readers are generated (`json_nodes.rs`); this file
//! holds the tokens and the one message whose JSON shape differs from its
//! struct, `A_Const`.
//!
//! Recursion is bounded by [`MAX_OBJECT_DEPTH`]: every later walk over the
//! tree (the analysis, `Drop`, `PartialEq`) recurses as deep as the tree, so
//! bounding it here bounds them all.

use pg_query::protobuf as pb;
use pg_query::protobuf::a_const::Val;

use super::json_nodes::{fill_bit_string, fill_boolean, fill_float, fill_integer, fill_string};

/// How deeply JSON objects may nest. An expression level costs two (the
/// `Node` wrapper and the node itself), so this admits about 1,000 nested
/// expressions: a chain of 995 `+` or `||`, 490 nested CASEs, 330 nested
/// sub-queries. The lib.rs "Limits" paragraph gives the measured stack cost
/// of the deepest trees this lets through.
pub(crate) const MAX_OBJECT_DEPTH: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Objects nested deeper than [`MAX_OBJECT_DEPTH`].
    TooDeep,
    /// Anything that is not the JSON libpg_query writes for a parse tree.
    Unexpected,
}

pub(crate) struct Reader<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    /// Where each `A_Const` starts in the statement text (see
    /// [`super::Parsed::a_const_locations`]).
    a_const_locations: Vec<usize>,
}

/// Reads a whole parse result; trailing bytes are an error. Also returns
/// the sorted locations of every `A_Const` in it.
pub(crate) fn parse_result(json: &[u8]) -> Result<(pb::ParseResult, Vec<usize>), DecodeError> {
    // Validated once here, so strings below are sliced, not re-checked.
    let text = std::str::from_utf8(json).map_err(|_| DecodeError::Unexpected)?;
    let mut reader = Reader {
        text,
        pos: 0,
        depth: 0,
        a_const_locations: Vec::new(),
    };
    let mut result = pb::ParseResult::default();
    super::json_nodes::fill_parse_result(&mut reader, &mut result)?;
    if reader.pos != json.len() {
        return Err(DecodeError::Unexpected);
    }
    let mut locations = reader.a_const_locations;
    locations.sort_unstable();
    Ok((result, locations))
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), DecodeError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(DecodeError::Unexpected)
        }
    }

    fn literal(&mut self, word: &str) -> bool {
        let found = self
            .text
            .as_bytes()
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(word.as_bytes()));
        if found {
            self.pos += word.len();
        }
        found
    }

    pub(crate) fn begin_object(&mut self) -> Result<(), DecodeError> {
        if self.depth >= MAX_OBJECT_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        self.expect(b'{')?;
        self.depth += 1;
        Ok(())
    }

    pub(crate) fn end_object(&mut self) -> Result<(), DecodeError> {
        self.expect(b'}')?;
        self.depth = self.depth.saturating_sub(1);
        Ok(())
    }

    /// The next key of the current object, or `None` after its closing
    /// brace. Keys are plain identifiers: a key with an escape in it cannot
    /// match any field name, so it is refused by the caller's match.
    pub(crate) fn key(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let bytes = self.text.as_bytes();
        let mut pos = self.pos;
        match bytes.get(pos) {
            Some(b'}') => {
                self.pos = pos + 1;
                self.depth = self.depth.saturating_sub(1);
                return Ok(None);
            }
            Some(b',') => pos += 1,
            _ => {}
        }
        if bytes.get(pos) != Some(&b'"') {
            return Err(DecodeError::Unexpected);
        }
        let rest = bytes.get(pos + 1..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == b'"')
            .ok_or(DecodeError::Unexpected)?;
        if rest.get(len + 1) != Some(&b':') {
            return Err(DecodeError::Unexpected);
        }
        self.pos = pos + len + 3;
        Ok(rest.get(..len))
    }

    /// Consumes a `null` if one is next.
    pub(crate) fn null(&mut self) -> Result<bool, DecodeError> {
        Ok(self.literal("null"))
    }

    /// A string without escapes, borrowed (enum names).
    fn plain_string(&mut self) -> Result<&'a str, DecodeError> {
        self.expect(b'"')?;
        let start = self.pos;
        let rest = self.text.as_bytes().get(start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\')
            .ok_or(DecodeError::Unexpected)?;
        if rest.get(len) != Some(&b'"') {
            return Err(DecodeError::Unexpected);
        }
        self.pos = start + len + 1;
        self.text
            .get(start..start + len)
            .ok_or(DecodeError::Unexpected)
    }

    /// A string value. libpg_query escapes every control character, so raw
    /// ones are not looked for: they could only be themselves.
    pub(crate) fn string(&mut self, out: &mut String) -> Result<(), DecodeError> {
        // libpg_query writes a NULL string as `null`; protobuf has no null
        // string, and the prost struct reads it as empty.
        if self.null()? {
            out.clear();
            return Ok(());
        }
        self.expect(b'"')?;
        out.clear();
        loop {
            let start = self.pos;
            let rest = self.text.as_bytes().get(start..).unwrap_or_default();
            let len = memchr::memchr2(b'"', b'\\', rest).ok_or(DecodeError::Unexpected)?;
            out.push_str(
                self.text
                    .get(start..start + len)
                    .ok_or(DecodeError::Unexpected)?,
            );
            self.pos = start + len + 1;
            if rest.get(len) == Some(&b'"') {
                return Ok(());
            }
            self.escape(out)?;
        }
    }

    /// One escape after its backslash. libpg_query writes `\" \\ \b \f \n
    /// \r \t` and `\u00XX` (control characters, `<`, `>`); the rest of JSON's
    /// escapes are read too.
    fn escape(&mut self, out: &mut String) -> Result<(), DecodeError> {
        let byte = self.peek().ok_or(DecodeError::Unexpected)?;
        self.pos += 1;
        let c = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&unit) {
                    // A surrogate pair: the low half must follow.
                    if !self.literal("\\u") {
                        return Err(DecodeError::Unexpected);
                    }
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(DecodeError::Unexpected);
                    }
                    0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    unit
                };
                char::from_u32(code).ok_or(DecodeError::Unexpected)?
            }
            _ => return Err(DecodeError::Unexpected),
        };
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, DecodeError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or(DecodeError::Unexpected)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DecodeError::Unexpected);
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| DecodeError::Unexpected)
    }

    pub(crate) fn boolean(&mut self, out: &mut bool) -> Result<(), DecodeError> {
        *out = if self.literal("true") {
            true
        } else if self.literal("false") {
            false
        } else {
            return Err(DecodeError::Unexpected);
        };
        Ok(())
    }

    /// An integer, as the type of the field it goes to: out of range is an
    /// error, not a wrap. libpg_query writes integers with printf's `%d`,
    /// `%u`, `%ld` or `%lu`: an optional minus and digits.
    fn integer<T: TryFrom<i128>>(&mut self) -> Result<T, DecodeError> {
        let bytes = self.text.as_bytes();
        let negative = bytes.get(self.pos) == Some(&b'-');
        let mut pos = self.pos + usize::from(negative);
        let digits_start = pos;
        let mut value: i128 = 0;
        while let Some(&b) = bytes.get(pos) {
            if !b.is_ascii_digit() {
                break;
            }
            // Twenty digits fit an i128 with room to spare; more is refused.
            if pos - digits_start >= 20 {
                return Err(DecodeError::Unexpected);
            }
            value = value * 10 + i128::from(b - b'0');
            pos += 1;
        }
        if pos == digits_start {
            return Err(DecodeError::Unexpected);
        }
        self.pos = pos;
        T::try_from(if negative { -value } else { value }).map_err(|_| DecodeError::Unexpected)
    }

    pub(crate) fn i32(&mut self, out: &mut i32) -> Result<(), DecodeError> {
        *out = self.integer()?;
        Ok(())
    }

    pub(crate) fn u32(&mut self, out: &mut u32) -> Result<(), DecodeError> {
        *out = self.integer()?;
        Ok(())
    }

    pub(crate) fn i64(&mut self, out: &mut i64) -> Result<(), DecodeError> {
        *out = self.integer()?;
        Ok(())
    }

    pub(crate) fn u64(&mut self, out: &mut u64) -> Result<(), DecodeError> {
        *out = self.integer()?;
        Ok(())
    }

    /// A float, written with printf's `%f`.
    pub(crate) fn f64(&mut self, out: &mut f64) -> Result<(), DecodeError> {
        let start = self.pos;
        let len = self.text.as_bytes().get(start..).map_or(0, |rest| {
            rest.iter()
                .take_while(|&&b| b.is_ascii_digit() || matches!(b, b'-' | b'.'))
                .count()
        });
        self.pos += len;
        *out = self
            .text
            .get(start..start + len)
            .and_then(|text| text.parse().ok())
            .ok_or(DecodeError::Unexpected)?;
        Ok(())
    }

    /// An enum, written by name; stored as prost stores it, as its number.
    pub(crate) fn enumeration<E: Into<i32>>(
        &mut self,
        out: &mut i32,
        from_name: fn(&str) -> Option<E>,
    ) -> Result<(), DecodeError> {
        let name = self.plain_string()?;
        *out = from_name(name).ok_or(DecodeError::Unexpected)?.into();
        Ok(())
    }

    /// A JSON array, each element read in place into a new default item.
    pub(crate) fn list<T: Default>(
        &mut self,
        out: &mut Vec<T>,
        fill: fn(&mut Self, &mut T) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        self.expect(b'[')?;
        out.clear();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            out.push(T::default());
            if let Some(item) = out.last_mut() {
                fill(self, item)?;
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(DecodeError::Unexpected),
            }
        }
    }

    /// Bitmapset fields: `[1,2]`.
    pub(crate) fn u64_list(&mut self, out: &mut Vec<u64>) -> Result<(), DecodeError> {
        self.list(out, Self::u64)
    }

    pub(crate) fn message<T: Default>(
        &mut self,
        out: &mut Option<T>,
        fill: fn(&mut Self, &mut T) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        fill(self, out.insert(T::default()))
    }

    /// Like [`Reader::message`], for a boxed field: the box is allocated
    /// first and filled where the message will live.
    pub(crate) fn boxed<T: Default>(
        &mut self,
        out: &mut Option<Box<T>>,
        fill: fn(&mut Self, &mut T) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        fill(self, out.insert(default_box()))
    }
}

/// A boxed default, made in a frame of its own: unoptimised builds would
/// otherwise keep a stack copy of every large node in the frames of a
/// recursive read.
#[inline(never)]
pub(super) fn default_box<T: Default>() -> Box<T> {
    Box::default()
}

/// `A_Const` is written with its `val` oneof as a sibling key:
/// `{"ival":{"ival":1},"location":7}`, `{"isnull":true,"location":7}`.
pub(super) fn fill_a_const(r: &mut Reader<'_>, m: &mut pb::AConst) -> Result<(), DecodeError> {
    r.begin_object()?;
    while let Some(key) = r.key()? {
        match key {
            b"isnull" => r.boolean(&mut m.isnull)?,
            b"location" => r.i32(&mut m.location)?,
            b"ival" => m.val = Some(Val::Ival(value(r, fill_integer)?)),
            b"fval" => m.val = Some(Val::Fval(value(r, fill_float)?)),
            b"boolval" => m.val = Some(Val::Boolval(value(r, fill_boolean)?)),
            b"sval" => m.val = Some(Val::Sval(value(r, fill_string)?)),
            b"bsval" => m.val = Some(Val::Bsval(value(r, fill_bit_string)?)),
            _ => return Err(DecodeError::Unexpected),
        }
    }
    if let Ok(at) = usize::try_from(m.location) {
        r.a_const_locations.push(at);
    }
    Ok(())
}

/// A small leaf message by value.
fn value<T: Default>(
    r: &mut Reader<'_>,
    fill: fn(&mut Reader<'_>, &mut T) -> Result<(), DecodeError>,
) -> Result<T, DecodeError> {
    let mut m = T::default();
    fill(r, &mut m)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &str) -> Reader<'_> {
        Reader {
            text,
            pos: 0,
            depth: 0,
            a_const_locations: Vec::new(),
        }
    }

    #[test]
    fn strings_unescape() {
        let read = |text: &str| {
            let mut out = String::from("stale");
            reader(text).string(&mut out).map(|()| out)
        };
        assert_eq!(
            read(r#""a\"b\\c\n\u003e\u00e9\ud83d\ude00""#),
            Ok("a\"b\\c\n>é😀".to_owned())
        );
        for bad in [r#""\ud83d""#, r#""\x""#, "\"a", "\"a\\"] {
            assert_eq!(read(bad), Err(DecodeError::Unexpected), "{bad}");
        }
        assert_eq!(read("null"), Ok(String::new()));
    }

    #[test]
    fn numbers_are_range_checked() {
        let (mut i, mut u, mut f) = (0i32, 0u32, 0f64);
        assert_eq!(reader("-2147483648").i32(&mut i), Ok(()));
        assert_eq!(i, i32::MIN);
        assert_eq!(
            reader("2147483648").i32(&mut i),
            Err(DecodeError::Unexpected)
        );
        assert_eq!(reader("-1").u32(&mut u), Err(DecodeError::Unexpected));
        assert_eq!(reader("").u32(&mut u), Err(DecodeError::Unexpected));
        assert_eq!(reader("-").i32(&mut i), Err(DecodeError::Unexpected));
        let (mut big, mut small) = (0u64, 0i64);
        assert_eq!(reader("18446744073709551615").u64(&mut big), Ok(()));
        assert_eq!(big, u64::MAX);
        assert_eq!(reader("-9223372036854775808").i64(&mut small), Ok(()));
        assert_eq!(small, i64::MIN);
        assert_eq!(
            reader("184467440737095516150").u64(&mut big),
            Err(DecodeError::Unexpected)
        );
        assert_eq!(reader("1.5").f64(&mut f), Ok(()));
        assert_eq!(f, 1.5);
    }

    #[test]
    fn unknown_keys_and_trailing_bytes_are_refused() {
        assert_eq!(
            parse_result(br#"{"version":1,"surprise":2}"#).map(|r| r.0),
            Err(DecodeError::Unexpected)
        );
        assert_eq!(
            parse_result(br#"{"version":1}x"#).map(|r| r.0),
            Err(DecodeError::Unexpected)
        );
        assert_eq!(
            parse_result(b"{\"stmts\":[{\"stmt\":{\"String\":{\"sval\":\"\xff\"}}}]}").map(|r| r.0),
            Err(DecodeError::Unexpected),
            "not UTF-8"
        );
        assert_eq!(
            parse_result(br#"{"stmts":[{"stmt":{"NoSuchNode":{}}}]}"#).map(|r| r.0),
            Err(DecodeError::Unexpected)
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "{{\"stmts\":[{{\"stmt\":{}{}}}]}}",
            "{\"List\":{\"items\":[".repeat(MAX_OBJECT_DEPTH),
            "]}}".repeat(MAX_OBJECT_DEPTH)
        );
        assert_eq!(
            parse_result(deep.as_bytes()).map(|r| r.0),
            Err(DecodeError::TooDeep)
        );
    }
}
