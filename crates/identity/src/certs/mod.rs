//! Client certificates (mutual TLS): who a certificate names.
//!
//! The TLS layer has already verified the chain to the configured client
//! CA (and its revocation lists) before anything here runs; this module
//! only reads the verified leaf certificate and decides which principal
//! it names, and whether that is the user name the client logs in as.
//!
//! The certificate must carry the clientAuth extended key usage (TLS
//! accepts one with no extended key usage at all). One field names the
//! principal, chosen by configuration: the subject's
//! common name, or a subjectAltName of one type (email, DNS name, URI).
//! Names are compared exactly, as PostgreSQL compares user names; a
//! certificate that carries the field twice or more names each of those
//! values (the CA vouched for all of them), except the common name, which
//! must be single: two CNs are ambiguous and refused.

use std::fmt::Write;

use x509_cert::der::asn1::Ia5String;
use x509_cert::der::oid::db::{rfc4519, rfc5280};
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::Certificate;

use crate::{Identity, Kind, Proof};

/// Which certificate field names the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameField {
    /// The subject's common name (CN).
    CommonName,
    /// A subjectAltName rfc822Name (an email address).
    Email,
    /// A subjectAltName dNSName.
    Dns,
    /// A subjectAltName uniformResourceIdentifier (for example a SPIFFE id).
    Uri,
}

impl NameField {
    /// From the configuration's word: `cn`, `email`, `dns` or `uri`.
    pub fn parse(s: &str) -> Option<NameField> {
        Some(match s {
            "cn" => NameField::CommonName,
            "email" => NameField::Email,
            "dns" => NameField::Dns,
            "uri" => NameField::Uri,
            _ => return None,
        })
    }
}

/// How certificates from the configured CA map to identities.
#[derive(Debug, Clone)]
pub struct CertPolicy {
    pub name_field: NameField,
    /// With [`NameField::Uri`]: the URI must start with this, and the rest
    /// is the name (`spiffe://corp.example/ns/etl/sa/` + `nightly`).
    pub uri_prefix: Option<String>,
    /// Names that are AI agents' and jobs' (kinds agent and service);
    /// every other name is a person's.
    pub agents: Vec<String>,
    pub services: Vec<String>,
    /// The subject's organizational units become the principal's groups.
    pub groups_from_ou: bool,
}

/// Why a certificate does not prove the user name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the certificate cannot be read: {0}")]
    Malformed(String),
    #[error("the certificate carries no {0} to name a principal")]
    NoName(&'static str),
    #[error("the certificate's subject has more than one common name")]
    AmbiguousName,
    #[error("the certificate does not name user {user:?}")]
    OtherUser { user: String },
    #[error("the certificate is not for client authentication (no clientAuth extended key usage)")]
    NotForClients,
}

impl NameField {
    fn describe(self) -> &'static str {
        match self {
            NameField::CommonName => "subject common name",
            NameField::Email => "email subjectAltName",
            NameField::Dns => "DNS subjectAltName",
            NameField::Uri => "URI subjectAltName",
        }
    }
}

/// The identity the verified leaf certificate `der` proves, when it names
/// `user`.
pub fn identify(der: &[u8], user: &str, policy: &CertPolicy) -> Result<Identity, Refused> {
    let cert = Certificate::from_der(der).map_err(|e| Refused::Malformed(e.to_string()))?;
    // TLS accepts a certificate without an extended key usage for any
    // purpose; a certificate proves a login only when its CA issued it for
    // client authentication.
    let eku = cert
        .tbs_certificate()
        .get_extension::<ExtendedKeyUsage>()
        .map_err(|e| Refused::Malformed(e.to_string()))?;
    if !eku.is_some_and(|(_, eku)| eku.0.contains(&rfc5280::ID_KP_CLIENT_AUTH)) {
        return Err(Refused::NotForClients);
    }
    let names = names(&cert, policy)?;
    if names.is_empty() {
        return Err(Refused::NoName(policy.name_field.describe()));
    }
    if !names.iter().any(|n| n == user) {
        return Err(Refused::OtherUser {
            user: user.to_owned(),
        });
    }
    let kind = if policy.agents.iter().any(|a| a == user) {
        Kind::Agent
    } else if policy.services.iter().any(|s| s == user) {
        Kind::Service
    } else {
        Kind::Human
    };
    let groups = if policy.groups_from_ou {
        units(&cert)?
    } else {
        Vec::new()
    };
    Ok(Identity {
        kind,
        subject: user.to_owned(),
        groups,
        on_behalf_of: None,
        proof: Proof::Certificate {
            fingerprint: fingerprint(der),
        },
    })
}

/// The lowercase hex SHA-256 of the certificate's DER: how records name
/// the credential (as `openssl x509 -fingerprint -sha256` shows it, less
/// the colons).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Every value of the configured field.
fn names(cert: &Certificate, policy: &CertPolicy) -> Result<Vec<String>, Refused> {
    let malformed = |e: x509_cert::der::Error| Refused::Malformed(e.to_string());
    let tbs = cert.tbs_certificate();
    if policy.name_field == NameField::CommonName {
        let mut cns = Vec::new();
        for atv in tbs.subject().iter() {
            if atv.oid == rfc4519::COMMON_NAME {
                cns.push(directory_string(&atv.value)?);
            }
        }
        if cns.len() > 1 {
            return Err(Refused::AmbiguousName);
        }
        return Ok(cns);
    }
    let Some((_, san)) = tbs.get_extension::<SubjectAltName>().map_err(malformed)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in san.0 {
        let value: Option<&Ia5String> = match (policy.name_field, &name) {
            (NameField::Email, GeneralName::Rfc822Name(s)) => Some(s),
            (NameField::Dns, GeneralName::DnsName(s)) => Some(s),
            (NameField::Uri, GeneralName::UniformResourceIdentifier(s)) => Some(s),
            _ => None,
        };
        let Some(value) = value else { continue };
        let value = value.as_str();
        let value = match (&policy.uri_prefix, policy.name_field) {
            (Some(prefix), NameField::Uri) => match value.strip_prefix(prefix.as_str()) {
                Some(rest) if !rest.is_empty() => rest,
                _ => continue,
            },
            _ => value,
        };
        out.push(value.to_owned());
    }
    Ok(out)
}

/// The subject's organizational units, in order.
fn units(cert: &Certificate) -> Result<Vec<String>, Refused> {
    let mut out = Vec::new();
    for atv in cert.tbs_certificate().subject().iter() {
        if atv.oid == rfc4519::OU {
            out.push(directory_string(&atv.value)?);
        }
    }
    Ok(out)
}

/// A name attribute's text: UTF8String or PrintableString (what CAs use);
/// the legacy T61 and BMP encodings are refused rather than guessed at.
fn directory_string(value: &x509_cert::der::Any) -> Result<String, Refused> {
    let text = match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
            std::str::from_utf8(value.value()).ok()
        }
        _ => None,
    };
    match text {
        Some(t) if !t.contains('\0') => Ok(t.to_owned()),
        _ => Err(Refused::Malformed(
            "a subject name attribute is not UTF-8 or printable text".into(),
        )),
    }
}

#[cfg(test)]
mod tests;
