//! Listeners, per-connection tasks, limits, reload and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use portcullis_audit::record::FailureReason;
use portcullis_config::{Config, Listener};
use portcullis_wire::{sqlstate, Refusal};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{error, info, info_span, warn, Instrument, Span};

use crate::audit::records;
use crate::audit::{AuditSetupError, AuditTrail};
use crate::cancel::CancelRegistry;
pub use crate::context::{ConnContext, Phase, Shared, UserSlot, UserSlots};
use crate::handshake::{self, Ended};
use crate::metrics::{ErrorKind, Metrics};
use crate::runtime::{Runtime, RuntimeError};
use crate::session::{self, SessionOptions};
use crate::workers::Workers;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} (listener {name}): {error}")]
    Bind {
        name: String,
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot listen on {addr} (admin): {error}")]
    BindAdmin {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot start the session threads: {0}")]
    Workers(std::io::Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Audit(#[from] AuditSetupError),
    #[error(transparent)]
    Keys(#[from] portcullis_identity::keys::StoreError),
    #[error(transparent)]
    Approvals(crate::approval_desk::DeskError),
}

/// A bound, not yet running proxy.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<(Listener, TcpListener)>,
    admin: Option<TcpListener>,
    /// The threads sessions run on (see workers.rs); listeners, the admin
    /// API and signals run on the runtime that calls [`Server::run`].
    workers: Arc<Workers>,
}

/// Controls a running server from elsewhere (signals, tests, the admin API).
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl Server {
    /// Builds the runtime state and binds every listener.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let runtime = Runtime::build(config)?;
        let mut listeners = Vec::new();
        for l in &runtime.config.listeners {
            let tcp = TcpListener::bind(l.listen)
                .await
                .map_err(|error| ServerError::Bind {
                    name: l.name.clone(),
                    addr: l.listen,
                    error,
                })?;
            listeners.push((l.clone(), tcp));
        }
        let admin =
            match &runtime.config.admin {
                Some(a) => Some(TcpListener::bind(a.listen).await.map_err(|error| {
                    ServerError::BindAdmin {
                        addr: a.listen,
                        error,
                    }
                })?),
                None => None,
            };
        let audit = AuditTrail::open(&runtime.config)?;
        let keys = crate::revocations::open_store(&runtime.config)?;
        let approvals = crate::approval_desk::Desk::open(&runtime.config, audit.clone())
            .map(Arc::new)
            .map_err(ServerError::Approvals)?;
        let workers =
            Workers::start(runtime.config.server.worker_threads).map_err(ServerError::Workers)?;
        let (phase, _) = watch::channel(Phase::Running);
        let shared = Arc::new(Shared {
            runtime: RwLock::new(Arc::new(runtime)),
            cancel: Arc::new(CancelRegistry::default()),
            metrics: Arc::new(Metrics::new()),
            mock_secret: rand::random(),
            user_slots: UserSlots::default(),
            phase,
            audit,
            session_ids: Default::default(),
            keys,
            revoked: watch::channel(Arc::default()).0,
            oidc_keys: Default::default(),
            row_budgets: Default::default(),
            approvals,
        });
        Ok(Server {
            shared,
            listeners,
            admin,
            workers: Arc::new(workers),
        })
    }

    /// The bound address of each listener, by name (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(l, t)| Some((l.name.clone(), t.local_addr().ok()?)))
            .collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` completes, then drains: stops accepting,
    /// lets sessions finish for the configured grace period, then closes
    /// the rest.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            shared,
            listeners,
            admin,
            workers,
        } = self;
        info!(threads = workers.len(), "session threads started");
        let tracker = SessionTracker::default();

        if let Some(admin) = admin {
            let handle = ServerHandle {
                shared: shared.clone(),
            };
            let state = crate::admin::AdminState {
                metrics: shared.metrics.clone(),
                reload: Arc::new(move || handle.reload_from_source()),
                started: Instant::now(),
                approvals: Some(crate::approvals_api::Api::new(
                    shared.approvals.clone(),
                    shared.clone(),
                )),
            };
            let mut rx = shared.phase.subscribe();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|p| *p != Phase::Running).await;
                };
                if let Err(e) = crate::admin::serve(admin, state, stop).await {
                    error!(error = %e, "admin listener failed");
                }
            });
        }

        {
            // With a shared store, decisions made through other proxies
            // wake this one's sessions.
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            shared.approvals.listen(stop.clone());
            let mut rx = shared.phase.subscribe();
            tokio::spawn(async move {
                let _ = rx.wait_for(|p| *p == Phase::Stopping).await;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
        }

        if let Some(store) = shared.keys.clone() {
            let every = shared.runtime().config.identity.revocation_poll.into();
            let mut rx = shared.phase.subscribe();
            // Revocations are stamped with the clock of the machine that
            // ran `portcullis keys`: look a little further back, so that a
            // clock behind this one does not hide them (sessions opened
            // before this proxy started are not this proxy's anyway).
            let since = portcullis_identity::keys::unix_now() - 300;
            tokio::spawn(crate::revocations::watch(
                store,
                shared.revoked.clone(),
                since,
                every,
                async move {
                    let _ = rx.wait_for(|p| *p == Phase::Stopping).await;
                },
            ));
        }

        for (listener, tcp) in listeners {
            let shared = shared.clone();
            let workers = workers.clone();
            let tracker = tracker.clone();
            let mut rx = shared.phase.subscribe();
            let limit = Arc::new(Semaphore::new(listener.max_connections));
            tokio::spawn(async move {
                info!(listener = %listener.name, addr = %tcp.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
                loop {
                    let accepted = tokio::select! {
                        a = tcp.accept() => a,
                        _ = rx.wait_for(|p| *p != Phase::Running) => break,
                    };
                    let (sock, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off
                            // instead of spinning.
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    sock.set_nodelay(true).ok();
                    let session_id = shared.session_ids.next();
                    let permit = limit.clone().try_acquire_owned().ok();
                    let shared = shared.clone();
                    let listener = listener.clone();
                    let guard = tracker.enter();
                    // The socket moves to the session's thread: out of this
                    // runtime's reactor here, into that one's there.
                    let sock = match sock.into_std() {
                        Ok(s) => s,
                        Err(e) => {
                            warn!(error = %e, "cannot hand a connection to a session thread");
                            continue;
                        }
                    };
                    workers.spawn(async move {
                        let _guard = guard;
                        let sock = match TcpStream::from_std(sock) {
                            Ok(s) => s,
                            Err(e) => {
                                warn!(error = %e, "cannot register a connection");
                                return;
                            }
                        };
                        match permit {
                            Some(permit) => {
                                // One span per connection; the login fills
                                // in who it is (see serve_connection).
                                let span = info_span!(
                                    "session",
                                    id = %session_id,
                                    listener = %listener.name,
                                    peer = %peer,
                                    user = tracing::field::Empty,
                                    target = tracing::field::Empty,
                                );
                                let ctx = ConnContext {
                                    runtime: shared.runtime(),
                                    shared,
                                    listener,
                                    session_id,
                                };
                                serve_connection(sock, ctx, span).await;
                                drop(permit);
                            }
                            None => refuse_over_limit(sock, shared, listener, session_id).await,
                        }
                    });
                }
            });
        }

        shutdown.await;
        let grace: Duration = shared.runtime().config.server.shutdown_grace.into();
        info!(
            sessions = tracker.count(),
            grace_secs = grace.as_secs_f64(),
            "shutting down: no new connections"
        );
        shared.phase.send_replace(Phase::Draining);
        if tokio::time::timeout(grace, tracker.wait_empty())
            .await
            .is_err()
        {
            info!(
                sessions = tracker.count(),
                "grace period over: closing remaining sessions"
            );
            shared.phase.send_replace(Phase::Stopping);
            let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait_empty()).await;
        }
        if let Some(audit) = shared.audit.clone() {
            // The last records and a final checkpoint, off the runtime.
            let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        }
        info!("shut down");
    }
}

impl ServerHandle {
    /// Replaces the configuration with `config` if it builds completely;
    /// otherwise the one in force stays. Live sessions keep the settings
    /// they started with.
    pub fn reload(&self, config: Config) -> Result<(), String> {
        self.record(self.try_reload(config))
    }

    fn record(&self, result: Result<(), String>) -> Result<(), String> {
        self.shared.metrics.reloads(result.is_ok());
        if let Some(audit) = &self.shared.audit {
            let runtime = self.shared.runtime();
            audit.submit_quietly(&portcullis_audit::Record::Reload(
                portcullis_audit::record::ReloadRecord {
                    what: portcullis_audit::record::ReloadKind::Config,
                    // The policy bundle now in force.
                    hash: runtime.policy_engine().map(|e| e.bundle_hash().to_owned()),
                    requested_by: None,
                    result: match &result {
                        Ok(()) => portcullis_audit::record::ReloadResult::Applied,
                        Err(e) => {
                            portcullis_audit::record::ReloadResult::Rejected { reason: e.clone() }
                        }
                    },
                },
            ));
        }
        match &result {
            Ok(()) => info!("configuration reloaded"),
            Err(e) => {
                warn!(error = %e, "configuration reload rejected; the previous configuration stays in force")
            }
        }
        result
    }

    fn try_reload(&self, config: Config) -> Result<(), String> {
        let current = self.shared.runtime();
        let addrs = |c: &Config| {
            let mut v: Vec<(String, SocketAddr)> = c
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.listen))
                .collect();
            v.sort();
            v
        };
        if addrs(&current.config) != addrs(&config)
            || current.config.admin.as_ref().map(|a| a.listen)
                != config.admin.as_ref().map(|a| a.listen)
        {
            return Err("listener and admin addresses cannot change on reload; restart Portcullis to change them".into());
        }
        let runtime = Runtime::build(config).map_err(|e| e.to_string())?;
        self.shared
            .approvals
            .reload(&current.config, &runtime.config)?;
        *self
            .shared
            .runtime
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(runtime);
        Ok(())
    }

    /// Reloads from the file the configuration came from.
    pub fn reload_from_source(&self) -> Result<String, String> {
        let path = self
            .shared
            .runtime()
            .config
            .source
            .clone()
            .ok_or("the configuration was not loaded from a file")?;
        let result = Config::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|config| self.try_reload(config));
        self.record(result)?;
        Ok(format!("reloaded {}", path.display()))
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.runtime()
    }
}

async fn refuse_over_limit(
    sock: TcpStream,
    shared: Arc<Shared>,
    listener: Listener,
    session_id: String,
) {
    shared.metrics.error(ErrorKind::Limit);
    warn!(listener = %listener.name, "connection refused: listener at max_connections");
    let r = Refusal::fatal(
        sqlstate::TOO_MANY_CONNECTIONS,
        "sorry, too many clients already",
    )
    .hint("Portcullis is at its connection limit for this listener; try again later.");
    if let Some(audit) = &shared.audit {
        audit.submit_quietly(&records::connection_failed(
            source_of(sock.peer_addr().ok()),
            &session_id,
            FailureReason::TooManyConnections,
            Some(r.sqlstate),
        ));
    }
    let ctx = ConnContext {
        runtime: shared.runtime(),
        shared,
        listener,
        session_id,
    };
    // Like PostgreSQL, finish the encryption negotiation first so that TLS
    // clients can read the refusal, and still serve cancel requests.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        handshake::refuse_after_negotiation(sock, &ctx, r),
    )
    .await;
}

/// Serves one connection; `span` is its span. The handshake runs inside
/// the span. The relay does not: a span is entered on every poll, and a
/// session is polled for every message, so the session's few events name
/// the span as their parent instead.
async fn serve_connection(sock: TcpStream, ctx: ConnContext, span: Span) {
    let shared = ctx.shared.clone();
    let session_id = ctx.session_id.clone();
    let Some(Establishment { est, opts, _conn }) =
        establish(sock, ctx).instrument(span.clone()).await
    else {
        return;
    };
    span.record("user", tracing::field::display(&est.identity.subject));
    span.record("target", tracing::field::display(&est.target.config.name));
    session::run(
        est,
        opts,
        session::Surroundings {
            metrics: shared.metrics.clone(),
            phase: shared.phase.subscribe(),
            span,
            session_id,
            audit: shared.audit.clone(),
            revoked: shared.revoked.subscribe(),
            approvals: Some(shared.approvals.clone()),
        },
    )
    .await;
}

/// A logged-in connection, ready to relay.
struct Establishment {
    est: handshake::Established,
    opts: SessionOptions,
    /// Counts the connection as open until the session ends.
    _conn: crate::metrics::ConnectionGuard,
}

/// The handshake: an established session, or `None` once the connection
/// has been dealt with.
async fn establish(sock: TcpStream, ctx: ConnContext) -> Option<Establishment> {
    let started = Instant::now();
    let handshake_timeout: Duration = ctx.runtime.config.server.handshake_timeout.into();
    let opts = SessionOptions {
        idle_timeout: Some(ctx.runtime.config.server.idle_timeout)
            .filter(|d| !d.is_zero())
            .map(Into::into),
        max_statement_bytes: ctx.runtime.config.server.max_statement_bytes,
    };
    let metrics = ctx.shared.metrics.clone();
    let conn = metrics.connection(&ctx.listener.name);
    let peer = sock.peer_addr().ok();
    let outcome = tokio::time::timeout(handshake_timeout, handshake::handshake(sock, &ctx)).await;
    let failed = |reason: FailureReason, sqlstate: Option<&str>| {
        if let Some(audit) = &ctx.shared.audit {
            audit.submit_quietly(&records::connection_failed(
                source_of(peer),
                &ctx.session_id,
                reason,
                sqlstate,
            ));
        }
    };
    let est = match outcome {
        Err(_) => {
            metrics.error(ErrorKind::Timeout);
            info!("handshake timed out");
            failed(FailureReason::TimedOut, None);
            return None;
        }
        Ok(Ok(est)) => est,
        Ok(Err(Ended::Quietly)) => return None,
        Ok(Err(Ended::Dropped(kind, why))) => {
            metrics.error(kind);
            info!(reason = %why, "connection dropped during handshake");
            failed(failure_reason(kind, None), None);
            return None;
        }
        Ok(Err(Ended::Refused(mut stream, kind, refusal))) => {
            metrics.error(kind);
            info!(code = refusal.sqlstate, reason = %refusal.message, "connection refused");
            failed(
                failure_reason(kind, Some(refusal.sqlstate)),
                Some(refusal.sqlstate),
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                stream.write_all(&refusal.to_bytes()).await?;
                stream.flush().await?;
                stream.shutdown().await
            })
            .await;
            return None;
        }
    };
    metrics.handshake_seconds(started.elapsed().as_secs_f64());
    Some(Establishment {
        est,
        opts,
        _conn: conn,
    })
}

/// Why a handshake failed, for its audit record.
fn failure_reason(kind: ErrorKind, sqlstate: Option<&str>) -> FailureReason {
    match (kind, sqlstate) {
        (_, Some(s)) if s == sqlstate::INSUFFICIENT_RESOURCES => FailureReason::AuditUnavailable,
        (_, Some(s)) if s == sqlstate::INVALID_CATALOG_NAME => FailureReason::UnknownTarget,
        (_, Some(s)) if s == sqlstate::ADMIN_SHUTDOWN => FailureReason::ShuttingDown,
        (ErrorKind::ClientAuth, _) => FailureReason::AuthenticationFailed,
        (ErrorKind::Limit, _) => FailureReason::TooManyConnections,
        (ErrorKind::Tls, _) => FailureReason::EncryptionRequired,
        (ErrorKind::UpstreamConnect, _) => FailureReason::UpstreamUnavailable,
        (ErrorKind::UpstreamAuth, _) => FailureReason::UpstreamLoginFailed,
        (ErrorKind::Timeout, _) => FailureReason::TimedOut,
        (ErrorKind::Refused, _) => FailureReason::NotPermitted,
        _ => FailureReason::ProtocolViolation,
    }
}

fn source_of(peer: Option<SocketAddr>) -> portcullis_audit::record::Source {
    portcullis_audit::record::Source {
        address: peer,
        tls: None,
    }
}

/// Counts live connection tasks so shutdown can wait for them.
#[derive(Clone, Default)]
struct SessionTracker {
    inner: Arc<TrackerInner>,
}

#[derive(Default)]
struct TrackerInner {
    count: std::sync::atomic::AtomicUsize,
    empty: tokio::sync::Notify,
}

struct TrackerGuard(Arc<TrackerInner>);

impl SessionTracker {
    fn enter(&self) -> TrackerGuard {
        self.inner
            .count
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        TrackerGuard(self.inner.clone())
    }

    fn count(&self) -> usize {
        self.inner.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn wait_empty(&self) {
        loop {
            let notified = self.inner.empty.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.empty.notify_waiters();
        }
    }
}
