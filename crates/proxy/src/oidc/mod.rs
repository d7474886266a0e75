//! OIDC logins on the proxy side: the trusted issuers of the configuration
//! in force, and each issuer's signing keys, fetched from its discovery
//! document and JWKS and cached across reloads. Validation itself is
//! `portcullis_identity::oidc::validate`, pure; this module decides only
//! when keys are fetched (`refresh_due`, also pure) and fetches them.
//!
//! - Keys are fetched on first use, when a token names a `kid` the cache
//!   does not have (at most once a minute per issuer), and when they are
//!   older than `keys_max_age` (in the background: the login goes on with
//!   the keys it has).
//! - A failed fetch keeps the keys already cached: a provider that is down
//!   does not break logins with tokens it signed before.
//! - One fetch per issuer at a time; logins that need it wait for it.

pub mod fetch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_config::OidcIssuer;
use portcullis_identity::keys::unix_now;
use portcullis_identity::oidc::{self, IssuerPolicy, Jwks};
use serde_json::Value;
use tracing::{info, warn};

/// How long one fetch (a discovery document or a key set) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One trusted issuer of the configuration in force.
pub struct Issuer {
    pub policy: IssuerPolicy,
    discovery: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    keys_max_age: i64,
    /// Names the key cache: the issuer, where its keys come from and the
    /// roots they are fetched under. A reload that changes any of them
    /// starts a cache of its own rather than keep keys fetched otherwise.
    cache_key: String,
}

/// Cached keys older than this many `keys_max_age` are no longer used,
/// even when no fresh ones can be fetched: a key the provider withdrew
/// must not stay trusted for as long as its discovery can be blocked.
const HARD_MAX_AGE_FACTOR: i64 = 24;

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("identity.oidc issuer {issuer}: TLS roots: {error}")]
    Roots { issuer: String, error: String },
}

impl Issuer {
    pub fn new(
        config: &OidcIssuer,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Issuer, IssuerError> {
        let needs_tls =
            config.discovery().starts_with("https://") || config.issuer.starts_with("https://");
        let tls = if needs_tls {
            Some(
                portcullis_audit::tls::client_config(ca_file).map_err(|e| IssuerError::Roots {
                    issuer: config.issuer.clone(),
                    error: e.to_string(),
                })?,
            )
        } else {
            None
        };
        Ok(Issuer {
            policy: IssuerPolicy {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                algorithms: config.algorithms.clone(),
                leeway_secs: i64::try_from(config.leeway.0.as_secs()).unwrap_or(600),
                max_token_bytes: config.max_token_bytes,
                user_claim: config.user_claim.clone(),
                groups_claim: config.groups_claim.clone(),
                agents: config.agents.clone(),
                services: config.services.clone(),
                allowed_domains: config.allowed_domains.clone(),
                hosted_domain: config.hosted_domain.clone(),
            },
            cache_key: format!(
                "{}\n{}\n{}",
                config.issuer,
                config.discovery(),
                ca_file.map(|p| p.display().to_string()).unwrap_or_default()
            ),
            discovery: config.discovery(),
            tls,
            keys_max_age: i64::try_from(config.keys_max_age.0.as_secs()).unwrap_or(i64::MAX),
        })
    }
}

/// Every issuer's cached keys, by issuer URL. Lives in `Shared`, so a
/// reload (which rebuilds the issuers) keeps them.
#[derive(Default)]
pub struct KeyCaches {
    by_issuer: Mutex<HashMap<String, Arc<IssuerKeys>>>,
}

#[derive(Default)]
struct IssuerKeys {
    state: Mutex<KeyState>,
    /// Held while fetching, so that one fetch runs at a time.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default, Clone)]
struct KeyState {
    keys: Option<Arc<Jwks>>,
    fetched_at: Option<i64>,
    tried_at: Option<i64>,
}

impl KeyCaches {
    fn of(&self, issuer: &str) -> Arc<IssuerKeys> {
        self.by_issuer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(issuer.to_owned())
            .or_default()
            .clone()
    }

    /// The issuer's keys for a token with key id `kid`, fetched first when
    /// [`oidc::refresh_due`] says so. `None` when no keys were ever had.
    pub async fn keys(&self, issuer: &Issuer, kid: Option<&str>) -> Option<Arc<Jwks>> {
        let cache = self.of(&issuer.cache_key);
        let hard = issuer.keys_max_age.saturating_mul(HARD_MAX_AGE_FACTOR);
        let usable = |s: &KeyState| {
            let fresh = s
                .fetched_at
                .is_some_and(|f| unix_now().saturating_sub(f) < hard);
            s.keys.clone().filter(|_| fresh)
        };
        self.fresh_enough(&cache, issuer, kid).await;
        // Keys in hand but too old to trust: fetch now, not behind the
        // login (the background refresh may not have come back yet).
        let state = cache.snapshot();
        if state.keys.is_some() && usable(&state).is_none() {
            cache.refresh(&IssuerRef::of(issuer), None, true).await;
        }
        // The keys and their age from one snapshot.
        usable(&cache.snapshot())
    }

    async fn fresh_enough(
        &self,
        cache: &Arc<IssuerKeys>,
        issuer: &Issuer,
        kid: Option<&str>,
    ) -> Option<Arc<Jwks>> {
        let now = unix_now();
        let state = cache.snapshot();
        if !oidc::refresh_due(
            state.keys.as_deref(),
            state.fetched_at,
            state.tried_at,
            kid,
            now,
            issuer.keys_max_age,
        ) {
            return state.keys;
        }
        let usable = state
            .keys
            .as_ref()
            .is_some_and(|k| kid.is_none_or(|kid| k.has_kid(kid)));
        if usable {
            // Only stale: refresh behind the login.
            let (cache, issuer) = (cache.clone(), IssuerRef::of(issuer));
            tokio::spawn(async move { cache.refresh(&issuer, None, false).await });
            return state.keys;
        }
        cache.refresh(&IssuerRef::of(issuer), kid, false).await;
        cache.snapshot().keys
    }
}

/// What a fetch needs of an issuer, owned (a background refresh outlives
/// the login that started it).
struct IssuerRef {
    issuer: String,
    discovery: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    keys_max_age: i64,
}

impl IssuerRef {
    fn of(i: &Issuer) -> IssuerRef {
        IssuerRef {
            issuer: i.policy.issuer.clone(),
            discovery: i.discovery.clone(),
            tls: i.tls.clone(),
            keys_max_age: i.keys_max_age,
        }
    }
}

impl IssuerKeys {
    fn snapshot(&self) -> KeyState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches the keys when they are due (or, with `force`, when they
    /// were not tried in the last 5 seconds).
    async fn refresh(&self, issuer: &IssuerRef, kid: Option<&str>, force: bool) {
        let _one = self.fetching.lock().await;
        // Another login may have fetched while this one waited.
        let s = self.snapshot();
        let now = unix_now();
        let due = if force {
            s.tried_at.is_none_or(|t| now.saturating_sub(t) >= 5)
        } else {
            oidc::refresh_due(
                s.keys.as_deref(),
                s.fetched_at,
                s.tried_at,
                kid,
                now,
                issuer.keys_max_age,
            )
        };
        if !due {
            return;
        }
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tried_at = Some(unix_now());
        match fetch_keys(issuer).await {
            Ok(keys) => {
                info!(issuer = %issuer.issuer, keys = keys.keys.len(), "OIDC signing keys fetched");
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.keys = Some(Arc::new(keys));
                st.fetched_at = Some(unix_now());
            }
            Err(error) => {
                let cached = self.snapshot().keys.is_some();
                warn!(issuer = %issuer.issuer, %error, keeping_cached_keys = cached, "could not fetch OIDC signing keys");
            }
        }
    }
}

async fn fetch_keys(issuer: &IssuerRef) -> Result<Jwks, String> {
    let body = fetch::get(&issuer.discovery, issuer.tls.as_ref(), FETCH_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|_| "the discovery document is not JSON".to_owned())?;
    // OpenID Connect Discovery 1.0, 4.3: the document's issuer must be the
    // one it was fetched for.
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err("the discovery document names another issuer".into());
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("the discovery document has no jwks_uri")?;
    let body = fetch::get(jwks_uri, issuer.tls.as_ref(), FETCH_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let keys = Jwks::parse(&body).map_err(|e| format!("the key set: {e}"))?;
    if keys.keys.is_empty() {
        return Err("the key set has no signing key Portcullis can use".into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_configuration_allows_exactly_what_the_validator_verifies() {
        assert_eq!(
            portcullis_config::OIDC_ALGORITHMS,
            portcullis_identity::oidc::SUPPORTED_ALGORITHMS
        );
    }
}
