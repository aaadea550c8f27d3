//! The outcome of processing one frame, and why a frame was dropped.

use crate::flow::Attachment;

/// What to do with a frame after [`crate::pipeline::Pipeline::process`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The frame was absorbed by the dataplane (an ARP reply it learned from); send nothing.
    Consumed,
    /// Drop the frame; the reason is counted.
    Drop(DropReason),
    /// The buffer now holds a frame the dataplane generated (an ARP reply, or an ARP request
    /// in place of a packet whose next hop is unresolved): send its first `len` bytes on
    /// attachment `vpc`.
    Emit {
        /// Attachment to send on.
        vpc: Attachment,
        /// Length of the generated frame.
        len: usize,
    },
    /// Transmit the frame, rewritten in place, on attachment `vpc`. Its length is unchanged
    /// unless client identity grew it (see [`crate::rewrite::identity`]).
    Forward(Attachment),
}

/// Why a frame was dropped. Each variant indexes a counter; variants are alphabetical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// An ARP packet the daemon does not answer: a request for an address it does not own,
    /// a gratuitous ARP, a reply nobody asked for (no request of ours outstanding for its
    /// sender), or an unsupported ARP format. None of them touches the neighbour table.
    ArpNotForUs,
    /// A new flow found the conntrack table at capacity and nothing evictable node-wide
    /// (every flow established or replied), or its pipeline's expiry queue full of live keys.
    ConntrackFull,
    /// A new flow from a VPC whose clients hold their whole share of conntrack
    /// (`conntrack_vpc_percent`) with none of them evictable: one tenant cannot take the
    /// room of the others.
    ConntrackVpcLimit,
    /// An IPv4 fragment (more-fragments set or a non-zero offset); not reassembled.
    Fragment,
    /// A segment that had to carry client identity (a PROXY v2 header, a TOA option) and
    /// could not grow: the frame was at the 65,535-byte IPv4 limit or filled its buffer.
    /// The client sends it again (a retransmission is one segment, which fits).
    IdentityNoRoom,
    /// A client segment of a flow with client identity that carries data or a FIN outside
    /// the stream the identity starts: a FIN before the client's ISN + 1, or data before
    /// the backend has answered the client's SYN (for a flow that opened again on the same
    /// ports, a SYN-ACK acknowledging its new ISN). Data that merely starts before ISN + 1 is
    /// trimmed, not dropped. Either way a client never chooses the first bytes a backend
    /// reads (see [`crate::rewrite::identity`]).
    IdentityOutOfStream,
    /// An IPv4 header with options (IHL above 5); refused like source routing would be.
    IpOptions,
    /// Malformed bytes: truncated headers, bad IHL, total length beyond the frame, a bad
    /// IPv4 header checksum, a bad TCP data offset or UDP length.
    Malformed,
    /// Addressed to no endpoint of this attachment and to no SNAT address, or a new flow
    /// to an endpoint of an attachment this node is the standby of (another node owns it).
    NoEndpoint,
    /// Addressed to no endpoint and no SNAT address, from a VPC that has gateway endpoints,
    /// outside every prefix they reach.
    NoRoute,
    /// A new flow to an endpoint whose connection is not accepted (pending, rejected,
    /// frozen, or its service suspended).
    NotAccepted,
    /// A unicast frame for a MAC address other than the attachment's.
    NotForUs,
    /// A frame larger than `max_frame_bytes` (by default, larger than any IPv4 packet);
    /// never forwarded cut.
    Oversize,
    /// A new flow to an accepted endpoint on a protocol and port it does not map.
    PortNotMapped,
    /// A packet (or an ARP message for one of our addresses) on an attachment with
    /// `port_security` whose source address and source MAC are not those of one known port
    /// of the VPC: an address or a MAC forged (or a VM the inventory does not know). Checked
    /// on every packet there, flows already open included, so a frame of another MAC never
    /// passes for an open flow's client or backend.
    PortSecurity,
    /// A packet to a SNAT address that belongs to no flow: the provider side trying to open
    /// a flow (access is one-way), or a late packet of an expired flow.
    ReplyWithoutFlow,
    /// A packet of an existing flow whose connection was revoked since the flow opened
    /// (rejected, deleted, expired, suspended, backend or whitelist changed); the flow is
    /// removed.
    Revoked,
    /// No SNAT port was free for the flow's (SNAT IP, backend IP, backend port, protocol).
    SnatExhausted,
    /// A frame whose source MAC is multicast or broadcast, which no host sends: spoofed or
    /// broken, dropped before anything is learned from it.
    SourceMac,
    /// The client's address is not in the endpoint's source whitelist.
    SourceNotWhitelisted,
    /// A new flow whose source address lies in none of the ingress VPC's subnets: forged
    /// (to pass a whitelist, say) or from outside the VPC. Replies would go to the sender's
    /// MAC, so the address is checked before anything opens.
    SourceOutsideVpc,
    /// A TCP segment without SYN (or with SYN and ACK) that matches no flow.
    TcpNoFlow,
    /// TTL of 1 or 0: forwarding would expire it.
    TtlExceeded,
    /// The next hop's MAC is unknown; an ARP request was sent in the frame's place.
    UnknownNeighbour,
    /// Not IPv4 or ARP (IPv6, a VLAN tag left in the frame, ...), or an IP protocol other
    /// than TCP and UDP.
    UnsupportedProtocol,
    /// A frame that carried an 802.1Q tag, which the kernel stripped and reported beside it:
    /// no attachment names a VLAN, so it belongs to no VPC here (never to the untagged one).
    VlanTagged,
}

impl DropReason {
    /// Number of variants; a unit test matches every variant so this cannot drift.
    pub const COUNT: usize = 26;

    /// Every variant, in counter order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::ArpNotForUs,
        Self::ConntrackFull,
        Self::ConntrackVpcLimit,
        Self::Fragment,
        Self::IdentityNoRoom,
        Self::IdentityOutOfStream,
        Self::IpOptions,
        Self::Malformed,
        Self::NoEndpoint,
        Self::NoRoute,
        Self::NotAccepted,
        Self::NotForUs,
        Self::Oversize,
        Self::PortNotMapped,
        Self::PortSecurity,
        Self::ReplyWithoutFlow,
        Self::Revoked,
        Self::SnatExhausted,
        Self::SourceMac,
        Self::SourceNotWhitelisted,
        Self::SourceOutsideVpc,
        Self::TcpNoFlow,
        Self::TtlExceeded,
        Self::UnknownNeighbour,
        Self::UnsupportedProtocol,
        Self::VlanTagged,
    ];

    /// The counter index.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label used in metrics (`reason="..."`).
    pub fn name(self) -> &'static str {
        match self {
            Self::ArpNotForUs => "arp_not_for_us",
            Self::ConntrackFull => "conntrack_full",
            Self::ConntrackVpcLimit => "conntrack_vpc_limit",
            Self::Fragment => "fragment",
            Self::IdentityNoRoom => "identity_no_room",
            Self::IdentityOutOfStream => "identity_out_of_stream",
            Self::IpOptions => "ip_options",
            Self::Malformed => "malformed",
            Self::NoEndpoint => "no_endpoint",
            Self::NoRoute => "no_route",
            Self::NotAccepted => "not_accepted",
            Self::NotForUs => "not_for_us",
            Self::Oversize => "oversize",
            Self::PortNotMapped => "port_not_mapped",
            Self::PortSecurity => "port_security",
            Self::ReplyWithoutFlow => "reply_without_flow",
            Self::Revoked => "revoked",
            Self::SnatExhausted => "snat_exhausted",
            Self::SourceMac => "source_mac",
            Self::SourceNotWhitelisted => "source_not_whitelisted",
            Self::SourceOutsideVpc => "source_outside_vpc",
            Self::TcpNoFlow => "tcp_no_flow",
            Self::TtlExceeded => "ttl_exceeded",
            Self::UnknownNeighbour => "unknown_neighbour",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::VlanTagged => "vlan_tagged",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_variant_in_index_order() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
            // An exhaustive match: adding a variant without updating COUNT/ALL fails here.
            let known = match reason {
                DropReason::ArpNotForUs
                | DropReason::ConntrackFull
                | DropReason::ConntrackVpcLimit
                | DropReason::Fragment
                | DropReason::IdentityNoRoom
                | DropReason::IdentityOutOfStream
                | DropReason::IpOptions
                | DropReason::Malformed
                | DropReason::NoEndpoint
                | DropReason::NoRoute
                | DropReason::NotAccepted
                | DropReason::NotForUs
                | DropReason::Oversize
                | DropReason::PortNotMapped
                | DropReason::PortSecurity
                | DropReason::ReplyWithoutFlow
                | DropReason::Revoked
                | DropReason::SnatExhausted
                | DropReason::SourceMac
                | DropReason::SourceNotWhitelisted
                | DropReason::SourceOutsideVpc
                | DropReason::TcpNoFlow
                | DropReason::TtlExceeded
                | DropReason::UnknownNeighbour
                | DropReason::UnsupportedProtocol
                | DropReason::VlanTagged => true,
            };
            assert!(known);
        }
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
