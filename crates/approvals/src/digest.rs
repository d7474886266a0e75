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

/// A bound parameter as the client sent it: its format code and value
/// (`None` for NULL).
pub struct Param<'a> {
    pub format: i16,
    pub value: Option<&'a [u8]>,
}

impl Digest {
    /// `statement`: the message's statement bytes exactly as sent (a
    /// Query's text, or the prepared text a Bind runs); `params`: the
    /// Bind's parameters, empty for a Query.
    pub fn of(subject: &str, target: &str, statement: &[u8], params: &[Param<'_>]) -> Digest {
        let mut h = Sha256::new();
        h.update(b"portcullis approval digest v1\0");
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(subject.as_bytes());
        field(target.as_bytes());
        field(statement);
        field(&(params.len() as u64).to_be_bytes());
        for p in params {
            field(&p.format.to_be_bytes());
            match p.value {
                None => field(b"\xffnull"),
                Some(v) => {
                    field(b"\x00value");
                    field(v);
                }
            }
        }
        let out = h.finalize();
        let mut hex = String::with_capacity(64);
        for b in out {
            hex.push_str(&format!("{b:02x}"));
        }
        Digest(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: Option<&[u8]>) -> Param<'_> {
        Param {
            format: 0,
            value: v,
        }
    }

    #[test]
    fn every_input_counts() {
        let base = Digest::of("dana", "shop", b"DROP INDEX i", &[p(Some(b"1"))]);
        assert_eq!(
            base,
            Digest::of("dana", "shop", b"DROP INDEX i", &[p(Some(b"1"))])
        );
        for other in [
            Digest::of("dan", "shop", b"DROP INDEX i", &[p(Some(b"1"))]),
            Digest::of("dana", "shop2", b"DROP INDEX i", &[p(Some(b"1"))]),
            Digest::of("dana", "shop", b"DROP INDEX j", &[p(Some(b"1"))]),
            Digest::of("dana", "shop", b"DROP INDEX i", &[p(Some(b"2"))]),
            Digest::of("dana", "shop", b"DROP INDEX i", &[p(None)]),
            Digest::of("dana", "shop", b"DROP INDEX i", &[]),
            Digest::of(
                "dana",
                "shop",
                b"DROP INDEX i",
                &[Param {
                    format: 1,
                    value: Some(b"1"),
                }],
            ),
        ] {
            assert_ne!(base, other);
        }
        // Fields cannot run into each other.
        assert_ne!(
            Digest::of("ab", "c", b"", &[]),
            Digest::of("a", "bc", b"", &[])
        );
        assert_eq!(base.0.len(), 64);
    }
}
