//! Writing the messages Portcullis itself originates. Everything else it
//! sends is a message it received, forwarded as the original bytes.

use bytes::{BufMut, BytesMut};

use crate::refusal::Refusal;
use crate::startup::{ProtocolVersion, CANCEL_REQUEST_CODE, SSL_REQUEST_CODE};
use crate::tags::{auth, backend as be, frontend as fe};

/// Writes one tagged message whose body is produced by `body`.
fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes an untagged startup-phase packet.
fn packet(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let at = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(buf: &mut BytesMut, s: &[u8]) {
    // A NUL inside would end the field early and shift every field after it.
    for &b in s {
        buf.put_u8(if b == 0 { b' ' } else { b });
    }
    buf.put_u8(0);
}

/// The ErrorResponse for `r`. Only [`Refusal::encode`] calls this, so every
/// ErrorResponse Portcullis makes is a [`Refusal`].
pub(crate) fn error_response(buf: &mut BytesMut, r: &Refusal) {
    message(buf, be::ERROR_RESPONSE, |b| {
        b.put_u8(b'S');
        cstr(b, r.severity.as_str().as_bytes());
        b.put_u8(b'V');
        cstr(b, r.severity.as_str().as_bytes());
        b.put_u8(b'C');
        cstr(b, r.sqlstate.as_bytes());
        b.put_u8(b'M');
        cstr(b, r.message.as_bytes());
        if let Some(d) = &r.detail {
            b.put_u8(b'D');
            cstr(b, d.as_bytes());
        }
        if let Some(h) = &r.hint {
            b.put_u8(b'H');
            cstr(b, h.as_bytes());
        }
        b.put_u8(0);
    });
}

/// A NoticeResponse of the proxy's own (severity NOTICE, SQLSTATE 00000).
pub fn notice(buf: &mut BytesMut, text: &str, detail: Option<&str>, hint: Option<&str>) {
    message(buf, be::NOTICE_RESPONSE, |b| {
        for field in [b'S', b'V'] {
            b.put_u8(field);
            cstr(b, b"NOTICE");
        }
        b.put_u8(b'C');
        cstr(b, b"00000");
        b.put_u8(b'M');
        cstr(b, text.as_bytes());
        for (field, extra) in [(b'D', detail), (b'H', hint)] {
            if let Some(t) = extra {
                b.put_u8(field);
                cstr(b, t.as_bytes());
            }
        }
        b.put_u8(0);
    });
}

/// An ErrorResponse with a SQLSTATE known only at run time (one the
/// server sent): `severity` is ERROR or FATAL.
pub fn error_with_code(buf: &mut BytesMut, severity: &str, code: &str, text: &str, hint: &str) {
    message(buf, be::ERROR_RESPONSE, |b| {
        for field in [b'S', b'V'] {
            b.put_u8(field);
            cstr(b, severity.as_bytes());
        }
        b.put_u8(b'C');
        cstr(b, code.as_bytes());
        b.put_u8(b'M');
        cstr(b, text.as_bytes());
        b.put_u8(b'H');
        cstr(b, hint.as_bytes());
        b.put_u8(0);
    });
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    message(buf, be::READY_FOR_QUERY, |b| b.put_u8(status));
}

pub fn authentication_ok(buf: &mut BytesMut) {
    message(buf, be::AUTHENTICATION, |b| b.put_i32(auth::OK));
}

/// Asks for the password in the clear: only ever sent over TLS, to
/// clients that log in with a token or an API key.
pub fn authentication_cleartext_password(buf: &mut BytesMut) {
    message(buf, be::AUTHENTICATION, |b| {
        b.put_i32(auth::CLEARTEXT_PASSWORD)
    });
}

pub fn authentication_sasl<'a>(buf: &mut BytesMut, mechanisms: impl IntoIterator<Item = &'a str>) {
    message(buf, be::AUTHENTICATION, |b| {
        b.put_i32(auth::SASL);
        for m in mechanisms {
            cstr(b, m.as_bytes());
        }
        b.put_u8(0);
    });
}

pub fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    message(buf, be::AUTHENTICATION, |b| {
        b.put_i32(auth::SASL_CONTINUE);
        b.put_slice(data);
    });
}

pub fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    message(buf, be::AUTHENTICATION, |b| {
        b.put_i32(auth::SASL_FINAL);
        b.put_slice(data);
    });
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    message(buf, be::PARAMETER_STATUS, |b| {
        cstr(b, name.as_bytes());
        cstr(b, value.as_bytes());
    });
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, key: &[u8]) {
    message(buf, be::BACKEND_KEY_DATA, |b| {
        b.put_i32(pid);
        b.put_slice(key);
    });
}

pub fn negotiate_protocol_version<'a>(
    buf: &mut BytesMut,
    newest: ProtocolVersion,
    unsupported: impl ExactSizeIterator<Item = &'a str>,
) {
    message(buf, be::NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_i32(newest.code());
        b.put_i32(unsupported.len() as i32);
        for o in unsupported {
            cstr(b, o.as_bytes());
        }
    });
}

pub fn startup_message<'a>(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    packet(buf, |b| {
        b.put_i32(version.code());
        for (k, v) in params {
            cstr(b, k.as_bytes());
            cstr(b, v.as_bytes());
        }
        b.put_u8(0);
    });
}

pub fn ssl_request(buf: &mut BytesMut) {
    packet(buf, |b| b.put_i32(SSL_REQUEST_CODE));
}

pub fn cancel_request(buf: &mut BytesMut, pid: i32, key: &[u8]) {
    packet(buf, |b| {
        b.put_i32(CANCEL_REQUEST_CODE);
        b.put_i32(pid);
        b.put_slice(key);
    });
}

pub fn password_message(buf: &mut BytesMut, password: &[u8]) {
    message(buf, fe::PASSWORD, |b| cstr(b, password));
}

pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    message(buf, fe::PASSWORD, |b| {
        cstr(b, mechanism.as_bytes());
        b.put_i32(data.len() as i32);
        b.put_slice(data);
    });
}

pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    message(buf, fe::PASSWORD, |b| b.put_slice(data));
}

pub fn query(buf: &mut BytesMut, sql: &str) {
    message(buf, fe::QUERY, |b| cstr(b, sql.as_bytes()));
}

/// Parse of a statement without parameter types.
pub fn parse(buf: &mut BytesMut, name: &[u8], sql: &str) {
    parse_bytes(buf, name, sql.as_bytes());
}

/// Parse from raw statement bytes (which must hold no NUL, as the text of
/// a Query never does).
pub fn parse_bytes(buf: &mut BytesMut, name: &[u8], sql: &[u8]) {
    message(buf, fe::PARSE, |b| {
        cstr(b, name);
        cstr(b, sql);
        b.put_i16(0);
    });
}

/// Parse declaring the parameters' types (0: the server infers one).
pub fn parse_typed(buf: &mut BytesMut, name: &[u8], sql: &str, types: &[u32]) {
    message(buf, fe::PARSE, |b| {
        cstr(b, name);
        cstr(b, sql.as_bytes());
        b.put_i16(i16::try_from(types.len()).unwrap_or(i16::MAX));
        for t in types.iter().take(i16::MAX as usize) {
            b.put_u32(*t);
        }
    });
}

/// Bind with a client's parameters as it sent them (`section`: the format
/// codes and values of its Bind), every result column in text.
pub fn bind_sent(buf: &mut BytesMut, portal: &[u8], statement: &[u8], section: &[u8]) {
    message(buf, fe::BIND, |b| {
        cstr(b, portal);
        cstr(b, statement);
        b.put_slice(section);
        b.put_i16(0);
    });
}

/// Describe of a prepared statement.
pub fn describe_statement(buf: &mut BytesMut, name: &[u8]) {
    message(buf, fe::DESCRIBE, |b| {
        b.put_u8(b'S');
        cstr(b, name);
    });
}

/// Describe of a portal.
pub fn describe_portal(buf: &mut BytesMut, name: &[u8]) {
    message(buf, fe::DESCRIBE, |b| {
        b.put_u8(b'P');
        cstr(b, name);
    });
}

pub fn sync(buf: &mut BytesMut) {
    message(buf, fe::SYNC, |_| {});
}

/// Bind of `statement` to `portal` with text parameters and default
/// (text) result formats.
pub fn bind(buf: &mut BytesMut, portal: &[u8], statement: &[u8], params: &[&[u8]]) {
    message(buf, fe::BIND, |b| {
        cstr(b, portal);
        cstr(b, statement);
        b.put_i16(0);
        b.put_i16(params.len() as i16);
        for p in params {
            b.put_i32(p.len() as i32);
            b.put_slice(p);
        }
        b.put_i16(0);
    });
}

/// Execute of `portal`, all rows.
pub fn execute(buf: &mut BytesMut, portal: &[u8]) {
    execute_rows(buf, portal, 0);
}

/// Execute of `portal`, at most `max_rows` rows (0: all).
pub fn execute_rows(buf: &mut BytesMut, portal: &[u8], max_rows: i32) {
    message(buf, fe::EXECUTE, |b| {
        cstr(b, portal);
        b.put_i32(max_rows);
    });
}

pub fn flush(buf: &mut BytesMut) {
    message(buf, fe::FLUSH, |_| {});
}

/// Close of a statement (`b'S'`) or portal (`b'P'`).
pub fn close(buf: &mut BytesMut, kind: u8, name: &[u8]) {
    message(buf, fe::CLOSE, |b| {
        b.put_u8(kind);
        cstr(b, name);
    });
}

/// A Query message from raw statement bytes (which must hold no NUL).
pub fn query_bytes(buf: &mut BytesMut, sql: &[u8]) {
    message(buf, fe::QUERY, |b| cstr(b, sql));
}

pub fn terminate(buf: &mut BytesMut) {
    message(buf, fe::TERMINATE, |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_for_query_bytes() {
        let mut b = BytesMut::new();
        ready_for_query(&mut b, b'I');
        assert_eq!(&b[..], b"Z\0\0\0\x05I");
    }

    #[test]
    fn nul_bytes_in_text_cannot_split_fields() {
        let mut b = BytesMut::new();
        parameter_status(&mut b, "a\0b", "c");
        assert_eq!(&b[..], b"S\0\0\0\x0aa b\0c\0");
    }
}
