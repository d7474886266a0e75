//! Bind parameter handling: what may stand in a record for a value.
//!
//! A raw value never reaches a record. [`ParamDigest`] can only be made by
//! a [`ParamHasher`] (HMAC-SHA256 under a configured key) and, when read
//! back, must be 64 hex digits; [`MaskedParam`] is made by the caller from
//! the masking rules' output, and its constructor's name is that promise.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hex;
use crate::record::BindParams;
use crate::AuditError;

type HmacSha256 = Hmac<Sha256>;

/// Domain tag for key ids, so a key id never equals a hash of anything else.
const KEY_ID_TAG: &[u8] = b"portcullis-audit/v1/param-key-id\0";

/// HMAC-SHA256 of one parameter value, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParamDigest(String);

impl ParamDigest {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ParamDigest {
    type Error = AuditError;
    fn try_from(s: String) -> Result<Self, AuditError> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            Ok(ParamDigest(s))
        } else {
            Err(AuditError::InvalidField {
                field: "params.values",
                why: "a keyed hash is 64 lower-case hex digits",
            })
        }
    }
}

impl From<ParamDigest> for String {
    fn from(d: ParamDigest) -> String {
        d.0
    }
}

/// A parameter value as the masking rules rendered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaskedParam(String);

impl MaskedParam {
    /// `masked` must be the output of a masking strategy, never the value.
    pub fn from_masked(masked: impl Into<String>) -> Self {
        MaskedParam(masked.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Makes keyed hashes of parameter values. The key comes from
/// configuration; its id (a hash of the key, not the key) is stored with
/// the digests so an auditor knows which key to test values against.
#[derive(Clone)]
pub struct ParamHasher {
    mac: HmacSha256,
    key_id: String,
}

impl std::fmt::Debug for ParamHasher {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamHasher")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl ParamHasher {
    /// A key shorter than 16 bytes is refused: a short key makes the hashes
    /// of small values (PINs, ids) easy to reverse by trying them all.
    pub fn new(key: &[u8]) -> Result<Self, AuditError> {
        if key.len() < 16 {
            return Err(AuditError::InvalidField {
                field: "param_hash_key",
                why: "the parameter hashing key must be at least 16 bytes",
            });
        }
        let mac =
            <HmacSha256 as KeyInit>::new_from_slice(key).map_err(|_| AuditError::InvalidField {
                field: "param_hash_key",
                why: "unusable HMAC key",
            })?;
        let mut id = Sha256::new();
        id.update(KEY_ID_TAG);
        id.update(key);
        let key_id = hex::encode(&id.finalize()[..8]);
        Ok(ParamHasher { mac, key_id })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn digest(&self, value: &[u8]) -> ParamDigest {
        let mut mac = self.mac.clone();
        mac.update(value);
        ParamDigest(hex::encode(&mac.finalize().into_bytes()))
    }

    /// The record form of a statement's parameters (`None` is NULL).
    pub fn hash_all<'a>(&self, values: impl IntoIterator<Item = Option<&'a [u8]>>) -> BindParams {
        BindParams::KeyedHash {
            key_id: self.key_id.clone(),
            values: values
                .into_iter()
                .map(|v| v.map(|v| self.digest(v)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_keyed_and_stable() {
        let a = ParamHasher::new(b"0123456789abcdef-key-a").unwrap();
        let b = ParamHasher::new(b"0123456789abcdef-key-b").unwrap();
        assert_eq!(a.digest(b"4111111111111111"), a.digest(b"4111111111111111"));
        assert_ne!(a.digest(b"4111111111111111"), b.digest(b"4111111111111111"));
        assert_ne!(a.key_id(), b.key_id());
        assert_eq!(a.digest(b"x").as_str().len(), 64);
    }

    #[test]
    fn short_key_refused() {
        assert!(ParamHasher::new(b"short").is_err());
    }

    #[test]
    fn raw_value_cannot_be_read_back_as_digest() {
        let err = serde_json::from_str::<ParamDigest>("\"4111111111111111\"");
        assert!(err.is_err());
    }

    #[test]
    fn debug_hides_key() {
        let h = ParamHasher::new(b"super-secret-key-material").unwrap();
        assert!(!format!("{h:?}").contains("secret"));
    }
}
