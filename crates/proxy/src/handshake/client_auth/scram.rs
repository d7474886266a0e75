//! SCRAM-SHA-256 (and -PLUS over TLS) between the client and Portcullis.
//! The exchange itself is the pure state machine in [`crate::auth::scram`];
//! this file only moves its messages.

use bytes::BytesMut;
use portcullis_wire::decode;
use portcullis_wire::encode;
use portcullis_wire::{sqlstate, Refusal};
use tokio::io::AsyncWriteExt;
use tracing::info;

use super::{auth_failed, next_message, printable, Authenticated};
use crate::auth::identity;
use crate::auth::scram::{self, Binding, ScramError, ScramServer};
use crate::context::ConnContext;
use crate::handshake::Ended;
use crate::metrics::ErrorKind;
use crate::stream::ClientStream;

fn scram_refusal(user: &str, e: &ScramError) -> Refusal {
    match e {
        ScramError::InvalidProof => auth_failed(user),
        other => Refusal::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("SCRAM authentication failed: {other}"),
        ),
    }
}

/// Runs a SCRAM-SHA-256(-PLUS) exchange; an unknown user runs it against
/// a mock verifier and always fails.
pub(super) async fn authenticate(
    mut stream: ClientStream,
    mut buf: BytesMut,
    user: &str,
    ctx: &ConnContext,
) -> Result<Authenticated, Ended> {
    let binding = match (&stream, ctx.runtime.server_tls.as_ref()) {
        (ClientStream::Tls(_), Some(tls)) => match &tls.end_point {
            Some(hash) => Binding::TlsServerEndPoint(hash.clone()),
            None => Binding::TlsWithoutBinding,
        },
        _ => Binding::NoTls,
    };
    // An unknown user still runs the whole exchange (against a mock
    // verifier), so that the answer does not tell which users exist.
    let known_user = ctx.runtime.users.get(user).cloned();
    let verifier = known_user.as_ref().map(|u| u.verifier.clone());
    let known = verifier.is_some();
    let mut out = BytesMut::with_capacity(256);
    encode::authentication_sasl(&mut out, scram::mechanisms(&binding).iter().copied());
    let mut server = ScramServer::new(verifier, user, &ctx.shared.mock_secret, binding);
    stream.write_all(&out).await.map_err(|_| Ended::Quietly)?;

    let (s, msg) = next_message(stream, &mut buf, "a SASL response").await?;
    stream = s;
    let initial = match decode::sasl_initial_response(decode::body(&msg)) {
        Ok(i) => i,
        Err(e) => {
            return Err(Ended::Refused(
                stream,
                ErrorKind::ClientProtocol,
                Refusal::protocol(&e),
            ))
        }
    };
    let server_first = match server.client_first(initial.mechanism, initial.data.unwrap_or(&[])) {
        Ok(m) => m,
        Err(e) => {
            return Err(Ended::Refused(
                stream,
                ErrorKind::ClientAuth,
                scram_refusal(user, &e),
            ))
        }
    };
    out.clear();
    encode::authentication_sasl_continue(&mut out, &server_first);
    stream.write_all(&out).await.map_err(|_| Ended::Quietly)?;

    let (s, msg) = next_message(stream, &mut buf, "a SASL response").await?;
    stream = s;
    let server_final = match server.client_final(decode::body(&msg)) {
        Ok(m) => m,
        Err(e) => {
            info!(user = %printable(user), known, reason = %e, "client authentication failed");
            return Err(Ended::Refused(
                stream,
                ErrorKind::ClientAuth,
                scram_refusal(user, &e),
            ));
        }
    };
    // A proof only verifies against a known user's verifier (the mock
    // one never does); checked again before anything says it succeeded.
    let Some(user) = known_user else {
        return Err(Ended::Dropped(
            ErrorKind::Internal,
            "an unknown user passed authentication".into(),
        ));
    };
    out.clear();
    encode::authentication_sasl_final(&mut out, &server_final);
    stream.write_all(&out).await.map_err(|_| Ended::Quietly)?;
    info!(user = %printable(user.config.name.as_str()), channel_binding = server.channel_bound(), "client authenticated");
    let identity = identity::of_scram_user(&user.config, server.channel_bound());
    Ok(Authenticated {
        stream,
        buf,
        max_connections: user.config.max_connections,
        identity,
    })
}
