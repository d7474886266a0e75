//! The keyed mask: HMAC-SHA256 of a value under the deployment's key.
//! Equal values give equal tokens, so joins, GROUP BY and DISTINCT keep
//! working on masked columns; without the key a token cannot be reversed
//! or checked against a guess.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The keyed HMAC state, built once from the key and cloned per value (the
/// key's two compression blocks are not recomputed for every value).
#[derive(Clone)]
pub struct Keyer {
    mac: HmacSha256,
}

impl std::fmt::Debug for Keyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("Keyer(..)")
    }
}

impl Keyer {
    pub fn new(key: &[u8]) -> Keyer {
        // HMAC takes keys of any length; the error type exists only for
        // fixed-size MACs.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        Keyer { mac }
    }

    pub fn digest(&self, input: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(input);
        mac.finalize().into_bytes().into()
    }
}

/// The first eight bytes of a digest as a number: the source of numeric,
/// date and address tokens.
pub fn number(d: &[u8; 32]) -> u64 {
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_keyed() {
        let a = Keyer::new(b"key one");
        let b = Keyer::new(b"key two");
        assert_eq!(a.digest(b"x"), a.clone().digest(b"x"));
        assert_ne!(a.digest(b"x"), a.digest(b"y"));
        assert_ne!(a.digest(b"x"), b.digest(b"x"));
        // RFC 4231 test case 2.
        let k = Keyer::new(b"Jefe");
        assert_eq!(
            k.digest(b"what do ya want for nothing?")[..4],
            [0x5b, 0xdc, 0xc1, 0x46]
        );
    }
}
