//! What a forwarded frame's bytes become, each change paired with its checksum fix-up:
//! [`nat`] rewrites addresses, ports, TTL and MACs (every forwarded frame); [`identity`]
//! then adds what a flow with client identity owes its backend (the PROXY v2 header and
//! the sequence shift, the TOA option); [`reset`] turns a segment of no flow into the
//! client's reset. All work on a frame the pipeline has checked, and
//! reach header fields through the [`crate::wire`] views.

pub mod identity;
pub mod nat;
pub mod reset;
