//! Fuzz target `parse`: see `parse_check.rs` for the invariant.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod parse_check;

fuzz_target!(|data: &[u8]| parse_check::run(data));
