//! The hash chain. Pure: no I/O, no clock.
//!
//! Every record is wrapped in an envelope (see [`crate::canonical::entry`]):
//!
//! ```text
//! {"log":"<log id>","prev":"<hex hash of seq-1>","record":{…},"seq":<n>,"ts":<µs since epoch>,"v":1}
//! ```
//!
//! and its hash is
//!
//! ```text
//! hash(n) = SHA-256("portcullis-audit/v1/entry\0" || envelope bytes)
//! ```
//!
//! Sequence numbers start at 1 and have no gaps, so a log's *size* is the
//! seq of its last record. The first record's `prev` is the genesis hash
//! `SHA-256("portcullis-audit/v1/genesis\0" || log id)`, which ties record 1
//! to its log: a record cannot be moved to another log, or a log's start
//! be replaced by another's, without breaking the chain.
//!
//! The domain-separation tags make an entry hash, a genesis hash and a
//! checkpoint statement ([`crate::checkpoint`]) impossible to confuse with
//! one another even if their bytes coincided.
//!
//! `ts` is when the caller submitted the record (the event's time), in
//! microseconds since the Unix epoch. Records from concurrent sessions may
//! reach the chain in an order their timestamps do not follow exactly: seq
//! is the order of the log, ts the time of the event.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::{self, EnvelopeFields};
use crate::hex;

/// The envelope format version.
pub const FORMAT_VERSION: u32 = 1;
pub const ENTRY_TAG: &[u8] = b"portcullis-audit/v1/entry\0";
pub const GENESIS_TAG: &[u8] = b"portcullis-audit/v1/genesis\0";

/// A SHA-256 hash, hex in text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl TryFrom<String> for Hash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        hex::decode::<32>(&s)
            .map(Hash)
            .ok_or_else(|| "a hash is 64 hex digits".to_owned())
    }
}

impl From<Hash> for String {
    fn from(h: Hash) -> String {
        h.to_hex()
    }
}

/// A log's identity: chosen at random when a store is created, kept for
/// its life (and across rotated segments).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LogId(String);

impl LogId {
    pub fn new(id: impl Into<String>) -> Self {
        LogId(id.into())
    }

    pub fn random() -> Self {
        let bytes: [u8; 16] = rand::random();
        LogId(hex::encode(&bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn genesis(log: &LogId) -> Hash {
    let mut h = Sha256::new();
    h.update(GENESIS_TAG);
    h.update(log.as_str().as_bytes());
    Hash(h.finalize().into())
}

/// The hash of an envelope's canonical bytes, exactly as stored.
pub fn entry_hash(envelope: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(ENTRY_TAG);
    h.update(envelope);
    Hash(h.finalize().into())
}

/// The end of a chain: how many records it holds and the hash of the last
/// (the genesis hash when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub log: LogId,
    pub size: u64,
    pub hash: Hash,
}

impl Head {
    pub fn empty(log: LogId) -> Self {
        let hash = genesis(&log);
        Head { log, size: 0, hash }
    }
}

/// A record sealed into the chain: its seq, its hash and the envelope bytes
/// that hash covers (which is what a store keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub seq: u64,
    pub ts_micros: i64,
    pub hash: Hash,
    pub envelope: Vec<u8>,
}

/// The chain as the writer holds it.
#[derive(Debug, Clone)]
pub struct Chain {
    head: Head,
}

impl Chain {
    /// Continues the chain from `head` (a new log starts from
    /// [`Head::empty`]).
    pub fn resume(head: Head) -> Self {
        Chain { head }
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Seals the next record, given its canonical bytes.
    pub fn append(&mut self, ts_micros: i64, record: &[u8]) -> Sealed {
        let seq = self.head.size + 1;
        let envelope = canonical::entry(
            &EnvelopeFields {
                log: self.head.log.as_str(),
                prev: &self.head.hash.0,
                seq,
                ts_micros,
                version: FORMAT_VERSION,
            },
            record,
        );
        let hash = entry_hash(&envelope);
        self.head.size = seq;
        self.head.hash = hash;
        Sealed {
            seq,
            ts_micros,
            hash,
            envelope,
        }
    }
}

/// The envelope fields a verifier reads back; the record itself is
/// skipped, so verification does not depend on this version's record model.
#[derive(Debug, Clone, Deserialize)]
pub struct EnvelopeHeader {
    pub v: u32,
    pub log: LogId,
    pub seq: u64,
    pub ts: i64,
    pub prev: Hash,
}

impl EnvelopeHeader {
    pub fn parse(envelope: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(envelope)
    }
}

/// A stored envelope read back whole.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub v: u32,
    pub log: LogId,
    pub seq: u64,
    pub ts: i64,
    pub prev: Hash,
    pub record: crate::Record,
}

impl Entry {
    pub fn parse(envelope: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_links_and_counts() {
        let log = LogId::new("test-log");
        let mut chain = Chain::resume(Head::empty(log.clone()));
        let a = chain.append(10, br#"{"type":"x"}"#);
        let b = chain.append(11, br#"{"type":"y"}"#);
        assert_eq!((a.seq, b.seq), (1, 2));
        let ha = EnvelopeHeader::parse(&a.envelope).unwrap();
        let hb = EnvelopeHeader::parse(&b.envelope).unwrap();
        assert_eq!(ha.prev, genesis(&log));
        assert_eq!(hb.prev, a.hash);
        assert_eq!(entry_hash(&b.envelope), b.hash);
        assert_eq!(chain.head().size, 2);
        assert_eq!(chain.head().hash, b.hash);
    }

    #[test]
    fn resume_continues_identically() {
        let log = LogId::new("l");
        let mut one = Chain::resume(Head::empty(log.clone()));
        one.append(1, b"{}");
        let mut two = Chain::resume(one.head().clone());
        let x = one.append(2, b"{}");
        let y = two.append(2, b"{}");
        assert_eq!(x, y);
    }

    #[test]
    fn genesis_depends_on_log() {
        assert_ne!(genesis(&LogId::new("a")), genesis(&LogId::new("b")));
    }

    #[test]
    fn envelope_is_deterministic_and_field_sensitive() {
        let log = LogId::new("l");
        let base = Chain::resume(Head::empty(log.clone())).append(5, b"{}");
        assert_eq!(
            base,
            Chain::resume(Head::empty(log.clone())).append(5, b"{}")
        );
        assert_ne!(
            base.hash,
            Chain::resume(Head::empty(log.clone()))
                .append(6, b"{}")
                .hash
        );
        assert_ne!(
            base.hash,
            Chain::resume(Head::empty(LogId::new("m")))
                .append(5, b"{}")
                .hash
        );
        assert_ne!(
            base.hash,
            Chain::resume(Head::empty(log)).append(5, b"[]").hash
        );
    }
}
