//! Rows changed per time window (`[[limit]] max_rows_changed` and
//! `rows_changed_window`), counted per identity across all its sessions on
//! this proxy.
//!
//! Each data-changing statement runs under the row-limit wrapping
//! (`session/row_limit.rs`) with a limit no larger than what is left of
//! every budget in force. That amount is reserved when the statement is
//! sent, so statements in flight in other sessions cannot spend it too;
//! when the statement completes, the rows it really changed (counted by
//! the server, cascades and triggers included) are charged at that moment
//! and the reservation is released. A statement that never completes
//! (refused, rolled back over its limit, discarded after an error, or its
//! session gone) charges nothing.
//!
//! Rows are charged when their statement completes, even if its
//! transaction is rolled back later: the budget errs on the side of
//! counting too much.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one `[[limit]]` allows: `max` rows per `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    pub name: String,
    pub max: u64,
    pub window: Duration,
}

/// One identity's spending under one `[[limit]]` entry.
#[derive(Debug, Default)]
pub struct Budget {
    state: Mutex<Spent>,
}

#[derive(Debug, Default)]
struct Spent {
    /// Rows charged, oldest first, with when.
    charged: VecDeque<(Instant, u64)>,
    /// Their sum.
    total: u64,
    /// Rows reserved by statements in flight.
    reserved: u64,
}

impl Spent {
    fn forget_before(&mut self, cutoff: Option<Instant>) {
        let Some(cutoff) = cutoff else { return };
        while let Some(&(at, n)) = self.charged.front() {
            if at > cutoff {
                break;
            }
            self.charged.pop_front();
            self.total -= n;
        }
    }
}

impl Budget {
    /// Rows still free under `a` at `now`: the allowance less what was
    /// charged within the window and what is reserved.
    pub fn available(&self, a: &Allowance, now: Instant) -> u64 {
        let mut s = self.lock();
        s.forget_before(now.checked_sub(a.window));
        a.max.saturating_sub(s.total).saturating_sub(s.reserved)
    }

    /// Rows charged within the window ending `now`.
    pub fn spent(&self, a: &Allowance, now: Instant) -> u64 {
        let mut s = self.lock();
        s.forget_before(now.checked_sub(a.window));
        s.total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spent> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `n` rows until the returned reservation is settled or
    /// dropped (what [`Budget::reserve_up_to`] does with what is free).
    #[cfg(test)]
    pub fn reserve(self: &Arc<Self>, n: u64) -> Reservation {
        self.lock().reserved += n;
        Reservation {
            budget: self.clone(),
            amount: n,
        }
    }

    /// Reserves as many of `want` rows as are free under `a` at `now`, in
    /// one step (two sessions cannot both take the last rows).
    pub fn reserve_up_to(self: &Arc<Self>, a: &Allowance, want: u64, now: Instant) -> Reservation {
        let mut s = self.lock();
        s.forget_before(now.checked_sub(a.window));
        let free = a.max.saturating_sub(s.total).saturating_sub(s.reserved);
        let amount = want.min(free);
        s.reserved += amount;
        Reservation {
            budget: self.clone(),
            amount,
        }
    }
}

/// Rows held for a statement in flight.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    amount: u64,
}

impl Reservation {
    /// Gives back all but `n` of the reserved rows.
    fn shrink_to(&mut self, n: u64) {
        if n < self.amount {
            let mut s = self.budget.lock();
            s.reserved = s.reserved.saturating_sub(self.amount - n);
            self.amount = n;
        }
    }

    /// The statement completed having changed `rows`: charge them at
    /// `now` and release the reservation.
    pub fn settle(self, rows: u64, now: Instant) {
        let mut s = self.budget.lock();
        if rows > 0 {
            s.charged.push_back((now, rows));
            s.total = s.total.saturating_add(rows);
        }
        // Drop releases the reservation.
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        s.reserved = s.reserved.saturating_sub(self.amount);
    }
}

/// Every identity's budgets, shared by all sessions (and kept across
/// reloads: a reload that changes an allowance applies it to what was
/// already spent).
#[derive(Debug, Default)]
pub struct Budgets {
    map: Mutex<HashMap<(String, String), Arc<Budget>>>,
}

/// Past this many budgets, ones nobody holds and with nothing charged
/// within the longest window a limit may have (31 days) are dropped.
const PRUNE_AT: usize = 10_000;
/// A statement that only reads reserves at most this share (1/8) of what
/// is left.
const READ_SHARE: u64 = 8;
/// The longest `rows_changed_window` the configuration accepts.
const LONGEST_WINDOW: Duration = Duration::from_secs(31 * 86_400);

impl Budgets {
    /// The budget of `subject` under the limit named `name`.
    pub fn of(&self, name: &str, subject: &str) -> Arc<Budget> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PRUNE_AT {
            let now = Instant::now();
            map.retain(|_, b| {
                Arc::strong_count(b) > 1 || {
                    let s = b.lock();
                    s.reserved > 0
                        || s.charged.back().is_some_and(|(at, _)| {
                            now.saturating_duration_since(*at) < LONGEST_WINDOW
                        })
                }
            });
        }
        map.entry((name.to_owned(), subject.to_owned()))
            .or_default()
            .clone()
    }
}

/// What a session draws on: each allowance in force with its budget.
#[derive(Debug, Clone, Default)]
pub struct SessionBudgets {
    pub entries: Vec<(Allowance, Arc<Budget>)>,
}

/// How a statement may run under the budgets.
#[derive(Debug)]
pub enum Draw {
    /// Under at most `limit` rows; `charge` settles what it changed.
    /// `tightest` names the allowance that set the limit, when one did.
    Run {
        limit: u64,
        tightest: Option<Allowance>,
        charge: Charge,
    },
    /// Nothing is left of `allowance`.
    Spent { allowance: Allowance, spent: u64 },
}

/// The reservations of one statement, settled together by the rows it
/// changed. Dropped unsettled, it releases them and charges nothing.
#[derive(Debug, Default)]
pub struct Charge(Vec<Reservation>);

impl Charge {
    /// What it holds: the most rows its statement may change.
    pub fn reserved(&self) -> u64 {
        self.0.iter().map(|r| r.amount).max().unwrap_or(0)
    }

    pub fn settle(self, rows: u64, now: Instant) {
        for r in self.0 {
            r.settle(rows, now);
        }
    }
}

impl SessionBudgets {
    /// The budgets of `subject` under `limits` (its `[[limit]]`s with
    /// `max_rows_changed`).
    pub fn of(
        all: &Budgets,
        limits: &[portcullis_config::RowsChanged],
        subject: &str,
    ) -> SessionBudgets {
        SessionBudgets {
            entries: limits
                .iter()
                .map(|l| {
                    (
                        Allowance {
                            name: l.name.clone(),
                            max: l.max,
                            window: l.window,
                        },
                        all.of(&l.name, subject),
                    )
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reserves for a statement whose own row limit is `limit` (the
    /// target's, or `u64::MAX` for none): it runs under the smaller of
    /// that and what every budget has left.
    ///
    /// A statement that only reads (as far as its text shows; code it
    /// calls may write) reserves at most an eighth of what is left, so
    /// that a long read does not leave the identity's other statements
    /// nothing meanwhile.
    pub fn draw(&self, limit: u64, now: Instant, reads_only: bool) -> Draw {
        let mut effective = limit;
        let mut tightest = None;
        if reads_only {
            let free = self
                .entries
                .iter()
                .map(|(a, b)| b.available(a, now))
                .min()
                .unwrap_or(limit);
            let share = (free / READ_SHARE).max(1);
            if share < effective {
                effective = share;
                tightest = self.entries.first().map(|(a, _)| a.clone());
            }
        }
        let mut held = Vec::with_capacity(self.entries.len());
        for (a, b) in &self.entries {
            let r = b.reserve_up_to(a, effective, now);
            if r.amount == 0 {
                // Dropping `held` and `r` gives back what was reserved.
                return Draw::Spent {
                    allowance: a.clone(),
                    spent: b.spent(a, now),
                };
            }
            if r.amount < effective {
                effective = r.amount;
                tightest = Some(a.clone());
            }
            held.push(r);
        }
        for r in &mut held {
            r.shrink_to(effective);
        }
        Draw::Run {
            limit: effective,
            tightest,
            charge: Charge(held),
        }
    }
}

/// Where a statement's charge waits for the count of rows it changed:
/// held by the ledger entry of the check that follows the statement
/// (`session/row_limit.rs`), which reports the count in its one row.
/// Dropped without a count (the check failed or never ran), it charges
/// nothing.
#[derive(Debug, Clone)]
pub struct ChargeSlot(Arc<Mutex<Option<Charge>>>);

impl ChargeSlot {
    pub fn new(charge: Charge) -> ChargeSlot {
        ChargeSlot(Arc::new(Mutex::new(Some(charge))))
    }

    /// The statement changed `rows` (`None`: the count could not be read,
    /// so everything reserved for it is charged): charge them now.
    pub fn settle(&self, rows: Option<u64>) {
        let taken = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(charge) = taken {
            let rows = rows.unwrap_or_else(|| charge.reserved());
            charge.settle(rows, Instant::now());
        }
    }
}

impl PartialEq for ChargeSlot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ChargeSlot {}

/// "1h", "30m", "90s": how refusals name a window.
pub fn window_text(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s > 0 && s.is_multiple_of(3_600) {
        format!("{}h", s / 3_600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowance(max: u64, secs: u64) -> Allowance {
        Allowance {
            name: "agents".into(),
            max,
            window: Duration::from_secs(secs),
        }
    }

    #[test]
    fn charges_count_within_the_window_only() {
        let a = allowance(100, 60);
        let b = Arc::new(Budget::default());
        let t0 = Instant::now();
        b.reserve(40).settle(25, t0);
        assert_eq!(b.available(&a, t0), 75);
        b.reserve(75).settle(75, t0 + Duration::from_secs(30));
        assert_eq!(b.available(&a, t0 + Duration::from_secs(30)), 0);
        // The first charge leaves the window; the second has not.
        assert_eq!(b.available(&a, t0 + Duration::from_secs(61)), 25);
        assert_eq!(b.spent(&a, t0 + Duration::from_secs(61)), 75);
        assert_eq!(b.available(&a, t0 + Duration::from_secs(91)), 100);
    }

    #[test]
    fn reservations_hold_rows_until_settled_or_dropped() {
        let a = allowance(100, 60);
        let b = Arc::new(Budget::default());
        let now = Instant::now();
        let r1 = b.reserve(60);
        assert_eq!(b.available(&a, now), 40);
        let r2 = b.reserve(40);
        assert_eq!(b.available(&a, now), 0);
        drop(r1); // refused or rolled back: nothing charged
        assert_eq!(b.available(&a, now), 60);
        r2.settle(10, now);
        assert_eq!(b.available(&a, now), 90);
    }

    #[test]
    fn a_session_draws_the_smallest_of_its_budgets_and_its_own_limit() {
        let small = Arc::new(Budget::default());
        let big = Arc::new(Budget::default());
        let s = SessionBudgets {
            entries: vec![
                (allowance(1000, 3600), big.clone()),
                (
                    Allowance {
                        name: "burst".into(),
                        ..allowance(30, 60)
                    },
                    small.clone(),
                ),
            ],
        };
        let now = Instant::now();
        let Draw::Run {
            limit,
            tightest,
            charge,
        } = s.draw(u64::MAX, now, false)
        else {
            panic!("budget left")
        };
        assert_eq!(limit, 30);
        assert_eq!(tightest.unwrap().name, "burst");
        // While it runs, another statement gets nothing from "burst".
        assert!(
            matches!(s.draw(u64::MAX, now, false), Draw::Spent { allowance, spent: 0 } if allowance.name == "burst")
        );
        charge.settle(25, now);
        assert_eq!(small.spent(&allowance(30, 60), now), 25);
        assert_eq!(big.spent(&allowance(1000, 3600), now), 25);
        // The target's own limit is smaller than what is left: no
        // allowance is the tightest.
        let Draw::Run {
            limit, tightest, ..
        } = s.draw(3, now, false)
        else {
            panic!()
        };
        assert_eq!((limit, tightest), (3, None));
    }

    #[test]
    fn concurrent_draws_never_reserve_more_than_is_left() {
        let b = Arc::new(Budget::default());
        let s = Arc::new(SessionBudgets {
            entries: vec![(allowance(100, 3600), b.clone())],
        });
        let now = Instant::now();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || match s.draw(30, now, false) {
                    Draw::Run { limit, charge, .. } => {
                        std::mem::forget(charge);
                        limit
                    }
                    Draw::Spent { .. } => 0,
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 100);
        assert_eq!(b.available(&allowance(100, 3600), now), 0);
    }

    #[test]
    fn budgets_are_per_limit_and_subject() {
        let all = Budgets::default();
        let a = all.of("agents", "bot");
        assert!(Arc::ptr_eq(&a, &all.of("agents", "bot")));
        assert!(!Arc::ptr_eq(&a, &all.of("agents", "other")));
        assert!(!Arc::ptr_eq(&a, &all.of("batch", "bot")));
    }

    #[test]
    fn windows_read_as_configured() {
        assert_eq!(window_text(Duration::from_secs(3600)), "1h");
        assert_eq!(window_text(Duration::from_secs(90)), "90s");
        assert_eq!(window_text(Duration::from_secs(600)), "10m");
        assert_eq!(window_text(Duration::from_secs(172_800)), "2d");
    }
}
