//! Masking plans built from arbitrary bytes, fed arbitrary DataRows,
//! values and COPY data: nothing panics, and every masked value is a valid
//! value of its type (see `portcullis_mask::fuzzing`).
//! Run: `cargo +nightly fuzz run mask` (from the repository root).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis_mask::fuzzing::exercise(data);
});
