//! Holding a message for approval (see `pump_mode.rs` for the states).
//!
//! The pump stops at the held message: what came before it has gone to
//! the server; nothing after it is judged. It first waits for every
//! earlier request to be answered, so that the request says the session
//! state the server is in (inside a transaction or not) and so that a
//! message the server would skip anyway (an earlier one failed) is not
//! held at all. Then it asks the approval desk, tells the client with a
//! notice, and waits for a decision, the timeout, a cancel or the client
//! going, reading on from the client up to [`HELD_CLIENT_BYTES`].
//!
//! Approved, the message is judged again (approved) and goes on as sent:
//! the bytes the client sent are still in the read buffer. Otherwise the
//! client gets an error in its place, sent the way a refusal is (a message
//! that fails on the server, whose error the ledger swaps for the proxy's).

use bytes::BytesMut;
use portcullis_approvals::{Digest, NewRequest, Request, State, Watch};
use portcullis_mask::Detectors;
use portcullis_wire::tags::txn;
use portcullis_wire::{encode, sqlstate, Refusal};
use tracing::{info, warn};

use portcullis_audit::record::Protocol;

use super::bind_values::BindValues;
use super::client_pump::{Action, ClientPump, HELD_CLIENT_BYTES};
use super::guarding::{self, Guarded, Held};
use super::pump_mode::{self, Failure, Hold, HoldEvent, HoldStep, Mode};
use super::End;
use crate::audit::records::{self, MessageVerdict};

/// A message held for approval, as the request shows it.
pub(crate) struct HeldMessage {
    pub held: Box<Held>,
    /// A Query (otherwise a Bind).
    pub query: bool,
    /// The statement text as sent.
    pub statement: String,
    pub digest: Digest,
    /// The Bind's parameters, masked for showing.
    pub parameters: Vec<String>,
    /// The Bind's format codes and values as sent (`None`: a Query), for
    /// the dry run.
    pub values: Option<Vec<u8>>,
    /// What its audit records say (for the record of a hold that fails).
    pub audit: MessageVerdict,
}

impl HeldMessage {
    /// `parameters`: the Bind's parameter section as sent (formats,
    /// values, result formats), empty for a Query.
    pub fn new(
        guarded: &Guarded,
        held: Box<Held>,
        query: bool,
        parameters: &[u8],
        audit: MessageVerdict,
    ) -> HeldMessage {
        let text = held.text.as_deref().unwrap_or_default();
        HeldMessage {
            query,
            statement: text.to_owned(),
            digest: Digest::of(
                guarded.subject(),
                &guarded.target.config.name,
                text.as_bytes(),
                parameters,
            ),
            parameters: shown_parameters(parameters),
            values: (!query).then(|| values_section(parameters).to_vec()),
            held,
            audit,
        }
    }
}

/// How a hold ended, for the pump.
pub(crate) enum Released {
    /// Approved by `group`: judge the message again, approved.
    Approved {
        group: String,
        request: Box<Request>,
    },
    /// It does not run: the client gets `reply` in its place.
    Failed { reply: Refusal },
    /// The server skips it anyway (an earlier message failed).
    Skipped,
}

impl ClientPump<'_> {
    /// Before holding `m` (`whole` when all of it is in the read buffer):
    /// waits until every earlier request is answered, so that the session
    /// model is the server's. `None`: judge the message again now and hold
    /// what that says (see [`ClientPump::hold`]); otherwise how it ends
    /// without a request. From here until the pump ends the hold
    /// (`HoldLine::end`), a cancel is this statement's too.
    pub(super) async fn settle_for_hold(
        &mut self,
        m: &HeldMessage,
        whole: bool,
    ) -> Result<Option<Released>, End> {
        if self.approvals.is_none() {
            // No desk: refused, saying approval would be needed.
            return Ok(Some(Released::Failed {
                reply: m.held.refusal.clone(),
            }));
        }
        // A cancel from now on also reaches the server, where earlier
        // requests may still run.
        self.hold_line.arm();
        if !whole {
            return Ok(Some(Released::Failed {
                reply: Refusal::error(
                    sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    "statement too large to hold for approval",
                )
                .hint("Send a shorter statement, or ask an administrator to run it."),
            }));
        }
        // Every earlier request answered: the state the server is in.
        self.mode = Mode::Holding(Hold::Quiet);
        let mut flush = BytesMut::new();
        encode::flush(&mut flush);
        self.send_now(&flush).await?;
        let pending = self.pending;
        match self.reading_on(pending.settled()).await? {
            Err(()) => return Err(super::client_pump::sent_into_copy()),
            Ok(true) => return Ok(Some(Released::Skipped)),
            Ok(false) => {}
        }
        if pending.status() == txn::FAILED {
            // The server would refuse it: nobody need approve it first.
            return Ok(Some(Released::Failed {
                reply: Refusal::error(
                    sqlstate::IN_FAILED_SQL_TRANSACTION,
                    "current transaction is aborted, commands ignored until end of transaction block",
                ),
            }));
        }
        Ok(None)
    }

    /// Holds `m` (judged again once the session settled, see
    /// [`ClientPump::settle_for_hold`]; the read buffer holds it up to
    /// `end`) until it is decided.
    pub(super) async fn hold(&mut self, m: &HeldMessage, end: usize) -> Result<Released, End> {
        let Some(desk) = self.approvals.clone() else {
            return Ok(Released::Failed {
                reply: m.held.refusal.clone(),
            });
        };
        if m.held.text.is_none() {
            return Ok(Released::Failed {
                reply: Refusal::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!("{}; Portcullis cannot show approvers this prepared statement's text: it was prepared before the rule applied", m.held.refusal.message),
                )
                .hint("Prepare the statement again (a new Parse), then bind it."),
            });
        }
        let hold_line = self.hold_line;
        let pending = self.pending;
        let settings = desk.settings();
        let waits = !settings.config.rerun_kinds.contains(&self.kind);
        // Approved already: this identity sent this very statement before,
        // from a session that did not wait. It runs, once.
        if !waits {
            let approvers = &m.held.approval.approvers;
            let found = desk
                .take_rerun(&m.digest, &self.requester, approvers, analysis_lines(m))
                .await;
            if let Some(request) = found {
                info!(parent: &self.guarded.span, request = %request.id, "an approved statement sent again runs");
                return Ok(Released::Approved {
                    group: request.asked.approvers.clone(),
                    request: Box::new(request),
                });
            }
        }
        let in_transaction = pending.in_transaction();
        if in_transaction && !settings.config.in_transaction {
            return Ok(Released::Failed {
                reply: Refusal::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    m.held.refusal.message.clone(),
                )
                .hint("Statements that need approval are not held inside a transaction here: send it outside a transaction block."),
            });
        }
        let dry_run_timeout = settings.config.dry_run_timeout.0;
        let dry_run = if dry_run_timeout.is_zero() {
            None
        } else {
            self.dry_run(m, in_transaction, dry_run_timeout).await
        };
        let approval = &m.held.approval;
        let rule = desk.rule(&approval.approvers);
        let timeout = settings.config.timeout.0;
        let asked = NewRequest {
            requester: self.requester.clone(),
            target: self.guarded.target.config.name.clone(),
            environment: self.guarded.target.config.environment.clone(),
            session: self.session_id.clone(),
            statement: m.statement.clone(),
            parameters: m.parameters.clone(),
            digest: m.digest.clone(),
            policy: approval.policy.clone(),
            approvers: approval.approvers.clone(),
            reason: approval.message.clone(),
            analysis: analysis_lines(m),
            dry_run,
            in_transaction,
            required: rule.required,
            window: rule.window,
            expires_at: portcullis_approvals::now_millis()
                .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)),
            rerun: !waits,
        };
        if hold_line.begin() {
            // Cancelled before anything was asked.
            return Ok(Released::Failed {
                reply: Refusal::error(
                    sqlstate::QUERY_CANCELED,
                    "canceling statement due to user request",
                ),
            });
        }
        let (request, mut watch) = match desk.ask(asked).await {
            Ok(asked) => asked,
            Err(e) => {
                warn!(parent: &self.guarded.span, error = %e, "could not store an approval request");
                return Ok(Released::Failed {
                    reply: Refusal::error(
                        sqlstate::CANNOT_CONNECT_NOW,
                        "statement needs approval, and the approval store is unavailable",
                    )
                    .hint("Try again later, or ask an administrator."),
                });
            }
        };
        if !waits {
            // A session that does not wait: refused now, with the request
            // to have approved and the statement to send again.
            return Ok(Released::Failed {
                reply: Refusal::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!(
                        "statement needs approval by group \"{}\": request {} asked; send the same statement again once it is approved",
                        approval.approvers, request.id
                    ),
                )
                .detail(format!("{} (policy \"{}\")", approval.message, approval.policy))
                .hint(format!(
                    "Once approved it runs once, sent again by the same identity with the same text and parameters within {} of the approval. {}",
                    minutes(settings.config.rerun_window.0),
                    desk.where_to_decide(&request.id)
                )),
            });
        }
        let mut notice = BytesMut::new();
        encode::notice(
            &mut notice,
            &format!(
                "held for approval: request {}; {}",
                request.id,
                desk.where_to_decide(&request.id)
            ),
            Some(&format!(
                "It needs approval by {} of group \"{}\": {}.{} It waits up to {}.",
                match rule.required {
                    1 => "a member".to_owned(),
                    n => format!("{n} members"),
                },
                approval.approvers,
                approval.message,
                if in_transaction {
                    " The open transaction keeps its locks meanwhile."
                } else {
                    ""
                },
                minutes(timeout),
            )),
            Some("Cancel the statement (Ctrl-C in psql) to withdraw the request."),
        );
        pending.tell_client(notice.freeze());

        self.mode = Mode::Holding(Hold::Approval);
        // Should the session end while it waits (shutdown, the server gone,
        // a revoked key), the request is withdrawn.
        let mut withdraw = Withdraw(Some((desk.clone(), request.id.clone())));
        let step = self
            .wait_for_decision(&desk, &request.id, &mut watch, end, timeout)
            .await;
        withdraw.0 = None;
        match step {
            // The line stays in holding until the pump judges it again:
            // a cancel until then still stops it (see client_pump.rs).
            HoldStep::Release => Ok(Released::Approved {
                group: approval.approvers.clone(),
                request: Box::new(request),
            }),
            HoldStep::Fail(why) => self.failed(&desk, &request, why).await,
            HoldStep::End(ending) => {
                let _ = desk.close(&request.id, State::Withdrawn).await;
                info!(parent: &self.guarded.span, request = %request.id, "approval request withdrawn: the client went away");
                Err(match ending {
                    pump_mode::Ending::Terminated => End::Terminated,
                    pump_mode::Ending::ClientGone => End::ClientGone,
                })
            }
            HoldStep::Wait { .. } => unreachable!("the wait ends on another step"),
        }
    }

    /// Waits for the step that ends the hold of request `id`'s message,
    /// which ends at `end` in the read buffer. What was decided is read
    /// from the store on each wake-up (a wake-up is only a hint), and, with
    /// a store that does not announce changes made by other processes,
    /// every half second too.
    async fn wait_for_decision(
        &mut self,
        desk: &crate::approval_desk::Desk,
        id: &portcullis_approvals::RequestId,
        watch: &mut Watch,
        end: usize,
        timeout: std::time::Duration,
    ) -> HoldStep {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut read = self.rb.buf.len().saturating_sub(end) < HELD_CLIENT_BYTES;
        let mut polls = !desk.announces_changes();
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(500));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hold_line = self.hold_line;
            let event = tokio::select! {
                _ = watch.changed() => match desk.get(id).await {
                    Ok(Some(r)) => HoldEvent::Decided(r.state),
                    _ => {
                        // The store did not answer: look again soon, a
                        // wake-up may not come twice.
                        polls = true;
                        continue;
                    }
                },
                _ = poll.tick(), if polls => match desk.get(id).await {
                    Ok(Some(r)) => HoldEvent::Decided(r.state),
                    _ => continue,
                },
                _ = tokio::time::sleep_until(deadline) => HoldEvent::TimedOut,
                _ = hold_line.cancelled() => HoldEvent::Cancelled,
                r = self.rb.fill(&mut self.reader, 0), if read => match r {
                    Ok(0) | Err(_) => HoldEvent::ClientGone,
                    Ok(n) => {
                        self.metrics.client_bytes(n as u64);
                        let ahead = self.rb.buf.get(end..).unwrap_or_default();
                        HoldEvent::Client {
                            read: ahead.len(),
                            terminate: pump_mode::terminate_ahead(ahead),
                        }
                    }
                },
            };
            match pump_mode::hold_step(event, HELD_CLIENT_BYTES, read) {
                HoldStep::Wait { read: r } => read = r,
                step => return step,
            }
        }
    }

    /// The hold failed (`why`): closes the request if it is still pending
    /// and says what the client gets.
    async fn failed(
        &mut self,
        desk: &crate::approval_desk::Desk,
        request: &Request,
        why: Failure,
    ) -> Result<Released, End> {
        let id = &request.id;
        let closing = match why {
            Failure::Expired => Some(State::Expired),
            Failure::Cancelled => Some(State::Withdrawn),
            Failure::Denied => None,
        };
        let now = match closing {
            Some(state) => desk.close(id, state).await.ok(),
            None => desk.get(id).await.ok().flatten(),
        };
        let now = now.unwrap_or_else(|| request.clone());
        let reply = match (why, now.state) {
            // Approved just as it expired: it runs.
            (Failure::Expired, State::Approved) => {
                return Ok(Released::Approved {
                    group: request.asked.approvers.clone(),
                    request: Box::new(now),
                })
            }
            (_, State::Denied) => {
                let (who, reason) = now
                    .denial()
                    .map(|d| {
                        (
                            d.approver.subject.clone(),
                            d.reason.clone().unwrap_or_default(),
                        )
                    })
                    .unwrap_or_default();
                info!(parent: &self.guarded.span, request = %id, approver = %who, "statement denied by an approver");
                Refusal::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!("statement denied by {who} (request {id}): {reason}"),
                )
                .hint("The statement did not run. Talk to the approver, or change it and send it again.")
            }
            (Failure::Expired, _) => {
                info!(parent: &self.guarded.span, request = %id, "approval request expired");
                Refusal::error(
                    sqlstate::QUERY_CANCELED,
                    format!(
                        "canceling statement: request {id} was not approved within {}",
                        minutes(desk.settings().config.timeout.0)
                    ),
                )
                .hint(format!(
                    "The statement did not run. Ask a member of group \"{}\" to look at it, then send it again.",
                    request.asked.approvers
                ))
            }
            _ => {
                info!(parent: &self.guarded.span, request = %id, "approval request withdrawn: the statement was cancelled");
                Refusal::error(
                    sqlstate::QUERY_CANCELED,
                    format!("canceling statement due to user request (request {id} withdrawn)"),
                )
            }
        };
        Ok(Released::Failed { reply })
    }
}

impl ClientPump<'_> {
    /// The dry run of held data change `m`, for approvers (see
    /// `crate::dry_run`).
    async fn dry_run(
        &self,
        m: &HeldMessage,
        in_transaction: bool,
        timeout: std::time::Duration,
    ) -> Option<portcullis_approvals::DryRun> {
        let target = &self.guarded.target;
        let login = target.login_of(self.profile.as_deref())?;
        let path = self.guarded.known_search_path();
        let settings = self.guarded.reading_settings();
        let ask = crate::dry_run::DryRunAsk {
            target,
            login,
            statement: &m.statement,
            param_types: &m.held.param_types,
            parameters: m.values.as_deref(),
            search_path: path.as_deref(),
            in_transaction,
            timeout,
            settings: &settings,
        };
        let started = std::time::Instant::now();
        let found = crate::dry_run::dry_run(&ask).await?;
        info!(
            parent: &self.guarded.span,
            method = ?found.method,
            rows = found.rows,
            ms = started.elapsed().as_millis() as u64,
            "dry run for approvers"
        );
        Some(found)
    }
}

/// Withdraws a pending request whose hold is dropped before it ended.
struct Withdraw(
    Option<(
        std::sync::Arc<crate::approval_desk::Desk>,
        portcullis_approvals::RequestId,
    )>,
);

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some((desk, id)) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = desk.close(&id, State::Withdrawn).await;
                });
            }
        }
    }
}

impl ClientPump<'_> {
    /// A held message that does not run: its audit record (refused) and
    /// ledger entry, and what goes upstream in its place (a message that
    /// fails, whose error the ledger swaps for `reply`).
    pub(super) fn fail_held(&self, m: &HeldMessage, reply: &Refusal) -> Action {
        // Judged and entered in the ledger as one step (see `Guarded::gate`).
        let _gate = self.guarded.gate();
        let mut verdict = m.audit.clone();
        verdict.refusal = Some(reply.sqlstate);
        verdict.enforced = true;
        if let Some(audit) = self.audit {
            let protocol = if m.query {
                Protocol::Simple
            } else {
                Protocol::Extended
            };
            // Refused either way; a record that cannot be written changes
            // nothing.
            let _ = audit.statements(&verdict, protocol, None, None, std::time::Instant::now());
        }
        self.metrics.error(crate::metrics::ErrorKind::Refused);
        let guarded = self.guarded;
        self.pending.sent(
            super::pending::Entry::Refused {
                reply: reply.to_bytes(),
                query: m.query,
                at: std::time::Instant::now(),
            },
            &mut |t, ran| guarded.settle(t, ran),
        );
        let bytes = if m.query {
            guarding::refused_query()
        } else {
            guarding::refused_step()
        };
        Action::Fail {
            bytes,
            step: !m.query,
        }
    }
}

/// One line per statement: its kind, and what it writes and reads; then
/// the locks it takes.
fn analysis_lines(m: &HeldMessage) -> Vec<String> {
    let mut lines: Vec<String> = m
        .audit
        .statements
        .iter()
        .map(|s| {
            let (reads, writes) = records::touched(&s.facts);
            let names = |t: &[portcullis_audit::record::Touched]| {
                t.iter()
                    .map(|t| t.object.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut line = s.class.to_string();
            if !writes.is_empty() {
                line.push_str(&format!("; changes {}", names(&writes)));
            }
            if !reads.is_empty() {
                line.push_str(&format!("; reads {}", names(&reads)));
            }
            line
        })
        .collect();
    lines.extend(m.held.locks.iter().cloned());
    lines
}

/// A Bind's parameters as approvers see them, from its parameter section
/// (format codes, then values): text with anything sensitive masked (the
/// detectors masking uses), binary values as hex, so that what is shown is
/// what the server reads. A section that does not parse shows nothing
/// (the server refuses such a Bind).
fn shown_parameters(section: &[u8]) -> Vec<String> {
    BindValues::read(section)
        .map(|b| {
            b.values
                .iter()
                .zip(&b.formats)
                .map(|(v, f)| shown(*v, *f))
                .collect()
        })
        .unwrap_or_default()
}

/// A Bind's parameter section without its result formats: the format
/// codes and the values, as a Bind of the dry run's own sends them. All
/// of it when it does not parse (the server then refuses both).
fn values_section(section: &[u8]) -> &[u8] {
    &section[..BindValues::read(section).map_or(section.len(), |b| b.end)]
}

/// One parameter as approvers see it.
fn shown(value: Option<&[u8]>, format: i16) -> String {
    static DETECTORS: std::sync::OnceLock<Detectors> = std::sync::OnceLock::new();
    let Some(v) = value else {
        return "NULL".into();
    };
    let text = match std::str::from_utf8(v) {
        Ok(t) if format == 0 => t,
        _ => {
            let hex: String = v.iter().take(64).map(|b| format!("{b:02x}")).collect();
            let more = if v.len() > 64 { "…" } else { "" };
            return format!("<binary, {} bytes: {hex}{more}>", v.len());
        }
    };
    let hits = DETECTORS.get_or_init(Detectors::new).find(v, None);
    if let Some(h) = hits.first() {
        return format!("<masked: {}>", h.class);
    }
    if text.chars().count() > 200 {
        let cut: String = text.chars().take(200).collect();
        return format!("{cut}… ({} bytes)", v.len());
    }
    text.to_owned()
}

/// A duration as the notice says it.
fn minutes(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 60 == 0 && s >= 60 => {
            format!("{} minute{}", s / 60, if s == 60 { "" } else { "s" })
        }
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_shown_as_the_server_reads_them() {
        assert_eq!(shown(None, 0), "NULL");
        assert_eq!(shown(Some(b"42"), 0), "42");
        // Binary: never as text, whatever it looks like.
        assert_eq!(shown(Some(b"1234"), 1), "<binary, 4 bytes: 31323334>");
        assert_eq!(shown(Some(&[0xff, 0x00]), 0), "<binary, 2 bytes: ff00>");
        let masked = shown(Some(b"dana@example.com"), 0);
        assert!(masked.starts_with("<masked: "), "{masked}");
        assert!(!masked.contains("dana"));
        assert!(shown(Some("x".repeat(500).as_bytes()), 0).ends_with("(500 bytes)"));
        // A whole section: one format code for all, then one each.
        let section = |formats: &[i16], values: &[Option<&[u8]>]| {
            let mut b = Vec::new();
            b.extend_from_slice(&(formats.len() as i16).to_be_bytes());
            for f in formats {
                b.extend_from_slice(&f.to_be_bytes());
            }
            b.extend_from_slice(&(values.len() as i16).to_be_bytes());
            for v in values {
                match v {
                    Some(v) => {
                        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        b.extend_from_slice(v);
                    }
                    None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
            b.extend_from_slice(&0i16.to_be_bytes());
            b
        };
        assert_eq!(
            shown_parameters(&section(&[1], &[Some(b"1234"), None])),
            ["<binary, 4 bytes: 31323334>", "NULL"]
        );
        assert_eq!(
            shown_parameters(&section(&[0, 1], &[Some(b"7"), Some(&[0, 0, 0, 7])])),
            ["7", "<binary, 4 bytes: 00000007>"]
        );
        assert_eq!(shown_parameters(&section(&[], &[Some(b"7")])), ["7"]);
        assert!(
            shown_parameters(&[0, 0, 0, 1, 0, 0, 0, 9]).is_empty(),
            "cut short"
        );
        assert!(shown_parameters(&[]).is_empty());
    }

    #[test]
    fn the_dry_run_binds_the_values_without_result_formats() {
        // One format (binary), two values (4 bytes, NULL), one result format.
        let mut b = vec![
            0, 1, 0, 1, 0, 2, 0, 0, 0, 4, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff,
        ];
        let values = b.len();
        b.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(values_section(&b), &b[..values]);
        assert_eq!(values_section(&[0, 0, 0, 0, 0, 0]), &[0, 0, 0, 0]);
        // Cut short: all of it.
        assert_eq!(values_section(&[0, 0, 0, 1, 0, 0]), &[0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn waits_are_said_in_minutes() {
        assert_eq!(minutes(std::time::Duration::from_secs(600)), "10 minutes");
        assert_eq!(minutes(std::time::Duration::from_secs(60)), "1 minute");
        assert_eq!(minutes(std::time::Duration::from_secs(3)), "3 seconds");
    }
}
