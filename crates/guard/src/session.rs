//! What one session has set up that changes how later statements are
//! judged: its search_path and its prepared statements.
//!
//! **search_path.** Names resolve through the path in force when the server
//! runs a statement. The proxy learns it at login (it asks the server) and
//! then follows every change it lets through, in order: SET / RESET /
//! set_config, with SET LOCAL lasting to the end of the transaction and
//! changes inside a transaction undone by ROLLBACK. A change whose value is
//! only known at run time (`set_config('search_path', $1, false)`) makes
//! the path unknown; until a later SET makes it known again (or the server
//! reports it, as PostgreSQL 18 does), every unqualified operator counts as
//! possibly shadowed, which makes statements opaque: refused in production,
//! never silently misjudged. ROLLBACK TO SAVEPOINT after a change is the one
//! case followed approximately: the path stays as last set.
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
    ActionKind, Analysis, DiscardTarget, Execution, SettingScope, TransactionKind,
};

/// How many distinct texts one prepared-statement name may stand for
/// before the proxy stops tracking it (and refuses to run it).
const MAX_CANDIDATES: usize = 8;

/// How many prepared statement names one session may have.
const MAX_PREPARED: usize = 10_000;

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

/// The session's search_path as the proxy follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Path {
    Known(Vec<String>),
    Unknown,
}

/// Per-session state for judging statements.
#[derive(Debug)]
pub struct SessionState {
    /// The role statements run as, for `$user` in the path.
    pub session_user: String,
    /// The path at login, for RESET.
    default_path: Vec<String>,
    path: Path,
    /// SET LOCAL, until the transaction ends.
    local: Option<Path>,
    /// The path when the current transaction block began, to restore on
    /// ROLLBACK.
    at_begin: Option<Path>,
    prepared: HashMap<String, Prepared>,
    /// Bumped whenever the path changes, so cached verdicts of prepared
    /// statements can tell they are stale.
    generation: u64,
}

/// Stands for an unknown path: pg_catalog listed after a schema nobody
/// can name, so unqualified operators count as shadowable and unqualified
/// functions as unknown.
fn unknown_path() -> Vec<String> {
    vec!["$unknown".to_owned(), "pg_catalog".to_owned()]
}

impl SessionState {
    /// A session whose server reported `search_path` (as SHOW prints it)
    /// at login; `None` or unparsable leaves it unknown.
    pub fn new(session_user: impl Into<String>, search_path: Option<&str>) -> Self {
        let path = search_path
            .and_then(parse_search_path_value)
            .map_or(Path::Unknown, Path::Known);
        let default_path = match &path {
            Path::Known(p) => p.clone(),
            Path::Unknown => unknown_path(),
        };
        SessionState {
            session_user: session_user.into(),
            default_path,
            path,
            local: None,
            at_begin: None,
            prepared: HashMap::new(),
            generation: 0,
        }
    }

    /// The search_path to judge the next statement with.
    pub fn search_path(&self) -> &[String] {
        static UNKNOWN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        match self.local.as_ref().unwrap_or(&self.path) {
            Path::Known(p) => p,
            Path::Unknown => UNKNOWN.get_or_init(unknown_path),
        }
    }

    /// Whether the path is known.
    pub fn search_path_known(&self) -> bool {
        !matches!(self.local.as_ref().unwrap_or(&self.path), Path::Unknown)
    }

    /// Changes whenever the path does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn set_path(&mut self, scope: SettingScope, to: Path) {
        self.generation += 1;
        match scope {
            SettingScope::Transaction => self.local = Some(to),
            SettingScope::Session => {
                self.path = to;
                // A session-level SET also replaces an earlier SET LOCAL.
                self.local = None;
            }
            SettingScope::Unknown => {
                self.path = Path::Unknown;
                self.local = None;
            }
        }
    }

    /// The server reported its search_path (PostgreSQL 18 and later send
    /// ParameterStatus for it): the authoritative value.
    pub fn reported_search_path(&mut self, value: &str) {
        let to = parse_search_path_value(value).map_or(Path::Unknown, Path::Known);
        if self.path != to || self.local.is_some() {
            self.generation += 1;
            self.path = to;
            self.local = None;
        }
    }

    /// The server became idle outside any transaction: SET LOCAL is over
    /// and there is nothing left to roll back.
    pub fn transaction_ended(&mut self) {
        if self.local.take().is_some() {
            self.generation += 1;
        }
        self.at_begin = None;
    }

    /// Follows the effects of statements the proxy lets through, in order.
    /// `in_transaction` is whether a transaction block was open before
    /// them.
    pub fn apply(&mut self, analysis: &Arc<Analysis>, in_transaction: bool) {
        let mut in_block = in_transaction;
        for (index, stmt) in analysis.statements.iter().enumerate() {
            for action in &stmt.actions {
                if action.execution != Execution::Now {
                    continue;
                }
                match &action.kind {
                    ActionKind::Transaction { kind } => match kind {
                        TransactionKind::Begin => {
                            if !in_block {
                                self.at_begin = Some(self.path.clone());
                            }
                            in_block = true;
                        }
                        TransactionKind::Commit | TransactionKind::Prepare => {
                            in_block = false;
                            self.at_begin = None;
                            if self.local.take().is_some() {
                                self.generation += 1;
                            }
                        }
                        TransactionKind::Rollback => {
                            in_block = false;
                            if let Some(p) = self.at_begin.take() {
                                if p != self.path {
                                    self.path = p;
                                    self.generation += 1;
                                }
                            }
                            if self.local.take().is_some() {
                                self.generation += 1;
                            }
                        }
                        _ => {}
                    },
                    ActionKind::Prepare { name } => {
                        self.prepare(
                            name,
                            PreparedText {
                                analysis: analysis.clone(),
                                index,
                            },
                        );
                    }
                    ActionKind::Deallocate { name } => match name {
                        Some(n) => {
                            self.prepared.remove(n);
                        }
                        None => self.prepared.clear(),
                    },
                    ActionKind::Discard {
                        target: DiscardTarget::All,
                    } => {
                        self.prepared.clear();
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
                    SearchPathChange::To(p) => Path::Known(p),
                    SearchPathChange::Default => Path::Known(self.default_path.clone()),
                    SearchPathChange::Unknown => Path::Unknown,
                };
                self.set_path(change.scope, to);
            }
        }
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

    #[test]
    fn set_reset_and_local() {
        let mut s = SessionState::new("app", Some("\"$user\", public"));
        assert_eq!(s.search_path(), ["$user", "public"]);
        s.apply(&analysis("SET search_path = app, public"), false);
        assert_eq!(s.search_path(), ["app", "public"]);
        s.apply(&analysis("BEGIN; SET LOCAL search_path = evil"), false);
        assert_eq!(s.search_path(), ["evil"]);
        s.transaction_ended();
        assert_eq!(s.search_path(), ["app", "public"]);
        s.apply(&analysis("RESET search_path"), false);
        assert_eq!(s.search_path(), ["$user", "public"]);
    }

    #[test]
    fn rollback_undoes_changes_in_the_block() {
        let mut s = SessionState::new("app", Some("public"));
        s.apply(&analysis("BEGIN; SET search_path = other; ROLLBACK"), false);
        assert_eq!(s.search_path(), ["public"]);
        s.apply(&analysis("BEGIN; SET search_path = other; COMMIT"), false);
        assert_eq!(s.search_path(), ["other"]);
    }

    #[test]
    fn run_time_values_make_the_path_unknown() {
        let mut s = SessionState::new("app", Some("public"));
        let g = s.generation();
        s.apply(
            &analysis("SELECT set_config('search_path', current_setting('x'), false)"),
            false,
        );
        assert!(!s.search_path_known());
        assert_ne!(s.generation(), g);
        s.apply(&analysis("SET search_path = public"), false);
        assert!(s.search_path_known());
    }

    #[test]
    fn prepared_names_keep_every_possible_text() {
        let mut s = SessionState::new("app", Some("public"));
        s.apply(&analysis("PREPARE p AS SELECT 1"), false);
        s.apply(&analysis("PREPARE p AS DELETE FROM t"), false);
        match s.prepared("p") {
            Some(Prepared::Texts(list)) => assert_eq!(list.len(), 2),
            other => panic!("{other:?}"),
        }
        s.apply(&analysis("DEALLOCATE p"), false);
        assert!(s.prepared("p").is_none());
        s.apply(&analysis("PREPARE q AS SELECT 1"), false);
        s.apply(&analysis("DISCARD ALL"), false);
        assert!(s.prepared("q").is_none());
    }
}
