//! One session's part in the audit trail: numbering its statements,
//! handing their records to the trail as they are judged, tying each
//! Execute to the statement record of its Bind, and recording outcomes as
//! the ledger reports them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use portcullis_analysis::audit_text::AuditText;
use portcullis_audit::record::{BindParams, EndReason, Protocol, Record};
use portcullis_audit::{Encoded, Receipt, StatementTemplate};
use portcullis_guard::StatementVerdict;
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
    /// The templates of the session's latest statement records, newest
    /// first (see [`Templates`]).
    templates: Mutex<Templates>,
}

/// Statement records the session made lately, encoded with their statement
/// id left open (`portcullis_audit::template`). A statement judged again
/// (a prepared statement executed again, a query of a shape judged
/// before) comes with the very judgement and audit texts it had then: the
/// guard shares its memoised judgements by `Arc`. Its record is then the
/// same but for its id, and is rendered from the template instead of
/// built and encoded: the proxy's work per statement record drops from
/// about 5 µs to a copy.
#[derive(Default)]
struct Templates(Vec<Made>);

/// One template and everything its record was made of. The judgement's
/// `Arc` is held, so a pointer match can only be the same judgement (a
/// freed one's address cannot come back while it is held here). The text
/// is compared by value: a Bind's comes in an `Arc` of its own each time.
struct Made {
    statements: Arc<[StatementVerdict]>,
    text: Option<AuditText>,
    index: usize,
    refusal: Option<&'static str>,
    refused_by: Option<String>,
    enforced: bool,
    protocol: Protocol,
    name: Option<String>,
    template: StatementTemplate,
}

impl Made {
    fn matches(
        &self,
        m: &MessageVerdict,
        index: usize,
        protocol: Protocol,
        name: Option<&str>,
    ) -> bool {
        self.index == index
            && Arc::ptr_eq(&self.statements, &m.statements)
            && self.text.as_ref() == m.texts.as_ref().and_then(|t| t.get(index))
            && self.refusal == m.refusal
            && self.enforced == m.enforced
            && self.refused_by == m.refused_by
            && self.protocol == protocol
            && self.name.as_deref() == name
    }
}

impl Templates {
    /// Most templates kept: enough for the statements an application
    /// cycles through in a transaction.
    const KEPT: usize = 8;

    fn render(
        &mut self,
        m: &MessageVerdict,
        index: usize,
        protocol: Protocol,
        name: Option<&str>,
        statement_id: u64,
    ) -> Option<Encoded> {
        let at = self
            .0
            .iter()
            .position(|t| t.matches(m, index, protocol, name))?;
        if at > 0 {
            let t = self.0.remove(at);
            self.0.insert(0, t);
        }
        Some(self.0[0].template.render(statement_id))
    }

    fn keep(&mut self, made: Made) {
        self.0.truncate(Self::KEPT - 1);
        self.0.insert(0, made);
    }
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
            templates: Mutex::new(Templates::default()),
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
        let record = Encoded::of(&records::connection_succeeded(&self.facts))?;
        match self.trail.submit(record, self.setting.strict)? {
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
            // Only the last receipt is awaited: the writer commits in
            // queue order, so the earlier records are in by then. (On a
            // queued target a receipt comes back only when the writer is
            // behind; it is awaited too, see `AuditTrail::submit`.)
            let strict = self.setting.strict && index + 1 == n && !m.blocks();
            let submitted = self
                .encode(m, index, protocol, name.as_deref(), params, statement_id)
                .and_then(|record| self.trail.submit(record, strict));
            match submitted {
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

    /// The record of statement `index` of `m`: rendered from a template
    /// when the session made the same record before (bind values stored
    /// as keyed hashes differ per call, so those records never are).
    fn encode(
        &self,
        m: &MessageVerdict,
        index: usize,
        protocol: Protocol,
        name: Option<&str>,
        params: Option<&[Option<&[u8]>]>,
        statement_id: u64,
    ) -> Result<Encoded, portcullis_audit::AuditError> {
        let params = self.trail.params(params);
        let reusable = m.statements.len() > index && matches!(params, BindParams::Off);
        let mut templates = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        if reusable {
            if let Some(r) = templates.render(m, index, protocol, name, statement_id) {
                return Ok(r);
            }
        }
        let record: Record = records::statement(
            &self.facts,
            records::Statement {
                statement_id,
                protocol,
                statement_name: name.map(str::to_owned),
                text: m.texts.as_ref().and_then(|t| t.get(index)),
                verdict: m.statements.get(index),
                decision: records::decision(m, index, &self.facts.bundle_hash),
                params,
            },
        );
        if !reusable {
            return Encoded::of(&record);
        }
        let template = StatementTemplate::new(&record)?;
        let encoded = template.render(statement_id);
        templates.keep(Made {
            statements: m.statements.clone(),
            text: m.texts.as_ref().and_then(|t| t.get(index)).cloned(),
            index,
            refusal: m.refusal,
            refused_by: m.refused_by.clone(),
            enforced: m.enforced,
            protocol,
            name: name.map(str::to_owned),
            template,
        });
        Ok(encoded)
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
        self.trail.complete(
            audited.seq,
            &self.facts.destination.session_id,
            audited.statement_id,
            &records::outcome(done),
        );
    }
}
