//! The `parse` fuzz target's check, shared with `dataplane/tests/suite/fuzz_replay.rs`: every
//! wire view over arbitrary bytes: `new_checked` either refuses or yields a view whose
//! every accessor (options, MSS, SACK edges and the urgent pointer included) is safe to
//! call.

use dataplane::wire::arp::ArpPacket;
use dataplane::wire::ethernet::EthernetFrame;
use dataplane::wire::ipv4::Ipv4Packet;
use dataplane::wire::tcp::TcpPacket;
use dataplane::wire::udp::UdpPacket;

/// Run every view over `data`; a panic is the failure.
pub(crate) fn run(data: &[u8]) {
    if let Ok(e) = EthernetFrame::new_checked(data) {
        let _ = (e.dst(), e.src(), e.ethertype());
    }
    if let Ok(a) = ArpPacket::new_checked(data) {
        let _ = (a.operation(), a.sender_mac(), a.sender_ip(), a.target_ip());
    }
    if let Ok(ip) = Ipv4Packet::new_checked(data) {
        let _ = (ip.header_len(), ip.total_len(), ip.ttl(), ip.protocol());
        let _ = (
            ip.src_addr(),
            ip.dst_addr(),
            ip.is_fragment(),
            ip.verify_checksum(),
        );
        let p = ip.payload();
        if let Ok(t) = TcpPacket::new_checked(p) {
            let _ = (
                t.src_port(),
                t.dst_port(),
                t.flags(),
                t.checksum(),
                t.urg_ptr(),
            );
            let _ = (t.options().count(), t.mss(), t.sack_edges().count());
        }
        if let Ok(u) = UdpPacket::new_checked(p) {
            let _ = (u.src_port(), u.dst_port(), u.len(), u.checksum());
        }
    }
    if let Ok(t) = TcpPacket::new_checked(data) {
        let _ = (t.options().count(), t.mss(), t.sack_edges().count());
    }
}
