//! The untyped packets a client may open a connection with.
//!
//! Layout: `i32` length (counting itself), `i32` code, payload. The codes are
//! defined in `src/include/libpq/pqcomm.h`.

use crate::framing::{read_cstr, read_i32};
use crate::WireError;

/// PostgreSQL refuses startup packets longer than this
/// (`MAX_STARTUP_PACKET_LENGTH`, src/include/libpq/pqcomm.h).
pub const MAX_STARTUP_PACKET: usize = 10_000;

pub const SSL_REQUEST_CODE: i32 = (1234 << 16) | 5679;
pub const GSSENC_REQUEST_CODE: i32 = (1234 << 16) | 5680;
pub const CANCEL_REQUEST_CODE: i32 = (1234 << 16) | 5678;

/// Longest cancel key protocol 3.2 allows (protocol docs, BackendKeyData).
pub const MAX_CANCEL_KEY: usize = 256;

/// Prefix of protocol extension options in a StartupMessage.
pub const PROTOCOL_OPTION_PREFIX: &str = "_pq_.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProtocolVersion {
    pub major: u16,
    pub minor: u16,
}

impl ProtocolVersion {
    pub const V3_0: ProtocolVersion = ProtocolVersion { major: 3, minor: 0 };
    pub const V3_2: ProtocolVersion = ProtocolVersion { major: 3, minor: 2 };
    /// The newest version Portcullis speaks to clients.
    pub const LATEST: ProtocolVersion = Self::V3_2;

    pub fn from_code(code: i32) -> Self {
        ProtocolVersion {
            major: (code as u32 >> 16) as u16,
            minor: (code as u32 & 0xffff) as u16,
        }
    }

    pub fn code(self) -> i32 {
        ((self.major as i32) << 16) | self.minor as i32
    }

    /// Protocol 3.2 made the cancel key variable length (we use 32 bytes);
    /// before it the key is 4 bytes.
    pub fn cancel_key_len(self) -> usize {
        if self >= Self::V3_2 {
            32
        } else {
            4
        }
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Parameters of a StartupMessage, in the order the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupParams(pub Vec<(String, String)>);

impl StartupParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        key: Vec<u8>,
    },
    Startup {
        version: ProtocolVersion,
        params: StartupParams,
    },
}

/// Returns the total length of the startup packet at the start of `buf`, once
/// its length word is there, validating it.
pub fn packet_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(len) = read_i32(buf, 0) else {
        return Ok(None);
    };
    if !(8..=MAX_STARTUP_PACKET as i32).contains(&len) {
        return Err(WireError::InvalidStartupLength(len as u32));
    }
    Ok(Some(len as usize))
}

/// Parses one complete startup packet (length word included).
pub fn parse(packet: &[u8]) -> Result<Startup, WireError> {
    let len = packet_len(packet)?.ok_or(WireError::malformed("startup packet"))?;
    if len != packet.len() {
        return Err(WireError::malformed("startup packet"));
    }
    let code = read_i32(packet, 4).ok_or(WireError::malformed("startup packet"))?;
    let body = &packet[8..];
    match code {
        SSL_REQUEST_CODE if body.is_empty() => Ok(Startup::SslRequest),
        GSSENC_REQUEST_CODE if body.is_empty() => Ok(Startup::GssEncRequest),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => Err(WireError::malformed("encryption request")),
        CANCEL_REQUEST_CODE => {
            let pid = read_i32(body, 0).ok_or(WireError::malformed("cancel request"))?;
            let key = &body[4..];
            if key.is_empty() || key.len() > MAX_CANCEL_KEY {
                return Err(WireError::malformed("cancel request"));
            }
            Ok(Startup::Cancel {
                pid,
                key: key.to_vec(),
            })
        }
        _ => {
            let version = ProtocolVersion::from_code(code);
            if version.major != 3 {
                return Err(WireError::UnsupportedProtocol {
                    major: version.major,
                    minor: version.minor,
                });
            }
            Ok(Startup::Startup {
                version,
                params: parse_params(body)?,
            })
        }
    }
}

fn parse_params(body: &[u8]) -> Result<StartupParams, WireError> {
    let bad = || WireError::malformed("startup parameters");
    let mut params = Vec::new();
    let mut at = 0;
    loop {
        let (name, next) = read_cstr(body, at).ok_or_else(bad)?;
        if name.is_empty() {
            if next != body.len() {
                return Err(bad());
            }
            break;
        }
        let (value, next) = read_cstr(body, next).ok_or_else(bad)?;
        let name = std::str::from_utf8(name).map_err(|_| bad())?;
        let value = std::str::from_utf8(value).map_err(|_| bad())?;
        if params.iter().any(|(k, _): &(String, String)| k == name) {
            return Err(bad());
        }
        params.push((name.to_owned(), value.to_owned()));
        at = next;
    }
    Ok(StartupParams(params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode;
    use bytes::BytesMut;

    #[test]
    fn round_trips_a_startup_message() {
        let mut buf = BytesMut::new();
        let params = vec![
            ("user".to_string(), "alice".to_string()),
            ("database".to_string(), "shop".to_string()),
        ];
        encode::startup_message(
            &mut buf,
            ProtocolVersion::V3_2,
            params.iter().map(|(a, b)| (a.as_str(), b.as_str())),
        );
        assert_eq!(packet_len(&buf).unwrap(), Some(buf.len()));
        let parsed = parse(&buf).unwrap();
        assert_eq!(
            parsed,
            Startup::Startup {
                version: ProtocolVersion::V3_2,
                params: StartupParams(params)
            }
        );
    }

    #[test]
    fn special_requests() {
        let ssl = [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f];
        assert_eq!(parse(&ssl).unwrap(), Startup::SslRequest);
        let gss = [0, 0, 0, 8, 4, 0xd2, 0x16, 0x30];
        assert_eq!(parse(&gss).unwrap(), Startup::GssEncRequest);
        let mut cancel = BytesMut::new();
        encode::cancel_request(&mut cancel, 42, &[1, 2, 3, 4]);
        assert_eq!(
            parse(&cancel).unwrap(),
            Startup::Cancel {
                pid: 42,
                key: vec![1, 2, 3, 4]
            }
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(packet_len(&[0, 0, 0, 4]).is_err());
        assert!(packet_len(&[0, 1, 0, 0]).is_err());
        assert!(parse(&[0, 0, 0, 9, 0, 3, 0, 0, b'x']).is_err());
        assert!(parse(&[0, 0, 0, 8, 0, 2, 0, 0]).is_err());
        // Duplicate parameter names.
        let mut buf = BytesMut::new();
        encode::startup_message(
            &mut buf,
            ProtocolVersion::V3_0,
            [("user", "a"), ("user", "b")],
        );
        assert!(parse(&buf).is_err());
    }
}
