//! Limits on what a session is returned (`[[limit]] max_rows_returned`,
//! `max_bytes_returned` and their per-session forms): an exfiltration
//! budget that holds exactly.
//!
//! For an identity with such a limit every statement that can return rows
//! runs alone, as one extended-protocol Execute followed by a Flush, and
//! the proxy sends nothing else until the server has finished it:
//!
//! - an Execute of the client's own is capped at one row more than what is
//!   left (the server stops there with PortalSuspended: a huge table is
//!   not read to the end);
//! - a simple Query is sent as Close, Parse, Bind, Describe and Execute of
//!   a statement and portal under the reserved name [`QUERY_NAME`] (the
//!   guard refuses `portcullis.*` names to clients: no statement or cursor
//!   of theirs can stand in for it), and its Sync only once the Execute is
//!   done: until that Sync the implicit transaction is still open;
//! - the rows are counted as they pass ([`Meter`]); the row that would go
//!   over, and everything after it, is dropped, and so is the statement's
//!   completion. Notices and the server's error texts count as bytes too
//!   (past the limits outside a counted statement a notice is dropped and
//!   an error's text withheld), and LISTEN is refused (see `guarding`);
//! - before a Query or Execute is judged, everything the client sent
//!   earlier must have been answered: a counted statement never runs
//!   while the server could still answer an earlier request the proxy
//!   cannot foresee (a COPY that failed after a Sync);
//! - over the limit, the proxy then sends a Parse that fails (see
//!   `guarding::REFUSED_SQL`) before anything else of the client's: the
//!   server's error, replaced by one naming the limit, aborts the
//!   statement's transaction exactly as a failing statement would (the
//!   implicit one rolls back, an explicit one must be rolled back), and the
//!   server discards the client's pipeline up to its Sync.
//!
//! So the client and the server agree that the statement failed: its
//! changes (an `UPDATE ... RETURNING`, a function it called) are rolled
//! back, and nothing the client sent after it ran.

use bytes::Bytes;
use portcullis_analysis::{ActionKind, StatementClass, StatementFacts};
use portcullis_config::Returned;
use portcullis_wire::tags::backend as be;
use portcullis_wire::{sqlstate, Refusal};

/// The reserved statement and portal name a Query is sent under.
pub const QUERY_NAME: &[u8] = b"portcullis.query";

/// The refusal of a FunctionCall message in a session with limits on what
/// it is returned: its result is not a row the limits could count.
pub fn function_call_refusal() -> Bytes {
    Refusal::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        "function call refused by Portcullis: the data this session is returned is limited, and a FunctionCall's result cannot be counted",
    )
    .hint("Call the function from a SQL statement instead, for example SELECT f(...).")
    .to_bytes()
}

/// Rows and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Amount {
    pub rows: u64,
    pub bytes: u64,
}

/// How a counted statement ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It completed within its allowance (or started a COPY FROM STDIN,
    /// which returns nothing).
    Within,
    /// It went over: the client gets this error once the server has
    /// failed the statement too.
    Over(Bytes),
    /// It (or a message of the proxy's for it) failed on the server.
    Failed,
    /// The server never ran it: an earlier message failed, and the server
    /// discarded everything after it up to a Sync.
    Skipped,
}

/// What to do with a row (or COPY data) from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Metered {
    Pass,
    Drop,
    /// Rows outside any counted statement (which PostgreSQL never sends:
    /// the proxy's model and the server's differ), or notices past the
    /// session's bytes: the session ends.
    Unexpected(Refusal),
}

/// The statement being counted.
#[derive(Debug)]
struct Counting {
    /// How many messages the proxy sent for it right before its Execute.
    lead: usize,
    /// What it may return.
    allowance: Amount,
    used: Amount,
    /// Set when it went over.
    over: Option<Bytes>,
}

/// Counts what one session is returned. Pure: the ledger (`pending.rs`)
/// drives it as the counted Execute (`Step::Counted`) is answered.
#[derive(Debug)]
pub(crate) struct Meter {
    limits: Returned,
    session: Amount,
    counting: Option<Counting>,
    /// Bytes of notices and errors since the last ReadyForQuery outside a
    /// counted statement (what a statement the proxy does not count, a
    /// CREATE TABLE AS say, sends besides its completion).
    loose: u64,
    /// How the last counted statement ended, until the client pump takes it.
    outcome: Option<Outcome>,
}

impl Meter {
    pub fn new(limits: Returned) -> Meter {
        Meter {
            limits,
            session: Amount::default(),
            counting: None,
            loose: 0,
            outcome: None,
        }
    }

    /// What the next statement may return: the statement's own limit and
    /// what is left of the session's, whichever is smaller.
    fn allowance(&self) -> Amount {
        let left = |limit: &Option<(u64, String)>, used: u64| {
            limit.as_ref().map(|(n, _)| n.saturating_sub(used))
        };
        let smaller = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(u64::MAX),
        };
        Amount {
            rows: smaller(
                self.limits.rows.as_ref().map(|(n, _)| *n),
                left(&self.limits.session_rows, self.session.rows),
            ),
            bytes: smaller(
                self.limits.bytes.as_ref().map(|(n, _)| *n),
                left(&self.limits.session_bytes, self.session.bytes),
            ),
        }
    }

    /// Starts counting a statement, whose Execute comes right after
    /// `lead` messages the proxy sent for it. Returns the row count its
    /// Execute asks for: the client's `max_rows` (0: all) unless that
    /// could go past the allowance, then one row more than allowed, so
    /// that the server stops right after the row that goes over.
    pub fn start(&mut self, client_max: i32, lead: usize) -> i32 {
        let allowance = self.allowance();
        self.counting = Some(Counting {
            lead,
            allowance,
            used: Amount::default(),
            over: None,
        });
        self.outcome = None;
        let Some(cap) = allowance
            .rows
            .checked_add(1)
            .and_then(|c| i32::try_from(c).ok())
        else {
            return client_max;
        };
        if client_max > 0 && client_max <= cap {
            client_max
        } else {
            cap
        }
    }

    /// A row or COPY data message of `len` bytes from the server.
    pub fn row(&mut self, len: usize) -> Metered {
        self.count(1, len as u64)
    }

    fn limits_bytes(&self) -> bool {
        self.limits.bytes.is_some() || self.limits.session_bytes.is_some()
    }

    /// A NoticeResponse or NotificationResponse of `len` bytes: bytes a
    /// function can send out (RAISE, pg_notify) without a row. Inside a
    /// counted statement they count as its bytes (over them it fails);
    /// outside one, as bytes of the statement running (up to the
    /// per-statement limit) and of the session: past either the notice
    /// is dropped (it is only a notice).
    pub fn report(&mut self, len: usize) -> Metered {
        if !self.limits_bytes() {
            return Metered::Pass;
        }
        if self.counting.is_some() {
            return self.count(0, len as u64);
        }
        if self.loose_fits(len as u64) {
            Metered::Pass
        } else {
            Metered::Drop
        }
    }

    /// Counts `len` loose bytes if they fit what a statement and the
    /// session may still be returned.
    fn loose_fits(&mut self, len: u64) -> bool {
        let loose = self.loose + len;
        let session = self.session.bytes + len;
        let over = self.limits.bytes.as_ref().is_some_and(|(n, _)| loose > *n)
            || self
                .limits
                .session_bytes
                .as_ref()
                .is_some_and(|(n, _)| session > *n);
        if !over {
            self.loose = loose;
            self.session.bytes = session;
        }
        !over
    }

    /// The server's ErrorResponse of `len` bytes, which ends its statement
    /// whatever it says. Its text can quote values (a failed cast of a
    /// whole column aggregated into one string): it counts as the
    /// statement's bytes. Returns whether the text must be withheld (it
    /// does not fit): the client then gets the error's SQLSTATE alone.
    pub fn error_report(&mut self, len: usize) -> bool {
        if !self.limits_bytes() {
            return false;
        }
        let len = len as u64;
        match &mut self.counting {
            Some(c) => {
                let bytes = c.used.bytes + len;
                if c.over.is_some() || bytes > c.allowance.bytes {
                    return true;
                }
                c.used.bytes = bytes;
                self.session.bytes += len;
                false
            }
            None => !self.loose_fits(len),
        }
    }

    /// A ParameterStatus of `len` bytes (a reported setting's new value,
    /// which code can choose): counts as loose bytes (see
    /// [`Meter::report`]); past them the session ends (the client's view
    /// of its settings cannot skip a change).
    pub fn parameter_status(&mut self, len: usize) -> Metered {
        if !self.limits_bytes() || self.loose_fits(len as u64) {
            return Metered::Pass;
        }
        Metered::Unexpected(Refusal::fatal(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            "terminating connection because a setting the server reported went past the bytes this session may be returned",
        ))
    }

    /// A ReadyForQuery: the statement the loose bytes belonged to is over.
    pub fn ready(&mut self) {
        self.loose = 0;
    }

    fn count(&mut self, rows: u64, len: u64) -> Metered {
        let Some(c) = &mut self.counting else {
            // No statement that can return rows is running: PostgreSQL
            // sends none, so the proxy's model of the session is wrong.
            return Metered::Unexpected(Refusal::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "terminating connection because the server sent rows outside a statement Portcullis counts",
            ));
        };
        if c.over.is_some() {
            return Metered::Drop;
        }
        let rows = c.used.rows + rows;
        let bytes = c.used.bytes + len;
        if rows > c.allowance.rows || bytes > c.allowance.bytes {
            c.over = Some(over_error(&self.limits, self.session, c, rows, bytes));
            return Metered::Drop;
        }
        self.session.rows += rows - c.used.rows;
        self.session.bytes += len;
        c.used = Amount { rows, bytes };
        Metered::Pass
    }

    /// The server's CopyDone: dropped after the COPY went over.
    pub fn copy_done(&self) -> Metered {
        match &self.counting {
            Some(Counting { over: Some(_), .. }) => Metered::Drop,
            _ => Metered::Pass,
        }
    }

    /// The counted Execute completed (CommandComplete, PortalSuspended,
    /// EmptyQueryResponse, or CopyInResponse). Returns whether it went
    /// over (its completion must then not reach the client).
    pub fn completed(&mut self) -> bool {
        let Some(c) = self.counting.take() else {
            return false;
        };
        let over = c.over.is_some();
        self.outcome = Some(match c.over {
            Some(e) => Outcome::Over(e),
            None => Outcome::Within,
        });
        over
    }

    /// How many messages the proxy sent for the counted statement right
    /// before its Execute.
    pub fn lead(&self) -> usize {
        self.counting.as_ref().map_or(0, |c| c.lead)
    }

    /// The counted Execute left the ledger unanswered: `failed` when the
    /// error was its own or a message the proxy sent for it, otherwise
    /// the server never ran it (an earlier message failed).
    pub fn dropped(&mut self, failed: bool) {
        if self.counting.take().is_some() {
            self.outcome = Some(if failed {
                Outcome::Failed
            } else {
                Outcome::Skipped
            });
        }
    }

    /// The counted Execute was never sent (its audit record could not be
    /// written): nothing is counted.
    pub fn retracted(&mut self) {
        self.counting = None;
    }

    /// How the last counted statement ended, once it has.
    pub fn take_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }
}

/// What the client gets in place of a server error whose text is over the
/// bytes it may be returned: the same SQLSTATE and severity, no text of
/// the server's.
pub fn withheld_error(code: &str, fatal: bool) -> Bytes {
    let mut b = bytes::BytesMut::new();
    portcullis_wire::encode::error_with_code(
        &mut b,
        if fatal { "FATAL" } else { "ERROR" },
        code,
        "statement failed; Portcullis withheld the server's error text: it is over the bytes this session may be returned",
        "The statement failed as the SQLSTATE says. Ask an administrator about the limit if you need the text.",
    );
    b.freeze()
}

/// The error for a statement that went over, naming the limit it hit.
fn over_error(limits: &Returned, session: Amount, c: &Counting, rows: u64, bytes: u64) -> Bytes {
    let per_statement =
        |limit: &Option<(u64, String)>, n: u64| limit.as_ref().is_some_and(|(max, _)| n > *max);
    let (message, hint) = if rows > c.allowance.rows {
        match &limits.rows {
            Some((max, name)) if per_statement(&limits.rows, rows) => (
                format!(
                    "statement refused by Portcullis: it returns more than {max} rows, the limit \"{name}\" for one statement"
                ),
                "Return fewer rows: a narrower WHERE clause, a LIMIT, or an aggregate.",
            ),
            _ => session_message(&limits.session_rows, session.rows, "rows"),
        }
    } else {
        match &limits.bytes {
            Some((max, name)) if per_statement(&limits.bytes, bytes) => (
                format!(
                    "statement refused by Portcullis: it returns more than {max} bytes of data, the limit \"{name}\" for one statement"
                ),
                "Return less data: fewer rows or fewer, narrower columns.",
            ),
            _ => session_message(&limits.session_bytes, session.bytes, "bytes of data"),
        }
    };
    Refusal::error(sqlstate::PROGRAM_LIMIT_EXCEEDED, message)
        .hint(hint)
        .to_bytes()
}

fn session_message(limit: &Option<(u64, String)>, used: u64, what: &str) -> (String, &'static str) {
    let (max, name) = limit
        .as_ref()
        .map_or((0, ""), |(max, name)| (*max, name.as_str()));
    (
        format!(
            "statement refused by Portcullis: the limit \"{name}\" allows a session {max} {what}, and {used} have been returned in this session"
        ),
        "Ask an administrator about the limit.",
    )
}

/// Whether a statement can send rows (or COPY data) to the client, by
/// PostgreSQL's rules: queries, DML (a rule can turn any INSERT, UPDATE or
/// DELETE into a SELECT; RETURNING), COPY TO STDOUT, and the utility
/// statements that return tuples (`UtilityReturnsTuples`: EXECUTE, FETCH,
/// EXPLAIN, SHOW, CALL). Anything the analysis does not classify counts as
/// returning rows.
pub fn returns_rows(s: &StatementFacts) -> bool {
    match s.class {
        StatementClass::Select
        | StatementClass::Insert
        | StatementClass::Update
        | StatementClass::Delete
        | StatementClass::Merge
        | StatementClass::Explain
        | StatementClass::Execute
        | StatementClass::Call
        | StatementClass::Other => true,
        StatementClass::Copy => s.copy_out.is_some(),
        StatementClass::Session => s.actions.first().is_some_and(|a| {
            matches!(
                a.kind,
                ActionKind::Session {
                    statement: "VariableShowStmt"
                }
            )
        }),
        StatementClass::Cursor => s.actions.first().is_some_and(|a| {
            matches!(
                a.kind,
                ActionKind::Cursor {
                    statement: "FetchStmt",
                    ..
                }
            )
        }),
        _ => false,
    }
}

/// Whether a statement of a Query is sent as extended messages and
/// counted: one that can return rows, or a DO block (its notices count as
/// bytes, and over them it is rolled back), unless the rows it changes
/// are counted too (`changes_counted`: there a DO runs inside the
/// row-limit Query, where it cannot commit out of the count's reach).
pub fn counted(s: &StatementFacts, changes_counted: bool) -> bool {
    returns_rows(s) || (s.class == StatementClass::Do && !changes_counted)
}

/// Whether a server message is result data the limits count.
pub fn is_result_data(tag: u8) -> bool {
    tag == be::DATA_ROW || tag == be::COPY_DATA
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rows: Option<u64>, bytes: Option<u64>, srows: Option<u64>) -> Returned {
        let named = |n: Option<u64>, name: &str| n.map(|n| (n, name.to_owned()));
        Returned {
            rows: named(rows, "stmt"),
            bytes: named(bytes, "stmt-bytes"),
            session_rows: named(srows, "session"),
            session_bytes: None,
        }
    }

    fn text(b: &Bytes) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn the_execute_asks_for_one_row_more_than_allowed() {
        let mut m = Meter::new(limits(Some(10), None, None));
        assert_eq!(m.start(0, 0), 11, "all rows asked: capped");
        assert_eq!(m.start(5, 0), 5, "the client's own smaller count");
        assert_eq!(m.start(11, 0), 11);
        assert_eq!(m.start(50, 0), 11);
        let mut unlimited = Meter::new(limits(None, Some(100), None));
        assert_eq!(unlimited.start(0, 0), 0, "bytes only: no row cap");
        assert_eq!(unlimited.start(7, 0), 7);
    }

    #[test]
    fn the_row_past_the_statement_limit_and_the_rest_are_dropped() {
        let mut m = Meter::new(limits(Some(2), None, None));
        m.start(0, 0);
        assert_eq!(m.row(10), Metered::Pass);
        assert_eq!(m.row(10), Metered::Pass);
        assert_eq!(m.row(10), Metered::Drop);
        assert_eq!(m.row(10), Metered::Drop);
        assert_eq!(m.copy_done(), Metered::Drop);
        assert!(m.completed());
        let Some(Outcome::Over(e)) = m.take_outcome() else {
            panic!("over")
        };
        assert!(text(&e).contains("more than 2 rows, the limit \"stmt\""));
        assert!(text(&e).contains("54000"));
        // The next statement starts afresh.
        m.start(0, 0);
        assert_eq!(m.row(10), Metered::Pass);
        assert!(!m.completed());
        assert_eq!(m.take_outcome(), Some(Outcome::Within));
        assert_eq!(m.take_outcome(), None);
    }

    #[test]
    fn the_session_limit_spans_statements() {
        let mut m = Meter::new(limits(Some(100), None, Some(3)));
        m.start(0, 0);
        assert_eq!(m.row(1), Metered::Pass);
        assert_eq!(m.row(1), Metered::Pass);
        m.completed();
        assert_eq!(m.start(0, 0), 2, "one row left: cap 2");
        assert_eq!(m.row(1), Metered::Pass);
        assert_eq!(m.row(1), Metered::Drop);
        assert!(m.completed());
        let Some(Outcome::Over(e)) = m.take_outcome() else {
            panic!("over")
        };
        assert!(
            text(&e).contains("allows a session 3 rows, and 3 have been returned"),
            "{}",
            text(&e)
        );
        // Nothing left: a statement returning no rows still completes.
        assert_eq!(m.start(0, 0), 1);
        assert!(!m.completed());
        assert_eq!(m.take_outcome(), Some(Outcome::Within));
    }

    #[test]
    fn bytes_count_whole_messages() {
        let mut m = Meter::new(limits(None, Some(100), None));
        m.start(0, 0);
        assert_eq!(m.row(60), Metered::Pass);
        assert_eq!(m.row(41), Metered::Drop, "101 bytes");
        m.completed();
        let Some(Outcome::Over(e)) = m.take_outcome() else {
            panic!("over")
        };
        assert!(text(&e).contains("more than 100 bytes"));
    }

    #[test]
    fn an_error_ends_the_statement_as_failed_or_skipped() {
        let mut m = Meter::new(limits(Some(1), None, None));
        m.start(0, 0);
        m.dropped(false);
        assert_eq!(m.take_outcome(), Some(Outcome::Skipped), "an earlier error");
        m.start(0, 0);
        m.dropped(true);
        assert_eq!(m.take_outcome(), Some(Outcome::Failed), "its own Parse");
        m.dropped(true);
        assert_eq!(m.take_outcome(), None, "nothing was counted");
        m.start(0, 0);
        m.retracted();
        assert!(
            matches!(m.row(1), Metered::Unexpected(_)),
            "rows outside a statement"
        );
        assert!(!m.completed());
        assert_eq!(m.take_outcome(), None);
    }

    #[test]
    fn rows_outside_a_statement_end_the_session() {
        let mut m = Meter::new(limits(None, None, Some(100)));
        assert!(matches!(m.row(5), Metered::Unexpected(_)));
    }

    #[test]
    fn notices_count_as_bytes() {
        let mut m = Meter::new(Returned {
            bytes: Some((100, "stmt".into())),
            session_bytes: Some((150, "session".into())),
            ..Returned::default()
        });
        m.start(0, 0);
        assert_eq!(m.report(60), Metered::Pass);
        assert_eq!(m.row(30), Metered::Pass);
        assert_eq!(m.report(20), Metered::Drop, "110 bytes in the statement");
        assert!(m.completed());
        let Some(Outcome::Over(e)) = m.take_outcome() else {
            panic!("over")
        };
        assert!(text(&e).contains("more than 100 bytes"));
        // Outside a counted statement: up to the statement's bytes and
        // the session's; past them a notice is dropped and an error's
        // text withheld.
        assert!(!m.error_report(40), "70 + 40 loose bytes fit");
        assert_eq!(m.report(20), Metered::Pass, "150 bytes");
        assert_eq!(m.report(1), Metered::Drop);
        assert!(m.error_report(1));
        m.ready();
        assert_eq!(m.report(1), Metered::Drop, "the session's bytes are spent");
        assert!(matches!(m.parameter_status(10), Metered::Unexpected(_)));
        // Inside a counted statement an error over its bytes is withheld.
        let mut e = Meter::new(Returned {
            bytes: Some((100, "stmt".into())),
            ..Returned::default()
        });
        e.start(0, 0);
        assert_eq!(e.row(90), Metered::Pass);
        assert!(e.error_report(11));
        e.dropped(true);
        e.start(0, 0);
        assert!(!e.error_report(99));
        e.dropped(true);
        m.ready();
        let mut loose = Meter::new(Returned {
            bytes: Some((100, "stmt".into())),
            ..Returned::default()
        });
        assert_eq!(loose.report(100), Metered::Pass);
        assert_eq!(loose.report(1), Metered::Drop, "one statement's bytes");
        loose.ready();
        assert_eq!(loose.report(100), Metered::Pass, "the next statement's");
        // Rows-only limits leave notices alone.
        let mut rows = Meter::new(limits(Some(1), None, None));
        assert_eq!(rows.report(1 << 20), Metered::Pass);
    }
}
