//! Prepared statements and portals, as the server may hold them.
//!
//! The proxy judges a message before the server has run the ones sent
//! ahead of it, and any of those may fail or be skipped (after an error the
//! server discards extended-protocol messages up to Sync, and the rest of a
//! Query). So a name does not stand for one text but for every text that
//! may be behind it, and a change counts only on the server's evidence:
//!
//! - a definition (Parse, SQL PREPARE, Bind of a portal) is possible as soon
//!   as it is sent, next to whatever the name stood for before;
//! - its success (ParseComplete, PREPARE's CommandComplete, BindComplete)
//!   removes what the name stood for *before it* (a named definition only
//!   succeeds when the name is free, the unnamed one replaces); its failure
//!   or skipping removes it;
//! - a removal (Close, DEALLOCATE, DISCARD ALL) changes nothing when sent;
//!   its success removes what the name stood for before it;
//! - portals go when no transaction can be open: every request answered
//!   and the last ReadyForQuery said idle.
//!
//! Every change carries a sequence number, so evidence about one message
//! never touches definitions sent after it. Each change the server will
//! answer comes back to the proxy as a [`Ticket`], which it keeps with the
//! message in its ledger and hands back with the outcome.

use std::collections::HashMap;

use crate::encoding::NameKey;

/// A message's change to prepared statements or portals, to be settled by
/// the server's answer to that message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    seq: u64,
    change: Change,
}

impl Ticket {
    /// The sequence number of the message that made the change.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    DefineStatement(NameKey),
    CloseStatement(NameKey),
    /// DEALLOCATE ALL, DISCARD ALL.
    CloseAllStatements,
    BindPortal(NameKey),
    ClosePortal(NameKey),
}

/// Whether two definitions are the same for judging (so a client that
/// pipelines the same definition many times adds one candidate).
pub trait Same {
    fn same(&self, other: &Self) -> bool;
}

impl Same for &str {
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

impl Same for () {
    fn same(&self, _: &Self) -> bool {
        true
    }
}

/// What one name may stand for: distinct definitions, each with the
/// sequence numbers of the messages that made it, oldest first.
#[derive(Debug, Clone)]
struct Slot<T> {
    candidates: Vec<(Vec<u64>, T)>,
}

/// One namespace (statements or portals) of one session.
#[derive(Debug, Clone)]
pub(super) struct Names<T> {
    /// The unnamed statement or portal, kept apart: most drivers use it for
    /// every statement, several times per message, and a hash and a probe
    /// per use were a measurable part of the extended protocol's cost.
    unnamed: Option<Slot<T>>,
    slots: HashMap<NameKey, Slot<T>>,
    max_names: usize,
    max_candidates: usize,
}

/// Why a definition cannot be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The session has too many names.
    Names,
    /// The name has too many definitions the server has not answered yet.
    Candidates,
}

impl<T: Same> Names<T> {
    pub(super) fn new(max_names: usize, max_candidates: usize) -> Self {
        Names {
            unnamed: None,
            slots: HashMap::new(),
            max_names,
            max_candidates,
        }
    }

    fn slot(&self, key: &NameKey) -> Option<&Slot<T>> {
        if key.is_unnamed() {
            self.unnamed.as_ref()
        } else {
            self.slots.get(key)
        }
    }

    /// Every definition `key` may stand for (empty: none).
    pub(super) fn get(&self, key: &NameKey) -> impl Iterator<Item = &T> {
        self.slot(key)
            .into_iter()
            .flat_map(|s| s.candidates.iter().map(|(_, t)| t))
    }

    pub(super) fn contains(&self, key: &NameKey) -> bool {
        self.slot(key).is_some()
    }

    /// A definition sent as message `seq`.
    pub(super) fn define(&mut self, seq: u64, key: NameKey, value: T) -> Result<(), Overflow> {
        let new = || Slot {
            candidates: Vec::new(),
        };
        let slot = if key.is_unnamed() {
            self.unnamed.get_or_insert_with(new)
        } else {
            if !self.slots.contains_key(&key) && self.slots.len() >= self.max_names {
                return Err(Overflow::Names);
            }
            self.slots.entry(key).or_insert_with(new)
        };
        if let Some((seqs, _)) = slot.candidates.iter_mut().find(|(_, v)| v.same(&value)) {
            seqs.push(seq);
            return Ok(());
        }
        if slot.candidates.len() >= self.max_candidates {
            return Err(Overflow::Candidates);
        }
        slot.candidates.push((vec![seq], value));
        Ok(())
    }

    /// Message `seq` left `key` standing for nothing older than itself:
    /// a definition or a close succeeded.
    fn drop_older(&mut self, key: &NameKey, seq: u64) {
        self.drop_where(key, |s| s < seq);
    }

    /// Definition `seq` of `key` failed or never ran.
    fn drop_exact(&mut self, key: &NameKey, seq: u64) {
        self.drop_where(key, |s| s == seq);
    }

    fn drop_where(&mut self, key: &NameKey, gone: impl Fn(u64) -> bool) {
        if key.is_unnamed() {
            if let Some(slot) = self.unnamed.as_mut() {
                retain(slot, &gone);
                if slot.candidates.is_empty() {
                    self.unnamed = None;
                }
            }
        } else if let Some(slot) = self.slots.get_mut(key) {
            retain(slot, &gone);
            if slot.candidates.is_empty() {
                self.slots.remove(key);
            }
        }
    }

    /// Everything defined before `seq` is gone.
    pub(super) fn drop_all_older(&mut self, seq: u64) {
        if let Some(slot) = self.unnamed.as_mut() {
            retain(slot, &|s| s < seq);
            if slot.candidates.is_empty() {
                self.unnamed = None;
            }
        }
        self.slots.retain(|_, slot| {
            retain(slot, &|s| s < seq);
            !slot.candidates.is_empty()
        });
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len() + usize::from(self.unnamed.is_some())
    }
}

fn retain<T>(slot: &mut Slot<T>, gone: &dyn Fn(u64) -> bool) {
    for (seqs, _) in slot.candidates.iter_mut() {
        seqs.retain(|s| !gone(*s));
    }
    slot.candidates.retain(|(seqs, _)| !seqs.is_empty());
}

/// Prepared statements and portals together, with the sequence numbers.
#[derive(Debug, Clone)]
pub(super) struct Registry<S, P> {
    next: u64,
    pub(super) statements: Names<S>,
    pub(super) portals: Names<P>,
}

impl<S: Same, P: Same> Registry<S, P> {
    pub(super) fn new(
        max_statements: usize,
        max_portals: usize,
        max_candidates: usize,
    ) -> Registry<S, P> {
        Registry {
            next: 1,
            statements: Names::new(max_statements, max_candidates),
            portals: Names::new(max_portals, max_candidates),
        }
    }

    /// The sequence number of the next message.
    pub(super) fn mark(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        seq
    }

    pub(super) fn define_statement(&mut self, key: NameKey, value: S) -> Result<Ticket, Overflow> {
        let seq = self.mark();
        self.statements.define(seq, key.clone(), value)?;
        Ok(Ticket {
            seq,
            change: Change::DefineStatement(key),
        })
    }

    pub(super) fn close_statement(&mut self, key: NameKey) -> Ticket {
        Ticket {
            seq: self.mark(),
            change: Change::CloseStatement(key),
        }
    }

    pub(super) fn close_all_statements(&mut self) -> Ticket {
        Ticket {
            seq: self.mark(),
            change: Change::CloseAllStatements,
        }
    }

    pub(super) fn bind_portal(&mut self, key: NameKey, value: P) -> Result<Ticket, Overflow> {
        let seq = self.mark();
        self.portals.define(seq, key.clone(), value)?;
        Ok(Ticket {
            seq,
            change: Change::BindPortal(key),
        })
    }

    pub(super) fn close_portal(&mut self, key: NameKey) -> Ticket {
        Ticket {
            seq: self.mark(),
            change: Change::ClosePortal(key),
        }
    }

    /// The server's answer to the message `ticket` came from: `ran` when it
    /// succeeded, false when it failed or was skipped.
    pub(super) fn settle(&mut self, ticket: Ticket, ran: bool) {
        let seq = ticket.seq;
        match (ticket.change, ran) {
            (Change::DefineStatement(k), true) | (Change::CloseStatement(k), true) => {
                self.statements.drop_older(&k, seq)
            }
            (Change::DefineStatement(k), false) => self.statements.drop_exact(&k, seq),
            (Change::CloseAllStatements, true) => self.statements.drop_all_older(seq),
            (Change::BindPortal(k), true) | (Change::ClosePortal(k), true) => {
                self.portals.drop_older(&k, seq)
            }
            (Change::BindPortal(k), false) => self.portals.drop_exact(&k, seq),
            (_, false) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Encodings;

    fn key(s: &str) -> NameKey {
        Encodings::default().sql_name(s).unwrap()
    }

    fn texts(r: &Registry<&'static str, ()>, k: &str) -> Vec<&'static str> {
        r.statements.get(&key(k)).copied().collect()
    }

    /// The unnamed statement is kept apart from the map, under the same
    /// rules.
    #[test]
    fn the_unnamed_statement_follows_the_same_rules() {
        let mut r: Registry<&str, ()> = Registry::new(1, 10, 8);
        let named = r.define_statement(key("s1"), "SELECT").unwrap();
        r.settle(named, true);
        // The bound on names does not count the unnamed one.
        let first = r.define_statement(key(""), "DELETE").unwrap();
        let second = r.define_statement(key(""), "UPDATE").unwrap();
        assert_eq!(texts(&r, ""), ["DELETE", "UPDATE"]);
        r.settle(first, true);
        assert_eq!(texts(&r, ""), ["DELETE", "UPDATE"]);
        r.settle(second, false);
        assert_eq!(texts(&r, ""), ["DELETE"]);
        let close_all = r.close_all_statements();
        r.settle(close_all, true);
        assert!(texts(&r, "").is_empty() && texts(&r, "s1").is_empty());
        assert_eq!(r.statements.len(), 0);
    }

    #[test]
    fn a_close_the_server_skipped_changes_nothing() {
        let mut r: Registry<&str, ()> = Registry::new(10, 10, 8);
        let t = r.define_statement(key("s1"), "DELETE").unwrap();
        r.settle(t, true);
        let close = r.close_statement(key("s1"));
        r.settle(close, false);
        let redefine = r.define_statement(key("s1"), "SELECT").unwrap();
        // Pending: the old text is still possible.
        assert_eq!(texts(&r, "s1"), ["DELETE", "SELECT"]);
        // 42P05: the name was taken.
        r.settle(redefine, false);
        assert_eq!(texts(&r, "s1"), ["DELETE"]);
    }

    #[test]
    fn a_close_counts_once_the_server_confirms_it() {
        let mut r: Registry<&str, ()> = Registry::new(10, 10, 8);
        let t = r.define_statement(key("s1"), "DELETE").unwrap();
        let close = r.close_statement(key("s1"));
        let again = r.define_statement(key("s1"), "SELECT").unwrap();
        assert_eq!(texts(&r, "s1"), ["DELETE", "SELECT"]);
        r.settle(t, true);
        r.settle(close, true);
        assert_eq!(texts(&r, "s1"), ["SELECT"], "defined after the close");
        r.settle(again, true);
        assert_eq!(texts(&r, "s1"), ["SELECT"]);
    }

    #[test]
    fn success_of_a_definition_drops_what_came_before() {
        let mut r: Registry<&str, ()> = Registry::new(10, 10, 8);
        let a = r.define_statement(NameKey::unnamed(), "A").unwrap();
        let b = r.define_statement(NameKey::unnamed(), "B").unwrap();
        r.settle(a, true);
        assert_eq!(r.statements.get(&NameKey::unnamed()).count(), 2);
        r.settle(b, true);
        assert_eq!(
            r.statements
                .get(&NameKey::unnamed())
                .copied()
                .collect::<Vec<_>>(),
            ["B"]
        );
    }

    #[test]
    fn deallocate_all_spares_later_definitions() {
        let mut r: Registry<&str, ()> = Registry::new(10, 10, 8);
        r.define_statement(key("a"), "A").unwrap();
        let all = r.close_all_statements();
        r.define_statement(key("b"), "B").unwrap();
        r.settle(all, true);
        assert!(texts(&r, "a").is_empty());
        assert_eq!(texts(&r, "b"), ["B"]);
    }

    #[test]
    fn portals_end_with_their_transaction() {
        let mut r: Registry<(), &str> = Registry::new(10, 10, 8);
        r.bind_portal(key("p"), "DELETE").unwrap();
        let sync = r.mark();
        r.bind_portal(key("q"), "UPDATE").unwrap();
        r.portals.drop_all_older(sync);
        assert_eq!(r.portals.get(&key("p")).count(), 0);
        assert_eq!(r.portals.get(&key("q")).count(), 1);
    }

    #[test]
    fn bounds_refuse_instead_of_forgetting() {
        let mut r: Registry<&str, ()> = Registry::new(2, 10, 2);
        r.define_statement(key("a"), "A").unwrap();
        r.define_statement(key("a"), "A2").unwrap();
        assert_eq!(
            r.define_statement(key("a"), "A3").unwrap_err(),
            Overflow::Candidates
        );
        r.define_statement(key("b"), "B").unwrap();
        assert_eq!(
            r.define_statement(key("c"), "C").unwrap_err(),
            Overflow::Names
        );
        assert_eq!(r.statements.len(), 2);
    }
}
