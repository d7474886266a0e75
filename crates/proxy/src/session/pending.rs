//! What the server still owes the client, message by message.
//!
//! The proxy keeps a model of the server's reply stream so it can tell when a
//! session is idle, measure statement latency, and (for policy work) answer
//! a request itself in exactly the place the server would. The model follows
//! PostgreSQL's own rules (`src/backend/tcop/postgres.c`):
//!
//! - Parse, Bind, Describe, Execute and Close each get one reply (an Execute
//!   may first start a COPY); Sync, Query and FunctionCall end in
//!   ReadyForQuery; Flush and copy data get none.
//! - After an error in an extended-protocol message the server discards
//!   every message up to the next Sync, including a Query.
//! - While the server is in COPY FROM STDIN mode it ignores Sync and Flush;
//!   it enters that mode in the middle of a client's pipeline, so Syncs the
//!   client sent after the COPY's Execute and before its CopyDone/CopyFail
//!   are struck out when CopyInResponse arrives.
//! - An error during copy-in ends copy mode on the server's side. Whether
//!   a Sync sent after a COPY FROM STDIN began is read in copy mode
//!   (ignored) or after the copy failed (answered) only the server knows:
//!   the client pump sends such a Sync only once the server has said
//!   whether it is in copy mode, and not at all while it is (see
//!   `ClientPump::copy_sync`).
//!
//! A request the proxy refuses is replaced upstream by one that fails (see
//! `refusal.rs`), recorded as [`Entry::Refused`]: the server then answers
//! it where the original's answer belonged, with the same effect on the
//! transaction and on the rest of the pipeline, and the server pump swaps
//! the server's ErrorResponse for the proxy's.

use crate::row_budgets::ChargeSlot;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use portcullis_analysis::Analysis;
use portcullis_guard::Ticket;
use tokio::sync::Notify;

use super::returned::{Meter, Outcome};

/// Receives the outcome of each change to prepared statements and portals
/// the ledger carried: `true` when the server ran its message.
pub(crate) type Settle<'a> = &'a mut dyn FnMut(Ticket, bool);

/// A statement the audit trail recorded: its record's place in the log
/// and its number in the session, so that its outcome can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Audited {
    pub seq: u64,
    pub statement_id: u64,
    /// When the client sent it.
    pub at: Instant,
}

/// The statement whose rows a RowDescription describes: what a masking
/// plan is made for.
#[derive(Debug, Clone)]
pub(crate) enum Rows {
    /// Statement `index` of a Query (`None`: the text did not parse, so no
    /// rows can come).
    Statement(Option<Arc<Analysis>>, usize),
    /// The portal of this name as the server describes it (its texts are
    /// looked up only when a column needs them: the portal cannot be
    /// rebound before the server has described it).
    Portal(Vec<u8>),
}

impl PartialEq for Rows {
    fn eq(&self, other: &Rows) -> bool {
        match (self, other) {
            (Rows::Statement(a, i), Rows::Statement(b, j)) => {
                i == j
                    && match (a, b) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        (None, None) => true,
                        _ => false,
                    }
            }
            (Rows::Portal(a), Rows::Portal(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Rows {}

/// What a RowDescription or NoData answers (see [`Pending::described`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Described {
    /// The rows of `rows` follow (a Query's statement), or will follow
    /// when the portal just described runs. `hidden`: the proxy asked, so
    /// the client must not see the reply.
    Rows { rows: Rows, hidden: bool },
    /// A prepared statement's description: no rows follow it.
    Statement,
    /// Nothing asked for it (not in a correct reply stream).
    Unasked,
}

/// A client message that the server will answer, or a copy marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Parse, Bind, Execute or Close: one reply each; with the change it
    /// makes to prepared statements or portals, if any, and (for an
    /// Execute) the audit record of the statement it runs.
    Step(Step, Option<Ticket>, Option<Audited>),
    /// A Describe of a portal (`rows`: what it runs) or, with `rows`
    /// `None`, of a prepared statement; `reply`: who sees its answer.
    Describe { rows: Option<Rows>, reply: Shown },
    /// A Sync: answered by ReadyForQuery.
    Sync(Instant),
    /// A Query or FunctionCall: any replies, then ReadyForQuery. `tickets`
    /// are the changes its statements make (by statement index), `done`
    /// how many statements have completed; `analysis` its text's, for the
    /// rows each statement returns.
    Query {
        at: Instant,
        tickets: Vec<(usize, Ticket)>,
        done: usize,
        analysis: Option<Arc<Analysis>>,
        /// The audit records of its statements, by index (empty when not
        /// audited).
        audited: Vec<Audited>,
    },
    /// The client ended copy data (CopyDone or CopyFail).
    CopyEnd,
    /// The Execute of a COPY FROM STDIN is in copy mode; its
    /// CommandComplete or ErrorResponse ends it.
    CopyIn(Option<Audited>),
    /// A refused request, replaced by one that fails: the server's
    /// ErrorResponse for it is replaced by `reply`. `query` for a Query or
    /// FunctionCall (ReadyForQuery follows), otherwise an extended-protocol
    /// message (the server then discards up to Sync).
    Refused {
        reply: Bytes,
        query: bool,
        at: Instant,
    },
    /// A message or statement the proxy added (row-limit bookkeeping):
    /// its replies never reach the client. `step` for an extended-protocol
    /// message, otherwise a statement inside a Query. If it fails, the
    /// client gets `on_error` instead of the server's error (or the
    /// server's error when `None`). `charge`, on a row-limit check under
    /// a rows-changed budget: settled with the count the check returns.
    Hidden {
        step: bool,
        on_error: Option<Bytes>,
        charge: Option<ChargeSlot>,
        /// The audit record of the client's statement it stands for (the
        /// Parse and Bind of a Query sent as extended messages, see
        /// `returned.rs`): its error is that statement's outcome.
        audited: Option<Audited>,
    },
    /// The client's own statement inside a Query the proxy extended with
    /// hidden statements: its replies pass, and its CommandComplete ends it.
    QueryPart,
}

/// Who sees the answer to a Describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    Client,
    /// The proxy sent it (to learn an Execute's columns, see
    /// `client_pump`): its reply never reaches the client.
    Hidden,
    /// The proxy sent it for a Query it sends as extended messages: a
    /// RowDescription goes to the client (as the Query's would), NoData
    /// (which a Query never sends) does not.
    RowsOnly,
}

impl Entry {
    /// An extended-protocol message answered by one reply (or an error).
    fn is_step(&self) -> bool {
        matches!(
            self,
            Entry::Step(..)
                | Entry::Describe { .. }
                | Entry::Refused { query: false, .. }
                | Entry::Hidden { step: true, .. }
        )
    }

    /// Part of a Query: its error ends the Query (ReadyForQuery follows).
    fn is_query_part(&self) -> bool {
        matches!(self, Entry::QueryPart | Entry::Hidden { step: false, .. })
    }

    /// An Execute whose returned rows are counted (see `returned.rs`).
    fn is_counted(&self) -> bool {
        matches!(self, Entry::Step(Step::Counted, ..))
    }

    /// A Query's entry without changes to follow.
    pub fn query(at: Instant) -> Entry {
        Entry::Query {
            at,
            tickets: Vec::new(),
            done: 0,
            analysis: None,
            audited: Vec::new(),
        }
    }

    /// The server never ran this message (or the rest of this Query).
    fn skipped(self, settle: Settle<'_>) {
        match self {
            Entry::Step(_, Some(t), _) => settle(t, false),
            Entry::Query { tickets, done, .. } => {
                for (i, t) in tickets {
                    if i >= done {
                        settle(t, false);
                    }
                }
            }
            _ => {}
        }
    }
}

/// What the server pump does with a reply message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// Handle and forward as usual.
    Client,
    /// It answers a hidden message: drop it.
    Hidden,
    /// The completion of a client statement under the row limit: handle
    /// it, but hold it back until the check after it has passed (over the
    /// limit the client sees only the error, and libpq-based clients
    /// discard the rows before it).
    Hold,
    /// The check passed: send the held completion in this hidden reply's
    /// place.
    Release(Bytes),
}

/// What a ReadyForQuery settled (see [`Pending::ready`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    /// How long the request it answers took, if one was outstanding.
    pub took: Option<std::time::Duration>,
    /// Every request sent so far has been answered.
    pub drained: bool,
    /// It ended a counted Execute the server never answered: the proxy's
    /// model and the server's differ (see `returned.rs`).
    pub counted_lost: bool,
}

/// What an ErrorResponse answered (see [`Pending::error`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed {
    /// The proxy's own error to send instead, for a refused request.
    pub substitute: Option<Bytes>,
    /// The audit record of the statement that failed.
    pub audited: Option<Audited>,
}

/// What a CommandComplete, PortalSuspended or EmptyQueryResponse
/// completed (see [`Pending::command_done`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completed {
    /// The audit record of the statement it completes.
    pub audited: Option<Audited>,
    /// It completes a counted statement that went over its limit: the
    /// client must not see it (see `returned.rs`).
    pub over: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Parse,
    Bind,
    Execute,
    /// An Execute whose returned rows are counted (see `returned.rs`): at
    /// most one is in the ledger at a time.
    Counted,
    Close,
}

#[derive(Debug, Default)]
struct Ledger {
    entries: VecDeque<Entry>,
    /// The server is in copy-in mode and the client has not ended the copy
    /// yet: the next CopyEnd is consumed (and the client pump sends no
    /// Sync, see `ClientPump::copy_sync`).
    copy_in_open: bool,
    /// The server is discarding messages until the next Sync and none is in
    /// the ledger yet: messages sent now are discarded too.
    discarding: bool,
    /// When the last ReadyForQuery arrived (or the session started).
    last_ready: Option<Instant>,
    /// A held completion (see [`Route::Hold`]).
    held: Option<Bytes>,
    /// The client pump waits for room (see [`Pending::wait_for_room`]).
    waiting: bool,
    /// Entries pushed so far (see [`Pending::mark`]).
    pushed: u64,
    /// The session's limits on what it is returned (`returned.rs`).
    meter: Option<Meter>,
    /// An Execute went since the last ReadyForQuery: its implicit
    /// transaction is open until the next Sync is answered.
    ran_since_ready: bool,
}

impl Ledger {
    fn push(&mut self, entry: Entry) {
        self.pushed += 1;
        self.ran_since_ready |= matches!(entry, Entry::Step(Step::Execute | Step::Counted, ..));
        self.entries.push_back(entry);
    }

    /// The first `n` entries leave the ledger unanswered after an error
    /// reported at the front one: a counted Execute among them ends, failed
    /// if the error was its own or that of a message the proxy sent for it
    /// right before it, otherwise never run.
    fn dropping_after_error(&mut self, n: usize) {
        let Some(m) = &mut self.meter else {
            return;
        };
        if let Some(k) = self.entries.iter().take(n).position(Entry::is_counted) {
            m.dropped(k <= m.lead());
        }
    }

    /// Drops copy markers at the front: a reply arriving now answers a
    /// request after them, so they belong to copies that never reached
    /// copy mode (the server ignores copy messages outside it). Every
    /// reply handler starts here, or a stray CopyDone would shift every
    /// later reply onto the wrong request.
    fn drop_stale_copy_ends(&mut self) {
        while self.entries.front() == Some(&Entry::CopyEnd) {
            self.entries.pop_front();
        }
    }

    /// Every request sent so far has been answered, Syncs and all.
    fn drained(&self) -> bool {
        !self.copy_in_open && self.entries.iter().all(|e| *e == Entry::CopyEnd)
    }

    /// Whether the hidden entries right after the front one include a
    /// row-limit check.
    fn check_follows(&self) -> bool {
        self.entries
            .iter()
            .skip(1)
            .take_while(|e| matches!(e, Entry::Hidden { .. }))
            .any(|e| {
                matches!(
                    e,
                    Entry::Hidden {
                        on_error: Some(_),
                        ..
                    }
                )
            })
    }
}

/// The count a row-limit check reports: its one DataRow's one value, the
/// rows the statement before it changed.
fn counted_rows(msg: &[u8]) -> Option<u64> {
    let values = portcullis_wire::decode::data_row(portcullis_wire::decode::body(msg)).ok()?;
    match values.as_slice() {
        [Some(v)] => std::str::from_utf8(v).ok()?.parse().ok(),
        _ => None,
    }
}

/// The statement of the Query at the front of the ledger whose replies
/// arrive now.
fn query_rows(l: &Ledger) -> Option<Rows> {
    match l.entries.front() {
        Some(Entry::Query { analysis, done, .. }) => Some(Rows::Statement(analysis.clone(), *done)),
        // A statement the proxy wrapped with row-limit statements of its
        // own: its Query holds only it.
        Some(Entry::QueryPart) => l.entries.iter().find_map(|e| match e {
            Entry::Query { analysis, .. } => Some(Rows::Statement(analysis.clone(), 0)),
            _ => None,
        }),
        _ => None,
    }
}

/// After an error inside a Query: the statements after the failed one
/// never run, so their entries go (up to the Query's own entry).
fn drop_query_parts(entries: &mut VecDeque<Entry>) {
    while entries.front().is_some_and(Entry::is_query_part) {
        entries.pop_front();
    }
}

/// Past this many outstanding entries the client pump stops reading from
/// the client until the server has answered some (a client pipelining
/// without reading): the model never drops an entry, so every reply stays
/// tied to its request.
pub(crate) const MAX_ENTRIES: usize = 1 << 16;

#[derive(Debug)]
pub(crate) struct Pending {
    ledger: Mutex<Ledger>,
    /// The session has limits on what it is returned: every row is
    /// counted (see `returned.rs`).
    metered: bool,
    /// A counted statement ended, or a reply arrived (see
    /// [`Pending::outcome`], [`Pending::quiet`], [`Pending::copy_fate`]).
    counted: Notify,
    /// The client pump waits in [`Pending::copy_fate`] or
    /// [`Pending::settled`].
    copy_waiting: AtomicBool,
    /// Messages of the proxy's own for the client, sent by the server pump
    /// between the server's messages (see [`Pending::tell_client`]).
    to_client: Mutex<Vec<Bytes>>,
    /// Wakes the server pump when `to_client` has something.
    told: Notify,
    /// `to_client` may have something: the server pump looks at it only
    /// then (it waits on every read from the server).
    telling: AtomicBool,
    /// Transaction status from the last ReadyForQuery.
    status: AtomicU8,
    /// Hidden entries may be outstanding: replies must be routed (kept
    /// false otherwise so result rows pass without taking the lock).
    hidden_active: AtomicBool,
    /// The ledger shrank below its bound (see [`MAX_ENTRIES`]).
    room: Notify,
}

impl Pending {
    #[cfg(test)]
    pub fn new(status: u8) -> Self {
        Self::metered(status, None)
    }

    /// A ledger that counts what the session is returned, with `meter`.
    pub fn metered(status: u8, meter: Option<Meter>) -> Self {
        Pending {
            metered: meter.is_some(),
            counted: Notify::new(),
            copy_waiting: AtomicBool::new(false),
            to_client: Mutex::new(Vec::new()),
            told: Notify::new(),
            telling: AtomicBool::new(false),
            ledger: Mutex::new(Ledger {
                meter,
                ..Ledger::default()
            }),
            status: AtomicU8::new(status),
            hidden_active: AtomicBool::new(false),
            room: Notify::new(),
        }
    }

    /// Whether the client pump must wait for the server before reading
    /// more from the client.
    pub fn full(&self) -> bool {
        self.ledger().entries.len() >= MAX_ENTRIES
    }

    /// Waits until the ledger has room again.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            {
                let mut l = self.ledger();
                if l.entries.len() < MAX_ENTRIES {
                    return;
                }
                l.waiting = true;
            }
            notified.await;
        }
    }

    /// Wakes the client pump if it waits for room and there is some now
    /// (a notification nobody waits for would cost a lock per reply).
    fn made_room(&self, l: &mut Ledger) {
        if l.waiting && l.entries.len() < MAX_ENTRIES {
            l.waiting = false;
            self.room.notify_waiters();
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- client side ----

    /// Records a client message the server will answer (not Sync, not a
    /// copy end).
    pub fn sent(&self, entry: Entry, settle: Settle<'_>) {
        let mut l = self.ledger();
        let hidden = matches!(entry, Entry::Hidden { .. } | Entry::QueryPart);
        if l.discarding {
            // The server discards it: its changes never happen.
            entry.skipped(settle);
            return;
        }
        if hidden {
            self.hidden_active.store(true, Ordering::Relaxed);
        }
        l.push(entry);
    }

    /// A Sync. (One the client sends while the server reads COPY data is
    /// never sent: see `ClientPump::copy_sync`.)
    pub fn sent_sync(&self, at: Instant) {
        let mut l = self.ledger();
        l.discarding = false;
        l.push(Entry::Sync(at));
    }

    pub fn sent_copy_end(&self) {
        let mut l = self.ledger();
        if l.copy_in_open {
            l.copy_in_open = false;
        } else if !l.discarding {
            l.push(Entry::CopyEnd);
        }
    }

    /// A mark for [`Pending::retract`]: the entries of messages judged
    /// from now on come after it.
    pub fn mark(&self) -> u64 {
        self.ledger().pushed
    }

    /// The messages entered since `mark` will not be sent after all (their
    /// audit record could not be written): a failing replacement goes in
    /// their place, answered by the server with an error the client sees
    /// as `reply` (`query`: a Query, answered with ReadyForQuery too). The
    /// server has not seen them, so their entries are still at the back.
    pub fn retract(&self, mark: u64, reply: Bytes, query: bool, settle: Settle<'_>) {
        let mut l = self.ledger();
        let n = usize::try_from(l.pushed - mark).unwrap_or(usize::MAX);
        if n == 0 {
            // Entered while the server discards up to a Sync: so is the
            // replacement.
            return;
        }
        let keep = l.entries.len().saturating_sub(n);
        if l.entries.range(keep..).any(Entry::is_counted) {
            if let Some(m) = &mut l.meter {
                m.retracted();
            }
        }
        for e in l.entries.drain(keep..) {
            e.skipped(settle);
        }
        l.push(Entry::Refused {
            reply,
            query,
            at: Instant::now(),
        });
    }

    // ---- counting what the session is returned (see `returned.rs`) ----

    /// Whether the session has limits on what it is returned.
    pub fn is_metered(&self) -> bool {
        self.metered
    }

    /// Records an Execute whose returned rows are counted, with its ticket
    /// and audit record, sent right after `lead` messages of the proxy's
    /// for it. Returns the row count to put in the Execute (see
    /// `Meter::start`), or `None` when the server discards it (an earlier
    /// message failed): nothing to count or wait for.
    pub fn sent_counted(
        &self,
        ticket: Option<Ticket>,
        audited: Option<Audited>,
        (client_max, lead): (i32, usize),
        settle: Settle<'_>,
    ) -> Option<i32> {
        let mut l = self.ledger();
        let entry = Entry::Step(Step::Counted, ticket, audited);
        if l.discarding || l.meter.is_none() {
            entry.skipped(settle);
            return None;
        }
        l.push(entry);
        l.meter.as_mut().map(|m| m.start(client_max, lead))
    }

    /// Waits until `ready` finds what it waits for in the ledger; every
    /// change that can make it true calls [`Pending::wake`].
    async fn wait_for<T>(&self, mut ready: impl FnMut(&mut Ledger) -> Option<T>) -> T {
        loop {
            let notified = self.counted.notified();
            if let Some(found) = ready(&mut self.ledger()) {
                return found;
            }
            notified.await;
        }
    }

    /// Waits until the counted statement has ended; says how.
    pub async fn outcome(&self) -> Outcome {
        self.wait_for(|l| l.meter.as_mut().and_then(Meter::take_outcome))
            .await
    }

    /// Applies `f` to the session's meter; `unmetered` without one.
    pub fn meter<T>(&self, unmetered: T, f: impl FnOnce(&mut Meter) -> T) -> T {
        match &mut self.ledger().meter {
            Some(m) => f(m),
            None => unmetered,
        }
    }

    /// Waits until every request sent so far has been answered (extended
    /// messages without a Sync aside: the server answers them with the
    /// counted statement's Flush), so that a counted statement goes out
    /// with nothing the server could still answer in between. `Err` when
    /// the server is reading COPY data: a Query or Execute now is a
    /// protocol violation.
    pub async fn quiet(&self) -> Result<(), ()> {
        self.wait_for(|l| {
            if l.copy_in_open {
                Some(Err(()))
            } else {
                let answered = l
                    .entries
                    .iter()
                    .all(|e| *e == Entry::CopyEnd || e.is_step());
                answered.then_some(Ok(()))
            }
        })
        .await
    }

    /// Wakes the client pump if it waits for the ledger (see
    /// [`Pending::quiet`], [`Pending::copy_fate`]).
    fn wake(&self) {
        if self.metered || self.copy_waiting.load(Ordering::Relaxed) {
            self.counted.notify_one();
        }
    }

    /// Waits until the server has said whether a COPY FROM STDIN the
    /// client may have started is reading data: `true` when the server is
    /// in copy mode, `false` once every request sent so far is answered
    /// (the copy never started, or ended). CopyInResponse and errors are
    /// flushed by the server at once, so neither waits for a Sync.
    pub async fn copy_fate(&self) -> bool {
        self.copy_waiting.store(true, Ordering::Relaxed);
        let fate = self
            .wait_for(|l| {
                if l.copy_in_open {
                    Some(true)
                } else {
                    l.entries
                        .iter()
                        .all(|e| *e == Entry::CopyEnd)
                        .then_some(false)
                }
            })
            .await;
        self.copy_waiting.store(false, Ordering::Relaxed);
        fate
    }

    /// Waits until every request sent so far has been answered (the
    /// caller sent a Flush, so that extended messages without a Sync are
    /// answered too): the session is then in the state the server is in.
    /// `Ok(true)` when the server is skipping messages up to a Sync (an
    /// earlier message failed); `Err` while it is reading COPY data.
    pub async fn settled(&self) -> Result<bool, ()> {
        self.copy_waiting.store(true, Ordering::Relaxed);
        let settled = self
            .wait_for(|l| {
                if l.copy_in_open {
                    Some(Err(()))
                } else {
                    l.entries
                        .iter()
                        .all(|e| *e == Entry::CopyEnd)
                        .then_some(Ok(l.discarding))
                }
            })
            .await;
        self.copy_waiting.store(false, Ordering::Relaxed);
        settled
    }

    /// The transaction status of the last ReadyForQuery.
    pub fn status(&self) -> u8 {
        self.status.load(Ordering::Relaxed)
    }

    /// Whether a transaction is open: an explicit one (the last
    /// ReadyForQuery said so), or the implicit one of Executes sent since
    /// (it holds their locks until a Sync).
    pub fn in_transaction(&self) -> bool {
        self.status() != portcullis_wire::tags::txn::IDLE || self.ledger().ran_since_ready
    }

    /// Queues `bytes` (whole messages of the proxy's own, such as the
    /// notice that a statement is held) for the server pump to send the
    /// client at the next message boundary. Only for a session whose
    /// requests are all answered (nothing else is on its way).
    pub fn tell_client(&self, bytes: Bytes) {
        self.to_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(bytes);
        self.telling.store(true, Ordering::Release);
        self.told.notify_one();
    }

    /// Waits until something is queued for the client, and takes it.
    pub async fn told(&self) -> Vec<Bytes> {
        loop {
            if self.telling.swap(false, Ordering::Acquire) {
                let queued =
                    std::mem::take(&mut *self.to_client.lock().unwrap_or_else(|e| e.into_inner()));
                if !queued.is_empty() {
                    return queued;
                }
            }
            self.told.notified().await;
        }
    }

    // ---- server side ----

    /// ParseComplete, BindComplete, CloseComplete.
    pub fn step_done(&self, settle: Settle<'_>) {
        let mut l = self.ledger();
        l.drop_stale_copy_ends();
        if matches!(l.entries.front(), Some(Entry::Step(..))) {
            if let Some(Entry::Step(_, Some(t), _)) = l.entries.pop_front() {
                settle(t, true);
            }
            self.made_room(&mut l);
            self.wake();
        }
    }

    /// RowDescription or NoData (`no_data`): the end of a Describe, or
    /// part of a Query. Says whose rows it describes.
    pub fn described(&self, no_data: bool) -> Described {
        let mut l = self.ledger();
        // Copy markers of copies that never reached copy mode are not
        // requests.
        l.drop_stale_copy_ends();
        match l.entries.front() {
            Some(Entry::Describe { .. }) => {
                let Some(Entry::Describe { rows, reply }) = l.entries.pop_front() else {
                    unreachable!("matched above")
                };
                let hidden = match reply {
                    Shown::Client => false,
                    Shown::Hidden => true,
                    Shown::RowsOnly => no_data,
                };
                self.made_room(&mut l);
                match rows {
                    Some(rows) => Described::Rows { rows, hidden },
                    None => Described::Statement,
                }
            }
            _ => match query_rows(&l) {
                Some(rows) => Described::Rows {
                    rows,
                    hidden: false,
                },
                None => Described::Unasked,
            },
        }
    }

    /// CopyOutResponse: whose rows the COPY sends, when a Query's
    /// statement started it. `None` for an Execute: its portal was
    /// described (NoData) right before, see `client_pump`.
    pub fn copy_out_rows(&self) -> Option<Rows> {
        let mut l = self.ledger();
        l.drop_stale_copy_ends();
        query_rows(&l)
    }

    /// CommandComplete, PortalSuspended or EmptyQueryResponse. Says what
    /// it completes.
    pub fn command_done(&self, settle: Settle<'_>) -> Completed {
        let mut l = self.ledger();
        l.drop_stale_copy_ends();
        let counted = l.entries.front().is_some_and(Entry::is_counted);
        let over = match &mut l.meter {
            Some(m) if counted => m.completed(),
            _ => false,
        };
        if over {
            // Not released after a row-limit check either.
            l.held = None;
        }
        self.wake();
        let audited = match l.entries.front_mut() {
            Some(Entry::Step(Step::Execute | Step::Counted, ..) | Entry::CopyIn(_)) => {
                let audited = match l.entries.pop_front() {
                    Some(Entry::Step(_, t, audited)) => {
                        if let Some(t) = t {
                            settle(t, true);
                        }
                        audited
                    }
                    Some(Entry::CopyIn(audited)) => audited,
                    _ => None,
                };
                self.made_room(&mut l);
                audited
            }
            Some(Entry::Query {
                tickets,
                done,
                audited,
                ..
            }) => {
                // One statement of the Query ran to completion.
                let index = *done;
                *done += 1;
                if let Some(pos) = tickets.iter().position(|(i, _)| *i == index) {
                    let (_, t) = tickets.swap_remove(pos);
                    settle(t, true);
                }
                audited.get(index).copied()
            }
            _ => None,
        };
        Completed { audited, over }
    }

    /// CopyInResponse: the server is now in COPY FROM STDIN mode.
    pub fn copy_in_started(&self) {
        let mut l = self.ledger();
        // Copy markers before the request that started this COPY belong to
        // copies that never reached copy mode.
        l.drop_stale_copy_ends();
        let start = match l.entries.front() {
            Some(Entry::Step(step @ (Step::Execute | Step::Counted), _, audited)) => {
                let (counted, audited) = (*step == Step::Counted, *audited);
                l.entries[0] = Entry::CopyIn(audited);
                if counted {
                    // A COPY FROM STDIN returns nothing: the client's data
                    // may flow.
                    if let Some(m) = &mut l.meter {
                        m.completed();
                    }
                }
                1
            }
            Some(Entry::Query { .. }) => 1,
            _ => 0,
        };
        // The client pump re-reads the ledger once the lock is released.
        self.wake();
        let mut i = start;
        while i < l.entries.len() {
            match &l.entries[i] {
                Entry::Sync(_) => {
                    l.entries.remove(i);
                }
                Entry::CopyEnd => {
                    l.entries.remove(i);
                    return;
                }
                _ => i += 1,
            }
        }
        l.copy_in_open = true;
    }

    /// ErrorResponse (`fatal` for FATAL and PANIC). Returns what the
    /// client must see instead, when the error answers a refused request,
    /// and the audit record of the statement that failed, if it has one.
    pub fn error(&self, fatal: bool, settle: Settle<'_>) -> Failed {
        let mut l = self.ledger();
        l.drop_stale_copy_ends();
        // A held completion belongs to a statement the error rolls back.
        l.held = None;
        // An error ends copy mode; Syncs from now on count again.
        l.copy_in_open = false;
        let mut substitute = None;
        let audited = match l.entries.front() {
            Some(
                Entry::CopyIn(a)
                | Entry::Step(Step::Execute | Step::Counted, _, a)
                | Entry::Hidden { audited: a, .. },
            ) => *a,
            Some(Entry::Query { audited, done, .. }) => audited.get(*done).copied(),
            Some(Entry::QueryPart) => l.entries.iter().find_map(|e| match e {
                Entry::Query { audited, .. } => audited.first().copied(),
                _ => None,
            }),
            _ => None,
        };
        let extended = match l.entries.front() {
            Some(Entry::CopyIn(_)) => {
                l.entries.pop_front();
                true
            }
            Some(Entry::Step(..) | Entry::Describe { .. }) => true,
            Some(Entry::Hidden { step, on_error, .. }) => {
                let step = *step;
                substitute = on_error.clone();
                if step {
                    true
                } else {
                    // The rest of the Query is skipped by the server.
                    drop_query_parts(&mut l.entries);
                    false
                }
            }
            Some(Entry::QueryPart) => {
                drop_query_parts(&mut l.entries);
                false
            }
            Some(Entry::Refused { reply, query, at }) => {
                let (query, at) = (*query, *at);
                substitute = Some(reply.clone());
                if query {
                    // ReadyForQuery still follows.
                    l.entries[0] = Entry::query(at);
                }
                !query
            }
            _ => false,
        };
        // The server's last words stand as they are.
        let substitute = substitute.filter(|_| !fatal);
        if !extended {
            // Inside a Query, at a Sync, or not tied to any request (a
            // FATAL): ReadyForQuery or the end of the connection follows.
            return Failed {
                substitute,
                audited,
            };
        }
        // The server now discards everything up to the next Sync.
        let end = l
            .entries
            .iter()
            .position(|e| matches!(e, Entry::Sync(_)))
            .unwrap_or(l.entries.len());
        l.discarding = end == l.entries.len();
        l.dropping_after_error(end);
        for e in l.entries.drain(..end) {
            e.skipped(settle);
        }
        self.wake();
        self.made_room(&mut l);
        Failed {
            substitute,
            audited,
        }
    }

    /// Routes a reply (RowDescription, DataRow, NoData,
    /// ParameterDescription, or a completion: ParseComplete, BindComplete,
    /// CloseComplete, CommandComplete, EmptyQueryResponse,
    /// PortalSuspended). A completion ends the hidden message or client
    /// statement part it answers.
    pub fn route(&self, completion: bool, msg: &[u8]) -> Route {
        if !self.hidden_active.load(Ordering::Relaxed) {
            return Route::Client;
        }
        let mut l = self.ledger();
        l.drop_stale_copy_ends();
        match l.entries.front() {
            Some(Entry::Hidden {
                on_error, charge, ..
            }) => {
                if !completion {
                    if let Some(charge) = charge {
                        // The check's one row: its count, or (unreadable)
                        // everything reserved.
                        if msg.first() == Some(&portcullis_wire::tags::backend::DATA_ROW) {
                            charge.settle(counted_rows(msg));
                        }
                    }
                    return Route::Hidden;
                }
                let check = on_error.is_some();
                l.entries.pop_front();
                match if check { l.held.take() } else { None } {
                    Some(held) => Route::Release(held),
                    None => Route::Hidden,
                }
            }
            Some(Entry::QueryPart | Entry::Step(Step::Execute | Step::Counted, ..))
                if completion =>
            {
                let hold = l.check_follows();
                if matches!(l.entries.front(), Some(Entry::QueryPart)) {
                    l.entries.pop_front();
                }
                if hold {
                    l.held = Some(Bytes::copy_from_slice(msg));
                    Route::Hold
                } else {
                    Route::Client
                }
            }
            _ => Route::Client,
        }
    }

    /// ReadyForQuery. Returns how long its request took, and whether every
    /// request sent so far has now been answered (see [`Pending::drained`]).
    pub fn ready(&self, status: u8, settle: Settle<'_>) -> Ready {
        self.status.store(status, Ordering::Relaxed);
        let now = Instant::now();
        let mut l = self.ledger();
        l.discarding = false;
        l.held = None;
        l.last_ready = Some(now);
        l.ran_since_ready = false;
        let mut took = None;
        let mut counted_lost = false;
        while let Some(e) = l.entries.pop_front() {
            if let Entry::Sync(t) | Entry::Query { at: t, .. } | Entry::Refused { at: t, .. } = e {
                took = Some(now.saturating_duration_since(t));
                e.skipped(settle);
                break;
            }
            // Never answered: the server did not run it.
            counted_lost |= e.is_counted();
            e.skipped(settle);
        }
        if counted_lost {
            if let Some(m) = &mut l.meter {
                m.dropped(false);
            }
        }
        self.wake();
        self.made_room(&mut l);
        if self.hidden_active.load(Ordering::Relaxed) {
            let still = l
                .entries
                .iter()
                .any(|e| matches!(e, Entry::Hidden { .. } | Entry::QueryPart));
            self.hidden_active.store(still, Ordering::Relaxed);
        }
        if let Some(m) = &mut l.meter {
            m.ready();
        }
        let drained = l.drained();
        Ready {
            took,
            drained,
            counted_lost,
        }
    }

    /// No request is waiting for the server and no transaction is open.
    #[cfg(test)]
    pub fn idle(&self) -> bool {
        self.idle_since().is_some()
    }

    /// When the session last became idle (no request waiting for the
    /// server, no transaction open), if it is idle now. `None` for "since
    /// the session started".
    pub fn idle_since(&self) -> Option<Option<Instant>> {
        let l = self.ledger();
        let idle = self.status.load(Ordering::Relaxed) == portcullis_wire::tags::txn::IDLE
            && !l.copy_in_open
            && l.entries.iter().all(|e| *e == Entry::CopyEnd);
        idle.then_some(l.last_ready)
    }

    /// Every complete request (up to a Sync, a Query or a FunctionCall) has
    /// been answered. Extended messages without their Sync do not count:
    /// the server holds their replies until a Sync or Flush.
    pub fn answered(&self) -> bool {
        let l = self.ledger();
        !l.copy_in_open
            && l.entries
                .iter()
                .all(|e| *e == Entry::CopyEnd || e.is_step())
    }

    #[cfg(test)]
    fn outstanding(&self) -> usize {
        self.ledger()
            .entries
            .iter()
            .filter(|e| **e != Entry::CopyEnd)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(_: Ticket, _: bool) {}

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn simple_queries_pair_with_ready() {
        let p = Pending::new(b'I');
        let t = now();
        p.sent(Entry::query(t), &mut no);
        p.sent(Entry::query(t), &mut no);
        assert!(!p.idle());
        assert!(p.ready(b'I', &mut no).took.is_some());
        assert!(p.ready(b'I', &mut no).took.is_some());
        assert!(p.idle());
        assert!(p.ready(b'I', &mut no).took.is_none());
    }

    fn extended(p: &Pending) {
        p.sent(Entry::Step(Step::Parse, None, None), &mut no);
        p.sent(Entry::Step(Step::Bind, None, None), &mut no);
        p.sent(Entry::Step(Step::Execute, None, None), &mut no);
    }

    #[test]
    fn extended_batch() {
        let p = Pending::new(b'I');
        extended(&p);
        p.sent_sync(now());
        p.step_done(&mut no);
        p.step_done(&mut no);
        p.command_done(&mut no);
        assert!(!p.answered());
        assert!(p.ready(b'I', &mut no).took.is_some());
        assert!(p.idle());
    }

    #[test]
    fn error_discards_until_sync_including_queries() {
        let p = Pending::new(b'I');
        p.sent(Entry::Step(Step::Parse, None, None), &mut no);
        p.sent(Entry::query(now()), &mut no);
        p.sent_sync(now());
        p.error(false, &mut no);
        assert_eq!(p.outstanding(), 1);
        p.ready(b'I', &mut no);
        assert!(p.idle());
    }

    #[test]
    fn error_before_the_sync_is_sent() {
        let p = Pending::new(b'I');
        p.sent(Entry::Step(Step::Parse, None, None), &mut no);
        p.error(false, &mut no);
        // Discarded by the server, so not recorded.
        p.sent(Entry::Step(Step::Bind, None, None), &mut no);
        p.sent(Entry::query(now()), &mut no);
        p.sent_sync(now());
        assert_eq!(p.outstanding(), 1);
        p.ready(b'I', &mut no);
        assert!(p.idle());
    }

    #[test]
    fn error_inside_a_query_waits_for_ready() {
        let p = Pending::new(b'I');
        p.sent(Entry::query(now()), &mut no);
        p.sent(Entry::query(now()), &mut no);
        p.error(false, &mut no);
        assert_eq!(p.outstanding(), 2);
    }

    #[test]
    fn extended_copy_pipelined_whole() {
        // Parse/Bind/Execute(COPY), CopyData, CopyDone, Sync in one write.
        let p = Pending::new(b'I');
        extended(&p);
        p.sent_copy_end();
        p.sent_sync(now());
        p.step_done(&mut no);
        p.step_done(&mut no);
        p.copy_in_started();
        p.command_done(&mut no);
        assert_eq!(p.outstanding(), 1);
        p.ready(b'I', &mut no);
        assert!(p.idle());
    }

    #[test]
    fn extended_copy_with_sync_after_execute() {
        // tokio-postgres: Bind/Execute/Sync, then data, CopyDone, Sync.
        let p = Pending::new(b'I');
        p.sent(Entry::Step(Step::Bind, None, None), &mut no);
        p.sent(Entry::Step(Step::Execute, None, None), &mut no);
        p.sent_sync(now());
        p.step_done(&mut no);
        p.copy_in_started();
        p.sent_copy_end();
        p.sent_sync(now());
        p.command_done(&mut no);
        assert_eq!(p.outstanding(), 1);
        p.ready(b'I', &mut no);
        assert!(p.idle());
    }

    #[test]
    fn two_extended_copies_in_one_batch() {
        let p = Pending::new(b'I');
        extended(&p);
        p.sent_copy_end();
        extended(&p);
        p.sent_copy_end();
        p.sent_sync(now());
        for _ in 0..2 {
            p.step_done(&mut no);
            p.step_done(&mut no);
            p.copy_in_started();
            p.command_done(&mut no);
        }
        assert_eq!(p.outstanding(), 1);
        p.ready(b'I', &mut no);
        assert!(p.idle());
    }

    #[test]
    fn simple_copy_keeps_its_query() {
        let p = Pending::new(b'I');
        p.sent(Entry::query(now()), &mut no);
        p.copy_in_started();
        p.sent_copy_end();
        assert_eq!(p.outstanding(), 1);
        p.ready(b'I', &mut no);
        assert!(p.idle());
    }

    #[test]
    fn copy_aborted_by_the_server_without_copy_done() {
        let p = Pending::new(b'I');
        p.sent(Entry::query(now()), &mut no);
        p.copy_in_started();
        p.error(false, &mut no);
        p.ready(b'I', &mut no);
        extended(&p);
        p.sent_sync(now());
        assert_eq!(p.outstanding(), 4, "the Sync after the failed copy counts");
    }

    #[test]
    fn copy_that_never_started_leaves_no_trace() {
        let p = Pending::new(b'I');
        p.sent(Entry::query(now()), &mut no);
        p.sent_copy_end();
        p.error(false, &mut no);
        p.ready(b'I', &mut no);
        assert!(p.idle());
        p.sent(Entry::query(now()), &mut no);
        p.copy_in_started();
        assert!(!p.answered(), "the stale marker must not end the new copy");
    }

    fn refused(query: bool) -> Entry {
        Entry::Refused {
            reply: Bytes::from_static(b"ours"),
            query,
            at: now(),
        }
    }

    #[test]
    fn a_refused_query_gets_our_error_then_ready() {
        let p = Pending::new(b'I');
        p.sent(refused(true), &mut no);
        p.sent(Entry::query(now()), &mut no);
        assert!(!p.answered());
        assert_eq!(
            p.error(false, &mut no).substitute.as_deref(),
            Some(&b"ours"[..])
        );
        assert!(p.ready(b'I', &mut no).took.is_some());
        assert_eq!(p.outstanding(), 1, "the next query is still owed");
        // The next query's own error is the server's.
        assert_eq!(p.error(false, &mut no).substitute, None);
    }

    #[test]
    fn a_refused_parse_discards_the_rest_of_the_pipeline() {
        let p = Pending::new(b'I');
        p.sent(refused(false), &mut no);
        p.sent(Entry::Step(Step::Bind, None, None), &mut no);
        p.sent(Entry::Step(Step::Execute, None, None), &mut no);
        p.sent_sync(now());
        assert!(!p.answered());
        assert!(p.error(false, &mut no).substitute.is_some());
        assert_eq!(p.outstanding(), 1);
        p.ready(b'I', &mut no);
        assert!(p.idle());
    }

    #[test]
    fn a_retracted_message_becomes_a_refusal_in_its_place() {
        let p = Pending::new(b'I');
        p.sent(Entry::query(now()), &mut no);
        let mark = p.mark();
        p.sent(Entry::Step(Step::Bind, None, None), &mut no);
        p.sent(Entry::Step(Step::Execute, None, None), &mut no);
        p.retract(mark, Bytes::from_static(b"audit"), false, &mut no);
        p.sent_sync(now());
        assert_eq!(p.outstanding(), 3, "the query, the refusal and the Sync");
        assert_eq!(p.error(false, &mut no).substitute, None, "the query's own");
        p.ready(b'I', &mut no);
        assert_eq!(
            p.error(false, &mut no).substitute.as_deref(),
            Some(&b"audit"[..])
        );
        p.ready(b'I', &mut no);
        assert!(p.idle());
    }

    #[test]
    fn outcomes_name_the_audited_statement() {
        let p = Pending::new(b'I');
        let a = |seq| Audited {
            seq,
            statement_id: seq,
            at: now(),
        };
        p.sent(
            Entry::Query {
                at: now(),
                tickets: Vec::new(),
                done: 0,
                analysis: None,
                audited: vec![a(1), a(2)],
            },
            &mut no,
        );
        p.sent(Entry::Step(Step::Execute, None, Some(a(3))), &mut no);
        p.sent_sync(now());
        assert_eq!(p.command_done(&mut no).audited.map(|a| a.seq), Some(1));
        assert_eq!(p.error(false, &mut no).audited.map(|a| a.seq), Some(2));
        p.ready(b'I', &mut no);
        assert_eq!(p.error(false, &mut no).audited.map(|a| a.seq), Some(3));
    }

    #[test]
    fn a_fatal_error_is_never_replaced() {
        let p = Pending::new(b'I');
        p.sent(refused(true), &mut no);
        assert_eq!(p.error(true, &mut no).substitute, None);
    }

    fn hidden(step: bool, on_error: Option<&'static [u8]>) -> Entry {
        Entry::Hidden {
            step,
            on_error: on_error.map(Bytes::from_static),
            charge: None,
            audited: None,
        }
    }

    /// The row-limit check after a statement, settling `charge`.
    fn charged_check(charge: crate::row_budgets::Charge) -> Entry {
        Entry::Hidden {
            step: false,
            on_error: Some(Bytes::from_static(b"limit")),
            charge: Some(crate::row_budgets::ChargeSlot::new(charge)),
            audited: None,
        }
    }

    /// A budget of 100 rows, and the charge of a statement that drew 50.
    fn one_budget() -> (
        std::sync::Arc<crate::row_budgets::Budget>,
        crate::row_budgets::Allowance,
        crate::row_budgets::Charge,
    ) {
        use crate::row_budgets::{Allowance, Budget, Draw, SessionBudgets};
        let budget = std::sync::Arc::new(Budget::default());
        let allowance = Allowance {
            name: "agents".into(),
            max: 100,
            window: std::time::Duration::from_secs(60),
        };
        let budgets = SessionBudgets {
            entries: vec![(allowance.clone(), budget.clone())],
        };
        let Draw::Run { charge, .. } = budgets.draw(50, Instant::now(), false) else {
            panic!("budget left")
        };
        (budget, allowance, charge)
    }

    #[test]
    fn a_checks_count_settles_its_charge() {
        let (budget, allowance, charge) = one_budget();
        let p = Pending::new(b'I');
        p.sent(hidden(false, None), &mut no);
        p.sent(Entry::QueryPart, &mut no);
        p.sent(charged_check(charge), &mut no);
        p.sent(Entry::query(now()), &mut no);
        assert_eq!(p.route(true, b""), Route::Hidden);
        assert_eq!(p.route(true, b"DELETE 7"), Route::Hold);
        // While the check runs, 50 rows are held for the statement.
        assert_eq!(budget.available(&allowance, Instant::now()), 50);
        // DataRow: one column, "7".
        let row = [b'D', 0, 0, 0, 11, 0, 1, 0, 0, 0, 1, b'7'];
        assert_eq!(p.route(false, &row), Route::Hidden);
        assert_eq!(
            p.route(true, b"SELECT 1"),
            Route::Release(Bytes::from_static(b"DELETE 7"))
        );
        assert_eq!(budget.available(&allowance, Instant::now()), 93);
        assert_eq!(budget.spent(&allowance, Instant::now()), 7);
    }

    #[test]
    fn an_unreadable_count_charges_everything_reserved() {
        let (budget, allowance, charge) = one_budget();
        let p = Pending::new(b'I');
        p.sent(Entry::QueryPart, &mut no);
        p.sent(charged_check(charge), &mut no);
        p.sent(Entry::query(now()), &mut no);
        assert_eq!(p.route(true, b"DELETE 7"), Route::Hold);
        // DataRow: one column, "(0)".
        let row = [b'D', 0, 0, 0, 13, 0, 1, 0, 0, 0, 3, b'(', b'0', b')'];
        assert_eq!(p.route(false, &row), Route::Hidden);
        assert_eq!(budget.spent(&allowance, Instant::now()), 50);
    }

    #[test]
    fn a_check_that_never_counts_charges_nothing() {
        let (budget, allowance, charge) = one_budget();
        let p = Pending::new(b'I');
        p.sent(Entry::QueryPart, &mut no);
        p.sent(charged_check(charge), &mut no);
        p.sent(Entry::query(now()), &mut no);
        // The client's statement fails: the check never runs.
        p.error(false, &mut no);
        assert!(p.ready(b'I', &mut no).took.is_some());
        assert_eq!(budget.available(&allowance, Instant::now()), 100);
    }

    #[test]
    fn hidden_statements_around_a_query() {
        let p = Pending::new(b'I');
        p.sent(hidden(false, None), &mut no);
        p.sent(Entry::QueryPart, &mut no);
        p.sent(hidden(false, Some(b"limit")), &mut no);
        p.sent(Entry::query(now()), &mut no);
        // The base statement: RowDescription, DataRow, CommandComplete.
        assert_eq!(p.route(false, b""), Route::Hidden);
        assert_eq!(p.route(false, b""), Route::Hidden);
        assert_eq!(p.route(true, b""), Route::Hidden);
        // The client's statement: its completion is held.
        assert_eq!(p.route(false, b""), Route::Client);
        assert_eq!(p.route(true, b"UPDATE 9"), Route::Hold);
        // The check fails: the client gets the limit error, not the
        // completion.
        assert_eq!(p.route(false, b""), Route::Hidden);
        assert_eq!(
            p.error(false, &mut no).substitute.as_deref(),
            Some(&b"limit"[..])
        );
        assert!(p.ready(b'I', &mut no).took.is_some());
        assert!(p.idle());
    }

    #[test]
    fn a_failing_client_statement_skips_the_check() {
        let p = Pending::new(b'I');
        p.sent(hidden(false, None), &mut no);
        p.sent(Entry::QueryPart, &mut no);
        p.sent(hidden(false, Some(b"limit")), &mut no);
        p.sent(Entry::query(now()), &mut no);
        assert_eq!(p.route(true, b""), Route::Hidden);
        assert_eq!(
            p.error(false, &mut no).substitute,
            None,
            "the server's own error"
        );
        assert!(p.ready(b'I', &mut no).took.is_some());
        assert!(p.idle());
    }

    #[test]
    fn hidden_steps_around_an_execute() {
        let p = Pending::new(b'I');
        p.sent(Entry::Step(Step::Bind, None, None), &mut no);
        p.sent(hidden(true, None), &mut no);
        p.sent(Entry::Step(Step::Execute, None, None), &mut no);
        p.sent(hidden(true, Some(b"limit")), &mut no);
        p.sent(hidden(true, None), &mut no);
        p.sent_sync(now());
        p.step_done(&mut no); // BindComplete
        assert_eq!(p.route(true, b""), Route::Hidden);
        assert_eq!(p.route(true, b"DELETE 9"), Route::Hold);
        p.command_done(&mut no);
        assert_eq!(
            p.error(false, &mut no).substitute.as_deref(),
            Some(&b"limit"[..])
        );
        assert_eq!(p.outstanding(), 1, "discarded up to the Sync");
        p.ready(b'I', &mut no);
        assert!(p.idle());
    }

    #[test]
    fn an_extended_completion_waits_for_the_check_not_the_bind_before_it() {
        let p = Pending::new(b'I');
        p.sent(Entry::Step(Step::Execute, None, None), &mut no);
        p.sent(hidden(true, None), &mut no); // Bind of the check
        p.sent(hidden(true, Some(b"limit")), &mut no); // its Execute
        p.sent_sync(now());
        assert_eq!(p.route(true, b"UPDATE 2"), Route::Hold);
        p.command_done(&mut no);
        assert_eq!(p.route(true, b""), Route::Hidden, "BindComplete");
        assert_eq!(p.route(false, b""), Route::Hidden, "DataRow");
        assert_eq!(
            p.route(true, b""),
            Route::Release(Bytes::from_static(b"UPDATE 2"))
        );
    }

    #[test]
    fn a_held_completion_is_released_when_the_check_passes() {
        let p = Pending::new(b'I');
        p.sent(hidden(false, None), &mut no);
        p.sent(Entry::QueryPart, &mut no);
        p.sent(hidden(false, Some(b"limit")), &mut no);
        p.sent(Entry::query(now()), &mut no);
        assert_eq!(p.route(true, b""), Route::Hidden);
        assert_eq!(p.route(true, b"UPDATE 3"), Route::Hold);
        assert_eq!(p.route(false, b""), Route::Hidden);
        assert_eq!(
            p.route(true, b""),
            Route::Release(Bytes::from_static(b"UPDATE 3"))
        );
        assert!(p.ready(b'I', &mut no).took.is_some());
        assert!(p.idle());
    }

    #[test]
    fn descriptions_name_whose_rows_follow() {
        let p = Pending::new(b'I');
        p.sent(
            Entry::Describe {
                rows: None,
                reply: Shown::Client,
            },
            &mut no,
        );
        p.sent(
            Entry::Describe {
                rows: Some(Rows::Portal(b"p".to_vec())),
                reply: Shown::Hidden,
            },
            &mut no,
        );
        p.sent(Entry::Step(Step::Execute, None, None), &mut no);
        p.sent_sync(now());
        assert_eq!(p.described(false), Described::Statement);
        assert_eq!(
            p.described(false),
            Described::Rows {
                rows: Rows::Portal(b"p".to_vec()),
                hidden: true
            }
        );
        p.command_done(&mut no);
        p.ready(b'I', &mut no);
        // A Query's statements, by index, past a stray copy marker.
        p.sent_copy_end();
        p.sent(Entry::query(now()), &mut no);
        assert_eq!(
            p.described(false),
            Described::Rows {
                rows: Rows::Statement(None, 0),
                hidden: false
            }
        );
        p.command_done(&mut no);
        assert_eq!(
            p.described(false),
            Described::Rows {
                rows: Rows::Statement(None, 1),
                hidden: false
            }
        );
        assert!(p.ready(b'I', &mut no).drained);
    }

    #[test]
    fn a_copy_out_names_its_query_statement_but_not_an_execute() {
        let p = Pending::new(b'I');
        p.sent(Entry::Step(Step::Execute, None, None), &mut no);
        p.sent_sync(now());
        // The portal was described just before: the ledger cannot say.
        assert_eq!(p.copy_out_rows(), None);
        p.command_done(&mut no);
        p.ready(b'I', &mut no);
        p.sent_copy_end();
        p.sent(Entry::query(now()), &mut no);
        p.command_done(&mut no);
        assert_eq!(p.copy_out_rows(), Some(Rows::Statement(None, 1)));
        assert!(p.ready(b'I', &mut no).drained);
    }

    #[test]
    fn a_failed_hidden_describe_discards_its_execute() {
        let p = Pending::new(b'I');
        p.sent(
            Entry::Describe {
                rows: Some(Rows::Portal(Vec::new())),
                reply: Shown::Hidden,
            },
            &mut no,
        );
        p.sent(Entry::Step(Step::Execute, None, None), &mut no);
        p.sent(Entry::query(now()), &mut no);
        p.sent_sync(now());
        assert_eq!(p.error(false, &mut no).substitute, None);
        assert_eq!(p.outstanding(), 1, "only the Sync is answered");
        p.ready(b'I', &mut no);
        assert!(p.idle());
    }
}
