//! Signed checkpoints: a log's size and head hash, signed with Ed25519.
//!
//! A checkpoint states "log L had `size` records and the last one hashed to
//! `head` at time `ts`". The signed bytes are
//!
//! ```text
//! "portcullis-audit/v1/checkpoint\0" || {"head":"<hex>","log":"<id>","size":<n>,"ts":<µs>}
//! ```
//!
//! (canonical JSON, see [`crate::canonical`]). Whoever can edit the store can
//! recompute hashes, but not signatures: a checkpoint vouches for every
//! record up to `size`. Records after the last checkpoint are vouched for by
//! nothing yet, which is why checkpoints are written every N records or T
//! seconds ([`CheckpointPolicy`]) and why an exported checkpoint kept
//! elsewhere (a SIEM, an evidence bundle) bounds what an attacker with the
//! store and without the key could truncate.
//!
//! Keys: a PKCS#8 document (DER, or PEM `PRIVATE KEY`) or a raw 32-byte
//! seed (binary or 64 hex digits). Signing and verification use `ring`,
//! already in the tree through rustls.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chain::{Hash, Head, LogId};
use crate::{canonical, hex, AuditError};

pub const CHECKPOINT_TAG: &[u8] = b"portcullis-audit/v1/checkpoint\0";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the public key
/// file `openssl pkey -pubin` reads is this followed by the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub log: LogId,
    pub size: u64,
    pub head: Hash,
    pub ts: i64,
    /// Which key signed (see [`PublicKey::key_id`]).
    pub key_id: String,
    /// Ed25519 signature, base64 (standard alphabet, padded).
    pub signature: String,
}

#[derive(Serialize)]
struct Statement<'a> {
    head: &'a Hash,
    log: &'a LogId,
    size: u64,
    ts: i64,
}

fn statement(log: &LogId, size: u64, head: &Hash, ts: i64) -> Vec<u8> {
    let mut out = CHECKPOINT_TAG.to_vec();
    // The statement has no floats, so encoding cannot fail.
    let body = canonical::encode(&Statement {
        head,
        log,
        size,
        ts,
    })
    .unwrap_or_default();
    out.extend_from_slice(&body);
    out
}

/// When to write the next checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub every_records: u64,
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every_records: 10_000,
            every: Duration::from_secs(30),
        }
    }
}

impl CheckpointPolicy {
    /// Due when records have been added since the last checkpoint and
    /// either threshold is reached.
    pub fn due(&self, records_since: u64, elapsed: Duration) -> bool {
        records_since > 0 && (records_since >= self.every_records || elapsed >= self.every)
    }
}

/// The private half. Its `Debug` prints the key id only.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl SigningKey {
    /// A new key as a PKCS#8 v2 DER document, for `portcullis audit keygen`.
    pub fn generate_pkcs8() -> Result<Vec<u8>, AuditError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| AuditError::Key("could not generate a key".into()))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, AuditError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| AuditError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(Self::wrap(pair))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, AuditError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| AuditError::Key(format!("bad seed: {e}")))?;
        Ok(Self::wrap(pair))
    }

    /// Reads a key file: PEM or DER PKCS#8, or a seed (32 bytes, or 64 hex
    /// digits with optional surrounding whitespace).
    pub fn from_file(path: &Path) -> Result<Self, AuditError> {
        let bytes = std::fs::read(path).map_err(|source| AuditError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_key_bytes(&bytes)
    }

    pub fn from_key_bytes(bytes: &[u8]) -> Result<Self, AuditError> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            let text = text.trim();
            if let Some(der) = pem_body(text, "PRIVATE KEY") {
                return Self::from_pkcs8(&der);
            }
            if let Some(seed) = hex::decode::<32>(text) {
                return Self::from_seed(&seed);
            }
        }
        if let Ok(seed) = <[u8; 32]>::try_from(bytes) {
            return Self::from_seed(&seed);
        }
        Self::from_pkcs8(bytes)
    }

    fn wrap(pair: Ed25519KeyPair) -> Self {
        let key_id = key_id(pair.public_key().as_ref());
        SigningKey { pair, key_id }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(raw)
    }

    /// Signs the chain's head as of `ts`.
    pub fn checkpoint(&self, head: &Head, ts: i64) -> Checkpoint {
        let sig = self
            .pair
            .sign(&statement(&head.log, head.size, &head.hash, ts));
        Checkpoint {
            log: head.log.clone(),
            size: head.size,
            head: head.hash,
            ts,
            key_id: self.key_id.clone(),
            signature: base64::engine::general_purpose::STANDARD.encode(sig.as_ref()),
        }
    }
}

/// The public half, as an auditor holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn key_id(&self) -> String {
        key_id(&self.0)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo), readable by OpenSSL.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    /// Reads the PEM form, the base64 of the raw 32 bytes, or 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, AuditError> {
        let text = text.trim();
        let raw: Vec<u8> = if let Some(der) = pem_body(text, "PUBLIC KEY") {
            der.strip_prefix(&SPKI_PREFIX[..])
                .ok_or_else(|| AuditError::Key("not an Ed25519 public key".into()))?
                .to_vec()
        } else if let Some(h) = hex::decode::<32>(text) {
            h.to_vec()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| AuditError::Key("public key is not PEM, hex or base64".into()))?
        };
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| AuditError::Key("an Ed25519 public key is 32 bytes".into()))?;
        Ok(PublicKey(raw))
    }

    /// Checks the checkpoint's signature over its log, size, head and time.
    pub fn verify(&self, cp: &Checkpoint) -> bool {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(&cp.signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&statement(&cp.log, cp.size, &cp.head, cp.ts), &sig)
            .is_ok()
    }
}

fn key_id(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let inner = text.strip_prefix(&begin)?.trim_end().strip_suffix(&end)?;
    let joined: String = inner.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;

    fn head() -> Head {
        let mut c = Chain::resume(Head::empty(LogId::new("log")));
        c.append(1, b"{}");
        c.head().clone()
    }

    #[test]
    fn sign_and_verify() {
        let key = SigningKey::from_seed(&[9u8; 32]).unwrap();
        let cp = key.checkpoint(&head(), 77);
        assert!(key.public_key().verify(&cp));
        assert_eq!(cp.key_id, key.public_key().key_id());

        for tampered in [
            Checkpoint {
                size: 2,
                ..cp.clone()
            },
            Checkpoint {
                ts: 78,
                ..cp.clone()
            },
            Checkpoint {
                log: LogId::new("other"),
                ..cp.clone()
            },
            Checkpoint {
                head: Hash([0; 32]),
                ..cp.clone()
            },
            Checkpoint {
                signature: "!!".into(),
                ..cp.clone()
            },
        ] {
            assert!(!key.public_key().verify(&tampered), "{tampered:?}");
        }
        let other = SigningKey::from_seed(&[8u8; 32]).unwrap();
        assert!(!other.public_key().verify(&cp));
    }

    #[test]
    fn key_formats() {
        let der = SigningKey::generate_pkcs8().unwrap();
        let k1 = SigningKey::from_key_bytes(&der).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        let k2 = SigningKey::from_key_bytes(pem.as_bytes()).unwrap();
        assert_eq!(k1.public_key(), k2.public_key());

        let seed = [3u8; 32];
        let k3 = SigningKey::from_key_bytes(&seed).unwrap();
        let k4 =
            SigningKey::from_key_bytes(format!("{}\n", hex::encode(&seed)).as_bytes()).unwrap();
        assert_eq!(k3.public_key(), k4.public_key());

        let pk = k1.public_key();
        assert_eq!(PublicKey::parse(&pk.to_pem()).unwrap(), pk);
        assert_eq!(PublicKey::parse(&pk.to_base64()).unwrap(), pk);
        assert!(SigningKey::from_key_bytes(b"not a key").is_err());
    }

    #[test]
    fn policy_due() {
        let p = CheckpointPolicy {
            every_records: 3,
            every: Duration::from_secs(5),
        };
        assert!(!p.due(0, Duration::from_secs(60)));
        assert!(!p.due(2, Duration::from_secs(1)));
        assert!(p.due(3, Duration::ZERO));
        assert!(p.due(1, Duration::from_secs(5)));
    }
}
