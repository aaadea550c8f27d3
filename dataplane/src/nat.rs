//! The rewrite, and nothing else: addresses, ports, TTL and MACs of a validated frame,
//! each field change paired with its RFC 1624 checksum fix-up right here, so every byte the
//! dataplane changes is visible in this file.
//!
//! Precondition for [`rewrite`]: the pipeline has checked an Ethernet header, an IPv4
//! header of exactly 20 bytes and a whole TCP or UDP header.

use crate::conntrack::Rewrite;
use crate::wire::checksum::fold;
use crate::wire::ethernet::{self, MacAddr};
use crate::wire::ipv4::{self, PROTO_TCP};
use crate::wire::offload::L4Checksum;
use crate::wire::{read_u16, read_u32, write_u16, write_u32};

const IP: usize = ethernet::HEADER_LEN;
const L4: usize = IP + ipv4::MIN_HEADER_LEN;
const IP_TTL: usize = IP + 8;
const IP_CSUM: usize = IP + 10;
const IP_SRC: usize = IP + 12;
const IP_DST: usize = IP + 16;
const TCP_CSUM: usize = L4 + 16;
const UDP_CSUM: usize = L4 + 6;

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
    frame[0..6].copy_from_slice(&dst_mac.0);
    frame[6..12].copy_from_slice(&src_mac.0);

    let old_src = read_u32(frame, IP_SRC);
    let old_dst = read_u32(frame, IP_DST);
    // The pseudo-header part of the change, shared by the IPv4 and L4 checksums.
    let addr_delta = not_words(old_src) + words(rw.src) + not_words(old_dst) + words(rw.dst);
    write_u32(frame, IP_SRC, rw.src);
    write_u32(frame, IP_DST, rw.dst);

    // TTL shares a 16-bit word with the protocol byte.
    let old_ttl_word = read_u16(frame, IP_TTL);
    let new_ttl_word = old_ttl_word - 0x0100;
    write_u16(frame, IP_TTL, new_ttl_word);
    let ip_delta = addr_delta + u32::from(!old_ttl_word) + u32::from(new_ttl_word);
    let hc = read_u16(frame, IP_CSUM);
    write_u16(frame, IP_CSUM, apply(hc, ip_delta));

    let old_sport = read_u16(frame, L4);
    let old_dport = read_u16(frame, L4 + 2);
    write_u16(frame, L4, rw.sport);
    write_u16(frame, L4 + 2, rw.dport);
    let l4_delta = addr_delta
        + u32::from(!old_sport)
        + u32::from(rw.sport)
        + u32::from(!old_dport)
        + u32::from(rw.dport);
    let csum_at = if proto == PROTO_TCP {
        TCP_CSUM
    } else {
        UDP_CSUM
    };
    if let L4Checksum::Partial { .. } = l4 {
        let seed = read_u16(frame, csum_at);
        write_u16(frame, csum_at, fold(u32::from(seed) + addr_delta));
    } else if proto == PROTO_TCP {
        let hc = read_u16(frame, TCP_CSUM);
        write_u16(frame, TCP_CSUM, apply(hc, l4_delta));
    } else {
        let hc = read_u16(frame, UDP_CSUM);
        if hc != 0 {
            let new = apply(hc, l4_delta);
            write_u16(frame, UDP_CSUM, if new == 0 { 0xffff } else { new });
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
        f[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&[0, 0]);
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
        assert_eq!(read_u16(&f, UDP_CSUM), 0);
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
            prop_assert_eq!(read_u16(&f, L4), nsp);
            prop_assert_eq!(read_u16(&f, L4 + 2), ndp);
            prop_assert_eq!(ip.payload().payload.len() - if tcp { 20 } else { 8 }, payload.len());
        }
    }
}
