//! The dataplane's integration tests: the pipeline byte for byte, conntrack, isolation, offloads, client identity, workers, and the fuzz corpora replayed.
//!
//! One binary for every suite of this crate (as cargo's own `tests/testsuite`): one link,
//! one process, each suite a module; `cargo test -p <crate> --test suite <module>::`
//! runs one suite.

#[macro_use]
mod common;
mod conntrack;
mod flowlog;
mod fuzz_replay;
mod gateway;
mod identity;
mod isolation;
mod meters;
mod offload;
mod pipeline;
mod port_security;
mod prefetch;
mod replica;
mod service;
mod standby;
mod worker;
