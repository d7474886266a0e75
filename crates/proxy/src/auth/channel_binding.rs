//! `tls-server-end-point` channel binding data (RFC 5929 §4.1) for
//! SCRAM-SHA-256-PLUS.
//!
//! The binding is a hash of the server certificate exactly as sent in the TLS
//! handshake (DER). The hash function is the one the certificate's signature
//! algorithm uses, except that MD5 and SHA-1 are replaced by SHA-256.
//!
//! Only the certificate's outer `signatureAlgorithm` is needed, so instead of a
//! full X.509 parser this module has a tiny DER reader that walks
//!
//! ```text
//! Certificate ::= SEQUENCE {
//!     tbsCertificate      SEQUENCE,
//!     signatureAlgorithm  SEQUENCE { algorithm OID, parameters ANY OPTIONAL },
//!     signature           BIT STRING }
//! ```
//!
//! Every read is bounds-checked: malformed input yields an error, never a panic.
//!
//! Signature algorithms with no hash of their own (Ed25519, Ed448) have no
//! defined binding: RFC 5929 gives no rule and PostgreSQL's
//! `be_tls_get_certificate_hash` (and libpq's client side) fail for them. For
//! those, and for anything unknown, an error is returned and the caller must
//! not offer SCRAM-SHA-256-PLUS.
//!
//! RSASSA-PSS: the hash is taken from the PSS parameters (`hashAlgorithm`,
//! default SHA-1, which becomes SHA-256). SHA-1/SHA-256 give SHA-256,
//! SHA-224/384/512 give the same hash; an unrecognised hash is an error rather
//! than a guess. Caveat: OpenSSL-based peers (libpq, PostgreSQL itself) cannot
//! derive a digest from a PSS signature and fail channel binding for PSS
//! certificates, so offering PLUS with a PSS certificate can break libpq
//! clients that use `channel_binding=prefer` (the default); callers may want
//! to check [`signature_hash`] and disable PLUS for [`SignatureKind::RsaPss`].

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelBindingError {
    /// The certificate is not well-formed DER of the expected shape.
    #[error("malformed server certificate: {0}")]
    Malformed(&'static str),
    /// The signature algorithm has no tls-server-end-point hash (e.g. Ed25519)
    /// or is not known. Holds the algorithm's OID in dotted form.
    #[error("no tls-server-end-point channel binding for certificate signature algorithm {0}")]
    UnsupportedAlgorithm(String),
}

/// The hash function used for the binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha224 => Sha224::digest(data).to_vec(),
            HashAlgorithm::Sha256 => Sha256::digest(data).to_vec(),
            HashAlgorithm::Sha384 => Sha384::digest(data).to_vec(),
            HashAlgorithm::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// The family of the certificate's signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureKind {
    /// RSA PKCS#1 v1.5.
    Rsa,
    Ecdsa,
    Dsa,
    /// RSASSA-PSS (see the module docs for the libpq caveat).
    RsaPss,
}

/// The channel binding data for `tls-server-end-point`: the certificate's
/// hash under the rules of RFC 5929 §4.1. `cert_der` is the end-entity
/// certificate as sent to clients (the first one in the chain).
pub fn tls_server_end_point(cert_der: &[u8]) -> Result<Vec<u8>, ChannelBindingError> {
    let (_, hash) = signature_hash(cert_der)?;
    Ok(hash.digest(cert_der))
}

/// The certificate's signature algorithm family and the hash function that
/// tls-server-end-point uses for it.
pub fn signature_hash(
    cert_der: &[u8],
) -> Result<(SignatureKind, HashAlgorithm), ChannelBindingError> {
    let (oid, params) = signature_algorithm(cert_der)?;
    map_algorithm(oid, params)
}

// ---------------------------------------------------------------------------
// OIDs (DER content octets).

// PKCS#1: 1.2.840.113549.1.1.x
const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
// ecdsa-with-SHA1: 1.2.840.10045.4.1
const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
// ecdsa-with-SHA2 family: 1.2.840.10045.4.3.x
const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
// id-dsa-with-sha1: 1.2.840.10040.4.3
const DSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03];
// NIST sigAlgs: 2.16.840.1.101.3.4.3.x (dsa-with-sha224 = 1, dsa-with-sha256 = 2)
const NIST_SIG: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03];
// NIST hashAlgs: 2.16.840.1.101.3.4.2.x (sha256 = 1, sha384 = 2, sha512 = 3, sha224 = 4)
const NIST_HASH: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];
// OIW: sha1WithRSASignature 1.3.14.3.2.29, sha1 1.3.14.3.2.26
const OIW_SHA1_RSA: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1d];
const OIW_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];

fn suffix<'a>(oid: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    oid.strip_prefix(prefix)
}

fn map_algorithm(
    oid: &[u8],
    params: Option<Tlv<'_>>,
) -> Result<(SignatureKind, HashAlgorithm), ChannelBindingError> {
    use HashAlgorithm::*;
    use SignatureKind::*;
    let found = match oid {
        _ if oid == ECDSA_SHA1 => Some((Ecdsa, Sha256)),
        _ if oid == DSA_SHA1 => Some((Dsa, Sha256)),
        _ if oid == OIW_SHA1_RSA => Some((Rsa, Sha256)),
        _ => match (
            suffix(oid, PKCS1),
            suffix(oid, ECDSA_SHA2),
            suffix(oid, NIST_SIG),
        ) {
            // md2 (2) is deliberately absent: OpenSSL has no such digest either.
            (Some([0x04]), _, _) => Some((Rsa, Sha256)), // md5WithRSAEncryption
            (Some([0x05]), _, _) => Some((Rsa, Sha256)), // sha1WithRSAEncryption
            (Some([0x0b]), _, _) => Some((Rsa, Sha256)),
            (Some([0x0c]), _, _) => Some((Rsa, Sha384)),
            (Some([0x0d]), _, _) => Some((Rsa, Sha512)),
            (Some([0x0e]), _, _) => Some((Rsa, Sha224)),
            (Some([0x0a]), _, _) => return pss_hash(params).map(|h| (RsaPss, h)),
            (_, Some([0x01]), _) => Some((Ecdsa, Sha224)),
            (_, Some([0x02]), _) => Some((Ecdsa, Sha256)),
            (_, Some([0x03]), _) => Some((Ecdsa, Sha384)),
            (_, Some([0x04]), _) => Some((Ecdsa, Sha512)),
            (_, _, Some([0x01])) => Some((Dsa, Sha224)),
            (_, _, Some([0x02])) => Some((Dsa, Sha256)),
            _ => None,
        },
    };
    found.ok_or_else(|| ChannelBindingError::UnsupportedAlgorithm(oid_to_string(oid)))
}

/// The hash of RSASSA-PSS-params:
///
/// ```text
/// RSASSA-PSS-params ::= SEQUENCE {
///     hashAlgorithm    [0] EXPLICIT HashAlgorithm DEFAULT sha1,
///     maskGenAlgorithm [1] ..., saltLength [2] ..., trailerField [3] ... }
/// ```
fn pss_hash(params: Option<Tlv<'_>>) -> Result<HashAlgorithm, ChannelBindingError> {
    let malformed = ChannelBindingError::Malformed("bad RSASSA-PSS parameters");
    let params = match params {
        // Absent or NULL parameters: everything defaults, i.e. SHA-1.
        None => return Ok(HashAlgorithm::Sha256),
        Some(t) if t.tag == TAG_NULL => return Ok(HashAlgorithm::Sha256),
        Some(t) if t.tag == TAG_SEQUENCE => t.value,
        Some(_) => return Err(malformed),
    };
    let mut r = Reader::new(params);
    if r.is_empty() {
        return Ok(HashAlgorithm::Sha256);
    }
    let first = r.read()?;
    if first.tag != 0xa0 {
        // hashAlgorithm omitted: default SHA-1.
        return Ok(HashAlgorithm::Sha256);
    }
    let mut inner = Reader::new(first.value);
    let alg = inner.expect(TAG_SEQUENCE, "bad RSASSA-PSS hashAlgorithm")?;
    if !inner.is_empty() {
        return Err(malformed);
    }
    let mut alg = Reader::new(alg);
    let hash_oid = alg.expect(TAG_OID, "bad RSASSA-PSS hashAlgorithm")?;
    match (hash_oid, suffix(hash_oid, NIST_HASH)) {
        (o, _) if o == OIW_SHA1 => Ok(HashAlgorithm::Sha256),
        (_, Some([0x01])) => Ok(HashAlgorithm::Sha256),
        (_, Some([0x02])) => Ok(HashAlgorithm::Sha384),
        (_, Some([0x03])) => Ok(HashAlgorithm::Sha512),
        (_, Some([0x04])) => Ok(HashAlgorithm::Sha224),
        _ => Err(ChannelBindingError::UnsupportedAlgorithm(format!(
            "1.2.840.113549.1.1.10 (RSASSA-PSS with hash {})",
            oid_to_string(hash_oid)
        ))),
    }
}

/// Dotted form of an OID for error messages; hex if it does not decode.
fn oid_to_string(oid: &[u8]) -> String {
    fn dotted(oid: &[u8]) -> Option<String> {
        let mut arcs: Vec<u64> = Vec::new();
        let mut acc: u64 = 0;
        let mut in_arc = false;
        for &b in oid {
            if !in_arc && b == 0x80 {
                return None; // non-minimal encoding
            }
            acc = acc.checked_mul(128)?.checked_add(u64::from(b & 0x7f))?;
            in_arc = b & 0x80 != 0;
            if !in_arc {
                arcs.push(acc);
                acc = 0;
            }
        }
        if in_arc || arcs.is_empty() {
            return None;
        }
        let first = arcs[0];
        let (a, b) = match first {
            0..=39 => (0, first),
            40..=79 => (1, first - 40),
            _ => (2, first - 80),
        };
        let mut s = format!("{a}.{b}");
        for arc in &arcs[1..] {
            s.push('.');
            s.push_str(&arc.to_string());
        }
        Some(s)
    }
    // Keep error messages bounded even for absurd input.
    let shown = &oid[..oid.len().min(64)];
    dotted(shown).unwrap_or_else(|| {
        let mut s = String::from("0x");
        for b in shown {
            s.push_str(&format!("{b:02x}"));
        }
        s
    })
}

// ---------------------------------------------------------------------------
// A minimal DER reader.

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;
const TAG_NULL: u8 = 0x05;
const TAG_BIT_STRING: u8 = 0x03;

#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn byte(&mut self) -> Result<u8, ChannelBindingError> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or(ChannelBindingError::Malformed("truncated DER"))?;
        self.rest = rest;
        Ok(b)
    }

    fn read(&mut self) -> Result<Tlv<'a>, ChannelBindingError> {
        let tag = self.byte()?;
        if tag & 0x1f == 0x1f {
            return Err(ChannelBindingError::Malformed(
                "unsupported DER high tag number",
            ));
        }
        let first = self.byte()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(ChannelBindingError::Malformed(
                    "indefinite length is not DER",
                ));
            }
            if n > 4 {
                return Err(ChannelBindingError::Malformed("DER length too large"));
            }
            let mut len: usize = 0;
            for _ in 0..n {
                len = (len << 8) | usize::from(self.byte()?);
            }
            len
        };
        if len > self.rest.len() {
            return Err(ChannelBindingError::Malformed("truncated DER"));
        }
        let (value, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(Tlv { tag, value })
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], ChannelBindingError> {
        let tlv = self
            .read()
            .map_err(|_| ChannelBindingError::Malformed(what))?;
        if tlv.tag != tag {
            return Err(ChannelBindingError::Malformed(what));
        }
        Ok(tlv.value)
    }
}

/// The outer signatureAlgorithm: its OID and its parameters, if present.
fn signature_algorithm(cert: &[u8]) -> Result<(&[u8], Option<Tlv<'_>>), ChannelBindingError> {
    let mut outer = Reader::new(cert);
    let body = outer.expect(TAG_SEQUENCE, "not a DER certificate")?;
    if !outer.is_empty() {
        return Err(ChannelBindingError::Malformed(
            "trailing data after certificate",
        ));
    }
    let mut body = Reader::new(body);
    body.expect(TAG_SEQUENCE, "bad tbsCertificate")?;
    let alg = body.expect(TAG_SEQUENCE, "bad signatureAlgorithm")?;
    body.expect(TAG_BIT_STRING, "bad signature")?;
    if !body.is_empty() {
        return Err(ChannelBindingError::Malformed(
            "trailing data in certificate",
        ));
    }
    let mut alg = Reader::new(alg);
    let oid = alg.expect(TAG_OID, "bad signatureAlgorithm")?;
    if oid.is_empty() {
        return Err(ChannelBindingError::Malformed(
            "empty signature algorithm OID",
        ));
    }
    let params = if alg.is_empty() {
        None
    } else {
        Some(alg.read()?)
    };
    if !alg.is_empty() {
        return Err(ChannelBindingError::Malformed("bad signatureAlgorithm"));
    }
    Ok((oid, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER TLV with a correct length encoding.
    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(value);
        out
    }

    /// A certificate-shaped DER blob with the given algorithm identifier.
    fn fake_cert(oid: &[u8], params: Option<&[u8]>) -> Vec<u8> {
        let tbs = tlv(TAG_SEQUENCE, &tlv(0x02, &[0x01]));
        let mut alg = tlv(TAG_OID, oid);
        if let Some(p) = params {
            alg.extend_from_slice(p);
        }
        let alg = tlv(TAG_SEQUENCE, &alg);
        let sig = tlv(TAG_BIT_STRING, &[0x00, 0xaa, 0xbb]);
        tlv(TAG_SEQUENCE, &[tbs, alg, sig].concat())
    }

    fn pss_params(hash_oid: &[u8]) -> Vec<u8> {
        let hash_alg = tlv(
            TAG_SEQUENCE,
            &[tlv(TAG_OID, hash_oid), tlv(TAG_NULL, &[])].concat(),
        );
        let salt = tlv(0xa2, &tlv(0x02, &[0x20]));
        tlv(TAG_SEQUENCE, &[tlv(0xa0, &hash_alg), salt].concat())
    }

    fn oid(prefix: &[u8], last: u8) -> Vec<u8> {
        [prefix, &[last]].concat()
    }

    #[test]
    fn maps_signature_algorithms() {
        use HashAlgorithm::*;
        let null = tlv(TAG_NULL, &[]);
        type Case = (Vec<u8>, Option<Vec<u8>>, SignatureKind, HashAlgorithm);
        let cases: Vec<Case> = vec![
            (
                oid(PKCS1, 0x04),
                Some(null.clone()),
                SignatureKind::Rsa,
                Sha256,
            ), // md5
            (
                oid(PKCS1, 0x05),
                Some(null.clone()),
                SignatureKind::Rsa,
                Sha256,
            ), // sha1
            (
                oid(PKCS1, 0x0b),
                Some(null.clone()),
                SignatureKind::Rsa,
                Sha256,
            ),
            (
                oid(PKCS1, 0x0c),
                Some(null.clone()),
                SignatureKind::Rsa,
                Sha384,
            ),
            (
                oid(PKCS1, 0x0d),
                Some(null.clone()),
                SignatureKind::Rsa,
                Sha512,
            ),
            (
                oid(PKCS1, 0x0e),
                Some(null.clone()),
                SignatureKind::Rsa,
                Sha224,
            ),
            (
                OIW_SHA1_RSA.to_vec(),
                Some(null.clone()),
                SignatureKind::Rsa,
                Sha256,
            ),
            (ECDSA_SHA1.to_vec(), None, SignatureKind::Ecdsa, Sha256),
            (oid(ECDSA_SHA2, 1), None, SignatureKind::Ecdsa, Sha224),
            (oid(ECDSA_SHA2, 2), None, SignatureKind::Ecdsa, Sha256),
            (oid(ECDSA_SHA2, 3), None, SignatureKind::Ecdsa, Sha384),
            (oid(ECDSA_SHA2, 4), None, SignatureKind::Ecdsa, Sha512),
            (DSA_SHA1.to_vec(), None, SignatureKind::Dsa, Sha256),
            (oid(NIST_SIG, 2), None, SignatureKind::Dsa, Sha256),
            // RSASSA-PSS: defaults, explicit hashes.
            (oid(PKCS1, 0x0a), None, SignatureKind::RsaPss, Sha256),
            (
                oid(PKCS1, 0x0a),
                Some(null.clone()),
                SignatureKind::RsaPss,
                Sha256,
            ),
            (
                oid(PKCS1, 0x0a),
                Some(tlv(TAG_SEQUENCE, &[])),
                SignatureKind::RsaPss,
                Sha256,
            ),
            (
                oid(PKCS1, 0x0a),
                Some(pss_params(OIW_SHA1)),
                SignatureKind::RsaPss,
                Sha256,
            ),
            (
                oid(PKCS1, 0x0a),
                Some(pss_params(&oid(NIST_HASH, 1))),
                SignatureKind::RsaPss,
                Sha256,
            ),
            (
                oid(PKCS1, 0x0a),
                Some(pss_params(&oid(NIST_HASH, 2))),
                SignatureKind::RsaPss,
                Sha384,
            ),
            (
                oid(PKCS1, 0x0a),
                Some(pss_params(&oid(NIST_HASH, 3))),
                SignatureKind::RsaPss,
                Sha512,
            ),
        ];
        for (oid, params, kind, hash) in cases {
            let der = fake_cert(&oid, params.as_deref());
            assert_eq!(
                signature_hash(&der),
                Ok((kind, hash)),
                "{}",
                oid_to_string(&oid)
            );
            assert_eq!(tls_server_end_point(&der).unwrap(), hash.digest(&der));
        }
    }

    #[test]
    fn rejects_algorithms_without_a_hash() {
        // Ed25519 1.3.101.112, Ed448 1.3.101.113, md2WithRSA, an unknown OID.
        for (oid, name) in [
            (&[0x2b, 0x65, 0x70][..], "1.3.101.112"),
            (&[0x2b, 0x65, 0x71][..], "1.3.101.113"),
            (
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x02][..],
                "1.2.840.113549.1.1.2",
            ),
            (&[0x2a, 0x03, 0x04][..], "1.2.3.4"),
        ] {
            let der = fake_cert(oid, None);
            match tls_server_end_point(&der) {
                Err(ChannelBindingError::UnsupportedAlgorithm(s)) => assert_eq!(s, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        // PSS with a hash we do not know (SHA3-256, 2.16.840.1.101.3.4.2.8).
        let der = fake_cert(&oid(PKCS1, 0x0a), Some(&pss_params(&oid(NIST_HASH, 8))));
        assert!(matches!(
            tls_server_end_point(&der),
            Err(ChannelBindingError::UnsupportedAlgorithm(_))
        ));
    }

    // Real certificates, base64 DER. The ECDSA and Ed25519 ones were made with
    // rcgen 0.13 (ring), the RSA-PSS one with
    // `openssl req -x509 -newkey rsa:1024 -sha384 -sigopt rsa_padding_mode:pss`;
    // the expected hashes come from `openssl dgst`.
    /// ecdsa-with-SHA256, P-256.
    const CERT_P256_SHA256: &[&str] = &[
        "MIIBTjCB9qADAgECAhRn4NB+E+wAgy9R3ckOwd9onhzEkzAKBggqhkjOPQQDAjAaMRgwFgYDVQQD",
        "DA9wb3J0Y3VsbGlzIHRlc3QwIBcNNzUwMTAxMDAwMDAwWhgPNDA5NjAxMDEwMDAwMDBaMBoxGDAW",
        "BgNVBAMMD3BvcnRjdWxsaXMgdGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABDY0quR1N26Z",
        "CVGSRLGLdLZtsu9EMS9G23AsZraDVEPrqVOF8EKEhlL5zKgaGTu2uJD6jxl0S7V8YPY6QFKbjl6j",
        "GDAWMBQGA1UdEQQNMAuCCWxvY2FsaG9zdDAKBggqhkjOPQQDAgNHADBEAiBUfFN+Bt7VhS4pIDxn",
        "d0jQMPWjJRQ0gi4O5ws+mzmwqAIgQ91jRQ7eFJOpK/ea8fX3DD9cEmy2KgTzy2o8CAcrwDQ=",
    ];
    /// ecdsa-with-SHA384, P-384.
    const CERT_P384_SHA384: &[&str] = &[
        "MIIBjjCCAROgAwIBAgIUNEPH6hknnYPgTpFRDgpAxv4drOcwCgYIKoZIzj0EAwMwGjEYMBYGA1UE",
        "AwwPcG9ydGN1bGxpcyB0ZXN0MCAXDTc1MDEwMTAwMDAwMFoYDzQwOTYwMTAxMDAwMDAwWjAaMRgw",
        "FgYDVQQDDA9wb3J0Y3VsbGlzIHRlc3QwdjAQBgcqhkjOPQIBBgUrgQQAIgNiAAT2DSZQkE3ZjnoD",
        "XnOanGHeNNKED2c/GcXFWC/jUZ3pZ8SUM/1r3SLrqEiTqmYy/XUBRwUlstE+HBaZQOFHaJADZAjf",
        "7KJHbimIaUIMsJmdbPlx7yQpxv+9VvBFlDZ0jBWjGDAWMBQGA1UdEQQNMAuCCWxvY2FsaG9zdDAK",
        "BggqhkjOPQQDAwNpADBmAjEAkg0M5+l6YK1/z0QlwCjFI5/FgtxdzfvRO+mWdi1ermvxY2bW5fju",
        "5mfwq+SECaRKAjEAzP7hmPPQuYf7/WelhUDjLTRk/7kBLm9EzOIhhSs4IfEr4KcFIU9d+jT19z++",
        "ZuwJ",
    ];
    /// Ed25519.
    const CERT_ED25519: &[&str] = &[
        "MIIBDzCBwqADAgECAhRkU6nM9qPgmaoTeYAiojMe4j9H5zAFBgMrZXAwGjEYMBYGA1UEAwwPcG9y",
        "dGN1bGxpcyB0ZXN0MCAXDTc1MDEwMTAwMDAwMFoYDzQwOTYwMTAxMDAwMDAwWjAaMRgwFgYDVQQD",
        "DA9wb3J0Y3VsbGlzIHRlc3QwKjAFBgMrZXADIQATcLKx9a3WsEyuwVeHK3Z/scvIqgCA2TPqmffd",
        "HHPLwqMYMBYwFAYDVR0RBA0wC4IJbG9jYWxob3N0MAUGAytlcANBAJmYrBQKVkTTsHEwgeYc2eLR",
        "AtD37DcvmwX4qz9l5RTPnBqeN5nnwnXlZpnGtJW2ktNS3k/EdP6zmfUXwNyPTA0=",
    ];
    /// RSASSA-PSS, hash SHA-384, MGF1-SHA-384, salt 32.
    const CERT_PSS_SHA384: &[&str] = &[
        "MIICYDCCAZWgAwIBAgIUOtr/zKdavo+w+5FRmYBCBxw4ez8wQQYJKoZIhvcNAQEKMDSgDzANBglg",
        "hkgBZQMEAgIFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgIFAKIDAgEgMA4xDDAKBgNVBAMM",
        "A3BzczAeFw0yNjExMjEwNjA4NTlaFw0zNjExMTgwNjA4NTlaMA4xDDAKBgNVBAMMA3BzczCBnzAN",
        "BgkqhkiG9w0BAQEFAAOBjQAwgYkCgYEAv/TkKjmebvDvUnkUJOVlDCR1vepkYM7gNRR+pi3GIKOS",
        "CKnLLaO1Ypz2AIfayjVP+QeeQ3jnSNS2XY6/1GGzD/PVpMfljbMIBPm77vFlPvxb7JBK3Qy7ICc+",
        "fmGD30aDyjv0MHkUl+JFVHKTgsM3kVa1YC/JahwsXyjriqYzUNcCAwEAAaNTMFEwHQYDVR0OBBYE",
        "FMMkvy+IRX+ykGZB8jlyzwAUv26/MB8GA1UdIwQYMBaAFMMkvy+IRX+ykGZB8jlyzwAUv26/MA8G",
        "A1UdEwEB/wQFMAMBAf8wQQYJKoZIhvcNAQEKMDSgDzANBglghkgBZQMEAgIFAKEcMBoGCSqGSIb3",
        "DQEBCDANBglghkgBZQMEAgIFAKIDAgEgA4GBABMwlemxDEpyUpkp+FH2r8hG7Yua++RRIhkp+ZmM",
        "I4ydACI6jontWFclApdy98IKoRvn2tp6zhvyONeldyzlt3MVcrkwVy2k80uKjQsp+1bW3sFggL9b",
        "wVOifF25E07N54blc0FIVsBd27mWHzquyUDSjqv3ir4q8u8p+uNQ17bj",
    ];

    fn der(b64: &[&str]) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(b64.concat())
            .unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn real_certificates() {
        let cases = [
            (
                der(CERT_P256_SHA256),
                (SignatureKind::Ecdsa, HashAlgorithm::Sha256),
                "98fab279298035351ce15aeb1a1b520719a8eaca534484f8582bf4bc5b9d04f8",
            ),
            (
                der(CERT_P384_SHA384),
                (SignatureKind::Ecdsa, HashAlgorithm::Sha384),
                "783decec6b159a9d0fb677b58922857e7f237005b56ceab3c08b5bb6983afd17\
                 0a125e607459bfc867d60a3359b0f500",
            ),
            (
                der(CERT_PSS_SHA384),
                (SignatureKind::RsaPss, HashAlgorithm::Sha384),
                "e8a50b7f6c974330086a2d065d636116cdeb96f5f4e6dc0c6b0c13ab7a4aaf6d\
                 aed9e443b58038b90eb469f9b15404f9",
            ),
        ];
        for (cert, expected, hash) in cases {
            assert_eq!(signature_hash(&cert), Ok(expected));
            assert_eq!(hex(&tls_server_end_point(&cert).unwrap()), hash);
        }
        // Ed25519: no binding, so the caller disables SCRAM-SHA-256-PLUS.
        assert_eq!(
            tls_server_end_point(&der(CERT_ED25519)),
            Err(ChannelBindingError::UnsupportedAlgorithm(
                "1.3.101.112".into()
            ))
        );
    }

    #[test]
    fn malformed_input_never_panics() {
        let good = fake_cert(&oid(ECDSA_SHA2, 2), None);
        assert!(tls_server_end_point(&good).is_ok());
        // Every truncation fails cleanly.
        for n in 0..good.len() {
            assert!(
                tls_server_end_point(&good[..n]).is_err(),
                "truncated to {n}"
            );
        }
        // Trailing data is rejected.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(tls_server_end_point(&trailing).is_err());
        // Hand-picked hostile encodings.
        for bad in [
            &[][..],
            &[0x30][..],
            &[0x30, 0x80, 0x00, 0x00][..],    // indefinite length
            &[0x30, 0x85, 1, 0, 0, 0, 0][..], // length of length too big
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..], // length beyond input
            &[0x1f, 0x81, 0x00][..],          // high tag number
            &[0x30, 0x02, 0x30, 0x00][..],    // no signatureAlgorithm
            &[0x30, 0x06, 0x30, 0x00, 0x30, 0x00, 0x03, 0x00][..], // empty algorithm
        ] {
            assert!(tls_server_end_point(bad).is_err(), "{bad:02x?}");
        }
        // Bit flips and random garbage (xorshift, deterministic).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut m = good.clone();
            let i = next() as usize % m.len();
            m[i] ^= (next() as u8) | 1;
            let _ = tls_server_end_point(&m);
            let len = next() as usize % 80;
            let garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = tls_server_end_point(&garbage);
            // Garbage that at least starts like a certificate.
            let _ = tls_server_end_point(&tlv(TAG_SEQUENCE, &garbage));
        }
        // OID rendering is total too.
        for o in [
            &[][..],
            &[0x80][..],
            &[0xff; 80][..],
            &[0x2b, 0x80, 0x01][..],
        ] {
            let _ = oid_to_string(o);
        }
    }
}
