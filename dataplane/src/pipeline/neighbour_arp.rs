//! The pipeline's ARP side: answering for endpoint and SNAT addresses, learning backends
//! from answers to our own requests, asking for a next hop in a packet's place, and
//! resolving the tables' backends ahead of traffic ([`Pipeline::solicit`]).

use std::time::Instant;

use super::Pipeline;
use crate::flow::Attachment;
use crate::neighbour::{Answer, Solicit};
use crate::tables::Tables;
use crate::verdict::{DropReason, Verdict};
use crate::wire::ParseError;
use crate::wire::arp::{self, ArpPacket};
use crate::wire::ethernet::{self, EthernetFrame, MacAddr};

impl Pipeline {
    /// Turn `frame` into an ARP request for `ip` on `vpc` (rate-limited per address), or
    /// drop it. Either way the packet itself is lost and counted as `UnknownNeighbour`; the
    /// client's retransmission finds the neighbour resolved. (No queue: a queue would hold
    /// copies of frames and allocate.)
    pub(super) fn ask_neighbour(
        &mut self,
        vpc: Attachment,
        ip: u32,
        sender_ip: u32,
        frame: &mut [u8],
        now_secs: u32,
    ) -> Verdict {
        self.stats.drop(DropReason::UnknownNeighbour);
        let Some(&mac) = self.config.attachments.get(vpc.index()) else {
            return Verdict::Consumed;
        };
        match self.shared.neighbours.solicit(vpc, ip, now_secs) {
            Solicit::Send => {}
            Solicit::Wait => return Verdict::Consumed,
            Solicit::Full => {
                self.stats.neighbours_refused += 1;
                return Verdict::Consumed;
            }
        }
        let len = emit_arp(
            frame,
            arp::OP_REQUEST,
            MacAddr::BROADCAST,
            (mac, sender_ip),
            (MacAddr::default(), ip),
        );
        self.stats.arp_requests += 1;
        Verdict::Emit { vpc, len }
    }

    /// ARP: answer requests for our addresses, and take replies only as answers to our own
    /// outstanding requests. Nothing a tenant sends on its own creates or changes an entry:
    /// not a request (anyone can send one from any address; learning from them is what
    /// let one VPC fill the table), not a gratuitous ARP, not an unsolicited reply. One
    /// that contradicts a resolved neighbour only has it re-verified sooner. On an attachment
    /// with port security, the sender must be a known port, or nothing happens at all.
    pub(super) fn arp(
        &mut self,
        tables: &Tables,
        ingress: Attachment,
        my_mac: MacAddr,
        frame: &mut [u8],
        now_secs: u32,
    ) -> Verdict {
        let (op, sender_mac, sender_ip, target_ip) =
            match ArpPacket::new_checked(&frame[ethernet::HEADER_LEN..]) {
                Ok(a) => (a.operation(), a.sender_mac(), a.sender_ip(), a.target_ip()),
                Err(ParseError::Version) => {
                    return Verdict::Drop(DropReason::UnsupportedProtocol);
                }
                Err(_) => return Verdict::Drop(DropReason::Malformed),
            };
        let target = target_ip.to_bits();
        let sender = sender_ip.to_bits();
        // A standby leaves the attachment's addresses to their owner (another node).
        let ours = tables.owns(ingress)
            && (tables.endpoint(ingress, target).is_some()
                || (tables.is_snat_vpc(ingress)
                    && (tables.snat().contains_u32(target)
                        || tables.snat_next_hop(ingress) == Some(target))));
        // Port security: an (address, MAC) that is no known port is answered nothing, and
        // teaches or casts doubt on nothing.
        if !tables.admits_port(ingress, sender, sender_mac) {
            return Verdict::Drop(if ours {
                DropReason::PortSecurity
            } else {
                DropReason::ArpNotForUs
            });
        }
        let valid_sender = sender != 0 && !sender_mac.is_multicast();
        let neighbours = &self.shared.neighbours;
        let answer = if ours && op == arp::OP_REPLY && valid_sender {
            neighbours.answer(ingress, sender, sender_mac, now_secs)
        } else {
            Answer::Unsolicited
        };
        // Not an answer to our question: it may cast doubt on a neighbour, never move it.
        if answer == Answer::Unsolicited
            && valid_sender
            && neighbours.doubt(ingress, sender, sender_mac)
        {
            self.stats.arp_conflicts += 1;
        }
        if !ours {
            if tables.is_service_address(ingress, target) {
                // The resolver's own socket answers (and learns) for its address.
                self.stats.service_frames += 1;
                return Verdict::Consumed;
            }
            // Gratuitous ARP (target = sender) or traffic between others.
            return Verdict::Drop(DropReason::ArpNotForUs);
        }
        match (op, answer) {
            (arp::OP_REQUEST, _) => {
                let len = emit_arp(
                    frame,
                    arp::OP_REPLY,
                    sender_mac,
                    (my_mac, target),
                    (sender_mac, sender),
                );
                self.stats.arp_replies += 1;
                Verdict::Emit { vpc: ingress, len }
            }
            (arp::OP_REPLY, Answer::Changed) => {
                self.stats.arp_learned += 1;
                self.stats.neighbours_changed += 1;
                Verdict::Consumed
            }
            (arp::OP_REPLY, Answer::Confirmed | Answer::Resolved) => {
                self.stats.arp_learned += 1;
                Verdict::Consumed
            }
            _ => Verdict::Drop(DropReason::ArpNotForUs),
        }
    }

    /// ARP requests for the backends the tables name that are unresolved, or stale and due
    /// for re-verification (see [`crate::neighbour`]): at most `budget` of them, each
    /// address at most once per `arp_retry` (shared with the packet path), so the first
    /// packet of a flow is not lost to resolution and a moved backend is noticed. Resumes
    /// where the last call stopped, so every backend gets its turn however many there are;
    /// looks at each backend at most once per call. Also runs the neighbour table's sweep
    /// (at most once per reachable time node-wide). Calls `emit(attachment, frame)` for
    /// each request; returns how many.
    pub fn solicit(
        &mut self,
        now: Instant,
        tables: &Tables,
        budget: usize,
        mut emit: impl FnMut(Attachment, &[u8]),
    ) -> usize {
        let now_secs = self.secs(now);
        let snat = tables.snat();
        let sender = snat.addr().to_bits() + u32::from(snat.size() > 2);
        let backends = tables.backends();
        let mut sent = 0;
        let mut looked = 0;
        while sent < budget && looked < backends.len() {
            let at = (self.solicit_cursor + looked) % backends.len();
            looked += 1;
            let (vpc, ip) = backends[at];
            // A standby asks nothing: its request would teach the backend that the SNAT
            // address is at this node's MAC.
            if !tables.owns(vpc) {
                continue;
            }
            let Some(&mac) = self.config.attachments.get(vpc.index()) else {
                continue;
            };
            match self.shared.neighbours.solicit(vpc, ip, now_secs) {
                Solicit::Send => {}
                Solicit::Wait => continue,
                Solicit::Full => {
                    self.stats.neighbours_refused += 1;
                    continue;
                }
            }
            let mut frame = [0u8; 60];
            let len = emit_arp(
                &mut frame,
                arp::OP_REQUEST,
                MacAddr::BROADCAST,
                (mac, sender),
                (MacAddr::default(), ip),
            );
            emit(vpc, &frame[..len]);
            self.stats.arp_requests += 1;
            sent += 1;
        }
        self.solicit_cursor = match backends.len() {
            0 => 0,
            n => (self.solicit_cursor + looked) % n,
        };
        self.stats.neighbours_expired += self.shared.neighbours.sweep(now_secs) as u64;
        sent
    }
}

/// Write an Ethernet+ARP frame at the start of `frame`; returns its length: 60 bytes (the
/// Ethernet minimum, zero padded) when the buffer allows, else 42.
pub(super) fn emit_arp(
    frame: &mut [u8],
    op: u16,
    eth_dst: MacAddr,
    sender: (MacAddr, u32),
    target: (MacAddr, u32),
) -> usize {
    const ARP_FRAME: usize = ethernet::HEADER_LEN + arp::PACKET_LEN;
    let len = if frame.len() >= 60 { 60 } else { ARP_FRAME };
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..len]);
    eth.set_dst(eth_dst);
    eth.set_src(sender.0);
    eth.set_ethertype(ethernet::ETHERTYPE_ARP);
    ArpPacket::emit(
        &mut frame[ethernet::HEADER_LEN..ARP_FRAME],
        op,
        (sender.0, sender.1.into()),
        (target.0, target.1.into()),
    );
    frame[ARP_FRAME..len].fill(0);
    len
}
