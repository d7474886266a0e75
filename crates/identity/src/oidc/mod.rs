//! OIDC tokens: a JWT from the company's identity provider (or a
//! client-credentials token for a service), presented as the password.
//!
//! [`validate`] is the whole decision and is pure: the token, the user
//! name the client gave, the time, the issuer's policy and the issuer's
//! signing keys in. It checks, in this order: the size bound, the shape,
//! the algorithm against the issuer's allow-list, the signature with the
//! key the algorithm and `kid` select, then the exact issuer, the
//! audience, exp / nbf / iat with bounded leeway, and last who the token
//! names against the user name. Nothing from the payload is trusted
//! before the signature holds. [`refresh_due`] says when the issuer's
//! keys should be fetched again; fetching them is the caller's I/O.

mod jwk;
mod jws;

pub use jwk::{Jwk, Jwks, PublicKey, SUPPORTED_ALGORITHMS};
pub use jws::looks_like_jws;

use std::sync::Arc;

use serde_json::Value;

use crate::{Identity, Kind, Proof};

/// What one trusted issuer's tokens must be, and how they name people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerPolicy {
    /// Compared exactly with the token's `iss`.
    pub issuer: String,
    /// Must be the token's `aud`, or one of them.
    pub audience: String,
    /// JOSE names, each one of [`SUPPORTED_ALGORITHMS`].
    pub algorithms: Vec<String>,
    /// Seconds of clock skew allowed on exp, nbf and iat.
    pub leeway_secs: i64,
    pub max_token_bytes: usize,
    /// The claim that names a person (`email`, `preferred_username`,
    /// `upn`, `sub`): it must equal the user name the client gave.
    pub user_claim: String,
    /// The claim that lists a person's groups, when groups are mapped.
    pub groups_claim: Option<String>,
    /// OAuth client ids whose tokens are agents', and services'. Such a
    /// token names the client (its `client_id`, else `azp`, `appid` or
    /// `cid`), and the person in `user_claim`, if any, is who it acts for.
    /// So is an RFC 8693 actor (`act.sub`) that is one of these, and a
    /// `user_claim` value that is one of these (a service account).
    pub agents: Vec<String>,
    pub services: Vec<String>,
    /// When not empty, a person's `user_claim` value must be an email
    /// address in one of these domains (an issuer shared by many
    /// organisations, such as Google's, vouches for anyone).
    pub allowed_domains: Vec<String>,
    /// When set, the token's `hd` claim (Google Workspace's hosted
    /// domain) must equal it for a person.
    pub hosted_domain: Option<String>,
}

/// Why a token was refused. For the log; the client is only told that
/// authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is larger than the bound")]
    TooLarge,
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token's algorithm is not allowed for its issuer")]
    AlgorithmNotAllowed,
    #[error("no signing key of the issuer has the token's key id")]
    UnknownKey,
    #[error("the selected key cannot verify the token's algorithm")]
    KeyMismatch,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token is not for Portcullis (audience)")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("the token's actor is not a configured agent or service")]
    UnknownActor,
    #[error("the token names another user")]
    OtherUser,
    #[error("the token's person is outside the allowed domains")]
    DomainNotAllowed,
    #[error("the token's email address is not verified")]
    EmailNotVerified,
}

/// The unverified `iss` of a token: only for choosing which issuer's
/// policy and keys to validate it with.
pub fn peek_issuer(token: &str, max_bytes: usize) -> Option<String> {
    let jws = jws::parse(token, max_bytes).ok()?;
    jws.payload.get("iss")?.as_str().map(str::to_owned)
}

/// The unverified `kid` of a token: for deciding whether the issuer's
/// keys need fetching before validation.
pub fn peek_kid(token: &str, max_bytes: usize) -> Option<String> {
    let jws = jws::parse(token, max_bytes).ok()?;
    jws.kid().map(str::to_owned)
}

/// Validates `token` for user name `user` at `now` (unix seconds).
pub fn validate(
    token: &str,
    user: &str,
    now: i64,
    policy: &IssuerPolicy,
    keys: &Jwks,
) -> Result<Identity, TokenError> {
    let jws = jws::parse(token, policy.max_token_bytes)?;
    let alg = jws.alg()?;
    if !policy.algorithms.iter().any(|a| a == alg) || !SUPPORTED_ALGORITHMS.contains(&alg) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    keys.select(alg, jws.kid())?
        .verify(alg, jws.signing_input.as_bytes(), &jws.signature)?;

    let claims = &jws.payload;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(policy.issuer.as_str()) {
        return Err(TokenError::WrongIssuer);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == policy.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&policy.audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience);
    }
    let leeway = policy.leeway_secs;
    let exp = time(claims.get("exp"))?.ok_or(TokenError::MissingClaim("exp"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if time(claims.get("nbf"))?.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(TokenError::NotYetValid);
    }
    if time(claims.get("iat"))?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(TokenError::IssuedInFuture);
    }

    let person = text(&policy.user_claim).filter(|s| !s.is_empty());
    let client = ["client_id", "azp", "appid", "cid"]
        .iter()
        .find_map(|c| text(c));
    let actor = claims
        .get("act")
        .and_then(|a| a.get("sub"))
        .and_then(Value::as_str);
    let kind_of = |name: &str| {
        if policy.agents.iter().any(|a| a == name) {
            Some(Kind::Agent)
        } else if policy.services.iter().any(|s| s == name) {
            Some(Kind::Service)
        } else {
            None
        }
    };
    let (kind, subject, on_behalf_of) = if let Some(actor) = actor {
        let kind = kind_of(actor).ok_or(TokenError::UnknownActor)?;
        (kind, actor, person)
    } else if let Some((client, kind)) = client.and_then(|c| Some((c, kind_of(c)?))) {
        (kind, client, person)
    } else if let Some((account, kind)) = person
        .filter(|_| matches!(policy.user_claim.as_str(), "sub" | "email"))
        .and_then(|p| Some((p, kind_of(p)?)))
    {
        // An account listed by name (a service account's email, or its
        // sub): only by claims a user cannot choose, and an email only
        // when it is not unverified.
        if policy.user_claim == "email" && claims.get("email_verified") == Some(&Value::Bool(false))
        {
            return Err(TokenError::EmailNotVerified);
        }
        (kind, account, None)
    } else {
        let person = person.ok_or(TokenError::MissingClaim("user"))?;
        (Kind::Human, person, None)
    };
    if subject != user {
        return Err(TokenError::OtherUser);
    }
    // Who a person is must be vouched for by this organisation: the
    // email's verification, its domain, the hosted domain. A person an
    // agent acts for is checked the same way.
    if let Some(p) = if kind == Kind::Human {
        Some(subject)
    } else {
        on_behalf_of
    } {
        if policy.user_claim == "email" && claims.get("email_verified") == Some(&Value::Bool(false))
        {
            return Err(TokenError::EmailNotVerified);
        }
        if !policy.allowed_domains.is_empty() {
            let domain = p.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
            if !domain.is_some_and(|d| {
                policy
                    .allowed_domains
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&d))
            }) {
                return Err(TokenError::DomainNotAllowed);
            }
        }
        if let Some(hd) = &policy.hosted_domain {
            if text("hd") != Some(hd.as_str()) {
                return Err(TokenError::DomainNotAllowed);
            }
        }
    }
    // Groups are a person's: an agent or service acting for one does not
    // get them (policies see the person in on_behalf_of).
    let groups = match policy.groups_claim.as_deref().and_then(|g| claims.get(g)) {
        _ if kind != Kind::Human => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(g)) => vec![g.clone()],
        _ => Vec::new(),
    };
    Ok(Identity {
        kind,
        subject: subject.to_owned(),
        groups,
        on_behalf_of: on_behalf_of.map(str::to_owned),
        proof: Proof::Oidc {
            issuer: Arc::from(policy.issuer.as_str()),
            token_id: text("jti").map(|j| j.chars().take(128).collect()),
        },
    })
}

/// A NumericDate claim: seconds, an integer or a number with a fraction.
fn time(v: Option<&Value>) -> Result<Option<i64>, TokenError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(TokenError::Malformed(
                "a time claim is not a number of seconds",
            )),
        Some(_) => Err(TokenError::Malformed("a time claim is not a number")),
    }
}

/// Whether an issuer's keys should be fetched now, given when they were
/// last fetched successfully and last tried (unix seconds), and the key id
/// a token asks for.
///
/// - No keys yet: fetch, but at most every 5 seconds while fetching fails.
/// - A `kid` the keys do not have (the issuer rotated): fetch, at most
///   once a minute, so that tokens with made-up key ids cannot make
///   Portcullis hammer the provider.
/// - Keys older than `max_age`: fetch (the caller keeps using the old keys
///   if the fetch fails, so a provider that is down breaks nothing).
pub fn refresh_due(
    keys: Option<&Jwks>,
    fetched_at: Option<i64>,
    tried_at: Option<i64>,
    kid: Option<&str>,
    now: i64,
    max_age: i64,
) -> bool {
    let since_try = |min: i64| tried_at.is_none_or(|t| now.saturating_sub(t) >= min);
    match keys {
        None => since_try(5),
        Some(keys) => {
            let unknown_kid = kid.is_some_and(|k| !keys.has_kid(k));
            let stale = fetched_at.is_none_or(|f| now.saturating_sub(f) >= max_age);
            (unknown_kid || stale) && since_try(60)
        }
    }
}

#[cfg(test)]
mod tests;
