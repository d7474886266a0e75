use thiserror::Error;

/// Everything that can be wrong with bytes received from a peer.
///
/// Messages are written for a client to read: they name the protocol rule that
/// was broken, never the content of the offending message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("invalid message length {len} for message type {tag}")]
    InvalidLength { tag: char, len: u32 },
    #[error("message type {tag} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { tag: char, len: usize, limit: usize },
    #[error("unexpected message type {tag}")]
    UnexpectedTag { tag: char },
    #[error("invalid startup packet length {0}")]
    InvalidStartupLength(u32),
    #[error("unsupported frontend protocol {major}.{minor}")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("malformed {what}")]
    Malformed { what: &'static str },
}

impl WireError {
    pub(crate) fn malformed(what: &'static str) -> Self {
        WireError::Malformed { what }
    }
}

/// Renders a tag byte for an error message without ever emitting control bytes.
pub(crate) fn tag_char(tag: u8) -> char {
    if tag.is_ascii_graphic() {
        tag as char
    } else {
        '?'
    }
}
