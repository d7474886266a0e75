//! Client authentication: the method is chosen per user before the first
//! authentication message, then one module runs it and returns the
//! [`Identity`] it proved.
//!
//! - A configured SCRAM user gets SASL (SCRAM-SHA-256, and -PLUS over TLS).
//! - Any other name, over TLS with a client certificate from the
//!   configured client CA (`[identity.certificates]`), is who the
//!   certificate names ([`certificate`]): the name must be the user name.
//! - Any other name, over TLS, with API keys on or an OIDC issuer
//!   configured, is asked for its password in the clear ([`password`]):
//!   an API key or a token is a bearer secret that must reach Portcullis
//!   whole, which TLS protects in transit.
//! - Anything else (an unknown name over plaintext, or with no other
//!   method on) runs SCRAM against a mock verifier and fails like a wrong
//!   password. A token or key typed as the password then never crosses a
//!   plaintext connection: SCRAM does not send the password.
//!
//! The choice shows whether a name is a configured SCRAM user (SASL is
//! offered) or not (a password is asked for), as PostgreSQL's per-user
//! pg_hba methods do. It never shows whether a key for the name exists.

mod certificate;
mod password;

pub(crate) use password::{identify, Failure as CredentialFailure};
mod scram;

use bytes::BytesMut;
use portcullis_identity::Identity;
use portcullis_wire::framing::{Limits, Next, Splitter};
use portcullis_wire::tags::frontend as fe;
use portcullis_wire::{sqlstate, Refusal};
use tokio::io::AsyncReadExt;

use crate::context::ConnContext;
use crate::handshake::Ended;
use crate::metrics::ErrorKind;
use crate::stream::ClientStream;

/// A client that proved who it is.
pub struct Authenticated {
    pub stream: ClientStream,
    pub buf: BytesMut,
    pub identity: Identity,
    /// Most concurrent sessions for this identity (from its configured
    /// user), `None` for no limit.
    pub max_connections: Option<usize>,
}

/// How a client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Scram,
    /// The client certificate the TLS handshake verified.
    Certificate,
    /// A cleartext password request, over TLS only.
    Password,
}

/// The method for user name `user`, before any authentication message.
/// `verified_certificate`: the client presented a certificate the TLS
/// handshake verified against the client CA (so TLS is on).
fn method_for(
    known_scram_user: bool,
    tls: bool,
    verified_certificate: bool,
    passwords_accepted: bool,
) -> Method {
    if known_scram_user {
        Method::Scram
    } else if verified_certificate {
        Method::Certificate
    } else if tls && passwords_accepted {
        Method::Password
    } else {
        Method::Scram
    }
}

/// Authenticates the client as `user` (the startup user name).
pub async fn authenticate(
    stream: ClientStream,
    buf: BytesMut,
    user: &str,
    ctx: &ConnContext,
) -> Result<Authenticated, Ended> {
    let known = ctx.runtime.users.contains_key(user);
    let keys_on = ctx.shared.keys.is_some() && ctx.runtime.config.identity.api_keys;
    let passwords = keys_on || !ctx.runtime.issuers.is_empty();
    let policy = ctx.runtime.cert_policy.as_ref();
    let certificate = policy.is_some() && stream.peer_certificate().is_some();
    match method_for(known, stream.is_tls(), certificate, passwords) {
        Method::Scram => scram::authenticate(stream, buf, user, ctx).await,
        Method::Certificate => match policy {
            Some(policy) => certificate::authenticate(stream, buf, user, policy).await,
            None => scram::authenticate(stream, buf, user, ctx).await,
        },
        Method::Password => password::authenticate(stream, buf, user, ctx).await,
    }
}

fn auth_failed(user: &str) -> Refusal {
    Refusal::fatal(
        sqlstate::INVALID_PASSWORD,
        format!(
            "password authentication failed for user \"{}\"",
            printable(user)
        ),
    )
    .hint("Check the user name and the password, token or API key Portcullis knows you by.")
}

fn printable(s: &str) -> String {
    s.chars().take(64).filter(|c| !c.is_control()).collect()
}

/// Why reading an authentication message stopped.
enum ReadFail {
    /// The client went away or gave up.
    Gone,
    Refused(Refusal),
}

/// Reads one message during authentication: a password-type message, or a
/// Terminate (the client gave up).
async fn read_auth_message(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    expected: &'static str,
) -> Result<BytesMut, ReadFail> {
    // Room for the largest token `[[identity.oidc]] max_token_bytes`
    // allows, and no more: nothing is authenticated yet.
    const MAX_AUTH_MESSAGE: usize = (32 << 10) + 64;
    let mut splitter = Splitter::new(Limits::frontend(0));
    loop {
        match splitter.next(buf) {
            Ok(Next::Whole {
                tag: fe::PASSWORD,
                len,
            }) if len <= MAX_AUTH_MESSAGE => return Ok(buf.split_to(len)),
            Ok(Next::Whole {
                tag: fe::TERMINATE, ..
            }) => return Err(ReadFail::Gone),
            Ok(Next::NeedMore { hint }) if hint <= MAX_AUTH_MESSAGE => {
                buf.reserve(1024);
                match stream.read_buf(buf).await {
                    Ok(0) | Err(_) => return Err(ReadFail::Gone),
                    Ok(_) => {}
                }
            }
            Err(e) => return Err(ReadFail::Refused(Refusal::protocol(&e))),
            Ok(_) => {
                return Err(ReadFail::Refused(Refusal::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("expected {expected} during authentication"),
                )))
            }
        }
    }
}

/// The client's next authentication message (`expected` names it in the
/// refusal when something else comes).
async fn next_message(
    stream: ClientStream,
    buf: &mut BytesMut,
    expected: &'static str,
) -> Result<(ClientStream, BytesMut), Ended> {
    let mut stream = stream;
    match read_auth_message(&mut stream, buf, expected).await {
        Ok(m) => Ok((stream, m)),
        Err(ReadFail::Gone) => Err(Ended::Quietly),
        Err(ReadFail::Refused(r)) => Err(Ended::Refused(stream, ErrorKind::ClientProtocol, r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_asked_for_only_over_tls_from_names_that_are_not_scram_users() {
        assert_eq!(method_for(false, true, false, true), Method::Password);
        assert_eq!(method_for(true, true, false, true), Method::Scram);
        assert_eq!(method_for(false, false, false, true), Method::Scram);
        assert_eq!(method_for(false, true, false, false), Method::Scram);
        assert_eq!(method_for(true, false, false, false), Method::Scram);
    }

    #[test]
    fn a_verified_certificate_proves_names_that_are_not_scram_users() {
        assert_eq!(method_for(false, true, true, true), Method::Certificate);
        assert_eq!(method_for(false, true, true, false), Method::Certificate);
        // A SCRAM user keeps SCRAM whatever certificate it presents.
        assert_eq!(method_for(true, true, true, true), Method::Scram);
    }
}
