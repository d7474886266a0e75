//! A client certificate (mutual TLS): the TLS handshake has verified its
//! chain to the configured client CA; here it must name the user the
//! client logs in as. No password is asked for.

use portcullis_identity::certs::{self, CertPolicy};
use portcullis_wire::{sqlstate, Refusal};
use tracing::info;

use super::{printable, Authenticated};
use crate::handshake::Ended;
use crate::metrics::ErrorKind;
use crate::stream::ClientStream;
use bytes::BytesMut;

/// `async` like the other methods, so the handshake awaits each the same
/// way (and the large `Ended` moves into the future, not onto the stack).
pub(super) async fn authenticate(
    stream: ClientStream,
    buf: BytesMut,
    user: &str,
    policy: &CertPolicy,
) -> Result<Authenticated, Ended> {
    let Some(der) = stream.peer_certificate() else {
        // method_for never chooses this without a certificate; kept as a
        // wall.
        return Err(Ended::Dropped(
            ErrorKind::Internal,
            "certificate authentication without a client certificate".into(),
        ));
    };
    match certs::identify(der, user, policy) {
        Ok(identity) => {
            info!(user = %printable(user), method = %identity.proof, credential = identity.proof.credential().unwrap_or_default(), "client authenticated");
            Ok(Authenticated {
                stream,
                buf,
                identity,
                max_connections: None,
            })
        }
        Err(reason) => {
            info!(user = %printable(user), %reason, "client certificate authentication failed");
            // As PostgreSQL words its own cert method's failure.
            let r = Refusal::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "certificate authentication failed for user \"{}\"",
                    printable(user)
                ),
            )
            .hint("Connect with the user name your client certificate carries, or without the certificate.");
            Err(Ended::Refused(stream, ErrorKind::ClientAuth, r))
        }
    }
}
