//! Which client requests the server still owes a ReadyForQuery.
//!
//! A Query, a Sync and a FunctionCall each end in exactly one ReadyForQuery,
//! with one exception: the server ignores Sync (and Flush) while it is in
//! COPY FROM STDIN mode, and it enters that mode in the middle of a client's
//! pipeline, when it executes the COPY. So the client pump records each
//! request and each end of copy data (CopyDone, CopyFail), and when the
//! server pump sees CopyInResponse it strikes the Syncs the server will
//! ignore. The ledger gives statement latency and tells whether the session
//! is idle; later policy work uses it to answer refused requests in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// A Query or FunctionCall, sent at this time.
    Query(Instant),
    /// A Sync, sent at this time.
    Sync(Instant),
    /// The client ended COPY data (CopyDone or CopyFail).
    CopyEnd,
}

#[derive(Debug, Default)]
struct Ledger {
    entries: VecDeque<Entry>,
    /// The server is in copy-in mode and the client has not ended it yet:
    /// Syncs sent now will be ignored by the server.
    copy_in_open: bool,
}

#[derive(Debug)]
pub(crate) struct Pending {
    ledger: Mutex<Ledger>,
    /// Transaction status from the last ReadyForQuery.
    status: AtomicU8,
}

/// The ledger never grows without bound, even against a client that
/// pipelines forever without reading: past this many outstanding requests
/// the oldest timings are dropped (latency then under-reports; nothing else
/// depends on them yet).
const MAX_ENTRIES: usize = 4096;

impl Pending {
    pub fn new(status: u8) -> Self {
        Pending {
            ledger: Mutex::new(Ledger::default()),
            status: AtomicU8::new(status),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, e: Entry) {
        let mut l = self.ledger();
        if l.entries.len() >= MAX_ENTRIES {
            l.entries.pop_front();
        }
        l.entries.push_back(e);
    }

    pub fn sent_query(&self, at: Instant) {
        self.push(Entry::Query(at));
    }

    pub fn sent_sync(&self, at: Instant) {
        if self.ledger().copy_in_open {
            return;
        }
        self.push(Entry::Sync(at));
    }

    pub fn sent_copy_end(&self) {
        let mut l = self.ledger();
        if l.copy_in_open {
            l.copy_in_open = false;
        } else {
            drop(l);
            self.push(Entry::CopyEnd);
        }
    }

    /// The server entered COPY FROM STDIN: Syncs the client sent since the
    /// request that started it, up to the end of its copy data, are ignored.
    pub fn copy_in_started(&self) {
        let mut l = self.ledger();
        // Markers before the first request belong to copies already over.
        while let Some(Entry::CopyEnd) = l.entries.front() {
            l.entries.pop_front();
        }
        // The first entry is the request that ran the COPY when it is a
        // Query; in the extended protocol it is the Sync after the Execute,
        // which the server ignores like any other.
        let keep_first = matches!(l.entries.front(), Some(Entry::Query(_)));
        let start = usize::from(keep_first);
        let end = l
            .entries
            .iter()
            .skip(start)
            .position(|e| *e == Entry::CopyEnd)
            .map(|p| p + start);
        match end {
            Some(end) => {
                let mut i = start;
                let mut end = end;
                while i < end {
                    if matches!(l.entries[i], Entry::Sync(_)) {
                        l.entries.remove(i);
                        end -= 1;
                    } else {
                        i += 1;
                    }
                }
                l.entries.remove(end);
            }
            None => {
                let mut i = start;
                while i < l.entries.len() {
                    if matches!(l.entries[i], Entry::Sync(_)) {
                        l.entries.remove(i);
                    } else {
                        i += 1;
                    }
                }
                l.copy_in_open = true;
            }
        }
    }

    /// A ReadyForQuery arrived; returns when its request was sent.
    pub fn ready(&self, status: u8) -> Option<Instant> {
        self.status.store(status, Ordering::Relaxed);
        let mut l = self.ledger();
        // A copy that ended without the server ever entering copy mode (it
        // failed first) leaves a CopyEnd marker that means nothing now.
        while let Some(Entry::CopyEnd) = l.entries.front() {
            l.entries.pop_front();
        }
        match l.entries.pop_front() {
            Some(Entry::Query(t) | Entry::Sync(t)) => Some(t),
            _ => None,
        }
    }

    /// No request is waiting for the server and no transaction is open.
    pub fn idle(&self) -> bool {
        self.status.load(Ordering::Relaxed) == portcullis_wire::tags::txn::IDLE
            && self
                .ledger()
                .entries
                .iter()
                .all(|e| *e == Entry::CopyEnd)
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

    #[test]
    fn simple_queries_pair_with_ready() {
        let p = Pending::new(b'I');
        let t = Instant::now();
        p.sent_query(t);
        p.sent_query(t);
        assert!(!p.idle());
        assert_eq!(p.ready(b'I'), Some(t));
        assert_eq!(p.ready(b'I'), Some(t));
        assert!(p.idle());
        assert_eq!(p.ready(b'I'), None);
    }

    #[test]
    fn extended_copy_in_ignores_syncs_until_copy_done() {
        // Bind/Execute(COPY)/Sync, then CopyData.../CopyDone/Sync, all
        // pipelined before the server answers.
        let p = Pending::new(b'I');
        let t = Instant::now();
        p.sent_sync(t);
        p.sent_copy_end();
        p.sent_sync(t);
        p.copy_in_started();
        assert_eq!(p.outstanding(), 1);
        assert!(p.ready(b'I').is_some());
        assert!(p.idle());
    }

    #[test]
    fn extended_copy_in_when_server_answers_first() {
        let p = Pending::new(b'I');
        let t = Instant::now();
        p.sent_sync(t);
        p.copy_in_started();
        p.sent_sync(t); // ignored by the server: still in copy mode
        p.sent_copy_end();
        p.sent_sync(t);
        assert_eq!(p.outstanding(), 1);
        p.ready(b'I');
        assert!(p.idle());
    }

    #[test]
    fn simple_copy_in_keeps_its_query() {
        let p = Pending::new(b'I');
        let t = Instant::now();
        p.sent_query(t);
        p.copy_in_started();
        p.sent_copy_end();
        assert_eq!(p.outstanding(), 1);
        p.ready(b'I');
        assert!(p.idle());
    }

    #[test]
    fn failed_copy_leaves_no_marker() {
        let p = Pending::new(b'I');
        let t = Instant::now();
        p.sent_query(t);
        p.sent_copy_end(); // the client sent CopyDone, but the COPY failed
        p.ready(b'I');
        assert!(p.idle());
        p.sent_query(t);
        assert_eq!(p.ready(b'I'), Some(t));
    }
}
