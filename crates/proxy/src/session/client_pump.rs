//! Client → server.

use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use portcullis_wire::decode;
use portcullis_wire::encode;
use portcullis_wire::framing::{Limits, Next, Splitter};
use portcullis_wire::tags::frontend as fe;
use portcullis_wire::{sqlstate, Refusal};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::warn;

use portcullis_audit::record::Protocol;
use portcullis_audit::{AuditError, Receipt};

use portcullis_analysis::audit_text::audit_text;

use std::sync::Arc;

use super::auditing::SessionAudit;
use super::buffer::ReadBuffer;
use super::function_call;
use super::guarding::{self, Guarded, Verdict};
use super::holding::{HeldMessage, Released};
use super::pending::{Entry, Pending, Rows, Shown, Step};
use super::pump_mode::{self, Hold, Mode, Route};
use super::returned::{self, Outcome};
use super::row_limit;
use super::{write_all_tracked, End};
use crate::approval_desk::Desk;
use crate::audit::records::MessageVerdict;
use crate::cancel::HoldLine;
use crate::metrics::{ErrorKind, Metrics};
use crate::stream::{ClientTls, ReadHalf, UpstreamTls, WriteHalf};

pub(crate) struct ClientPump<'a> {
    pub(super) reader: ReadHalf<ClientTls>,
    writer: WriteHalf<UpstreamTls>,
    pub(super) rb: ReadBuffer,
    splitter: Splitter,
    idle_timeout: Option<Duration>,
    pub(super) pending: &'a Pending,
    pub(super) guarded: &'a Guarded,
    pub(super) metrics: &'a Metrics,
    /// Dropping the rest of a refused streamed message.
    discarding: bool,
    /// A write to the server was interrupted: its stream position is unknown.
    in_write: bool,
    terminated: bool,
    /// See [`LastDescribe`].
    last_describe: LastDescribe,
    /// The client sent a request that may start a COPY FROM STDIN, and
    /// since then only copy data, Flush and Sync: a Sync now is read by
    /// the server in copy mode (ignored) or not, depending on whether the
    /// copy started and whether it failed before reading it (see
    /// `ClientPump::copy_sync`).
    copy_window: bool,
    pub(super) audit: Option<&'a SessionAudit>,
    /// The message just judged may go upstream only once its audit record
    /// is committed (a strict target, or a queued one whose writer is
    /// behind).
    wait: Option<StrictWait>,
    /// What the pump is doing (see `pump_mode.rs`).
    pub(super) mode: Mode,
    /// Where statements held for approval are asked about, if anywhere.
    pub(super) approvals: Option<Arc<Desk>>,
    /// The cancel registry's way back into this session while it holds.
    pub(super) hold_line: &'a HoldLine,
    /// Who the session is, for approval requests.
    pub(super) requester: portcullis_approvals::Person,
    /// Its kind, as `[approvals] rerun_kinds` names it.
    pub(super) kind: portcullis_config::IdentityKind,
    pub(super) session_id: String,
    /// See [`ApprovalSetting::profile`].
    pub(super) profile: Option<String>,
}

/// What the approval workflow needs of a session.
pub(crate) struct ApprovalSetting<'a> {
    pub desk: Option<Arc<Desk>>,
    pub hold_line: &'a HoldLine,
    pub requester: portcullis_approvals::Person,
    pub kind: portcullis_config::IdentityKind,
    pub session_id: String,
    /// The access profile the session logged in through (`None`: the
    /// target's own role), for the dry run of a held data change.
    pub profile: Option<String>,
}

/// A message held until its audit record is committed.
pub(crate) struct StrictWait {
    receipt: Receipt,
    /// The ledger before the message's entries (see `Pending::retract`).
    mark: u64,
    /// What goes upstream in its place if the record is not committed.
    query: bool,
    replacement: BytesMut,
}

/// The portal the client's previous message described, if it was a
/// Describe of a portal. An Execute right after it gets its columns from
/// that reply; any other Execute, when the session masks, is preceded by a
/// Describe of the proxy's own (drivers that cache descriptions execute
/// without one), so every result set has a RowDescription to plan from.
#[derive(Default)]
struct LastDescribe {
    portal: Vec<u8>,
    valid: bool,
}

/// What to do with one client message.
pub(crate) enum Action {
    Forward,
    /// Send these bytes upstream instead of the message.
    Replace(BytesMut),
    /// Send these bytes upstream instead of the message, then send nothing
    /// more until the statement they run has ended, whose returned rows
    /// are counted (see `returned.rs`). `query`: when the client sent a
    /// Query (at this time), which the proxy sent as extended messages.
    Counted {
        bytes: BytesMut,
        query: Option<Instant>,
    },
    /// Drop the message unsent: the server would skip it (an earlier
    /// message failed and no Sync came since).
    Drop,
    /// Send these bytes upstream instead of the message: they fail on
    /// the server, in the message's place. `step`: in the extended
    /// protocol, where the server then skips everything up to Sync.
    Fail {
        bytes: BytesMut,
        step: bool,
    },
    Terminate,
    /// End the session with this error (a protocol violation).
    Refuse(Refusal),
    /// Hold it for approval (see `holding.rs`); nothing is recorded for
    /// it yet.
    Hold(Box<HeldMessage>),
}

impl Action {
    fn fail(bytes: BytesMut, step: bool) -> Action {
        Action::Fail { bytes, step }
    }
}

impl<'a> ClientPump<'a> {
    // One argument per piece of session state the pump borrows; grouping
    // them would only move the list elsewhere.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        reader: ReadHalf<ClientTls>,
        writer: WriteHalf<UpstreamTls>,
        initial: BytesMut,
        max_statement: usize,
        idle_timeout: Option<Duration>,
        pending: &'a Pending,
        guarded: &'a Guarded,
        metrics: &'a Metrics,
        audit: Option<&'a SessionAudit>,
        approvals: ApprovalSetting<'a>,
    ) -> Self {
        ClientPump {
            reader,
            writer,
            rb: ReadBuffer::new(initial),
            splitter: Splitter::new(Limits::frontend(max_statement)),
            idle_timeout,
            pending,
            guarded,
            metrics,
            discarding: false,
            in_write: false,
            terminated: false,
            last_describe: LastDescribe::default(),
            copy_window: false,
            audit,
            wait: None,
            mode: Mode::Relaying,
            approvals: approvals.desk,
            hold_line: approvals.hold_line,
            requester: approvals.requester,
            kind: approvals.kind,
            session_id: approvals.session_id,
            profile: approvals.profile,
        }
    }
}

/// Judges a message (or the head of a streamed one) by its type and the
/// bytes available of it, and hands its audit records to the trail.
// One argument per piece of pump state the step reads or changes.
#[allow(clippy::too_many_arguments)]
fn judge(
    pending: &Pending,
    guarded: &Guarded,
    metrics: &Metrics,
    audit: Option<&SessionAudit>,
    last_describe: &mut LastDescribe,
    copy_window: &mut bool,
    wait: &mut Option<StrictWait>,
    approved: Option<&str>,
    tag: u8,
    head: &[u8],
) -> Action {
    // Judged and entered in the ledger as one step, as far as the server
    // pump's "every request answered" is concerned.
    let _gate = guarded.gate();
    let described_before = last_describe.valid;
    // A request other than copy data, Flush or Sync: the client is done
    // with any copy.
    if !matches!(tag, fe::COPY_DATA | fe::FLUSH | fe::SYNC) {
        *copy_window = false;
    }
    // Flush changes nothing between a Describe and its Execute.
    if tag != fe::FLUSH {
        last_describe.valid = false;
    }
    let body = decode::body(head);
    // The server's answers settle the changes each message makes to the
    // session model; a message the server discards settles at once.
    let settle = &mut |t, ran| guarded.settle(t, ran);
    match tag {
        fe::QUERY => {
            metrics.statements(1);
            let Ok(sql) = decode::query(body) else {
                return malformed(pending, true, guarding::refused_query(), settle);
            };
            // Only an audited message can be retracted (see `StrictWait`).
            let mark = audit.map_or(0, |_| pending.mark());
            let judged = guarded.query(sql, approved);
            count_inferred(guarded, metrics);
            let judged = match judged.verdict {
                Verdict::Hold(held) => {
                    let m = HeldMessage::new(guarded, held, true, &[], judged.audit);
                    return Action::Hold(Box::new(m));
                }
                verdict => guarding::Judged { verdict, ..judged },
            };
            *copy_window = judged
                .analysis
                .as_ref()
                .is_some_and(|a| a.statements.iter().any(|s| s.copies_from_client()));
            let at = Instant::now();
            let mut verdict = judged.verdict;
            let mut tickets = judged.tickets;
            let mut audited = Vec::new();
            if let Some(audit) = audit {
                match audit.statements(&judged.audit, Protocol::Simple, None, None, at) {
                    Ok(r) => {
                        audited = r.audited;
                        *wait = r.receipt.map(|receipt| StrictWait {
                            receipt,
                            mark,
                            query: true,
                            replacement: guarding::refused_query(),
                        });
                    }
                    Err(refusal) => {
                        // It never runs: neither do its changes.
                        for (_, t) in tickets.drain(..) {
                            settle(t, false);
                        }
                        if !matches!(verdict, Verdict::Refuse(_)) {
                            verdict = Verdict::Refuse(refusal.to_bytes());
                        }
                    }
                }
            }
            // Its statement's rows are counted (see `returned.rs`).
            let changes_counted = matches!(verdict, Verdict::Limited { .. });
            let counted = pending.is_metered()
                && judged.analysis.as_ref().is_some_and(|a| {
                    a.statements.len() == 1 && returned::counted(&a.statements[0], changes_counted)
                });
            let entry = Entry::Query {
                at,
                tickets,
                done: 0,
                analysis: judged.analysis,
                audited,
            };
            match verdict {
                Verdict::Pass if counted => {
                    counted_query(pending, guarded, sql, entry, None, settle)
                }
                Verdict::Limited {
                    limit,
                    over,
                    reads_only,
                } if counted => counted_query(
                    pending,
                    guarded,
                    sql,
                    entry,
                    Some((limit, over, reads_only)),
                    settle,
                ),
                Verdict::Pass => {
                    pending.sent(entry, settle);
                    Action::Forward
                }
                Verdict::Limited {
                    limit,
                    over,
                    reads_only,
                } => {
                    let (limit, over, charge) = guarded.draw(limit, over, reads_only);
                    let (query, entries) = row_limit::wrap_query(sql, limit, over, charge);
                    for e in entries {
                        pending.sent(e, settle);
                    }
                    pending.sent(entry, settle);
                    Action::Replace(query)
                }
                v @ (Verdict::Refuse(_) | Verdict::Hold(_)) => {
                    let reply = v.into_reply();
                    metrics.error(ErrorKind::Refused);
                    pending.sent(refused(reply, true), settle);
                    Action::fail(guarding::refused_query(), false)
                }
            }
        }
        fe::PARSE => {
            let Ok((name, sql)) = decode::parse(body) else {
                return malformed(pending, false, guarding::refused_step(), settle);
            };
            // The declared parameter types follow the two strings.
            let types = body.get(name.len() + sql.len() + 2..).unwrap_or_default();
            let judged = guarded.parse(name, sql, types);
            count_inferred(guarded, metrics);
            match judged.verdict {
                Verdict::Pass | Verdict::Limited { .. } => {
                    // Recorded when it is bound: preparing runs nothing.
                    pending.sent(Entry::Step(Step::Parse, judged.ticket, None), settle);
                    Action::Forward
                }
                v @ (Verdict::Refuse(_) | Verdict::Hold(_)) => {
                    let reply = v.into_reply();
                    if let Some(audit) = audit {
                        // Refused either way; a record that cannot be
                        // written changes nothing.
                        let _ = audit.statements(
                            &judged.audit,
                            Protocol::Extended,
                            Some(name),
                            None,
                            Instant::now(),
                        );
                    }
                    metrics.error(ErrorKind::Refused);
                    pending.sent(refused(reply, false), settle);
                    Action::fail(guarding::refused_parse(name), true)
                }
            }
        }
        fe::BIND => {
            let Ok((portal, statement)) = decode::bind_names(body) else {
                return malformed(pending, false, guarding::refused_step(), settle);
            };
            // Only an audited message can be retracted (see `StrictWait`).
            let mark = audit.map_or(0, |_| pending.mark());
            let judged = guarded.bind(portal, statement, approved);
            count_inferred(guarded, metrics);
            let judged = match judged.verdict {
                Verdict::Hold(held) => {
                    // The parameters as sent follow the two names.
                    let params = body
                        .get(portal.len() + statement.len() + 2..)
                        .unwrap_or_default();
                    let m = HeldMessage::new(guarded, held, false, params, judged.audit);
                    return Action::Hold(Box::new(m));
                }
                verdict => guarding::Judged { verdict, ..judged },
            };
            let mut verdict = judged.verdict;
            let mut ticket = judged.ticket;
            if let Some(audit) = audit {
                let mut bound = None;
                // A streamed Bind's values are not all here: none are kept.
                let values = decode::bind_values(body).ok();
                match audit.statements(
                    &judged.audit,
                    Protocol::Extended,
                    Some(statement),
                    values.as_deref(),
                    Instant::now(),
                ) {
                    Ok(r) => {
                        bound = r.audited.last().copied();
                        *wait = r.receipt.map(|receipt| StrictWait {
                            receipt,
                            mark,
                            query: false,
                            replacement: guarding::refused_step(),
                        });
                    }
                    Err(refusal) => {
                        if let Some(t) = ticket.take() {
                            settle(t, false);
                        }
                        if !matches!(verdict, Verdict::Refuse(_)) {
                            verdict = Verdict::Refuse(refusal.to_bytes());
                        }
                    }
                }
                let runs = !matches!(verdict, Verdict::Refuse(_));
                audit.bound(portal, bound.filter(|_| runs));
            }
            match verdict {
                Verdict::Pass | Verdict::Limited { .. } => {
                    pending.sent(Entry::Step(Step::Bind, ticket, None), settle);
                    Action::Forward
                }
                v @ (Verdict::Refuse(_) | Verdict::Hold(_)) => {
                    let reply = v.into_reply();
                    metrics.error(ErrorKind::Refused);
                    pending.sent(refused(reply, false), settle);
                    Action::fail(guarding::refused_step(), true)
                }
            }
        }
        fe::CLOSE => {
            let ticket = match decode::close(body) {
                Ok((kind, name)) => {
                    if let (Some(audit), b'P') = (audit, kind) {
                        audit.bound(name, None);
                    }
                    guarded.close(kind, name)
                }
                Err(_) => return malformed(pending, false, guarding::refused_step(), settle),
            };
            pending.sent(Entry::Step(Step::Close, ticket, None), settle);
            Action::Forward
        }
        fe::DESCRIBE => {
            let rows = match decode::close(body) {
                Ok((b'P', portal)) if guarded.masks() => {
                    last_describe.portal.clear();
                    last_describe.portal.extend_from_slice(portal);
                    last_describe.valid = true;
                    Some(Rows::Portal(portal.to_vec()))
                }
                // A malformed Describe gets the server's own error.
                _ => None,
            };
            pending.sent(
                Entry::Describe {
                    rows,
                    reply: Shown::Client,
                },
                settle,
            );
            Action::Forward
        }
        fe::EXECUTE => {
            metrics.statements(1);
            let portal = portcullis_wire::framing::read_cstr(body, 0).map(|(p, _)| p);
            let (limited, ticket) = match portal.map(|p| guarded.execute(p)) {
                None => (None, None),
                Some(Ok(executed)) => {
                    *copy_window = executed.copies_in;
                    (executed.limited, executed.ticket)
                }
                Some(Err(reply)) => {
                    metrics.error(ErrorKind::Refused);
                    pending.sent(refused(reply, false), settle);
                    return Action::fail(guarding::refused_step(), true);
                }
            };
            let audited = audit.zip(portal).and_then(|(a, p)| a.executes(p));
            // The proxy's Describe, when the client did not just describe
            // this portal (a malformed Execute needs none: the server
            // refuses it).
            let describe = match portal {
                Some(p) if guarded.masks() && !(described_before && last_describe.portal == p) => {
                    Some(p)
                }
                _ => None,
            };
            let metered = pending.is_metered();
            if limited.is_none() && describe.is_none() && !metered {
                pending.sent(Entry::Step(Step::Execute, ticket, audited), settle);
                return Action::Forward;
            }
            let mut out = BytesMut::new();
            let mut after_bytes = BytesMut::new();
            let mut after = None;
            // Messages of the proxy's right before the Execute.
            let mut lead = 0;
            if let Some(guarding::CountedExecute {
                limit,
                over,
                reads_only,
            }) = limited
            {
                // Count the rows around it (see row_limit.rs).
                let (limit, over, charge) = guarded.draw(limit, over, reads_only);
                let (before_bytes, before) = row_limit::before_execute();
                out = before_bytes;
                lead += before.len();
                for e in before {
                    pending.sent(e, settle);
                }
                let (bytes, entries) = row_limit::after_execute(limit, over, charge);
                after_bytes = bytes;
                after = Some(entries);
            }
            if let Some(p) = describe {
                encode::describe_portal(&mut out, p);
                let rows = Some(Rows::Portal(p.to_vec()));
                lead += 1;
                pending.sent(
                    Entry::Describe {
                        rows,
                        reply: Shown::Hidden,
                    },
                    settle,
                );
            }
            let cap = match (metered, portal) {
                (true, Some(p)) => {
                    // The client's own row count follows the portal name.
                    let client_max = body
                        .get(p.len() + 1..p.len() + 5)
                        .map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    pending
                        .sent_counted(ticket, audited, (client_max, lead), settle)
                        .map(|cap| (p, cap))
                }
                _ => {
                    pending.sent(Entry::Step(Step::Execute, ticket, audited), settle);
                    None
                }
            };
            for e in after.into_iter().flatten() {
                pending.sent(e, settle);
            }
            match cap {
                Some((p, cap)) => encode::execute_rows(&mut out, p, cap),
                None => out.extend_from_slice(head),
            }
            out.extend_from_slice(&after_bytes);
            if cap.is_none() {
                return Action::Replace(out);
            }
            encode::flush(&mut out);
            Action::Counted {
                bytes: out,
                query: None,
            }
        }
        fe::SYNC => {
            pending.sent_sync(Instant::now());
            Action::Forward
        }
        fe::COPY_DONE | fe::COPY_FAIL => {
            pending.sent_copy_end();
            Action::Forward
        }
        fe::FUNCTION_CALL => {
            let oid = match decode::function_call_oid(body) {
                Ok(oid) => oid,
                Err(e) => return Action::Refuse(Refusal::protocol(&e)),
            };
            // Only an audited message can be retracted (see `StrictWait`).
            let mark = audit.map_or(0, |_| pending.mark());
            let mut verdict = if pending.is_metered() {
                // Its result is not a row the limits could count.
                Verdict::Refuse(returned::function_call_refusal())
            } else if function_call::allowed(oid) {
                match function_call::judged_as(oid) {
                    Some(sql) => guarded.function_call(sql),
                    None => Verdict::Pass,
                }
            } else {
                warn!(parent: &guarded.span, oid, "FunctionCall refused");
                Verdict::Refuse(function_call::refusal())
            };
            if let Some(audit) = audit {
                let refused = matches!(verdict, Verdict::Refuse(_));
                let m = MessageVerdict::function_call(
                    audit_text(&function_call::audit_text(oid)),
                    refused.then_some(sqlstate::INSUFFICIENT_PRIVILEGE),
                );
                match audit.statements(&m, Protocol::FunctionCall, None, None, Instant::now()) {
                    Ok(r) => {
                        *wait = r.receipt.map(|receipt| StrictWait {
                            receipt,
                            mark,
                            query: true,
                            replacement: guarding::refused_query(),
                        });
                    }
                    Err(refusal) if !refused => verdict = Verdict::Refuse(refusal.to_bytes()),
                    Err(_) => {}
                }
            }
            match verdict {
                Verdict::Pass | Verdict::Limited { .. } => {
                    pending.sent(Entry::query(Instant::now()), settle);
                    Action::Forward
                }
                v @ (Verdict::Refuse(_) | Verdict::Hold(_)) => {
                    let reply = v.into_reply();
                    metrics.error(ErrorKind::Refused);
                    pending.sent(refused(reply, true), settle);
                    Action::fail(guarding::refused_query(), false)
                }
            }
        }
        fe::TERMINATE => Action::Terminate,
        fe::PASSWORD => Action::Refuse(Refusal::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "unexpected password message after authentication",
        )),
        _ => Action::Forward,
    }
}

/// A message whose fields do not parse. PostgreSQL answers such a message
/// with an ERROR (not FATAL) and goes on; so does the proxy, in the
/// message's place, without letting it reach the server.
fn malformed(
    pending: &Pending,
    query: bool,
    replacement: BytesMut,
    settle: super::pending::Settle<'_>,
) -> Action {
    pending.sent(refused(guarding::invalid_message_format(), query), settle);
    Action::fail(replacement, !query)
}

fn refused(reply: Bytes, query: bool) -> Entry {
    Entry::Refused {
        reply,
        query,
        at: Instant::now(),
    }
}

impl ClientPump<'_> {
    pub async fn run(&mut self) -> End {
        loop {
            // Walk every complete message (or streamed piece) buffered,
            // forwarding runs of untouched bytes in one write.
            let mut pos = 0;
            let mut run_start = 0;
            let want = loop {
                let next = match self.splitter.next(&self.rb.buf[pos..]) {
                    Ok(n) => n,
                    Err(e) => {
                        // What came before the bad message still reaches the
                        // server, as it would without the proxy.
                        let _ = self.flush(run_start, pos).await;
                        return End::ClientRefused(Refusal::protocol(&e));
                    }
                };
                let whole = matches!(next, Next::Whole { .. });
                let (tag, len) = match next {
                    Next::NeedMore { hint } => break hint,
                    Next::Whole { tag, len } | Next::StreamHead { tag, len, .. } => (tag, len),
                    Next::StreamBody { len, last } => {
                        if self.discarding {
                            if let Err(e) = self.flush(run_start, pos).await {
                                return e;
                            }
                            run_start = pos + len;
                            self.discarding = !last;
                        }
                        pos += len;
                        continue;
                    }
                };
                match pump_mode::route(self.mode, tag) {
                    Route::Judge => {}
                    Route::EndDiscard => self.mode = Mode::Relaying,
                    Route::Drop => {
                        // The server would skip it: it never goes.
                        if let Err(e) = self.flush(run_start, pos).await {
                            return e;
                        }
                        pos += len;
                        run_start = pos;
                        self.discarding = self.splitter.mid_message();
                        continue;
                    }
                }
                if tag == fe::SYNC && self.copy_window {
                    if let Err(e) = self.flush(run_start, pos).await {
                        return e;
                    }
                    run_start = pos;
                    self.mode = Mode::Holding(Hold::CopyFate);
                    let fate = self.copy_sync().await;
                    self.mode = Mode::Relaying;
                    match fate {
                        Err(e) => return e,
                        Ok(true) => {
                            // Skipped, as the server would skip it.
                            pos += len;
                            run_start = pos;
                            continue;
                        }
                        Ok(false) => {}
                    }
                }
                if self.pending.is_metered() && (tag == fe::QUERY || tag == fe::EXECUTE) {
                    // A counted statement goes out with every earlier
                    // request answered (see `returned.rs`).
                    if let Err(e) = self.flush(run_start, pos).await {
                        return e;
                    }
                    run_start = pos;
                    self.mode = Mode::Holding(Hold::Quiet);
                    let quiet = self.pending.quiet().await;
                    self.mode = Mode::Relaying;
                    if quiet.is_err() {
                        return sent_into_copy();
                    }
                }
                // A message held for approval is judged again once approved.
                let mut approved: Option<(String, Box<portcullis_approvals::Request>)> = None;
                let mut settled = false;
                let mut action = loop {
                    let action = judge(
                        self.pending,
                        self.guarded,
                        self.metrics,
                        self.audit,
                        &mut self.last_describe,
                        &mut self.copy_window,
                        &mut self.wait,
                        approved.as_ref().map(|(group, _)| group.as_str()),
                        tag,
                        &self.rb.buf[pos..pos + len],
                    );
                    let Action::Hold(held) = action else {
                        break action;
                    };
                    let released = if approved.is_some() {
                        // Approved and still held: the policies cannot have
                        // meant that; refused.
                        Released::Failed {
                            reply: held.held.refusal.clone(),
                        }
                    } else if !settled {
                        // What came before it goes now; once the server has
                        // answered it, the message is judged again.
                        if let Err(e) = self.flush(run_start, pos).await {
                            return e;
                        }
                        run_start = pos;
                        settled = true;
                        match self.settle_for_hold(&held, whole).await {
                            Ok(None) => continue,
                            Ok(Some(r)) => r,
                            Err(e) => return e,
                        }
                    } else {
                        match self.hold(&held, pos + len).await {
                            Ok(r) => r,
                            Err(e) => return e,
                        }
                    };
                    self.mode = Mode::Relaying;
                    match released {
                        Released::Approved { group, request } => {
                            if self.hold_line.end() {
                                // Cancelled as it was approved (or, sent
                                // again, while it settled): it does not run.
                                if let Some(desk) = &self.approvals {
                                    desk.not_run(&request);
                                }
                                let reply = Refusal::error(
                                    sqlstate::QUERY_CANCELED,
                                    format!(
                                        "canceling statement due to user request (request {} was approved; the statement did not run)",
                                        request.id
                                    ),
                                );
                                break self.fail_held(&held, &reply);
                            }
                            approved = Some((group, request));
                        }
                        Released::Skipped => break Action::Drop,
                        Released::Failed { reply } => break self.fail_held(&held, &reply),
                    }
                };
                if let Some(wait) = self.wait.take() {
                    // What came before is recorded already: it goes now,
                    // and this message once its record is committed.
                    if let Err(e) = self.flush(run_start, pos).await {
                        return e;
                    }
                    run_start = pos;
                    self.mode = Mode::Holding(Hold::Audit);
                    let committed = self.committed(wait).await;
                    self.mode = Mode::Relaying;
                    if let Err((bytes, query)) = committed {
                        action = Action::fail(bytes, !query);
                    }
                }
                if settled {
                    // The hold is over: cancels go to the server again.
                    self.hold_line.end();
                }
                if let (Some((_, request)), Some(desk)) = (&approved, &self.approvals) {
                    // Approved, judged again and recorded: it goes now.
                    if matches!(
                        action,
                        Action::Forward | Action::Replace(_) | Action::Counted { .. }
                    ) {
                        desk.executed(request);
                    }
                }
                let (replacement, counted) = match action {
                    Action::Forward => {
                        pos += len;
                        continue;
                    }
                    Action::Drop => {
                        if let Err(e) = self.flush(run_start, pos).await {
                            return e;
                        }
                        pos += len;
                        run_start = pos;
                        self.discarding = self.splitter.mid_message();
                        self.mode = Mode::DiscardingToSync;
                        continue;
                    }
                    Action::Hold(_) => unreachable!("a hold ends in another action"),
                    Action::Replace(bytes) => (bytes, None),
                    Action::Fail { bytes, step } => {
                        if step {
                            self.mode = Mode::DiscardingToSync;
                        }
                        (bytes, None)
                    }
                    Action::Counted { bytes, query } => (bytes, Some(query)),
                    Action::Terminate => {
                        pos += len;
                        let end = self.flush(run_start, pos).await.err();
                        self.terminated = true;
                        return end.unwrap_or(End::Terminated);
                    }
                    Action::Refuse(r) => {
                        let _ = self.flush(run_start, pos).await;
                        return End::ClientRefused(r);
                    }
                };
                if let Err(e) = self.flush(run_start, pos).await {
                    return e;
                }
                if let Err(e) = self.write(&replacement).await {
                    return e;
                }
                pos += len;
                run_start = pos;
                self.discarding = self.splitter.mid_message();
                if let Some(query) = counted {
                    self.mode = Mode::Holding(Hold::Counted);
                    let failed = match self.counted(query).await {
                        Ok(failed) => failed,
                        Err(e) => return e,
                    };
                    self.mode = if failed && query.is_none() {
                        // The proxy failed the Execute: the server skips
                        // to Sync.
                        Mode::DiscardingToSync
                    } else {
                        Mode::Relaying
                    };
                }
            };
            if let Err(e) = self.flush(run_start, pos).await {
                return e;
            }
            self.rb.buf.advance(pos);
            if self.pending.full() {
                // Backpressure: the client sends faster than the server
                // answers; read on once the server has caught up.
                self.pending.wait_for_room().await;
            }

            let n = match self.idle_timeout {
                None => self.rb.fill(&mut self.reader, want).await,
                Some(limit) => {
                    // Idle time counts from the later of the client's last
                    // bytes and the server's last ReadyForQuery, like
                    // PostgreSQL's idle_session_timeout.
                    let partial = !self.rb.buf.is_empty() || self.splitter.mid_message();
                    let waiting_since = tokio::time::Instant::now();
                    let pending = self.pending;
                    let read = self.rb.fill(&mut self.reader, want);
                    tokio::pin!(read);
                    let mut deadline = waiting_since + limit;
                    loop {
                        tokio::select! {
                            r = &mut read => break r,
                            _ = tokio::time::sleep_until(deadline) => {
                                let since = match pending.idle_since() {
                                    Some(ready) if !partial => {
                                        let ready = ready.map(tokio::time::Instant::from_std).unwrap_or(waiting_since);
                                        ready.max(waiting_since)
                                    }
                                    _ => tokio::time::Instant::now(),
                                };
                                if since.elapsed() >= limit {
                                    return End::IdleTimeout;
                                }
                                deadline = since + limit;
                            }
                        }
                    }
                }
            };
            match n {
                Ok(0) | Err(_) => return End::ClientGone,
                Ok(n) => self.metrics.client_bytes(n as u64),
            }
        }
    }

    /// A Sync after a request that may start a COPY FROM STDIN (and only
    /// copy data since): the server ignores it if it reads it in copy
    /// mode, and answers it if the copy never started or failed before
    /// reading it, which the proxy cannot foresee (a COPY can fail after
    /// CopyInResponse before reading anything: COPY FREEZE, a BEFORE
    /// STATEMENT trigger). So it goes only once the server has said:
    /// while the server is in copy mode it is not sent at all (returns
    /// true), as if read there; otherwise it goes as any Sync. A Flush
    /// goes first, so that replies the server holds for a Sync (a request
    /// that turned out not to be a COPY) come now. Reads on from the
    /// client meanwhile, to notice it going away.
    async fn copy_sync(&mut self) -> Result<bool, End> {
        let mut flush = BytesMut::new();
        encode::flush(&mut flush);
        self.send_now(&flush).await?;
        let pending = self.pending;
        self.reading_on(pending.copy_fate()).await
    }

    /// Waits for `server` (an answer the ledger reports), reading on from
    /// the client meanwhile, up to [`HELD_CLIENT_BYTES`], so that a client
    /// gone ends the wait.
    pub(super) async fn reading_on<T>(
        &mut self,
        server: impl std::future::Future<Output = T>,
    ) -> Result<T, End> {
        tokio::pin!(server);
        loop {
            let room = self.rb.buf.len() < HELD_CLIENT_BYTES;
            tokio::select! {
                found = &mut server => return Ok(found),
                r = self.rb.fill(&mut self.reader, 0), if room => match r {
                    Ok(0) | Err(_) => return Err(End::ClientGone),
                    Ok(n) => self.metrics.client_bytes(n as u64),
                },
            }
        }
    }

    /// Writes `bytes` to the server and flushes them.
    pub(super) async fn send_now(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.write(bytes).await?;
        self.writer
            .flush()
            .await
            .map_err(|e| End::UpstreamLost(format!("write to server: {e}")))
    }

    /// Waits until the counted statement just sent has ended, reading on
    /// from the client meanwhile (so that a client gone is noticed), then
    /// sends what ends it: over its limit, a Parse that fails, so that the
    /// server fails the statement too; for a Query, the Sync that ends it.
    /// Returns whether it sent a failing Parse.
    async fn counted(&mut self, query: Option<Instant>) -> Result<bool, End> {
        let pending = self.pending;
        let outcome = self.reading_on(pending.outcome()).await?;
        let failed = matches!(outcome, Outcome::Over(_));
        let mut out = BytesMut::new();
        {
            let _gate = self.guarded.gate();
            let settle = &mut |t, ran| self.guarded.settle(t, ran);
            if let Outcome::Over(error) = &outcome {
                self.metrics.error(ErrorKind::Limit);
                out = guarding::refused_step();
                pending.sent(
                    Entry::Hidden {
                        step: true,
                        on_error: Some(error.clone()),
                        charge: None,
                        audited: None,
                    },
                    settle,
                );
            }
            match (query, outcome) {
                // The server discards the Query, as PostgreSQL would have.
                (_, Outcome::Skipped) | (None, _) => {}
                (Some(at), _) => {
                    encode::sync(&mut out);
                    pending.sent_sync(at);
                }
            }
        }
        if out.is_empty() {
            return Ok(failed);
        }
        self.send_now(&out).await.map(|()| failed)
    }

    /// Waits for a held message's audit record. If it is not committed in
    /// time, the message is retracted from the ledger and the replacement
    /// to send in its place returned (unless the target fails open).
    async fn committed(&mut self, wait: StrictWait) -> Result<(), (BytesMut, bool)> {
        let Some(audit) = self.audit else {
            return Ok(());
        };
        let timeout = audit.commit_timeout();
        // The receipt makes the record durable on this thread with one
        // journal write of everything queued so far. Letting the other
        // sessions this thread serves run first puts their records into
        // that same write (group commit) instead of one write each.
        tokio::task::yield_now().await;
        let error = match tokio::time::timeout(timeout, wait.receipt).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => AuditError::Timeout(timeout),
        };
        if audit.fails_open() {
            warn!(parent: &self.guarded.span, error = %error, "audit record not confirmed: the target fails open");
            return Ok(());
        }
        let reply = crate::audit::unavailable(&error).to_bytes();
        let guarded = self.guarded;
        self.pending
            .retract(wait.mark, reply, wait.query, &mut |t, ran| {
                guarded.settle(t, ran)
            });
        self.metrics.error(ErrorKind::Refused);
        Err((wait.replacement, wait.query))
    }

    async fn flush(&mut self, from: usize, to: usize) -> Result<(), End> {
        if from >= to {
            return Ok(());
        }
        write_all_tracked(&mut self.writer, &self.rb.buf[from..to], &mut self.in_write)
            .await
            .map_err(|e| End::UpstreamLost(format!("write to server: {e}")))?;
        self.writer
            .flush()
            .await
            .map_err(|e| End::UpstreamLost(format!("write to server: {e}")))
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        write_all_tracked(&mut self.writer, bytes, &mut self.in_write)
            .await
            .map_err(|e| End::UpstreamLost(format!("write to server: {e}")))
    }

    /// Ends the upstream session cleanly when the stream is at a message
    /// boundary; otherwise just closes it.
    pub async fn terminate_upstream(&mut self) {
        if !self.terminated && !self.in_write && !self.splitter.mid_message() {
            let mut b = BytesMut::new();
            encode::terminate(&mut b);
            let _ = tokio::time::timeout(Duration::from_secs(1), self.writer.write_all(&b)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), shutdown(&mut self.writer)).await;
    }
}

async fn shutdown<W: AsyncWrite + Unpin>(w: &mut W) -> std::io::Result<()> {
    w.flush().await?;
    w.shutdown().await
}

/// How much a client may send while a counted statement runs or a
/// statement is held, before the proxy stops reading (it reads on only to
/// notice the client going away).
pub(crate) const HELD_CLIENT_BYTES: usize = 1 << 20;

/// The end of a session that sent a request while the server reads COPY
/// data.
pub(crate) fn sent_into_copy() -> End {
    End::ClientRefused(
        Refusal::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "unexpected message during COPY from stdin: a Query or Execute arrived while the server was reading COPY data",
        )
        .hint("Finish the COPY with CopyDone or CopyFail before sending other messages."),
    )
}

/// A Query whose one statement can return rows, in a session with limits
/// on what it is returned: sent as extended messages under a reserved
/// name, so that its implicit transaction stays open until the proxy's
/// Sync (see `returned.rs`). `limited`: the row limit it also runs under
/// (its limit, error and whether it only reads, see `row_limit.rs`).
fn counted_query(
    pending: &Pending,
    guarded: &Guarded,
    sql: &[u8],
    entry: Entry,
    limited: Option<(u64, Bytes, bool)>,
    settle: super::pending::Settle<'_>,
) -> Action {
    let Entry::Query {
        at,
        mut tickets,
        analysis,
        audited,
        ..
    } = entry
    else {
        unreachable!("a Query's entry")
    };
    let audited = audited.first().copied();
    let ticket = tickets
        .iter()
        .position(|(i, _)| *i == 0)
        .map(|k| tickets.swap_remove(k).1);
    let hidden = |audited| Entry::Hidden {
        step: true,
        on_error: None,
        charge: None,
        audited,
    };
    let name = returned::QUERY_NAME;
    let mut out = BytesMut::new();
    // What the last such Query left (its statement; its portal, inside a
    // transaction) goes first: the names must be free.
    encode::close(&mut out, b'S', name);
    encode::close(&mut out, b'P', name);
    encode::parse_bytes(&mut out, name, sql);
    encode::bind(&mut out, name, name, &[]);
    let mut lead = 4;
    for audited in [None, None, audited, audited] {
        pending.sent(hidden(audited), settle);
    }
    let mut after = None;
    if let Some((limit, over, reads_only)) = limited {
        let (limit, over, charge) = guarded.draw(limit, over, reads_only);
        let (bytes, entries) = row_limit::before_execute();
        out.extend_from_slice(&bytes);
        lead += entries.len();
        for e in entries {
            pending.sent(e, settle);
        }
        after = Some(row_limit::after_execute(limit, over, charge));
    }
    encode::describe_portal(&mut out, name);
    lead += 1;
    pending.sent(
        Entry::Describe {
            rows: Some(Rows::Statement(analysis, 0)),
            reply: Shown::RowsOnly,
        },
        settle,
    );
    let cap = pending.sent_counted(ticket, audited, (0, lead), settle);
    encode::execute_rows(&mut out, name, cap.unwrap_or(0));
    if let Some((bytes, entries)) = after {
        out.extend_from_slice(&bytes);
        for e in entries {
            pending.sent(e, settle);
        }
    }
    encode::flush(&mut out);
    match cap {
        Some(_) => Action::Counted {
            bytes: out,
            query: Some(at),
        },
        // The server discards it all (an earlier message failed), as it
        // would have discarded the Query.
        None => Action::Replace(out),
    }
}

/// Counts a message that chooses rows by a column masked for its caller.
fn count_inferred(guarded: &Guarded, metrics: &Metrics) {
    if guarded.take_inferred() {
        metrics.inference();
    }
}
