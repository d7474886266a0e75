//! The sealer: the chain, the journal and the records sealed but not yet
//! stored, under one lock that the writer and waiting submitters share.
//!
//! Why submitters: a `strict` statement waits until its record is durable.
//! When the writer did that for it, each wait cost a wake-up of the writer
//! thread and one of the session back (futexes, an eventfd into tokio),
//! more than the journal write itself. Now a waiting submitter takes the
//! lock, seals everything queued up to and past its record (in seq order,
//! so the chain is the same whoever seals), appends what is not yet in the
//! journal in one write, and goes on: the next waiter usually finds its
//! record already durable (group commit without a thread in between).
//! Only with a journal that is not fsynced per append (`synchronous =
//! normal`): an fsync on a session's thread would stall every session that
//! thread serves. Otherwise, and whenever the journal fails, waiters get
//! a promise the writer keeps (see [`super::receipt`]).
//!
//! Invariant (what [`crate::journal::recover`] relies on): the journal
//! holds, after records already stored, every record from the one after
//! the store's head up to `durable`, in chain order. So a submitter that
//! journals while the writer is storing a batch of records nobody waited
//! for journals that batch's rest first (`in_flight`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::receipt::{Committed, Promise, Slot};
use super::{Queue, Shared, Submission, WriterWaits};
use crate::chain::Chain;
use crate::journal::Journal;
use crate::store::StoredItem;

/// How long storing one batch may take before waiters stop journaling
/// their own records and wait for the store instead. A batch normally
/// takes a few milliseconds; a store held by another writer or out of
/// reach takes until it is back.
const STALLED: Duration = Duration::from_millis(40);

/// A journal this long (bytes) is rewritten to hold only the records not
/// yet stored, after a store commit.
const JOURNAL_REWRITE: u64 = 4 << 20;

pub(crate) struct Sealer {
    state: Mutex<SealState>,
    /// Whether waiting submitters make their records durable themselves.
    inline: AtomicBool,
    /// Set when the writer thread has ended (closed, gave up, or
    /// panicked): nothing not yet durable ever will be.
    gone: AtomicBool,
    /// [`STALLED`], in µs (tests lengthen it).
    stall_after_micros: AtomicU64,
    shared: Arc<Shared>,
}

pub(super) struct SealState {
    pub(super) chain: Chain,
    journal: Option<Journal>,
    /// Sealed and not yet taken by the writer, in chain order; the first
    /// `journaled` of them are in the journal.
    pub(super) sealed: Vec<StoredItem>,
    pub(super) journaled: usize,
    /// The batch the writer is storing, how much of it is journaled, and
    /// since when it is being stored.
    in_flight: Option<Arc<Vec<StoredItem>>>,
    in_flight_journaled: usize,
    in_flight_since: Option<Instant>,
    /// The highest seq that is durable (journaled or stored).
    pub(super) durable: u64,
    /// Waiters the writer owes an answer: kept once their seq is durable.
    promises: Vec<(u64, Promise)>,
}

impl Sealer {
    pub(super) fn new(chain: Chain, journal: Option<Journal>, shared: Arc<Shared>) -> Sealer {
        let inline = journal.as_ref().is_some_and(|j| !j.syncs());
        let durable = chain.head().size;
        Sealer {
            state: Mutex::new(SealState {
                chain,
                journal,
                sealed: Vec::new(),
                journaled: 0,
                in_flight: None,
                in_flight_journaled: 0,
                in_flight_since: None,
                durable,
                promises: Vec::new(),
            }),
            inline: AtomicBool::new(inline),
            gone: AtomicBool::new(false),
            stall_after_micros: AtomicU64::new(STALLED.as_micros() as u64),
            shared,
        }
    }

    /// The writer thread has ended: whoever waits for a record that is not
    /// durable is answered `StoreDown` now, and later waiters at once.
    pub(super) fn writer_gone(&self, queue: &Queue) {
        self.gone.store(true, Ordering::Release);
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .promises
            .clear();
        // Records still queued will not be sealed either.
        let mut o = queue.order.lock().unwrap_or_else(|e| e.into_inner());
        for s in &mut o.queue {
            s.promise.take();
        }
    }

    #[cfg(test)]
    pub(super) fn set_stall_after(&self, after: Duration) {
        self.stall_after_micros
            .store(after.as_micros() as u64, Ordering::Relaxed);
    }

    pub(super) fn lock(&self) -> Option<MutexGuard<'_, SealState>> {
        self.state.lock().ok()
    }

    pub(super) fn inline(&self) -> bool {
        self.inline.load(Ordering::Relaxed)
    }

    /// Makes the record at `seq` (already queued) durable on this thread.
    /// `Err(Some(slot))`: it cannot be done here; the writer will answer
    /// through the slot. `Err(None)`: the log is broken or closed.
    pub(super) fn make_durable(&self, seq: u64, queue: &Queue) -> Result<(), Option<Arc<Slot>>> {
        let mut st = self.lock().ok_or(None)?;
        if st.durable >= seq {
            return Ok(());
        }
        if self.gone.load(Ordering::Acquire) {
            return Err(None);
        }
        st.seal_queued(queue, usize::MAX).ok_or(None)?;
        // A store that is not taking batches (locked, unreachable) must
        // not be papered over by a growing journal: the statement then
        // waits for the store like any other, and is refused when its
        // wait runs out (fail closed).
        let stall_after = Duration::from_micros(self.stall_after_micros.load(Ordering::Relaxed));
        if !st.stalled(stall_after) {
            if st.journal_rest() {
                st.keep_promises(&self.shared);
            } else {
                self.inline.store(false, Ordering::Relaxed);
            }
        }
        if st.durable >= seq {
            return Ok(());
        }
        // The journal failed, or the record is in a batch being stored
        // without one: the writer answers once it is stored.
        let (promise, slot) = Promise::new();
        st.promises.push((seq, promise));
        drop(st);
        let mut o = queue.order.lock().map_err(|_| None)?;
        o.awaited = true;
        if o.writer_waits != WriterWaits::Nothing {
            o.writer_waits = WriterWaits::Nothing;
            queue.bell.notify_one();
        }
        Err(Some(slot))
    }
}

impl SealState {
    /// Seals up to `max` queued records, in queue (= seq) order. The queue's
    /// lock is held only to take them. `None` if that lock is poisoned.
    pub(super) fn seal_queued(&mut self, queue: &Queue, max: usize) -> Option<()> {
        let taken: Vec<Submission> = {
            let mut o = queue.order.lock().ok()?;
            let taken = if o.queue.len() <= max {
                std::mem::take(&mut o.queue)
            } else {
                let rest = o.queue.split_off(max);
                std::mem::replace(&mut o.queue, rest)
            };
            o.awaited = o.queue.iter().any(|s| s.promise.is_some());
            o.sealed_count += taken.len();
            taken
        };
        self.sealed.reserve(taken.len());
        for s in taken {
            let sealed = self.chain.append(s.ts_micros, &s.record.bytes);
            debug_assert_eq!(sealed.seq, s.seq, "queue order and chain order agree");
            if let Some(p) = s.promise {
                self.promises.push((sealed.seq, p));
            }
            self.sealed.push(StoredItem {
                sealed,
                index: s.record.index,
            });
        }
        Some(())
    }

    /// Whether the writer has been storing one batch for longer than a
    /// store that keeps up ever takes ([`STALLED`]).
    fn stalled(&self, after: Duration) -> bool {
        self.in_flight_since.is_some_and(|t| t.elapsed() >= after)
    }

    /// Whether the writer is storing a batch.
    #[cfg(test)]
    pub(super) fn storing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether someone waits for a record that is not yet durable.
    pub(super) fn owes(&self) -> bool {
        !self.promises.is_empty()
    }

    /// Appends to the journal, in one write, every sealed record not yet
    /// in it (the writer's batch in flight first). Returns whether the
    /// journal now holds them all; without a journal, or if the write
    /// fails (the journal is then given up), `false`.
    pub(super) fn journal_rest(&mut self) -> bool {
        let flight: &[StoredItem] = match &self.in_flight {
            Some(b) => &b[self.in_flight_journaled.min(b.len())..],
            None => &[],
        };
        let rest = &self.sealed[self.journaled..];
        if flight.is_empty() && rest.is_empty() {
            return true;
        }
        let Some(journal) = &mut self.journal else {
            return false;
        };
        if journal.append_parts(&[flight, rest]).is_err() {
            self.journal = None;
            return false;
        }
        if let Some(last) = rest.last().or(flight.last()) {
            self.durable = self.durable.max(last.sealed.seq);
        }
        if let Some(b) = &self.in_flight {
            self.in_flight_journaled = b.len();
        }
        self.journaled = self.sealed.len();
        true
    }

    /// Keeps the promises of records that are durable now.
    pub(super) fn keep_promises(&mut self, shared: &Shared) {
        shared.committed.fetch_max(self.durable, Ordering::Release);
        let durable = self.durable;
        let mut i = 0;
        while i < self.promises.len() {
            if self.promises[i].0 <= durable {
                let (seq, p) = self.promises.swap_remove(i);
                p.keep(Committed { seq });
            } else {
                i += 1;
            }
        }
    }

    /// Hands every sealed record to the writer to store; the journal's
    /// share of them stays known until [`stored`](Self::stored).
    pub(super) fn take_for_store(&mut self) -> Arc<Vec<StoredItem>> {
        let batch = Arc::new(std::mem::take(&mut self.sealed));
        self.in_flight = Some(batch.clone());
        self.in_flight_since = Some(Instant::now());
        self.in_flight_journaled = self.journaled;
        self.journaled = 0;
        batch
    }

    /// The batch in flight is in the store, up to `head_seq`: keeps the
    /// promises now kept, and rewrites the journal to hold only what is
    /// journaled and not yet stored.
    pub(super) fn stored(&mut self, head_seq: u64, shared: &Shared) {
        self.in_flight = None;
        self.in_flight_journaled = 0;
        self.in_flight_since = None;
        self.durable = self.durable.max(head_seq);
        self.keep_promises(shared);
        if let Some(journal) = &mut self.journal {
            // Stored records may stay in the journal (recovery skips
            // them): it is emptied when it holds nothing else, and
            // rewritten (a new file, renamed) only once it has grown, not
            // after every store commit. If that fails the old journal
            // stays, which is as good.
            let _ = if self.journaled == 0 {
                journal.clear()
            } else if journal.len() >= JOURNAL_REWRITE {
                journal.replace(&self.sealed[..self.journaled])
            } else {
                Ok(())
            };
        }
    }

    /// The records in flight were not stored (closing over a dead store):
    /// they stay in the journal, where the next open finds them.
    /// Whoever still waits is answered `StoreDown` (the promises are
    /// dropped unkept).
    pub(super) fn abandon(&mut self) {
        self.in_flight = None;
        self.in_flight_since = None;
        self.promises.clear();
    }
}
