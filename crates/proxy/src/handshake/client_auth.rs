//! SCRAM-SHA-256 (and -PLUS over TLS) between the client and Portcullis.
//! The exchange itself is the pure state machine in [`crate::auth::scram`];
//! this file only moves its messages.

use bytes::BytesMut;
use portcullis_wire::decode;
use portcullis_wire::encode;
use portcullis_wire::framing::{Limits, Next, Splitter};
use portcullis_wire::tags::frontend as fe;
use portcullis_wire::{sqlstate, Refusal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::info;

use std::sync::Arc;

use portcullis_identity::Identity;

use super::Ended;
use crate::auth::identity;
use crate::auth::scram::{self, Binding, ScramError, ScramServer};
use crate::context::ConnContext;
use crate::metrics::ErrorKind;
use crate::runtime::UserRuntime;
use crate::stream::ClientStream;

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
) -> Result<BytesMut, ReadFail> {
    const MAX_AUTH_MESSAGE: usize = 16 << 10;
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
                    "expected a SASL response message during authentication",
                )))
            }
        }
    }
}

async fn next_message(
    stream: ClientStream,
    buf: &mut BytesMut,
) -> Result<(ClientStream, BytesMut), Ended> {
    let mut stream = stream;
    match read_auth_message(&mut stream, buf).await {
        Ok(m) => Ok((stream, m)),
        Err(ReadFail::Gone) => Err(Ended::Quietly),
        Err(ReadFail::Refused(r)) => Err(Ended::Refused(stream, ErrorKind::ClientProtocol, r)),
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
    .hint("Check the user name and password Portcullis knows you by.")
}

fn scram_refusal(user: &str, e: &ScramError) -> Refusal {
    match e {
        ScramError::InvalidProof => auth_failed(user),
        other => Refusal::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("SCRAM authentication failed: {other}"),
        ),
    }
}

fn printable(s: &str) -> String {
    s.chars().take(64).filter(|c| !c.is_control()).collect()
}

/// A client that proved who it is: the user it proved it against, and
/// the identity that makes it.
pub struct Authenticated {
    pub stream: ClientStream,
    pub buf: BytesMut,
    pub user: Arc<UserRuntime>,
    pub identity: Identity,
}

pub async fn authenticate(
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

    let (s, msg) = next_message(stream, &mut buf).await?;
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

    let (s, msg) = next_message(stream, &mut buf).await?;
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
        user,
        identity,
    })
}
