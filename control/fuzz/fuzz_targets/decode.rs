//! Every request decoder of the API over arbitrary bodies (see `decode_check.rs`).
#![no_main]

#[path = "decode_check.rs"]
mod decode_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decode_check::check(data));
