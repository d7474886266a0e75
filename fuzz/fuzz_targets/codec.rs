//! Feeds arbitrary bytes to every decoder of the wire codec, in the way the
//! proxy does: split into reads at arbitrary points, both directions.
//! Run: `cargo +nightly fuzz run codec` (from the repository root).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis_wire::fuzzing::exercise(data);
});
