//! A per-session memo of judgements, for messages that repeat.
//!
//! Drivers send the same Bind (and ORMs the same Parse text) over and over;
//! judging one again from its facts costs a few microseconds of name
//! resolution and a policy lookup, while the answer is the same as long as
//! nothing it was computed from changed. The memo keeps the last few
//! judgements with everything they were computed from, and answers only
//! when all of it is the same again:
//!
//! - the analyses judged (the very `Arc`s: an analysis is immutable, and
//!   the memo holds a clone, so an address cannot be reused for another
//!   one while the entry lives);
//! - every search_path the session may be under (again the very `Arc`s);
//! - the catalog snapshot's generation;
//! - whether the session's own schema changes are not yet in the snapshot.
//!
//! Everything else a judgement reads is fixed for the session (who, the
//! target's settings and policies) or excluded: messages whose verdict
//! depends on prepared statement or portal names (EXECUTE, FETCH, PREPARE,
//! DEALLOCATE, DISCARD), on code bodies read from the text (DO, CREATE
//! FUNCTION), or on the text's bytes (while the lexer is unsettled) are
//! never remembered, and nothing is remembered when a policy reads the time
//! of day.

use std::cell::RefCell;
use std::sync::Arc;

use portcullis_analysis::{ActionKind, Analysis, StatementFacts};

use crate::encoding::NameKey;
use crate::guard::Judgement;
use crate::opaque_scan;
use crate::session::paths::Path;
use crate::session::SessionState;

/// Entries kept per session: enough for the handful of statements an
/// application cycles through, small enough to scan linearly.
const CAPACITY: usize = 8;

/// What was judged.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    /// A statement string (Query or Parse), by its analysis.
    Text(Arc<Analysis>),
    /// A Bind of this prepared statement, prepared from these texts.
    Prepared(NameKey, Vec<(Arc<Analysis>, usize)>),
}

/// What is being judged now, borrowed: a lookup builds no key.
#[derive(Clone, Copy)]
pub(crate) enum Probe<'a> {
    Text(&'a Arc<Analysis>),
    /// The name, and the session whose texts it stands for.
    Prepared(&'a NameKey, &'a SessionState),
}

impl Subject {
    fn matches(&self, probe: Probe<'_>) -> bool {
        match (self, probe) {
            (Subject::Text(a), Probe::Text(b)) => Arc::ptr_eq(a, b),
            (Subject::Prepared(n, kept), Probe::Prepared(m, session)) => {
                if n != m {
                    return false;
                }
                let mut now = session.prepared(m);
                kept.iter().all(|(x, i)| {
                    now.next()
                        .is_some_and(|t| Arc::ptr_eq(x, &t.analysis) && *i == t.index)
                }) && now.next().is_none()
            }
            _ => false,
        }
    }
}

/// Everything a judgement was computed from, beyond what is fixed for the
/// session.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub subject: Subject,
    pub paths: Vec<Path>,
    pub generation: u64,
    pub own_changes_unseen: bool,
}

impl Key {
    fn matches(&self, probe: Probe<'_>, paths: &[Path], generation: u64, unseen: bool) -> bool {
        self.generation == generation
            && self.own_changes_unseen == unseen
            && self.paths.len() == paths.len()
            && self.paths.iter().zip(paths).all(|(a, b)| Arc::ptr_eq(a, b))
            && self.subject.matches(probe)
    }
}

/// Whether a judgement of these statements may be remembered: it must not
/// depend on session names or on the text beyond its analysis.
pub(crate) fn memorable<'a>(mut statements: impl Iterator<Item = &'a StatementFacts>) -> bool {
    statements.all(|s| {
        !opaque_scan::has_hidden_code(s)
            && s.actions.iter().all(|a| {
                !matches!(
                    a.kind,
                    ActionKind::Execute { .. }
                        | ActionKind::Cursor { .. }
                        | ActionKind::Prepare { .. }
                        | ActionKind::Deallocate { .. }
                        | ActionKind::Discard { .. }
                )
            })
    })
}

/// The memo; lives in the session state.
#[derive(Default)]
pub(crate) struct Memo {
    /// Each with when it was last used (a tick of `clock`): entries never
    /// move, so a hit copies nothing but the judgement's handles.
    entries: RefCell<Vec<(Key, Judgement, u64)>>,
    clock: std::cell::Cell<u64>,
}

impl Memo {
    /// The judgement remembered for `probe` under these inputs, if any.
    pub fn get(
        &self,
        probe: Probe<'_>,
        paths: &[Path],
        generation: u64,
        own_changes_unseen: bool,
    ) -> Option<Judgement> {
        let mut entries = self.entries.borrow_mut();
        let (_, judgement, used) = entries
            .iter_mut()
            .find(|(k, _, _)| k.matches(probe, paths, generation, own_changes_unseen))?;
        *used = self.tick();
        Some(judgement.clone())
    }

    fn tick(&self) -> u64 {
        let t = self.clock.get() + 1;
        self.clock.set(t);
        t
    }

    /// Remembers `judgement` under `key`, forgetting the least recently
    /// used entry when full.
    pub fn put(&self, key: Key, judgement: Judgement) {
        let used = self.tick();
        let mut entries = self.entries.borrow_mut();
        if entries.len() < CAPACITY {
            entries.push((key, judgement, used));
        } else if let Some(oldest) = entries.iter_mut().min_by_key(|(_, _, used)| *used) {
            *oldest = (key, judgement, used);
        }
    }
}

/// A cloned session (scratch state while judging a multi-statement string)
/// starts with an empty memo: it is thrown away after the message.
impl Clone for Memo {
    fn clone(&self) -> Self {
        Memo::default()
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Memo({} entries)", self.entries.borrow().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgement() -> Judgement {
        Judgement {
            analysis: None,
            statements: Arc::new([]),
            refusal: None,
            refused_by: None,
            enforced: true,
            changes_schema: false,
            row_limit: None,
            opaque: false,
            hidden_code: false,
            may_change_functions: false,
            inferred: Vec::new(),
            approval: None,
        }
    }

    fn text(sql: &str) -> Arc<Analysis> {
        Arc::new(portcullis_analysis::analyze(sql).expect("parses"))
    }

    fn key(a: &Arc<Analysis>) -> Key {
        Key {
            subject: Subject::Text(a.clone()),
            paths: Vec::new(),
            generation: 1,
            own_changes_unseen: false,
        }
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let memo = Memo::default();
        let texts: Vec<_> = (0..=CAPACITY)
            .map(|i| text(&format!("SELECT {i}")))
            .collect();
        for t in &texts[..CAPACITY] {
            memo.put(key(t), judgement());
        }
        // The first one is used again: the second is now the oldest.
        assert!(memo.get(Probe::Text(&texts[0]), &[], 1, false).is_some());
        memo.put(key(&texts[CAPACITY]), judgement());
        assert!(memo.get(Probe::Text(&texts[0]), &[], 1, false).is_some());
        assert!(memo.get(Probe::Text(&texts[1]), &[], 1, false).is_none());
        for t in &texts[2..] {
            assert!(memo.get(Probe::Text(t), &[], 1, false).is_some());
        }
    }

    #[test]
    fn a_changed_input_misses() {
        let memo = Memo::default();
        let t = text("SELECT 1");
        memo.put(key(&t), judgement());
        assert!(memo.get(Probe::Text(&t), &[], 2, false).is_none());
        assert!(memo.get(Probe::Text(&t), &[], 1, true).is_none());
        assert!(memo
            .get(Probe::Text(&text("SELECT 1")), &[], 1, false)
            .is_none());
        assert!(memo.get(Probe::Text(&t), &[], 1, false).is_some());
    }
}
