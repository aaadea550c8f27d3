//! Checked, zero-copy views over packet bytes.
//!
//! The contract, after `smoltcp::wire`: every view wraps a byte buffer and is built with
//! `new_checked`, which validates every length that an accessor relies on, once. After that
//! the getters are infallible and never panic. `new_unchecked` exists only for buffers this
//! crate built itself. Setters write one field and never touch a checksum: the rewrite and
//! its checksum fix-up live side by side in `nat.rs`.
//!
//! Nothing here allocates, and no byte slice is ever cast to a `#[repr(C)]` struct.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod offload;
pub mod proxy;
pub mod tcp;
pub mod udp;

/// A byte range of a header field.
pub type Field = core::ops::Range<usize>;

/// Why bytes could not be viewed as a header. Small and `Copy`: it sits on the fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A length field is inconsistent (IHL below 5, total length below the header, a TCP data
    /// offset below 5, a UDP length below 8).
    BadLength,
    /// The buffer is shorter than the header or than the length the header claims.
    Truncated,
    /// The version field is not the one this view reads.
    Version,
}

#[inline]
pub(crate) fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

#[inline]
pub(crate) fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline]
pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[inline]
pub(crate) fn write_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}
