//! Statement judging inside a session: the guard's verdict on each Query,
//! Parse and Bind, and what replaces a refused message upstream.
//!
//! A refused message never reaches the server. In its place the proxy
//! sends a message that fails with a syntax error ([`REFUSED_SQL`]), and
//! swaps the server's ErrorResponse for its own (see `pending.rs`). The
//! server therefore answers in exactly the place the refused message's
//! answer belonged, and does what PostgreSQL does after a failed statement:
//! aborts an open transaction (so a later COMMIT cannot commit earlier
//! work), and in the extended protocol discards everything up to Sync.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use portcullis_analysis::audit_text::audit_text;
use portcullis_analysis::{Analysis, StatementFacts};
use portcullis_guard::session::{Overflow, Refused};
use portcullis_guard::{
    encoding_refusal, CopyColumn, Exposure, Judgement, NameKey, OutputColumn, PreparedText,
    SessionState, Ticket, Who,
};
use portcullis_identity::{Identity, Kind};
use portcullis_policy::{Principal, PrincipalKind};
use portcullis_wire::{encode, sqlstate, Refusal};
use tracing::{debug, info, warn};

use crate::audit::records::MessageVerdict;
use crate::masking::TargetMasking;
use crate::row_budgets::{ChargeSlot, Draw, SessionBudgets};
use crate::runtime::TargetRuntime;

/// What a refused statement is replaced with upstream: a syntax error
/// (raised by the raw parser, so even in an aborted transaction), and the
/// server's log shows the statement as refused.
pub const REFUSED_SQL: &str = "PORTCULLIS REFUSED THIS STATEMENT";

/// The statement name used when a refused Bind is replaced by a failing
/// Parse: a failing Parse of a named statement has no side effects.
pub const REFUSED_NAME: &[u8] = b"portcullis.refused";

/// The guard's view of one session, shared by both pumps.
pub(crate) struct Guarded {
    pub target: Arc<TargetRuntime>,
    /// The connection's span: the parent of the session's events (the
    /// relay is not run inside it, see `server::serve_connection`).
    pub span: tracing::Span,
    who: Who,
    state: Mutex<SessionState>,
    /// A statement that changes the schema was let through: refresh the
    /// catalog once the server is idle.
    schema_dirty: AtomicBool,
    /// Held by the client pump from judging a message until its ledger
    /// entry is in place, and by the server pump while it reads "every
    /// request answered" at a ReadyForQuery: otherwise a change judged but
    /// not yet in the ledger could look answered (see [`Guarded::ready`]).
    gate: Mutex<()>,
    /// The last message judged chooses rows by a column masked for this
    /// session (see [`Guarded::take_inferred`]).
    inferred: AtomicBool,
    /// The session is audited: judging also produces statement texts.
    audited: bool,
    /// The application_name the server reported at login: the one
    /// Portcullis set to name who is connected.
    application_name: Option<String>,
    /// The identity's rows-changed budgets (`row_budgets.rs`).
    budgets: SessionBudgets,
    /// What the session is returned is limited (`returned.rs`).
    metered: bool,
    /// The settings that change how values are read, as the server last
    /// reported them (for a dry run on another connection).
    reading: Mutex<Vec<(String, String)>>,
}

/// The reported settings a dry run copies (see [`Guarded::reading_settings`]).
const READING_SETTINGS: [&str; 4] = ["client_encoding", "DateStyle", "IntervalStyle", "TimeZone"];

/// A judged message: what to do with it, what it changes in the session
/// model, and what its audit records say.
pub(crate) struct Judged {
    pub verdict: Verdict,
    /// For a Query: the changes its statements make, by statement index.
    pub tickets: Vec<(usize, Ticket)>,
    /// For a Parse or Bind: the change it makes.
    pub ticket: Option<Ticket>,
    pub analysis: Option<Arc<Analysis>>,
    pub audit: MessageVerdict,
}

impl Judged {
    fn refused(verdict: Verdict, sqlstate: &'static str) -> Judged {
        Judged {
            verdict,
            tickets: Vec::new(),
            ticket: None,
            analysis: None,
            audit: MessageVerdict::refused_unjudged(sqlstate),
        }
    }
}

/// What to do with a judged message.
pub(crate) enum Verdict {
    Pass,
    /// Pass, counting the rows it changes against the target's limit
    /// (see `row_limit.rs`); `over` is what the client gets if it goes over.
    Limited {
        limit: u64,
        over: Bytes,
        /// The statement only reads, as far as its text shows.
        reads_only: bool,
    },
    /// Refused: the client gets this ErrorResponse in the message's place.
    Refuse(Bytes),
    /// Held until a member of the policy's group approves it (see
    /// `holding.rs`).
    Hold(Box<Held>),
}

impl Verdict {
    /// The client's reply where the message does not run: a refusal's,
    /// or for a hold the refusal naming the group (where no hold is
    /// possible).
    pub fn into_reply(self) -> Bytes {
        match self {
            Verdict::Refuse(reply) => reply,
            Verdict::Hold(held) => held.refusal.to_bytes(),
            Verdict::Pass | Verdict::Limited { .. } => Bytes::new(),
        }
    }
}

/// Why a message is held, and what the client is told if it cannot be.
pub(crate) struct Held {
    pub approval: portcullis_policy::Approval,
    /// The refusal naming the group, for where no hold is possible.
    pub refusal: Refusal,
    /// The locks its statements take, described for approvers.
    pub locks: Vec<String>,
    /// The statement text approvers are shown, as the server reads it;
    /// `None` while the proxy cannot tell it (a prepared statement's name
    /// that may still stand for several texts: see `holding.rs`).
    pub text: Option<Arc<str>>,
    /// The parameter types its Parse declared (a Bind's; 0: inferred).
    pub param_types: Box<[u32]>,
}

/// What an Execute runs (see [`Guarded::execute`]).
#[derive(Default)]
pub(crate) struct Executed {
    /// The row limit it runs under, if any.
    pub limited: Option<CountedExecute>,
    /// Settles what it changes.
    pub ticket: Option<Ticket>,
    /// It may start a COPY FROM STDIN.
    pub copies_in: bool,
}

/// An Execute that runs under a row limit (see `row_limit.rs`).
pub(crate) struct CountedExecute {
    pub limit: u64,
    /// What the client gets if it goes over.
    pub over: Bytes,
    /// The statement only reads, as far as its text shows.
    pub reads_only: bool,
}

/// What the login left a session with, for its guard.
pub(crate) struct Start<'a> {
    pub peer: Option<SocketAddr>,
    /// The server's login: its role and startup ParameterStatus messages.
    pub upstream: &'a crate::upstream::Upstream,
    /// The search_path the server reported after login.
    pub search_path: Option<&'a str>,
    /// Limits that depend on who the session is.
    pub limits: portcullis_guard::SessionLimits,
    /// Its rows-changed budgets.
    pub budgets: SessionBudgets,
    /// Whether what it is returned is limited (`returned.rs`).
    pub metered: bool,
}

impl Guarded {
    /// The guard of a session `identity` opened on `target`, as the
    /// server's login (`upstream`: its role, its startup ParameterStatus
    /// messages) and `search_path` left it.
    pub fn new(
        target: Arc<TargetRuntime>,
        identity: &Identity,
        start: Start<'_>,
        span: tracing::Span,
        audited: bool,
    ) -> Guarded {
        let Start {
            peer,
            upstream,
            search_path,
            limits,
            budgets,
            metered,
        } = start;
        let (role, startup_messages) = (upstream.role.as_str(), &upstream.startup_messages[..]);
        let kind = match identity.kind {
            Kind::Human => PrincipalKind::Human,
            Kind::Agent => PrincipalKind::Agent,
            Kind::Service => PrincipalKind::Service,
        };
        let who = Who {
            principal: Principal {
                name: identity.subject.clone(),
                kind,
                groups: identity.groups.clone(),
                on_behalf_of: identity.on_behalf_of.clone(),
            },
            source: peer.map(|p| p.ip()),
            limits,
            approved: false,
        };
        // The role the session logged in as (the target's own, or an
        // access profile's): what CURRENT_USER and SESSION_USER name.
        let state = SessionState::new(role.to_owned(), search_path);
        let mut g = Guarded {
            target,
            span,
            who,
            state: Mutex::new(state),
            schema_dirty: AtomicBool::new(false),
            gate: Mutex::new(()),
            inferred: AtomicBool::new(false),
            audited,
            application_name: None,
            budgets,
            metered,
            reading: Mutex::new(Vec::new()),
        };
        for (name, value) in portcullis_wire::decode::parameter_statuses(startup_messages) {
            g.parameter_status(name, value);
            if name.eq_ignore_ascii_case("application_name") {
                g.application_name = Some(value.to_owned());
            }
        }
        g
    }

    /// A refusal that ends the session when a ParameterStatus says that
    /// `application_name` is no longer the one Portcullis set: only code
    /// Portcullis could not see (a function created before it, or
    /// elsewhere) can have changed it, since every statement that could is
    /// refused. The server is the evidence; the session does not go on
    /// under another name.
    pub fn identity_setting_changed(&self, name: &str, value: &str) -> Option<Refusal> {
        let expected = self.application_name.as_deref()?;
        if !name.eq_ignore_ascii_case("application_name") || value == expected {
            return None;
        }
        Some(
            Refusal::fatal(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "terminating connection because code on the server changed application_name, which Portcullis sets to name who is connected",
            )
            .hint("A function or procedure sets application_name; remove that from it."),
        )
    }

    /// Whether the message just judged chose rows by a column masked for
    /// this session (for the metric), clearing it.
    pub fn take_inferred(&self) -> bool {
        self.inferred.swap(false, Ordering::Relaxed)
    }

    /// The name of who the session is.
    pub fn subject(&self) -> &str {
        &self.who.principal.name
    }

    /// See the `gate` field.
    pub fn gate(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session's client_encoding, DateStyle, IntervalStyle and
    /// TimeZone, as the server last reported them.
    pub fn reading_settings(&self) -> Vec<(String, String)> {
        self.reading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The session's search_path, when exactly one is possible and known.
    pub fn known_search_path(&self) -> Option<Vec<String>> {
        let state = self.state();
        state
            .search_path_certain()
            .then(|| state.search_path().to_vec())
    }

    fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ParameterStatus from the server.
    pub fn parameter_status(&self, name: &str, value: &str) {
        if let Some(setting) = READING_SETTINGS
            .iter()
            .find(|s| s.eq_ignore_ascii_case(name))
        {
            let mut reading = self.reading.lock().unwrap_or_else(|e| e.into_inner());
            reading.retain(|(n, _)| n != setting);
            reading.push(((*setting).to_owned(), value.to_owned()));
        }
        if name.eq_ignore_ascii_case("client_encoding") {
            self.state().client_encoding(value);
        } else if name.eq_ignore_ascii_case("server_encoding") {
            self.state().server_encoding(value);
        } else if name.eq_ignore_ascii_case("search_path") {
            self.state().reported_search_path(value);
        }
    }

    /// A ReadyForQuery from the server; `drained` when every request sent
    /// so far has been answered (read while holding [`Guarded::gate`], so
    /// that every message judged so far is among those requests).
    pub fn ready(&self, status: u8, drained: bool) {
        let idle = status == portcullis_wire::tags::txn::IDLE;
        let mut state = self.state();
        state.ready(idle, drained);
        if idle && drained && state.unnumbered_changes() {
            // Run and committed (or rolled back): a catalog load that
            // begins from now on sees it. Until one lands, the session
            // judges as if its functions could be anything
            // (guard::catalog::CatalogView).
            let n = self.target.guard.number_schema_change();
            state.changes_numbered(n);
        }
        drop(state);
        if idle && self.schema_dirty.swap(false, Ordering::Relaxed) {
            crate::catalog::refresh(&self.target);
        }
    }

    /// An ErrorResponse from the server.
    pub fn error(&self) {
        self.state().error();
    }

    /// The server answered the message `ticket` came with.
    pub fn settle(&self, ticket: Ticket, ran: bool) {
        self.state().settle(ticket, ran);
    }

    /// Whether this session masks results.
    pub fn masks(&self) -> bool {
        self.target.masking.is_some()
    }

    /// The target's masking, when on.
    pub fn masking(&self) -> Option<&TargetMasking> {
        self.target.masking.as_deref()
    }

    /// The largest row a masked result may have.
    pub fn max_masked_row(&self) -> usize {
        self.masking().map_or(usize::MAX, |m| m.max_row_bytes)
    }

    /// What each column of a result set is for this session (see
    /// `portcullis_guard::masking`).
    pub fn exposures(
        &self,
        columns: &[OutputColumn],
        statements: &[&StatementFacts],
        out: &mut Vec<Exposure>,
    ) {
        let state = self.state();
        self.target
            .guard
            .exposures(columns, statements, &self.who, &state, out);
    }

    /// The columns a COPY TO STDOUT of `stmt` sends (see
    /// `portcullis_guard::copy_out`).
    pub fn copy_out_columns(
        &self,
        stmt: Option<&StatementFacts>,
        width: usize,
        out: &mut Vec<CopyColumn>,
    ) {
        let state = self.state();
        self.target
            .guard
            .copy_out_columns(stmt, width, &self.who, &state, out);
    }

    /// The texts portal `name` may run.
    pub fn portal_texts(&self, name: &[u8]) -> Vec<PreparedText> {
        let state = self.state();
        match state.protocol_name(name) {
            Ok(key) => state.portal_texts(&key),
            Err(_) => Vec::new(),
        }
    }

    /// Judges a simple Query: the verdict, the changes its statements
    /// make to prepared statements (for the ledger), its analysis and what
    /// its audit records say.
    /// `approved`: the group that approved it, when it is judged again
    /// after a hold (see [`Guarded::released`]).
    pub fn query(&self, sql: &[u8], approved: Option<&str>) -> Judged {
        let mut state = self.state();
        let sql = match text(&state, sql) {
            Ok(s) => s,
            Err(r) => return Judged::refused(self.refuse(&r, "query"), r.sqlstate),
        };
        let j = match self.released(approved, |who| {
            self.target.guard.judge_text(&sql, who, &state)
        }) {
            Ok(j) => j,
            Err(r) => return Judged::refused(self.refuse(&r, "query"), r.sqlstate),
        };
        let mut verdict = self.conclude(&j, "query");
        if let Verdict::Hold(held) = &mut verdict {
            if let Some(r) = unshowable(j.analysis.as_deref(), held) {
                return Judged::refused(self.refuse(&r, "query"), r.sqlstate);
            }
            held.text = Some(Arc::from(&*sql));
            held.locks = j
                .analysis
                .iter()
                .flat_map(|a| a.statements.iter())
                .flat_map(portcullis_analysis::locks::describe)
                .collect();
        }
        let audit = self.message_verdict(&j, &sql);
        let mut tickets = Vec::new();
        if let (Verdict::Pass, Some(a), true) = (&verdict, &j.analysis, self.metered) {
            if let Some(r) = uncountable_query(a, j.row_limit.is_some()) {
                return Judged {
                    audit: refused_whole(audit, &r),
                    ..Judged::refused(self.refuse(&r, "query"), r.sqlstate)
                };
            }
        }
        if let (Verdict::Pass, Some(a)) = (&verdict, &j.analysis) {
            if let Some(limit) = j.row_limit {
                if a.statements.len() != 1 {
                    // The target's own limit, or (where it has none) the
                    // identity's rows-changed limit.
                    let why = match self.target.guard.settings().row_limit {
                        Some(_) => {
                            format!("target \"{}\" has a row limit", self.target.config.name)
                        }
                        None => "the rows you change are counted against a limit".to_owned(),
                    };
                    let r = Refusal::error(
                        sqlstate::INSUFFICIENT_PRIVILEGE,
                        format!(
                            "{why}: statements that change rows must be sent one per query, not with other statements"
                        ),
                    )
                    .hint("Send each INSERT, UPDATE, DELETE or MERGE as a query of its own; Portcullis counts the rows each one changes.");
                    return Judged {
                        audit: refused_whole(audit, &r),
                        ..Judged::refused(self.refuse(&r, "query"), r.sqlstate)
                    };
                }
                // Reads that call no code known to write reserve only a
                // share of a budget (see row_budgets.rs).
                let reads_only = !j.opaque
                    && a.statements
                        .first()
                        .is_some_and(portcullis_guard::reads_only);
                verdict = self.limited(limit, reads_only);
            }
            match state.apply(a) {
                Ok(t) => tickets = t,
                Err(e) => {
                    let r = unfollowable(&e);
                    return Judged {
                        audit: refused_whole(audit, &r),
                        ..Judged::refused(self.refuse(&r, "query"), r.sqlstate)
                    };
                }
            }
            if j.opaque {
                state.opaque_ran(j.hidden_code);
            }
            if j.changes_schema {
                self.schema_dirty.store(true, Ordering::Relaxed);
            }
            if j.may_change_functions {
                state.functions_may_change();
            }
        }
        Judged {
            verdict,
            tickets,
            ticket: None,
            analysis: j.analysis.clone(),
            audit,
        }
    }

    /// What the audit records of a judged text say.
    fn message_verdict(&self, j: &Judgement, sql: &str) -> MessageVerdict {
        let texts = if !self.audited {
            None
        } else if let Some(a) = &j.analysis {
            Some(a.audit_texts(sql))
        } else {
            // It did not parse: one record for the whole text.
            Some(Arc::from([audit_text(sql)]))
        };
        MessageVerdict {
            statements: j.statements.clone(),
            texts,
            refusal: j.refusal.as_ref().map(|r| r.sqlstate),
            refused_by: j.refused_by.clone(),
            enforced: j.enforced,
        }
    }

    /// The row limit a data-changing statement whose own limit is `limit`
    /// (`over` its error) runs under as it is sent: no more than what is
    /// left of the identity's rows-changed budgets, reserved until the
    /// statement's count settles it (`row_budgets.rs`). With nothing left
    /// the limit is 0: a statement that changes no rows still runs, one
    /// that changes any is rolled back with the budget's error.
    pub fn draw(
        &self,
        limit: u64,
        over: Bytes,
        reads_only: bool,
    ) -> (u64, Bytes, Option<ChargeSlot>) {
        if self.budgets.is_empty() {
            return (limit, over, None);
        }
        match self
            .budgets
            .draw(limit, std::time::Instant::now(), reads_only)
        {
            Draw::Spent { allowance, spent } => {
                info!(parent: &self.span, limit = %allowance.name, spent, "rows-changed budget spent");
                (0, super::row_limit::budget_spent(&allowance, spent), None)
            }
            Draw::Run {
                limit: drawn,
                tightest,
                charge,
            } => {
                let over = match &tightest {
                    Some(a) => super::row_limit::budget_exceeded(drawn, a),
                    None => over,
                };
                (drawn, over, Some(ChargeSlot::new(charge)))
            }
        }
    }

    fn limited(&self, limit: u64, reads_only: bool) -> Verdict {
        Verdict::Limited {
            limit,
            over: super::row_limit::exceeded(limit, &self.target.config.name),
            reads_only,
        }
    }

    /// Judges a Parse of `sql` as statement `name`; `types` is the rest
    /// of the message (the parameter types it declares).
    pub fn parse(&self, name: &[u8], sql: &[u8], types: &[u8]) -> Judged {
        let mut state = self.state();
        let key = match protocol_name(&state, name) {
            Ok(k) => k,
            Err(r) => return Judged::refused(self.refuse(&r, "parse"), r.sqlstate),
        };
        let sql = match text(&state, sql) {
            Ok(s) => s,
            Err(r) => return Judged::refused(self.refuse(&r, "parse"), r.sqlstate),
        };
        let j = self.target.guard.judge_text(&sql, &self.who, &state);
        let mut verdict = self.conclude(&j, "parse");
        // Preparing runs nothing: a statement held for approval is held
        // when it is bound, with its parameters; its text is kept for the
        // request.
        let mut source = None;
        if let Verdict::Hold(held) = &verdict {
            if let Some(r) = unshowable(j.analysis.as_deref(), held) {
                return Judged::refused(self.refuse(&r, "parse"), r.sqlstate);
            }
            verdict = Verdict::Pass;
            source = Some(Arc::new(portcullis_guard::Source::new(
                Arc::from(&*sql),
                types,
            )));
        }
        let audit = self.message_verdict(&j, &sql);
        if let (Verdict::Pass, Some(a), true) = (&verdict, &j.analysis, self.metered) {
            if let Some(r) = unlistenable(a) {
                return Judged {
                    audit: refused_whole(audit, &r),
                    ..Judged::refused(self.refuse(&r, "parse"), r.sqlstate)
                };
            }
        }
        let mut ticket = None;
        if let (Verdict::Pass, Some(a)) = (&verdict, &j.analysis) {
            let text = PreparedText {
                analysis: a.clone(),
                index: 0,
                source,
            };
            match state.parse(key, text) {
                Ok(t) => ticket = Some(t),
                Err(e) => {
                    let r = unfollowable(&e);
                    return Judged {
                        audit: refused_whole(audit, &r),
                        ..Judged::refused(self.refuse(&r, "parse"), r.sqlstate)
                    };
                }
            }
        }
        Judged {
            verdict,
            tickets: Vec::new(),
            ticket,
            analysis: j.analysis.clone(),
            audit,
        }
    }

    /// Judges a Bind of prepared statement `statement` into `portal`.
    /// `approved` as for [`Guarded::query`].
    pub fn bind(&self, portal: &[u8], statement: &[u8], approved: Option<&str>) -> Judged {
        let mut state = self.state();
        let keys = protocol_name(&state, portal)
            .and_then(|p| protocol_name(&state, statement).map(|s| (p, s)));
        let (portal, statement) = match keys {
            Ok(k) => k,
            Err(r) => return Judged::refused(self.refuse(&r, "bind"), r.sqlstate),
        };
        let j = match self.released(approved, |who| {
            self.target.guard.judge_prepared(&statement, who, &state)
        }) {
            Ok(j) => j,
            Err(r) => return Judged::refused(self.refuse(&r, "bind"), r.sqlstate),
        };
        let mut verdict = self.conclude(&j, "bind");
        if let Verdict::Hold(held) = &mut verdict {
            // The text its Parse kept (a Parse of a statement held for
            // approval keeps it), when the name stands for that one text.
            // (`None` while the name may stand for several: judged again
            // once the server has answered, see `holding.rs`.)
            let mut texts = state.prepared(&statement);
            let only = match (texts.next(), texts.next()) {
                (Some(t), None) => Some(t),
                _ => None,
            };
            let source = only.and_then(|t| t.source.as_deref());
            held.text = source.map(|s| s.text.clone());
            held.param_types = source.map(|s| s.param_types.clone()).unwrap_or_default();
            held.locks = only
                .and_then(|t| t.statement())
                .map(portcullis_analysis::locks::describe)
                .unwrap_or_default();
        }
        // The text the Parse recorded (the first, if the server has not
        // yet said which of several it kept).
        let texts = if self.audited {
            state.prepared(&statement).next().map(|t| {
                let text = t
                    .analysis
                    .audit
                    .get()
                    .and_then(|texts| texts.get(t.index).cloned())
                    .unwrap_or_else(|| audit_text(portcullis_analysis::audit_text::WITHHELD_TEXT));
                Arc::from([text])
            })
        } else {
            None
        };
        let audit = MessageVerdict {
            statements: j.statements.clone(),
            texts,
            refusal: j.refusal.as_ref().map(|r| r.sqlstate),
            refused_by: j.refused_by.clone(),
            enforced: j.enforced,
        };
        let mut ticket = None;
        if let Verdict::Pass = verdict {
            // The row limit travels with the portal: its Execute is counted
            // (see `execute`).
            if j.changes_schema {
                self.schema_dirty.store(true, Ordering::Relaxed);
            }
            if j.may_change_functions {
                state.functions_may_change();
            }
            // What the statement sets up (a SET, say) counts when the
            // portal is executed, not now.
            match state.bind(portal, &statement, j.row_limit, j.opaque, j.hidden_code) {
                Ok(t) => ticket = Some(t),
                Err(e) => {
                    let r = unfollowable(&e);
                    return Judged {
                        audit: refused_whole(audit, &r),
                        ..Judged::refused(self.refuse(&r, "bind"), r.sqlstate)
                    };
                }
            }
        }
        Judged {
            verdict,
            tickets: Vec::new(),
            ticket,
            analysis: None,
            audit,
        }
    }

    /// Judges a FunctionCall that changes a large object, as the SQL call
    /// `sql` it stands for.
    pub fn function_call(&self, sql: &str) -> Verdict {
        let state = self.state();
        let j = self.target.guard.judge_text(sql, &self.who, &state);
        match self.conclude(&j, "function call") {
            // A fast-path call cannot wait for a human: refused.
            Verdict::Hold(held) => Verdict::Refuse(held.refusal.to_bytes()),
            v => v,
        }
    }

    /// An Execute of `portal`: the statement bound to it runs now. Returns
    /// the row limit it runs under (the error for going over, and whether
    /// it only reads), if any, and the ticket that settles what it changes.
    /// Where rows are counted, an Execute of a portal whose rows cannot be
    /// counted (see `SessionState::uncountable_portal`) is refused: `Err`
    /// holds the client's reply.
    pub fn execute(&self, portal: &[u8]) -> Result<Executed, Bytes> {
        let mut state = self.state();
        // A name the proxy cannot key was refused at Bind: no portal of
        // the proxy's can stand behind it.
        let Ok(key) = state.protocol_name(portal) else {
            return Ok(Executed::default());
        };
        if self.target.guard.counts_rows(&self.who) && state.uncountable_portal(&key) {
            info!(parent: &self.span, "refused an Execute of a portal whose rows cannot be counted");
            return Err(Refusal::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "statement refused by Portcullis: the rows this Execute changes cannot be counted: its portal was not bound through Portcullis (a cursor opened by DECLARE or inside code), or may still stand for more than one statement",
            )
            .hint("Fetch from cursors with FETCH, and send a Sync before binding the same portal to another statement.")
            .to_bytes());
        }
        let executing = state.execute(&key);
        // Only a limited Execute needs to know whether it only reads.
        let limited = executing.row_limit.map(|l| CountedExecute {
            limit: l,
            over: super::row_limit::exceeded(l, &self.target.config.name),
            reads_only: state.portal_reads_only(&key),
        });
        Ok(Executed {
            limited,
            ticket: executing.ticket,
            copies_in: executing.copies_in,
        })
    }

    /// A Close of a statement (`kind` b'S') or portal. Returns the change
    /// it makes once the server confirms it; none when the name cannot be
    /// keyed exactly (the proxy then forgets nothing).
    pub fn close(&self, kind: u8, name: &[u8]) -> Option<Ticket> {
        let mut state = self.state();
        if state.lexer_unsettled() && !name.is_ascii() {
            return None;
        }
        let key = state.protocol_name(name).ok()?;
        Some(if kind == b'S' {
            state.close_statement(key)
        } else {
            state.close_portal(key)
        })
    }

    /// Judges a message with `judge`; once approved by `approved` (a group),
    /// judges it again with `context.approved` set, as long as it is still
    /// held by that group's rule and nothing else: a policy reloaded or a
    /// catalog changed while it waited may have made it another group's
    /// to approve, and one group's approval must not lift another's rule.
    fn released(
        &self,
        approved: Option<&str>,
        judge: impl Fn(&Who) -> Judgement,
    ) -> Result<Judgement, Refusal> {
        let j = judge(&self.who);
        let Some(group) = approved else {
            return Ok(j);
        };
        match &j.approval {
            None => Ok(j),
            Some(a) if a.approvers == group => {
                let who = Who {
                    approved: true,
                    ..self.who.clone()
                };
                Ok(judge(&who))
            }
            Some(_) => Err(Refusal::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "statement refused by Portcullis: the policies changed while it was held, and it now needs another group's approval",
            )
            .hint("Send the statement again to ask for that approval.")),
        }
    }

    fn conclude(&self, j: &Judgement, message: &'static str) -> Verdict {
        if !j.inferred.is_empty() {
            self.inferred.store(true, Ordering::Relaxed);
            // Debug, not info: under the default `flag` an application
            // that looks customers up by email would log every query (and
            // formatting the event cost more than judging it). The metric
            // counts them; the audit will record them.
            debug!(
                parent: &self.span,
                user = %self.who.principal.name,
                target = %self.target.config.name,
                columns = %j.inferred.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                refused = j.refusal.is_some(),
                message,
                "masking: statement chooses rows by columns masked for its caller"
            );
        }
        let Some(r) = &j.refusal else {
            return Verdict::Pass;
        };
        let class = j.statements.last().map(|s| s.class.as_str()).unwrap_or("-");
        if !j.enforced {
            warn!(
                parent: &self.span,
                user = %self.who.principal.name,
                target = %self.target.config.name,
                policy = j.refused_by.as_deref().unwrap_or("-"),
                class,
                message,
                "observe mode: statement would be refused"
            );
            return Verdict::Pass;
        }
        if let Some(approval) = &j.approval {
            return Verdict::Hold(Box::new(Held {
                approval: approval.clone(),
                refusal: r.clone(),
                locks: Vec::new(),
                text: None,
                param_types: Box::default(),
            }));
        }
        self.refuse_by(r, j.refused_by.as_deref(), message)
    }

    /// Refuses with a refusal of Portcullis' own.
    fn refuse(&self, r: &Refusal, message: &'static str) -> Verdict {
        self.refuse_by(r, None, message)
    }

    /// Refuses with `r`; `policy` is the policy that decided it, if one did
    /// (logged, never sent).
    fn refuse_by(&self, r: &Refusal, policy: Option<&str>, message: &'static str) -> Verdict {
        info!(
            parent: &self.span,
            user = %self.who.principal.name,
            target = %self.target.config.name,
            policy = policy.unwrap_or("-"),
            sqlstate = r.sqlstate,
            message,
            "statement refused"
        );
        Verdict::Refuse(r.to_bytes())
    }
}

/// Why a Query cannot run in a session whose returned rows are counted
/// (see `returned.rs`), if it cannot: a statement that can return rows
/// must come alone, and a CALL whose changed rows are counted too cannot
/// be sent as the extended messages counting returned rows needs (a
/// procedure may COMMIT there, out of reach of the count).
fn uncountable_query(a: &Analysis, rows_changed_counted: bool) -> Option<Refusal> {
    if let Some(r) = unlistenable(a) {
        return Some(r);
    }
    if a.statements.len() > 1
        && a.statements
            .iter()
            .any(|s| super::returned::counted(s, false))
    {
        return Some(
            Refusal::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "the rows this session is returned are limited: a statement that returns rows must be sent as a query of its own, not with other statements",
            )
            .hint("Send each statement as a query of its own."),
        );
    }
    let call = a
        .statements
        .first()
        .is_some_and(|s| s.class == portcullis_analysis::StatementClass::Call);
    (call && rows_changed_counted).then(|| {
        Refusal::error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            "CALL refused by Portcullis: both the rows this session changes and the rows it is returned are counted, and a procedure could commit out of reach of the count",
        )
        .hint("Run the procedure's statements one by one, or ask an administrator about the limits.")
    })
}

/// Why a message a policy holds for approval cannot be held, if it
/// cannot: approvers must see what runs, and a PREPARE or EXECUTE shows
/// them a name, not the statement behind it (nor do prepared statements
/// defined so keep a text for a later Bind to show).
fn unshowable(a: Option<&Analysis>, held: &Held) -> Option<Refusal> {
    // Any PREPARE or EXECUTE in it, also inside another statement
    // (`CREATE TABLE ... AS EXECUTE p`, `EXPLAIN ANALYZE EXECUTE p`).
    let prepared = a?.statements.iter().any(|s| {
        s.actions.iter().any(|a| {
            matches!(
                a.kind,
                portcullis_analysis::ActionKind::Prepare { .. }
                    | portcullis_analysis::ActionKind::Execute { .. }
            )
        })
    });
    prepared.then(|| {
        Refusal::error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "{}; Portcullis holds for approval only statements whose text it can show approvers, not a PREPARE or EXECUTE of one",
                held.refusal.message
            ),
        )
        .hint("Send the statement itself instead of PREPARE and EXECUTE.")
    })
}

/// LISTEN, in a session whose returned data is limited: notifications
/// arrive between statements, where no statement can fail for them (a
/// `pg_notify` per row of a query would carry a table out one
/// notification at a time).
fn unlistenable(a: &Analysis) -> Option<Refusal> {
    let listens = a.statements.iter().any(|s| {
        s.actions.iter().any(|a| {
            matches!(
                a.kind,
                portcullis_analysis::ActionKind::Notification {
                    statement: "ListenStmt"
                }
            )
        })
    });
    listens.then(|| {
        Refusal::error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            "LISTEN refused by Portcullis: the data this session is returned is limited, and notifications cannot be counted against a statement",
        )
        .hint("Ask an administrator about the limit.")
    })
}

/// A judged message's audit verdict, refused as a whole by Portcullis
/// after the policy allowed it (a name it cannot follow, a row limit it
/// cannot count).
fn refused_whole(mut m: MessageVerdict, r: &Refusal) -> MessageVerdict {
    m.refusal = Some(r.sqlstate);
    m.refused_by = None;
    m.enforced = true;
    m
}

/// Statement text as the server reads it.
fn text<'a>(state: &SessionState, bytes: &'a [u8]) -> Result<Cow<'a, str>, Refusal> {
    state
        .encodings()
        .text(bytes)
        .map_err(|e| encoding_refusal(&e))
}

/// A protocol statement or portal name as the server keys it.
fn protocol_name(state: &SessionState, name: &[u8]) -> Result<NameKey, Refusal> {
    if name.starts_with(b"portcullis.") {
        return Err(Refusal::error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            "statement and portal names starting with \"portcullis.\" are reserved",
        )
        .hint("Use another name."));
    }
    if state.lexer_unsettled() && !name.is_ascii() {
        return Err(portcullis_guard::lexer::unsettled());
    }
    state.protocol_name(name).map_err(|e| encoding_refusal(&e))
}

/// The refusal for a message the session model cannot follow.
fn unfollowable(e: &Refused) -> Refusal {
    match e {
        Refused::Encoding(e) => encoding_refusal(e),
        Refused::Overflow(what, name) => Refusal::error(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            match what {
                Overflow::Names => "too many prepared statements or portals in this session for Portcullis to follow".into(),
                Overflow::Candidates => format!(
                    "too many definitions of \"{}\" are waiting for the server's answer",
                    name.shown()
                ),
            },
        )
        .hint("Close prepared statements and portals you no longer need, and read the server's replies (Sync) before redefining a name again."),
    }
}

/// The replacement for a refused Query or FunctionCall.
pub fn refused_query() -> BytesMut {
    let mut b = BytesMut::new();
    encode::query(&mut b, REFUSED_SQL);
    b
}

/// The replacement for a refused Parse of statement `name`.
pub fn refused_parse(name: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    encode::parse(&mut b, name, REFUSED_SQL);
    b
}

/// The replacement for any other refused extended-protocol message.
pub fn refused_step() -> BytesMut {
    refused_parse(REFUSED_NAME)
}

/// PostgreSQL's answer to a message whose fields do not parse.
pub fn invalid_message_format() -> Bytes {
    Refusal::error(sqlstate::PROTOCOL_VIOLATION, "invalid message format").to_bytes()
}
