//! The writer thread: gathers records, seals what submitters have not,
//! journals a batch someone waits for, and stores sealed records in
//! batches (group commit), with a checkpoint when one is due.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sealer::Sealer;
use super::{now_micros, Queue, Shared, WriterWaits};
use crate::chain::Head;
use crate::checkpoint::{CheckpointPolicy, SigningKey};
use crate::store::{BatchStore, StoredItem};

pub(super) struct Writer<S> {
    pub(super) store: S,
    pub(super) sealer: Arc<Sealer>,
    pub(super) queue: Arc<Queue>,
    pub(super) shared: Arc<Shared>,
    pub(super) max_batch: usize,
    pub(super) linger: Duration,
    pub(super) policy: CheckpointPolicy,
    pub(super) key: Option<SigningKey>,
    pub(super) since_checkpoint: u64,
    pub(super) last_checkpoint: Instant,
    /// The store's head: what a checkpoint without new records signs.
    pub(super) stored: Head,
}

const MAX_BACKOFF: Duration = Duration::from_secs(1);
const CLOSING_ATTEMPTS: u32 = 5;

/// What one round of the writer took.
enum Round {
    /// Nothing to store yet (records journaled and gathering, or none).
    Gathering,
    /// A batch to store (perhaps empty, with a checkpoint due).
    Store {
        batch: Arc<Vec<StoredItem>>,
        closing: bool,
    },
}

impl<S: BatchStore> Writer<S> {
    pub(super) fn run(mut self) {
        // However the thread ends (closed, gave up, a panic), whoever
        // still waits is answered.
        struct Gone(Arc<Sealer>, Arc<Queue>);
        impl Drop for Gone {
            fn drop(&mut self) {
                self.0.writer_gone(&self.1);
            }
        }
        let _gone = Gone(self.sealer.clone(), self.queue.clone());
        loop {
            let closed = self.wait_for_work();
            let Some(round) = self.round(closed) else {
                return;
            };
            if let Round::Store { batch, closing } = round {
                if !self.store(&batch, closing) || closing {
                    return;
                }
            }
        }
    }

    /// Waits until there is something to do: records to gather (for up to
    /// `linger` from the oldest not yet stored, unless someone waits for
    /// one or `max_batch` are queued), a time-based checkpoint, or the
    /// close. Returns whether the log is closed.
    fn wait_for_work(&self) -> bool {
        let Ok(mut o) = self.queue.order.lock() else {
            return true;
        };
        let idle_until = Instant::now() + self.idle_wait();
        while o.queue.is_empty() && o.pending_since.is_none() && !o.closed {
            let left = idle_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            o.writer_waits = WriterWaits::Any;
            o = match self.queue.bell.wait_timeout(o, left) {
                Ok((g, _)) => g,
                Err(_) => return true,
            };
        }
        if let Some(since) = o.pending_since {
            let deadline = since + self.linger;
            while !o.awaited && !o.closed && o.queue.len() < self.max_batch {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                o.writer_waits = WriterWaits::Awaited;
                o = match self.queue.bell.wait_timeout(o, left) {
                    Ok((g, _)) => g,
                    Err(_) => return true,
                };
            }
        }
        o.writer_waits = WriterWaits::Nothing;
        o.closed
    }

    /// Seals what is queued, journals it if someone waits for it, and
    /// takes everything sealed for the store when that is due. `None` if a
    /// lock is poisoned (the writer stops; waiters get `StoreDown`).
    fn round(&mut self, closed: bool) -> Option<Round> {
        let mut st = self.sealer.lock()?;
        st.seal_queued(&self.queue, self.max_batch)?;
        let (queue_empty, pending_since) = {
            let o = self.queue.order.lock().ok()?;
            (o.queue.is_empty(), o.pending_since)
        };
        let closing = closed && queue_empty;
        if st.owes() && !closed && st.journal_rest() {
            st.keep_promises(&self.shared);
        }
        let checkpoint_due = self.key.is_some()
            && self.since_checkpoint > 0
            && self.last_checkpoint.elapsed() >= self.policy.every;
        let due = closed
            || st.owes()
            || st.sealed.len() >= self.max_batch
            || pending_since.is_some_and(|t| t.elapsed() >= self.linger)
            || checkpoint_due;
        if !due {
            return Some(Round::Gathering);
        }
        let batch = st.take_for_store();
        // Under the sealer's lock: a submitter sealing right after this
        // leaves records that the next round must see as pending. Taken
        // records no longer count against the queue's capacity (as
        // records the writer took from the queue never did).
        if let Ok(mut o) = self.queue.order.lock() {
            o.pending_since = (!o.queue.is_empty()).then(Instant::now);
            o.sealed_count = o.sealed_count.saturating_sub(batch.len());
        }
        drop(st);
        Some(Round::Store { batch, closing })
    }

    /// How long to wait for records when idle: until a time-based
    /// checkpoint falls due, if one is owed.
    fn idle_wait(&self) -> Duration {
        if self.key.is_some() && self.since_checkpoint > 0 {
            self.policy
                .every
                .saturating_sub(self.last_checkpoint.elapsed())
                .max(Duration::from_millis(1))
        } else {
            Duration::from_secs(3600)
        }
    }

    /// Stores the batch, with a checkpoint when one is due, retrying with
    /// backoff until it succeeds (or, closing, gives up over a dead store:
    /// the batch then stays in the journal for the next open, and waiters
    /// get `StoreDown`). The batch is cut where a count-based checkpoint
    /// falls, so that checkpoints land every `every_records` records
    /// however records were batched.
    /// Returns false if it gave up (the log is closed and the store
    /// dead): the writer then stops.
    fn store(&mut self, batch: &[StoredItem], closing: bool) -> bool {
        let mut rest = batch;
        loop {
            let cut = if self.key.is_some() && self.policy.every_records > 0 {
                let room = self
                    .policy
                    .every_records
                    .saturating_sub(self.since_checkpoint)
                    .max(1);
                usize::try_from(room).unwrap_or(usize::MAX).min(rest.len())
            } else {
                rest.len()
            };
            let (part, after) = rest.split_at(cut);
            let last = after.is_empty();
            if !self.store_part(part, closing && last) {
                self.settle(false);
                return false;
            }
            rest = after;
            if last {
                break;
            }
        }
        self.settle(true);
        true
    }

    /// One commit; `last_of_log`: the final one, which always ends with a
    /// checkpoint. Returns false only when the log is closed and the store
    /// still fails after [`CLOSING_ATTEMPTS`].
    fn store_part(&mut self, batch: &[StoredItem], last_of_log: bool) -> bool {
        let since = self.since_checkpoint + batch.len() as u64;
        let due = self.key.is_some()
            && (self.policy.due(since, self.last_checkpoint.elapsed())
                || (last_of_log && since > 0));
        if batch.is_empty() && !due {
            return true;
        }
        let head = match batch.last() {
            Some(last) => Head {
                log: self.stored.log.clone(),
                size: last.sealed.seq,
                hash: last.sealed.hash,
            },
            None => self.stored.clone(),
        };
        let checkpoint = if due {
            self.key.as_ref().map(|k| k.checkpoint(&head, now_micros()))
        } else {
            None
        };
        let mut backoff = Duration::from_millis(10);
        let mut attempts = 0;
        loop {
            match self.store.commit(batch, checkpoint.as_ref(), &head) {
                Ok(()) => break,
                Err(_) => {
                    self.shared.healthy.store(false, Ordering::Relaxed);
                    attempts += 1;
                    // Closed meanwhile (whatever part of the batch this
                    // is): shutting down over a dead store gives up rather
                    // than hang the process.
                    if attempts >= CLOSING_ATTEMPTS && self.closed() {
                        return false;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.shared.healthy.store(true, Ordering::Relaxed);
        self.stored = head;
        if checkpoint.is_some() {
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
        } else {
            self.since_checkpoint = since;
        }
        true
    }

    fn closed(&self) -> bool {
        self.queue.order.lock().map_or(true, |o| o.closed)
    }

    /// After a store attempt: promises kept and the journal rewritten, or,
    /// if the store was given up, whoever waits answered.
    fn settle(&mut self, stored: bool) {
        if let Some(mut st) = self.sealer.lock() {
            if stored {
                st.stored(self.stored.size, &self.shared);
            } else {
                st.abandon();
            }
        }
    }
}
