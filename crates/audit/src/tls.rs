//! The trust roots the audit trail's TLS clients use (the shared
//! PostgreSQL store, the webhook forwarder): a CA file the operator gives
//! (a private CA), else the system's bundle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Where CA bundles live on common systems, after `SSL_CERT_FILE`.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
];

#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("{path}: {why}")]
    Ca { path: String, why: String },
    #[error("no system CA bundle found (looked at $SSL_CERT_FILE and {})", SYSTEM_BUNDLES.join(", "))]
    NoRoots,
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// The roots TLS trusts: `ca_file` alone when given, else the system's
/// bundle (`SSL_CERT_FILE` first).
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, RootsError> {
    let path = match ca_file {
        Some(p) => p.to_owned(),
        None => system_bundle().ok_or(RootsError::NoRoots)?,
    };
    let ca = |why: String| RootsError::Ca {
        path: path.display().to_string(),
        why,
    };
    let pem = std::fs::read(&path).map_err(|e| ca(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| ca(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    // A system bundle can hold a certificate rustls does not accept;
    // skipping it is what every TLS stack does.
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ca("no usable CA certificate (PEM) in it".into()));
    }
    Ok(roots)
}

fn system_bundle() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            SYSTEM_BUNDLES
                .iter()
                .map(Path::new)
                .find(|p| p.is_file())
                .map(Path::to_owned)
        })
}

/// A client configuration that verifies the server's certificate against
/// [`roots`] and its name, with no client certificate.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, RootsError> {
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(ca_file)?)
            .with_no_client_auth();
    Ok(Arc::new(config))
}
