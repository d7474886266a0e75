//! COPY TO STDOUT: rows arrive one per CopyData (PostgreSQL's `copyto.c`
//! sends each row in its own message), in text, csv or binary format, and
//! are rewritten with the same plan as a result set's rows.
//!
//! Text (`CopyAttributeOutText`): fields split by the delimiter, the null
//! string for NULL, `\` escapes (`\t`, `\n`, `\\`, the delimiter, ...), each
//! row ending in `\n`. CSV (`CopyAttributeOutCSV`): fields quoted when they
//! hold the delimiter, the quote, a newline or look like the null string,
//! the escape character doubling a quote inside quotes. Binary: the header
//! (signature, flags, extension) in front of the first row, rows laid out
//! as a DataRow body, and a trailer of -1.

use crate::plan::{wrap_message, Plan, Rewrite};
use crate::scalar::Wrote;
use crate::{Format, MaskError};

/// CopyData's type byte.
const COPY_DATA: u8 = b'd';
/// `BinarySignature` in `copyto.c`.
const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Header flag bit 16: every tuple carries an OID (servers before 12).
const FLAG_OIDS: u32 = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    Text,
    Csv,
    Binary,
}

/// The COPY statement's format options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub kind: CopyKind,
    pub delimiter: u8,
    pub null: Vec<u8>,
    /// CSV only.
    pub quote: u8,
    /// CSV only.
    pub escape: u8,
    /// The first line holds column names (text and csv `HEADER`).
    pub header: bool,
}

impl CopyFormat {
    /// PostgreSQL's defaults for `FORMAT text`.
    pub fn text() -> CopyFormat {
        CopyFormat {
            kind: CopyKind::Text,
            delimiter: b'\t',
            null: b"\\N".to_vec(),
            quote: b'"',
            escape: b'"',
            header: false,
        }
    }

    /// PostgreSQL's defaults for `FORMAT csv`.
    pub fn csv() -> CopyFormat {
        CopyFormat {
            kind: CopyKind::Csv,
            delimiter: b',',
            null: Vec::new(),
            quote: b'"',
            escape: b'"',
            header: false,
        }
    }

    pub fn binary() -> CopyFormat {
        CopyFormat {
            kind: CopyKind::Binary,
            delimiter: 0,
            null: Vec::new(),
            quote: 0,
            escape: 0,
            header: false,
        }
    }

    fn value_format(&self) -> Format {
        if self.kind == CopyKind::Binary {
            Format::Binary
        } else {
            Format::Text
        }
    }
}

impl Plan {
    /// Rewrites one row of a COPY (a whole CopyData payload: a text/csv
    /// line with its `\n`, or one binary tuple). Appends a whole CopyData
    /// message to `out` when something changed. Headers and the binary
    /// trailer are [`CopyRows`]' business.
    pub fn copy_row(
        &self,
        format: &CopyFormat,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Rewrite, MaskError> {
        if self
            .columns
            .iter()
            .any(|c| c.format() != format.value_format())
        {
            return Err(MaskError::Copy(
                "the plan's formats do not match the COPY format",
            ));
        }
        wrap_message(COPY_DATA, out, |out| self.copy_fields(format, data, out))
    }

    fn copy_fields(
        &self,
        format: &CopyFormat,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, MaskError> {
        match format.kind {
            CopyKind::Binary => self.rewrite_fields(data, out),
            CopyKind::Text | CopyKind::Csv => {
                let line = data
                    .strip_suffix(b"\n")
                    .ok_or(MaskError::Copy("row does not end in a newline"))?;
                let changed = self.copy_line(format, line, out)?;
                out.push(b'\n');
                Ok(changed)
            }
        }
    }

    fn copy_line(
        &self,
        format: &CopyFormat,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, MaskError> {
        let csv = format.kind == CopyKind::Csv;
        let ctx = self.ctx();
        let mut value = Vec::new();
        let mut masked = Vec::new();
        let mut changed = false;
        let mut pos = 0;
        for (i, column) in self.columns.iter().enumerate() {
            if i > 0 {
                if line.get(pos) != Some(&format.delimiter) {
                    return Err(MaskError::ColumnCount {
                        expected: self.columns.len(),
                        got: i,
                    });
                }
                out.push(format.delimiter);
                pos += 1;
            }
            let end = if csv {
                csv_field_end(format, line, pos)?
            } else {
                text_field_end(format, line, pos)
            };
            let raw = &line[pos..end];
            pos = end;
            if column.is_pass() {
                out.extend_from_slice(raw);
                continue;
            }
            // NULL is the null string as written: unquoted in csv.
            if raw == format.null.as_slice() {
                out.extend_from_slice(raw);
                continue;
            }
            value.clear();
            if csv {
                csv_decode(format, raw, &mut value);
            } else {
                text_decode(raw, &mut value);
            }
            masked.clear();
            let field_at = out.len();
            match column.write(&value, &ctx, &mut masked) {
                Wrote::Null => out.extend_from_slice(&format.null),
                Wrote::Value if csv => csv_encode(format, &masked, out),
                Wrote::Value => text_encode(format.delimiter, &masked, out),
            }
            changed |= out[field_at..] != *raw;
        }
        if pos != line.len() {
            return Err(MaskError::ColumnCount {
                expected: self.columns.len(),
                got: self.columns.len() + 1,
            });
        }
        Ok(changed)
    }
}

/// The end of a text field: the next delimiter not escaped by a backslash.
fn text_field_end(format: &CopyFormat, line: &[u8], mut pos: usize) -> usize {
    while pos < line.len() {
        match line[pos] {
            b'\\' => pos += 2,
            b if b == format.delimiter => return pos,
            _ => pos += 1,
        }
    }
    line.len()
}

/// `copyfromparse.c` `CopyReadAttributesText`'s unescaping.
fn text_decode(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' || i + 1 == raw.len() {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'0'..=b'7' => {
                let mut n = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            n = n * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(n as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut n = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|&d| (d as char).to_digit(16)) {
                        Some(d) => {
                            n = n * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(n as u8);
            }
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            other => out.push(other),
        }
    }
}

/// `CopyAttributeOutText`'s escaping.
pub(crate) fn text_encode(delimiter: u8, v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        let escaped = match b {
            0x08 => Some(b'b'),
            0x0c => Some(b'f'),
            b'\n' => Some(b'n'),
            b'\r' => Some(b'r'),
            b'\t' => Some(b't'),
            0x0b => Some(b'v'),
            b'\\' => Some(b'\\'),
            _ if b == delimiter => Some(b),
            _ => None,
        };
        match escaped {
            Some(e) => out.extend_from_slice(&[b'\\', e]),
            None => out.push(b),
        }
    }
}

/// The end of a csv field: the next delimiter outside quotes.
fn csv_field_end(format: &CopyFormat, line: &[u8], mut pos: usize) -> Result<usize, MaskError> {
    let mut quoted = false;
    while pos < line.len() {
        let b = line[pos];
        if quoted {
            if b == format.escape
                && format.escape != format.quote
                && line
                    .get(pos + 1)
                    .is_some_and(|&n| n == format.quote || n == format.escape)
            {
                pos += 2;
                continue;
            }
            if b == format.quote {
                if format.escape == format.quote && line.get(pos + 1) == Some(&format.quote) {
                    pos += 2;
                    continue;
                }
                quoted = false;
            }
        } else if b == format.quote {
            quoted = true;
        } else if b == format.delimiter {
            return Ok(pos);
        }
        pos += 1;
    }
    if quoted {
        return Err(MaskError::Copy("unterminated quoted field"));
    }
    Ok(line.len())
}

/// The value of a csv field (quotes removed, escapes resolved).
fn csv_decode(format: &CopyFormat, raw: &[u8], out: &mut Vec<u8>) {
    let mut quoted = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if quoted
            && b == format.escape
            && raw
                .get(i + 1)
                .is_some_and(|&n| n == format.quote || n == format.escape)
        {
            // Covers `""` when escape == quote: the pair is one quote.
            out.push(raw[i + 1]);
            i += 2;
            continue;
        }
        if b == format.quote {
            quoted = !quoted;
        } else {
            out.push(b);
        }
        i += 1;
    }
}

/// A csv field, quoted when PostgreSQL would quote it (and for `\.`, which
/// a reader could take for the end-of-data marker).
pub(crate) fn csv_encode(format: &CopyFormat, v: &[u8], out: &mut Vec<u8>) {
    let needs_quotes = v == format.null.as_slice()
        || v.starts_with(b"\\.")
        || v.iter().any(|&b| {
            b == format.delimiter
                || b == format.quote
                || b == format.escape
                || b == b'\n'
                || b == b'\r'
        });
    if !needs_quotes {
        out.extend_from_slice(v);
        return;
    }
    out.push(format.quote);
    for &b in v {
        if b == format.quote || b == format.escape {
            out.push(format.escape);
        }
        out.push(b);
    }
    out.push(format.quote);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the header (binary) or header line (text/csv with HEADER).
    Start,
    Rows,
    /// After the binary trailer.
    Ended,
}

/// The state of one COPY TO: where the header is, whether the trailer has
/// passed. Feed it every CopyData payload in order.
#[derive(Debug, Clone)]
pub struct CopyRows {
    format: CopyFormat,
    stage: Stage,
}

impl CopyRows {
    pub fn new(format: CopyFormat) -> CopyRows {
        let stage = if format.kind == CopyKind::Binary || format.header {
            Stage::Start
        } else {
            Stage::Rows
        };
        CopyRows { format, stage }
    }

    /// Rewrites one CopyData payload; appends a whole CopyData message to
    /// `out` when it changed.
    pub fn copy_data(
        &mut self,
        plan: &Plan,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Rewrite, MaskError> {
        match (self.stage, self.format.kind) {
            (Stage::Ended, _) => Err(MaskError::Copy("data after the binary trailer")),
            (Stage::Start, CopyKind::Text | CopyKind::Csv) => {
                // Column names: nothing to mask.
                self.stage = Stage::Rows;
                Ok(Rewrite::Unchanged)
            }
            (Stage::Start, CopyKind::Binary) => {
                let header = binary_header_len(data)?;
                self.stage = Stage::Rows;
                let rest = &data[header..];
                if rest.is_empty() {
                    return Ok(Rewrite::Unchanged);
                }
                wrap_message(COPY_DATA, out, |out| {
                    out.extend_from_slice(&data[..header]);
                    self.binary_tuple(plan, rest, out)
                })
            }
            (Stage::Rows, CopyKind::Binary) => {
                wrap_message(COPY_DATA, out, |out| self.binary_tuple(plan, data, out))
            }
            (Stage::Rows, _) => plan.copy_row(&self.format, data, out),
        }
    }

    fn binary_tuple(
        &mut self,
        plan: &Plan,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, MaskError> {
        if data == (-1i16).to_be_bytes() {
            self.stage = Stage::Ended;
            out.extend_from_slice(data);
            return Ok(false);
        }
        if plan.columns.iter().any(|c| c.format() != Format::Binary) {
            return Err(MaskError::Copy(
                "the plan's formats do not match the COPY format",
            ));
        }
        plan.rewrite_fields(data, out)
    }
}

/// The length of the binary header at the start of `data`.
fn binary_header_len(data: &[u8]) -> Result<usize, MaskError> {
    let bad = MaskError::Copy("bad binary COPY header");
    if !data.starts_with(BINARY_SIGNATURE) {
        return Err(bad);
    }
    let word = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let flags = word(11).ok_or(bad.clone())?;
    if flags & FLAG_OIDS != 0 {
        return Err(MaskError::Copy("binary COPY with OIDs"));
    }
    let ext = word(15).ok_or(bad.clone())? as usize;
    let len = 19usize.checked_add(ext).ok_or(bad.clone())?;
    if data.len() < len {
        return Err(bad);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Class, ColumnSpec, ColumnType, Detectors, MaskSettings, Masker, Rule, Strategy};

    fn plan(format: Format, rules: &[Rule]) -> Plan {
        let columns: Vec<_> = rules
            .iter()
            .map(|&rule| ColumnSpec {
                ty: ColumnType {
                    oid: 25,
                    typmod: -1,
                },
                format,
                rule,
            })
            .collect();
        Masker::new(MaskSettings::default(), Detectors::new())
            .plan(&columns)
            .unwrap()
    }

    const SECRET: Rule = Rule::Mask {
        class: Class::Secret,
        strategy: Strategy::Partial,
    };
    const NULLIFY: Rule = Rule::Mask {
        class: Class::Secret,
        strategy: Strategy::Nullify,
    };

    fn payload(out: &[u8]) -> &[u8] {
        assert_eq!(out[0], b'd');
        assert_eq!(
            i32::from_be_bytes(out[1..5].try_into().unwrap()) as usize,
            out.len() - 1
        );
        &out[5..]
    }

    #[test]
    fn text_rows_keep_their_neighbours_escaped() {
        let p = plan(Format::Text, &[Rule::Pass, SECRET, Rule::Pass, NULLIFY]);
        let row = b"a\\tb\\\\\tx\\ty\\nz\tc\\nd\\\\\tsecret\n";
        let mut out = Vec::new();
        assert_eq!(
            p.copy_row(&CopyFormat::text(), row, &mut out),
            Ok(Rewrite::Rewritten)
        );
        // The masked value x<TAB>y<LF>z keeps its tab and newline, escaped.
        assert_eq!(payload(&out), b"a\\tb\\\\\t*\\t*\\n*\tc\\nd\\\\\t\\N\n");
    }

    #[test]
    fn text_nulls_and_other_delimiters() {
        let p = plan(Format::Text, &[SECRET, SECRET]);
        let format = CopyFormat {
            delimiter: b'|',
            null: b"NIL".to_vec(),
            ..CopyFormat::text()
        };
        let mut out = Vec::new();
        assert_eq!(
            p.copy_row(&format, b"NIL|a\\|b\n", &mut out),
            Ok(Rewrite::Rewritten)
        );
        assert_eq!(payload(&out), b"NIL|*\\|*\n");
        out.clear();
        assert_eq!(
            p.copy_row(&format, b"NIL|NIL\n", &mut out),
            Ok(Rewrite::Unchanged)
        );
        assert!(p.copy_row(&format, b"a|b|c\n", &mut out).is_err());
        assert!(p.copy_row(&format, b"a\n", &mut out).is_err());
        assert!(p.copy_row(&format, b"a|b", &mut out).is_err());
        // Octal and hex escapes are read.
        out.clear();
        p.copy_row(&format, b"\\101|\\x41\n", &mut out).unwrap();
        assert_eq!(payload(&out), b"*|*\n");
    }

    #[test]
    fn csv_quoting() {
        let p = plan(Format::Text, &[Rule::Pass, SECRET, SECRET, SECRET]);
        let row = b"\"a,\"\"b\",\"x,y\",\"\",\n";
        let mut out = Vec::new();
        assert_eq!(
            p.copy_row(&CopyFormat::csv(), row, &mut out),
            Ok(Rewrite::Rewritten)
        );
        // "x,y" keeps its comma so stays quoted; "" is an empty string, and
        // the unquoted empty field is NULL.
        assert_eq!(payload(&out), b"\"a,\"\"b\",\"*,*\",\"\",\n");
        // A masked value with a quote is escaped by doubling.
        out.clear();
        p.copy_row(
            &CopyFormat::csv(),
            b"p,\"say \"\"hi\"\"\",\"multi\nline\",z\n",
            &mut out,
        )
        .unwrap();
        assert_eq!(payload(&out), b"p,\"*** \"\"**\"\"\",\"*****\n****\",*\n");
        // Another escape character.
        let format = CopyFormat {
            escape: b'\\',
            ..CopyFormat::csv()
        };
        out.clear();
        p.copy_row(&format, b"p,\"a\\\"b\",c,d\n", &mut out)
            .unwrap();
        assert_eq!(payload(&out), b"p,\"*\\\"*\",*,*\n");
        assert!(p
            .copy_row(&CopyFormat::csv(), b"p,\"open,c,d\n", &mut out)
            .is_err());
    }

    fn tuple(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        b
    }

    #[test]
    fn binary_header_rows_and_trailer() {
        let p = plan(Format::Binary, &[Rule::Pass, SECRET]);
        let mut header = BINARY_SIGNATURE.to_vec();
        header.extend_from_slice(&0u32.to_be_bytes());
        header.extend_from_slice(&3u32.to_be_bytes());
        header.extend_from_slice(b"ext");
        let mut rows = CopyRows::new(CopyFormat::binary());
        let mut out = Vec::new();
        let first = [header.clone(), tuple(&[Some(b"k"), Some(b"ab")])].concat();
        assert_eq!(rows.copy_data(&p, &first, &mut out), Ok(Rewrite::Rewritten));
        assert_eq!(
            payload(&out),
            [header.clone(), tuple(&[Some(b"k"), Some(b"**")])].concat()
        );
        out.clear();
        assert_eq!(
            rows.copy_data(&p, &tuple(&[Some(b"k"), None]), &mut out),
            Ok(Rewrite::Unchanged)
        );
        assert_eq!(
            rows.copy_data(&p, &tuple(&[Some(b"k")]), &mut out),
            Err(MaskError::ColumnCount {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            rows.copy_data(&p, &(-1i16).to_be_bytes(), &mut out),
            Ok(Rewrite::Unchanged)
        );
        assert!(rows
            .copy_data(&p, &tuple(&[Some(b"k"), None]), &mut out)
            .is_err());
        assert!(out.is_empty());

        // Header and trailer alone; a bad signature; OIDs.
        let mut rows = CopyRows::new(CopyFormat::binary());
        let only = [header.clone(), (-1i16).to_be_bytes().to_vec()].concat();
        assert_eq!(rows.copy_data(&p, &only, &mut out), Ok(Rewrite::Unchanged));
        assert!(CopyRows::new(CopyFormat::binary())
            .copy_data(&p, b"PGCOPY\n", &mut out)
            .is_err());
        let mut oids = header.clone();
        oids[11..15].copy_from_slice(&(1u32 << 16).to_be_bytes());
        assert!(CopyRows::new(CopyFormat::binary())
            .copy_data(&p, &oids, &mut out)
            .is_err());
        // A text plan cannot read binary rows.
        let text_plan = plan(Format::Text, &[Rule::Pass, SECRET]);
        assert!(CopyRows::new(CopyFormat::binary())
            .copy_data(&text_plan, &first, &mut out)
            .is_err());
    }

    #[test]
    fn header_lines_pass() {
        let p = plan(Format::Text, &[SECRET]);
        let mut rows = CopyRows::new(CopyFormat {
            header: true,
            ..CopyFormat::csv()
        });
        let mut out = Vec::new();
        assert_eq!(
            rows.copy_data(&p, b"email\n", &mut out),
            Ok(Rewrite::Unchanged)
        );
        assert_eq!(
            rows.copy_data(&p, b"bob\n", &mut out),
            Ok(Rewrite::Rewritten)
        );
        assert_eq!(payload(&out), b"***\n");
    }
}
