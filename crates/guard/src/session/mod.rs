//! What one session has set up that changes how later statements are
//! judged: its search_path, its prepared statements and portals, and how
//! the server reads its text.
//!
//! **search_path.** Names resolve through the path in force when the server
//! runs a statement, and the proxy judges a statement before the server
//! has run the ones sent before it, which may fail, roll back or be
//! discarded. So the proxy keeps the *set of paths that may be in force*,
//! and a statement must pass under every one of them:
//!
//! - at login the set is the path the server reports;
//! - every change the proxy lets through (SET, RESET, set_config, DISCARD
//!   ALL, SET LOCAL) adds its path to the set; nothing is removed on the
//!   strength of a statement merely being sent;
//! - the set shrinks back to one path only on the server's evidence: when
//!   every request has been answered, the session is outside a transaction,
//!   and no error or rollback happened since the last change, that change
//!   is in force; SET LOCAL paths go when a transaction ends;
//! - within one Query message the outcome is certain (a statement after a
//!   failed one never runs), so later statements of the same message are
//!   judged under the path the earlier ones set, BEGIN ... ROLLBACK
//!   included.
//!
//! A change whose value is only known at run time
//! (`set_config('search_path', $1, false)`) adds an unknown path, under
//! which every unqualified operator counts as possibly shadowed: statements
//! become opaque (refused in production), never silently misjudged. Past
//! [`MAX_PATHS`] possibilities the set becomes that unknown path.
//!
//! A ROLLBACK (or COMMIT, which rolls back a failed transaction) never
//! removes a path when it is sent: whether it undoes a change, and which,
//! depends on whether statements sent before it ran, which only the
//! server knows.
//!
//! **Prepared statements and portals.** SQL PREPARE and protocol Parse
//! share one namespace on the server, and EXECUTE or Bind can use either.
//! A statement runs with the verdict of its text, so the proxy keeps, per
//! name (keyed as the server keys it: `encoding.rs`), every text that may
//! be behind it, and changes them only on the server's word (`names.rs`).
//! An EXECUTE or Bind of a name the proxy never saw prepared is refused:
//! only a statement the proxy could not see (one prepared inside a
//! function) can be behind it. A portal's statement takes effect (its SET,
//! say) when the portal is executed, not when it is bound.

use std::sync::Arc;

use portcullis_analysis::resolve::parse_search_path as parse_search_path_value;
use portcullis_analysis::{ActionKind, Analysis, DiscardTarget, Execution, StatementFacts};

use crate::encoding::{Encoding, EncodingError, Encodings, NameKey};

pub mod names;
pub mod paths;

pub use names::Overflow;
pub use paths::{unknown_path, PathEffect, MAX_PATHS};

use paths::{add, union, Path, Paths};

/// How many definitions one name may have that the server has not
/// answered yet (a client pipelining redefinitions without reading).
const MAX_CANDIDATES: usize = 64;

/// How many prepared statement names one session may have.
const MAX_PREPARED: usize = 10_000;

/// How many portals one session may have open.
const MAX_PORTALS: usize = 10_000;

/// A prepared statement's text, analysed: statement `index` of `analysis`
/// (a PREPARE statement, whose body is its deferred part, or a protocol
/// Parse's single statement).
#[derive(Debug, Clone)]
pub struct PreparedText {
    pub analysis: Arc<Analysis>,
    pub index: usize,
    /// The text as the client sent it, kept only for a Parse of a
    /// statement a policy holds for approval: the request shows it, and
    /// the approval's digest covers it (see `portcullis_approvals`).
    pub source: Option<Arc<Source>>,
}

/// A held statement's Parse as the client sent it.
#[derive(Debug, PartialEq, Eq)]
pub struct Source {
    pub text: Arc<str>,
    /// The parameter types it declared (0: the server infers it).
    pub param_types: Box<[u32]>,
}

impl Source {
    /// `types`: the Parse message's type section (a count, then the OIDs),
    /// read as far as it is whole.
    pub fn new(text: Arc<str>, types: &[u8]) -> Source {
        let count = types
            .get(..2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize);
        let param_types = types
            .get(2..)
            .unwrap_or_default()
            .chunks_exact(4)
            .take(count)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Source { text, param_types }
    }
}

impl names::Same for PreparedText {
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.analysis, &other.analysis) && self.index == other.index
    }
}

impl names::Same for Portal {
    fn same(&self, other: &Self) -> bool {
        self.row_limit == other.row_limit
            && self.opaque == other.opaque
            && self.hidden_code == other.hidden_code
            && self.texts.len() == other.texts.len()
            && self.texts.iter().zip(&other.texts).all(|(a, b)| a.same(b))
    }
}

impl PreparedText {
    pub fn statement(&self) -> Option<&StatementFacts> {
        self.analysis.statements.get(self.index)
    }
}

/// What an Execute runs (see [`SessionState::execute`]).
#[derive(Debug, Default)]
pub struct Executing {
    /// The row limit it runs under, if any.
    pub row_limit: Option<u64>,
    /// Settles what it changes.
    pub ticket: Option<Ticket>,
    /// It may start a COPY FROM STDIN.
    pub copies_in: bool,
}

/// A portal as bound: the texts its statement may have had, and what
/// running it needs.
#[derive(Debug, Clone)]
pub struct Portal {
    pub texts: Vec<PreparedText>,
    /// Runs under the target's row limit.
    pub row_limit: Option<u64>,
    /// Runs code the analysis cannot see.
    pub opaque: bool,
    /// ... which may run SQL of its own (see `Judgement::hidden_code`).
    pub hidden_code: bool,
}

/// A message's changes to the session model, settled by the server's
/// answer to it (see [`SessionState::settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    seq: u64,
    names: Option<names::Ticket>,
}

impl From<names::Ticket> for Ticket {
    fn from(names: names::Ticket) -> Ticket {
        Ticket {
            seq: names.seq(),
            names: Some(names),
        }
    }
}

/// The search_path within one message. Statements of one Query run in
/// order and stop at the first error, so a SET is certain for the
/// statements after it. Transaction control is not: a ROLLBACK returns to
/// the path of a block that began before this message, or to this
/// message's start (the statements before it ran in the Query's implicit
/// transaction, or in the block a BEGIN in the middle opened), and a
/// COMMIT rolls back a failed block.
#[derive(Debug, Clone)]
pub struct MessagePaths {
    /// Paths that may be in force.
    base: Vec<Path>,
    /// SET LOCAL paths that may be in force (empty: none).
    local: Vec<Path>,
    /// The paths possible when the message began.
    start: Vec<Path>,
    /// Every path possible at any point of the message.
    seen: Vec<Path>,
}

impl MessagePaths {
    /// Every path a statement at this point may run under.
    pub fn paths(&self) -> impl Iterator<Item = &[String]> {
        self.base.iter().chain(self.local.iter()).map(|p| &p[..])
    }

    /// Follows one statement's effects (it ran, or the rest of the message
    /// does not run).
    fn follow(&mut self, effects: Vec<PathEffect>) {
        for effect in effects {
            match effect {
                PathEffect::Set(p) => {
                    add(&mut self.seen, p.clone());
                    self.base = vec![p];
                    self.local.clear();
                }
                PathEffect::SetLocal(p) => {
                    add(&mut self.seen, p.clone());
                    self.local = vec![p];
                }
                PathEffect::Maybe(p) => {
                    add(&mut self.seen, p.clone());
                    add(&mut self.base, p);
                }
                PathEffect::Begin => {}
                PathEffect::Rollback => {
                    self.base = self.start.clone();
                    self.local.clear();
                }
                PathEffect::Commit => {
                    union(&mut self.base, &self.start);
                    self.local.clear();
                }
                PathEffect::RollbackTo | PathEffect::Uncertain => {
                    union(&mut self.base, &self.seen);
                }
            }
        }
    }
}

/// Per-session state for judging statements.
#[derive(Debug, Clone)]
pub struct SessionState {
    /// The role statements run as, for `$user` in the path.
    pub session_user: String,
    /// The path at login, for RESET.
    default_path: Path,
    paths: Paths,
    encodings: Encodings,
    /// A message that may change how the server reads text (a new
    /// client_encoding, code the analysis cannot see) was let through and
    /// the server has not answered everything since.
    lexer_unsettled: bool,
    names: names::Registry<PreparedText, Portal>,
    unseen: UnseenChanges,
    memo: crate::memo::Memo,
}

/// The session's own changes to functions that the target's catalog
/// snapshot may not show yet (see `crate::catalog::CatalogView`).
#[derive(Debug, Clone, Copy, Default)]
struct UnseenChanges {
    /// A message that may change functions was let through, and its
    /// transaction has not been seen to end: no load can see it yet.
    uncommitted: bool,
    /// The number the guard gave the latest committed change (0: none).
    committed: u64,
}

impl SessionState {
    /// A session whose server reported `search_path` (as SHOW prints it)
    /// at login; `None` or unparsable leaves it unknown.
    pub fn new(session_user: impl Into<String>, search_path: Option<&str>) -> Self {
        let path = search_path
            .and_then(parse_search_path_value)
            .map_or_else(unknown_path, Path::from);
        SessionState {
            session_user: session_user.into(),
            default_path: path.clone(),
            paths: Paths::new(path),
            encodings: Encodings::default(),
            lexer_unsettled: false,
            names: names::Registry::new(MAX_PREPARED, MAX_PORTALS, MAX_CANDIDATES),
            unseen: UnseenChanges::default(),
            memo: crate::memo::Memo::default(),
        }
    }

    // ---- the session's own schema changes ----

    /// A message that may change functions (see
    /// `Judgement::may_change_functions`) was let through.
    pub fn functions_may_change(&mut self) {
        self.unseen.uncommitted = true;
    }

    /// Whether a change let through has not been numbered yet. Number it
    /// ([`SessionState::changes_numbered`]) once the server is idle and has
    /// answered every message sent: only then has it run and committed (or
    /// rolled back). An idle answer to an earlier message of a pipeline
    /// does not count: the change may not have run yet.
    pub fn unnumbered_changes(&self) -> bool {
        self.unseen.uncommitted
    }

    /// The guard numbered the session's committed changes `n`.
    pub fn changes_numbered(&mut self, n: u64) {
        self.unseen = UnseenChanges {
            uncommitted: false,
            committed: n,
        };
    }

    /// Whether functions may differ from a snapshot that shows every change
    /// numbered up to `covers`.
    pub fn functions_unseen(&self, covers: u64) -> bool {
        self.unseen.uncommitted || self.unseen.committed > covers
    }

    pub(crate) fn memo(&self) -> &crate::memo::Memo {
        &self.memo
    }

    /// Every search_path the session may be under now.
    pub(crate) fn possible_paths(&self) -> &[paths::Path] {
        self.paths.possible()
    }

    // ---- encodings and names ----

    pub fn encodings(&self) -> &Encodings {
        &self.encodings
    }

    /// A ParameterStatus for client_encoding.
    pub fn client_encoding(&mut self, name: &str) {
        self.encodings.client = Encoding::from_reported(name);
    }

    /// A ParameterStatus for server_encoding.
    pub fn server_encoding(&mut self, name: &str) {
        self.encodings.server = Encoding::from_reported(name);
    }

    /// The server's key for a protocol statement or portal name.
    pub fn protocol_name(&self, bytes: &[u8]) -> Result<NameKey, EncodingError> {
        self.encodings.protocol_name(bytes)
    }

    /// The server's key for a name read from SQL by the analysis.
    pub fn sql_name(&self, name: &str) -> Result<NameKey, EncodingError> {
        self.encodings.sql_name(name)
    }

    /// Whether text that reads differently under another client_encoding
    /// or standard_conforming_strings may be misread now (see
    /// `lexer.rs`).
    pub fn lexer_unsettled(&self) -> bool {
        self.lexer_unsettled
    }

    // ---- search_path ----

    /// The paths the next message starts under.
    pub fn message_paths(&self) -> MessagePaths {
        let now = self.paths.possible().to_vec();
        MessagePaths {
            base: now.clone(),
            local: Vec::new(),
            start: now.clone(),
            seen: now,
        }
    }

    /// Every search_path the next statement may run under (usually one).
    pub fn search_paths(&self) -> impl Iterator<Item = &[String]> {
        self.paths.possible().iter().map(|p| &p[..])
    }

    /// The most recent possible path (for tools that show one).
    pub fn search_path(&self) -> &[String] {
        self.paths.possible().last().map(|p| &p[..]).unwrap_or(&[])
    }

    /// Whether exactly one path is possible and it is known.
    pub fn search_path_certain(&self) -> bool {
        matches!(self.paths.possible(), [one] if *one != unknown_path())
    }

    /// Follows statement `index` of `analysis` within the message being
    /// judged.
    pub fn follow_in_message(&self, paths: &mut MessagePaths, stmt: &StatementFacts) {
        paths.follow(self.statement_effects(stmt));
    }

    /// A Query the proxy let through: each statement's changes (search_path,
    /// prepared statements) become possible now and count once the server
    /// completes that statement. Returns the tickets by statement index.
    pub fn apply(&mut self, analysis: &Arc<Analysis>) -> Result<Vec<(usize, Ticket)>, Refused> {
        let mut tickets = Vec::new();
        for (index, stmt) in analysis.statements.iter().enumerate() {
            let names = self.follow_prepared(analysis, index, stmt)?;
            if let Some(t) = self.statement_sent(stmt, names) {
                tickets.push((index, t));
            }
        }
        Ok(tickets)
    }

    /// The ticket for one statement sent, if it changes anything.
    fn statement_sent(
        &mut self,
        stmt: &StatementFacts,
        names: Option<names::Ticket>,
    ) -> Option<Ticket> {
        self.note_lexer(stmt);
        // EXECUTE runs a prepared statement, which may be a SET prepared
        // through the protocol.
        let effects = self.statement_effects(stmt);
        for action in &stmt.actions {
            if let ActionKind::Execute { name } = &action.kind {
                if let Ok(key) = self.sql_name(name) {
                    let texts: Vec<PreparedText> = self.prepared(&key).cloned().collect();
                    for t in texts.iter().filter_map(PreparedText::statement) {
                        self.note_lexer(t);
                    }
                }
            }
        }
        if effects.is_empty() && names.is_none() {
            return None;
        }
        let seq = match &names {
            Some(t) => t.seq(),
            None => self.names.mark(),
        };
        self.paths.sent(seq, effects);
        Some(Ticket { seq, names })
    }

    /// A change of client_encoding: the server reads later text in the new
    /// encoding once it ran; until it says so, the proxy cannot tell.
    fn note_lexer(&mut self, stmt: &StatementFacts) {
        if stmt
            .settings
            .iter()
            .any(|c| c.execution == Execution::Now && c.target.may_affect("client_encoding"))
        {
            self.lexer_unsettled = true;
        }
    }

    /// Follows PREPARE / DEALLOCATE / DISCARD ALL of one statement: a
    /// definition becomes possible at once, a removal waits for the
    /// server's word (the ticket).
    pub fn follow_prepared(
        &mut self,
        analysis: &Arc<Analysis>,
        index: usize,
        stmt: &StatementFacts,
    ) -> Result<Option<names::Ticket>, Refused> {
        let mut ticket = None;
        for action in &stmt.actions {
            if action.execution != Execution::Now {
                continue;
            }
            match &action.kind {
                ActionKind::Prepare { name } => {
                    let key = self.sql_name(name).map_err(Refused::Encoding)?;
                    let text = PreparedText {
                        analysis: analysis.clone(),
                        index,
                        source: None,
                    };
                    ticket = Some(
                        self.names
                            .define_statement(key.clone(), text)
                            .map_err(|o| Refused::Overflow(o, key))?,
                    );
                }
                ActionKind::Deallocate { name: Some(n) } => {
                    let key = self.sql_name(n).map_err(Refused::Encoding)?;
                    ticket = Some(self.names.close_statement(key));
                }
                ActionKind::Deallocate { name: None }
                | ActionKind::Discard {
                    target: DiscardTarget::All,
                } => ticket = Some(self.names.close_all_statements()),
                _ => {}
            }
        }
        Ok(ticket)
    }

    /// A message with opaque code was let through: it may have changed the
    /// search_path in ways the analysis cannot see (`SET` inside a DO
    /// block or a function), so an unknown path becomes possible; with
    /// `hidden_code`, settings that change how text is read may have
    /// changed too, until the server answers.
    pub fn opaque_ran(&mut self, hidden_code: bool) {
        self.paths.opaque();
        self.lexer_unsettled |= hidden_code;
    }

    /// The server reported an error.
    pub fn error(&mut self) {
        self.paths.error();
    }

    /// A ReadyForQuery: `idle` when outside any transaction, `drained`
    /// when every request sent so far has been answered.
    pub fn ready(&mut self, idle: bool, drained: bool) {
        if drained {
            // Any ParameterStatus a change caused came before this.
            self.lexer_unsettled = false;
            if idle {
                // No transaction is open, so no portal exists.
                self.names.portals.drop_all_older(u64::MAX);
            }
        }
        self.paths.ready(idle, drained);
    }

    /// The server reported its search_path (PostgreSQL 18 and later send
    /// ParameterStatus for it): it is possible from now on.
    pub fn reported_search_path(&mut self, value: &str) {
        let to = parse_search_path_value(value).map_or_else(unknown_path, Path::from);
        self.paths.reported(to);
    }

    // ---- prepared statements and portals ----

    /// A protocol Parse of `key` as `text` is sent.
    pub fn parse(&mut self, key: NameKey, text: PreparedText) -> Result<Ticket, Refused> {
        self.names
            .define_statement(key.clone(), text)
            .map(Ticket::from)
            .map_err(|o| Refused::Overflow(o, key))
    }

    /// A protocol Close of statement `key` is sent.
    pub fn close_statement(&mut self, key: NameKey) -> Ticket {
        self.names.close_statement(key).into()
    }

    /// Every text `key` may stand for; empty if the proxy never saw it
    /// prepared.
    pub fn prepared(&self, key: &NameKey) -> impl Iterator<Item = &PreparedText> {
        self.names.statements.get(key)
    }

    /// Whether some text may stand behind `key`.
    pub fn is_prepared(&self, key: &NameKey) -> bool {
        self.names.statements.contains(key)
    }

    /// A Bind of statement `statement` into portal `portal` is sent.
    pub fn bind(
        &mut self,
        portal: NameKey,
        statement: &NameKey,
        row_limit: Option<u64>,
        opaque: bool,
        hidden_code: bool,
    ) -> Result<Ticket, Refused> {
        let texts = self.prepared(statement).cloned().collect();
        let value = Portal {
            texts,
            row_limit,
            opaque,
            hidden_code,
        };
        self.names
            .bind_portal(portal.clone(), value)
            .map(Ticket::from)
            .map_err(|o| Refused::Overflow(o, portal))
    }

    /// Every text portal `key` may run (empty when the proxy never saw it
    /// bound, such as a cursor DECLAREd in SQL).
    pub fn portal_texts(&self, key: &NameKey) -> Vec<PreparedText> {
        self.names
            .portals
            .get(key)
            .flat_map(|p| p.texts.iter().cloned())
            .collect()
    }

    /// A protocol Close of portal `key` is sent.
    pub fn close_portal(&mut self, key: NameKey) -> Ticket {
        self.names.close_portal(key).into()
    }

    /// Whether an Execute of portal `key` cannot be counted where rows are
    /// counted: the session model never saw it bound (a cursor opened by
    /// SQL DECLARE or inside code), or it may stand for a counted statement
    /// and for one that ends or changes the transaction (a pipeline
    /// re-binding the portal before the server answered): the counting
    /// around a COMMIT would report a rollback that did not happen.
    pub fn uncountable_portal(&self, key: &NameKey) -> bool {
        let mut any = false;
        let mut counted = false;
        let mut transaction = false;
        for portal in self.names.portals.get(key) {
            any = true;
            counted |= portal.row_limit.is_some();
            transaction |= portal.texts.iter().any(|t| {
                t.statement()
                    .is_some_and(|s| s.class == portcullis_analysis::StatementClass::Transaction)
            });
        }
        !any || counted && transaction
    }

    /// Whether every statement portal `key` may stand for only reads (see
    /// [`crate::reads_only`]) and calls no code that may write.
    pub fn portal_reads_only(&self, key: &NameKey) -> bool {
        self.names.portals.get(key).all(|p| {
            !p.opaque
                && p.texts
                    .iter()
                    .all(|t| t.statement().is_some_and(crate::reads_only))
        })
    }

    /// An Execute of portal `key` is sent: the statement bound to it runs
    /// now, so its effects become possible. Says the row limit it runs
    /// under (if any statement the portal may stand for has one), the
    /// ticket that settles its effects, and whether it may start a COPY
    /// FROM STDIN.
    pub fn execute(&mut self, key: &NameKey) -> Executing {
        let mut limit: Option<u64> = None;
        let mut opaque = false;
        let mut hidden_code = false;
        let mut settles = false;
        let mut copies_in = false;
        for portal in self.names.portals.get(key) {
            if let Some(l) = portal.row_limit {
                limit = Some(limit.map_or(l, |m| m.min(l)));
            }
            opaque |= portal.opaque;
            hidden_code |= portal.hidden_code;
            for stmt in portal.texts.iter().filter_map(PreparedText::statement) {
                settles |= touches_session(stmt);
                copies_in |= stmt.copies_from_client();
            }
        }
        if opaque {
            self.opaque_ran(hidden_code);
        }
        let mut executing = Executing {
            row_limit: limit,
            ticket: None,
            copies_in,
        };
        if !settles {
            // No text behind the portal sets anything or ends a
            // transaction: nothing to follow (the usual Execute).
            return executing;
        }
        let texts: Vec<PreparedText> = self
            .names
            .portals
            .get(key)
            .flat_map(|p| p.texts.iter().cloned())
            .collect();
        let effects = self.effects_of(&texts);
        if effects.is_empty() {
            return executing;
        }
        let seq = self.names.mark();
        self.paths.sent(seq, effects);
        executing.ticket = Some(Ticket { seq, names: None });
        executing
    }

    /// What running one of `texts` (which one, only the server knows) does
    /// to the path.
    fn effects_of(&mut self, texts: &[PreparedText]) -> Vec<PathEffect> {
        for stmt in texts.iter().filter_map(PreparedText::statement) {
            self.note_lexer(stmt);
        }
        texts_effects(texts, &self.default_path)
    }

    /// Every path effect of `stmt`, the prepared statements it EXECUTEs
    /// included.
    fn statement_effects(&self, stmt: &StatementFacts) -> Vec<PathEffect> {
        let mut effects = paths::effects(stmt, &self.default_path);
        for action in &stmt.actions {
            if let (ActionKind::Execute { name }, Execution::Now) = (&action.kind, action.execution)
            {
                if let Ok(key) = self.sql_name(name) {
                    let texts: Vec<PreparedText> = self.prepared(&key).cloned().collect();
                    effects.extend(texts_effects(&texts, &self.default_path));
                }
            }
        }
        effects
    }
}

/// Whether running `stmt` may change what the session model follows: a
/// setting (search_path, client_encoding, ...) or the transaction. A
/// statement for which this is false has no path effects and leaves the
/// lexer settled.
fn touches_session(stmt: &StatementFacts) -> bool {
    !stmt.settings.is_empty()
        || stmt
            .actions
            .iter()
            .any(|a| matches!(a.kind, ActionKind::Transaction { .. }))
}

/// What running one of `texts` does to the path: its effects when there is
/// one, otherwise every path any of them sets may be in force.
fn texts_effects(texts: &[PreparedText], default: &Path) -> Vec<PathEffect> {
    {
        let mut all: Vec<Vec<PathEffect>> = Vec::new();
        for stmt in texts.iter().filter_map(PreparedText::statement) {
            let e = paths::effects(stmt, default);
            if !all.contains(&e) {
                all.push(e);
            }
        }
        match all.len() {
            0 => Vec::new(),
            1 => all.pop().unwrap_or_default(),
            // One of several statements runs: none is certain.
            _ => all
                .into_iter()
                .flatten()
                .map(|e| match e {
                    PathEffect::Set(p) | PathEffect::SetLocal(p) | PathEffect::Maybe(p) => {
                        PathEffect::Maybe(p)
                    }
                    _ => PathEffect::Uncertain,
                })
                .collect(),
        }
    }
}

impl SessionState {
    /// The row limit a portal named `key` may run under (for SQL FETCH and
    /// MOVE, which run protocol portals too).
    pub fn portal_row_limit(&self, key: &NameKey) -> Option<u64> {
        self.names
            .portals
            .get(key)
            .filter_map(|p| p.row_limit)
            .min()
    }

    /// The server's answer to the message `ticket` came with: `ran` when
    /// it completed, false when it failed or was skipped.
    pub fn settle(&mut self, ticket: Ticket, ran: bool) {
        if let Some(n) = ticket.names {
            self.names.settle(n, ran);
        }
        self.paths.settle(ticket.seq, ran);
    }
}

/// Why the session cannot follow a message (it is then refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Encoding(EncodingError),
    Overflow(Overflow, NameKey),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(sql: &str) -> Arc<Analysis> {
        Arc::new(portcullis_analysis::analyze(sql).expect("parses"))
    }

    fn paths(s: &SessionState) -> Vec<Vec<String>> {
        let mut v: Vec<_> = s.search_paths().map(<[String]>::to_vec).collect();
        v.sort();
        v
    }

    fn p(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn unknown() -> Vec<String> {
        unknown_path().to_vec()
    }

    /// Sends `sql` as one Query; the server completes its first `ok`
    /// statements (then fails if that is not all), and answers with
    /// ReadyForQuery `idle` or not.
    fn run(s: &mut SessionState, sql: &str, ok: usize, idle: bool) {
        let a = analysis(sql);
        let tickets = s.apply(&a).unwrap();
        for (i, t) in tickets {
            s.settle(t, i < ok);
        }
        if ok < a.statements.len() {
            s.error();
        }
        s.ready(idle, true);
    }

    fn all(sql: &str) -> usize {
        analysis(sql).statements.len()
    }

    #[test]
    fn a_change_is_possible_at_once_and_certain_once_confirmed() {
        let mut s = SessionState::new("app", Some("\"$user\", public"));
        assert_eq!(paths(&s), [p(&["$user", "public"])]);
        let tickets = s.apply(&analysis("SET search_path = app, public")).unwrap();
        assert_eq!(paths(&s), [p(&["$user", "public"]), p(&["app", "public"])]);
        for (_, t) in tickets {
            s.settle(t, true);
        }
        s.ready(true, true);
        assert_eq!(paths(&s), [p(&["app", "public"])]);
        assert!(s.search_path_certain());
    }

    #[test]
    fn a_failed_query_undoes_its_set() {
        let mut s = SessionState::new("app", Some("public"));
        run(&mut s, "SET search_path = evil; SELECT 1/0", 1, true);
        assert_eq!(paths(&s), [p(&["public"])]);
    }

    #[test]
    fn begin_set_rollback_returns_to_the_start() {
        let mut s = SessionState::new("app", Some("public"));
        run(&mut s, "BEGIN", 1, false);
        run(&mut s, "SET search_path = evil, pg_catalog", 1, false);
        assert_eq!(paths(&s), [p(&["evil", "pg_catalog"])]);
        run(&mut s, "ROLLBACK", 1, true);
        assert_eq!(paths(&s), [p(&["public"])]);
        let sql = "BEGIN; SET search_path = evil; ROLLBACK";
        run(&mut s, sql, all(sql), true);
        assert_eq!(paths(&s), [p(&["public"])]);
    }

    #[test]
    fn a_begin_that_never_ran_restores_nothing() {
        // The attack: SELECT 1/0; BEGIN, then SET, then ROLLBACK,
        // all sent before any answer.
        let mut s = SessionState::new("app", Some("public"));
        let t1 = s.apply(&analysis("SELECT 1/0; BEGIN")).unwrap();
        let t2 = s
            .apply(&analysis("SET search_path = shadow, pg_catalog"))
            .unwrap();
        let t3 = s.apply(&analysis("ROLLBACK")).unwrap();
        assert!(paths(&s).contains(&p(&["shadow", "pg_catalog"])));
        for (_, t) in t1 {
            s.settle(t, false);
        }
        s.error();
        s.ready(true, false);
        for (_, t) in t2 {
            s.settle(t, true);
        }
        s.ready(true, false);
        for (_, t) in t3 {
            s.settle(t, true);
        }
        s.ready(true, true);
        assert_eq!(paths(&s), [p(&["shadow", "pg_catalog"])]);
    }

    #[test]
    fn nothing_settles_while_requests_are_in_flight() {
        let mut s = SessionState::new("app", Some("public"));
        s.apply(&analysis("SET search_path = a")).unwrap();
        s.ready(true, false);
        assert_eq!(paths(&s).len(), 2);
    }

    #[test]
    fn set_local_lasts_until_the_transaction_ends() {
        let mut s = SessionState::new("app", Some("public"));
        let sql = "BEGIN; SET LOCAL search_path = evil";
        run(&mut s, sql, all(sql), false);
        assert!(paths(&s).contains(&p(&["evil"])));
        run(&mut s, "COMMIT", 1, true);
        assert_eq!(paths(&s), [p(&["public"])]);
    }

    #[test]
    fn within_a_message_later_statements_see_earlier_changes() {
        let s = SessionState::new("app", Some("public"));
        let a = analysis(
            "SET search_path = evil; SELECT 1; BEGIN; SET search_path = x; ROLLBACK; SELECT 2",
        );
        let mut m = s.message_paths();
        let mut seen = Vec::new();
        for stmt in &a.statements {
            seen.push(m.paths().map(<[String]>::to_vec).collect::<Vec<_>>());
            s.follow_in_message(&mut m, stmt);
        }
        assert_eq!(seen[1], [p(&["evil"])]);
        assert_eq!(seen[4], [p(&["x"])]);
        // The ROLLBACK undoes the statements before the BEGIN too (they
        // ran in the Query's implicit transaction).
        assert_eq!(seen[5], [p(&["public"])]);
    }

    #[test]
    fn run_time_values_make_the_path_unknown() {
        let mut s = SessionState::new("app", Some("public"));
        run(
            &mut s,
            "SELECT set_config('search_path', current_setting('x'), false)",
            1,
            true,
        );
        assert!(!s.search_path_certain());
        run(&mut s, "SET search_path = public", 1, true);
        assert!(s.search_path_certain());
    }

    #[test]
    fn too_many_possibilities_become_unknown() {
        let mut s = SessionState::new("app", Some("public"));
        for i in 0..10 {
            s.apply(&analysis(&format!("SET search_path = s{i}")))
                .unwrap();
        }
        assert!(paths(&s).contains(&unknown()));
        assert!(paths(&s).len() <= MAX_PATHS);
    }

    #[test]
    fn thousands_of_changes_in_one_query_stay_cheap_and_bounded() {
        let mut s = SessionState::new("app", Some("public"));
        let sql: String = (0..5000)
            .map(|i| format!("SET search_path = s{i}; ROLLBACK TO SAVEPOINT x; "))
            .collect();
        let a = analysis(&sql);
        let started = std::time::Instant::now();
        let mut m = s.message_paths();
        for stmt in &a.statements {
            s.follow_in_message(&mut m, stmt);
        }
        let tickets = s.apply(&a).unwrap();
        for (_, t) in tickets {
            s.settle(t, true);
        }
        s.ready(true, true);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(paths(&s).len() <= MAX_PATHS);
    }

    #[test]
    fn prepared_names_change_on_the_servers_word() {
        let mut s = SessionState::new("app", Some("public"));
        let key = |s: &SessionState, n: &str| s.sql_name(n).unwrap();
        let p = key(&s, "p");
        let first = s.apply(&analysis("PREPARE p AS SELECT 1")).unwrap();
        let second = s.apply(&analysis("PREPARE p AS DELETE FROM t")).unwrap();
        assert_eq!(s.prepared(&p).count(), 2);
        s.settle(first[0].1.clone(), true);
        // 42P05: the name was taken.
        s.settle(second[0].1.clone(), false);
        assert_eq!(s.prepared(&p).count(), 1);
        // A DEALLOCATE after a failed statement never runs.
        let dealloc = s.apply(&analysis("SELECT 1/0; DEALLOCATE p")).unwrap();
        assert_eq!(dealloc[0].0, 1);
        s.settle(dealloc[0].1.clone(), false);
        assert!(s.is_prepared(&p));
        let dealloc = s.apply(&analysis("DEALLOCATE p")).unwrap();
        assert!(s.is_prepared(&p), "not before the server answers");
        s.settle(dealloc[0].1.clone(), true);
        assert!(!s.is_prepared(&p));
        let q = key(&s, "q");
        let t = s.apply(&analysis("PREPARE q AS SELECT 1")).unwrap();
        s.settle(t[0].1.clone(), true);
        let all = s.apply(&analysis("DISCARD ALL")).unwrap();
        s.settle(all[0].1.clone(), true);
        assert!(!s.is_prepared(&q));
    }

    #[test]
    fn long_sql_names_are_cut_like_the_servers() {
        let mut s = SessionState::new("app", Some("public"));
        let long1 = format!("PREPARE \"{}1\" AS SELECT 1", "A".repeat(63));
        s.apply(&analysis(&long1)).unwrap();
        let short = s.sql_name(&"A".repeat(63)).unwrap();
        assert!(s.is_prepared(&short));
        let via_protocol = s
            .protocol_name(format!("{}2", "A".repeat(63)).as_bytes())
            .unwrap();
        assert_eq!(via_protocol, short);
    }

    #[test]
    fn a_bind_without_execute_changes_no_path() {
        let mut s = SessionState::new("app", Some("public"));
        let key = s.protocol_name(b"").unwrap();
        let a = analysis("SET search_path = evil");
        let t = s
            .parse(
                key.clone(),
                PreparedText {
                    analysis: a,
                    index: 0,
                    source: None,
                },
            )
            .unwrap();
        s.settle(t, true);
        let t = s
            .bind(NameKey::unnamed(), &key, None, false, false)
            .unwrap();
        s.settle(t, true);
        s.ready(true, true);
        assert_eq!(paths(&s), [p(&["public"])]);
        let t = s
            .bind(NameKey::unnamed(), &key, None, false, false)
            .unwrap();
        s.settle(t, true);
        let t = s.execute(&NameKey::unnamed()).ticket;
        assert!(paths(&s).contains(&p(&["evil"])));
        s.settle(t.expect("changes the path"), true);
        s.ready(true, true);
        assert_eq!(paths(&s), [p(&["evil"])]);
    }

    #[test]
    fn encoding_changes_and_opaque_code_unsettle_the_lexer_until_answered() {
        let mut s = SessionState::new("app", Some("public"));
        s.opaque_ran(false);
        assert!(!s.lexer_unsettled(), "a built-in volatile function");
        s.opaque_ran(true);
        assert!(s.lexer_unsettled());
        s.ready(false, false);
        assert!(s.lexer_unsettled());
        s.ready(false, true);
        assert!(!s.lexer_unsettled());
        s.apply(&analysis("SET client_encoding = 'LATIN1'"))
            .unwrap();
        assert!(s.lexer_unsettled());
    }
}
