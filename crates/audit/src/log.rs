//! The door: [`AuditLog`], a handle the proxy submits records through, and
//! the writer thread behind it.
//!
//! `submit` never blocks: it encodes the record on the caller's thread,
//! then `try_send`s it into a bounded queue. A full queue or a store that
//! is down is an error the caller acts on (fail closed: refuse the
//! statement). `submit_durable` / [`Receipt`] add a wait, bounded by a
//! timeout, for the commit of the batch that holds the record.
//!
//! The writer takes whatever is queued (up to `max_batch`), seals it into
//! the chain and commits it in one transaction: group commit. A record
//! someone waits for (a durable submit) is committed with whatever is
//! queued as soon as the writer sees it, so waiting costs one batch, not a
//! transaction per record. Records nobody waits for are gathered for up to
//! `linger` (10 ms) first: a commit rewrites every B-tree page it touches,
//! so one commit for many records is what keeps the store's cost per
//! record low when records trickle in one by one.
//!
//! If a commit fails, the writer keeps the batch (already sealed) and
//! retries it with backoff; meanwhile `submit` answers [`AuditError::StoreDown`]
//! so the proxy refuses statements, and no accepted record is dropped while
//! the process lives. A crash loses what was queued and not yet committed
//! (`queued` mode's bound); a durable submit that returned `Ok` is on disk.
//!
//! Sequence numbers and timestamps are assigned under one lock, in queue
//! order: seq is known at submit (so an outcome record can name its
//! statement's seq), and `ts` never decreases along the chain (clamped if
//! the clock steps back), which lets search turn a time range into a seq
//! range.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::chain::{Chain, Hash, Head, LogId};
use crate::checkpoint::{CheckpointPolicy, PublicKey, SigningKey};
use crate::journal::{self, Journal};
use crate::record::{Record, StatementOutcome};
use crate::store::sqlite::{Checkpointer, SqliteStore, Synchronous};
use crate::store::{BatchStore, StoredItem};
use crate::template::Encoded;
use crate::AuditError;

/// How to open an audit log.
#[derive(Debug)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Records the queue holds before `submit` answers `QueueFull`.
    pub queue_capacity: usize,
    /// Most records committed in one transaction.
    pub max_batch: usize,
    /// How long the writer gathers records nobody waits for before it
    /// commits them (a record someone waits for is committed at once).
    pub linger: Duration,
    pub checkpoints: CheckpointPolicy,
    /// Without a key no checkpoints are written (the chain is still kept).
    pub signing_key: Option<SigningKey>,
    /// With a bound, `submit` (not the durable submits) answers
    /// [`AuditError::Behind`] while the oldest record not yet committed
    /// has waited longer than this: what a crash can lose is then at
    /// most this old (plus the commit under way).
    pub max_queued_age: Option<Duration>,
}

impl AuditConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AuditConfig {
            path: path.into(),
            synchronous: Synchronous::Normal,
            queue_capacity: 65_536,
            max_batch: 4_096,
            linger: Duration::from_millis(10),
            checkpoints: CheckpointPolicy::default(),
            signing_key: None,
            max_queued_age: None,
        }
    }
}

/// A record was queued; `seq` is its place in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub seq: u64,
}

/// A record is in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub seq: u64,
    pub hash: Hash,
}

struct Submission {
    seq: u64,
    ts_micros: i64,
    record: Encoded,
    promise: Option<Promise>,
}

impl Submission {
    /// A statement record nobody waits for, without an outcome yet: its
    /// outcome is folded in if it arrives while the record is queued.
    fn foldable(&self) -> bool {
        self.promise.is_none() && self.record.foldable
    }
}

/// A record the queue did not take, handed back with why.
struct NotQueued {
    error: AuditError,
    record: Encoded,
}

/// What became of an outcome handed to [`AuditLog::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// Folded into its statement's record, still queued.
    Folded,
    /// Queued as an outcome record of its own.
    Queued(Accepted),
}

/// The queue and what goes with it, under one lock: a submit takes it
/// once, and wakes the writer only when the writer waits for that record
/// (idle, or lingering and the record is awaited), so a busy proxy pays no
/// wake-up per record.
struct Order {
    next_seq: u64,
    last_ts: i64,
    /// Records queued and perhaps not yet committed, oldest first, with
    /// when they were queued (only kept with `max_queued_age`).
    waiting: VecDeque<(u64, Instant)>,
    queue: Vec<Submission>,
    capacity: usize,
    /// Whether a queued record has someone waiting for its commit.
    awaited: bool,
    writer_waits: WriterWaits,
    closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterWaits {
    /// Busy: it looks at the queue when it is done.
    Nothing,
    /// Idle: any record wakes it.
    Any,
    /// Gathering records nobody waits for: only an awaited one wakes it.
    Awaited,
}

/// The queue's lock and the writer's doorbell.
struct Queue {
    order: Mutex<Order>,
    bell: Condvar,
}

struct Shared {
    healthy: AtomicBool,
    /// The highest seq committed.
    committed: AtomicU64,
}

/// The audit log. Cheap to share behind an `Arc`; dropping the last handle
/// drains the queue, writes a final checkpoint and stops the writer.
pub struct AuditLog {
    queue: Arc<Queue>,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    log: LogId,
    public_key: Option<PublicKey>,
    max_queued_age: Option<Duration>,
    /// The SQLite store's background checkpoints (see [`AuditLog::open`]).
    checkpointer: Mutex<Option<Checkpointer>>,
    /// Held while the log is open: no other process writes the store.
    lock: Mutex<Option<std::fs::File>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("log", &self.log).finish()
    }
}

impl AuditLog {
    /// Opens the SQLite store at `config.path` (creating it), resumes the
    /// chain from its head and starts the writer thread.
    pub fn open(config: AuditConfig) -> Result<Self, AuditError> {
        // One writer per store: a second would extend the chain from a
        // head it does not hold. The lock goes with the process.
        let lock = lock_store_patiently(&config.path)?;
        let mut store = SqliteStore::open(&config.path, config.synchronous)?;
        if let Some(key) = &config.signing_key {
            store.set_public_key(&key.public_key())?;
        }
        // Records a killed writer had made durable in its journal, and not
        // yet stored, continue the chain before anything new.
        let journal_path = journal::path_for(&config.path);
        journal::recover(&journal_path, &mut store)?;
        let journal = Journal::open(journal_path, config.synchronous == Synchronous::Full)?;
        let checkpointer = Checkpointer::start(&config.path, store.catch_up())?;
        let log = Self::start_with(store, config, Some(journal))?;
        if let Ok(mut c) = log.checkpointer.lock() {
            *c = Some(checkpointer);
        }
        if let Ok(mut l) = log.lock.lock() {
            *l = Some(lock);
        }
        Ok(log)
    }

    /// Starts a writer over any batch store (records someone waits for
    /// are committed to the store itself before the wait ends).
    pub fn start<S: BatchStore + 'static>(
        store: S,
        config: AuditConfig,
    ) -> Result<Self, AuditError> {
        Self::start_with(store, config, None)
    }

    fn start_with<S: BatchStore + 'static>(
        store: S,
        config: AuditConfig,
        journal: Option<Journal>,
    ) -> Result<Self, AuditError> {
        let head = store.head()?;
        let log = head.log.clone();
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            committed: AtomicU64::new(head.size),
        });
        let queue = Arc::new(Queue {
            order: Mutex::new(Order {
                next_seq: head.size + 1,
                last_ts: 0,
                waiting: VecDeque::new(),
                queue: Vec::new(),
                capacity: config.queue_capacity.max(1),
                awaited: false,
                writer_waits: WriterWaits::Nothing,
                closed: false,
            }),
            bell: Condvar::new(),
        });
        let public_key = config.signing_key.as_ref().map(SigningKey::public_key);
        let writer = Writer {
            store,
            chain: Chain::resume(head),
            queue: queue.clone(),
            shared: shared.clone(),
            max_batch: config.max_batch.max(1),
            linger: config.linger,
            policy: config.checkpoints,
            key: config.signing_key,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            journal,
            held: Vec::new(),
            held_since: None,
        };
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| AuditError::Io {
                path: "audit writer thread".into(),
                source,
            })?;
        Ok(AuditLog {
            queue,
            shared,
            writer: Mutex::new(Some(handle)),
            log,
            public_key,
            max_queued_age: config.max_queued_age,
            checkpointer: Mutex::new(None),
            lock: Mutex::new(None),
        })
    }

    pub fn log_id(&self) -> &LogId {
        &self.log
    }

    /// The public half of the checkpoint key, for export.
    pub fn public_key(&self) -> Option<PublicKey> {
        self.public_key
    }

    /// Whether the last commit succeeded.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    /// Queues a record without waiting. Fails with `QueueFull`,
    /// `StoreDown` or `Behind` (see [`AuditConfig::max_queued_age`]); the
    /// caller decides what a failure means (fail closed, or wait for a
    /// receipt instead).
    pub fn submit(&self, record: &Record) -> Result<Accepted, AuditError> {
        self.enqueue(Encoded::of(record)?, None, true)
            .map_err(|n| n.error)
    }

    /// Queues a record already encoded (see [`crate::template`]). With
    /// `wait`, or when the writer is further behind than
    /// [`AuditConfig::max_queued_age`] allows a record nobody waits for,
    /// also returns a [`Receipt`] to await before acting on the record:
    /// then what a crash can lose stays within the bound instead of the
    /// record being refused.
    pub fn submit_encoded(
        &self,
        record: Encoded,
        wait: bool,
    ) -> Result<(Accepted, Option<Receipt>), AuditError> {
        let record = if wait {
            record
        } else {
            match self.enqueue(record, None, true) {
                Ok(a) => return Ok((a, None)),
                Err(n) if matches!(n.error, AuditError::Behind(_)) => n.record,
                Err(n) => return Err(n.error),
            }
        };
        let (accepted, receipt) = self.enqueue_with_receipt(record)?;
        Ok((accepted, Some(receipt)))
    }

    /// Queues a record that follows one already accepted (an outcome, a
    /// session's end) without waiting and without the age bound: nothing
    /// can wait for it, and refusing it would only lose it.
    pub fn submit_follow_up(&self, record: &Record) -> Result<Accepted, AuditError> {
        self.enqueue(Encoded::of(record)?, None, false)
            .map_err(|n| n.error)
    }

    /// Records the outcome of the statement at `statement_seq`: folded
    /// into that statement's record while the record waits in the queue
    /// (a `submit`ted statement nobody waits for, without an outcome yet),
    /// else queued as an outcome record (as
    /// [`submit_follow_up`](Self::submit_follow_up) would). Folding saves a
    /// record per statement on a busy `queued` target; it changes nothing a
    /// crash can lose, since the statement's record was not yet written.
    pub fn complete(
        &self,
        statement_seq: u64,
        session_id: &str,
        statement_id: u64,
        outcome: &StatementOutcome,
    ) -> Result<Completed, AuditError> {
        if self.try_fold(statement_seq, outcome)? {
            return Ok(Completed::Folded);
        }
        let record = Encoded::outcome(statement_seq, session_id, statement_id, outcome);
        self.enqueue(record, None, false)
            .map(Completed::Queued)
            .map_err(|n| n.error)
    }

    /// Folds `outcome` into the queued record at `seq` if it may take it.
    /// The outcome is encoded under the queue's lock, and only when it is
    /// folded: most outcomes of a strict target never are.
    fn try_fold(&self, seq: u64, outcome: &StatementOutcome) -> Result<bool, AuditError> {
        let mut order = self.queue.order.lock().map_err(|_| AuditError::StoreDown)?;
        // The queue holds consecutive seqs, oldest first.
        let Some(first) = order.queue.first().map(|s| s.seq) else {
            return Ok(false);
        };
        let Some(s) = seq
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| order.queue.get_mut(i))
            .filter(|s| s.seq == seq && s.foldable())
        else {
            return Ok(false);
        };
        // This cannot fail on records the proxy builds; if it ever did,
        // the outcome is written as a record of its own instead.
        Ok(s.record.fold(outcome).is_ok())
    }

    /// Queues a record and returns a [`Receipt`] that resolves when its
    /// batch is committed: `wait` it with a timeout, or `.await` it under
    /// the caller's own timeout.
    pub fn submit_with_receipt(&self, record: &Record) -> Result<(Accepted, Receipt), AuditError> {
        self.enqueue_with_receipt(Encoded::of(record)?)
    }

    fn enqueue_with_receipt(&self, record: Encoded) -> Result<(Accepted, Receipt), AuditError> {
        let slot = Arc::new(Slot::default());
        let accepted = self
            .enqueue(record, Some(Promise(Some(slot.clone()))), false)
            .map_err(|n| n.error)?;
        Ok((accepted, Receipt { slot }))
    }

    /// Queues a record and blocks until it is committed or `timeout` passes.
    pub fn submit_durable(
        &self,
        record: &Record,
        timeout: Duration,
    ) -> Result<Committed, AuditError> {
        let (_, receipt) = self.submit_with_receipt(record)?;
        receipt.wait(timeout)
    }

    /// Queues `record`, encoded on the caller's thread so the single
    /// writer only seals, hashes and inserts.
    fn enqueue(
        &self,
        record: Encoded,
        promise: Option<Promise>,
        bounded: bool,
    ) -> Result<Accepted, Box<NotQueued>> {
        let refuse = |error, record| Err(Box::new(NotQueued { error, record }));
        if !self.is_healthy() {
            return refuse(AuditError::StoreDown, record);
        }
        let now = now_micros();
        let Ok(mut order) = self.queue.order.lock() else {
            return refuse(AuditError::StoreDown, record);
        };
        if order.closed {
            return refuse(AuditError::StoreDown, record);
        }
        if let Some(max) = self.max_queued_age {
            let committed = self.shared.committed.load(Ordering::Acquire);
            while order.waiting.front().is_some_and(|(s, _)| *s <= committed) {
                order.waiting.pop_front();
            }
            // A durable submit waits for its own commit; only records the
            // caller will not wait for are held to the age bound.
            if let (true, Some((_, queued))) = (bounded, order.waiting.front()) {
                let age = queued.elapsed();
                if age > max {
                    if let Some(p) = promise {
                        p.forget();
                    }
                    return refuse(AuditError::Behind(age), record);
                }
            }
        }
        if order.queue.len() >= order.capacity {
            if let Some(p) = promise {
                p.forget();
            }
            return refuse(AuditError::QueueFull, record);
        }
        let seq = order.next_seq;
        let ts_micros = now.max(order.last_ts);
        let awaited = promise.is_some();
        order.queue.push(Submission {
            seq,
            ts_micros,
            record,
            promise,
        });
        order.next_seq += 1;
        order.last_ts = ts_micros;
        order.awaited |= awaited;
        if self.max_queued_age.is_some() {
            order.waiting.push_back((seq, Instant::now()));
        }
        let wake = match order.writer_waits {
            WriterWaits::Any => true,
            WriterWaits::Awaited => awaited,
            WriterWaits::Nothing => false,
        };
        if wake {
            order.writer_waits = WriterWaits::Nothing;
            self.queue.bell.notify_one();
        }
        Ok(Accepted { seq })
    }

    /// Drains the queue, writes a final checkpoint and stops the writer.
    pub fn close(&self) {
        if let Ok(mut o) = self.queue.order.lock() {
            o.closed = true;
            self.queue.bell.notify_one();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        // After the writer: its last commits are checkpointed when the
        // last connection closes.
        let checkpointer = self.checkpointer.lock().ok().and_then(|mut c| c.take());
        drop(checkpointer);
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// [`lock_store`], retried for up to [`LOCK_PATIENCE`]: a reader that
/// found a dead writer's journal holds the lock while it moves the records
/// in (see [`crate::journal`]), which takes moments; a second writer holds
/// it for as long as it runs and is still refused.
fn lock_store_patiently(path: &std::path::Path) -> Result<std::fs::File, AuditError> {
    let until = Instant::now() + LOCK_PATIENCE;
    loop {
        match lock_store(path) {
            Err(AuditError::InUse(_)) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// How long opening a log waits for a store's lock.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// An exclusive lock on `<store>.lock`, or `InUse` if another process
/// (or another log in this one) holds it.
pub(crate) fn lock_store(path: &std::path::Path) -> Result<std::fs::File, AuditError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| AuditError::Io {
            path: lock_path.display().to_string(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(AuditError::InUse(path.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(AuditError::Io {
            path: lock_path.display().to_string(),
            source,
        }),
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------- receipts

#[derive(Default)]
struct Slot {
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

/// The writer's side of a receipt. Dropped unfulfilled (the writer died),
/// it resolves the receipt as `StoreDown`, so no waiter waits for nothing.
struct Promise(Option<Arc<Slot>>);

impl Promise {
    fn keep(mut self, committed: Committed) {
        if let Some(slot) = self.0.take() {
            slot.fulfil(Ok(committed));
        }
    }

    /// The submission was refused; nobody holds the receipt.
    fn forget(mut self) {
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

/// Resolves when the record's batch is committed.
pub struct Receipt {
    slot: Arc<Slot>,
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
    /// Blocks until committed, or `timeout`.
    pub fn wait(self, timeout: Duration) -> Result<Committed, AuditError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.slot.state.lock().map_err(|_| AuditError::StoreDown)?;
        loop {
            if let Some(r) = st.result.take() {
                return resolve(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AuditError::Timeout(timeout));
            }
            st = self
                .slot
                .ready
                .wait_timeout(st, left)
                .map_err(|_| AuditError::StoreDown)?
                .0;
        }
    }
}

impl Future for Receipt {
    type Output = Result<Committed, AuditError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut st) = self.slot.state.lock() else {
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

// ---------------------------------------------------------------- writer

struct Writer<S> {
    store: S,
    chain: Chain,
    queue: Arc<Queue>,
    shared: Arc<Shared>,
    max_batch: usize,
    linger: Duration,
    policy: CheckpointPolicy,
    key: Option<SigningKey>,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// Where records someone waits for become durable first (see
    /// [`crate::journal`]); none for a store whose commit is the only
    /// durable step (PostgreSQL).
    journal: Option<Journal>,
    /// Sealed records in the journal and not yet in the store, in order,
    /// and since when the oldest has waited.
    held: Vec<StoredItem>,
    held_since: Option<Instant>,
}

/// A sealed batch waiting to be committed, with the promises to keep.
struct Pending {
    items: Vec<StoredItem>,
    promises: Vec<(usize, Promise)>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(1);
const CLOSING_ATTEMPTS: u32 = 5;

impl<S: BatchStore> Writer<S> {
    fn run(mut self) {
        let mut spare: Vec<Submission> = Vec::new();
        loop {
            let (mut taken, closing) = self.take(std::mem::take(&mut spare));
            let mut pending = Pending {
                items: Vec::with_capacity(taken.len()),
                promises: Vec::new(),
            };
            for s in taken.drain(..) {
                self.seal(s, &mut pending);
            }
            spare = taken;
            if !closing && !pending.promises.is_empty() {
                pending = match self.journal_first(pending) {
                    Ok(()) => continue,
                    Err(p) => p,
                };
            }
            // Whatever the journal holds goes to the store with this batch,
            // ahead of it.
            if !self.held.is_empty() {
                let shift = self.held.len();
                let mut items = std::mem::take(&mut self.held);
                items.append(&mut pending.items);
                pending.items = items;
                for (i, _) in &mut pending.promises {
                    *i += shift;
                }
                self.held_since = None;
            }
            self.store_and_clear(pending, closing);
            if closing {
                return;
            }
        }
    }

    /// Makes a batch that someone waits for durable in the journal and
    /// keeps its promises at once; the store gets it with a later commit,
    /// gathered with others. Hands the batch back if the journal fails (it
    /// is then committed to the store, as without a journal).
    fn journal_first(&mut self, pending: Pending) -> Result<(), Pending> {
        let Some(journal) = &mut self.journal else {
            return Err(pending);
        };
        if journal.append(&pending.items).is_err() {
            return Err(pending);
        }
        if let Some(last) = pending.items.last() {
            self.shared
                .committed
                .store(last.sealed.seq, Ordering::Release);
        }
        for (i, promise) in pending.promises {
            let s = &pending.items[i].sealed;
            promise.keep(Committed {
                seq: s.seq,
                hash: s.hash,
            });
        }
        self.held.extend(pending.items);
        let since = *self.held_since.get_or_insert_with(Instant::now);
        if self.held.len() >= self.max_batch || since.elapsed() >= self.linger {
            // Stored now rather than after the next wait.
            let items = std::mem::take(&mut self.held);
            self.held_since = None;
            self.store_and_clear(
                Pending {
                    items,
                    promises: Vec::new(),
                },
                false,
            );
        }
        Ok(())
    }

    /// Commits `pending`, which holds everything the journal holds, then
    /// empties the journal. Emptied only once the store has it all: if
    /// closing gave up over a dead store, the next open recovers the
    /// journal; if emptying fails, the next open skips what is stored.
    fn store_and_clear(&mut self, pending: Pending, closing: bool) {
        let any = !pending.items.is_empty();
        if self.commit(pending, closing) && any {
            if let Some(j) = &mut self.journal {
                let _ = j.clear();
            }
        }
    }

    /// Waits for records and takes up to `max_batch` of them (swapping
    /// `spare` in when it takes all). Records nobody waits for are gathered
    /// for up to `linger` so that one commit serves many; a record someone
    /// waits for ends the wait. Returns with nothing when a time-based
    /// checkpoint falls due; `closing` once the log is closed and the
    /// queue is empty after this take.
    fn take(&self, mut spare: Vec<Submission>) -> (Vec<Submission>, bool) {
        let Ok(mut o) = self.queue.order.lock() else {
            return (spare, true);
        };
        let idle = self.idle_wait();
        let idle_until = Instant::now() + idle;
        while o.queue.is_empty() && !o.closed {
            let left = idle_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            o.writer_waits = WriterWaits::Any;
            o = match self.queue.bell.wait_timeout(o, left) {
                Ok((g, _)) => g,
                Err(_) => return (spare, true),
            };
        }
        if !o.queue.is_empty() {
            let deadline = Instant::now() + self.linger;
            while !o.awaited && !o.closed && o.queue.len() < self.max_batch {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                o.writer_waits = WriterWaits::Awaited;
                o = match self.queue.bell.wait_timeout(o, left) {
                    Ok((g, _)) => g,
                    Err(_) => return (spare, true),
                };
            }
        }
        o.writer_waits = WriterWaits::Nothing;
        let taken = if o.queue.len() <= self.max_batch {
            spare.clear();
            std::mem::swap(&mut o.queue, &mut spare);
            o.awaited = false;
            spare
        } else {
            let rest = o.queue.split_off(self.max_batch);
            let taken = std::mem::replace(&mut o.queue, rest);
            o.awaited = o.queue.iter().any(|s| s.promise.is_some());
            taken
        };
        let closing = o.closed && o.queue.is_empty();
        (taken, closing)
    }

    /// How long to wait for records when idle: until a time-based
    /// checkpoint falls due, if one is owed.
    fn idle_wait(&self) -> Duration {
        let checkpoint = if self.key.is_some() && self.since_checkpoint > 0 {
            self.policy
                .every
                .saturating_sub(self.last_checkpoint.elapsed())
                .max(Duration::from_millis(1))
        } else {
            Duration::from_secs(3600)
        };
        // Records held in the journal reach the store within `linger`.
        match self.held_since {
            Some(since) => checkpoint.min(self.linger.saturating_sub(since.elapsed())),
            None => checkpoint,
        }
    }

    fn seal(&mut self, s: Submission, pending: &mut Pending) {
        let sealed = self.chain.append(s.ts_micros, &s.record.bytes);
        debug_assert_eq!(sealed.seq, s.seq, "queue order and chain order agree");
        if let Some(p) = s.promise {
            pending.promises.push((pending.items.len(), p));
        }
        pending.items.push(StoredItem {
            sealed,
            index: s.record.index,
        });
    }

    /// Commits the batch (and a checkpoint when one is due), retrying with
    /// backoff until it succeeds.
    /// Returns whether the batch is in the store (false only when closing
    /// gave up over a dead store).
    fn commit(&mut self, pending: Pending, closing: bool) -> bool {
        let since = self.since_checkpoint + pending.items.len() as u64;
        let due = self.key.is_some()
            && (self.policy.due(since, self.last_checkpoint.elapsed()) || (closing && since > 0));
        if pending.items.is_empty() && !due {
            return true;
        }
        let head: Head = self.chain.head().clone();
        let checkpoint = if due {
            self.key.as_ref().map(|k| k.checkpoint(&head, now_micros()))
        } else {
            None
        };
        let mut backoff = Duration::from_millis(10);
        let mut attempts = 0;
        loop {
            match self
                .store
                .commit(&pending.items, checkpoint.as_ref(), &head)
            {
                Ok(()) => break,
                Err(_) => {
                    self.shared.healthy.store(false, Ordering::Relaxed);
                    attempts += 1;
                    if closing && attempts >= CLOSING_ATTEMPTS {
                        // Shutting down over a dead store: give up rather
                        // than hang the process; waiters get StoreDown.
                        return false;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.shared.healthy.store(true, Ordering::Relaxed);
        if let Some(last) = pending.items.last() {
            self.shared
                .committed
                .store(last.sealed.seq, Ordering::Release);
        }
        if checkpoint.is_some() {
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
        } else {
            self.since_checkpoint = since;
        }
        for (i, promise) in pending.promises {
            let s = &pending.items[i].sealed;
            promise.keep(Committed {
                seq: s.seq,
                hash: s.hash,
            });
        }
        true
    }
}
