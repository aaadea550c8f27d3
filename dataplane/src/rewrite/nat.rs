//! The rewrite, and nothing else: addresses, ports, TTL and MACs of a validated frame,
//! each field change paired with its RFC 1624 checksum fix-up right here, so every byte the
//! dataplane changes is visible in this file.
//!
//! Precondition for [`rewrite`]: the pipeline has checked an Ethernet header, an IPv4
//! header of exactly 20 bytes and a whole TCP or UDP header.

use crate::conntrack::Rewrite;
use crate::wire::checksum::fold;
use crate::wire::ethernet::{self, EthernetFrame, MacAddr};
use crate::wire::ipv4::{Ipv4Packet, PROTO_TCP};
use crate::wire::offload::L4Checksum;
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;

#[inline]
fn words(v: u32) -> u32 {
    (v >> 16) + (v & 0xffff)
}

#[inline]
fn not_words(v: u32) -> u32 {
    words(!v)
}

/// `~HC + sum` folded and complemented (RFC 1624 eqn. 3 with the differences pre-summed).
#[inline]
fn apply(hc: u16, delta: u32) -> u16 {
    !fold(u32::from(!hc) + delta)
}

/// `~old + new` of one 16-bit word, for a pre-summed difference.
#[inline]
fn diff16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// Rewrite `frame` with `rw`, decrement the TTL, set the MACs, and patch the IPv4 and
/// transport checksums incrementally. A UDP checksum of zero ("none") stays zero; a
/// computed zero is written as 0xffff (RFC 768).
///
/// With `l4` [`L4Checksum::Partial`] (checksum offload: the field holds the folded
/// pseudo-header sum and is finished downstream) only the address change moves the field,
/// and it is added, not complemented; the ports are summed when the checksum is finished.
/// The payload of a super-frame is never read.
#[inline]
pub fn rewrite(
    frame: &mut [u8],
    proto: u8,
    l4: L4Checksum,
    rw: &Rewrite,
    src_mac: MacAddr,
    dst_mac: MacAddr,
) {
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst(dst_mac);
    eth.set_src(src_mac);

    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..]);
    let (old_src, old_dst) = (ip.src_u32(), ip.dst_u32());
    // The pseudo-header part of the change, shared by the IPv4 and L4 checksums.
    let addr_delta = not_words(old_src) + words(rw.src) + not_words(old_dst) + words(rw.dst);
    ip.set_src_u32(rw.src);
    ip.set_dst_u32(rw.dst);
    // The TTL shares a 16-bit checksum word with the protocol byte. The pipeline dropped
    // TTL <= 1, so this never wraps.
    let ttl = ip.ttl();
    ip.set_ttl(ttl - 1);
    let ttl_delta = diff16(
        u16::from_be_bytes([ttl, proto]),
        u16::from_be_bytes([ttl - 1, proto]),
    );
    let hc = ip.checksum();
    ip.set_checksum(apply(hc, addr_delta + ttl_delta));

    let segment = ip.payload_mut();
    if proto == PROTO_TCP {
        let mut tcp = TcpPacket::new_unchecked(segment);
        let delta =
            addr_delta + diff16(tcp.src_port(), rw.sport) + diff16(tcp.dst_port(), rw.dport);
        tcp.set_src_port(rw.sport);
        tcp.set_dst_port(rw.dport);
        let hc = tcp.checksum();
        tcp.set_checksum(match l4 {
            L4Checksum::Partial { .. } => fold(u32::from(hc) + addr_delta),
            L4Checksum::Complete => apply(hc, delta),
        });
    } else {
        let mut udp = UdpPacket::new_unchecked(segment);
        let delta =
            addr_delta + diff16(udp.src_port(), rw.sport) + diff16(udp.dst_port(), rw.dport);
        udp.set_src_port(rw.sport);
        udp.set_dst_port(rw.dport);
        let hc = udp.checksum();
        match l4 {
            L4Checksum::Partial { .. } => udp.set_checksum(fold(u32::from(hc) + addr_delta)),
            L4Checksum::Complete if hc == 0 => {} // "no checksum" stays so
            L4Checksum::Complete => {
                let new = apply(hc, delta);
                udp.set_checksum(if new == 0 { 0xffff } else { new });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    use super::*;

    fn frame(tcp: bool, payload: &[u8], src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, 64);
        let mut out = Vec::new();
        if tcp {
            b.tcp(sp, dp, 7, 1000)
                .ack(3)
                .write(&mut out, payload)
                .unwrap();
        } else {
            b.udp(sp, dp).write(&mut out, payload).unwrap();
        }
        out
    }

    /// Full recompute of both checksums with etherparse; true if they equal what is there.
    fn checksums_verify(bytes: &[u8]) -> bool {
        let p = SlicedPacket::from_ethernet(bytes).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not ipv4")
        };
        let header = ip.header().to_header();
        if header.calc_header_checksum() != header.header_checksum {
            return false;
        }
        match &p.transport {
            Some(TransportSlice::Tcp(t)) => {
                t.to_header()
                    .calc_checksum_ipv4(&header, t.payload())
                    .unwrap()
                    == t.checksum()
            }
            Some(TransportSlice::Udp(u)) => {
                u.checksum() == 0
                    || u.to_header()
                        .calc_checksum_ipv4(&header, u.payload())
                        .unwrap()
                        == u.checksum()
            }
            _ => panic!("no transport"),
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut f = frame(false, b"x", [10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
        f[40..42].copy_from_slice(&[0, 0]);
        let rw = Rewrite {
            src: 1,
            dst: 2,
            sport: 3,
            dport: 4,
        };
        rewrite(
            &mut f,
            17,
            L4Checksum::Complete,
            &rw,
            MacAddr::default(),
            MacAddr::default(),
        );
        assert_eq!(&f[40..42], &[0, 0]);
        assert!(checksums_verify(&f));
    }

    proptest! {
        #[test]
        fn rewrite_matches_full_recompute(
            tcp in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            sp in 1u16.., dp in 1u16..,
            nsrc in any::<u32>(), ndst in any::<u32>(), nsp in any::<u16>(), ndp in any::<u16>(),
        ) {
            let mut f = frame(tcp, &payload, src, dst, sp, dp);
            let rw = Rewrite { src: nsrc, dst: ndst, sport: nsp, dport: ndp };
            let smac = MacAddr([2, 0, 0, 0, 0, 0xaa]);
            let dmac = MacAddr([2, 0, 0, 0, 0, 0xbb]);
            rewrite(&mut f, if tcp { 6 } else { 17 }, L4Checksum::Complete, &rw, smac, dmac);
            prop_assert!(checksums_verify(&f));
            let p = SlicedPacket::from_ethernet(&f).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!() };
            prop_assert_eq!(ip.header().source_addr(), Ipv4Addr::from(nsrc));
            prop_assert_eq!(ip.header().destination_addr(), Ipv4Addr::from(ndst));
            prop_assert_eq!(ip.header().ttl(), 63);
            prop_assert_eq!(&f[0..6], &dmac.0);
            prop_assert_eq!(&f[6..12], &smac.0);
            prop_assert_eq!(u16::from_be_bytes([f[34], f[35]]), nsp);
            prop_assert_eq!(u16::from_be_bytes([f[36], f[37]]), ndp);
            prop_assert_eq!(ip.payload().payload.len() - if tcp { 20 } else { 8 }, payload.len());
        }
    }
}
