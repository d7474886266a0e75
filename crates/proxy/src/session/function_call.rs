//! The FunctionCall protocol message ('F') calls a function by OID, outside
//! SQL. libpq and psycopg2 use it for large objects, so those functions pass;
//! any other OID could run arbitrary functions without a statement anyone can
//! judge, so it is refused. A call is judged like the SQL call it stands
//! for: reading a large object is allowed wherever a SELECT is; creating,
//! writing, truncating or unlinking one is judged as that SQL call (see
//! [`judged_as`]), so production refuses it as it refuses `SELECT
//! lo_unlink(...)`.

use portcullis_wire::{sqlstate, Refusal};

/// OIDs of the built-in large-object functions (`src/include/catalog/pg_proc.dat`).
/// Built-in OIDs below 10000 are fixed across installations, so an OID names
/// the same function on every server. Server-side `lo_import`/`lo_export`
/// (file access on the server) are deliberately absent.
pub const LARGE_OBJECT_FUNCTIONS: &[(u32, &str)] = &[
    (715, "lo_create"),
    (952, "lo_open"),
    (953, "lo_close"),
    (954, "loread"),
    (955, "lowrite"),
    (956, "lo_lseek"),
    (957, "lo_creat"),
    (958, "lo_tell"),
    (964, "lo_unlink"),
    (1004, "lo_truncate"),
    (3170, "lo_lseek64"),
    (3171, "lo_tell64"),
    (3172, "lo_truncate64"),
];

/// The call as its audit record shows it (no argument is kept).
pub fn audit_text(oid: u32) -> String {
    match LARGE_OBJECT_FUNCTIONS.iter().find(|(o, _)| *o == oid) {
        Some((_, name)) => format!("SELECT pg_catalog.{name}(...)"),
        None => format!("FunctionCall of function {oid}"),
    }
}

pub fn allowed(oid: u32) -> bool {
    LARGE_OBJECT_FUNCTIONS.iter().any(|(o, _)| *o == oid)
}

/// The SQL a large-object call that changes data is judged as; `None` for
/// calls that only read (open, read, seek, tell, close).
pub fn judged_as(oid: u32) -> Option<&'static str> {
    Some(match oid {
        715 => "SELECT pg_catalog.lo_create(NULL::oid)",
        955 => "SELECT pg_catalog.lowrite(NULL::int4, NULL::bytea)",
        957 => "SELECT pg_catalog.lo_creat(NULL::int4)",
        964 => "SELECT pg_catalog.lo_unlink(NULL::oid)",
        1004 => "SELECT pg_catalog.lo_truncate(NULL::int4, NULL::int4)",
        3172 => "SELECT pg_catalog.lo_truncate64(NULL::int4, NULL::int8)",
        _ => return None,
    })
}

/// What the client gets for a refused FunctionCall. Upstream the call is
/// replaced by a failing statement (see `guarding.rs`), so the server
/// answers in protocol order and aborts an open transaction exactly as a
/// failed call would, and a later COMMIT cannot commit work around the
/// refusal.
pub fn refusal() -> bytes::Bytes {
    Refusal::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        "function call refused by Portcullis: only the large-object functions may be called with the FunctionCall protocol message",
    )
    .hint("Call the function from a SQL statement instead, for example SELECT f(...).")
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_large_object_functions_pass() {
        assert!(allowed(954));
        assert!(allowed(3172));
        assert!(!allowed(764), "server-side lo_import");
        assert!(!allowed(765), "server-side lo_export");
        assert!(!allowed(2619), "pg_read_file and friends");
    }

    #[test]
    fn writes_are_judged_and_reads_are_not() {
        for (oid, name) in LARGE_OBJECT_FUNCTIONS {
            let writes = [
                "lo_create",
                "lowrite",
                "lo_creat",
                "lo_unlink",
                "lo_truncate",
                "lo_truncate64",
            ]
            .contains(name);
            assert_eq!(judged_as(*oid).is_some(), writes, "{name}");
            if let Some(sql) = judged_as(*oid) {
                assert!(sql.contains(&format!("pg_catalog.{name}(")), "{name}");
            }
        }
    }
}
