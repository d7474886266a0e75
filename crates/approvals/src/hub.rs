//! Waking the session that waits for a decision.
//!
//! A holding session watches its request here; whoever records a decision
//! (an API call on this node, or a notification from the shared store
//! about a decision made on another node) wakes it. Nothing polls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::request::{RequestId, State};

/// The requests sessions of this proxy are waiting on.
#[derive(Default)]
pub struct Hub {
    waiting: Mutex<HashMap<RequestId, watch::Sender<State>>>,
}

/// A session's view of its request; it stops watching when dropped.
pub struct Watch {
    hub: Arc<Hub>,
    id: RequestId,
    rx: watch::Receiver<State>,
}

impl Hub {
    /// Starts watching `id` (before the request is visible to anyone, so
    /// that no decision can be missed).
    pub fn watch(self: &Arc<Self>, id: RequestId) -> Watch {
        let (tx, rx) = watch::channel(State::Pending);
        self.lock().insert(id.clone(), tx);
        Watch {
            hub: self.clone(),
            id,
            rx,
        }
    }

    /// A request changed: wakes its session if it is here.
    pub fn wake(&self, id: &RequestId, state: State) {
        if let Some(tx) = self.lock().get(id) {
            tx.send_replace(state);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, watch::Sender<State>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Watch {
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// Waits until the request is no longer pending here (a decision
    /// woke it; the caller reads the store for the details).
    pub async fn changed(&mut self) -> State {
        loop {
            let now = *self.rx.borrow_and_update();
            if now != State::Pending {
                return now;
            }
            if self.rx.changed().await.is_err() {
                return State::Pending;
            }
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
    async fn a_decision_wakes_its_watcher_only() {
        let hub = Arc::new(Hub::default());
        let a = RequestId::new();
        let b = RequestId::new();
        let mut wa = hub.watch(a.clone());
        let _wb = hub.watch(b.clone());
        hub.wake(&a, State::Approved);
        assert_eq!(wa.changed().await, State::Approved);
        assert!(hub.is_waiting(&b));
        drop(wa);
        assert!(!hub.is_waiting(&a));
        // Waking a request nobody here waits on does nothing.
        hub.wake(&a, State::Denied);
    }
}
