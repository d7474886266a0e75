//! A password asked for in the clear, over TLS only: how clients present
//! Portcullis API keys and OIDC tokens. The password's shape decides who
//! checks it (`pck_…` a key, `eyJ….….…` a token); nothing here trusts the
//! startup user name until the credential has named the same one.

use bytes::BytesMut;
use portcullis_identity::keys;
use portcullis_identity::oidc;
use portcullis_identity::Identity;
use portcullis_wire::{decode, encode, sqlstate, Refusal};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use super::{auth_failed, next_message, printable, Authenticated};
use crate::context::{ConnContext, Shared};
use crate::handshake::Ended;
use crate::metrics::ErrorKind;
use crate::runtime::Runtime;
use crate::stream::ClientStream;

/// Who `user` with `password` is, for a caller outside a client session
/// (the approvals API): a configured SCRAM user by its password, anyone
/// else by an API key or OIDC token, exactly as at a login.
pub(crate) async fn identify(
    user: &str,
    password: &[u8],
    shared: &Shared,
    runtime: &Runtime,
) -> Result<Identity, Failure> {
    if let Some(u) = runtime.users.get(user) {
        let u = u.clone();
        let password = password.to_vec();
        // PBKDF2: off the async threads.
        let matches = tokio::task::spawn_blocking(move || {
            u.verifier
                .matches_password(&portcullis_config::prepare_password(&password))
                .then(|| crate::auth::identity::of_scram_user(&u.config, false))
        })
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
        return matches.ok_or_else(|| Failure::Refused("wrong password".into()));
    }
    verify(password, user, shared, runtime).await
}

/// Why a password did not prove an identity.
pub(crate) enum Failure {
    /// The credential is wrong; the log gets the reason, the client the
    /// same answer as for a wrong password.
    Refused(String),
    /// Portcullis could not check it (the store failed): fail closed.
    Unavailable(String),
}

pub(super) async fn authenticate(
    mut stream: ClientStream,
    mut buf: BytesMut,
    user: &str,
    ctx: &ConnContext,
) -> Result<Authenticated, Ended> {
    if !stream.is_tls() {
        // method_for never chooses this without TLS; kept as a wall.
        return Err(Ended::Dropped(
            ErrorKind::Internal,
            "a cleartext password was about to be asked for without TLS".into(),
        ));
    }
    let mut out = BytesMut::with_capacity(16);
    encode::authentication_cleartext_password(&mut out);
    stream.write_all(&out).await.map_err(|_| Ended::Quietly)?;

    let (stream, msg) = next_message(stream, &mut buf, "a password message").await?;
    let password = match decode::password(decode::body(&msg)) {
        Ok(p) => p,
        Err(e) => {
            return Err(Ended::Refused(
                stream,
                ErrorKind::ClientProtocol,
                Refusal::protocol(&e),
            ))
        }
    };
    match verify(password, user, &ctx.shared, &ctx.runtime).await {
        Ok(identity) => {
            info!(user = %printable(user), method = %identity.proof, credential = identity.proof.credential().unwrap_or_default(), "client authenticated");
            Ok(Authenticated {
                stream,
                buf,
                identity,
                max_connections: None,
            })
        }
        Err(Failure::Refused(reason)) => {
            info!(user = %printable(user), %reason, "client authentication failed");
            Err(Ended::Refused(
                stream,
                ErrorKind::ClientAuth,
                auth_failed(user),
            ))
        }
        Err(Failure::Unavailable(error)) => {
            warn!(user = %printable(user), %error, "could not check a credential");
            let r = Refusal::fatal(
                sqlstate::SYSTEM_ERROR,
                "Portcullis could not check the credential",
            )
            .hint("Try again later; the cause is in the Portcullis log.");
            Err(Ended::Refused(stream, ErrorKind::Internal, r))
        }
    }
}

/// Who `password` proves the client to be, when it proves `user`.
pub(crate) async fn verify(
    password: &[u8],
    user: &str,
    shared: &Shared,
    runtime: &Runtime,
) -> Result<Identity, Failure> {
    let refused = |why: &str| Failure::Refused(why.to_owned());
    let text = std::str::from_utf8(password).map_err(|_| refused("the password is not UTF-8"))?;
    if oidc::looks_like_jws(text) {
        return verify_token(text, user, shared, runtime).await;
    }
    // The store stays open across reloads; whether keys are accepted is
    // the configuration in force's to say.
    let keys_on = runtime.config.identity.api_keys;
    let store = match shared.keys.as_ref().filter(|_| keys_on) {
        Some(store) if keys::looks_like_key(text) => store.clone(),
        Some(_) => return Err(refused("the password is neither an API key nor a token")),
        None => return Err(refused("the password is not a token, and API keys are off")),
    };
    let presented =
        keys::parse(text).ok_or_else(|| refused(&keys::Refused::Malformed.to_string()))?;
    let id = presented.id;
    let stored = tokio::task::spawn_blocking(move || store.find(id))
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    keys::check(presented, user, keys::unix_now(), stored.as_ref())
        .map_err(|e| Failure::Refused(e.to_string()))
}

/// An OIDC token: the configured issuer it names (unverified, only to
/// choose the issuer), that issuer's keys, then full validation.
async fn verify_token(
    token: &str,
    user: &str,
    shared: &Shared,
    runtime: &Runtime,
) -> Result<Identity, Failure> {
    let issuers = &runtime.issuers;
    let bound = issuers
        .iter()
        .map(|i| i.policy.max_token_bytes)
        .max()
        .ok_or_else(|| Failure::Refused("a token, and no OIDC issuer is configured".into()))?;
    let iss = oidc::peek_issuer(token, bound).ok_or_else(|| {
        Failure::Refused("the token is malformed, oversized or names no issuer".into())
    })?;
    let issuer = issuers
        .iter()
        .find(|i| i.policy.issuer == iss)
        .ok_or_else(|| Failure::Refused("the token's issuer is not a configured one".into()))?;
    let kid = oidc::peek_kid(token, issuer.policy.max_token_bytes);
    let keys = shared
        .oidc_keys
        .keys(issuer, kid.as_deref())
        .await
        .ok_or_else(|| {
            Failure::Unavailable(format!(
                "no signing keys for issuer {iss} (the provider could not be reached)"
            ))
        })?;
    oidc::validate(token, user, keys::unix_now(), &issuer.policy, &keys)
        .map_err(|e| Failure::Refused(e.to_string()))
}
