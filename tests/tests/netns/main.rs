//! The end-to-end suites: real clients through vpcepd between network namespaces, real etcd for the cluster (root; run with `-- --ignored`).
//!
//! One binary for every suite of this crate (as cargo's own `tests/testsuite`): one link,
//! one process, each suite a module; `cargo test -p <crate> --test netns <module>::`
//! runs one suite.

mod af_xdp;
mod cluster;
mod console;
mod dns;
mod etcd_owners;
mod etcd_store;
mod failover;
mod flowlog;
mod gateway;
mod hardening;
mod identity;
mod lifecycle;
mod meters;
mod netns;
mod offloads;
mod reload;
mod replication;
mod restart;
