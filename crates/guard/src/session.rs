//! What one session has set up that changes how later statements are
//! judged: its search_path and its prepared statements.
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
//! **Prepared statements.** SQL PREPARE and protocol Parse share one
//! namespace on the server, and EXECUTE or Bind can use either. A statement
//! runs with the verdict of its text, so the proxy keeps, per name, the
//! texts that may be behind it: when a PREPARE of an existing name fails on
//! the server, the old text stays, so both are kept and both must pass.
//! DEALLOCATE, Close, DISCARD ALL remove names. An EXECUTE or Bind of a name
//! the proxy never saw prepared is refused: only a statement the proxy
//! could not see (one prepared inside a function) can be behind it.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_analysis::resolve::{
    parse_search_path as parse_search_path_value, search_path_change, SearchPathChange,
};
use portcullis_analysis::{
    ActionKind, Analysis, DiscardTarget, Execution, SettingScope, StatementFacts, TransactionKind,
};

/// How many distinct texts one prepared-statement name may stand for
/// before the proxy stops tracking it (and refuses to run it).
const MAX_CANDIDATES: usize = 8;

/// How many prepared statement names one session may have.
const MAX_PREPARED: usize = 10_000;

/// How many search_paths may be possible at once before the proxy gives up
/// knowing (and judges under an unknown path).
pub const MAX_PATHS: usize = 6;

/// A prepared statement's text, analysed: statement `index` of `analysis`
/// (a PREPARE statement, whose body is its deferred part, or a protocol
/// Parse's single statement).
#[derive(Debug, Clone)]
pub struct PreparedText {
    pub analysis: Arc<Analysis>,
    pub index: usize,
}

/// What a name may stand for.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// One of these texts (usually one).
    Texts(Vec<PreparedText>),
    /// Too many redefinitions to follow: refuse.
    Untracked,
}

/// Stands for an unknown path: pg_catalog listed after a schema nobody
/// can name, so unqualified operators count as shadowable and unqualified
/// functions as unknown.
fn unknown_path() -> Vec<String> {
    vec!["$unknown".to_owned(), "pg_catalog".to_owned()]
}

fn add(set: &mut Vec<Vec<String>>, path: Vec<String>) {
    if !set.contains(&path) {
        set.push(path);
    }
}

/// The search_path within one message, where outcomes are certain.
#[derive(Debug, Clone)]
pub struct MessagePaths {
    /// Session-level paths that may be in force.
    base: Vec<Vec<String>>,
    /// SET LOCAL paths that may be in force (empty: none).
    local: Vec<Vec<String>>,
    /// `base` when the transaction block began, to restore on ROLLBACK.
    at_begin: Option<Vec<Vec<String>>>,
    in_block: bool,
}

impl MessagePaths {
    /// Every path a statement at this point may run under.
    pub fn paths(&self) -> impl Iterator<Item = &[String]> {
        self.base.iter().chain(self.local.iter()).map(Vec::as_slice)
    }

    /// Follows one statement's effects (it ran, or the rest of the message
    /// does not run).
    fn follow(&mut self, stmt: &StatementFacts, default: &[String]) {
        for action in &stmt.actions {
            if action.execution != Execution::Now {
                continue;
            }
            if let ActionKind::Transaction { kind } = &action.kind {
                match kind {
                    TransactionKind::Begin if !self.in_block => {
                        self.at_begin = Some(self.base.clone());
                        self.in_block = true;
                    }
                    TransactionKind::Commit | TransactionKind::Prepare => {
                        self.in_block = false;
                        self.at_begin = None;
                        self.local.clear();
                    }
                    TransactionKind::Rollback => {
                        self.in_block = false;
                        if let Some(b) = self.at_begin.take() {
                            self.base = b;
                        }
                        self.local.clear();
                    }
                    TransactionKind::RollbackTo => {
                        // Undoes changes since a savepoint this message may
                        // not show: keep every possibility.
                        if let Some(b) = &self.at_begin {
                            for p in b.clone() {
                                add(&mut self.base, p);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for change in &stmt.settings {
            if change.execution != Execution::Now {
                continue;
            }
            let Some(effect) = search_path_change(change) else {
                continue;
            };
            let to = match effect {
                SearchPathChange::To(p) => p,
                SearchPathChange::Default => default.to_vec(),
                SearchPathChange::Unknown => unknown_path(),
            };
            match change.scope {
                SettingScope::Transaction => self.local = vec![to],
                SettingScope::Session => {
                    self.base = vec![to];
                    self.local.clear();
                }
                SettingScope::Unknown => {
                    add(&mut self.base, to);
                }
            }
        }
    }
}

/// The path possibilities when a transaction block began, and the change
/// then unconfirmed.
type BlockStart = (Vec<Vec<String>>, Option<Vec<String>>);

/// Per-session state for judging statements.
#[derive(Debug, Clone)]
pub struct SessionState {
    /// The role statements run as, for `$user` in the path.
    pub session_user: String,
    /// The path at login, for RESET.
    default_path: Vec<String>,
    /// Session-level paths that may be in force.
    base: Vec<Vec<String>>,
    /// SET LOCAL paths that may be in force until the transaction ends.
    local: Vec<Vec<String>>,
    /// The session-level path the last message let through leaves in
    /// force, if it ran to the end and committed.
    unconfirmed: Option<Vec<String>>,
    /// An error or rollback happened since that change.
    spoiled: bool,
    /// The possibilities when the open transaction block began (and the
    /// change then unconfirmed), which its ROLLBACK returns to.
    block_start: Option<BlockStart>,
    prepared: HashMap<String, Prepared>,
}

impl SessionState {
    /// A session whose server reported `search_path` (as SHOW prints it)
    /// at login; `None` or unparsable leaves it unknown.
    pub fn new(session_user: impl Into<String>, search_path: Option<&str>) -> Self {
        let path = search_path
            .and_then(parse_search_path_value)
            .unwrap_or_else(unknown_path);
        SessionState {
            session_user: session_user.into(),
            default_path: path.clone(),
            base: vec![path],
            local: Vec::new(),
            unconfirmed: None,
            spoiled: false,
            block_start: None,
            prepared: HashMap::new(),
        }
    }

    /// The paths the next message starts under.
    pub fn message_paths(&self) -> MessagePaths {
        MessagePaths {
            base: self.base.clone(),
            local: self.local.clone(),
            at_begin: None,
            in_block: false,
        }
    }

    /// Every search_path the next statement may run under (usually one).
    pub fn search_paths(&self) -> impl Iterator<Item = &[String]> {
        self.base.iter().chain(self.local.iter()).map(Vec::as_slice)
    }

    /// The most recent possible path (for tools that show one).
    pub fn search_path(&self) -> &[String] {
        self.local
            .last()
            .or(self.base.last())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether exactly one path is possible and it is known.
    pub fn search_path_certain(&self) -> bool {
        self.base.len() == 1 && self.local.is_empty() && self.base[0] != unknown_path()
    }

    /// Follows statement `index` of `analysis` within the message being
    /// judged.
    pub fn follow_in_message(&self, paths: &mut MessagePaths, stmt: &StatementFacts) {
        paths.follow(stmt, &self.default_path);
    }

    /// Folds the effects of a message the proxy let through into the
    /// session, statement by statement: its paths become possible, its
    /// prepared statements known.
    pub fn apply(&mut self, analysis: &Arc<Analysis>) {
        for (index, stmt) in analysis.statements.iter().enumerate() {
            for action in &stmt.actions {
                if action.execution != Execution::Now {
                    continue;
                }
                let ActionKind::Transaction { kind } = &action.kind else {
                    continue;
                };
                match kind {
                    TransactionKind::Begin if self.block_start.is_none() => {
                        self.block_start = Some((self.base.clone(), self.unconfirmed.clone()));
                    }
                    TransactionKind::Commit | TransactionKind::Prepare => {
                        self.block_start = None;
                    }
                    TransactionKind::Rollback => match self.block_start.take() {
                        // Whatever happened inside, the path is again one of
                        // those possible when the block began.
                        Some((base, unconfirmed)) => {
                            self.base = base;
                            self.unconfirmed = unconfirmed;
                            self.local.clear();
                        }
                        None => {
                            self.spoiled = true;
                            self.unconfirmed = None;
                        }
                    },
                    TransactionKind::RollbackTo => {
                        self.spoiled = true;
                        self.unconfirmed = None;
                    }
                    _ => {}
                }
            }
            for change in &stmt.settings {
                if change.execution != Execution::Now {
                    continue;
                }
                let Some(effect) = search_path_change(change) else {
                    continue;
                };
                let to = match effect {
                    SearchPathChange::To(p) => p,
                    SearchPathChange::Default => self.default_path.clone(),
                    SearchPathChange::Unknown => unknown_path(),
                };
                match change.scope {
                    SettingScope::Transaction => add(&mut self.local, to),
                    SettingScope::Session => {
                        add(&mut self.base, to.clone());
                        self.unconfirmed = Some(to);
                        self.spoiled = false;
                    }
                    SettingScope::Unknown => {
                        add(&mut self.base, to);
                        self.unconfirmed = None;
                    }
                }
            }
            self.follow_prepared(analysis, index, stmt);
        }
        if self.base.len() + self.local.len() > MAX_PATHS {
            self.base = vec![unknown_path()];
            self.local.clear();
            self.unconfirmed = None;
        }
    }

    /// Follows PREPARE / DEALLOCATE / DISCARD ALL of one statement.
    pub fn follow_prepared(
        &mut self,
        analysis: &Arc<Analysis>,
        index: usize,
        stmt: &StatementFacts,
    ) {
        for action in &stmt.actions {
            if action.execution != Execution::Now {
                continue;
            }
            match &action.kind {
                ActionKind::Prepare { name } => self.prepare(
                    name,
                    PreparedText {
                        analysis: analysis.clone(),
                        index,
                    },
                ),
                ActionKind::Deallocate { name } => match name {
                    Some(n) => {
                        self.prepared.remove(n);
                    }
                    None => self.prepared.clear(),
                },
                ActionKind::Discard {
                    target: DiscardTarget::All,
                } => self.prepared.clear(),
                _ => {}
            }
        }
    }

    /// A message with opaque code was let through: it may have changed the
    /// search_path in ways the analysis cannot see (`SET` inside a DO
    /// block or a function), so an unknown path becomes possible.
    pub fn opaque_ran(&mut self) {
        add(&mut self.base, unknown_path());
        self.unconfirmed = None;
        if self.base.len() + self.local.len() > MAX_PATHS {
            self.base = vec![unknown_path()];
            self.local.clear();
        }
    }

    /// The server reported an error, or a ROLLBACK (including COMMIT of a
    /// failed transaction and ROLLBACK TO SAVEPOINT): the last change may
    /// not be in force.
    pub fn spoiled(&mut self) {
        self.spoiled = true;
    }

    /// A ReadyForQuery: `idle` when outside any transaction, `quiescent`
    /// when every request sent so far has been answered.
    pub fn ready(&mut self, idle: bool, quiescent: bool) {
        if !idle {
            return;
        }
        // The transaction is over, committed or not: SET LOCAL is gone.
        self.local.clear();
        self.block_start = None;
        if !quiescent {
            return;
        }
        if let Some(p) = self.unconfirmed.take() {
            if !self.spoiled {
                self.base = vec![p];
            }
        }
        self.spoiled = false;
    }

    /// The server reported its search_path (PostgreSQL 18 and later send
    /// ParameterStatus for it): it is possible from now on.
    pub fn reported_search_path(&mut self, value: &str) {
        let to = parse_search_path_value(value).unwrap_or_else(unknown_path);
        add(&mut self.base, to);
    }

    /// Records `name` as standing for `text` (SQL PREPARE, or a named
    /// protocol Parse). The unnamed statement is replaced outright: the
    /// server drops it before parsing a new one.
    pub fn prepare(&mut self, name: &str, text: PreparedText) {
        if name.is_empty() {
            self.prepared
                .insert(String::new(), Prepared::Texts(vec![text]));
            return;
        }
        if !self.prepared.contains_key(name) && self.prepared.len() >= MAX_PREPARED {
            // Past the bound the name is not followed, so it cannot run.
            return;
        }
        let entry = self
            .prepared
            .entry(name.to_owned())
            .or_insert_with(|| Prepared::Texts(Vec::new()));
        if let Prepared::Texts(list) = entry {
            if list.len() >= MAX_CANDIDATES {
                *entry = Prepared::Untracked;
            } else {
                list.push(text);
            }
        }
    }

    /// A Close of a prepared statement (protocol message).
    pub fn close(&mut self, name: &str) {
        self.prepared.remove(name);
    }

    /// What `name` may stand for; `None` if the proxy never saw it
    /// prepared.
    pub fn prepared(&self, name: &str) -> Option<&Prepared> {
        self.prepared.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(sql: &str) -> Arc<Analysis> {
        Arc::new(portcullis_analysis::analyze(sql).expect("parses"))
    }

    fn paths(s: &SessionState) -> Vec<Vec<String>> {
        s.search_paths().map(<[String]>::to_vec).collect()
    }

    fn p(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_change_is_possible_at_once_and_certain_once_confirmed() {
        let mut s = SessionState::new("app", Some("\"$user\", public"));
        assert_eq!(paths(&s), [p(&["$user", "public"])]);
        s.apply(&analysis("SET search_path = app, public"));
        assert_eq!(paths(&s), [p(&["$user", "public"]), p(&["app", "public"])]);
        s.ready(true, true);
        assert_eq!(paths(&s), [p(&["app", "public"])]);
        assert!(s.search_path_certain());
    }

    #[test]
    fn an_error_or_rollback_keeps_every_possibility() {
        let mut s = SessionState::new("app", Some("public"));
        s.apply(&analysis("SET search_path = evil"));
        s.spoiled();
        s.ready(true, true);
        assert_eq!(paths(&s), [p(&["public"]), p(&["evil"])]);
        // The next clean change settles it.
        s.apply(&analysis("SET search_path = public"));
        s.ready(true, true);
        assert_eq!(paths(&s), [p(&["public"])]);
    }

    #[test]
    fn nothing_settles_while_requests_are_in_flight() {
        let mut s = SessionState::new("app", Some("public"));
        s.apply(&analysis("SET search_path = a"));
        s.ready(true, false);
        assert_eq!(paths(&s).len(), 2);
    }

    #[test]
    fn set_local_lasts_until_the_transaction_ends() {
        let mut s = SessionState::new("app", Some("public"));
        s.apply(&analysis("BEGIN; SET LOCAL search_path = evil"));
        assert!(paths(&s).contains(&p(&["evil"])));
        s.ready(false, true);
        assert!(paths(&s).contains(&p(&["evil"])));
        s.ready(true, true);
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
        assert_eq!(
            seen[5],
            [p(&["evil"])],
            "ROLLBACK restores the path at BEGIN"
        );
    }

    #[test]
    fn run_time_values_make_the_path_unknown() {
        let mut s = SessionState::new("app", Some("public"));
        s.apply(&analysis(
            "SELECT set_config('search_path', current_setting('x'), false)",
        ));
        s.ready(true, true);
        assert!(!s.search_path_certain());
        s.apply(&analysis("SET search_path = public"));
        s.ready(true, true);
        assert!(s.search_path_certain());
    }

    #[test]
    fn too_many_possibilities_become_unknown() {
        let mut s = SessionState::new("app", Some("public"));
        for i in 0..10 {
            s.apply(&analysis(&format!("SET search_path = s{i}")));
        }
        assert!(paths(&s).contains(&unknown_path()));
        assert!(paths(&s).len() <= MAX_PATHS);
    }

    #[test]
    fn prepared_names_keep_every_possible_text() {
        let mut s = SessionState::new("app", Some("public"));
        s.apply(&analysis("PREPARE p AS SELECT 1"));
        s.apply(&analysis("PREPARE p AS DELETE FROM t"));
        match s.prepared("p") {
            Some(Prepared::Texts(list)) => assert_eq!(list.len(), 2),
            other => panic!("{other:?}"),
        }
        s.apply(&analysis("DEALLOCATE p"));
        assert!(s.prepared("p").is_none());
        s.apply(&analysis("PREPARE q AS SELECT 1"));
        s.apply(&analysis("DISCARD ALL"));
        assert!(s.prepared("q").is_none());
    }
}
