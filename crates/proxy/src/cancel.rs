//! Cancel keys.
//!
//! Each client gets a BackendKeyData with the real upstream backend PID
//! (drivers compare it with the PID in notifications) and a secret key that
//! Portcullis makes up. The registry maps that pair to the upstream server and
//! its real key, so a CancelRequest on a new connection reaches the right
//! query, and nobody can cancel anything by guessing or learning upstream keys:
//! those never leave the proxy.
//!
//! A session holding a statement for approval has nothing running on the
//! server: a cancel then goes to the session (its [`HoldLine`]), which
//! ends the wait with 57014 and withdraws the request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::tls::UpstreamTls;
use crate::upstream::UpstreamAddr;

/// Where and how to deliver a cancel for one session.
#[derive(Clone)]
pub struct CancelTarget {
    pub addr: UpstreamAddr,
    pub tls: Option<UpstreamTls>,
    pub pid: i32,
    pub key: Vec<u8>,
}

/// A session's cancel key: the backend PID and the key Portcullis made up.
type ClientKey = (i32, Vec<u8>);

#[derive(Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<ClientKey, (CancelTarget, Arc<HoldLine>)>>,
}

/// Where a cancel goes.
pub enum Cancel {
    /// To the server, which cancels what the session runs.
    Upstream(CancelTarget),
    /// To the session itself, which was holding a statement for approval.
    Held,
}

/// The way back into a session that holds a statement for approval.
#[derive(Default)]
pub struct HoldLine {
    state: Mutex<HoldState>,
    cancelled: tokio::sync::Notify,
}

#[derive(Default)]
struct HoldState {
    /// About to hold (waiting for earlier requests to be answered): a
    /// cancel goes to the server and is also recorded here.
    arming: bool,
    holding: bool,
    cancelled: bool,
}

impl HoldLine {
    fn lock(&self) -> std::sync::MutexGuard<'_, HoldState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session has read a message it will hold: from now on a cancel
    /// is recorded for it too.
    pub fn arm(&self) {
        *self.lock() = HoldState {
            arming: true,
            holding: false,
            cancelled: false,
        };
    }

    /// The session holds: a cancel no longer goes to the server (nothing
    /// of the session's runs there). `true` if one came while arming.
    pub fn begin(&self) -> bool {
        let mut s = self.lock();
        s.arming = false;
        s.holding = true;
        s.cancelled
    }

    /// The session stops holding; `true` if a cancel arrived first.
    pub fn end(&self) -> bool {
        let mut s = self.lock();
        s.arming = false;
        s.holding = false;
        std::mem::take(&mut s.cancelled)
    }

    /// Waits for a cancel while holding.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.cancelled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().cancelled {
                return;
            }
            notified.await;
        }
    }

    /// Records a cancel if the session is holding or about to; `true`
    /// when it is holding (the server need not hear of it).
    fn cancel(&self) -> bool {
        let mut s = self.lock();
        if !s.holding && !s.arming {
            return false;
        }
        s.cancelled = true;
        self.cancelled.notify_waiters();
        s.holding
    }
}

impl CancelRegistry {
    /// Makes up a client-side key of `key_len` bytes for the session and
    /// registers it. The returned guard unregisters it when the session ends.
    pub fn register(self: &Arc<Self>, key_len: usize, target: CancelTarget) -> CancelGuard {
        let pid = target.pid;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let key = loop {
            let key: Vec<u8> = (0..key_len).map(|_| rand::random::<u8>()).collect();
            if !sessions.contains_key(&(pid, key.clone())) {
                break key;
            }
        };
        let hold = Arc::new(HoldLine::default());
        sessions.insert((pid, key.clone()), (target, hold.clone()));
        CancelGuard {
            registry: self.clone(),
            pid,
            key,
            hold,
        }
    }

    /// Where a cancel with this key goes: delivered here if the session
    /// holds a statement for approval, otherwise the server's target.
    pub fn lookup(&self, pid: i32, key: &[u8]) -> Option<Cancel> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let (target, hold) = sessions.get(&(pid, key.to_vec()))?;
        Some(if hold.cancel() {
            Cancel::Held
        } else {
            Cancel::Upstream(target.clone())
        })
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keeps a session's cancel key registered while it lives.
pub struct CancelGuard {
    registry: Arc<CancelRegistry>,
    pub pid: i32,
    pub key: Vec<u8>,
    /// The session's end of the way back (see [`HoldLine`]).
    pub hold: Arc<HoldLine>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.registry.sessions.lock() {
            s.remove(&(self.pid, std::mem::take(&mut self.key)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pid: i32) -> CancelTarget {
        CancelTarget {
            addr: UpstreamAddr::Tcp("127.0.0.1:5432".parse().unwrap()),
            tls: None,
            pid,
            key: vec![9, 9, 9, 9],
        }
    }

    #[test]
    fn registers_and_forgets() {
        let reg = Arc::new(CancelRegistry::default());
        let guard = reg.register(32, target(7));
        assert_eq!(guard.key.len(), 32);
        let upstream = |c: Option<Cancel>| match c {
            Some(Cancel::Upstream(t)) => t.key,
            _ => panic!("not sent upstream"),
        };
        assert_eq!(upstream(reg.lookup(7, &guard.key)), vec![9, 9, 9, 9]);
        // Arming, both get it; holding, the session only, once; then the
        // server again.
        guard.hold.arm();
        assert_eq!(upstream(reg.lookup(7, &guard.key)), vec![9, 9, 9, 9]);
        assert!(guard.hold.begin(), "the cancel while arming is kept");
        assert!(guard.hold.end());
        guard.hold.arm();
        assert!(!guard.hold.begin());
        assert!(matches!(reg.lookup(7, &guard.key), Some(Cancel::Held)));
        assert!(guard.hold.end());
        assert!(!guard.hold.end());
        assert_eq!(upstream(reg.lookup(7, &guard.key)), vec![9, 9, 9, 9]);
        assert!(
            reg.lookup(7, &[9, 9, 9, 9]).is_none(),
            "upstream key must not work"
        );
        assert!(reg.lookup(8, &guard.key).is_none());
        let key = guard.key.clone();
        drop(guard);
        assert!(reg.lookup(7, &key).is_none());
        assert!(reg.is_empty());
    }
}
