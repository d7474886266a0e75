//! Reading the fields of the few messages Portcullis must understand. Each
//! function takes a message body: the bytes after the type byte and length.

use crate::framing::{read_cstr, read_i32, HEADER_LEN};
use crate::tags::auth;
use crate::WireError;

/// The body of a complete tagged message.
pub fn body(message: &[u8]) -> &[u8] {
    &message[HEADER_LEN.min(message.len())..]
}

/// An authentication request from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    Ok,
    Cleartext,
    Md5 {
        salt: [u8; 4],
    },
    Sasl {
        mechanisms: Vec<&'a str>,
    },
    SaslContinue {
        data: &'a [u8],
    },
    SaslFinal {
        data: &'a [u8],
    },
    /// Kerberos, SSPI and anything newer: Portcullis does not log in this way.
    Unsupported {
        code: i32,
    },
}

pub fn auth_request(body: &[u8]) -> Result<AuthRequest<'_>, WireError> {
    let bad = || WireError::malformed("authentication request");
    let code = read_i32(body, 0).ok_or_else(bad)?;
    let rest = &body[4..];
    Ok(match code {
        auth::OK => AuthRequest::Ok,
        auth::CLEARTEXT_PASSWORD => AuthRequest::Cleartext,
        auth::MD5_PASSWORD => {
            let salt: [u8; 4] = rest.try_into().map_err(|_| bad())?;
            AuthRequest::Md5 { salt }
        }
        auth::SASL => {
            let mut mechanisms = Vec::new();
            let mut at = 0;
            loop {
                let (m, next) = read_cstr(rest, at).ok_or_else(bad)?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(std::str::from_utf8(m).map_err(|_| bad())?);
                at = next;
            }
            AuthRequest::Sasl { mechanisms }
        }
        auth::SASL_CONTINUE => AuthRequest::SaslContinue { data: rest },
        auth::SASL_FINAL => AuthRequest::SaslFinal { data: rest },
        code => AuthRequest::Unsupported { code },
    })
}

/// A SASLInitialResponse from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitial<'a> {
    pub mechanism: &'a str,
    /// `None` when the client sent length -1 (no initial response).
    pub data: Option<&'a [u8]>,
}

pub fn sasl_initial_response(body: &[u8]) -> Result<SaslInitial<'_>, WireError> {
    let bad = || WireError::malformed("SASL initial response");
    let (mech, at) = read_cstr(body, 0).ok_or_else(bad)?;
    let mechanism = std::str::from_utf8(mech).map_err(|_| bad())?;
    let len = read_i32(body, at).ok_or_else(bad)?;
    let rest = &body[at + 4..];
    let data = match len {
        -1 if rest.is_empty() => None,
        n if n >= 0 && n as usize == rest.len() => Some(rest),
        _ => return Err(bad()),
    };
    Ok(SaslInitial { mechanism, data })
}

/// A PasswordMessage: the password without its terminating NUL.
pub fn password(body: &[u8]) -> Result<&[u8], WireError> {
    match read_cstr(body, 0) {
        Some((pw, end)) if end == body.len() => Ok(pw),
        _ => Err(WireError::malformed("password message")),
    }
}

pub fn parameter_status(body: &[u8]) -> Result<(&str, &str), WireError> {
    let bad = || WireError::malformed("parameter status");
    let (name, at) = read_cstr(body, 0).ok_or_else(bad)?;
    let (value, end) = read_cstr(body, at).ok_or_else(bad)?;
    if end != body.len() {
        return Err(bad());
    }
    Ok((
        std::str::from_utf8(name).map_err(|_| bad())?,
        std::str::from_utf8(value).map_err(|_| bad())?,
    ))
}

pub fn backend_key_data(body: &[u8]) -> Result<(i32, &[u8]), WireError> {
    let pid = read_i32(body, 0).ok_or(WireError::malformed("backend key data"))?;
    let key = &body[4..];
    if key.is_empty() || key.len() > crate::startup::MAX_CANCEL_KEY {
        return Err(WireError::malformed("backend key data"));
    }
    Ok((pid, key))
}

pub fn ready_for_query(body: &[u8]) -> Result<u8, WireError> {
    match body {
        [s @ (b'I' | b'T' | b'E')] => Ok(*s),
        _ => Err(WireError::malformed("ready for query")),
    }
}

/// A CommandComplete's tag (`SELECT 3`, `INSERT 0 1`, `CREATE TABLE`).
pub fn command_complete(body: &[u8]) -> Result<&str, WireError> {
    match read_cstr(body, 0) {
        Some((tag, end)) if end == body.len() => {
            std::str::from_utf8(tag).map_err(|_| WireError::malformed("command complete"))
        }
        _ => Err(WireError::malformed("command complete")),
    }
}

/// A Query message's statement text, without its terminating NUL.
pub fn query(body: &[u8]) -> Result<&[u8], WireError> {
    match read_cstr(body, 0) {
        Some((sql, end)) if end == body.len() => Ok(sql),
        _ => Err(WireError::malformed("query")),
    }
}

/// A Parse message's statement name and text (parameter types follow and
/// are not needed).
pub fn parse(body: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let bad = || WireError::malformed("parse");
    let (name, at) = read_cstr(body, 0).ok_or_else(bad)?;
    let (sql, _) = read_cstr(body, at).ok_or_else(bad)?;
    Ok((name, sql))
}

/// A whole Bind message's parameter values, in order (`None` for NULL).
/// Fails on a message cut short, such as the head of a streamed one.
pub fn bind_values(body: &[u8]) -> Result<Vec<Option<&[u8]>>, WireError> {
    let bad = || WireError::malformed("bind");
    let (_, at) = read_cstr(body, 0).ok_or_else(bad)?;
    let (_, mut at) = read_cstr(body, at).ok_or_else(bad)?;
    let i16_at = |at: usize| -> Result<usize, WireError> {
        let b = body.get(at..at + 2).ok_or_else(bad)?;
        usize::try_from(i16::from_be_bytes([b[0], b[1]])).map_err(|_| bad())
    };
    let formats = i16_at(at)?;
    at = at
        .checked_add(2 + formats * 2)
        .filter(|&a| a <= body.len())
        .ok_or_else(bad)?;
    let count = i16_at(at)?;
    at += 2;
    let mut values = Vec::with_capacity(count.min(body.len() / 4));
    for _ in 0..count {
        let b = body.get(at..at + 4).ok_or_else(bad)?;
        let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        at += 4;
        if len < 0 {
            values.push(None);
            continue;
        }
        let end = at.checked_add(len as usize).ok_or_else(bad)?;
        values.push(Some(body.get(at..end).ok_or_else(bad)?));
        at = end;
    }
    Ok(values)
}

/// A Bind message's portal and statement names; `head` may be only the
/// start of the message body (the names come first).
pub fn bind_names(head: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let bad = || WireError::malformed("bind");
    let (portal, at) = read_cstr(head, 0).ok_or_else(bad)?;
    let (statement, _) = read_cstr(head, at).ok_or_else(bad)?;
    Ok((portal, statement))
}

/// A Close (or Describe) message: `S` or `P`, and the name.
pub fn close(body: &[u8]) -> Result<(u8, &[u8]), WireError> {
    let bad = || WireError::malformed("close");
    let (&kind, rest) = body.split_first().ok_or_else(bad)?;
    if kind != b'S' && kind != b'P' {
        return Err(bad());
    }
    match read_cstr(rest, 0) {
        Some((name, end)) if end == rest.len() => Ok((kind, name)),
        _ => Err(bad()),
    }
}

/// One column of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    /// The table the column is a plain reference to (0 when computed).
    pub table_oid: u32,
    /// Its attribute number in that table (0 when computed).
    pub attnum: i16,
    pub type_oid: u32,
    pub type_len: i16,
    pub typmod: i32,
    /// 0 text, 1 binary (always 0 in a prepared statement's description).
    pub format: i16,
}

/// A RowDescription's columns.
pub fn row_description(body: &[u8]) -> Result<Vec<Field<'_>>, WireError> {
    let bad = || WireError::malformed("row description");
    let count = crate::framing::read_i16(body, 0).ok_or_else(bad)?;
    let count = usize::try_from(count).map_err(|_| bad())?;
    let mut at = 2;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (name, end) = read_cstr(body, at).ok_or_else(bad)?;
        let fixed = body.get(end..end + 18).ok_or_else(bad)?;
        let u32_at =
            |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
        let i16_at = |i: usize| i16::from_be_bytes([fixed[i], fixed[i + 1]]);
        out.push(Field {
            name,
            table_oid: u32_at(0),
            attnum: i16_at(4),
            type_oid: u32_at(6),
            type_len: i16_at(10),
            typmod: u32_at(12) as i32,
            format: i16_at(16),
        });
        at = end + 18;
    }
    if at != body.len() {
        return Err(bad());
    }
    Ok(out)
}

/// A CopyOutResponse or CopyInResponse: the overall format (0 text, 1
/// binary) and each column's format code.
pub fn copy_response(body: &[u8]) -> Result<(u8, Vec<i16>), WireError> {
    let bad = || WireError::malformed("copy response");
    let (&overall, rest) = body.split_first().ok_or_else(bad)?;
    let count = crate::framing::read_i16(rest, 0).ok_or_else(bad)?;
    let count = usize::try_from(count).map_err(|_| bad())?;
    let codes = rest.get(2..).ok_or_else(bad)?;
    if codes.len() != count * 2 || overall > 1 {
        return Err(bad());
    }
    Ok((
        overall,
        codes
            .chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect(),
    ))
}

/// A DataRow's column values (`None` for NULL).
pub fn data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, WireError> {
    let bad = || WireError::malformed("data row");
    let count = crate::framing::read_i16(body, 0).ok_or_else(bad)?;
    let count = usize::try_from(count).map_err(|_| bad())?;
    let mut at = 2;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_i32(body, at).ok_or_else(bad)?;
        at += 4;
        if len < 0 {
            out.push(None);
            continue;
        }
        let end = at.checked_add(len as usize).ok_or_else(bad)?;
        out.push(Some(body.get(at..end).ok_or_else(bad)?));
        at = end;
    }
    if at != body.len() {
        return Err(bad());
    }
    Ok(out)
}

/// The ParameterStatus messages (name, value) in a run of whole server
/// messages, such as those a server sends during startup; stops at the
/// first incomplete or malformed message.
pub fn parameter_statuses(messages: &[u8]) -> Vec<(&str, &str)> {
    let mut splitter = crate::framing::Splitter::new(crate::framing::Limits::backend());
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(crate::framing::Next::Whole { tag, len }) = splitter.next(&messages[at..]) {
        if tag == crate::tags::backend::PARAMETER_STATUS {
            if let Ok(pair) = parameter_status(body(&messages[at..at + len])) {
                out.push(pair);
            }
        }
        at += len;
    }
    out
}

/// The function OID of a FunctionCall (the body's first field).
pub fn function_call_oid(body: &[u8]) -> Result<u32, WireError> {
    read_i32(body, 0)
        .map(|v| v as u32)
        .ok_or(WireError::malformed("function call"))
}

/// NegotiateProtocolVersion: the newest minor version the server speaks and
/// the protocol options it did not recognise.
pub fn negotiate_protocol_version(body: &[u8]) -> Result<(i32, Vec<&str>), WireError> {
    let bad = || WireError::malformed("negotiate protocol version");
    let newest = read_i32(body, 0).ok_or_else(bad)?;
    let n = read_i32(body, 4).ok_or_else(bad)?;
    let mut at = 8;
    let mut names = Vec::new();
    for _ in 0..n.max(0) {
        let (name, next) = read_cstr(body, at).ok_or_else(bad)?;
        names.push(std::str::from_utf8(name).map_err(|_| bad())?);
        at = next;
    }
    Ok((newest, names))
}

/// The fields of an ErrorResponse or NoticeResponse, by field type byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportFields<'a> {
    pub severity: Option<&'a str>,
    pub code: Option<&'a str>,
    pub message: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub hint: Option<&'a str>,
}

pub fn report_fields(body: &[u8]) -> Result<ReportFields<'_>, WireError> {
    let bad = || WireError::malformed("error response");
    let mut out = ReportFields::default();
    let mut at = 0;
    loop {
        let ty = *body.get(at).ok_or_else(bad)?;
        if ty == 0 {
            break;
        }
        let (value, next) = read_cstr(body, at + 1).ok_or_else(bad)?;
        // Servers send these in the client encoding; non-UTF-8 text is
        // kept out rather than guessed at.
        let value = std::str::from_utf8(value).ok();
        match ty {
            b'V' => out.severity = value,
            b'S' if out.severity.is_none() => out.severity = value,
            b'C' => out.code = value,
            b'M' => out.message = value,
            b'D' => out.detail = value,
            b'H' => out.hint = value,
            _ => {}
        }
        at = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode;
    use crate::{sqlstate, Refusal};
    use bytes::BytesMut;

    #[test]
    fn bind_values_come_whole_or_not_at_all() {
        let mut b = BytesMut::new();
        encode::bind(&mut b, b"p", b"s", &[b"one", b""]);
        let values = bind_values(body(&b)).unwrap();
        assert_eq!(values, [Some(&b"one"[..]), Some(&b""[..])]);
        assert!(
            bind_values(&body(&b)[..body(&b).len() - 4]).is_err(),
            "cut short"
        );
        // A NULL, after two format codes.
        let mut raw = b"p\0s\0".to_vec();
        raw.extend_from_slice(&[0, 2, 0, 0, 0, 1, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(bind_values(&raw).unwrap(), [None]);
        raw[5] = 0xff; // a negative count of format codes
        assert!(bind_values(&raw).is_err());
    }

    #[test]
    fn copy_responses_give_formats() {
        assert_eq!(
            copy_response(&[0, 0, 2, 0, 0, 0, 0]).unwrap(),
            (0, vec![0, 0])
        );
        assert_eq!(copy_response(&[1, 0, 1, 0, 1]).unwrap(), (1, vec![1]));
        assert!(copy_response(&[0, 0, 2, 0, 0]).is_err(), "truncated");
        assert!(copy_response(&[2, 0, 0]).is_err(), "bad overall format");
        assert!(copy_response(&[0, 0xff, 0xff]).is_err(), "negative count");
        assert!(copy_response(&[]).is_err());
    }

    #[test]
    fn row_descriptions_name_table_column_type_and_format() {
        let mut b = Vec::new();
        b.extend_from_slice(&2i16.to_be_bytes());
        for (name, table, attnum, ty, typmod, format) in [
            ("email", 16400u32, 2i16, 25u32, -1i32, 0i16),
            ("n", 0, 0, 1700, 655366, 1),
        ] {
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&table.to_be_bytes());
            b.extend_from_slice(&attnum.to_be_bytes());
            b.extend_from_slice(&ty.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes());
            b.extend_from_slice(&typmod.to_be_bytes());
            b.extend_from_slice(&format.to_be_bytes());
        }
        let f = row_description(&b).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].name, f[0].table_oid, f[0].attnum),
            (&b"email"[..], 16400, 2)
        );
        assert_eq!((f[0].type_oid, f[0].typmod, f[0].format), (25, -1, 0));
        assert_eq!(
            (f[1].table_oid, f[1].type_oid, f[1].typmod, f[1].format),
            (0, 1700, 655366, 1)
        );
        assert!(row_description(&b[..b.len() - 1]).is_err(), "truncated");
        let mut extra = b.clone();
        extra.push(0);
        assert!(row_description(&extra).is_err(), "trailing bytes");
        assert!(
            row_description(&(-1i16).to_be_bytes()).is_err(),
            "negative count"
        );
    }

    #[test]
    fn report_round_trip() {
        let b = Refusal::fatal(sqlstate::CONNECTION_FAILURE, "m")
            .detail("d")
            .to_bytes();
        let f = report_fields(body(&b)).unwrap();
        assert_eq!(f.severity, Some("FATAL"));
        assert_eq!(f.code, Some("08006"));
        assert_eq!(f.message, Some("m"));
        assert_eq!(f.detail, Some("d"));
        assert_eq!(f.hint, None);
    }

    #[test]
    fn auth_requests() {
        let mut b = BytesMut::new();
        encode::authentication_sasl(&mut b, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        assert_eq!(
            auth_request(body(&b)).unwrap(),
            AuthRequest::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
            }
        );
        assert!(auth_request(&[0, 0, 0, 5, 1]).is_err());
        assert!(auth_request(&[0, 0]).is_err());
    }

    #[test]
    fn sasl_initial() {
        let mut b = BytesMut::new();
        encode::sasl_initial_response(&mut b, "SCRAM-SHA-256", b"n,,n=,r=abc");
        let s = sasl_initial_response(body(&b)).unwrap();
        assert_eq!(s.mechanism, "SCRAM-SHA-256");
        assert_eq!(s.data, Some(&b"n,,n=,r=abc"[..]));
        assert!(sasl_initial_response(b"X\0\0\0\0\x09abc").is_err());
    }
}
