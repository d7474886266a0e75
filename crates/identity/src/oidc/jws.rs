//! The JWS compact form (RFC 7515) as OIDC tokens use it: three base64url
//! parts, a JSON header, a JSON payload and a signature. Parsing trusts
//! nothing: the size is bounded before anything is decoded, each part must
//! be strict base64url without padding, and the header and payload must be
//! JSON objects.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::TokenError;

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub struct Jws<'a> {
    /// `header.payload` as sent: what the signature covers.
    pub signing_input: &'a str,
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    pub signature: Vec<u8>,
}

impl Jws<'_> {
    /// The header's `alg`.
    pub fn alg(&self) -> Result<&str, TokenError> {
        self.header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(TokenError::Malformed("the header has no alg"))
    }

    /// The header's `kid`, when it has one.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }
}

/// Whether `text` has the outline of a compact JWS (what tells a token
/// from an API key or a password before anything is decoded).
pub fn looks_like_jws(text: &str) -> bool {
    text.starts_with("eyJ") && text.bytes().filter(|&b| b == b'.').count() == 2
}

/// Splits and decodes `token`, refusing anything over `max_bytes`.
pub fn parse(token: &str, max_bytes: usize) -> Result<Jws<'_>, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let signing_input = &token[..h.len() + 1 + p.len()];
    let header = object(h, "the header")?;
    // RFC 7515 4.1.11: a recipient must refuse a token whose `crit` names
    // extensions it does not understand; this validator understands none.
    if header.contains_key("crit") {
        return Err(TokenError::Malformed("the header has crit extensions"));
    }
    let payload = object(p, "the payload")?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
    Ok(Jws {
        signing_input,
        header,
        payload,
        signature,
    })
}

fn object(part: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        TokenError::Malformed(match what {
            "the header" => "the header is not base64url",
            _ => "the payload is not base64url",
        })
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(TokenError::Malformed(match what {
            "the header" => "the header is not a JSON object",
            _ => "the payload is not a JSON object",
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn a_well_formed_token_splits() {
        let t = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"ES256","kid":"k1"}"#),
            b64(r#"{"sub":"a"}"#),
            b64("sig")
        );
        assert!(looks_like_jws(&t));
        let j = parse(&t, 4096).unwrap();
        assert_eq!(j.alg().unwrap(), "ES256");
        assert_eq!(j.kid(), Some("k1"));
        assert_eq!(j.payload["sub"], "a");
        assert_eq!(j.signature, b"sig");
        assert_eq!(j.signing_input, &t[..t.rfind('.').unwrap()]);
    }

    #[test]
    fn anything_else_is_refused() {
        let h = b64(r#"{"alg":"ES256"}"#);
        let p = b64(r#"{"sub":"a"}"#);
        let cases = [
            format!("{h}.{p}"),
            format!("{h}.{p}.AA.AA"),
            format!("{h}.{p}.A=="),
            format!("{h}=.{p}.AA"),
            format!("{}.{p}.AA", b64("[1]")),
            format!("{h}.{}.AA", b64("\"sub\"")),
            format!("{h}.{}.AA", b64("{")),
            format!("{}.{p}.AA", b64(r#"{"alg":"ES256","crit":["exp"]}"#)),
            format!("{h}.{p}.A+/A"),
            String::new(),
        ];
        for c in cases {
            assert!(parse(&c, 4096).is_err(), "{c}");
        }
        let big = format!("{h}.{p}.{}", "A".repeat(5000));
        assert_eq!(parse(&big, 4096).unwrap_err(), TokenError::TooLarge);
        assert!(!looks_like_jws("pck_0011"));
        assert!(!looks_like_jws("eyJhbGciOiJub25lIn0"));
    }
}
