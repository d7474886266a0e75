//! SCRAM-SHA-256 verifiers: what Portcullis stores instead of a password.
//! Format (as in PostgreSQL's pg_authid.rolpassword):
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

// Keys are secret-equivalent for offline guessing: keep them out of logs.
impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The fewest PBKDF2 iterations accepted (PostgreSQL's default).
pub const MIN_ITERATIONS: u32 = 4096;

/// Salt length used by [`ScramVerifier::generate`] (PostgreSQL uses 16 too).
pub const SALT_LEN: usize = 16;

impl ScramVerifier {
    /// Computes the verifier for `password` with the given salt and
    /// iteration count, per RFC 5802 / RFC 7677:
    ///
    /// ```text
    /// SaltedPassword = Hi(password, salt, i)      (PBKDF2-HMAC-SHA-256)
    /// ClientKey      = HMAC(SaltedPassword, "Client Key")
    /// StoredKey      = SHA-256(ClientKey)
    /// ServerKey      = HMAC(SaltedPassword, "Server Key")
    /// ```
    ///
    /// The password is normalised with SASLprep first, as PostgreSQL and
    /// every client do (see [`prepare_password`]).
    ///
    /// Runs `iterations` rounds of HMAC: slow on purpose (see
    /// [`ScramVerifier::generate`]).
    pub fn from_password(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let password = &*prepare_password(password);
        let salted = hi(password, salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac_sha256(&salted, b"Server Key");
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// A new verifier for `password` with a random 16-byte salt and
    /// [`MIN_ITERATIONS`] (4096) iterations, as PostgreSQL makes them.
    ///
    /// This runs PBKDF2 and is deliberately slow (milliseconds of CPU, more
    /// in debug builds): never call it on an async worker thread; use
    /// `tokio::task::spawn_blocking` or a plain thread.
    pub fn generate(password: &[u8]) -> Self {
        let salt: [u8; SALT_LEN] = rand::random();
        Self::from_password(password, &salt, MIN_ITERATIONS)
    }

    /// Checks a password against this verifier (recomputes PBKDF2: slow).
    /// Compares in constant time.
    pub fn matches_password(&self, password: &[u8]) -> bool {
        let other = Self::from_password(password, &self.salt, self.iterations);
        let mut diff = 0u8;
        for (a, b) in other
            .stored_key
            .iter()
            .chain(other.server_key.iter())
            .zip(self.stored_key.iter().chain(self.server_key.iter()))
        {
            diff |= a ^ b;
        }
        diff == 0
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or("must start with SCRAM-SHA-256$ (generate one with `portcullis passwd`)")?;
        let (params, keys) = rest.split_once('$').ok_or(
            "must have the form SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
        )?;
        let (iter, salt) = params
            .split_once(':')
            .ok_or("missing ':' between iterations and salt")?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or("missing ':' between StoredKey and ServerKey")?;
        let iterations: u32 = iter
            .parse()
            .map_err(|_| "iteration count is not a number")?;
        if iterations < MIN_ITERATIONS {
            return Err(format!("iteration count must be at least {MIN_ITERATIONS}"));
        }
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| "salt is not valid base64")?;
        if salt.is_empty() {
            return Err("salt is empty".into());
        }
        let key = |s: &str, what: &str| -> Result<[u8; 32], String> {
            STANDARD
                .decode(s)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| format!("{what} is not 32 bytes of base64"))
        };
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: key(stored, "StoredKey")?,
            server_key: key(server, "ServerKey")?,
        })
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `Hi()` of RFC 5802: PBKDF2 with HMAC-SHA-256 and one output block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let keyed = HmacSha256::new_from_slice(password).expect("HMAC accepts keys of any length");
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// A password as SCRAM uses it: SASLprep (RFC 4013) applied when the
/// password is UTF-8 and SASLprep accepts it, the bytes as given otherwise.
/// That is PostgreSQL's rule (`pg_saslprep` in `src/common/saslprep.c`,
/// used by `pg_be_scram_build_secret` and libpq), so a verifier made here
/// matches what clients compute: `cha\u{ff6f}s` is normalised to
/// `cha\u{30c3}s` by both sides.
pub fn prepare_password(password: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    match std::str::from_utf8(password).map(stringprep::saslprep) {
        Ok(Ok(Cow::Owned(prepared))) => Cow::Owned(prepared.into_bytes()),
        _ => Cow::Borrowed(password),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated by PostgreSQL 15.x for the password "secret":
    // SET password_encryption = 'scram-sha-256'; CREATE ROLE x PASSWORD 'secret';
    // SELECT rolpassword FROM pg_authid WHERE rolname = 'x';
    const PG: &str = "SCRAM-SHA-256$4096:yZkIEu9J2GSAYt7nmBNf5A==$Cs3eJ7zVsxA+QQhpyS+WIv8EoZTK74HBaYfnBaxJAzA=:5WXWGKmNyRpxJg0l3yun274icMHKc0oBiqwE8o+MZiU=";

    #[test]
    fn round_trips() {
        let v = ScramVerifier::parse(PG).unwrap();
        assert_eq!(v.iterations, 4096);
        assert_eq!(v.to_string(), PG);
    }

    #[test]
    fn rejects_bad_verifiers() {
        for bad in [
            "md5abc",
            "SCRAM-SHA-256$4096:abc",
            "SCRAM-SHA-256$10:yZkIEu9J2GSAYt7nmBNf5A==$Cs3eJ7zVsxA+QQhpyS+WIv8EoZTK74HBaYfnBaxJAzA=:5WXWGKmNyRpxJg0l3yun274icMHKc0oBiqwE8o+MZiU=",
            "SCRAM-SHA-256$4096:yZkIEu9J2GSAYt7nmBNf5A==$AAAA:5WXWGKmNyRpxJg0l3yun274icMHKc0oBiqwE8o+MZiU=",
        ] {
            assert!(ScramVerifier::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_password_matches_postgresql() {
        let pg = ScramVerifier::parse(PG).unwrap();
        let ours = ScramVerifier::from_password(b"secret", &pg.salt, pg.iterations);
        assert!(
            ours.stored_key == pg.stored_key,
            "StoredKey differs from PostgreSQL's"
        );
        assert!(
            ours.server_key == pg.server_key,
            "ServerKey differs from PostgreSQL's"
        );
        assert_eq!(ours.to_string(), PG);
        assert!(pg.matches_password(b"secret"));
        assert!(!pg.matches_password(b"Secret"));
    }

    #[test]
    fn generate_makes_fresh_salts_that_verify() {
        let a = ScramVerifier::generate(b"secret");
        let b = ScramVerifier::generate(b"secret");
        assert_eq!(a.iterations, MIN_ITERATIONS);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.stored_key, b.stored_key);
        assert_eq!(ScramVerifier::parse(&a.to_string()).unwrap(), a);
        assert!(a.matches_password(b"secret"));
        assert!(!a.matches_password(b"secret "));
    }

    #[test]
    fn passwords_are_prepared_as_postgresql_prepares_them() {
        assert_eq!(
            &*prepare_password("cha\u{ff6f}s".as_bytes()),
            "cha\u{30c3}s".as_bytes()
        );
        assert_eq!(&*prepare_password(b"plain"), b"plain");
        // Prohibited by SASLprep, or not UTF-8: used as given.
        assert_eq!(&*prepare_password(b"bell\x07"), b"bell\x07");
        assert_eq!(&*prepare_password(b"\xff\xfe"), b"\xff\xfe");
        let v = ScramVerifier::generate("cha\u{ff6f}s".as_bytes());
        assert!(v.matches_password("cha\u{30c3}s".as_bytes()));
    }

    #[test]
    fn debug_hides_keys() {
        let v = ScramVerifier::parse(PG).unwrap();
        let shown = format!("{v:?}");
        assert!(!shown.contains("Cs3eJ7"), "{shown}");
        assert!(!shown.contains("yZkIEu"), "{shown}");
    }
}
