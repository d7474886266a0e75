//! The boundary with the PostgreSQL parser: text in, parse tree or a typed
//! error out, never a panic.
//!
//! The parser is libpg_query 18 (PostgreSQL's own grammar), linked by the
//! `pg_query` crate. We call its C entry point directly and decode the
//! protobuf tree with `prost`, instead of calling `pg_query::parse`,
//! because `pg_query::parse` then walks the tree a second time to build
//! table and function summaries we do not use: about a fifth of a cold
//! analysis, with unchecked indexing and casts in it that could panic.

use std::ffi::{c_char, c_int, CStr, CString};

use pg_query::protobuf::ParseResult;
use pg_query::ParserOptions;
use prost::Message;

use crate::error::AnalysisError;

// libpg_query's public C API (pg_query.h), as the `pg_query` crate binds it.
// The layouts must match pg_query.h of the libpg_query version `pg_query`
// links; they have been stable since libpg_query 13.

#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

#[repr(C)]
struct PgQueryProtobuf {
    len: usize,
    data: *mut c_char,
}

#[repr(C)]
struct PgQueryProtobufParseResult {
    parse_tree: PgQueryProtobuf,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

extern "C" {
    fn pg_query_parse_protobuf_opts(
        input: *const c_char,
        parser_options: c_int,
    ) -> PgQueryProtobufParseResult;
    fn pg_query_free_protobuf_parse_result(result: PgQueryProtobufParseResult);
}

/// Parses `sql` with the server's own grammar, as a session with
/// `standard_conforming_strings = on` and the default `backslash_quote`
/// lexes it. The proxy refuses sessions where either differs (the issue's
/// lexing rule), so this is the only lexing the analysis needs.
///
/// `DISABLE_ESCAPE_STRING_WARNING` keeps the parser from producing
/// warnings, which it would otherwise collect from its stderr.
pub(crate) fn parse(sql: &str) -> Result<ParseResult, AnalysisError> {
    let input = CString::new(sql).map_err(|_| AnalysisError::NulByte)?;
    let options = ParserOptions::DISABLE_ESCAPE_STRING_WARNING.bits();
    // SAFETY: `input` is a NUL-terminated string that outlives the call.
    // libpg_query runs each call in its own thread-local memory context and
    // returns malloc'd buffers, which we only read before handing the whole
    // result back to its free function, exactly once.
    let result = unsafe { pg_query_parse_protobuf_opts(input.as_ptr(), options) };
    let outcome = if result.error.is_null() {
        let tree: &[u8] = if result.parse_tree.data.is_null() {
            &[]
        } else {
            // SAFETY: libpg_query guarantees `len` bytes at `data` when it
            // reports no error; they stay valid until the free below.
            unsafe {
                std::slice::from_raw_parts(
                    result.parse_tree.data.cast::<u8>(),
                    result.parse_tree.len,
                )
            }
        };
        ParseResult::decode(tree).map_err(|e| {
            // prost refuses messages nested over 100 levels: roughly 48
            // chained operators, or 16 nested sub-queries.
            if e.to_string().contains("recursion limit") {
                AnalysisError::TooDeep
            } else {
                AnalysisError::Internal("the parse tree could not be decoded")
            }
        })
    } else {
        // SAFETY: a non-null error points to a PgQueryError whose message is
        // a NUL-terminated string (or null), valid until the free below.
        let message = unsafe {
            let error = &*result.error;
            if error.message.is_null() {
                String::from("syntax error")
            } else {
                CStr::from_ptr(error.message).to_string_lossy().into_owned()
            }
        };
        if message.contains("stack depth limit exceeded") {
            Err(AnalysisError::TooDeep)
        } else {
            Err(AnalysisError::Syntax { message })
        }
    };
    // SAFETY: the result came from pg_query_parse_protobuf_opts and is
    // freed once; nothing borrowed from it outlives this point (`decode`
    // copied what it kept).
    unsafe { pg_query_free_protobuf_parse_result(result) };
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            parse("SELEC 1"),
            Err(AnalysisError::Syntax { .. })
        ));
        assert_eq!(parse("SELECT 1\0"), Err(AnalysisError::NulByte));
        let deep = format!("SELECT {}", vec!["a"; 200].join(" || "));
        assert_eq!(parse(&deep), Err(AnalysisError::TooDeep));
    }

    #[test]
    fn agrees_with_pg_query_parse() {
        for sql in [
            "SELECT 1",
            "SELECT * FROM t WHERE id = $1; DELETE FROM u",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "",
            "-- only a comment",
        ] {
            let ours = parse(sql).expect("parses");
            let theirs = pg_query::parse(sql, ParserOptions::DISABLE_ESCAPE_STRING_WARNING)
                .expect("parses")
                .protobuf;
            assert_eq!(ours, theirs, "{sql}");
        }
    }
}
