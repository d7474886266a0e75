//! Encryption negotiation and the startup packet.
//!
//! A client may open with an SSLRequest (answered `S` when we have a
//! certificate, else `N`), a GSSENCRequest (always answered `N`: Portcullis
//! does not do GSSAPI encryption, and libpq then falls back), a CancelRequest,
//! a StartupMessage, or, since PostgreSQL 17, a TLS ClientHello straight
//! away ("direct TLS"), which must negotiate the ALPN protocol `postgresql`.

use bytes::BytesMut;
use portcullis_wire::startup::{self, Startup};
use portcullis_wire::{sqlstate, ProtocolVersion, Refusal, StartupParams};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::Ended;
use crate::metrics::ErrorKind;
use crate::stream::ClientStream;
use crate::tls::{ServerTls, ALPN_POSTGRESQL};

/// The first content byte of a TLS handshake record. A startup packet starts
/// with its length, whose first byte is always 0 (packets are < 10000 bytes).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

pub enum Opening {
    Cancel {
        pid: i32,
        key: Vec<u8>,
    },
    Startup {
        stream: ClientStream,
        buf: BytesMut,
        version: ProtocolVersion,
        params: StartupParams,
    },
}

/// Reads one startup-phase packet.
async fn read_packet<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Startup, PacketError> {
    loop {
        if let Some(len) = startup::packet_len(buf).map_err(PacketError::Wire)? {
            if buf.len() >= len {
                let packet = buf.split_to(len);
                return startup::parse(&packet).map_err(PacketError::Wire);
            }
        }
        buf.reserve(startup::MAX_STARTUP_PACKET);
        if stream
            .read_buf(buf)
            .await
            .map_err(|_| PacketError::Closed)?
            == 0
        {
            return Err(PacketError::Closed);
        }
    }
}

enum PacketError {
    Closed,
    Wire(portcullis_wire::WireError),
}

fn protocol_refusal(e: portcullis_wire::WireError) -> Refusal {
    match e {
        portcullis_wire::WireError::UnsupportedProtocol { .. } => {
            Refusal::fatal(sqlstate::FEATURE_NOT_SUPPORTED, format!("{e}"))
                .hint("Portcullis speaks protocol 3.0 and 3.2; upgrade the client library.")
        }
        e => Refusal::protocol(&e),
    }
}

fn dropped(what: &str) -> Ended {
    Ended::Dropped(ErrorKind::ClientProtocol, what.to_owned())
}

pub async fn open(mut tcp: TcpStream, tls: Option<&ServerTls>) -> Result<Opening, Ended> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) | Err(_) => return Err(Ended::Quietly),
        Ok(_) => {}
    }
    if first[0] == TLS_HANDSHAKE_RECORD {
        let Some(tls) = tls else {
            return Err(dropped(
                "direct TLS attempted but no certificate is configured",
            ));
        };
        let stream = accept_tls(tcp, tls).await?;
        let alpn_ok = stream.get_ref().1.alpn_protocol() == Some(ALPN_POSTGRESQL);
        if !alpn_ok {
            return Err(dropped(
                "direct TLS connection without ALPN protocol \"postgresql\"",
            ));
        }
        return startup_after_tls(ClientStream::Tls(Box::new(stream)), BytesMut::new()).await;
    }

    let mut buf = BytesMut::with_capacity(512);
    let mut gss_answered = false;
    loop {
        let packet = match read_packet(&mut tcp, &mut buf).await {
            Ok(p) => p,
            Err(PacketError::Closed) => return Err(Ended::Quietly),
            Err(PacketError::Wire(e)) => {
                return Err(Ended::Refused(
                    ClientStream::Plain(tcp),
                    ErrorKind::ClientProtocol,
                    protocol_refusal(e),
                ))
            }
        };
        match packet {
            Startup::SslRequest => {
                let Some(tls) = tls else {
                    tcp.write_all(b"N").await.map_err(|_| Ended::Quietly)?;
                    continue;
                };
                // Bytes sent after the SSLRequest but before the handshake
                // would be treated as if they came over TLS
                // (CVE-2021-23214): refuse them.
                if !buf.is_empty() {
                    return Err(dropped("unencrypted data after SSLRequest"));
                }
                tcp.write_all(b"S").await.map_err(|_| Ended::Quietly)?;
                let stream = accept_tls(tcp, tls).await?;
                return startup_after_tls(ClientStream::Tls(Box::new(stream)), buf).await;
            }
            Startup::GssEncRequest if !gss_answered => {
                gss_answered = true;
                tcp.write_all(b"N").await.map_err(|_| Ended::Quietly)?;
            }
            Startup::GssEncRequest => return Err(dropped("repeated GSSENCRequest")),
            Startup::Cancel { pid, key } => return Ok(Opening::Cancel { pid, key }),
            Startup::Startup { version, params } => {
                return Ok(Opening::Startup {
                    stream: ClientStream::Plain(tcp),
                    buf,
                    version,
                    params,
                })
            }
        }
    }
}

async fn accept_tls(
    tcp: TcpStream,
    tls: &ServerTls,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, Ended> {
    TlsAcceptor::from(tls.config.clone())
        .accept(tcp)
        .await
        .map_err(|e| Ended::Dropped(ErrorKind::Tls, format!("TLS handshake failed: {e}")))
}

/// Inside TLS only a StartupMessage or a CancelRequest may follow.
async fn startup_after_tls(mut stream: ClientStream, mut buf: BytesMut) -> Result<Opening, Ended> {
    match read_packet(&mut stream, &mut buf).await {
        Ok(Startup::Startup { version, params }) => Ok(Opening::Startup {
            stream,
            buf,
            version,
            params,
        }),
        Ok(Startup::Cancel { pid, key }) => Ok(Opening::Cancel { pid, key }),
        Ok(Startup::SslRequest | Startup::GssEncRequest) => {
            let r = Refusal::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "encryption requested again inside TLS",
            );
            Err(Ended::Refused(stream, ErrorKind::ClientProtocol, r))
        }
        Err(PacketError::Closed) => Err(Ended::Quietly),
        Err(PacketError::Wire(e)) => Err(Ended::Refused(
            stream,
            ErrorKind::ClientProtocol,
            protocol_refusal(e),
        )),
    }
}
