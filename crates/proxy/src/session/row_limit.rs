//! Row limits: a statement that writes rows on a target with `row_limit`
//! runs between two statements of the proxy's, in the same transaction:
//!
//! 1. before it, the rows this transaction has touched so far are counted
//!    (`pg_stat_xact_user_tables`: inserts, updates and deletes on every
//!    user table, so rows changed by cascades and triggers count too) and
//!    remembered in a transaction-local setting;
//! 2. after it, they are counted again; if the difference is over the
//!    limit, the check fails, which makes the server roll the statement
//!    back exactly as a failing statement would: the implicit transaction
//!    of a lone statement is rolled back, an explicit transaction is
//!    aborted (the client rolls it back as after any error).
//!
//! The client sees only its own statement's replies and, over the limit,
//! an ErrorResponse naming the limit in place of the check's error. In a
//! simple Query the three statements travel as one Query (so they share
//! its implicit transaction); in the extended protocol each of the
//! proxy's two statements is parsed, bound, executed and closed under a
//! reserved name, one before the client's Execute and one after it (the
//! check is parsed only after the client's statement ran, so nothing that
//! statement did can stand in for it), all before the client's Sync.

use bytes::{Bytes, BytesMut};
use portcullis_wire::{encode, sqlstate, Refusal};

use super::pending::Entry;
use crate::row_budgets::{window_text, Allowance, ChargeSlot};

/// The reserved statement and portal name of the proxy's statements.
pub const NAME: &[u8] = b"portcullis.rowlimit";

/// The rows this transaction has changed so far, by the server's count.
const COUNT: &str = "SELECT COALESCE(pg_catalog.sum(n_tup_ins OPERATOR(pg_catalog.+) n_tup_upd OPERATOR(pg_catalog.+) n_tup_del), 0) AS n \
                     FROM pg_catalog.pg_stat_xact_user_tables";

/// Before the statement: remember the count in a transaction-local
/// setting.
///
/// Both statements run under the client's search_path, so every function,
/// operator and type is named in pg_catalog (`text` and `bool` are not
/// keywords: a type of that name in pg_temp or a schema before pg_catalog
/// would be used otherwise), and nothing compares implicitly (NULLIF and
/// simple CASE look `=` up by the path).
fn base_sql() -> String {
    format!(
        "SELECT pg_catalog.set_config('portcullis.row_base', t.n::pg_catalog.text, true) FROM ({COUNT}) t"
    )
}

/// After it: fail when more than `limit` rows were changed since, when the
/// count went down, when the remembered count is gone (the transaction
/// ended in between), or when the server is not counting (track_counts
/// off); otherwise return how many were changed (charged to
/// a rows-changed budget). The failure is a cast error on a string only
/// built when it fails (a constant would be folded, and fail, at plan
/// time).
fn check_sql(limit: u64) -> String {
    let changed = "(t.n OPERATOR(pg_catalog.-) b.v::pg_catalog.int8)";
    format!(
        "SELECT CASE WHEN b.v IS NULL OR b.v OPERATOR(pg_catalog.=) ''::pg_catalog.text \
                  OR pg_catalog.current_setting('track_counts') OPERATOR(pg_catalog.<>) 'on'::pg_catalog.text \
                  OR {changed} OPERATOR(pg_catalog.>) {limit} \
                  OR {changed} OPERATOR(pg_catalog.<) 0 \
             THEN ('portcullis row limit ' OPERATOR(pg_catalog.||) t.n::pg_catalog.text)::pg_catalog.int4::pg_catalog.text \
             ELSE {changed}::pg_catalog.text END \
         FROM ({COUNT}) t, \
              (SELECT pg_catalog.current_setting('portcullis.row_base', true) AS v) b"
    )
}

/// What the client sees when its statement went over the limit.
pub fn exceeded(limit: u64, target: &str) -> Bytes {
    let message = format!(
        "statement refused by Portcullis: it changed more than {limit} rows, the row limit of target \"{target}\"; its changes were rolled back"
    );
    Refusal::error(sqlstate::PROGRAM_LIMIT_EXCEEDED, message)
        .hint("Change fewer rows per statement, for example with a narrower WHERE clause or in batches. Rows changed by cascades and triggers count too.")
        .to_bytes()
}

/// What the client sees when its statement changed more rows than were
/// left of a rows-changed budget.
pub fn budget_exceeded(limit: u64, a: &Allowance) -> Bytes {
    let window = window_text(a.window);
    Refusal::error(
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        format!(
            "statement refused by Portcullis: it changed more than {limit} rows, what is left of the limit \"{}\" ({} rows changed per {window}); its changes were rolled back",
            a.name, a.max
        ),
    )
    .hint("Change fewer rows, or wait for earlier changes to leave the window. Rows changed by cascades and triggers count too.")
    .to_bytes()
}

/// What the client sees, in place of running its statement, when nothing
/// is left of a rows-changed budget.
pub fn budget_spent(a: &Allowance, spent: u64) -> Bytes {
    let window = window_text(a.window);
    Refusal::error(
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        format!(
            "statement refused by Portcullis: the limit \"{}\" allows {} rows changed per {window}, and {spent} have been changed in the last {window} (or are being changed now)",
            a.name, a.max
        ),
    )
    .hint("Wait for earlier changes to leave the window, or ask an administrator about the limit.")
    .to_bytes()
}

/// A simple Query running `client_sql` (one statement) under the limit,
/// and the ledger entries for it (in order, the Query's own entry last).
pub fn wrap_query(
    client_sql: &[u8],
    limit: u64,
    over: Bytes,
    charge: Option<ChargeSlot>,
) -> (BytesMut, [Entry; 3]) {
    let mut text = Vec::with_capacity(client_sql.len() + 800);
    text.extend_from_slice(base_sql().as_bytes());
    text.extend_from_slice(b";\n");
    text.extend_from_slice(client_sql);
    // A newline ends a trailing `--` comment of the client's.
    text.extend_from_slice(b"\n;");
    text.extend_from_slice(check_sql(limit).as_bytes());
    let mut b = BytesMut::new();
    encode::query_bytes(&mut b, &text);
    let entries = [
        Entry::Hidden {
            step: false,
            on_error: None,
            charge: None,
            audited: None,
        },
        Entry::QueryPart,
        Entry::Hidden {
            step: false,
            on_error: Some(over),
            charge,
            audited: None,
        },
    ];
    (b, entries)
}

fn hidden(on_error: Option<Bytes>) -> Entry {
    Entry::Hidden {
        step: true,
        on_error,
        charge: None,
        audited: None,
    }
}

/// The messages to send before a client's Execute, with their entries.
pub fn before_execute() -> (BytesMut, Vec<Entry>) {
    let mut b = BytesMut::new();
    encode::close(&mut b, b'S', NAME);
    encode::parse(&mut b, NAME, &base_sql());
    encode::bind(&mut b, NAME, NAME, &[]);
    encode::execute(&mut b, NAME);
    encode::close(&mut b, b'P', NAME);
    encode::close(&mut b, b'S', NAME);
    (b, (0..6).map(|_| hidden(None)).collect())
}

/// The messages to send after a client's Execute, with their entries. The
/// check is parsed here, after the client's statement ran: code in that
/// statement could have prepared a statement of the reserved name.
pub fn after_execute(
    limit: u64,
    over: Bytes,
    charge: Option<ChargeSlot>,
) -> (BytesMut, Vec<Entry>) {
    let mut b = BytesMut::new();
    encode::close(&mut b, b'S', NAME);
    encode::parse(&mut b, NAME, &check_sql(limit));
    encode::bind(&mut b, NAME, NAME, &[]);
    encode::execute(&mut b, NAME);
    encode::close(&mut b, b'P', NAME);
    encode::close(&mut b, b'S', NAME);
    let check = Entry::Hidden {
        step: true,
        on_error: Some(over),
        charge,
        audited: None,
    };
    let entries = vec![
        hidden(None),
        hidden(None),
        hidden(None),
        check,
        hidden(None),
        hidden(None),
    ];
    (b, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type cast names pg_catalog, every operator is written
    /// OPERATOR(pg_catalog.x), and no construct looks an operator up
    /// implicitly: the statements run under the client's search_path.
    #[test]
    fn the_counting_statements_resolve_nothing_through_the_search_path() {
        for sql in [base_sql(), check_sql(1000)] {
            let upper = sql.to_ascii_uppercase();
            for implicit in [
                "NULLIF",
                " IN (",
                "BETWEEN",
                "IS DISTINCT",
                "CASE WHEN $",
                " ANY(",
                " ALL(",
            ] {
                assert!(!upper.contains(implicit), "{implicit} in {sql}");
            }
            // Casts: `::` is always followed by pg_catalog.
            for (i, _) in sql.match_indices("::") {
                assert!(
                    sql[i + 2..].starts_with("pg_catalog."),
                    "unqualified cast at {i}: {sql}"
                );
            }
            // Operators outside string literals: only OPERATOR(pg_catalog.x).
            let mut in_string = false;
            let mut outside = String::new();
            for c in sql.chars() {
                if c == '\'' {
                    in_string = !in_string;
                    outside.push(' ');
                } else if !in_string {
                    outside.push(c);
                }
            }
            let bare: String = outside
                .split("OPERATOR(pg_catalog.")
                .enumerate()
                .map(|(k, part)| {
                    if k == 0 {
                        part
                    } else {
                        part.split_once(')').map_or("", |(_, rest)| rest)
                    }
                })
                .collect();
            for op in ["+", "-", "<", ">", "=", "||", "*", "/"] {
                // `::` was checked above; `-` appears in no identifier here.
                assert!(
                    !bare.replace("::", "").contains(op),
                    "a bare {op:?} outside OPERATOR(): {bare}"
                );
            }
        }
    }
}
