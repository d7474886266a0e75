//! What an approval is bound to: one identity running one statement with
//! one set of parameters on one target. Any difference (another statement,
//! another value, another user, another target) is another digest, so an
//! approval cannot be reused for anything else.

use sha2::{Digest as _, Sha256};

/// A SHA-256 over the identity, target, statement bytes and parameters,
/// each length-prefixed (no two inputs can run together), under a domain
/// tag of its own. Shown as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Digest(pub String);

impl Digest {
    /// `statement`: the statement bytes exactly as sent (a Query's text,
    /// or the text the prepared statement a Bind runs was parsed from);
    /// `parameters`: the Bind's parameter formats, values and result
    /// formats exactly as sent, empty for a Query.
    pub fn of(subject: &str, target: &str, statement: &[u8], parameters: &[u8]) -> Digest {
        let mut h = Sha256::new();
        h.update(b"portcullis approval digest v1\0");
        for field in [subject.as_bytes(), target.as_bytes(), statement, parameters] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field);
        }
        let mut hex = String::with_capacity(64);
        for b in h.finalize() {
            hex.push_str(&format!("{b:02x}"));
        }
        Digest(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_counts() {
        let base = Digest::of("dana", "shop", b"DROP INDEX i", b"\0\0\0\x01");
        assert_eq!(
            base,
            Digest::of("dana", "shop", b"DROP INDEX i", b"\0\0\0\x01")
        );
        for other in [
            Digest::of("dan", "shop", b"DROP INDEX i", b"\0\0\0\x01"),
            Digest::of("dana", "shop2", b"DROP INDEX i", b"\0\0\0\x01"),
            Digest::of("dana", "shop", b"DROP INDEX j", b"\0\0\0\x01"),
            Digest::of("dana", "shop", b"DROP INDEX i", b"\0\0\0\x02"),
            Digest::of("dana", "shop", b"DROP INDEX i", b""),
        ] {
            assert_ne!(base, other);
        }
        // Fields cannot run into each other.
        assert_ne!(
            Digest::of("ab", "c", b"", b""),
            Digest::of("a", "bc", b"", b"")
        );
        assert_eq!(base.0.len(), 64);
    }
}
