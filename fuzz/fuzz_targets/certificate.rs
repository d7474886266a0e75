//! Feeds arbitrary bytes as a client certificate's DER through the reader
//! that names its principal (common name, email, DNS and URI alt names,
//! organizational units).
//! Run: `cargo +nightly fuzz run certificate` (from the repository root).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis_identity::fuzzing::exercise_certificate(data);
});
