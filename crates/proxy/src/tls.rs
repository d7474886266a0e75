//! TLS on both sides of the proxy: the certificate Portcullis presents to
//! clients, and how it connects to upstream servers (`sslmode`).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use thiserror::Error;

use crate::auth::channel_binding;

/// ALPN protocol name PostgreSQL 17 defined for direct TLS connections.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: String },
    #[error("{path}: no certificate found")]
    NoCertificate { path: String },
    #[error("{path}: no private key found")]
    NoKey { path: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid upstream host name {0:?} for TLS")]
    ServerName(String),
    #[error("{path}: no revocation list found")]
    NoCrl { path: String },
    #[error("client certificate verification: {0}")]
    ClientVerifier(String),
}

/// The CA(s) client certificates must chain to, and their revocation
/// lists (`[identity.certificates]`).
pub struct ClientCa<'a> {
    pub ca_file: &'a Path,
    pub crl_files: Vec<std::path::PathBuf>,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client-facing TLS setup.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    /// `tls-server-end-point` channel binding data for our certificate, or
    /// `None` when the certificate's signature hash has no RFC 5929 rule
    /// (then SCRAM-SHA-256-PLUS is not offered).
    pub end_point: Option<Vec<u8>>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        error: e.to_string(),
    })
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Read {
            path: path.display().to_string(),
            error: e.to_string(),
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.display().to_string(),
        })
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let pem = read(path)?;
    let crls: Vec<_> = rustls_pemfile::crls(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
    if crls.is_empty() {
        return Err(TlsError::NoCrl {
            path: path.display().to_string(),
        });
    }
    Ok(crls)
}

/// Asks every client for a certificate and verifies the ones presented
/// against `ca` (chain, validity, key usage for client auth, revocation
/// when lists are given); clients without one still connect and prove
/// who they are another way.
fn client_verifier(
    ca: &ClientCa<'_>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca.ca_file)? {
        roots.add(cert)?;
    }
    let mut crls = Vec::new();
    for path in &ca.crl_files {
        crls.extend(load_crls(path)?);
    }
    // With revocation lists, a certificate whose issuer has no list is
    // refused (webpki's default): give a list for every issuing CA. A list
    // past its nextUpdate is refused too: a revocation job that stopped
    // must not leave newer revocations unseen.
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(crls)
        .enforce_revocation_expiration()
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::ClientVerifier(e.to_string()))
}

impl ServerTls {
    pub fn load(
        cert: &Path,
        key: &Path,
        client_ca: Option<ClientCa<'_>>,
    ) -> Result<Self, TlsError> {
        let certs = load_certs(cert)?;
        let key = load_key(key)?;
        // libpq (through OpenSSL) cannot derive the binding hash of an
        // RSA-PSS certificate and would fail SCRAM-SHA-256-PLUS, so PLUS is
        // only offered where clients can compute the same bytes.
        let end_point = match channel_binding::signature_hash(&certs[0]) {
            Ok((channel_binding::SignatureKind::RsaPss, _)) | Err(_) => None,
            Ok(_) => channel_binding::tls_server_end_point(&certs[0]).ok(),
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match &client_ca {
            Some(ca) => builder.with_client_cert_verifier(client_verifier(ca)?),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key)?;
        if client_ca.is_some() {
            // A resumed TLS session carries the client certificate it was
            // first verified with, unverified again: a certificate that has
            // since expired would keep logging in. libpq never resumes, so
            // nothing is lost by always doing the full handshake.
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        // Clients that send ALPN must ask for "postgresql" (as PostgreSQL 17
        // requires); direct-TLS clients must send it, checked after the
        // handshake.
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            end_point,
        })
    }
}

/// How to reach one upstream over TLS, built once per configuration.
#[derive(Clone)]
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl UpstreamTls {
    /// `sslmode=require`: encrypt, but do not check who the server is (the
    /// libpq meaning). Handshake signatures are still verified.
    pub fn require(host: &str) -> Result<Self, TlsError> {
        let provider = provider();
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth();
        Ok(UpstreamTls {
            config: Arc::new(config),
            server_name: server_name(host)?,
        })
    }

    /// `sslmode=verify-full`: the chain must lead to a CA in `root_cert` and
    /// the certificate must name `host`.
    pub fn verify_full(host: &str, root_cert: &Path) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in load_certs(root_cert)? {
            roots.add(cert)?;
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(UpstreamTls {
            config: Arc::new(config),
            server_name: server_name(host)?,
        })
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

/// Accepts any certificate but checks that the server holds its key.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and key, as PEM files in `dir`.
    fn pem_pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn client_certificates_turn_session_resumption_off() {
        let dir = std::env::temp_dir().join(format!("portcullis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = pem_pair(&dir, "server");
        let (ca, _) = pem_pair(&dir, "clients");
        let plain = ServerTls::load(&cert, &key, None).unwrap();
        assert!(plain.config.session_storage.can_cache());
        let mutual = ServerTls::load(
            &cert,
            &key,
            Some(ClientCa {
                ca_file: &ca,
                crl_files: Vec::new(),
            }),
        )
        .unwrap();
        assert!(!mutual.config.session_storage.can_cache());
        assert_eq!(mutual.config.send_tls13_tickets, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
