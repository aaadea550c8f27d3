//! The control plane's integration tests: the API against a running daemon (tenancy, rules, error codes), compile, signing, hardening, reload, crash, gateways, tags, the fuzz corpora replayed, and the module graph.
//!
//! One binary for every suite of this crate (as cargo's own `tests/testsuite`): one link,
//! one process, each suite a module; `cargo test -p <crate> --test suite <module>::`
//! runs one suite.

#[macro_use]
mod common;
mod api;
mod compile;
mod console;
mod crash;
mod daemon_cli;
mod fuzz_replay;
mod gateway;
mod hardening;
mod layout;
mod port_security;
mod reload;
mod signing;
mod tags;
