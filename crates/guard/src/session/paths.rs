//! The search_path as the server holds it, followed on the server's
//! evidence.
//!
//! Each statement that may change the path (SET, SET LOCAL, RESET,
//! set_config, DISCARD ALL, BEGIN, COMMIT, ROLLBACK, ROLLBACK TO) is
//! recorded as *pending* when it is sent, with the effects it has if it
//! runs. Only when the server completes that statement (its
//! CommandComplete) are its effects replayed onto the *confirmed* state, in
//! the order the server ran them; a statement the server skipped or that
//! failed is dropped. Transaction outcomes come from the server too: an
//! error inside a block marks it failed (its COMMIT then rolls back), an
//! error outside a block rolls the implicit transaction back, and each
//! ReadyForQuery says whether a block is open.
//!
//! A statement judged now may run after any prefix of the pending ones, so
//! it must pass under every path that may be in force: the confirmed ones,
//! every path a pending statement sets, and, while a ROLLBACK, COMMIT or
//! ROLLBACK TO is pending, the paths it could return to.

use std::collections::{HashMap, VecDeque};

use portcullis_analysis::resolve::{search_path_change, SearchPathChange};
use portcullis_analysis::{ActionKind, Execution, SettingScope, StatementFacts, TransactionKind};

/// One search_path: its items as SHOW prints them. Shared, since the same
/// few paths are copied between the confirmed state, the pending
/// statements and every message judged.
pub type Path = std::sync::Arc<[String]>;

/// How many search_paths may be possible at once before the proxy gives up
/// knowing (and judges under an unknown path).
pub const MAX_PATHS: usize = 6;

/// Stands for an unknown path: pg_catalog listed after a schema nobody
/// can name, so unqualified operators count as shadowable and unqualified
/// functions as unknown.
pub fn unknown_path() -> Path {
    vec!["$unknown".to_owned(), "pg_catalog".to_owned()].into()
}

/// Adds `path` to a set of possibilities; past [`MAX_PATHS`] the set
/// becomes the unknown path (which keeps every later operation on it
/// cheap, whatever a client sends).
pub(super) fn add(set: &mut Vec<Path>, path: Path) {
    if set.contains(&path) {
        return;
    }
    if set.len() >= MAX_PATHS {
        *set = vec![unknown_path()];
        return;
    }
    set.push(path);
}

pub(super) fn union(set: &mut Vec<Path>, more: &[Path]) {
    for p in more {
        add(set, p.clone());
    }
}

/// What one statement does to the path when it runs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathEffect {
    /// SET, RESET, set_config(..., false), DISCARD ALL.
    Set(Path),
    /// SET LOCAL, set_config(..., true): until the transaction ends.
    SetLocal(Path),
    /// May or may not be in force afterwards (set_config with a computed
    /// is_local, one of several statements a portal may stand for).
    Maybe(Path),
    Begin,
    Commit,
    Rollback,
    RollbackTo,
    /// Anything seen in this transaction may be back (a portal that may
    /// stand for transaction control).
    Uncertain,
}

/// The path effects of `stmt`, in the order they happen.
pub fn effects(stmt: &StatementFacts, default: &Path) -> Vec<PathEffect> {
    let mut out = Vec::new();
    for action in &stmt.actions {
        if action.execution != Execution::Now {
            continue;
        }
        if let ActionKind::Transaction { kind } = &action.kind {
            match kind {
                TransactionKind::Begin => out.push(PathEffect::Begin),
                TransactionKind::Commit | TransactionKind::Prepare => out.push(PathEffect::Commit),
                TransactionKind::Rollback => out.push(PathEffect::Rollback),
                TransactionKind::RollbackTo => out.push(PathEffect::RollbackTo),
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
            SearchPathChange::To(p) => p.into(),
            SearchPathChange::Default => default.clone(),
            SearchPathChange::Unknown => unknown_path(),
        };
        out.push(match change.scope {
            SettingScope::Session => PathEffect::Set(to),
            SettingScope::Transaction => PathEffect::SetLocal(to),
            SettingScope::Unknown => PathEffect::Maybe(to),
        });
    }
    out
}

/// The confirmed state and what is pending.
#[derive(Debug, Clone)]
pub(super) struct Paths {
    /// Session-level paths that may be in force (usually exactly one).
    current: Vec<Path>,
    /// SET LOCAL paths in force until the transaction ends.
    local: Vec<Path>,
    /// An explicit transaction block is open.
    in_block: bool,
    /// ... and has failed: its COMMIT rolls back.
    block_failed: bool,
    /// The paths when the block began (what its ROLLBACK returns to).
    block_start: Vec<Path>,
    /// Every path in force at some point of the block (ROLLBACK TO).
    block_seen: Vec<Path>,
    /// The paths when the current implicit transaction began (what an
    /// error outside a block returns to).
    txn_start: Vec<Path>,
    /// Statements sent and not yet answered, by message sequence number
    /// (oldest first: the server answers in order).
    pending: VecDeque<(u64, Vec<PathEffect>)>,
    /// How many pending statements set each path (what `possible` adds).
    pending_paths: HashMap<Path, usize>,
    /// How many pending statements may return to an earlier path
    /// (ROLLBACK, COMMIT, ROLLBACK TO).
    pending_returns: usize,
    /// An error since the last ReadyForQuery.
    failed_since_ready: bool,
    /// Every path that may be in force for the next statement.
    possible: Vec<Path>,
}

impl Paths {
    pub(super) fn new(path: Path) -> Paths {
        let one = vec![path];
        Paths {
            current: one.clone(),
            local: Vec::new(),
            in_block: false,
            block_failed: false,
            block_start: one.clone(),
            block_seen: one.clone(),
            txn_start: one.clone(),
            pending: VecDeque::new(),
            pending_paths: HashMap::new(),
            pending_returns: 0,
            failed_since_ready: false,
            possible: one,
        }
    }

    pub(super) fn possible(&self) -> &[Path] {
        &self.possible
    }

    fn recompute(&mut self) {
        // Reuses the allocation: this runs at every ReadyForQuery.
        let mut p = std::mem::take(&mut self.possible);
        p.clone_from(&self.current);
        union(&mut p, &self.local);
        if self.pending_paths.len() > MAX_PATHS {
            p = vec![unknown_path()];
        } else {
            for x in self.pending_paths.keys() {
                add(&mut p, x.clone());
            }
        }
        if self.pending_returns > 0 {
            self.widen(&mut p, &PathEffect::Uncertain);
        }
        self.possible = p;
    }

    /// Counts (`up`) or uncounts the possibilities a pending statement adds.
    fn count(&mut self, effects: &[PathEffect], up: bool) {
        for e in effects {
            match e {
                PathEffect::Set(x) | PathEffect::SetLocal(x) | PathEffect::Maybe(x) => {
                    if up {
                        *self.pending_paths.entry(x.clone()).or_default() += 1;
                    } else if let Some(n) = self.pending_paths.get_mut(x) {
                        *n -= 1;
                        if *n == 0 {
                            self.pending_paths.remove(x);
                        }
                    }
                }
                PathEffect::Begin => {}
                PathEffect::Commit
                | PathEffect::Rollback
                | PathEffect::RollbackTo
                | PathEffect::Uncertain => {
                    if up {
                        self.pending_returns += 1;
                    } else {
                        self.pending_returns = self.pending_returns.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// Adds to `set` every path `e` may leave in force when it is not known
    /// whether (or after what) it ran.
    fn widen(&self, set: &mut Vec<Path>, e: &PathEffect) {
        match e {
            PathEffect::Set(x) | PathEffect::SetLocal(x) | PathEffect::Maybe(x) => {
                add(set, x.clone())
            }
            PathEffect::Begin => {}
            PathEffect::Commit
            | PathEffect::Rollback
            | PathEffect::RollbackTo
            | PathEffect::Uncertain => {
                union(set, &self.block_start);
                union(set, &self.block_seen);
                union(set, &self.txn_start);
            }
        }
    }

    /// A statement with `effects` was sent as message `seq`.
    pub(super) fn sent(&mut self, seq: u64, effects: Vec<PathEffect>) {
        if effects.is_empty() {
            return;
        }
        self.count(&effects, true);
        // Only adds possibilities: no need to look at the rest.
        let mut possible = std::mem::take(&mut self.possible);
        for e in &effects {
            self.widen(&mut possible, e);
        }
        self.possible = possible;
        self.pending.push_back((seq, effects));
    }

    /// The server answered statement `seq`: replays its effects if it ran.
    pub(super) fn settle(&mut self, seq: u64, ran: bool) {
        // Answers come in order: the front is almost always the one.
        let i = match self.pending.front() {
            Some((s, _)) if *s == seq => 0,
            _ => match self.pending.iter().position(|(s, _)| *s == seq) {
                Some(i) => i,
                None => return,
            },
        };
        let Some((_, effects)) = self.pending.remove(i) else {
            return;
        };
        self.count(&effects, false);
        if ran {
            for e in effects {
                self.replay(e);
            }
        }
        self.recompute();
    }

    fn replay(&mut self, e: PathEffect) {
        match e {
            PathEffect::Set(p) => {
                self.current = vec![p.clone()];
                add(&mut self.block_seen, p);
            }
            PathEffect::SetLocal(p) => {
                self.local = vec![p.clone()];
                add(&mut self.block_seen, p);
            }
            PathEffect::Maybe(p) => {
                add(&mut self.current, p.clone());
                add(&mut self.block_seen, p);
            }
            PathEffect::Begin => {
                if !self.in_block {
                    // A BEGIN in the middle of a Query takes in the
                    // statements before it: its ROLLBACK undoes them too.
                    self.in_block = true;
                    self.block_start = self.txn_start.clone();
                    self.block_seen = self.txn_start.clone();
                    union(&mut self.block_seen, &self.current);
                }
            }
            PathEffect::Commit => {
                if self.block_failed {
                    self.current = self.block_start.clone();
                }
                self.end_transaction();
            }
            PathEffect::Rollback => {
                self.current = if self.in_block {
                    self.block_start.clone()
                } else {
                    // No block: the Query's implicit transaction is
                    // rolled back (the server only warns).
                    self.txn_start.clone()
                };
                self.end_transaction();
            }
            PathEffect::RollbackTo => {
                let seen = self.block_seen.clone();
                union(&mut self.current, &seen);
                self.block_failed = false;
            }
            PathEffect::Uncertain => {
                let mut current = std::mem::take(&mut self.current);
                self.widen(&mut current, &PathEffect::Uncertain);
                self.current = current;
            }
        }
    }

    fn end_transaction(&mut self) {
        self.in_block = false;
        self.block_failed = false;
        self.local.clear();
        self.txn_start.clone_from(&self.current);
    }

    /// An ErrorResponse from the server.
    pub(super) fn error(&mut self) {
        self.failed_since_ready = true;
        if self.in_block {
            self.block_failed = true;
        }
    }

    /// Code the analysis cannot see ran, or may run: it may have set any
    /// path.
    pub(super) fn opaque(&mut self) {
        add(&mut self.current, unknown_path());
        self.recompute();
    }

    /// The server reported its search_path (PostgreSQL 18 and later send
    /// ParameterStatus for it).
    pub(super) fn reported(&mut self, path: Path) {
        add(&mut self.current, path);
        self.recompute();
    }

    /// A ReadyForQuery: `idle` when outside any block; `drained` when every
    /// request sent so far has been answered.
    pub(super) fn ready(&mut self, idle: bool, drained: bool) {
        if idle {
            if self.failed_since_ready {
                // The implicit transaction that failed is rolled back.
                self.current.clone_from(&self.txn_start);
            }
            self.end_transaction();
        } else if !self.in_block {
            // A block the replay did not see begin (BEGIN inside a
            // procedure, say): it may return to anything seen.
            self.in_block = true;
            let mut start = self.txn_start.clone();
            union(&mut start, &self.current);
            self.block_start = start.clone();
            self.block_seen = start;
        }
        self.failed_since_ready = false;
        if drained {
            // Statements whose answer was never tied to them (a COPY):
            // whatever they set may be in force.
            self.pending_paths.clear();
            self.pending_returns = 0;
            if !self.pending.is_empty() {
                let mut current = std::mem::take(&mut self.current);
                for (_, effects) in std::mem::take(&mut self.pending) {
                    for e in &effects {
                        self.widen(&mut current, e);
                    }
                }
                self.current = current;
            }
            if idle {
                self.txn_start.clone_from(&self.current);
            }
        }
        self.recompute();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(items: &[&str]) -> Path {
        items
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into()
    }

    fn sorted(mut v: Vec<Path>) -> Vec<Path> {
        v.sort();
        v
    }

    /// Runs one Query of statements with `effects`, the first `ok` of
    /// which complete (then an error if fewer than all), and its
    /// ReadyForQuery.
    fn query(paths: &mut Paths, seq: &mut u64, stmts: &[Vec<PathEffect>], ok: usize, idle: bool) {
        let first = *seq;
        for e in stmts {
            paths.sent(*seq, e.clone());
            *seq += 1;
        }
        for (i, _) in stmts.iter().enumerate() {
            paths.settle(first + i as u64, i < ok);
        }
        if ok < stmts.len() {
            paths.error();
        }
        paths.ready(idle, true);
    }

    #[test]
    fn begin_set_rollback_in_three_queries_returns_to_the_start() {
        let mut s = Paths::new(p(&["public"]));
        let mut seq = 1;
        query(&mut s, &mut seq, &[vec![PathEffect::Begin]], 1, false);
        query(
            &mut s,
            &mut seq,
            &[vec![PathEffect::Set(p(&["evil"]))]],
            1,
            false,
        );
        assert_eq!(s.possible(), [p(&["evil"])]);
        query(&mut s, &mut seq, &[vec![PathEffect::Rollback]], 1, true);
        assert_eq!(s.possible(), [p(&["public"])]);
    }

    #[test]
    fn a_begin_that_never_ran_restores_nothing() {
        // SELECT 1/0; BEGIN -- then SET -- then ROLLBACK (no block).
        let mut s = Paths::new(p(&["public"]));
        let mut seq = 1;
        query(
            &mut s,
            &mut seq,
            &[vec![], vec![PathEffect::Begin]],
            0,
            true,
        );
        query(
            &mut s,
            &mut seq,
            &[vec![PathEffect::Set(p(&["shadow"]))]],
            1,
            true,
        );
        query(&mut s, &mut seq, &[vec![PathEffect::Rollback]], 1, true);
        assert_eq!(s.possible(), [p(&["shadow"])]);
    }

    #[test]
    fn while_pending_every_outcome_is_possible() {
        let mut s = Paths::new(p(&["public"]));
        s.sent(1, vec![PathEffect::Begin]);
        s.sent(2, vec![PathEffect::Set(p(&["shadow"]))]);
        s.sent(3, vec![PathEffect::Rollback]);
        assert_eq!(
            sorted(s.possible().to_vec()),
            [p(&["public"]), p(&["shadow"])]
        );
        // The BEGIN failed: the SET stays, the ROLLBACK has no block.
        s.settle(1, false);
        s.error();
        s.ready(true, false);
        s.settle(2, true);
        s.ready(true, false);
        s.settle(3, true);
        s.ready(true, true);
        assert_eq!(s.possible(), [p(&["shadow"])]);
    }

    #[test]
    fn a_rollback_without_begin_undoes_earlier_statements_of_its_query() {
        let mut s = Paths::new(p(&["public"]));
        let mut seq = 1;
        query(
            &mut s,
            &mut seq,
            &[vec![PathEffect::Set(p(&["x"]))], vec![PathEffect::Rollback]],
            2,
            true,
        );
        assert_eq!(s.possible(), [p(&["public"])]);
        // A BEGIN in the middle takes in the statements before it.
        query(
            &mut s,
            &mut seq,
            &[
                vec![PathEffect::Set(p(&["x"]))],
                vec![PathEffect::Begin],
                vec![PathEffect::Set(p(&["y"]))],
                vec![PathEffect::Rollback],
            ],
            4,
            true,
        );
        assert_eq!(s.possible(), [p(&["public"])]);
    }

    #[test]
    fn an_error_outside_a_block_undoes_the_implicit_transaction() {
        let mut s = Paths::new(p(&["public"]));
        let mut seq = 1;
        query(
            &mut s,
            &mut seq,
            &[vec![PathEffect::Set(p(&["x"]))], vec![]],
            1,
            true,
        );
        assert_eq!(s.possible(), [p(&["public"])]);
    }

    #[test]
    fn commit_of_a_failed_block_rolls_back() {
        let mut s = Paths::new(p(&["evil"]));
        let mut seq = 1;
        query(&mut s, &mut seq, &[vec![PathEffect::Begin]], 1, false);
        query(&mut s, &mut seq, &[vec![]], 0, false);
        // In a failed block the SET fails too.
        query(
            &mut s,
            &mut seq,
            &[vec![PathEffect::Set(p(&["public"]))]],
            0,
            false,
        );
        query(&mut s, &mut seq, &[vec![PathEffect::Commit]], 1, true);
        assert_eq!(s.possible(), [p(&["evil"])]);
    }

    #[test]
    fn rollback_to_a_savepoint_may_return_to_anything_seen() {
        let mut s = Paths::new(p(&["evil"]));
        let mut seq = 1;
        query(&mut s, &mut seq, &[vec![PathEffect::Begin]], 1, false);
        query(&mut s, &mut seq, &[vec![]], 1, false); // SAVEPOINT
        query(
            &mut s,
            &mut seq,
            &[vec![PathEffect::Set(p(&["public"]))]],
            1,
            false,
        );
        query(&mut s, &mut seq, &[vec![PathEffect::RollbackTo]], 1, false);
        assert!(s.possible().contains(&p(&["evil"])));
        query(&mut s, &mut seq, &[vec![PathEffect::Commit]], 1, true);
        assert!(s.possible().contains(&p(&["evil"])));
    }

    #[test]
    fn set_local_ends_with_the_block() {
        let mut s = Paths::new(p(&["public"]));
        let mut seq = 1;
        query(
            &mut s,
            &mut seq,
            &[
                vec![PathEffect::Begin],
                vec![PathEffect::SetLocal(p(&["evil"]))],
            ],
            2,
            false,
        );
        assert!(s.possible().contains(&p(&["evil"])));
        query(&mut s, &mut seq, &[vec![PathEffect::Commit]], 1, true);
        assert_eq!(s.possible(), [p(&["public"])]);
    }
}
