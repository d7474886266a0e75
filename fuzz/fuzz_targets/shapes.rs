//! The shape cache against full analysis: a seed text, and material for
//! another text of its shape; the cache must give the other text what a
//! full analysis gives it (see `portcullis_analysis::fuzzing`).
//! Run: `cargo +nightly fuzz run shapes` (from the repository root).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis_analysis::fuzzing::exercise(data);
});
