//! Everything between accepting a TCP connection and the first
//! ReadyForQuery: encryption negotiation, the startup packet, client
//! authentication, choosing the target and logging in upstream.

mod client_auth;
mod negotiate;
pub mod params;

use std::sync::Arc;

use bytes::BytesMut;
use portcullis_identity::Identity;
use portcullis_wire::{encode, sqlstate, ProtocolVersion, Refusal};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::cancel::CancelGuard;
use crate::context::{ConnContext, UserSlot};
use crate::metrics::ErrorKind;
use crate::runtime::{Runtime, TargetRuntime};
use crate::stream::ClientStream;
use crate::upstream::{self, Upstream, UpstreamError};
pub(crate) use client_auth::{identify, CredentialFailure};

pub use negotiate::Opening;

/// A client that is logged in and connected to its target.
pub struct Established {
    pub client: ClientStream,
    /// Client bytes already read past the handshake.
    pub client_buf: BytesMut,
    pub upstream: Upstream,
    /// Who the client proved to be: what the guard and the audit trail
    /// name.
    pub identity: Arc<Identity>,
    pub target: Arc<TargetRuntime>,
    pub protocol: ProtocolVersion,
    pub cancel_guard: CancelGuard,
    pub user_slot: UserSlot,
    /// The session's search_path at login, as the server reported it.
    pub search_path: Option<String>,
    /// The `[[limit]]`s in force for the identity.
    pub limits: portcullis_config::EffectiveLimits,
    /// Its rows-changed budgets (shared with its other sessions).
    pub budgets: crate::row_budgets::SessionBudgets,
}

/// How a handshake ended without a session.
pub enum Ended {
    /// A cancel request was handled, or the client went away.
    Quietly,
    /// The client must be told why; the stream is where to tell it, the
    /// kind how metrics count it.
    Refused(ClientStream, ErrorKind, Refusal),
    /// Too late or too broken to say anything.
    Dropped(ErrorKind, String),
}

/// Runs the whole handshake for one accepted connection.
pub async fn handshake(tcp: TcpStream, ctx: &ConnContext) -> Result<Established, Ended> {
    let runtime = ctx.runtime.clone();
    let opening = negotiate::open(tcp, runtime.server_tls.as_ref()).await?;
    let (mut client, buf, version, params) = match opening {
        Opening::Cancel { pid, key } => {
            handle_cancel(ctx, pid, &key).await;
            return Err(Ended::Quietly);
        }
        Opening::Startup {
            stream,
            buf,
            version,
            params,
        } => (stream, buf, version, params),
    };

    let params = match params::check(params.iter()) {
        Ok(p) => p,
        Err(r) => return Err(Ended::Refused(client, ErrorKind::Refused, r)),
    };
    if !client.is_tls() && !ctx.listener.allow_plaintext {
        let r = Refusal::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "Portcullis requires TLS on this listener",
        )
        .hint("Connect with sslmode=require or stronger.");
        return Err(Ended::Refused(client, ErrorKind::Tls, r));
    }

    // Answer newer minor versions and unknown protocol options the way
    // PostgreSQL does, before authentication.
    let protocol = version.min(ProtocolVersion::LATEST);
    if version > ProtocolVersion::LATEST || !params.protocol_options.is_empty() {
        let mut out = BytesMut::new();
        encode::negotiate_protocol_version(
            &mut out,
            protocol,
            params.protocol_options.iter().map(String::as_str),
        );
        write(&mut client, &out).await?;
    }

    let client_auth::Authenticated {
        stream: mut client,
        buf,
        identity,
        max_connections,
    } = client_auth::authenticate(client, buf, &params.user, ctx).await?;

    let mut out = BytesMut::new();
    encode::authentication_ok(&mut out);
    write(&mut client, &out).await?;

    let Some(target) = runtime.target(&params.target) else {
        return Err(Ended::Refused(
            client,
            ErrorKind::Refused,
            unknown_target(&runtime, &params.target),
        ));
    };
    let limits = crate::auth::identity::limits(&runtime.config, &identity);
    // The configured user's own maximum and the identity's limit: the
    // smaller holds.
    let max_sessions = match (max_connections, &limits.max_sessions) {
        (Some(a), Some((b, _))) => Some(a.min(*b)),
        (a, b) => a.or(b.as_ref().map(|(n, _)| *n)),
    };
    let user_slot = match ctx
        .shared
        .user_slots
        .acquire(&identity.subject, max_sessions)
    {
        Some(s) => s,
        None => {
            let why = match &limits.max_sessions {
                Some((n, name)) if Some(*n) == max_sessions => {
                    format!(" (the limit \"{name}\" allows {n} sessions)")
                }
                _ => String::new(),
            };
            let r = Refusal::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                format!("too many connections for user \"{}\"{why}", identity.subject),
            )
            .hint("Close idle sessions or ask an administrator to raise max_connections for this user.");
            return Err(Ended::Refused(client, ErrorKind::Limit, r));
        }
    };

    let max_timeout = limits
        .statement_timeout
        .as_ref()
        .map(|(t, _)| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
    let startup = params::upstream_params(&params.forward, &identity, max_timeout);
    let mut upstream = match upstream::connect(&target, target.login_for(&identity), &startup).await
    {
        Ok(u) => u,
        Err(e) => {
            warn!(target = %target.config.name, error = %e, "upstream login failed");
            let (kind, r) = upstream_refusal(&target, &e);
            return Err(Ended::Refused(client, kind, r));
        }
    };

    if let Some(r) = unsafe_startup_setting(&upstream.startup_messages) {
        return Err(Ended::Refused(client, ErrorKind::Refused, r));
    }
    // Statement judging needs the path names resolve through, which
    // depends on the role's and database's settings as well as the client's.
    let search_path = match upstream::simple_query(
        &mut upstream.stream,
        &mut upstream.leftover,
        "SHOW search_path",
    )
    .await
    {
        Ok(sets) => sets
            .first()
            .and_then(|rows| rows.first())
            .and_then(|row| row.first().cloned().flatten()),
        Err(e) => {
            warn!(target = %target.config.name, error = %e, "could not read search_path after login");
            None
        }
    };
    crate::catalog::ensure(&target).await;
    // The client gets the server's parameters, then a key of ours for the
    // real backend PID.
    let cancel_guard = ctx
        .shared
        .cancel
        .register(protocol.cancel_key_len(), upstream.cancel.clone());
    out.clear();
    out.extend_from_slice(&upstream.startup_messages);
    encode::backend_key_data(&mut out, upstream.pid, &cancel_guard.key);
    encode::ready_for_query(&mut out, upstream.status);
    write(&mut client, &out).await?;
    info!(
        user = %identity.subject,
        kind = %identity.kind,
        method = %identity.proof,
        target = %target.config.name,
        environment = %target.config.environment,
        backend_pid = upstream.pid,
        role = %upstream.role,
        profile = upstream.profile.as_deref().unwrap_or(""),
        tls = client.is_tls(),
        "session established"
    );
    let budgets = crate::row_budgets::SessionBudgets::of(
        &ctx.shared.row_budgets,
        &limits.rows_changed,
        &identity.subject,
    );
    Ok(Established {
        client,
        client_buf: buf,
        upstream,
        identity: Arc::new(identity),
        target,
        protocol,
        cancel_guard,
        user_slot,
        search_path,
        budgets,
        limits,
    })
}

/// Negotiates encryption, then refuses the connection with `refusal`
/// (a cancel request is still delivered).
pub async fn refuse_after_negotiation(tcp: TcpStream, ctx: &ConnContext, refusal: Refusal) {
    match negotiate::open(tcp, ctx.runtime.server_tls.as_ref()).await {
        Ok(Opening::Cancel { pid, key }) => handle_cancel(ctx, pid, &key).await,
        Ok(Opening::Startup { mut stream, .. }) => {
            let _ = stream.write_all(&refusal.to_bytes()).await;
            let _ = stream.flush().await;
            let _ = stream.shutdown().await;
        }
        Err(Ended::Refused(mut stream, _, r)) => {
            let _ = stream.write_all(&r.to_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Err(_) => {}
    }
}

async fn write(client: &mut ClientStream, bytes: &[u8]) -> Result<(), Ended> {
    client
        .write_all(bytes)
        .await
        .map_err(|e| Ended::Dropped(ErrorKind::ClientProtocol, format!("write failed: {e}")))
}

/// A lexing hazard among the server's startup ParameterStatus messages
/// (from the client's startup parameters or the role's or database's
/// defaults).
fn unsafe_startup_setting(messages: &[u8]) -> Option<Refusal> {
    portcullis_wire::decode::parameter_statuses(messages)
        .into_iter()
        .find_map(|(name, value)| crate::session::lexing::hazard(name, value))
}

fn unknown_target(runtime: &Runtime, name: &str) -> Refusal {
    let shown: String = name.chars().take(64).filter(|c| !c.is_control()).collect();
    Refusal::fatal(
        sqlstate::INVALID_CATALOG_NAME,
        format!("database \"{shown}\" is not a target served by Portcullis"),
    )
    .hint(format!(
        "Set dbname to one of the configured targets: {}.",
        runtime.target_names().join(", ")
    ))
}

/// What the client is told when the upstream login failed, and how
/// metrics count it (the login's own error stays in the log).
fn upstream_refusal(target: &TargetRuntime, e: &UpstreamError) -> (ErrorKind, Refusal) {
    let name = &target.config.name;
    match e {
        UpstreamError::Server { code, .. } if code == sqlstate::TOO_MANY_CONNECTIONS => (
            ErrorKind::UpstreamConnect,
            Refusal::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                format!("the database for target \"{name}\" has too many connections"),
            )
            .hint("Try again later."),
        ),
        UpstreamError::Server { code, .. } if code == sqlstate::CANNOT_CONNECT_NOW => (
            ErrorKind::UpstreamConnect,
            Refusal::fatal(
                sqlstate::CANNOT_CONNECT_NOW,
                format!("the database for target \"{name}\" is starting up or shutting down"),
            )
            .hint("Try again later."),
        ),
        _ => (
            match e {
                UpstreamError::Server { .. } | UpstreamError::Scram(_) | UpstreamError::NoPassword => {
                    ErrorKind::UpstreamAuth
                }
                _ => ErrorKind::UpstreamConnect,
            },
            Refusal::fatal(
                sqlstate::CONNECTION_FAILURE,
                format!("could not connect to the database for target \"{name}\""),
            )
            .hint("The database is unreachable or refused Portcullis; the cause is in the Portcullis log. Try again later or contact your administrator."),
        ),
    }
}

async fn handle_cancel(ctx: &ConnContext, pid: i32, key: &[u8]) {
    match ctx.shared.cancel.lookup(pid, key) {
        Some(crate::cancel::Cancel::Held) => {
            ctx.shared.metrics.cancel_requests(true);
            info!(
                backend_pid = pid,
                "cancel request ended a wait for approval"
            );
        }
        Some(crate::cancel::Cancel::Upstream(target)) => {
            ctx.shared.metrics.cancel_requests(true);
            if let Err(e) = upstream::send_cancel(&target).await {
                warn!(error = %e, "could not deliver cancel request");
            } else {
                info!(backend_pid = pid, "cancel request forwarded");
            }
        }
        None => {
            ctx.shared.metrics.cancel_requests(false);
            warn!(backend_pid = pid, "cancel request with unknown key ignored");
        }
    }
}
