//! One session's part in the audit trail: numbering its statements,
//! handing their records to the trail as they are judged, tying each
//! Execute to the statement record of its Bind, and recording outcomes as
//! the ledger reports them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use portcullis_audit::record::{EndReason, Protocol, Record};
use portcullis_audit::Receipt;
use portcullis_wire::Refusal;
use tracing::warn;

use super::pending::Audited;
use crate::audit::records::{self, Completion, MessageVerdict, SessionFacts};
use crate::audit::{AuditTrail, Submitted, TargetAudit};

pub(crate) struct SessionAudit {
    trail: Arc<AuditTrail>,
    setting: TargetAudit,
    pub facts: SessionFacts,
    started: Instant,
    next_statement: AtomicU64,
    /// The statement record of each portal's Bind, for its Executes.
    portals: Mutex<HashMap<Vec<u8>, Audited>>,
}

/// The records of one judged message.
pub(crate) struct Recorded {
    /// Per statement, in order (empty when the trail refused them and the
    /// target fails open).
    pub audited: Vec<Audited>,
    /// On a strict target: resolves once the last record is committed.
    pub receipt: Option<Receipt>,
}

impl SessionAudit {
    pub fn new(trail: Arc<AuditTrail>, setting: TargetAudit, facts: SessionFacts) -> Self {
        SessionAudit {
            trail,
            setting,
            facts,
            started: Instant::now(),
            next_statement: AtomicU64::new(1),
            portals: Mutex::new(HashMap::new()),
        }
    }

    pub fn commit_timeout(&self) -> std::time::Duration {
        self.trail.commit_timeout()
    }

    /// Whether a statement may run unrecorded when the trail fails.
    pub fn fails_open(&self) -> bool {
        self.setting.fail_open
    }

    /// The session's opening record. On a failure the caller refuses the
    /// session unless the target fails open.
    pub fn opened(&self) -> Result<Option<Receipt>, portcullis_audit::AuditError> {
        let record = records::connection_succeeded(&self.facts);
        match self.trail.submit(&record, self.setting.strict)? {
            Submitted::Waiting(_, r) => Ok(Some(r)),
            Submitted::Queued(_) => Ok(None),
        }
    }

    pub fn ended(&self, reason: EndReason) {
        let record = records::connection_ended(&self.facts, reason, self.started.elapsed());
        self.trail.submit_quietly(&record);
    }

    /// Records the statements of one judged message. `Err` is the refusal
    /// the client gets in the message's place (the trail cannot take the
    /// records and the target fails closed).
    pub fn statements(
        &self,
        m: &MessageVerdict,
        protocol: Protocol,
        statement_name: Option<&[u8]>,
        params: Option<&[Option<&[u8]>]>,
        at: Instant,
    ) -> Result<Recorded, Refusal> {
        let n = m.record_count();
        let mut recorded = Recorded {
            audited: Vec::with_capacity(n),
            receipt: None,
        };
        let name = statement_name
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned());
        for index in 0..n {
            let statement_id = self.next_statement.fetch_add(1, Ordering::Relaxed);
            let record: Record = records::statement(
                &self.facts,
                records::Statement {
                    statement_id,
                    protocol,
                    statement_name: name.clone(),
                    text: m.texts.as_ref().and_then(|t| t.get(index)),
                    verdict: m.statements.get(index),
                    decision: records::decision(m, index, &self.facts.bundle_hash),
                    params: self.trail.params(params),
                },
            );
            // Only the last receipt is awaited: the writer commits in
            // queue order, so the earlier records are in by then. (On a
            // queued target a receipt comes back only when the writer is
            // behind; it is awaited too, see `AuditTrail::submit`.)
            let strict = self.setting.strict && index + 1 == n && !m.blocks();
            match self.trail.submit(&record, strict) {
                Ok(s) => {
                    recorded.audited.push(Audited {
                        seq: s.seq(),
                        statement_id,
                        at,
                    });
                    if let Submitted::Waiting(_, r) = s {
                        recorded.receipt = Some(r);
                    }
                }
                Err(e) if self.setting.fail_open => {
                    warn!(parent: None, error = %e, "audit record lost: the target fails open");
                    recorded.audited.clear();
                    recorded.receipt = None;
                    return Ok(recorded);
                }
                Err(e) => return Err(crate::audit::unavailable(&e)),
            }
        }
        Ok(recorded)
    }

    /// A Bind into `portal` was recorded as `audited` (`None`: refused).
    pub fn bound(&self, portal: &[u8], audited: Option<Audited>) {
        let mut portals = self.portals.lock().unwrap_or_else(|e| e.into_inner());
        match audited {
            Some(a) => {
                portals.insert(portal.to_vec(), a);
            }
            None => {
                portals.remove(portal);
            }
        }
    }

    /// The statement record an Execute of `portal` runs, timed from now.
    pub fn executes(&self, portal: &[u8]) -> Option<Audited> {
        let portals = self.portals.lock().unwrap_or_else(|e| e.into_inner());
        portals.get(portal).map(|a| Audited {
            at: Instant::now(),
            ..*a
        })
    }

    /// A statement ended: its outcome, folded into the statement's record
    /// if that is still queued, else a record of its own.
    pub fn outcome(&self, audited: Audited, mut done: Completion) {
        done.duration = audited.at.elapsed();
        let session_id = &self.facts.destination.session_id;
        self.trail
            .complete(audited.seq, records::outcome(done), |o| {
                records::outcome_record(audited.seq, session_id, audited.statement_id, o)
            });
    }
}
