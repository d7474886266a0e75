//! Statement shapes: a text with its constants taken out, so that texts
//! differing only in literals share one analysis.
//!
//! Clients that inline literals (`pgbench -M simple`, ORMs without server
//! parameters, psql users) send a new text for every statement, and each
//! new text costs a full parse. Two texts whose tokens are equal except for
//! the values of their constants parse to the same tree except for those
//! values; when the analysis of one of them never looked at a constant's
//! value, it is the analysis of the other one too, up to the byte offsets
//! that literal lengths shift.
//!
//! That argument holds only if three things hold, and each is checked
//! rather than assumed:
//!
//! - **The scan finds PostgreSQL's tokens.** [`shape_of`] is a lexer for a
//!   deliberately small part of PostgreSQL's: plain `'...'` strings without
//!   backslashes, decimal numbers, `$n` parameters, identifiers, quoted
//!   identifiers, operators and comments. Anything else (prefixed strings
//!   such as `E'...'`, `U&'...'` or `X'...'`, dollar quoting, hexadecimal or
//!   underscored numbers, non-ASCII text outside a string, a NUL byte, a
//!   number running into a letter) gives no shape, and the text is parsed in
//!   full. Unterminated strings and comments give no shape either.
//! - **Every constant becomes an `A_Const` node.** Some grammar rules turn a
//!   string or number into something else (a COPY file name, a function
//!   body, an option value, `float(p)` choosing a type). The parser reports
//!   where each `A_Const` came from; a template is kept only if every
//!   constant of the text it was made from is one (see [`Template::new`]).
//! - **The analysis did not read a value.** Every place in this crate that
//!   reads a constant's value reports it ([`crate::literal`]); an analysis
//!   that did (a tautology in WHERE, `SET` and `set_config` values) is
//!   literal-dependent and is never reused for another text.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use crate::facts::Analysis;

/// A text's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The text with each constant replaced by a NUL byte and a letter for
    /// its token kind (NUL never occurs in a statement text, so a key cannot
    /// collide with one).
    pub key: String,
    /// Where each constant lies in the text, in order.
    pub constants: Vec<Range<usize>>,
}

/// The kinds of constant token the grammar tells apart: a string
/// (`SCONST`), an integer that fits in 32 bits (`ICONST`) and any other
/// number (`FCONST`). A number's kind decides its node type, so it is part
/// of the shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Number,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Text => 's',
            Kind::Integer => 'i',
            Kind::Number => 'n',
        }
    }
}

/// The shape of `sql`, or `None` when the text uses lexical forms this scan
/// does not follow (see the module documentation).
pub fn shape_of(sql: &str) -> Option<Shape> {
    let b = sql.as_bytes();
    // A one-digit constant becomes two bytes: leave room for a few.
    let mut key = String::with_capacity(sql.len() + 16);
    let mut constants = Vec::new();
    let mut copied = 0; // bytes of `sql` already accounted for in `key`
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        // Most bytes are spaces, punctuation and identifiers: step over
        // them without the full match.
        match CLASS[usize::from(c)] {
            Class::Plain => {
                i += 1;
                continue;
            }
            Class::IdentStart => {
                i += 1 + b[i + 1..].iter().take_while(|&&x| is_ident_char(x)).count();
                continue;
            }
            Class::Attention => {}
        }
        let next = b.get(i + 1).copied();
        match c {
            b'\'' => {
                // A string glued to what precedes it is a prefixed form
                // (E'', B'', X'', N'', U&'') or something stranger.
                if i > 0 && b.get(i - 1).copied().is_some_and(attaches) {
                    return None;
                }
                let end = quoted_end(b, i, b'\'')?;
                if b.get(end).copied().is_some_and(is_ident_char) {
                    return None;
                }
                push_constant(
                    sql,
                    &mut key,
                    &mut constants,
                    &mut copied,
                    i..end,
                    Kind::Text,
                );
                i = end;
            }
            b'"' => {
                if i > 0 && b.get(i - 1).copied().is_some_and(attaches) {
                    return None;
                }
                i = quoted_end(b, i, b'"')?;
            }
            b'-' if next == Some(b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&x| x == b'\n' || x == b'\r')
                    .map_or(b.len(), |p| i + p);
            }
            b'/' if next == Some(b'*') => i = block_comment_end(b, i)?,
            b'0'..=b'9' => {
                let (end, kind) = number(b, i)?;
                push_constant(sql, &mut key, &mut constants, &mut copied, i..end, kind);
                i = end;
            }
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => return None,
            b'$' => {
                // `$1`: a parameter, part of the shape. Any other `$` opens a
                // dollar-quoted string.
                let digits = b[i + 1..].iter().take_while(|x| x.is_ascii_digit()).count();
                if digits == 0 || b.get(i + 1 + digits).copied().is_some_and(is_ident_char) {
                    return None;
                }
                i += 1 + digits;
            }
            0 | 0x80..=0xff => return None,
            _ => i += 1,
        }
    }
    key.push_str(sql.get(copied..)?);
    Some(Shape { key, constants })
}

fn push_constant(
    sql: &str,
    key: &mut String,
    constants: &mut Vec<Range<usize>>,
    copied: &mut usize,
    at: Range<usize>,
    kind: Kind,
) {
    key.push_str(&sql[*copied..at.start]);
    key.push('\0');
    key.push(kind.letter());
    *copied = at.end;
    constants.push(at);
}

/// PostgreSQL's `ident_cont`, ASCII part (non-ASCII gives no shape).
fn is_ident_char(c: u8) -> bool {
    IDENT_CONT[usize::from(c)]
}

/// What the scan does with a byte (see [`shape_of`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Space or punctuation that starts no token of interest: step over.
    Plain,
    /// A letter or underscore: an identifier or keyword to skip.
    IdentStart,
    /// Quotes, comment starts, digits, `.`, `$`, NUL and non-ASCII.
    Attention,
}

static CLASS: [Class; 256] = {
    let mut t = [Class::Plain; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_alphabetic() || b == b'_' {
            Class::IdentStart
        } else if b.is_ascii_digit()
            || b >= 0x80
            || matches!(b, 0 | b'\'' | b'"' | b'-' | b'/' | b'.' | b'$')
        {
            Class::Attention
        } else {
            Class::Plain
        };
        c += 1;
    }
    t
};

static IDENT_CONT: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        c += 1;
    }
    t
};

/// Whether a quote right after `c` would not start a plain token.
fn attaches(c: u8) -> bool {
    is_ident_char(c) || matches!(c, b'&' | b'\'' | b'"')
}

/// The end of the quoted token starting at `start` (one past its closing
/// `quote`); a doubled quote stands for one inside it. In a string
/// (`'`), a backslash gives up: it means something else where
/// `standard_conforming_strings` is off; in a quoted identifier (`"`) it is
/// an ordinary character.
fn quoted_end(b: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *b.get(i)? {
            c if c == quote && b.get(i + 1) == Some(&quote) => i += 2,
            c if c == quote => return Some(i + 1),
            b'\\' if quote == b'\'' => return None,
            0 => return None,
            _ => i += 1,
        }
    }
}

/// The end of the (nesting) comment starting at `start`.
fn block_comment_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    loop {
        match (b.get(i)?, b.get(i + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            (0, _) => return None,
            _ => i += 1,
        }
    }
}

/// A decimal number: `12`, `1.5`, `1.`, `1e10`, `2.5E-3`. Anything running
/// on into a letter, digit separator, second dot or prefix (`0x1f`, `1_000`,
/// `1e`, `1..2`) gives up.
fn number(b: &[u8], start: usize) -> Option<(usize, Kind)> {
    let digits = |from: usize| b[from..].iter().take_while(|x| x.is_ascii_digit()).count();
    let mut i = start + digits(start);
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        if b.get(i + 1) == Some(&b'.') {
            return None;
        }
        integer = false;
        i += 1;
        i += digits(i);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let exponent = digits(i + 1 + sign);
        if exponent == 0 {
            return None;
        }
        integer = false;
        i += 1 + sign + exponent;
    }
    if b.get(i)
        .copied()
        .is_some_and(|c| is_ident_char(c) || c == b'.')
    {
        return None;
    }
    let kind = if integer && fits_int4(&b[start..i]) {
        Kind::Integer
    } else {
        Kind::Number
    };
    Some((i, kind))
}

/// Whether decimal digits fit PostgreSQL's integer token (32 bits; larger
/// integers are numeric constants).
fn fits_int4(digits: &[u8]) -> bool {
    let significant = match digits.iter().position(|&d| d != b'0') {
        Some(p) => &digits[p..],
        None => return true,
    };
    significant.len() <= 10
        && significant
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
            <= 2_147_483_647
}

/// An analysis kept for a shape, with where the constants lay in the text it
/// was made from (to move statement spans for another text).
#[derive(Debug)]
pub struct Template {
    analysis: Arc<Analysis>,
    constants: Box<[Range<usize>]>,
    /// Analyses made for other span layouts, most recently used first: the
    /// texts of a shape come in a few lengths (ids and emails of a few
    /// sizes), and copying the facts for every text would cost more than
    /// the parse it saves.
    instances: Mutex<Vec<Arc<Analysis>>>,
}

/// Span layouts kept per template.
const INSTANCES: usize = 16;

impl Template {
    /// A template from the analysis of the text `shape` was taken from, if
    /// it may stand for every text of that shape: the analysis read no
    /// constant's value, every constant is an `A_Const` of the parse tree
    /// (`a_const_locations`, where a negative constant's node starts at its
    /// minus sign), and no statement boundary falls inside a constant.
    pub(crate) fn new(
        shape: &Shape,
        analysis: Arc<Analysis>,
        a_const_locations: &[usize],
        values_read: bool,
        sql: &str,
    ) -> Option<Template> {
        if values_read {
            return None;
        }
        let every_constant_is_a_node = shape.constants.iter().all(|c| {
            a_const_locations.binary_search(&c.start).is_ok()
                || (c.start > 0
                    && sql.as_bytes().get(c.start - 1) == Some(&b'-')
                    && a_const_locations.binary_search(&(c.start - 1)).is_ok())
        });
        let inside = |at: usize| shape.constants.iter().any(|c| c.start < at && at < c.end);
        let boundaries_outside_constants = analysis
            .statements
            .iter()
            .all(|s| !inside(s.span.start) && !inside(s.span.end));
        (every_constant_is_a_node && boundaries_outside_constants).then(|| Template {
            analysis,
            constants: shape.constants.clone().into_boxed_slice(),
            instances: Mutex::new(Vec::new()),
        })
    }

    /// The analysis every text of the shape shares, spans aside.
    pub fn analysis(&self) -> &Arc<Analysis> {
        &self.analysis
    }

    /// The analysis for another text of the same shape: this one, with
    /// statement spans moved by the difference in constant lengths.
    pub fn instantiate(&self, shape: &Shape) -> Arc<Analysis> {
        let same_lengths = self.constants.len() == shape.constants.len()
            && self
                .constants
                .iter()
                .zip(&shape.constants)
                .all(|(a, b)| a.len() == b.len());
        if same_lengths {
            return self.analysis.clone();
        }
        let moved = |at: usize| -> usize {
            let mut to = at;
            for (old, new) in self.constants.iter().zip(&shape.constants) {
                if old.end > at {
                    break;
                }
                to = to + new.len() - old.len();
            }
            to
        };
        let spans: Vec<Range<usize>> = self
            .analysis
            .statements
            .iter()
            .map(|s| moved(s.span.start)..moved(s.span.end))
            .collect();
        let same_spans = |a: &Analysis| a.statements.iter().zip(&spans).all(|(s, r)| s.span == *r);
        let mut instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = instances.iter().position(|a| same_spans(a)) {
            let hit = instances.remove(at);
            instances.insert(0, hit.clone());
            return hit;
        }
        let mut analysis = Analysis::clone(&self.analysis);
        for (s, span) in analysis.statements.iter_mut().zip(spans) {
            s.span = span;
        }
        let analysis = Arc::new(analysis);
        instances.truncate(INSTANCES - 1);
        instances.insert(0, analysis.clone());
        analysis
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sql: &str) -> Option<String> {
        shape_of(sql).map(|s| s.key.replace('\0', "?"))
    }

    #[test]
    fn constants_are_taken_out_with_their_kind() {
        assert_eq!(
            key("SELECT a FROM t WHERE id = 42 AND name = 'it''s' AND x > 1.5e3").as_deref(),
            Some("SELECT a FROM t WHERE id = ?i AND name = ?s AND x > ?n")
        );
        assert_eq!(
            key("SELECT 2147483647, 2147483648, 0007").as_deref(),
            Some("SELECT ?i, ?n, ?i")
        );
        assert_eq!(key("SELECT 1., 1.0").as_deref(), Some("SELECT ?n, ?n"));
        let s = shape_of("SELECT 'ab', 7").expect("shape");
        assert_eq!(s.constants, vec![7..11, 13..14]);
    }

    #[test]
    fn identifiers_parameters_and_comments_are_kept() {
        assert_eq!(
            key(r#"SELECT t1.a, "x'1" FROM t1 WHERE b = $1 -- 'no'
            /* '5' /* nested 6 */ 7 */"#)
            .as_deref(),
            Some(
                r#"SELECT t1.a, "x'1" FROM t1 WHERE b = $1 -- 'no'
            /* '5' /* nested 6 */ 7 */"#
            )
        );
    }

    #[test]
    fn forms_outside_the_subset_give_no_shape() {
        for sql in [
            "SELECT E'a'",
            "SELECT e'a'",
            "SELECT U&'a'",
            "SELECT U&\"a\"",
            "SELECT X'1f'",
            "SELECT B'01'",
            "SELECT N'a'",
            "SELECT 'a\\'",
            "SELECT $$a$$",
            "SELECT $tag$a$tag$",
            "SELECT 0x1f",
            "SELECT 1_000",
            "SELECT 1e",
            "SELECT 1a",
            "SELECT .5",
            "SELECT a[1..2]",
            "SELECT 'é' || é",
            "SELECT 'open",
            "SELECT 1 /* open",
            "SELECT \"open",
            "SELECT $1a",
        ] {
            assert_eq!(key(sql), None, "{sql}");
        }
    }

    #[test]
    fn non_ascii_inside_strings_is_fine() {
        assert_eq!(key("SELECT 'é'").as_deref(), Some("SELECT ?s"));
    }

    #[test]
    fn texts_differing_in_literals_share_a_key() {
        let a = shape_of("UPDATE t SET v = 'a' WHERE id = 1").expect("shape");
        let b = shape_of("UPDATE t SET v = 'longer' WHERE id = 123456").expect("shape");
        assert_eq!(a.key, b.key);
        let c = shape_of("UPDATE t SET v = 'a' WHERE id = 1.5").expect("shape");
        assert_ne!(
            a.key, c.key,
            "an integer and a numeric are different tokens"
        );
    }
}
