//! The FunctionCall protocol message ('F') calls a function by OID, outside
//! SQL. libpq and psycopg2 use it for large objects, so those functions pass;
//! any other OID could run arbitrary functions without a statement anyone can
//! judge, so it is refused.

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

pub fn allowed(oid: u32) -> bool {
    LARGE_OBJECT_FUNCTIONS.iter().any(|(o, _)| *o == oid)
}

/// What the client gets for a refused FunctionCall. Upstream the call is
/// replaced by a failing statement (see `guarding.rs`), so the server
/// answers in protocol order and aborts an open transaction exactly as a
/// failed call would, and a later COMMIT cannot commit work around the
/// refusal.
pub fn refusal() -> bytes::Bytes {
    let mut b = bytes::BytesMut::new();
    portcullis_wire::encode::error_response(
        &mut b,
        &portcullis_wire::encode::Report {
            severity: portcullis_wire::encode::Severity::Error,
            code: "42501",
            message: "function call refused by Portcullis: only the large-object functions may be called with the FunctionCall protocol message",
            detail: None,
            hint: Some("Call the function from a SQL statement instead, for example SELECT f(...)."),
        },
    );
    b.freeze()
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
}
