//! The relay between a logged-in client and its upstream connection.
//!
//! Two pumps run concurrently in the session's task: client→server and
//! server→client. Running them concurrently matters: a client that writes a
//! long pipeline while reading results must never find the proxy stuck
//! writing one way while the other way fills up. Each pump frames its
//! direction with [`portcullis_wire::Splitter`], looks at the few messages
//! the proxy must understand, and forwards everything as the original bytes.

mod auditing;
pub(crate) mod bind_values;
mod buffer;
mod client_pump;
mod function_call;
mod guarding;
mod holding;
pub mod lexing;
mod masking;
mod outbox;
mod pending;
mod pump_mode;
mod returned;
mod row_limit;
mod server_pump;
mod woken;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use portcullis_identity::keys::KeyId;
use portcullis_identity::Proof;
use portcullis_wire::{sqlstate, Refusal};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tracing::{info, warn};

use portcullis_audit::record::{Destination, EndReason, Source};

use crate::audit::records::{self, SessionFacts};
use crate::audit::{AuditTrail, TargetAudit};
use crate::context::Phase;
use crate::handshake::Established;
use crate::metrics::{ErrorKind, Metrics};

pub use function_call::LARGE_OBJECT_FUNCTIONS;

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The client sent Terminate.
    Terminated,
    /// The client closed its connection.
    ClientGone,
    /// The client broke the protocol or a limit: tell it and close
    /// (counted as a client protocol error).
    ClientRefused(Refusal),
    /// The upstream connection closed or failed.
    UpstreamLost(String),
    /// The server closed the connection after telling the client why
    /// (a FATAL ErrorResponse it sent, such as an administrator's
    /// pg_terminate_backend).
    UpstreamClosed,
    /// Every request sent so far has been answered (see
    /// `ServerPump::run`); not an end by itself.
    Answered,
    /// The upstream sent something that is not valid protocol.
    UpstreamProtocol(String),
    /// The session switched to a setting Portcullis cannot lex under
    /// (counted as refused).
    Unsafe(Refusal),
    /// A result could not be masked (a row over the size limit, a value
    /// the plan cannot rewrite, a row no description announced): the
    /// session ends rather than let it pass.
    Unmaskable(Refusal),
    IdleTimeout,
    Shutdown,
    /// The API key the session logged in with was revoked with
    /// `--end-sessions`.
    CredentialRevoked,
}

pub struct SessionOptions {
    pub idle_timeout: Option<Duration>,
    pub max_statement_bytes: usize,
}

/// What a session shares with the rest of the proxy.
pub struct Surroundings {
    pub metrics: Arc<Metrics>,
    pub phase: watch::Receiver<Phase>,
    /// The connection's span (see `server::serve_connection`).
    pub span: tracing::Span,
    pub session_id: String,
    pub audit: Option<Arc<AuditTrail>>,
    /// Keys revoked with `--end-sessions` (see `crate::revocations`).
    pub revoked: watch::Receiver<Arc<HashSet<KeyId>>>,
    /// Where statements held for approval are asked about.
    pub approvals: Option<Arc<crate::approval_desk::Desk>>,
}

/// Relays until either side ends the session or the proxy shuts down.
pub async fn run(est: Established, opts: SessionOptions, around: Surroundings) {
    let Surroundings {
        metrics,
        mut phase,
        span,
        session_id,
        audit,
        mut revoked,
        approvals,
    } = around;
    let Established {
        client,
        client_buf,
        upstream,
        cancel_guard,
        user_slot,
        identity,
        target,
        search_path,
        limits,
        budgets,
        ..
    } = est;
    let session_id_for_requests = session_id.clone();
    let session_audit = audit
        .zip(TargetAudit::of(&target.config))
        .map(|(trail, setting)| {
            let facts = SessionFacts {
                identity: records::identity(&identity),
                auth_method: identity.proof.method(),
                credential: identity.proof.credential(),
                role: upstream.role.clone(),
                profile: upstream.profile.clone(),
                source: Source {
                    address: client.peer_addr(),
                    tls: client.tls_info(),
                },
                destination: Destination {
                    target: target.config.name.clone(),
                    environment: Some(target.config.environment.clone()),
                    session_id,
                    backend_pid: u32::try_from(upstream.pid).ok(),
                },
                bundle_hash: target.guard.engine().bundle_hash().to_owned(),
            };
            auditing::SessionAudit::new(trail, setting, facts)
        });
    let guarded = guarding::Guarded::new(
        target,
        &identity,
        guarding::Start {
            peer: client.peer_addr(),
            upstream: &upstream,
            search_path: search_path.as_deref(),
            limits: portcullis_guard::SessionLimits {
                statement_timeout: limits
                    .statement_timeout
                    .map(|(t, name)| (u64::try_from(t.as_millis()).unwrap_or(u64::MAX), name)),
                counts_rows: !budgets.is_empty(),
            },
            budgets,
            metered: limits.returned.any(),
        },
        span,
        session_audit.is_some(),
    );
    let (client_r, client_w) = client.split();
    let (upstream_r, mut upstream_w) = upstream.stream.split();
    let pending = pending::Pending::metered(
        upstream.status,
        limits
            .returned
            .any()
            .then(|| returned::Meter::new(limits.returned.clone())),
    );
    if let Some(a) = &session_audit {
        if let Err(r) = opened(a).await {
            warn!(parent: &guarded.span, "session refused: its audit record could not be written");
            metrics.error(ErrorKind::Refused);
            let mut client_w = client_w;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                client_w.write_all(&r.to_bytes()).await?;
                client_w.shutdown().await
            })
            .await;
            let mut b = bytes::BytesMut::new();
            portcullis_wire::encode::terminate(&mut b);
            let _ = tokio::time::timeout(Duration::from_secs(1), upstream_w.write_all(&b)).await;
            return;
        }
    }

    let mut to_server = client_pump::ClientPump::new(
        client_r,
        upstream_w,
        client_buf,
        opts.max_statement_bytes,
        opts.idle_timeout,
        &pending,
        &guarded,
        &metrics,
        session_audit.as_ref(),
        client_pump::ApprovalSetting {
            desk: approvals,
            hold_line: &cancel_guard.hold,
            requester: crate::approval_desk::person(&identity),
            kind: crate::auth::identity::config_kind(identity.kind),
            session_id: session_id_for_requests,
            profile: guarded
                .target
                .login_for(&identity)
                .profile
                .map(str::to_owned),
        },
    );
    let mut to_client = server_pump::ServerPump::new(
        upstream_r,
        client_w,
        upstream.leftover,
        &pending,
        &guarded,
        &metrics,
        session_audit.as_ref(),
    );

    let end = {
        // Each branch is polled only when its own waker fired (see woken.rs).
        let to_server = std::pin::pin!(to_server.run());
        let to_client = std::pin::pin!(to_client.run(false));
        let stopping = std::pin::pin!(phase.wait_for(|p| *p == Phase::Stopping));
        let key = match identity.proof {
            Proof::ApiKey { id } => Some(id),
            Proof::Scram { .. } | Proof::Oidc { .. } | Proof::Certificate { .. } => None,
        };
        let revoked = std::pin::pin!(async move {
            match key {
                Some(key) => {
                    let _ = revoked.wait_for(|set| set.contains(&key)).await;
                }
                None => std::future::pending().await,
            }
        });
        tokio::select! {
            e = woken::Woken::new(to_server) => e,
            e = woken::Woken::new(to_client) => e,
            _ = woken::Woken::new(stopping) => End::Shutdown,
            _ = woken::Woken::new(revoked) => End::CredentialRevoked,
        }
    };

    // PostgreSQL answers the messages that came before a bad one, then
    // sends its FATAL: let the server's replies through first.
    let end = match end {
        End::ClientRefused(r) if to_client.resumable() => {
            let drained = tokio::select! {
                e = to_client.run(true) => e,
                _ = phase.wait_for(|p| *p == Phase::Stopping) => End::Shutdown,
            };
            match drained {
                End::Answered => End::ClientRefused(r),
                other => other,
            }
        }
        // The client pump failed to write upstream: the server may have
        // ended the session with a FATAL still on its way. Relay what it
        // sent; its FATAL is then the last word, not ours.
        End::UpstreamLost(why) if to_client.resumable() => {
            let drained = tokio::time::timeout(Duration::from_secs(1), to_client.run(false)).await;
            match drained {
                Ok(End::UpstreamClosed) => End::UpstreamClosed,
                _ => End::UpstreamLost(why),
            }
        }
        other => other,
    };

    let tell_client = |kind: ErrorKind, r: &Refusal| {
        metrics.error(kind);
        r.to_bytes()
    };
    let (to_client_msg, terminate_upstream) = match &end {
        End::Terminated | End::ClientGone | End::Answered => (None, true),
        End::UpstreamClosed => (None, false),
        End::ClientRefused(r) => (Some(tell_client(ErrorKind::ClientProtocol, r)), true),
        End::Unsafe(r) => {
            warn!(parent: &guarded.span, reason = %r.message, "session closed: unsafe lexing setting");
            (Some(tell_client(ErrorKind::Refused, r)), true)
        }
        End::Unmaskable(r) => {
            warn!(parent: &guarded.span, reason = %r.message, "session closed: result could not be masked");
            (Some(tell_client(ErrorKind::Refused, r)), true)
        }
        End::UpstreamLost(why) | End::UpstreamProtocol(why) => {
            warn!(parent: &guarded.span, reason = %why, "upstream connection lost");
            let kind = if matches!(end, End::UpstreamLost(_)) {
                ErrorKind::UpstreamLost
            } else {
                ErrorKind::Internal
            };
            let r = Refusal::fatal(
                sqlstate::CONNECTION_FAILURE,
                "the connection to the database was lost",
            )
            .hint("The database closed the connection or became unreachable. Reconnect and retry.");
            (Some(tell_client(kind, &r)), false)
        }
        End::IdleTimeout => {
            let r = Refusal::fatal(
                sqlstate::IDLE_SESSION_TIMEOUT,
                "terminating connection due to idle-session timeout",
            )
            .hint("Portcullis closes sessions that stay idle longer than its idle_timeout.");
            (Some(tell_client(ErrorKind::Timeout, &r)), true)
        }
        End::Shutdown => {
            let r = Refusal::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because Portcullis is shutting down",
            )
            .hint("Reconnect in a moment.");
            (Some(tell_client(ErrorKind::Refused, &r)), true)
        }
        End::CredentialRevoked => {
            info!(parent: &guarded.span, "session ended: its API key was revoked");
            let r = Refusal::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because the API key it logged in with was revoked",
            )
            .hint("Ask an administrator for a new key.");
            (Some(tell_client(ErrorKind::Refused, &r)), true)
        }
    };
    if let Some(msg) = to_client_msg {
        to_client.say_last(&msg).await;
    }
    if terminate_upstream {
        to_server.terminate_upstream().await;
    }
    let _ = to_client.shutdown().await;
    if let Some(a) = &session_audit {
        a.ended(end_reason(&end));
    }
    info!(parent: &guarded.span, reason = ?end_label(&end), "session ended");
    drop(cancel_guard);
    drop(user_slot);
}

/// The session's opening record; on a strict target, committed before the
/// session relays anything. `Err`: the refusal that ends the session.
async fn opened(a: &auditing::SessionAudit) -> Result<(), Refusal> {
    let receipt = match a.opened() {
        Ok(r) => r,
        Err(_) if a.fails_open() => return Ok(()),
        Err(_) => return Err(crate::audit::unavailable_at_login()),
    };
    let Some(receipt) = receipt else {
        return Ok(());
    };
    match tokio::time::timeout(a.commit_timeout(), receipt).await {
        Ok(Ok(_)) => Ok(()),
        _ if a.fails_open() => Ok(()),
        _ => Err(crate::audit::unavailable_at_login()),
    }
}

/// Why a session ended, as its audit record says it.
fn end_reason(end: &End) -> EndReason {
    match end {
        End::Terminated | End::Answered => EndReason::ClientTerminated,
        End::ClientGone => EndReason::ClientDisconnected,
        End::ClientRefused(_) => EndReason::ProtocolViolation,
        End::Unsafe(_) | End::Unmaskable(_) => EndReason::Refused,
        End::UpstreamClosed => EndReason::ServerClosed,
        End::UpstreamLost(_) | End::UpstreamProtocol(_) => EndReason::UpstreamLost,
        End::IdleTimeout => EndReason::IdleTimeout,
        End::Shutdown => EndReason::Shutdown,
        End::CredentialRevoked => EndReason::CredentialRevoked,
    }
}

fn end_label(end: &End) -> &'static str {
    match end {
        End::Terminated => "client terminated",
        End::ClientGone => "client disconnected",
        End::ClientRefused(_) => "client refused",
        End::Unsafe(_) => "unsafe setting",
        End::Unmaskable(_) => "unmaskable result",
        End::UpstreamLost(_) => "upstream lost",
        End::UpstreamProtocol(_) => "upstream protocol error",
        End::UpstreamClosed => "server closed the session",
        End::Answered => "answered",
        End::IdleTimeout => "idle timeout",
        End::Shutdown => "shutdown",
        End::CredentialRevoked => "credential revoked",
    }
}

/// Writes `bytes` to a half, recording whether a write was cut short.
pub(crate) async fn write_all_tracked<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    in_write: &mut bool,
) -> std::io::Result<()> {
    *in_write = true;
    w.write_all(bytes).await?;
    *in_write = false;
    Ok(())
}
