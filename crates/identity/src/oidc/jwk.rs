//! Signing keys from an issuer's JWKS (RFC 7517), and verifying a
//! signature with one. Each algorithm is tied to the one key type it may
//! use, so a token cannot pick how its own signature is checked: `none`
//! and the HMAC family are never accepted (an HMAC "signed" with the
//! issuer's public key is the classic confusion), an RSA key never checks
//! an ECDSA signature, a P-256 key never an ES384 one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use super::TokenError;

/// The signature algorithms Portcullis can verify (and an issuer may be
/// allowed), by their JOSE names.
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Smallest RSA modulus accepted, in bits (ring's own floor too).
const MIN_RSA_BITS: usize = 2048;

/// One public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it names one: the key then checks only
    /// that algorithm.
    pub alg: Option<String>,
    pub key: PublicKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (0x04 || x || y).
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// A key set as fetched; keys of types Portcullis does not verify with
/// (encryption keys, unknown curves) are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS document. Malformed individual keys are skipped (a
    /// provider may publish key types this does not know); a document
    /// that is not a JWKS is an error.
    pub fn parse(json: &[u8]) -> Result<Jwks, &'static str> {
        let doc: Value = serde_json::from_slice(json).map_err(|_| "not JSON")?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no \"keys\" array")?;
        Ok(Jwks {
            keys: keys.iter().filter_map(jwk).collect(),
        })
    }

    /// The key that may check a signature by `alg` with key id `kid`.
    /// With a kid, only the key of that id; without one, the single key
    /// that fits the algorithm (more than one is ambiguous: refused).
    pub fn select(&self, alg: &str, kid: Option<&str>) -> Result<&Jwk, TokenError> {
        let fits = |k: &&Jwk| k.fits(alg);
        match kid {
            Some(kid) => {
                let k = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or(TokenError::UnknownKey)?;
                if fits(&k) {
                    Ok(k)
                } else {
                    Err(TokenError::KeyMismatch)
                }
            }
            None => {
                let mut it = self.keys.iter().filter(fits);
                match (it.next(), it.next()) {
                    (Some(k), None) => Ok(k),
                    (None, _) => Err(TokenError::UnknownKey),
                    (Some(_), Some(_)) => Err(TokenError::Malformed(
                        "no kid, and several keys fit the algorithm",
                    )),
                }
            }
        }
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

impl Jwk {
    /// Whether this key may verify `alg`.
    pub fn fits(&self, alg: &str) -> bool {
        if self.alg.as_deref().is_some_and(|a| a != alg) {
            return false;
        }
        matches!(
            (alg, &self.key),
            (
                "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512",
                PublicKey::Rsa { .. }
            ) | ("ES256", PublicKey::P256(_))
                | ("ES384", PublicKey::P384(_))
                | ("EdDSA", PublicKey::Ed25519(_))
        )
    }

    /// Checks `sig` over `msg` by `alg` with this key.
    pub fn verify(&self, alg: &str, msg: &[u8], sig: &[u8]) -> Result<(), TokenError> {
        if !self.fits(alg) {
            return Err(TokenError::KeyMismatch);
        }
        let ok = match &self.key {
            PublicKey::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                    "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                    "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                    "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(TokenError::KeyMismatch),
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
            PublicKey::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            PublicKey::P384(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            PublicKey::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(msg, sig)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }
}

fn b64(v: &Value, field: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(v.get(field)?.as_str()?).ok()
}

fn jwk(v: &Value) -> Option<Jwk> {
    // A key published for encryption never checks a signature.
    if v.get("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = v.get("key_ops").and_then(Value::as_array) {
        if !ops.iter().any(|o| o == "verify") {
            return None;
        }
    }
    let key = match v.get("kty")?.as_str()? {
        "RSA" => {
            let n = strip_zeros(b64(v, "n")?);
            let e = strip_zeros(b64(v, "e")?);
            if n.len() * 8 < MIN_RSA_BITS || e.is_empty() {
                return None;
            }
            PublicKey::Rsa { n, e }
        }
        "EC" => {
            let (x, y) = (b64(v, "x")?, b64(v, "y")?);
            let (size, make): (usize, fn(Vec<u8>) -> PublicKey) = match v.get("crv")?.as_str()? {
                "P-256" => (32, PublicKey::P256),
                "P-384" => (48, PublicKey::P384),
                _ => return None,
            };
            if x.len() != size || y.len() != size {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            make(point)
        }
        "OKP" if v.get("crv")? == "Ed25519" => {
            let x = b64(v, "x")?;
            if x.len() != 32 {
                return None;
            }
            PublicKey::Ed25519(x)
        }
        _ => return None,
    };
    Some(Jwk {
        kid: v.get("kid").and_then(Value::as_str).map(str::to_owned),
        alg: v.get("alg").and_then(Value::as_str).map(str::to_owned),
        key,
    })
}

/// Big-endian integers may come with leading zero bytes; ring wants none.
fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..zeros);
    v
}
