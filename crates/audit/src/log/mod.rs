//! The door: [`AuditLog`], a handle the proxy submits records through, and
//! the writer thread behind it.
//!
//! `submit` never blocks: it encodes the record on the caller's thread,
//! then `try_send`s it into a bounded queue. A full queue or a store that
//! is down is an error the caller acts on (fail closed: refuse the
//! statement). `submit_durable` / [`Receipt`] add a wait, bounded by a
//! timeout, for the commit of the batch that holds the record.
//!
//! Records are sealed into the chain in seq order under one lock
//! ([`sealer`]), by the writer or by a submitter that waits. A record
//! someone waits for (a durable submit) is made durable by one append to
//! the writer's journal of everything sealed so far: on the waiting thread
//! itself where the journal is not fsynced per append (the SQLite store at
//! `synchronous = normal`), else by the writer, which keeps a promise
//! ([`receipt`]). So waiting costs one write for a group, not a
//! transaction per record, and on the common path no thread wakes another.
//! The writer stores sealed records in batches (group commit), gathered
//! for up to `linger` (10 ms) from the oldest: a commit rewrites every
//! page it touches, so one commit for many records is what keeps the
//! store's cost per record low. Without a journal (the PostgreSQL store),
//! a record someone waits for is committed with whatever is queued as soon
//! as the writer sees it. Count-based checkpoints cut a batch where they
//! fall, so they land every `every_records` records however records were
//! batched.
//!
//! If a commit fails, the writer keeps the batch (already sealed) and
//! retries it with backoff; meanwhile `submit` answers [`AuditError::StoreDown`]
//! so the proxy refuses statements, and no accepted record is dropped while
//! the process lives. A crash loses what was queued and not yet committed
//! (`queued` mode's bound); a durable submit that returned `Ok` is in the
//! journal or the store.
//!
//! Sequence numbers and timestamps are assigned under one lock, in queue
//! order: seq is known at submit (so an outcome record can name its
//! statement's seq), and `ts` never decreases along the chain (clamped if
//! the clock steps back), which lets search turn a time range into a seq
//! range.

mod receipt;
mod sealer;
mod writer;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use receipt::Promise;
pub use receipt::{Committed, Receipt};
use sealer::Sealer;
use writer::Writer;

use crate::chain::{Chain, LogId};
use crate::checkpoint::{CheckpointPolicy, PublicKey, SigningKey};
use crate::journal::{self, Journal};
use crate::record::{Record, StatementOutcome};
use crate::store::sqlite::{Checkpointer, SqliteStore, Synchronous};
use crate::store::BatchStore;
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
    /// Since when the oldest record not yet stored (queued or sealed)
    /// has waited: the writer stores within `linger` of it.
    pending_since: Option<Instant>,
    /// Records sealed by submitters and not yet taken by the writer: with
    /// the queue, what the capacity bounds.
    sealed_count: usize,
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
    sealer: Arc<Sealer>,
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
                pending_since: None,
                sealed_count: 0,
                writer_waits: WriterWaits::Nothing,
                closed: false,
            }),
            bell: Condvar::new(),
        });
        let public_key = config.signing_key.as_ref().map(SigningKey::public_key);
        let sealer = Arc::new(Sealer::new(
            Chain::resume(head.clone()),
            journal,
            shared.clone(),
        ));
        let writer = Writer {
            store,
            sealer: sealer.clone(),
            queue: queue.clone(),
            shared: shared.clone(),
            max_batch: config.max_batch.max(1),
            linger: config.linger,
            policy: config.checkpoints,
            key: config.signing_key,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            stored: head,
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
            sealer,
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

    /// A receipt that makes the record durable on the waiting thread
    /// where the journal allows (see [`sealer`]), else one the writer
    /// answers.
    fn enqueue_with_receipt(&self, record: Encoded) -> Result<(Accepted, Receipt), AuditError> {
        if self.sealer.inline() {
            let accepted = self.enqueue(record, None, false).map_err(|n| n.error)?;
            let receipt = Receipt::inline(accepted.seq, self.sealer.clone(), self.queue.clone());
            return Ok((accepted, receipt));
        }
        let (promise, slot) = Promise::new();
        let accepted = self
            .enqueue(record, Some(promise), false)
            .map_err(|n| n.error)?;
        Ok((accepted, Receipt::promised(slot)))
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
        if order.queue.len() + order.sealed_count >= order.capacity {
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
        order.pending_since.get_or_insert_with(Instant::now);
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

#[cfg(test)]
mod tests;
