//! Throwaway PKI for tests: one CA, one server certificate, and client
//! certificates on demand.
//!
//! Everything is ECDSA P-256 with SHA-256 signatures because that is fast to
//! generate (milliseconds, versus seconds for RSA) and is what
//! `tls-server-end-point` channel binding hashes with SHA-256, the one case
//! every SCRAM-SHA-256-PLUS implementation supports.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Errors from generating or using test TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused the parameters (e.g. an invalid DNS name).
    #[error("generating test certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the generated material or configuration.
    #[error("building rustls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Writing PEM files failed.
    #[error("writing TLS files to {}: {source}", path.display())]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The crypto provider used for every config built here. The workspace
/// builds rustls without a default provider, so it must be explicit.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate plus its private key, as both PEM and DER.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
    /// PKCS#8 private key, DER bytes (use [`IssuedCert::key_der`] for a
    /// rustls key type; `PrivateKeyDer` is deliberately not `Clone`).
    pub key_pkcs8: Vec<u8>,
}

impl IssuedCert {
    /// The private key as rustls wants it.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }
}

/// Paths written by [`TestPki::write_to`].
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (`ca.crt`).
    pub ca_cert: PathBuf,
    /// The server certificate (`server.crt`).
    pub server_cert: PathBuf,
    /// The server private key (`server.key`, mode 0600).
    pub server_key: PathBuf,
}

/// The CA's certificate and key, kept so more certificates can be issued
/// later (client certificates for identity tests).
struct CaIssuer {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A CA and a server certificate signed by it, generated in memory.
///
/// Cheap to clone (the CA key is shared), so a cluster and the tests talking
/// to it can each hold one.
#[derive(Clone)]
pub struct TestPki {
    ca: Arc<CaIssuer>,
    ca_cert_pem: String,
    ca_cert_der: CertificateDer<'static>,
    server: IssuedCert,
    names: Vec<String>,
    /// Client config trusting the CA, built once so that
    /// [`TestPki::rustls_client_config`] cannot fail.
    client_base: Arc<ClientConfig>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// Generates a CA and a server certificate valid for `names`, each either
    /// a DNS name ("localhost") or an IP address ("127.0.0.1"); IP strings
    /// become IP SANs, which rustls requires when connecting by address.
    pub fn generate(names: &[&str]) -> Result<TestPki, TlsError> {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = dn("Portcullis Test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Arc::new(CaIssuer {
            cert: ca_cert,
            key: ca_key,
        });

        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        params.distinguished_name = dn(names.first().map_or("portcullis-test", |n| n.as_str()));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let server = issue(&ca, params)?;

        let ca_cert_der = ca.cert.der().clone();
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert_der.clone())?;
        let client_base = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();

        Ok(TestPki {
            ca_cert_pem: ca.cert.pem(),
            ca_cert_der,
            ca,
            server,
            names,
            client_base: Arc::new(client_base),
        })
    }

    /// The names the server certificate is valid for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// CA certificate, DER.
    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_cert_der
    }

    /// The server certificate and key.
    pub fn server(&self) -> &IssuedCert {
        &self.server
    }

    /// Server certificate, PEM.
    pub fn server_cert_pem(&self) -> &str {
        &self.server.cert_pem
    }

    /// Server certificate, DER.
    pub fn server_cert_der(&self) -> &CertificateDer<'static> {
        &self.server.cert_der
    }

    /// Server private key (PKCS#8), PEM.
    pub fn server_key_pem(&self) -> &str {
        &self.server.key_pem
    }

    /// Server private key for rustls.
    pub fn server_key_der(&self) -> PrivateKeyDer<'static> {
        self.server.key_der()
    }

    /// A root store containing only the test CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        // Cannot fail: the same DER was accepted in `generate`.
        let _ = roots.add(self.ca_cert_der.clone());
        roots
    }

    /// Issues a client certificate (CN = `common_name`, clientAuth EKU),
    /// for tests of certificate-based identity.
    pub fn issue_client_cert(&self, common_name: &str) -> Result<IssuedCert, TlsError> {
        self.issue_client_cert_with(|p| p.distinguished_name = dn(common_name))
    }

    /// Issues a client certificate (clientAuth EKU, no subject unless
    /// `edit` gives one) after `edit` has set its names, serial number or
    /// validity.
    pub fn issue_client_cert_with(
        &self,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Result<IssuedCert, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        edit(&mut params);
        issue(&self.ca, params)
    }

    /// A revocation list (PEM) from the CA revoking the certificates with
    /// `serials`, valid from 2020 to 2100.
    pub fn crl_pem(&self, serials: &[u64]) -> Result<String, TlsError> {
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2020, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.ca.cert, &self.ca.key)?.pem()?)
    }

    /// A rustls client config trusting only the test CA, offering `alpn`
    /// (e.g. `Some(b"postgresql")`, which PostgreSQL 17 requires for direct
    /// TLS negotiation).
    pub fn rustls_client_config(&self, alpn: Option<&[u8]>) -> ClientConfig {
        let mut config = ClientConfig::clone(&self.client_base);
        config.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
        config
    }

    /// Like [`TestPki::rustls_client_config`] but presenting `client` as the
    /// client certificate.
    pub fn rustls_client_config_with_cert(
        &self,
        alpn: Option<&[u8]>,
        client: &IssuedCert,
    ) -> Result<ClientConfig, TlsError> {
        let mut config = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.root_store())
            .with_client_auth_cert(vec![client.cert_der.clone()], client.key_der())?;
        config.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
        Ok(config)
    }

    /// A rustls server config presenting the server certificate (for tests
    /// that stand up their own TLS endpoint, e.g. the proxy's listener).
    pub fn rustls_server_config(&self, alpn: Option<&[u8]>) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.server.cert_der.clone()], self.server_key_der())?;
        config.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
        Ok(config)
    }

    /// Writes `ca.crt`, `server.crt` and `server.key` into `dir` (created if
    /// missing). The key is mode 0600 because PostgreSQL refuses to load a
    /// key file readable by group or others.
    pub fn write_to(&self, dir: &Path) -> Result<TlsFiles, TlsError> {
        fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let files = TlsFiles {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        };
        write_file(&files.ca_cert, self.ca_cert_pem.as_bytes(), 0o644)?;
        write_file(&files.server_cert, self.server.cert_pem.as_bytes(), 0o644)?;
        write_file(&files.server_key, self.server.key_pem.as_bytes(), 0o600)?;
        Ok(files)
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn issue(ca: &CaIssuer, params: CertificateParams) -> Result<IssuedCert, TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key_pem: key.serialize_pem(),
        key_pkcs8: key.serialize_der(),
    })
}

/// Writes `contents` with `mode` set at creation time, so the key is never
/// briefly world-readable; an existing file gets its mode reset too.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let wrap = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(wrap)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(wrap)?;
    file.write_all(contents).map_err(wrap)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_and_writes() {
        let pki = TestPki::generate(&["localhost", "127.0.0.1"]).unwrap();
        assert!(pki.ca_cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.server_key_pem().contains("PRIVATE KEY"));
        let dir = tempfile::tempdir().unwrap();
        let files = pki.write_to(dir.path()).unwrap();
        let mode = fs::metadata(&files.server_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::read_to_string(&files.server_cert).unwrap(),
            pki.server_cert_pem()
        );
        let client = pki.rustls_client_config(Some(b"postgresql"));
        assert_eq!(client.alpn_protocols, vec![b"postgresql".to_vec()]);
        pki.rustls_server_config(None).unwrap();
        let cc = pki.issue_client_cert("alice").unwrap();
        pki.rustls_client_config_with_cert(None, &cc).unwrap();
    }

    #[test]
    fn rejects_invalid_names() {
        // DNS SANs must be IA5 (ASCII); rcgen reports that as an error, not a panic.
        assert!(TestPki::generate(&["bücher.example"]).is_err());
    }
}
