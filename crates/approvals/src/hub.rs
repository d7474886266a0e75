//! Waking the session that waits for a decision.
//!
//! A holding session watches its request here; whoever records a change
//! (an API call on this node, or a notification from the shared store
//! about a decision made on another node) wakes it. A wake-up is only a
//! hint: the session reads its request from the store, which alone says
//! what was decided (anyone who can connect to a shared store's database
//! can send a notification).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::request::RequestId;

/// The requests sessions of this proxy are waiting on.
#[derive(Default)]
pub struct Hub {
    waiting: Mutex<HashMap<RequestId, watch::Sender<u64>>>,
}

/// A session's view of its request; it stops watching when dropped.
pub struct Watch {
    hub: Arc<Hub>,
    id: RequestId,
    rx: watch::Receiver<u64>,
}

impl Hub {
    /// Starts watching `id` (before the request is visible to anyone, so
    /// that no decision can be missed).
    pub fn watch(self: &Arc<Self>, id: RequestId) -> Watch {
        let (tx, rx) = watch::channel(0);
        self.lock().insert(id.clone(), tx);
        Watch {
            hub: self.clone(),
            id,
            rx,
        }
    }

    /// Request `id` may have changed: wakes its session if it is here.
    pub fn wake(&self, id: &RequestId) {
        if let Some(tx) = self.lock().get(id) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The requests sessions of this proxy wait for.
    pub fn waiting(&self) -> Vec<RequestId> {
        self.lock().keys().cloned().collect()
    }

    /// Whether a session of this proxy waits for `id`.
    pub fn is_waiting(&self, id: &RequestId) -> bool {
        self.lock().contains_key(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, watch::Sender<u64>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Watch {
    /// Waits for the next wake-up (the caller reads the store).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_wake_up_reaches_its_watcher_only() {
        let hub = Arc::new(Hub::default());
        let a = RequestId::new();
        let b = RequestId::new();
        let mut wa = hub.watch(a.clone());
        let mut wb = hub.watch(b.clone());
        hub.wake(&a);
        wa.changed().await;
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(20), wb.changed()).await;
        assert!(quiet.is_err(), "b was not woken");
        assert!(hub.is_waiting(&b));
        drop(wa);
        assert!(!hub.is_waiting(&a));
        // Waking a request nobody here waits on does nothing.
        hub.wake(&a);
    }
}
