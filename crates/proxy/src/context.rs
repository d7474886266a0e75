//! What every connection shares, and what one connection's handshake and
//! session need from the server: the proxy's phase, the runtime in force,
//! cancel keys, metrics and per-user session slots. The server creates
//! them; handshake and session use them; none of the three imports another
//! for them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use portcullis_config::Listener;
use portcullis_identity::keys::{KeyId, KeyStore};
use tokio::sync::watch;

use crate::audit::AuditTrail;
use crate::cancel::CancelRegistry;
use crate::metrics::Metrics;
use crate::runtime::Runtime;

/// Where the whole proxy stands on its way down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// No new connections; sessions finish on their own.
    Draining,
    /// The grace period is over: sessions are told and closed.
    Stopping,
}

/// State every connection shares.
pub struct Shared {
    pub(crate) runtime: RwLock<Arc<Runtime>>,
    pub cancel: Arc<CancelRegistry>,
    pub metrics: Arc<Metrics>,
    /// Seeds the fake SCRAM exchange for unknown users, so their replies
    /// look like a real user's and stay the same across attempts.
    pub mock_secret: [u8; 32],
    pub user_slots: UserSlots,
    pub(crate) phase: watch::Sender<Phase>,
    /// The audit trail: here rather than in the runtime, so that a reload
    /// does not cut its chain. `None` when auditing is off.
    pub audit: Option<Arc<AuditTrail>>,
    pub session_ids: SessionIds,
    /// The control-plane store's API keys; `None` when keys are off. Here
    /// for the same reason as `audit`: a reload keeps the open store.
    pub keys: Option<Arc<KeyStore>>,
    /// Keys revoked with `--end-sessions` while this proxy runs: a session
    /// opened with one of them ends (see `revocations`).
    pub revoked: watch::Sender<Arc<HashSet<KeyId>>>,
    /// OIDC issuers' signing keys, kept across reloads.
    pub oidc_keys: crate::oidc::KeyCaches,
    /// What each identity has changed within its rows-changed windows,
    /// across its sessions and reloads.
    pub row_budgets: crate::row_budgets::Budgets,
    /// Where statements held for approval are asked about.
    pub approvals: Arc<crate::approval_desk::Desk>,
}

/// Names every accepted connection, unique across restarts: a random
/// prefix per process and a counter.
pub struct SessionIds {
    prefix: u32,
    next: std::sync::atomic::AtomicU64,
}

impl Default for SessionIds {
    fn default() -> Self {
        SessionIds {
            prefix: rand::random(),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

impl SessionIds {
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{:08x}-{n}", self.prefix)
    }
}

impl Shared {
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What a connection's handshake needs.
pub struct ConnContext {
    pub shared: Arc<Shared>,
    pub runtime: Arc<Runtime>,
    pub listener: Listener,
    /// The connection's id (see [`SessionIds`]).
    pub session_id: String,
}

/// Counts sessions per user for `max_connections`.
#[derive(Default)]
pub struct UserSlots {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// Holds one of a user's session slots until dropped.
pub struct UserSlot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl UserSlots {
    /// One of `subject`'s slots, when it has fewer than `max` sessions.
    pub fn acquire(&self, subject: &str, max: Option<usize>) -> Option<UserSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(subject.to_owned()).or_insert(0);
        if max.is_some_and(|max| *n >= max) {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            counts: self.counts.clone(),
            user: subject.to_owned(),
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}
