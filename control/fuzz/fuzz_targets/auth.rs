//! The auth header parser, the canonical-request builder and the verifier over arbitrary
//! requests (see `auth_check.rs`).
#![no_main]

#[path = "auth_check.rs"]
mod auth_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| auth_check::check(data));
