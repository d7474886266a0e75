//! Cancel keys.
//!
//! Each client gets a BackendKeyData with the real upstream backend PID
//! (drivers compare it with the PID in notifications) and a secret key that
//! Portcullis makes up. The registry maps that pair to the upstream server and
//! its real key, so a CancelRequest on a new connection reaches the right
//! query, and nobody can cancel anything by guessing or learning upstream keys:
//! those never leave the proxy.

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

#[derive(Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<(i32, Vec<u8>), CancelTarget>>,
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
        sessions.insert((pid, key.clone()), target);
        CancelGuard {
            registry: self.clone(),
            pid,
            key,
        }
    }

    pub fn lookup(&self, pid: i32, key: &[u8]) -> Option<CancelTarget> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.get(&(pid, key.to_vec())).cloned()
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
        assert_eq!(reg.lookup(7, &guard.key).unwrap().key, vec![9, 9, 9, 9]);
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
