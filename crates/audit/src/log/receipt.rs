//! Receipts: how a caller waits until a record is durable.
//!
//! Two kinds. A *promised* receipt resolves when the writer keeps its
//! promise (it journaled or stored the record). An *inline* receipt makes
//! the record durable itself, on the waiting thread, when first polled or
//! waited on (see [`super::sealer`]): no wake-up of the writer and none
//! back, which on a strict target were most of what waiting cost. Where
//! the inline path cannot (the journal failed), it turns into a promised
//! receipt.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::sealer::Sealer;
use super::Queue;
use crate::AuditError;

/// A record is durable: in the writer's journal or in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub seq: u64,
}

#[derive(Default)]
pub(super) struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

#[derive(Default)]
struct SlotState {
    result: Option<Result<Committed, ()>>,
    waker: Option<Waker>,
}

impl Slot {
    fn fulfil(&self, result: Result<Committed, ()>) {
        if let Ok(mut st) = self.state.lock() {
            if st.result.is_none() {
                st.result = Some(result);
            }
            if let Some(w) = st.waker.take() {
                w.wake();
            }
        }
        self.ready.notify_all();
    }
}

/// The writer's side of a promised receipt. Dropped unfulfilled (the
/// writer died), it resolves the receipt as `StoreDown`, so no waiter
/// waits for nothing.
pub(super) struct Promise(Option<Arc<Slot>>);

impl Promise {
    pub(super) fn new() -> (Promise, Arc<Slot>) {
        let slot = Arc::new(Slot::default());
        (Promise(Some(slot.clone())), slot)
    }

    pub(super) fn keep(mut self, committed: Committed) {
        if let Some(slot) = self.0.take() {
            slot.fulfil(Ok(committed));
        }
    }

    /// The submission was refused; nobody holds the receipt.
    pub(super) fn forget(mut self) {
        self.0.take();
    }
}

impl Drop for Promise {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.fulfil(Err(()));
        }
    }
}

/// Resolves when the record is durable. Await it (under the caller's own
/// timeout) or [`wait`](Receipt::wait) for it.
pub struct Receipt {
    kind: Kind,
}

enum Kind {
    Promised(Arc<Slot>),
    Inline {
        seq: u64,
        sealer: Arc<Sealer>,
        queue: Arc<Queue>,
    },
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipt")
    }
}

fn resolve(r: Result<Committed, ()>) -> Result<Committed, AuditError> {
    r.map_err(|()| AuditError::StoreDown)
}

impl Receipt {
    pub(super) fn promised(slot: Arc<Slot>) -> Receipt {
        Receipt {
            kind: Kind::Promised(slot),
        }
    }

    pub(super) fn inline(seq: u64, sealer: Arc<Sealer>, queue: Arc<Queue>) -> Receipt {
        Receipt {
            kind: Kind::Inline { seq, sealer, queue },
        }
    }

    /// For an inline receipt: makes its record durable here, or turns
    /// into a promised receipt if that cannot be done here.
    fn settle_inline(&mut self) -> Option<Result<Committed, AuditError>> {
        let Kind::Inline { seq, sealer, queue } = &self.kind else {
            return None;
        };
        let seq = *seq;
        match sealer.make_durable(seq, queue) {
            Ok(()) => Some(Ok(Committed { seq })),
            Err(Some(slot)) => {
                self.kind = Kind::Promised(slot);
                None
            }
            Err(None) => Some(Err(AuditError::StoreDown)),
        }
    }

    /// Blocks until durable, or `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Result<Committed, AuditError> {
        let deadline = Instant::now() + timeout;
        if let Some(r) = self.settle_inline() {
            return r;
        }
        let Kind::Promised(slot) = &self.kind else {
            return Err(AuditError::StoreDown);
        };
        let mut st = slot.state.lock().map_err(|_| AuditError::StoreDown)?;
        loop {
            if let Some(r) = st.result.take() {
                return resolve(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AuditError::Timeout(timeout));
            }
            st = slot
                .ready
                .wait_timeout(st, left)
                .map_err(|_| AuditError::StoreDown)?
                .0;
        }
    }
}

impl Future for Receipt {
    type Output = Result<Committed, AuditError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.settle_inline() {
            return Poll::Ready(r);
        }
        let Kind::Promised(slot) = &self.kind else {
            return Poll::Ready(Err(AuditError::StoreDown));
        };
        let Ok(mut st) = slot.state.lock() else {
            return Poll::Ready(Err(AuditError::StoreDown));
        };
        match st.result.take() {
            Some(r) => Poll::Ready(resolve(r)),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
