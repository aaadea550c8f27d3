//! vpcep's dataplane: the per-node packet path that NATs TCP and UDP flows from
//! `endpoint IP : client port` in a user's VPC to `backend IP : service port` in the
//! provider's VPC, and translates the replies back.
//!
//! Three rings:
//! - **Core** ([`wire`], [`flow`], [`tables`], [`conntrack`], [`neighbour`], [`rewrite`],
//!   [`pipeline`]): pure and deterministic. Time, tables and bytes are arguments; nothing
//!   reads the clock, does I/O, allocates on the established path, or logs.
//! - **Driver** ([`worker`]): owns one backend, one table reader and one pipeline; reads the
//!   clock and loads the tables once per batch.
//! - **Backends** ([`io`]): in-memory queues for tests and benches; raw AF_PACKET sockets
//!   with vnet headers (batched, optionally on a TPACKET_V3 ring; GSO super-frames and
//!   partial checksums pass through), the default; and AF_XDP sockets for peers without
//!   offloads. Syscalls and `unsafe` live there only.
//!
//! Per-packet invariants: a frame is either forwarded rewritten in place with correct
//! checksums, replaced by a frame the dataplane generated (ARP), or dropped with a
//! [`DropReason`] that feeds a counter; nothing is forwarded unless the accepted table of
//! the current generation allows its flow.

#![warn(missing_docs)]

pub mod announce;
pub mod config;
pub mod conntrack;
pub mod flow;
pub mod io;
pub mod meter;
pub mod neighbour;
pub mod pipeline;
pub mod rewrite;
pub mod stats;
pub mod tables;
pub mod verdict;
pub mod wire;
pub mod worker;

pub use config::{Config, Timeouts};
pub use flow::{Attachment, FlowKey};
pub use pipeline::{Pipeline, Shared};
pub use stats::{WorkerCounters, WorkerStats};
pub use tables::{TablePublisher, TableReader, Tables};
pub use verdict::{DropReason, Verdict};
