//! Stored audit chunks from arbitrary bytes, compressed and not: decoding
//! a store that anyone with file access could have edited never panics
//! (see `portcullis_audit::store::sqlite::chunk::exercise`).
//! Run: `cargo +nightly fuzz run audit_chunk` (from the repository root).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis_audit::store::sqlite::chunk::exercise(data);
});
