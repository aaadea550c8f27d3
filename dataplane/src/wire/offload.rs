//! Offload metadata: the `struct virtio_net_hdr` that Linux puts before each frame on a
//! packet socket with `PACKET_VNET_HDR` (and takes before each frame sent on one), and the
//! software completion of a checksum the sender left partial.
//!
//! Layout (`include/uapi/linux/virtio_net.h`), ten bytes in host byte order (the kernel's
//! `vio_le()` is the host's order for packet sockets):
//!
//! ```text
//!  0      1         2         4          6            8             10
//!  flags  gso_type  hdr_len   gso_size   csum_start   csum_offset
//! ```
//!
//! A frame with `NEEDS_CSUM` carries in its transport checksum field the folded sum of the
//! pseudo-header only (not complemented); whoever finishes it sums the bytes from
//! `csum_start` to the end and writes the complement at `csum_start + csum_offset`.
//! `csum_start` counts from the first byte of the Ethernet header. A frame with a GSO type
//! is a super-frame: one set of headers for up to 64 KiB of payload, cut into `gso_size`
//! segments downstream (by the kernel, or by a peer that takes it whole).
//!
//! Nothing here reads or writes a socket; the I/O backends use these types, and the
//! pipeline learns from [`L4Checksum`] how to patch a checksum field.

use super::checksum;
use super::ethernet::{ETHERTYPE_IPV4, EthernetFrame, HEADER_LEN};
use super::ipv4::{Ipv4Packet, PROTO_TCP, PROTO_UDP};
use super::tcp::TcpPacket;
use super::udp::UdpPacket;

/// Size of `struct virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the transport checksum is partial.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified (receive side only).
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO, fragmenting; not produced by current kernels).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (UDP GSO: segments are whole datagrams).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`, or-ed into the type.
pub const GSO_ECN: u8 = 0x80;

/// A parsed `struct virtio_net_hdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// A `GSO_*` type, possibly with `GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers (a hint for the receiver's linear part).
    pub hdr_len: u16,
    /// Payload bytes per segment of a super-frame.
    pub gso_size: u16,
    /// Where checksumming starts, from the first byte of the frame.
    pub csum_start: u16,
    /// Where the checksum field sits, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// A plain frame: complete checksums, no segmentation.
    pub const NONE: Self = Self {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Decode the ten bytes the kernel wrote.
    pub fn from_bytes(b: &[u8; VNET_HDR_LEN]) -> Self {
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    /// Encode for the kernel.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// The frame's transport checksum is partial.
    pub fn needs_csum(self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// The frame is a super-frame to be segmented downstream.
    pub fn is_gso(self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }

    /// What the transport checksum field of the frame holds.
    pub fn l4_checksum(self) -> L4Checksum {
        if self.needs_csum() {
            L4Checksum::Partial {
                start: self.csum_start,
                offset: self.csum_offset,
            }
        } else {
            L4Checksum::Complete
        }
    }
}

/// What a frame's TCP or UDP checksum field holds, which decides how a rewrite patches it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L4Checksum {
    /// The complete checksum (or zero: a UDP datagram without one).
    #[default]
    Complete,
    /// The folded pseudo-header sum, to be finished downstream: only address changes move
    /// it. `start` and `offset` are the sender's `csum_start` and `csum_offset`.
    Partial {
        /// From the first byte of the frame to the transport header.
        start: u16,
        /// From the transport header to the checksum field.
        offset: u16,
    },
}

/// Finish a transport checksum the sender left partial: sum the whole TCP or UDP segment
/// over the pseudo-header sum already in the field and write the complement. Returns false,
/// and changes nothing, unless the frame is Ethernet/IPv4 with a whole TCP or UDP header.
/// For backends that cannot hand a partial checksum on (no vnet header).
pub fn complete_partial(frame: &mut [u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
        return false;
    };
    if eth.ethertype() != ETHERTYPE_IPV4 {
        return false;
    }
    let Ok(ip) = Ipv4Packet::new_checked(&frame[HEADER_LEN..]) else {
        return false;
    };
    let start = HEADER_LEN + ip.header_len();
    let end = HEADER_LEN + usize::from(ip.total_len());
    let proto = ip.protocol();
    let segment = &mut frame[start..end];
    let whole_header = match proto {
        PROTO_TCP => TcpPacket::new_checked(&*segment).is_ok(),
        PROTO_UDP => UdpPacket::new_checked(&*segment).is_ok(),
        _ => false,
    };
    if !whole_header {
        return false;
    }
    // The field holds the pseudo-header sum: summing the segment as it is adds it in.
    let mut c = !checksum::fold(checksum::sum(0, segment));
    match proto {
        PROTO_TCP => {
            if let Ok(mut t) = TcpPacket::new_checked(segment) {
                t.set_checksum(c);
            }
        }
        _ => {
            if c == 0 {
                c = 0xffff; // RFC 768: a computed zero is sent as all ones
            }
            if let Ok(mut u) = UdpPacket::new_checked(segment) {
                u.set_checksum(c);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::{fold, pseudo_header_sum};

    #[test]
    fn vnet_hdr_round_trips() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: 42,
            gso_size: 1400,
            csum_start: 34,
            csum_offset: 6,
        };
        assert_eq!(VnetHdr::from_bytes(&h.to_bytes()), h);
        assert!(h.is_gso() && h.needs_csum());
        assert_eq!(
            h.l4_checksum(),
            L4Checksum::Partial {
                start: 34,
                offset: 6
            }
        );
        assert!(!VnetHdr::NONE.is_gso());
        assert!(
            !VnetHdr {
                gso_type: GSO_ECN,
                ..VnetHdr::NONE
            }
            .is_gso()
        );
        assert_eq!(VnetHdr::NONE.l4_checksum(), L4Checksum::Complete);
    }

    #[test]
    fn complete_partial_matches_a_full_checksum() {
        for tcp in [true, false] {
            let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                64,
            );
            let mut full = Vec::new();
            if tcp {
                b.tcp(1000, 80, 5, 100)
                    .write(&mut full, b"hello world")
                    .unwrap();
            } else {
                b.udp(1000, 53).write(&mut full, b"hello world").unwrap();
            }
            let at = if tcp { 14 + 20 + 16 } else { 14 + 20 + 6 };
            let want = [full[at], full[at + 1]];
            // What an offloading sender leaves: the pseudo-header sum, folded, not complemented.
            let l4_len = u16::try_from(full.len() - 34).unwrap();
            let pseudo =
                pseudo_header_sum(0x0a00_0001, 0x0a00_0002, if tcp { 6 } else { 17 }, l4_len);
            let mut partial = full.clone();
            partial[at..at + 2].copy_from_slice(&fold(pseudo).to_be_bytes());
            assert!(complete_partial(&mut partial));
            assert_eq!([partial[at], partial[at + 1]], want);
        }
        assert!(!complete_partial(&mut [0u8; 20]));
    }
}
