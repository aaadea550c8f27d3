//! Flow identity: the VPC plus the IPv4 5-tuple.
//!
//! The VPC is part of every key, so two VPCs with the same CIDR blocks (and the same client
//! addresses and ports) never share a flow. Keys are hashed with a randomly seeded hasher
//! (`foldhash`'s `RandomState`): the 5-tuple is chosen by remote peers.

use core::hash::{Hash, Hasher};
use core::net::Ipv4Addr;

/// An attachment: the index of the interface that carries one VPC on this node (how the
/// dataplane knows a VPC; the control plane's VPC id is another type). Assigned by the
/// control plane's compiler from the daemon's config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attachment(pub u16);

impl Attachment {
    /// The attachment index as a `usize`, for indexing per-attachment arrays.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The key of one direction of a flow: `(vpc, src, dst, src port, dst port, protocol)`.
///
/// 16 bytes, so that a conntrack slot (key and entry) stays at 48 bytes. Hashing and
/// equality work on two packed `u64`s: one hasher call and two compares per lookup instead
/// of one per field.
#[derive(Clone, Copy, Debug)]
pub struct FlowKey {
    /// Source address (host order).
    pub src: u32,
    /// Destination address (host order).
    pub dst: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// The VPC the packet travels in.
    pub vpc: Attachment,
    /// IP protocol number (6 or 17).
    pub proto: u8,
}

impl FlowKey {
    /// Build a key from addresses.
    pub fn new(vpc: Attachment, proto: u8, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Self {
        Self {
            src: src.0.to_bits(),
            dst: dst.0.to_bits(),
            sport: src.1,
            dport: dst.1,
            vpc,
            proto,
        }
    }

    /// The key as two words: addresses, then ports, VPC and protocol.
    #[inline]
    fn packed(&self) -> (u64, u64) {
        (
            (u64::from(self.src) << 32) | u64::from(self.dst),
            (u64::from(self.sport) << 48)
                | (u64::from(self.dport) << 32)
                | (u64::from(self.vpc.0) << 16)
                | u64::from(self.proto),
        )
    }
}

impl PartialEq for FlowKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.packed() == other.packed()
    }
}

impl Eq for FlowKey {}

impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (a, b) = self.packed();
        state.write_u64(a);
        state.write_u64(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_vpc_and_protocol_and_stay_small() {
        let k = FlowKey::new(
            Attachment(3),
            6,
            (Ipv4Addr::new(10, 0, 0, 1), 40000),
            (Ipv4Addr::new(10, 0, 0, 200), 8080),
        );
        assert_eq!((k.src, k.dport, k.vpc), (0x0a00_0001, 8080, Attachment(3)));
        assert_ne!(
            FlowKey {
                vpc: Attachment(4),
                ..k
            },
            k
        );
        assert_ne!(FlowKey { proto: 17, ..k }, k);
        assert_eq!(size_of::<FlowKey>(), 16);
    }
}
