//! The OAuth side of `portcullis login`: discovery, the device
//! authorization grant (RFC 8628), the authorization code grant with PKCE
//! (RFC 7636) on a loopback redirect (RFC 8252), and refreshing. HTTP goes
//! through the proxy's own client (`portcullis_proxy::oidc::fetch`):
//! https, or http to a loopback provider only, no redirects, bounded.
//!
//! Nothing here verifies a token's signature: the proxy does, at every
//! login. The CLI reads a token's claims only to know its user name and
//! when to refresh it.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use portcullis_proxy::oidc::fetch;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(15);

/// Characters a form value or query parameter keeps as they are (RFC 3986
/// unreserved); everything else is percent-encoded.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error("{0}: the answer is not the JSON expected ({1})")]
    Json(String, String),
    #[error("the provider's discovery document has no {0}")]
    Missing(&'static str),
    #[error("the provider refused: {0}")]
    Refused(String),
    #[error("the sign-in was denied")]
    Denied,
    #[error("the sign-in code expired before it was approved; run `portcullis login` again")]
    Expired,
    #[error("{0}")]
    Callback(String),
    #[error(
        "the provider's answer has no {0} token (ask for the openid scope, or give --resource)"
    )]
    NoToken(&'static str),
}

/// How to talk to one provider.
pub struct Provider {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub token_endpoint: String,
    pub device_endpoint: Option<String>,
    pub authorization_endpoint: Option<String>,
}

/// Reads the issuer's discovery document.
pub async fn discover(
    issuer: &str,
    client_id: &str,
    client_secret: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Provider, OAuthError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let body = fetch::get(&url, tls.as_ref(), TIMEOUT).await?;
    let doc: Value =
        serde_json::from_slice(&body).map_err(|e| OAuthError::Json(url.clone(), e.to_string()))?;
    let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
    if field("issuer").as_deref().map(|i| i.trim_end_matches('/'))
        != Some(issuer.trim_end_matches('/'))
    {
        return Err(OAuthError::Refused(format!(
            "the discovery document names another issuer than {issuer}"
        )));
    }
    // Every endpoint the CLI posts to or opens: https, or http on this
    // machine; never file: or a plain-HTTP host elsewhere.
    let endpoint = |name: &'static str| -> Result<Option<String>, OAuthError> {
        match field(name) {
            Some(url) if portcullis_config::secure_url(&url) => Ok(Some(url)),
            Some(url) => Err(OAuthError::Refused(format!(
                "the discovery document's {name} ({}) is not an https URL",
                printable(&url)
            ))),
            None => Ok(None),
        }
    };
    Ok(Provider {
        issuer: issuer.to_owned(),
        client_id: client_id.to_owned(),
        client_secret,
        tls,
        token_endpoint: endpoint("token_endpoint")?.ok_or(OAuthError::Missing("token_endpoint"))?,
        device_endpoint: endpoint("device_authorization_endpoint")?,
        authorization_endpoint: endpoint("authorization_endpoint")?,
    })
}

/// `s` without control characters (a provider's text reaches the
/// terminal), at most 300 characters.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, FORM),
                utf8_percent_encode(v, FORM)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `N` bytes from the system's CSPRNG, base64url.
fn random<const N: usize>() -> Result<String, OAuthError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| OAuthError::Callback("the system's random source failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A PKCE verifier (43 characters from 32 random bytes) and its S256
/// challenge.
pub fn pkce() -> Result<(String, String), OAuthError> {
    let verifier = random::<32>()?;
    let challenge = challenge(&verifier);
    Ok((verifier, challenge))
}

/// The S256 challenge of `verifier`: BASE64URL(SHA256(verifier)).
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// A random value for `state`.
pub fn random_state() -> Result<String, OAuthError> {
    random::<16>()
}

/// What a token endpoint gave.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: Option<String>,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
}

/// The token endpoint's answer: tokens, or the OAuth error code and
/// description.
enum Answer {
    Tokens(Tokens),
    Error(String, String),
}

impl Provider {
    /// POSTs a token request, adding the client's credentials.
    async fn token_request(&self, mut pairs: Vec<(&str, &str)>) -> Result<Answer, OAuthError> {
        pairs.push(("client_id", &self.client_id));
        if let Some(secret) = &self.client_secret {
            pairs.push(("client_secret", secret));
        }
        let (status, body) = fetch::post_form(
            &self.token_endpoint,
            self.tls.as_ref(),
            TIMEOUT,
            form(&pairs),
        )
        .await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| OAuthError::Json(self.token_endpoint.clone(), e.to_string()))?;
        let s = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
        if let Some(error) = s("error") {
            return Ok(Answer::Error(
                printable(&error),
                printable(&s("error_description").unwrap_or_default()),
            ));
        }
        if !status.is_success() {
            return Err(OAuthError::Refused(format!("HTTP {status}")));
        }
        Ok(Answer::Tokens(Tokens {
            access_token: s("access_token"),
            id_token: s("id_token"),
            refresh_token: s("refresh_token"),
        }))
    }

    /// The device authorization grant: asks for a code, shows the person
    /// where to enter it (`show`), and polls until it is approved, denied
    /// or expired.
    pub async fn device_flow(
        &self,
        scope: &str,
        resource: Option<&str>,
        show: impl FnOnce(&DeviceCode),
    ) -> Result<Tokens, OAuthError> {
        let endpoint = self
            .device_endpoint
            .as_deref()
            .ok_or(OAuthError::Missing("device_authorization_endpoint"))?;
        let mut pairs = vec![("client_id", self.client_id.as_str()), ("scope", scope)];
        if let Some(r) = resource {
            pairs.push(("resource", r));
        }
        if let Some(secret) = &self.client_secret {
            pairs.push(("client_secret", secret));
        }
        let (status, body) =
            fetch::post_form(endpoint, self.tls.as_ref(), TIMEOUT, form(&pairs)).await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| OAuthError::Json(endpoint.to_owned(), e.to_string()))?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(OAuthError::Refused(printable(e)));
        }
        if !status.is_success() {
            return Err(OAuthError::Refused(format!("HTTP {status}")));
        }
        let code = DeviceCode::from_json(&v).ok_or_else(|| {
            OAuthError::Json(endpoint.to_owned(), "no device_code or user_code".into())
        })?;
        show(&code);
        // The provider's numbers, within reason: at most 30 minutes for
        // the person to approve, and a poll at least every minute.
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(code.expires_in.min(1_800));
        let mut interval = code.interval.clamp(1, 60);
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            if tokio::time::Instant::now() > deadline {
                return Err(OAuthError::Expired);
            }
            let mut pairs = vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", code.device_code.as_str()),
            ];
            if let Some(r) = resource {
                pairs.push(("resource", r));
            }
            match self.token_request(pairs).await? {
                Answer::Tokens(t) => return Ok(t),
                Answer::Error(e, _) if e == "authorization_pending" => {}
                Answer::Error(e, _) if e == "slow_down" => interval = (interval + 5).min(60),
                Answer::Error(e, _) if e == "access_denied" => return Err(OAuthError::Denied),
                Answer::Error(e, _) if e == "expired_token" => return Err(OAuthError::Expired),
                Answer::Error(e, d) => return Err(OAuthError::Refused(format!("{e}: {d}"))),
            }
        }
    }

    /// The authorization URL for the code flow.
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        scope: &str,
        resource: Option<&str>,
        state: &str,
        challenge: &str,
    ) -> Result<String, OAuthError> {
        let endpoint = self
            .authorization_endpoint
            .as_deref()
            .ok_or(OAuthError::Missing("authorization_endpoint"))?;
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", state),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ];
        if let Some(r) = resource {
            pairs.push(("resource", r));
        }
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        Ok(format!("{endpoint}{sep}{}", form(&pairs)))
    }

    /// Exchanges an authorization code.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        resource: Option<&str>,
    ) -> Result<Tokens, OAuthError> {
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        if let Some(r) = resource {
            pairs.push(("resource", r));
        }
        match self.token_request(pairs).await? {
            Answer::Tokens(t) => Ok(t),
            Answer::Error(e, d) => Err(OAuthError::Refused(format!("{e}: {d}"))),
        }
    }

    /// Uses a refresh token.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        resource: Option<&str>,
    ) -> Result<Tokens, OAuthError> {
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        if let Some(r) = resource {
            pairs.push(("resource", r));
        }
        match self.token_request(pairs).await? {
            Answer::Tokens(t) => Ok(t),
            Answer::Error(e, d) => Err(OAuthError::Refused(format!("{e}: {d}"))),
        }
    }
}

/// A device authorization answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: u64,
}

impl DeviceCode {
    fn from_json(v: &Value) -> Option<DeviceCode> {
        let s = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
        // Shown to the person: only web addresses, and no control
        // characters in what is printed.
        let url = |u: String| portcullis_config::secure_url(&u).then(|| printable(&u));
        Some(DeviceCode {
            device_code: s("device_code")?,
            user_code: printable(&s("user_code")?),
            // Google calls it verification_url.
            verification_uri: url(s("verification_uri").or_else(|| s("verification_url"))?)?,
            verification_uri_complete: s("verification_uri_complete").and_then(url),
            expires_in: v.get("expires_in").and_then(Value::as_u64).unwrap_or(600),
            // RFC 8628 3.2: 5 seconds when the answer does not say.
            interval: v.get("interval").and_then(Value::as_u64).unwrap_or(5),
        })
    }
}

/// The claims of a JWT, read without checking its signature (the proxy
/// checks it): only for the user name and the expiry.
pub fn claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The user name a token names under `claim`.
pub fn user_of(claims: &serde_json::Map<String, Value>, claim: &str) -> Option<String> {
    claims
        .get(claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_challenge() {
        // RFC 7636 Appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (v, c) = pkce().unwrap();
        assert_eq!(v.len(), 43);
        assert_eq!(c, challenge(&v));
        assert_ne!(pkce().unwrap().0, v);
    }

    #[test]
    fn forms_encode_everything_but_unreserved_characters() {
        assert_eq!(
            form(&[
                ("scope", "openid email"),
                ("r", "urn:x/y?a=b&c"),
                ("k", "-._~")
            ]),
            "scope=openid%20email&r=urn%3Ax%2Fy%3Fa%3Db%26c&k=-._~"
        );
    }

    #[test]
    fn device_answers_are_read_with_rfc_defaults() {
        let v: Value = serde_json::from_str(
            r#"{"device_code":"d","user_code":"ABCD-EFGH","verification_url":"https://g/device"}"#,
        )
        .unwrap();
        let c = DeviceCode::from_json(&v).unwrap();
        assert_eq!((c.interval, c.expires_in), (5, 600));
        assert_eq!(c.verification_uri, "https://g/device");
        assert!(DeviceCode::from_json(&serde_json::json!({"device_code": "d"})).is_none());
        let hostile = serde_json::json!({
            "device_code": "d", "user_code": "AB\u{1b}[2J", "verification_uri": "file:///etc/passwd",
        });
        assert!(DeviceCode::from_json(&hostile).is_none());
        let v = serde_json::json!({
            "device_code": "d", "user_code": "AB\u{1b}[2JCD", "verification_uri": "https://idp/device",
            "expires_in": u64::MAX, "interval": u64::MAX,
        });
        let c = DeviceCode::from_json(&v).unwrap();
        assert_eq!(c.user_code, "AB[2JCD");
        assert_eq!(c.expires_in, u64::MAX);
    }

    #[test]
    fn claims_are_read_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"email":"dana@example.com","exp":5}"#);
        let c = claims(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(user_of(&c, "email").as_deref(), Some("dana@example.com"));
        assert_eq!(user_of(&c, "sub"), None);
        assert!(claims("not-a-jwt").is_none());
        assert!(claims("a.!!!.c").is_none());
        let list = URL_SAFE_NO_PAD.encode("[1]");
        assert!(claims(&format!("a.{list}.c")).is_none());
    }
}
