//! Feeds arbitrary bytes as a presented password through the API-key and
//! token parsers and full token validation.
//! Run: `cargo +nightly fuzz run token` (from the repository root).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis_identity::fuzzing::exercise(data);
});
