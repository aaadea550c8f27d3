//! Fuzz target `process`: see `process_check.rs` for the invariant.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod process_check;

fuzz_target!(|data: &[u8]| process_check::run(data));
