//! The result-column format codes of a Bind, read as the message streams by.
//!
//! A Bind's result formats come last, after every parameter value, so a
//! reader must walk the whole message to find them. Binds larger than the
//! proxy's streaming threshold arrive in pieces and are forwarded piece by
//! piece; [`BindFormats`] is fed each piece of the body in turn and keeps
//! only counters and at most four bytes of a number cut between pieces.
//!
//! Body layout (PostgreSQL's `exec_bind_message`): portal name and
//! statement name (NUL-terminated); parameter format count (int16) and
//! codes (int16 each); parameter count (int16) and, for each, a length
//! (int32, -1 for NULL) and that many bytes; result format count (int16)
//! and codes (int16 each). Nothing may follow.

use crate::error::WireError;

/// How the server sends a portal's result columns: PostgreSQL applies no
/// code to every column as text, one code to every column, or one code per
/// column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultFormats(pub Vec<i16>);

impl ResultFormats {
    /// The format code of result column `column` (0 text, 1 binary), or
    /// `None` when the codes do not cover it (the server refuses such a
    /// Bind when the statement has that many columns).
    pub fn of(&self, column: usize) -> Option<i16> {
        match self.0.as_slice() {
            [] => Some(0),
            [all] => Some(*all),
            codes => codes.get(column).copied(),
        }
    }

    /// Whether every column comes as text.
    pub fn all_text(&self) -> bool {
        self.0.iter().all(|&c| c == 0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    PortalName,
    StatementName,
    ParamFormatCount,
    ParamFormat { left: u16 },
    ParamCount,
    ParamLength { left: u16 },
    ParamValue { left_params: u16, bytes: u32 },
    ResultFormatCount,
    ResultFormat { left: u16 },
    Done,
}

/// Reads a Bind body fed in pieces; see the module documentation.
#[derive(Debug, Clone)]
pub struct BindFormats {
    field: Field,
    /// Bytes of a number cut between pieces.
    partial: [u8; 4],
    have: usize,
    formats: Vec<i16>,
}

impl Default for BindFormats {
    fn default() -> Self {
        BindFormats::new()
    }
}

impl BindFormats {
    pub fn new() -> Self {
        BindFormats {
            field: Field::PortalName,
            partial: [0; 4],
            have: 0,
            formats: Vec::new(),
        }
    }

    /// Reads the next piece of the body.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), WireError> {
        let bad = || WireError::malformed("bind");
        while !piece.is_empty() {
            match self.field {
                Field::PortalName | Field::StatementName => match memchr::memchr(0, piece) {
                    Some(nul) => {
                        piece = &piece[nul + 1..];
                        self.field = if self.field == Field::PortalName {
                            Field::StatementName
                        } else {
                            Field::ParamFormatCount
                        };
                    }
                    None => piece = &[],
                },
                Field::ParamValue { left_params, bytes } => {
                    let skip = piece.len().min(bytes as usize);
                    piece = &piece[skip..];
                    let bytes = bytes - skip as u32;
                    if bytes == 0 {
                        self.field = after_param(left_params);
                    } else {
                        self.field = Field::ParamValue { left_params, bytes };
                    }
                }
                Field::Done => return Err(bad()),
                _ => {
                    let width = if matches!(self.field, Field::ParamLength { .. }) {
                        4
                    } else {
                        2
                    };
                    let take = (width - self.have).min(piece.len());
                    self.partial[self.have..self.have + take].copy_from_slice(&piece[..take]);
                    self.have += take;
                    piece = &piece[take..];
                    if self.have < width {
                        continue;
                    }
                    self.have = 0;
                    let n = if width == 4 {
                        i32::from_be_bytes(self.partial)
                    } else {
                        i32::from(i16::from_be_bytes([self.partial[0], self.partial[1]]))
                    };
                    self.field = self.next(n)?;
                }
            }
        }
        Ok(())
    }

    /// The result formats, once the whole body has been fed.
    pub fn finish(self) -> Result<ResultFormats, WireError> {
        match self.field {
            Field::Done => Ok(ResultFormats(self.formats)),
            _ => Err(WireError::malformed("bind")),
        }
    }

    /// The field after a number `n` read for the current one.
    fn next(&mut self, n: i32) -> Result<Field, WireError> {
        let bad = || WireError::malformed("bind");
        let count = || u16::try_from(n).map_err(|_| bad());
        Ok(match self.field {
            Field::ParamFormatCount => match count()? {
                0 => Field::ParamCount,
                left => Field::ParamFormat { left },
            },
            Field::ParamFormat { left } => match left - 1 {
                0 => Field::ParamCount,
                left => Field::ParamFormat { left },
            },
            Field::ParamCount => match count()? {
                0 => Field::ResultFormatCount,
                left => Field::ParamLength { left },
            },
            Field::ParamLength { left } => match n {
                // NULL: no bytes follow.
                -1 => after_param(left),
                n if n >= 0 => match n {
                    0 => after_param(left),
                    bytes => Field::ParamValue {
                        left_params: left,
                        bytes: bytes as u32,
                    },
                },
                _ => return Err(bad()),
            },
            Field::ResultFormatCount => match count()? {
                0 => Field::Done,
                left => {
                    self.formats.reserve(usize::from(left).min(1600));
                    Field::ResultFormat { left }
                }
            },
            Field::ResultFormat { left } => {
                // Codes are checked by the server (0 or 1); kept as sent.
                self.formats.push(n as i16);
                match left - 1 {
                    0 => Field::Done,
                    left => Field::ResultFormat { left },
                }
            }
            _ => return Err(bad()),
        })
    }
}

/// The field after one parameter, `left` counting it.
fn after_param(left: u16) -> Field {
    match left - 1 {
        0 => Field::ResultFormatCount,
        left => Field::ParamLength { left },
    }
}

/// The result formats of a whole Bind body.
pub fn result_formats(body: &[u8]) -> Result<ResultFormats, WireError> {
    let mut r = BindFormats::new();
    r.feed(body)?;
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Bind body as a client writes it.
    fn bind(params: &[Option<&[u8]>], param_formats: &[i16], results: &[i16]) -> Vec<u8> {
        let mut b = b"portal\0stmt\0".to_vec();
        b.extend_from_slice(&(param_formats.len() as i16).to_be_bytes());
        for f in param_formats {
            b.extend_from_slice(&f.to_be_bytes());
        }
        b.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for p in params {
            match p {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b.extend_from_slice(&(results.len() as i16).to_be_bytes());
        for r in results {
            b.extend_from_slice(&r.to_be_bytes());
        }
        b
    }

    fn pieces(body: &[u8], cuts: &[usize]) -> Result<ResultFormats, WireError> {
        let mut r = BindFormats::new();
        let mut at = 0;
        for &c in cuts {
            let c = c.clamp(at, body.len());
            r.feed(&body[at..c])?;
            at = c;
        }
        r.feed(&body[at..])?;
        r.finish()
    }

    #[test]
    fn formats_are_found_after_the_values_however_the_body_is_cut() {
        let big = vec![7u8; 70_000];
        let cases: Vec<(Vec<u8>, Vec<i16>)> = vec![
            (bind(&[], &[], &[]), vec![]),
            (bind(&[Some(b"42")], &[], &[1]), vec![1]),
            (
                bind(&[None, Some(b""), Some(b"x")], &[0, 1, 0], &[0, 1, 1]),
                vec![0, 1, 1],
            ),
            (bind(&[Some(&big), None], &[1], &[1, 0]), vec![1, 0]),
            (bind(&[Some(b"\0\0\0\0")], &[1], &[0]), vec![0]),
        ];
        for (body, want) in &cases {
            assert_eq!(result_formats(body).unwrap().0, *want);
            for step in [1, 2, 3, 5, 7, 4096] {
                let cuts: Vec<usize> = (step..body.len()).step_by(step).collect();
                assert_eq!(pieces(body, &cuts).unwrap().0, *want, "step {step}");
            }
        }
    }

    #[test]
    fn broken_binds_are_refused() {
        let good = bind(&[Some(b"abc")], &[0], &[1]);
        for cut in 0..good.len() {
            assert!(result_formats(&good[..cut]).is_err(), "truncated at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(result_formats(&trailing).is_err());
        let mut negative = bind(&[], &[], &[]);
        let n = negative.len();
        negative[n - 2..].copy_from_slice(&(-1i16).to_be_bytes());
        assert!(result_formats(&negative).is_err());
        let mut bad_len = bind(&[Some(b"a")], &[], &[]);
        bad_len[12 + 2 + 2..12 + 2 + 2 + 4].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(result_formats(&bad_len).is_err());
    }

    #[test]
    fn one_code_covers_every_column() {
        assert_eq!(ResultFormats(vec![]).of(5), Some(0));
        assert_eq!(ResultFormats(vec![1]).of(5), Some(1));
        assert_eq!(ResultFormats(vec![0, 1]).of(1), Some(1));
        assert_eq!(ResultFormats(vec![0, 1]).of(2), None);
        assert!(ResultFormats(vec![0, 0]).all_text());
        assert!(!ResultFormats(vec![1]).all_text());
    }
}
