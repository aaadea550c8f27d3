//! The reset a client gets for a segment of a connection this node does not carry (RFC 9293
//! section 3.10.7.1, "if the connection does not exist"): a node that took over an
//! endpoint from a dead owner without the flow (opened in the moment before its replication
//! reached this node) answers the client's next segment with a reset, so the client
//! reconnects at once instead of retransmitting into silence until its own timeout.
//!
//! The frame is built in place over the segment (a checked Ethernet, IPv4 and TCP frame of
//! at least 54 bytes): from the endpoint's address and port back to the client's, 20 bytes
//! of IPv4 and 20 of TCP, both checksums complete.
//! - If the segment carries an ACK, the reset's sequence number is that acknowledgment.
//! - Otherwise the reset has sequence 0 and acknowledges the segment: its sequence number
//!   plus its length (SYN and FIN count one each). Its flags are then RST and ACK.

use crate::wire::checksum;
use crate::wire::ethernet::{self, MacAddr};
use crate::wire::ipv4::PROTO_TCP;
use crate::wire::tcp;

/// The length of a reset frame.
pub const LEN: usize = ethernet::HEADER_LEN + 20 + 20;

/// Turn the TCP segment in `frame` into a reset from its destination to its source, sent
/// from `our_mac`. Returns the frame's new length, or `None` if `frame` is not an untagged
/// IPv4 TCP frame of at least [`LEN`] bytes (it is left as it was then).
pub fn reset_in_place(frame: &mut [u8], our_mac: MacAddr) -> Option<usize> {
    let e = ethernet::HEADER_LEN;
    if frame.len() < LEN || frame[12..14] != [0x08, 0x00] || frame[e + 9] != PROTO_TCP {
        return None;
    }
    let ihl = usize::from(frame[e] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[e + 2], frame[e + 3]]));
    let t = e + ihl;
    if ihl < 20 || frame.len() < t + 20 || total < ihl + 20 {
        return None;
    }
    let word =
        |at: usize| u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
    let (src_ip, dst_ip) = (word(e + 12), word(e + 16));
    let (sport, dport) = (&frame[t..t + 2], &frame[t + 2..t + 4]);
    let (sport, dport) = ([sport[0], sport[1]], [dport[0], dport[1]]);
    let (seq, ack) = (word(t + 4), word(t + 8));
    let flags = frame[t + 13];
    let data_offset = usize::from(frame[t + 12] >> 4) * 4;
    let payload = total.saturating_sub(ihl + data_offset);
    let (rst_seq, rst_ack, rst_flags) = if flags & tcp::ACK != 0 {
        (ack, 0, tcp::RST)
    } else {
        let len = payload + usize::from(flags & tcp::SYN != 0) + usize::from(flags & tcp::FIN != 0);
        #[allow(clippy::cast_possible_truncation)] // sequence space wraps at 2^32
        (0, seq.wrapping_add(len as u32), tcp::RST | tcp::ACK)
    };
    // Ethernet: back to the sender.
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&our_mac.0);
    // IPv4, without options.
    let ip = &mut frame[e..e + 20];
    ip.copy_from_slice(&[
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, PROTO_TCP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[12..16].copy_from_slice(&dst_ip.to_be_bytes());
    ip[16..20].copy_from_slice(&src_ip.to_be_bytes());
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    // TCP, right after.
    let t = e + 20;
    let seg = &mut frame[t..t + 20];
    seg.fill(0);
    seg[0..2].copy_from_slice(&dport);
    seg[2..4].copy_from_slice(&sport);
    seg[4..8].copy_from_slice(&rst_seq.to_be_bytes());
    seg[8..12].copy_from_slice(&rst_ack.to_be_bytes());
    seg[12] = 5 << 4;
    seg[13] = rst_flags;
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&dst_ip.to_be_bytes());
    pseudo[4..8].copy_from_slice(&src_ip.to_be_bytes());
    pseudo[9] = PROTO_TCP;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let c = !checksum::fold(checksum::sum(checksum::sum(0, &pseudo), seg));
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    Some(LEN)
}

#[cfg(test)]
mod tests {
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    use super::*;

    const OURS: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xaa]);

    fn segment(ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 5], OURS.0).ipv4(
            [10, 0, 0, 5],
            [10, 0, 0, 200],
            63,
        );
        let mut b = b.tcp(40000, 80, 1000, 64000);
        if let Some(a) = ack {
            b = b.ack(a);
        }
        if syn {
            b = b.syn();
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    /// The reset `reset_in_place` makes of `frame`, parsed: (seq, ack, flags RST, ACK).
    fn reset_of(mut frame: Vec<u8>) -> (u32, u32, bool, bool) {
        let n = reset_in_place(&mut frame, OURS).unwrap();
        assert_eq!(n, LEN);
        let p = SlicedPacket::from_ethernet(&frame[..n]).unwrap();
        assert_eq!(frame[0..6], [2, 0, 0, 0, 0, 5]);
        assert_eq!(frame[6..12], OURS.0);
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        let h = ip.header();
        assert_eq!(h.source(), [10, 0, 0, 200]);
        assert_eq!(h.destination(), [10, 0, 0, 5]);
        assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("not TCP")
        };
        assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
        let sum = t
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), &[])
            .unwrap();
        assert_eq!(sum, t.checksum(), "TCP checksum");
        assert!(!t.syn() && !t.fin());
        (
            t.sequence_number(),
            t.acknowledgment_number(),
            t.rst(),
            t.ack(),
        )
    }

    #[test]
    fn a_segment_with_an_ack_gets_a_reset_at_that_sequence() {
        assert_eq!(
            reset_of(segment(Some(777), false, b"data")),
            (777, 0, true, false)
        );
    }

    #[test]
    fn a_segment_without_an_ack_gets_a_reset_that_acknowledges_it() {
        assert_eq!(
            reset_of(segment(None, false, b"12345")),
            (0, 1005, true, true)
        );
        assert_eq!(reset_of(segment(None, true, b"")), (0, 1001, true, true));
    }

    #[test]
    fn what_is_not_a_tcp_frame_is_left_alone() {
        let mut short = segment(Some(1), false, b"")[..50].to_vec();
        let before = short.clone();
        assert_eq!(reset_in_place(&mut short, OURS), None);
        assert_eq!(short, before);
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .udp(1, 2)
            .write(&mut udp, &[0; 20])
            .unwrap();
        assert_eq!(reset_in_place(&mut udp, OURS), None);
    }
}
