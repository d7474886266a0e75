//! Portcullis API keys: the credential an agent or a job presents as its
//! PostgreSQL password.
//!
//! A key reads `pck_<id>_<secret>`: the id (8 random bytes, hex) names the
//! key in listings, revocations and audit records; the secret (32 random
//! bytes, base64url) is shown once, when the key is made, and only its
//! hash is kept. The secret is drawn from the system's CSPRNG, so a fast
//! hash is the right one: 256 random bits cannot be guessed offline, and a
//! slow hash would only make every login slower.
//!
//! [`check`] is the whole decision, pure: the presented key, the user name
//! the client gave, the time, and what the store holds for the key's id.

mod postgres;
mod store;

pub use postgres::{PostgresKeys, PostgresLocation};
pub use store::{NewKey, SqliteKeys, StoreError};

/// A stored key's columns as either store reads them, before they are
/// checked.
pub(crate) struct RawRecord {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub groups: String,
    pub on_behalf_of: Option<String>,
    pub created_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub end_sessions: bool,
}

impl RawRecord {
    /// The record, or what is wrong with the stored row.
    pub(crate) fn check(self) -> Result<KeyRecord, &'static str> {
        let kind = match self.kind.as_str() {
            "human" => Kind::Human,
            "agent" => Kind::Agent,
            "service" => Kind::Service,
            _ => return Err("unknown kind"),
        };
        Ok(KeyRecord {
            id: KeyId::parse(&self.id).ok_or("id is not 16 hex digits")?,
            name: self.name,
            kind,
            groups: serde_json::from_str(&self.groups)
                .map_err(|_| "groups are not a JSON list of names")?,
            on_behalf_of: self.on_behalf_of,
            created_at: self.created_at.ok_or("created_at is missing")?,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            end_sessions: self.end_sessions,
        })
    }
}

/// The control-plane store's API keys: a SQLite file (one machine), or a
/// PostgreSQL database (several machines sharing keys and revocations).
/// Both answer the same questions the same way.
pub enum KeyStore {
    Sqlite(SqliteKeys),
    Postgres(Box<PostgresKeys>),
}

impl KeyStore {
    /// The SQLite store at `path`, made when it is not there yet.
    pub fn open(path: &std::path::Path) -> Result<KeyStore, StoreError> {
        SqliteKeys::open(path).map(KeyStore::Sqlite)
    }

    /// The PostgreSQL store at `location` (connected on first use).
    pub fn open_postgres(location: PostgresLocation) -> KeyStore {
        KeyStore::Postgres(Box::new(PostgresKeys::open(location)))
    }

    /// Makes and stores a key; returns its record and the key's text, which
    /// is never stored and cannot be shown again.
    pub fn create(&self, new: NewKey, now: i64) -> Result<(KeyRecord, String), StoreError> {
        match self {
            KeyStore::Sqlite(s) => s.create(new, now),
            KeyStore::Postgres(p) => p.create(new, now),
        }
    }

    /// The key with this id, with the hash of its secret.
    pub fn find(&self, id: KeyId) -> Result<Option<StoredKey>, StoreError> {
        match self {
            KeyStore::Sqlite(s) => s.find(id),
            KeyStore::Postgres(p) => p.find(id),
        }
    }

    /// Every key, newest first.
    pub fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        match self {
            KeyStore::Sqlite(s) => s.list(),
            KeyStore::Postgres(p) => p.list(),
        }
    }

    /// Keys revoked at or after `since` (unix seconds) whose revocation
    /// also ends their sessions.
    pub fn ending_sessions_since(&self, since: i64) -> Result<Vec<KeyRecord>, StoreError> {
        match self {
            KeyStore::Sqlite(s) => s.ending_sessions_since(since),
            KeyStore::Postgres(p) => p.ending_sessions_since(since),
        }
    }

    /// Revokes a key at `now` (see [`SqliteKeys::revoke`]).
    pub fn revoke(
        &self,
        id: KeyId,
        now: i64,
        end_sessions: bool,
    ) -> Result<Option<KeyRecord>, StoreError> {
        match self {
            KeyStore::Sqlite(s) => s.revoke(id, now, end_sessions),
            KeyStore::Postgres(p) => p.revoke(id, now, end_sessions),
        }
    }
}

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::{Identity, Kind, Proof};

const PREFIX: &str = "pck_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
/// base64url without padding of [`SECRET_BYTES`].
const SECRET_CHARS: usize = 43;
/// Everything hashed starts with this, so the digest is of a key and
/// nothing else.
const HASH_DOMAIN: &[u8] = b"portcullis api key v1\0";

/// A key's public name: 8 bytes, shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; ID_BYTES]);

impl KeyId {
    /// Reads 16 hex digits (either case).
    pub fn parse(text: &str) -> Option<KeyId> {
        let b = text.as_bytes();
        if b.len() != ID_BYTES * 2 {
            return None;
        }
        let mut out = [0u8; ID_BYTES];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(KeyId(out))
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A presented key, split into its id and secret. Holds the secret only
/// borrowed, and its Debug never shows it.
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    pub id: KeyId,
    secret: &'a str,
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Presented {{ id: {} }}", self.id)
    }
}

/// Whether `password` has the shape of a Portcullis API key: the proxy
/// tells keys from tokens by this before asking the store.
pub fn looks_like_key(password: &str) -> bool {
    password.starts_with(PREFIX)
}

/// Splits a presented key; `None` unless it has exactly the shape a key
/// is made with.
pub fn parse(password: &str) -> Option<Presented<'_>> {
    let rest = password.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_at_checked(ID_BYTES * 2)?;
    let id = KeyId::parse(id)?;
    let secret = secret.strip_prefix('_')?;
    if secret.len() != SECRET_CHARS
        || !secret
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return None;
    }
    Some(Presented { id, secret })
}

/// The digest the store keeps for a key.
pub fn hash(id: KeyId, secret: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(HASH_DOMAIN);
    ctx.update(&id.0);
    ctx.update(secret.as_bytes());
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A freshly made key: its id, and the text to give its holder (once).
pub struct Minted {
    pub id: KeyId,
    pub text: String,
    pub hash: [u8; 32],
}

impl fmt::Debug for Minted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Minted {{ id: {} }}", self.id)
    }
}

/// Makes a new key from the system's random source.
pub fn mint() -> Result<Minted, StoreError> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill(&mut id).map_err(|_| StoreError::Random)?;
    rng.fill(&mut secret).map_err(|_| StoreError::Random)?;
    let id = KeyId(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let hash = hash(id, &secret);
    Ok(Minted {
        id,
        text: format!("{PREFIX}{id}_{secret}"),
        hash,
    })
}

/// The time as keys record it: whole seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the store knows of a key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    /// The user name the key logs in as, and the identity's subject.
    pub name: String,
    pub kind: Kind,
    pub groups: Vec<String>,
    /// The person the holder acts for, when the key is bound to one.
    pub on_behalf_of: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Whether revoking it also ended the sessions it had opened.
    pub end_sessions: bool,
}

impl KeyRecord {
    /// `active`, `expired` or `revoked` at `now`.
    pub fn state(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| now >= e) {
            "expired"
        } else {
            "active"
        }
    }
}

/// A key as stored: its record and the hash of its secret.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub record: KeyRecord,
    pub hash: [u8; 32],
}

/// Why a presented key was refused. For the log; the client is told only
/// that authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the password is not a well-formed API key")]
    Malformed,
    #[error("no API key has this id")]
    Unknown,
    #[error("the key's secret does not match")]
    WrongSecret,
    #[error("the key has expired")]
    Expired,
    #[error("the key has been revoked")]
    Revoked,
    #[error("the key belongs to another user name")]
    OtherUser,
}

/// Decides whether `password` is a valid key for user name `user` at
/// `now`, given what the store holds for its id (`stored`, looked up by
/// [`Presented::id`]). The secret is compared in constant time, and
/// before anything else about the key is looked at, so that a wrong
/// secret says nothing about the key's state.
pub fn check(
    presented: Presented<'_>,
    user: &str,
    now: i64,
    stored: Option<&StoredKey>,
) -> Result<Identity, Refused> {
    let stored = stored.ok_or(Refused::Unknown)?;
    let digest = hash(presented.id, presented.secret);
    if stored.record.id != presented.id
        || !bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..], &stored.hash[..]))
    {
        return Err(Refused::WrongSecret);
    }
    let r = &stored.record;
    if r.revoked_at.is_some() {
        return Err(Refused::Revoked);
    }
    if r.expires_at.is_some_and(|e| now >= e) {
        return Err(Refused::Expired);
    }
    if r.name != user {
        return Err(Refused::OtherUser);
    }
    Ok(Identity {
        kind: r.kind,
        subject: r.name.clone(),
        groups: r.groups.clone(),
        on_behalf_of: r.on_behalf_of.clone(),
        proof: Proof::ApiKey { id: r.id },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(m: &Minted) -> StoredKey {
        StoredKey {
            record: KeyRecord {
                id: m.id,
                name: "etl-agent".into(),
                kind: Kind::Agent,
                groups: vec!["loaders".into()],
                on_behalf_of: Some("alice".into()),
                created_at: 100,
                expires_at: Some(1_000),
                revoked_at: None,
                end_sessions: false,
            },
            hash: m.hash,
        }
    }

    #[test]
    fn a_minted_key_parses_and_checks() {
        let m = mint().unwrap();
        assert!(looks_like_key(&m.text));
        assert_eq!(m.text.len(), 4 + 16 + 1 + 43);
        let p = parse(&m.text).unwrap();
        assert_eq!(p.id, m.id);
        let id = check(p, "etl-agent", 500, Some(&stored(&m))).unwrap();
        assert_eq!(id.subject, "etl-agent");
        assert_eq!(id.kind, Kind::Agent);
        assert_eq!(id.groups, ["loaders"]);
        assert_eq!(id.on_behalf_of.as_deref(), Some("alice"));
        assert_eq!(id.proof, Proof::ApiKey { id: m.id });
        assert_eq!(id.proof.method(), "api-key");
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let m = mint().unwrap();
        let s = stored(&m);
        let p = parse(&m.text).unwrap();
        assert_eq!(check(p, "etl-agent", 500, None), Err(Refused::Unknown));
        assert_eq!(
            check(p, "etl-agent", 1_000, Some(&s)),
            Err(Refused::Expired)
        );
        assert_eq!(check(p, "bob", 500, Some(&s)), Err(Refused::OtherUser));
        let mut revoked = s.clone();
        revoked.record.revoked_at = Some(400);
        assert_eq!(
            check(p, "etl-agent", 500, Some(&revoked)),
            Err(Refused::Revoked)
        );

        // One changed character of the secret.
        let mut text = m.text.clone().into_bytes();
        let last = text.len() - 1;
        text[last] = if text[last] == b'A' { b'B' } else { b'A' };
        let text = String::from_utf8(text).unwrap();
        let tampered = parse(&text).unwrap();
        assert_eq!(
            check(tampered, "etl-agent", 500, Some(&s)),
            Err(Refused::WrongSecret)
        );
        // A wrong secret says nothing about the key's state.
        assert_eq!(
            check(tampered, "etl-agent", 500, Some(&revoked)),
            Err(Refused::WrongSecret)
        );
    }

    #[test]
    fn only_the_exact_shape_parses() {
        let m = mint().unwrap();
        let t = &m.text;
        assert!(parse(&t[..t.len() - 1]).is_none());
        assert!(parse(&format!("{t}A")).is_none());
        assert!(parse(&t.replacen("pck_", "pcx_", 1)).is_none());
        assert!(parse(&format!("pck_zz{}", &t[6..])).is_none());
        assert!(parse(&format!("{}={}", &t[..20], &t[21..])).is_none());
        assert!(parse("").is_none());
        assert!(parse("pck_").is_none());
        assert!(parse("pck_é").is_none());
        assert!(!looks_like_key("eyJhbGciOi"));
    }

    #[test]
    fn ids_print_and_parse_as_hex() {
        let id = KeyId([0, 1, 0xab, 0xcd, 0xef, 0x10, 0x7f, 0xff]);
        assert_eq!(id.to_string(), "0001abcdef107fff");
        assert_eq!(KeyId::parse("0001ABCDEF107FFF"), Some(id));
        assert_eq!(KeyId::parse("0001abcdef107ff"), None);
        assert_eq!(KeyId::parse("0001abcdef107ffg"), None);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let m = mint().unwrap();
        let secret = &m.text[21..];
        assert!(!format!("{m:?}").contains(secret));
        assert!(!format!("{:?}", parse(&m.text).unwrap()).contains(secret));
    }
}
