//! Crediting forwarded frames to their endpoint's meter ([`crate::meter`]): a frame is
//! credited as one plain frame where its flow is found; a GSO super-frame, or a frame that
//! client identity grew, is corrected here, off the common path.

use super::Pipeline;
use crate::conntrack::flowlog;
use crate::wire::ethernet;
use crate::wire::ipv4::{self, PROTO_TCP};
use crate::wire::offload::VnetHdr;

impl Pipeline {
    /// Correct the meter of the frame just forwarded (credited as one frame of `len`
    /// bytes): it was a super-frame, or client identity grew it to `frame`.
    #[cold]
    pub(super) fn meter_again(&mut self, frame: &[u8], len: usize, vnet: VnetHdr) {
        let (word, dir, record) = self.metered;
        let (segments, bytes) = wire_size(frame, vnet);
        let credited = len.saturating_sub(ethernet::HEADER_LEN) as u64;
        let (more, extra) = (segments.saturating_sub(1), bytes.saturating_sub(credited));
        self.meters.packet(word, dir, more, extra, false);
        if word & flowlog::LOGGED != 0 {
            self.shared.conntrack.log_packet(record, dir, more, extra);
        }
    }
}

/// The IPv4 bytes of an Ethernet frame.
#[inline(always)]
pub(super) fn ip_bytes(frame: &[u8]) -> u64 {
    frame.len().saturating_sub(ethernet::HEADER_LEN) as u64
}

/// The segments and IPv4 bytes a forwarded frame stands for on the wire: itself, or for a
/// GSO super-frame, its payload cut into `gso_size` pieces, each with the headers again.
#[inline(always)]
fn wire_size(frame: &[u8], vnet: VnetHdr) -> (u64, u64) {
    let ip_bytes = frame.len().saturating_sub(ethernet::HEADER_LEN) as u64;
    if !vnet.is_gso() || vnet.gso_size == 0 {
        return (1, ip_bytes);
    }
    super_frame_size(frame, vnet.gso_size, ip_bytes)
}

#[cold]
fn super_frame_size(frame: &[u8], gso_size: u16, ip_bytes: u64) -> (u64, u64) {
    // Checked headers (the frame was just forwarded): IPv4 without options, then TCP's
    // data offset or UDP's eight bytes.
    let l4 = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN;
    let l4_len = match frame.get(ethernet::HEADER_LEN + 9) {
        Some(&PROTO_TCP) => frame.get(l4 + 12).map_or(20, |b| usize::from(b >> 4) * 4),
        _ => 8,
    };
    let headers = (ipv4::MIN_HEADER_LEN + l4_len) as u64;
    let payload = ip_bytes.saturating_sub(headers);
    let segments = payload.div_ceil(u64::from(gso_size)).max(1);
    (segments, ip_bytes + (segments - 1) * headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::offload::GSO_TCPV4;

    #[test]
    fn a_super_frame_counts_as_the_segments_it_stands_for() {
        // Ethernet, IPv4 (20), TCP with 12 bytes of options (32), 3000 bytes of payload.
        let mut frame = vec![0u8; 14 + 20 + 32 + 3000];
        frame[14 + 9] = PROTO_TCP;
        frame[14 + 20 + 12] = 8 << 4;
        assert_eq!(wire_size(&frame, VnetHdr::NONE), (1, 3052));
        let gso = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 1448,
            ..VnetHdr::NONE
        };
        // Three segments (1448 + 1448 + 104), each with its 52 bytes of headers.
        assert_eq!(wire_size(&frame, gso), (3, 3000 + 3 * 52));
    }
}
