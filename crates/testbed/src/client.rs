//! tokio-postgres over rustls, with channel binding.
//!
//! The workspace builds tokio-postgres without any TLS backend, so this
//! module provides one on tokio-rustls. Its point beyond plain TLS is
//! `tls-server-end-point` channel binding: without it tokio-postgres can
//! never use SCRAM-SHA-256-PLUS, and `channel_binding=require` fails.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, NoTls};
use tokio_rustls::TlsConnector;

use crate::tls::TestPki;

/// ALPN protocol PostgreSQL 17+ requires for direct TLS negotiation; offered
/// by default like libpq 17 does (older servers ignore it).
pub const POSTGRESQL_ALPN: &[u8] = b"postgresql";

/// A `MakeTlsConnect` for tokio-postgres backed by rustls.
#[derive(Clone)]
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
}

impl RustlsConnect {
    /// Uses `config` as given (trust roots, ALPN, client certificate).
    pub fn new(config: ClientConfig) -> Self {
        RustlsConnect {
            config: Arc::new(config),
        }
    }

    /// Trusts the test CA and offers the `postgresql` ALPN protocol.
    pub fn from_pki(pki: &TestPki) -> Self {
        Self::new(pki.rustls_client_config(Some(POSTGRESQL_ALPN)))
    }
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsTlsConnect;
    type Error = io::Error;

    /// `domain` is the `host` from the connection string; an IP address
    /// there is verified against the certificate's IP SANs.
    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsTlsConnect> {
        let server_name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsTlsConnect {
            connector: TlsConnector::from(Arc::clone(&self.config)),
            server_name,
        })
    }
}

/// One pending TLS handshake (created per connection attempt).
pub struct RustlsTlsConnect {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.server_name, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// An established TLS stream that reports channel-binding data.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> RustlsStream<S> {
    /// The underlying stream and rustls connection (peer certificates,
    /// negotiated ALPN, ...).
    pub fn get_ref(&self) -> (&S, &rustls::ClientConnection) {
        self.0.get_ref()
    }
}

impl<S> TlsStream for RustlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn channel_binding(&self) -> ChannelBinding {
        let (_, conn) = self.0.get_ref();
        match conn.peer_certificates().and_then(|certs| certs.first()) {
            Some(cert) => ChannelBinding::tls_server_end_point(tls_server_end_point(cert)),
            None => ChannelBinding::none(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// `tls-server-end-point` data (RFC 5929 §4.1): the certificate hashed
/// with its signature's hash function, SHA-256 if that is MD5 or SHA-1.
///
/// Limitation: only SHA-384/512 signatures (RSA PKCS#1 and ECDSA) are
/// recognized; everything else — including RSA-PSS, whose hash lives in
/// parameters, and Ed25519, for which PostgreSQL itself has no binding —
/// falls back to SHA-256, which is right for the ECDSA-SHA256 test
/// certificates and for the common SHA-256 RSA ones.
pub fn tls_server_end_point(cert_der: &[u8]) -> Vec<u8> {
    const SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    const SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    const ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
    match signature_algorithm_oid(cert_der) {
        Some(oid) if oid == SHA384_RSA || oid == ECDSA_SHA384 => Sha384::digest(cert_der).to_vec(),
        Some(oid) if oid == SHA512_RSA || oid == ECDSA_SHA512 => Sha512::digest(cert_der).to_vec(),
        _ => Sha256::digest(cert_der).to_vec(),
    }
}

/// The OID bytes of `Certificate.signatureAlgorithm` (RFC 5280: a SEQUENCE
/// of tbsCertificate, signatureAlgorithm, signature), by a minimal DER walk.
fn signature_algorithm_oid(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, body, _) = der_tlv(cert)? else {
        return None;
    };
    let (_tbs, _, rest) = der_tlv(body)?;
    let (0x30, algorithm, _) = der_tlv(rest)? else {
        return None;
    };
    match der_tlv(algorithm)? {
        (0x06, oid, _) => Some(oid),
        _ => None,
    }
}

/// Splits one DER TLV off `input`: (tag, contents, remainder).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Handle to the task driving a connection; resolves when it closes.
pub type ConnectionTask = JoinHandle<Result<(), tokio_postgres::Error>>;

/// Connects with tokio-postgres and spawns the connection task on the
/// current tokio runtime. With `tls` the connection can use TLS as the
/// connection string's `sslmode` says (default `prefer`) and channel binding
/// per `channel_binding`; without it, TLS is never attempted.
pub async fn connect(
    conn_str: &str,
    tls: Option<&TestPki>,
) -> Result<(Client, ConnectionTask), tokio_postgres::Error> {
    match tls {
        Some(pki) => {
            let (client, connection) =
                tokio_postgres::connect(conn_str, RustlsConnect::from_pki(pki)).await?;
            Ok((client, tokio::spawn(connection)))
        }
        None => {
            let (client, connection) = tokio_postgres::connect(conn_str, NoTls).await?;
            Ok((client, tokio::spawn(connection)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_certs_bind_with_sha256() {
        let pki = TestPki::generate(&["localhost"]).unwrap();
        let der = pki.server_cert_der();
        assert_eq!(
            signature_algorithm_oid(der),
            Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02][..])
        );
        assert_eq!(
            tls_server_end_point(der),
            Sha256::digest(der.as_ref()).to_vec()
        );
    }

    #[test]
    fn der_parser_rejects_garbage() {
        assert_eq!(signature_algorithm_oid(&[]), None);
        assert_eq!(signature_algorithm_oid(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(signature_algorithm_oid(&[0x30, 0x02, 0x30]), None);
    }
}
