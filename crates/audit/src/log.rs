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
//! the chain and commits it in one transaction: group commit. Under light
//! load a batch is one record and is committed as soon as the writer sees
//! it; under heavy load batches grow, and waiting costs one batch, not one
//! transaction per record. There is no lingering for a batch to fill, so a
//! queued record's age before commit is the commit time of the batch in
//! front of it.
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

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::canonical;
use crate::chain::{Chain, Hash, Head, LogId};
use crate::checkpoint::{CheckpointPolicy, PublicKey, SigningKey};
use crate::record::Record;
use crate::store::sqlite::{SqliteStore, Synchronous};
use crate::store::{BatchStore, IndexFields, StoredItem};
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
    pub checkpoints: CheckpointPolicy,
    /// Without a key no checkpoints are written (the chain is still kept).
    pub signing_key: Option<SigningKey>,
}

impl AuditConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AuditConfig {
            path: path.into(),
            synchronous: Synchronous::Normal,
            queue_capacity: 65_536,
            max_batch: 4_096,
            checkpoints: CheckpointPolicy::default(),
            signing_key: None,
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
    record: Vec<u8>,
    index: IndexFields,
    promise: Option<Promise>,
}

struct Order {
    next_seq: u64,
    last_ts: i64,
}

struct Shared {
    healthy: AtomicBool,
}

/// The audit log. Cheap to share behind an `Arc`; dropping the last handle
/// drains the queue, writes a final checkpoint and stops the writer.
pub struct AuditLog {
    sender: Mutex<Option<SyncSender<Submission>>>,
    order: Mutex<Order>,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    log: LogId,
    public_key: Option<PublicKey>,
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
        let store = SqliteStore::open(&config.path, config.synchronous)?;
        if let Some(key) = &config.signing_key {
            store.set_public_key(&key.public_key())?;
        }
        Self::start(store, config)
    }

    /// Starts a writer over any batch store.
    pub fn start<S: BatchStore + 'static>(
        store: S,
        config: AuditConfig,
    ) -> Result<Self, AuditError> {
        let head = store.head()?;
        let log = head.log.clone();
        let (sender, receiver) = mpsc::sync_channel(config.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
        });
        let order = Order {
            next_seq: head.size + 1,
            last_ts: 0,
        };
        let public_key = config.signing_key.as_ref().map(SigningKey::public_key);
        let writer = Writer {
            store,
            chain: Chain::resume(head),
            receiver,
            shared: shared.clone(),
            max_batch: config.max_batch.max(1),
            policy: config.checkpoints,
            key: config.signing_key,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| AuditError::Io {
                path: "audit writer thread".into(),
                source,
            })?;
        Ok(AuditLog {
            sender: Mutex::new(Some(sender)),
            order: Mutex::new(order),
            shared,
            writer: Mutex::new(Some(handle)),
            log,
            public_key,
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

    /// Queues a record without waiting. Fails with `QueueFull` or
    /// `StoreDown`; the caller decides what a failure means (fail closed).
    pub fn submit(&self, record: &Record) -> Result<Accepted, AuditError> {
        self.enqueue(record, None)
    }

    /// Queues a record and returns a [`Receipt`] that resolves when its
    /// batch is committed: `wait` it with a timeout, or `.await` it under
    /// the caller's own timeout.
    pub fn submit_with_receipt(&self, record: &Record) -> Result<(Accepted, Receipt), AuditError> {
        let slot = Arc::new(Slot::default());
        let accepted = self.enqueue(record, Some(Promise(Some(slot.clone()))))?;
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

    fn enqueue(&self, record: &Record, promise: Option<Promise>) -> Result<Accepted, AuditError> {
        if !self.is_healthy() {
            return Err(AuditError::StoreDown);
        }
        // Encoding and index extraction happen here, on the caller's
        // thread, so the single writer only seals, hashes and inserts.
        let bytes = canonical::encode(record)?;
        let index = IndexFields::of(record);
        let now = now_micros();
        let sender = self
            .sender
            .lock()
            .map_err(|_| AuditError::StoreDown)?
            .clone()
            .ok_or(AuditError::StoreDown)?;
        let mut order = self.order.lock().map_err(|_| AuditError::StoreDown)?;
        let seq = order.next_seq;
        let ts_micros = now.max(order.last_ts);
        let submission = Submission {
            seq,
            ts_micros,
            record: bytes,
            index,
            promise,
        };
        match sender.try_send(submission) {
            Ok(()) => {
                order.next_seq += 1;
                order.last_ts = ts_micros;
                Ok(Accepted { seq })
            }
            Err(TrySendError::Full(s)) => {
                if let Some(p) = s.promise {
                    p.forget();
                }
                Err(AuditError::QueueFull)
            }
            Err(TrySendError::Disconnected(s)) => {
                if let Some(p) = s.promise {
                    p.forget();
                }
                Err(AuditError::StoreDown)
            }
        }
    }

    /// Drains the queue, writes a final checkpoint and stops the writer.
    pub fn close(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
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
    receiver: Receiver<Submission>,
    shared: Arc<Shared>,
    max_batch: usize,
    policy: CheckpointPolicy,
    key: Option<SigningKey>,
    since_checkpoint: u64,
    last_checkpoint: Instant,
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
        let mut open = true;
        while open {
            let first = match self.receiver.recv_timeout(self.idle_wait()) {
                Ok(s) => Some(s),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            };
            let mut pending = Pending {
                items: Vec::new(),
                promises: Vec::new(),
            };
            if let Some(first) = first {
                self.seal(first, &mut pending);
                while pending.items.len() < self.max_batch {
                    match self.receiver.try_recv() {
                        Ok(s) => self.seal(s, &mut pending),
                        Err(_) => break,
                    }
                }
            }
            let closing = !open;
            self.commit(pending, closing);
        }
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

    fn seal(&mut self, s: Submission, pending: &mut Pending) {
        let sealed = self.chain.append(s.ts_micros, &s.record);
        debug_assert_eq!(sealed.seq, s.seq, "queue order and chain order agree");
        if let Some(p) = s.promise {
            pending.promises.push((pending.items.len(), p));
        }
        pending.items.push(StoredItem {
            sealed,
            index: s.index,
        });
    }

    /// Commits the batch (and a checkpoint when one is due), retrying with
    /// backoff until it succeeds.
    fn commit(&mut self, pending: Pending, closing: bool) {
        let since = self.since_checkpoint + pending.items.len() as u64;
        let due = self.key.is_some()
            && (self.policy.due(since, self.last_checkpoint.elapsed()) || (closing && since > 0));
        if pending.items.is_empty() && !due {
            return;
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
                        return;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.shared.healthy.store(true, Ordering::Relaxed);
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
    }
}
