//! Splitting a byte stream into messages without copying it.
//!
//! Every regular message is a type byte, a big-endian `i32` length that counts
//! itself but not the type byte, and a body. The [`Splitter`] looks at the
//! bytes a session has buffered and says what the next message is; the caller
//! decides whether to forward, replace or refuse it, and then drops exactly the
//! bytes the splitter named from its buffer.
//!
//! Most messages are handed over whole. A few kinds can be arbitrarily large
//! (rows, COPY data, bound parameters, function call arguments); once such a
//! message is larger than [`Limits::stream_threshold`] and not yet fully
//! buffered, the splitter hands it over in pieces: first a head that contains
//! at least the prefix the session needs to inspect, then body chunks. That is
//! how a 100 MB value crosses the proxy with a buffer of a few kilobytes.

use crate::error::tag_char;
use crate::tags::{backend as be, frontend as fe};
use crate::WireError;

/// Type byte plus length word.
pub const HEADER_LEN: usize = 5;

/// The largest message PostgreSQL itself accepts or produces for most types
/// is 1 GiB (`MaxAllocSize`, src/include/utils/memutils.h). Streamed kinds can
/// reach the full `i32` range (a DataRow may hold several 1 GiB fields).
pub const PG_MAX_ALLOC: usize = 0x3fff_ffff;

/// Size limits for one direction of a session.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Which side sends the messages these limits apply to.
    pub direction: Direction,
    /// Query and Parse: SQL text must be held whole to be judged.
    pub max_statement: usize,
    /// Every other message that is held whole.
    pub max_other: usize,
    /// Messages of a streamable kind larger than this are passed on in pieces
    /// once they do not fit in the buffer.
    pub stream_threshold: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Messages from the client (frontend) to the server.
    Frontend,
    /// Messages from the server (backend) to the client.
    Backend,
}

/// How the session must treat one message kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Held whole, up to the given number of bytes (type byte included).
    Whole(usize),
    /// May be streamed. The session needs to see this many body bytes (or
    /// the whole body, if shorter) before forwarding the head.
    Streamed { prefix: usize },
}

impl Limits {
    pub fn frontend(max_statement: usize) -> Self {
        Limits {
            direction: Direction::Frontend,
            max_statement,
            max_other: 1 << 20,
            stream_threshold: 64 << 10,
        }
    }

    pub fn backend() -> Self {
        Limits {
            direction: Direction::Backend,
            max_statement: 0,
            max_other: 64 << 20,
            stream_threshold: 64 << 10,
        }
    }

    /// The treatment of a message kind, or `None` for a type byte this
    /// direction never carries.
    pub fn kind(&self, tag: u8) -> Option<Kind> {
        match self.direction {
            Direction::Frontend => match tag {
                fe::QUERY | fe::PARSE => Some(Kind::Whole(self.max_statement)),
                fe::COPY_DATA => Some(Kind::Streamed { prefix: 0 }),
                // Statement and portal names come first; they are at most
                // NAMEDATALEN bytes in the server, but a client may send more.
                fe::BIND => Some(Kind::Streamed { prefix: 4096 }),
                // The function OID is the first field.
                fe::FUNCTION_CALL => Some(Kind::Streamed { prefix: 4 }),
                fe::CLOSE
                | fe::COPY_DONE
                | fe::COPY_FAIL
                | fe::DESCRIBE
                | fe::EXECUTE
                | fe::FLUSH
                | fe::PASSWORD
                | fe::SYNC
                | fe::TERMINATE => Some(Kind::Whole(self.max_other)),
                _ => None,
            },
            Direction::Backend => match tag {
                be::DATA_ROW | be::COPY_DATA | be::FUNCTION_CALL_RESPONSE => {
                    Some(Kind::Streamed { prefix: 0 })
                }
                be::AUTHENTICATION
                | be::BACKEND_KEY_DATA
                | be::BIND_COMPLETE
                | be::CLOSE_COMPLETE
                | be::COMMAND_COMPLETE
                | be::COPY_DONE
                | be::COPY_IN_RESPONSE
                | be::COPY_OUT_RESPONSE
                | be::COPY_BOTH_RESPONSE
                | be::EMPTY_QUERY_RESPONSE
                | be::ERROR_RESPONSE
                | be::NEGOTIATE_PROTOCOL_VERSION
                | be::NO_DATA
                | be::NOTICE_RESPONSE
                | be::NOTIFICATION_RESPONSE
                | be::PARAMETER_DESCRIPTION
                | be::PARAMETER_STATUS
                | be::PARSE_COMPLETE
                | be::PORTAL_SUSPENDED
                | be::READY_FOR_QUERY
                | be::ROW_DESCRIPTION => Some(Kind::Whole(self.max_other)),
                _ => None,
            },
        }
    }
}

/// What the buffered bytes hold next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Not enough bytes to decide; read more. `hint` is how many bytes the
    /// buffer should hold in total before asking again (0 if unknown).
    NeedMore { hint: usize },
    /// A complete message occupies the first `len` bytes (type byte included).
    Whole { tag: u8, len: usize },
    /// The start of a streamed message of `total` bytes. The first `len`
    /// buffered bytes (at least header plus the kind's prefix) are its head;
    /// the caller forwards them and then drops them from its buffer.
    StreamHead { tag: u8, total: usize, len: usize },
    /// The first `len` buffered bytes continue the current streamed message.
    StreamBody { len: usize, last: bool },
}

/// Tracks where one direction's byte stream stands between messages.
#[derive(Debug, Clone)]
pub struct Splitter {
    limits: Limits,
    /// Body bytes of a streamed message not yet handed over.
    remaining: usize,
}

impl Splitter {
    pub fn new(limits: Limits) -> Self {
        Splitter {
            limits,
            remaining: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the size above which streamable messages come in pieces,
    /// from the next message on (masking needs whole rows while a result
    /// set is masked; see `Limits::stream_threshold`).
    pub fn set_stream_threshold(&mut self, bytes: usize) {
        self.limits.stream_threshold = bytes;
    }

    /// True while a streamed message is only partly passed on.
    pub fn mid_message(&self) -> bool {
        self.remaining > 0
    }

    /// Classifies the start of `buf`. Whatever is returned, the caller must
    /// drop exactly the named bytes from its buffer before calling again
    /// (except for [`Next::NeedMore`]).
    pub fn next(&mut self, buf: &[u8]) -> Result<Next, WireError> {
        if self.remaining > 0 {
            if buf.is_empty() {
                return Ok(Next::NeedMore { hint: 0 });
            }
            let len = buf.len().min(self.remaining);
            self.remaining -= len;
            return Ok(Next::StreamBody {
                len,
                last: self.remaining == 0,
            });
        }
        if buf.len() < HEADER_LEN {
            return Ok(Next::NeedMore { hint: HEADER_LEN });
        }
        let tag = buf[0];
        let word = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let kind = self
            .limits
            .kind(tag)
            .ok_or(WireError::UnexpectedTag { tag: tag_char(tag) })?;
        if word < 4 || word > i32::MAX as u32 {
            return Err(WireError::InvalidLength {
                tag: tag_char(tag),
                len: word,
            });
        }
        let total = word as usize + 1;
        match kind {
            Kind::Whole(limit) => {
                if total > limit {
                    return Err(WireError::TooLarge {
                        tag: tag_char(tag),
                        len: total,
                        limit,
                    });
                }
                if buf.len() >= total {
                    Ok(Next::Whole { tag, len: total })
                } else {
                    Ok(Next::NeedMore { hint: total })
                }
            }
            Kind::Streamed { prefix } => {
                if buf.len() >= total {
                    return Ok(Next::Whole { tag, len: total });
                }
                if total <= self.limits.stream_threshold {
                    return Ok(Next::NeedMore { hint: total });
                }
                let head = HEADER_LEN + prefix.min(total - HEADER_LEN);
                if buf.len() < head {
                    return Ok(Next::NeedMore { hint: head });
                }
                let len = buf.len();
                self.remaining = total - len;
                Ok(Next::StreamHead { tag, total, len })
            }
        }
    }
}

/// Reads the big-endian `i32` at `at`, if present.
pub fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the big-endian `i16` at `at`, if present.
pub fn read_i16(buf: &[u8], at: usize) -> Option<i16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(i16::from_be_bytes([b[0], b[1]]))
}

/// Reads a NUL-terminated string starting at `at`; returns it (without the
/// NUL) and the offset just past the NUL.
pub fn read_cstr(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let nul = memchr::memchr(0, rest)?;
    Some((&rest[..nul], at + nul + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn whole_message_needs_all_bytes() {
        let mut s = Splitter::new(Limits::frontend(1 << 20));
        let m = msg(b'Q', b"select 1\0");
        assert_eq!(s.next(&m[..3]).unwrap(), Next::NeedMore { hint: 5 });
        assert_eq!(s.next(&m[..7]).unwrap(), Next::NeedMore { hint: m.len() });
        assert_eq!(
            s.next(&m).unwrap(),
            Next::Whole {
                tag: b'Q',
                len: m.len()
            }
        );
    }

    #[test]
    fn rejects_bad_lengths_and_tags() {
        let mut s = Splitter::new(Limits::frontend(100));
        assert!(matches!(
            s.next(&[b'Q', 0, 0, 0, 3]),
            Err(WireError::InvalidLength { .. })
        ));
        assert!(matches!(
            s.next(&[b'Q', 0xff, 0xff, 0xff, 0xff]),
            Err(WireError::InvalidLength { .. })
        ));
        assert!(matches!(
            s.next(&[b'Q', 0, 0, 1, 0]),
            Err(WireError::TooLarge { .. })
        ));
        assert!(matches!(
            s.next(&[b'Z', 0, 0, 0, 5, b'I']),
            Err(WireError::UnexpectedTag { tag: 'Z' })
        ));
    }

    #[test]
    fn large_rows_are_streamed_in_pieces() {
        let mut s = Splitter::new(Limits::backend());
        let body = vec![7u8; 200_000];
        let m = msg(b'D', &body);
        // Only a first read's worth is buffered.
        let first = &m[..10_000];
        let Next::StreamHead { tag, total, len } = s.next(first).unwrap() else {
            panic!("expected a stream head");
        };
        assert_eq!((tag, total, len), (b'D', m.len(), 10_000));
        assert!(s.mid_message());
        let mut passed = len;
        while passed < m.len() {
            let end = (passed + 30_000).min(m.len());
            match s.next(&m[passed..end]).unwrap() {
                Next::StreamBody { len, last } => {
                    passed += len;
                    assert_eq!(last, passed == m.len());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(!s.mid_message());
    }

    #[test]
    fn streamed_kind_below_threshold_waits_for_whole() {
        let mut s = Splitter::new(Limits::backend());
        let m = msg(b'D', &[1u8; 1000]);
        assert_eq!(s.next(&m[..100]).unwrap(), Next::NeedMore { hint: m.len() });
    }

    #[test]
    fn stream_head_waits_for_prefix() {
        let mut s = Splitter::new(Limits::frontend(1 << 20));
        let m = msg(b'B', &vec![0u8; 100_000]);
        assert_eq!(
            s.next(&m[..100]).unwrap(),
            Next::NeedMore {
                hint: HEADER_LEN + 4096
            }
        );
    }

    #[test]
    fn cstr_and_ints() {
        let b = b"abc\0\x00\x00\x00\x2a";
        assert_eq!(read_cstr(b, 0), Some((&b"abc"[..], 4)));
        assert_eq!(read_i32(b, 4), Some(42));
        assert_eq!(read_i32(b, 5), None);
        assert_eq!(read_cstr(b"abc", 0), None);
    }
}
