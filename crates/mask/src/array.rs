//! Arrays: every element masked on its own, the array's shape (dimensions,
//! bounds, which elements are NULL) kept.
//!
//! Text (`arrayfuncs.c`, `array_out`): an optional `[lo:hi]...=` bounds
//! prefix, then nested braces; elements are separated by `,` (the
//! delimiter of every type supported here), unquoted or double-quoted with
//! backslash escapes, and an unquoted `NULL` is SQL NULL.
//! Binary (`array_send`): i32 ndim, i32 has-null flag, u32 element OID,
//! ndim × (i32 size, i32 lower bound), then each element as i32 length
//! (-1 NULL) and bytes.
//!
//! An array that does not read as one becomes the empty array, which is a
//! valid value of every array type.

use crate::scalar::Wrote;

/// `MAXDIM` in PostgreSQL.
const MAX_DIMS: i32 = 6;

/// Writes the empty array.
pub(crate) fn write_empty(text: bool, elem_oid: u32, out: &mut Vec<u8>) {
    if text {
        out.extend_from_slice(b"{}");
    } else {
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&elem_oid.to_be_bytes());
    }
}

/// Rewrites a text-format array, each non-NULL element through `mask`
/// (which appends the element's new text, or returns Null).
pub(crate) fn rewrite_text<F>(v: &[u8], out: &mut Vec<u8>, mut mask: F)
where
    F: FnMut(&[u8], &mut Vec<u8>) -> Wrote,
{
    let start = out.len();
    if walk_text(v, out, &mut mask).is_none() {
        out.truncate(start);
        write_empty(true, 0, out);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum After {
    Open,
    Comma,
    Element,
}

fn walk_text<F>(v: &[u8], out: &mut Vec<u8>, mask: &mut F) -> Option<()>
where
    F: FnMut(&[u8], &mut Vec<u8>) -> Wrote,
{
    let mut pos = 0;
    if v.first() == Some(&b'[') {
        let eq = v.iter().position(|&b| b == b'=')?;
        let bounds = &v[..eq];
        if !bounds
            .iter()
            .all(|&b| b.is_ascii_digit() || b"[]:-".contains(&b))
        {
            return None;
        }
        out.extend_from_slice(&v[..=eq]);
        pos = eq + 1;
    }
    if v.get(pos) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut state = After::Open;
    let mut element = Vec::new();
    let mut masked = Vec::new();
    while pos < v.len() {
        let c = v[pos];
        match (state, c) {
            (After::Open | After::Comma, b'{') => {
                depth += 1;
                if depth > MAX_DIMS as usize {
                    return None;
                }
                out.push(c);
                pos += 1;
                state = After::Open;
            }
            (After::Open | After::Element, b'}') => {
                depth = depth.checked_sub(1)?;
                out.push(c);
                pos += 1;
                state = After::Element;
                if depth == 0 {
                    break;
                }
            }
            (After::Element, b',') => {
                out.push(c);
                pos += 1;
                state = After::Comma;
            }
            (After::Open | After::Comma, _) if depth > 0 => {
                element.clear();
                let null;
                (pos, null) = read_element(v, pos, &mut element)?;
                if null {
                    out.extend_from_slice(b"NULL");
                } else {
                    masked.clear();
                    match mask(&element, &mut masked) {
                        Wrote::Null => out.extend_from_slice(b"NULL"),
                        Wrote::Value => write_element(&masked, out),
                    }
                }
                state = After::Element;
            }
            _ => return None,
        }
    }
    (depth == 0 && pos == v.len() && state == After::Element).then_some(())
}

/// Reads one element at `pos` into `element` (unescaped); returns the
/// position after it and whether it is NULL.
fn read_element(v: &[u8], mut pos: usize, element: &mut Vec<u8>) -> Option<(usize, bool)> {
    if v[pos] == b'"' {
        pos += 1;
        loop {
            match *v.get(pos)? {
                b'"' => return Some((pos + 1, false)),
                b'\\' => {
                    element.push(*v.get(pos + 1)?);
                    pos += 2;
                }
                b => {
                    element.push(b);
                    pos += 1;
                }
            }
        }
    }
    let begin = pos;
    let mut escaped = false;
    while let Some(&b) = v.get(pos) {
        match b {
            b',' | b'}' => break,
            b'{' | b'"' => return None,
            b'\\' => {
                escaped = true;
                element.push(*v.get(pos + 1)?);
                pos += 2;
            }
            _ => {
                element.push(b);
                pos += 1;
            }
        }
    }
    if pos == begin {
        return None;
    }
    let null = !escaped && element.eq_ignore_ascii_case(b"NULL");
    Some((pos, null))
}

/// Appends an element's text, quoted when `array_out` would quote it.
pub(crate) fn write_element(e: &[u8], out: &mut Vec<u8>) {
    let needs_quotes = e.is_empty()
        || e.eq_ignore_ascii_case(b"NULL")
        || e.iter().any(|b| {
            matches!(
                b,
                b'"' | b'\\' | b'{' | b'}' | b',' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c
            )
        });
    if !needs_quotes {
        out.extend_from_slice(e);
        return;
    }
    out.push(b'"');
    for &b in e {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Rewrites a binary-format array whose elements must be of `elem_oid`.
pub(crate) fn rewrite_binary<F>(v: &[u8], elem_oid: u32, out: &mut Vec<u8>, mut mask: F)
where
    F: FnMut(&[u8], &mut Vec<u8>) -> Wrote,
{
    let start = out.len();
    if walk_binary(v, elem_oid, out, &mut mask).is_none() {
        out.truncate(start);
        write_empty(false, elem_oid, out);
    }
}

fn read_i32(v: &[u8], pos: usize) -> Option<i32> {
    Some(i32::from_be_bytes(v.get(pos..pos + 4)?.try_into().ok()?))
}

fn walk_binary<F>(v: &[u8], elem_oid: u32, out: &mut Vec<u8>, mask: &mut F) -> Option<()>
where
    F: FnMut(&[u8], &mut Vec<u8>) -> Wrote,
{
    let ndim = read_i32(v, 0)?;
    let flags = read_i32(v, 4)?;
    if !(0..=MAX_DIMS).contains(&ndim)
        || !(flags == 0 || flags == 1)
        || read_i32(v, 8)? as u32 != elem_oid
    {
        return None;
    }
    let header = 12 + 8 * ndim as usize;
    let mut count: usize = if ndim == 0 { 0 } else { 1 };
    for d in 0..ndim as usize {
        let size = usize::try_from(read_i32(v, 12 + 8 * d)?).ok()?;
        read_i32(v, 16 + 8 * d)?;
        count = count.checked_mul(size)?;
    }
    // Every element takes at least its four length bytes.
    if count > v.len() / 4 {
        return None;
    }
    let flags_at = out.len() + 4;
    out.extend_from_slice(v.get(..header)?);
    let mut has_null = false;
    let mut pos = header;
    for _ in 0..count {
        let len = read_i32(v, pos)?;
        pos += 4;
        if len == -1 {
            out.extend_from_slice(&(-1i32).to_be_bytes());
            has_null = true;
            continue;
        }
        let len = usize::try_from(len).ok()?;
        let e = v.get(pos..pos.checked_add(len)?)?;
        pos += len;
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        match mask(e, out) {
            Wrote::Null => {
                out.truncate(len_at);
                out.extend_from_slice(&(-1i32).to_be_bytes());
                has_null = true;
            }
            Wrote::Value => {
                let n = i32::try_from(out.len() - len_at - 4).ok()?;
                out[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
            }
        }
    }
    if pos != v.len() {
        return None;
    }
    out[flags_at..flags_at + 4].copy_from_slice(&i32::from(has_null).to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn star(e: &[u8], out: &mut Vec<u8>) -> Wrote {
        out.extend(std::iter::repeat_n(b'*', e.len()));
        Wrote::Value
    }

    fn text(v: &str) -> String {
        let mut out = Vec::new();
        rewrite_text(v.as_bytes(), &mut out, star);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_arrays() {
        assert_eq!(text("{ab,NULL,\"c d\",\"\"}"), "{**,NULL,***,\"\"}");
        assert_eq!(text("{{1,2},{3,NULL}}"), "{{*,*},{*,NULL}}");
        assert_eq!(text("[0:1]={a,\"x\\\"y\"}"), "[0:1]={*,***}");
        assert_eq!(text("{}"), "{}");
        // An escaped NULL is a string.
        assert_eq!(text("{\\NULL}"), "{****}");
        for bad in [
            "",
            "{",
            "{a",
            "{a,}",
            "{,a}",
            "{a}}",
            "a",
            "{\"a}",
            "{a{b}}",
            "{{{{{{{1}}}}}}}",
        ] {
            assert_eq!(text(bad), "{}", "{bad}");
        }
    }

    #[test]
    fn text_elements_quoted_when_needed() {
        let mut out = Vec::new();
        rewrite_text(b"{a,b,c}", &mut out, |e, out| {
            match e {
                b"a" => out.extend_from_slice(b"x,y"),
                b"b" => out.extend_from_slice(b"null"),
                _ => return Wrote::Null,
            }
            Wrote::Value
        });
        assert_eq!(out, b"{\"x,y\",\"null\",NULL}");
    }

    fn binary(dims: &[(i32, i32)], elems: &[Option<&[u8]>]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(dims.len() as i32).to_be_bytes());
        v.extend_from_slice(&i32::from(elems.iter().any(Option::is_none)).to_be_bytes());
        v.extend_from_slice(&25u32.to_be_bytes());
        for (size, lb) in dims {
            v.extend_from_slice(&size.to_be_bytes());
            v.extend_from_slice(&lb.to_be_bytes());
        }
        for e in elems {
            match e {
                Some(e) => {
                    v.extend_from_slice(&(e.len() as i32).to_be_bytes());
                    v.extend_from_slice(e);
                }
                None => v.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        v
    }

    #[test]
    fn binary_arrays() {
        let v = binary(&[(3, 1)], &[Some(b"ab"), None, Some(b"")]);
        let mut out = Vec::new();
        rewrite_binary(&v, 25, &mut out, star);
        assert_eq!(out, binary(&[(3, 1)], &[Some(b"**"), None, Some(b"")]));

        // Elements turned NULL set the has-null flag.
        let v = binary(&[(2, 1)], &[Some(b"a"), Some(b"b")]);
        let mut out = Vec::new();
        rewrite_binary(&v, 25, &mut out, |_, _| Wrote::Null);
        assert_eq!(out, binary(&[(2, 1)], &[None, None]));

        // Wrong element type, count mismatch, trailing bytes: empty array.
        let empty = binary(&[], &[]);
        for (bad, oid) in [
            (binary(&[(1, 1)], &[Some(b"a")]), 23),
            (binary(&[(2, 1)], &[Some(b"a")]), 25),
            ([binary(&[(1, 1)], &[Some(b"a")]), vec![0]].concat(), 25),
            (binary(&[(-1, 1)], &[]), 25),
            (vec![0, 0, 0], 25),
        ] {
            let mut out = Vec::new();
            rewrite_binary(&bad, oid, &mut out, star);
            let mut want = empty.clone();
            want[8..12].copy_from_slice(&oid.to_be_bytes());
            assert_eq!(out, want);
        }
    }
}
