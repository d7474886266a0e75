//! A protocol-level client for exact-bytes tests: it logs in (SCRAM through
//! postgres-protocol's client) and then sends and receives raw messages.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use portcullis_wire::decode;
use portcullis_wire::encode;
use portcullis_wire::ProtocolVersion;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    pub fn tag(&self) -> char {
        self.tag as char
    }

    /// SQLSTATE of an ErrorResponse or NoticeResponse.
    pub fn code(&self) -> Option<String> {
        decode::report_fields(&self.body)
            .ok()?
            .code
            .map(str::to_owned)
    }

    pub fn message(&self) -> Option<String> {
        decode::report_fields(&self.body)
            .ok()?
            .message
            .map(str::to_owned)
    }

    pub fn severity(&self) -> Option<String> {
        decode::report_fields(&self.body)
            .ok()?
            .severity
            .map(str::to_owned)
    }

    pub fn hint(&self) -> Option<String> {
        decode::report_fields(&self.body)
            .ok()?
            .hint
            .map(str::to_owned)
    }

    /// The whole message as it was on the wire.
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = vec![self.tag];
        v.extend_from_slice(&((self.body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(&self.body);
        v
    }
}

/// Reads the next whole message from `stream`, buffering in `buf`; `None` at
/// end of stream or on a read error (a reset, or TLS closed without
/// close_notify). Panics after [`TIMEOUT`] without a message.
pub async fn read_msg<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Option<Msg> {
    loop {
        if buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() > len {
                let m = buf.split_to(len + 1);
                return Some(Msg {
                    tag: m[0],
                    body: m[5..].to_vec(),
                });
            }
        }
        let n = tokio::time::timeout(TIMEOUT, stream.read_buf(buf))
            .await
            .expect("timed out waiting for the server")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
    }
}

pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(Msg::tag).collect()
}

pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    pub pid: i32,
    pub key: Vec<u8>,
    /// Every message from the server during startup after authentication.
    pub startup: Vec<Msg>,
}

pub const TIMEOUT: Duration = Duration::from_secs(20);

impl Raw {
    /// Opens a TCP connection and sends a StartupMessage; returns the
    /// connection before authentication.
    pub async fn open(addr: SocketAddr, version: ProtocolVersion, params: &[(&str, &str)]) -> Raw {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut b = BytesMut::new();
        encode::startup_message(&mut b, version, params.iter().copied());
        stream.write_all(&b).await.unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            pid: 0,
            key: Vec::new(),
            startup: Vec::new(),
        }
    }

    /// Logs in with SCRAM-SHA-256 and reads up to the first ReadyForQuery.
    /// On refusal returns the ErrorResponse.
    pub async fn login(
        addr: SocketAddr,
        version: ProtocolVersion,
        params: &[(&str, &str)],
        password: &str,
    ) -> Result<Raw, Msg> {
        let mut raw = Raw::open(addr, version, params).await;
        raw.authenticate(password).await?;
        Ok(raw)
    }

    pub async fn authenticate(&mut self, password: &str) -> Result<(), Msg> {
        let mut scram = None;
        loop {
            let m = self.recv().await.expect("connection closed during login");
            match m.tag {
                b'E' => return Err(m),
                b'v' | b'N' => self.startup.push(m),
                b'R' => match decode::auth_request(&m.body).unwrap() {
                    decode::AuthRequest::Ok => break,
                    decode::AuthRequest::Sasl { .. } => {
                        let s =
                            ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                        let mut b = BytesMut::new();
                        encode::sasl_initial_response(&mut b, "SCRAM-SHA-256", s.message());
                        self.send(&b).await;
                        scram = Some(s);
                    }
                    decode::AuthRequest::SaslContinue { data } => {
                        let s = scram.as_mut().unwrap();
                        s.update(data).unwrap();
                        let mut b = BytesMut::new();
                        encode::sasl_response(&mut b, s.message());
                        self.send(&b).await;
                    }
                    decode::AuthRequest::SaslFinal { data } => {
                        scram.as_mut().unwrap().finish(data).unwrap();
                    }
                    other => panic!("unexpected auth request {other:?}"),
                },
                other => panic!("unexpected message {:?} during login", other as char),
            }
        }
        loop {
            let m = self.recv().await.expect("connection closed during startup");
            match m.tag {
                b'E' => return Err(m),
                b'K' => {
                    let (pid, key) = decode::backend_key_data(&m.body).unwrap();
                    self.pid = pid;
                    self.key = key.to_vec();
                    self.startup.push(m);
                }
                b'Z' => {
                    self.startup.push(m);
                    return Ok(());
                }
                _ => self.startup.push(m),
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Like [`Raw::send`], for a peer that may have closed.
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next message, or `None` at end of stream.
    pub async fn recv(&mut self) -> Option<Msg> {
        read_msg(&mut self.stream, &mut self.buf).await
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("closed; got so far: {}", tags(&out)));
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Reads until the peer closes; returns everything received.
    pub async fn until_closed(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.recv().await {
            out.push(m);
        }
        out
    }
}

/// Frontend message builders.
pub mod fe {
    use super::*;

    fn msg(tag: u8, body: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_u8(tag);
        b.put_i32(0);
        body(&mut b);
        let len = (b.len() - 1) as i32;
        b[1..5].copy_from_slice(&len.to_be_bytes());
        b.to_vec()
    }

    /// Strings go as bytes, so a test can send text in any client
    /// encoding (`b"s\xff"`) as well as `&str`.
    fn cstr(b: &mut BytesMut, s: impl AsRef<[u8]>) {
        b.put_slice(s.as_ref());
        b.put_u8(0);
    }

    pub fn query(sql: impl AsRef<[u8]>) -> Vec<u8> {
        msg(b'Q', |b| cstr(b, sql))
    }

    pub fn parse(name: impl AsRef<[u8]>, sql: impl AsRef<[u8]>, types: &[u32]) -> Vec<u8> {
        msg(b'P', |b| {
            cstr(b, name);
            cstr(b, sql);
            b.put_i16(types.len() as i16);
            for t in types {
                b.put_u32(*t);
            }
        })
    }

    /// Bind with parameters in the given formats (None = NULL), and one
    /// result format, binary, for every column (which a dry run of the
    /// proxy's own must not copy).
    pub fn bind_formats(
        portal: impl AsRef<[u8]>,
        statement: impl AsRef<[u8]>,
        formats: &[i16],
        params: &[Option<&[u8]>],
    ) -> Vec<u8> {
        bind_with(portal, statement, formats, params, &[1])
    }

    /// Bind with text parameters (None = NULL) and text results.
    pub fn bind(
        portal: impl AsRef<[u8]>,
        statement: impl AsRef<[u8]>,
        params: &[Option<&[u8]>],
    ) -> Vec<u8> {
        bind_with(portal, statement, &[], params, &[])
    }

    fn bind_with(
        portal: impl AsRef<[u8]>,
        statement: impl AsRef<[u8]>,
        formats: &[i16],
        params: &[Option<&[u8]>],
        results: &[i16],
    ) -> Vec<u8> {
        msg(b'B', |b| {
            cstr(b, portal);
            cstr(b, statement);
            b.put_i16(formats.len() as i16);
            for f in formats {
                b.put_i16(*f);
            }
            b.put_i16(params.len() as i16);
            for p in params {
                match p {
                    Some(v) => {
                        b.put_i32(v.len() as i32);
                        b.put_slice(v);
                    }
                    None => b.put_i32(-1),
                }
            }
            b.put_i16(results.len() as i16);
            for f in results {
                b.put_i16(*f);
            }
        })
    }

    pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
        msg(b'E', |b| {
            cstr(b, portal);
            b.put_i32(max_rows);
        })
    }

    pub fn describe(kind: u8, name: &str) -> Vec<u8> {
        msg(b'D', |b| {
            b.put_u8(kind);
            cstr(b, name);
        })
    }

    pub fn close(kind: u8, name: impl AsRef<[u8]>) -> Vec<u8> {
        msg(b'C', |b| {
            b.put_u8(kind);
            cstr(b, name);
        })
    }

    pub fn sync() -> Vec<u8> {
        msg(b'S', |_| {})
    }

    pub fn flush() -> Vec<u8> {
        msg(b'H', |_| {})
    }

    pub fn terminate() -> Vec<u8> {
        msg(b'X', |_| {})
    }

    pub fn copy_data(data: &[u8]) -> Vec<u8> {
        msg(b'd', |b| b.put_slice(data))
    }

    pub fn copy_done() -> Vec<u8> {
        msg(b'c', |_| {})
    }

    pub fn copy_fail(reason: &str) -> Vec<u8> {
        msg(b'f', |b| cstr(b, reason))
    }

    /// FunctionCall with binary arguments and a binary result.
    pub fn function_call(oid: u32, args: &[&[u8]]) -> Vec<u8> {
        msg(b'F', |b| {
            b.put_u32(oid);
            b.put_i16(1);
            b.put_i16(1);
            b.put_i16(args.len() as i16);
            for a in args {
                b.put_i32(a.len() as i32);
                b.put_slice(a);
            }
            b.put_i16(1);
        })
    }

    pub fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }
}

/// Logs in as `user` to target "app" of `proxy` with protocol 3.0.
pub async fn login(proxy: &crate::harness::Proxy, user: (&str, &str)) -> Raw {
    Raw::login(
        proxy.addr,
        ProtocolVersion::V3_0,
        &[("user", user.0), ("database", "app")],
        user.1,
    )
    .await
    .unwrap_or_else(|e| panic!("login refused: {:?}", e.message()))
}
