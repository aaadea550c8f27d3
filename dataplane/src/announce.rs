//! Gratuitous ARP when this node becomes the owner of attachments (a cluster's failover):
//! the hosts of those VPCs still map the addresses to the previous owner's MAC, and would
//! go on sending there until their neighbour entries age out (seconds). An
//! [`crate::tables::Announcement`]
//! in the tables names the attachments just owned; the first worker that loads it takes it
//! ([`crate::tables::AnnouncementClaims::claim`]) and runs an [`Announcer`]: one ARP request per address with
//! sender and target both the address (the form Linux takes to update, even within its
//! `locktime`, an entry it has; it creates none), broadcast from the attachment's MAC.
//!
//! The addresses: every endpoint address of the attachment, and on an attachment that
//! carries backends (a SNAT VPC) either the SNAT next hop, if the provider VPC routes the
//! range through one (`snat_next_hop`, one frame: the way to make a takeover small), or
//! every usable address of the SNAT range, since a backend may have cached any of them
//! (the range is up to a /17: 32,766 frames), those the node's flows use first (the flows
//! it carries on, replicated from the previous owner). Endpoint addresses go first, the
//! clients' side. The announcement is sent [`ROUNDS`] times, [`ROUND_GAP`]
//! apart (one frame lost to a busy host must not leave it on the old MAC), at most
//! [`PER_STEP`] frames per worker turn so the worker keeps serving traffic meanwhile.

use std::time::{Duration, Instant};

use crate::flow::Attachment;
use crate::tables::Tables;
use crate::wire::arp::{self, ArpPacket};
use crate::wire::ethernet::{self, EthernetFrame, MacAddr};

/// Times the whole announcement is sent.
pub const ROUNDS: u8 = 2;
/// Pause between two rounds.
pub const ROUND_GAP: Duration = Duration::from_secs(1);
/// Frames one worker turn sends at most.
pub const PER_STEP: usize = 4096;

/// One worker's announcement in progress.
#[derive(Debug)]
pub struct Announcer {
    addrs: Vec<(Attachment, u32)>,
    next: usize,
    rounds_left: u8,
    resume_at: Option<Instant>,
    sent: u64,
}

impl Announcer {
    /// The addresses an announcement of `vpcs` covers in `tables`: endpoint addresses
    /// first, then on the attachments that carry backends their SNAT next hop if the
    /// provider VPC routes the range through one, else the SNAT range: the addresses of
    /// `in_use` (those the flows this node carries use) first.
    pub fn new(vpcs: &[Attachment], tables: &Tables, in_use: &[u32]) -> Self {
        let mut addrs = Vec::new();
        for &vpc in vpcs {
            addrs.extend(tables.endpoints_of(vpc).map(|ip| (vpc, ip)));
        }
        let snat = tables.snat();
        let (first, usable) = match snat.size() {
            0..=2 => (0, snat.size()),
            n => (1, n - 2), // not the network and broadcast addresses
        };
        let base = snat.addr().to_bits();
        let mut in_use: Vec<u32> = in_use
            .iter()
            .copied()
            .filter(|ip| snat.contains_u32(*ip))
            .collect();
        // Sorted, so the range below leaves them out by binary search (a /17 is 32,766
        // addresses, and a busy node's flows use thousands).
        in_use.sort_unstable();
        in_use.dedup();
        for &vpc in vpcs {
            if !tables.is_snat_vpc(vpc) {
                continue;
            }
            if let Some(hop) = tables.snat_next_hop(vpc) {
                addrs.push((vpc, hop));
                continue;
            }
            addrs.extend(in_use.iter().map(|ip| (vpc, *ip)));
            addrs.extend(
                (first..first + usable)
                    .filter_map(|o| u32::try_from(o).ok())
                    .map(|o| base + o)
                    .filter(|ip| in_use.binary_search(ip).is_err())
                    .map(|ip| (vpc, ip)),
            );
        }
        Self {
            addrs,
            next: 0,
            rounds_left: ROUNDS,
            resume_at: None,
            sent: 0,
        }
    }

    /// The addresses each round announces.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// True if there is nothing to announce.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// True once every round is sent.
    pub fn done(&self) -> bool {
        self.rounds_left == 0 || self.addrs.is_empty()
    }

    /// Send the next frames (at most `budget`) through `emit(attachment, frame)`, each from
    /// the attachment's MAC in `macs` (indexed by [`Attachment`]); returns how many.
    pub fn step(
        &mut self,
        now: Instant,
        budget: usize,
        macs: &[MacAddr],
        mut emit: impl FnMut(Attachment, &[u8]),
    ) -> usize {
        if self.done() || self.resume_at.is_some_and(|t| now < t) {
            return 0;
        }
        self.resume_at = None;
        let mut frame = [0u8; 60];
        let mut n = 0;
        while n < budget && self.next < self.addrs.len() {
            let (vpc, ip) = self.addrs[self.next];
            self.next += 1;
            let Some(&mac) = macs.get(vpc.index()) else {
                continue;
            };
            gratuitous(&mut frame, mac, ip);
            emit(vpc, &frame);
            n += 1;
        }
        self.sent += n as u64;
        if self.next == self.addrs.len() {
            self.next = 0;
            self.rounds_left -= 1;
            self.resume_at = Some(now + ROUND_GAP);
        }
        n
    }
}

/// Write a gratuitous ARP request for `ip` (host order) from `mac` into `frame` (60 bytes,
/// the Ethernet minimum, zero padded).
pub fn gratuitous(frame: &mut [u8; 60], mac: MacAddr, ip: u32) {
    const ARP_END: usize = ethernet::HEADER_LEN + arp::PACKET_LEN;
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst(MacAddr::BROADCAST);
    eth.set_src(mac);
    eth.set_ethertype(ethernet::ETHERTYPE_ARP);
    ArpPacket::emit(
        &mut frame[ethernet::HEADER_LEN..ARP_END],
        arp::OP_REQUEST,
        (mac, ip.into()),
        (MacAddr::default(), ip.into()),
    );
    frame[ARP_END..].fill(0);
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use super::*;
    use crate::tables::{EndpointState, Ipv4Cidr, sharded::Change};

    fn ip(s: &str) -> u32 {
        s.parse::<Ipv4Addr>().unwrap().to_bits()
    }

    #[test]
    fn announces_endpoints_then_the_snat_range_in_rounds() {
        let snat = Ipv4Cidr::new(Ipv4Addr::new(198, 19, 128, 0), 29).unwrap();
        let tables = Tables::new(snat)
            .with_endpoints([
                Change::Put((Attachment(0), ip("10.0.0.200")), EndpointState::Accepted),
                Change::Put((Attachment(2), ip("10.0.0.201")), EndpointState::Accepted),
            ])
            .with_snat_vpcs(vec![Attachment(1)]);
        let mut an = Announcer::new(&[Attachment(0), Attachment(1)], &tables, &[]);
        // One endpoint on 0 (not the one on 2, not announced), six SNAT addresses on 1.
        assert_eq!(an.len(), 7);
        let macs = [MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2])];
        let now = Instant::now();
        let mut frames = Vec::new();
        assert_eq!(
            an.step(now, 4, &macs, |v, f| frames.push((v, f.to_vec()))),
            4
        );
        assert_eq!(
            an.step(now, 4, &macs, |v, f| frames.push((v, f.to_vec()))),
            3
        );
        // The second round waits for the gap.
        assert_eq!(an.step(now, 100, &macs, |_, _| {}), 0);
        assert!(!an.done());
        let (vpc, f) = &frames[0];
        assert_eq!(*vpc, Attachment(0));
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.dst(), MacAddr::BROADCAST);
        assert_eq!(eth.src(), macs[0]);
        let arp = ArpPacket::new_checked(&f[ethernet::HEADER_LEN..]).unwrap();
        assert_eq!(arp.operation(), arp::OP_REQUEST);
        assert_eq!(arp.sender_mac(), macs[0]);
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(10, 0, 0, 200));
        assert_eq!(arp.target_ip(), Ipv4Addr::new(10, 0, 0, 200));
        let snat_ips: Vec<Ipv4Addr> = frames[1..]
            .iter()
            .map(|(v, f)| {
                assert_eq!(*v, Attachment(1));
                ArpPacket::new_checked(&f[ethernet::HEADER_LEN..])
                    .unwrap()
                    .sender_ip()
            })
            .collect();
        let want: Vec<Ipv4Addr> = (1..=6).map(|i| Ipv4Addr::new(198, 19, 128, i)).collect();
        assert_eq!(snat_ips, want);
        let later = now + ROUND_GAP;
        assert_eq!(an.step(later, 100, &macs, |_, _| {}), 7);
        assert!(an.done());
        assert_eq!(an.sent(), 14);
        assert_eq!(an.step(later + ROUND_GAP, 100, &macs, |_, _| {}), 0);
    }

    fn targets(an: &mut Announcer) -> Vec<Ipv4Addr> {
        let macs = [MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2])];
        let mut out = Vec::new();
        an.step(Instant::now(), 1000, &macs, |_, f| {
            out.push(
                ArpPacket::new_checked(&f[ethernet::HEADER_LEN..])
                    .unwrap()
                    .target_ip(),
            );
        });
        out
    }

    #[test]
    fn the_snat_addresses_in_use_go_first_and_a_next_hop_replaces_the_range() {
        let snat = Ipv4Cidr::new(Ipv4Addr::new(198, 19, 128, 0), 29).unwrap();
        let tables = Tables::new(snat).with_snat_vpcs(vec![Attachment(1)]);
        let in_use = [ip("198.19.128.5"), ip("10.9.9.9")];
        let mut an = Announcer::new(&[Attachment(1)], &tables, &in_use);
        let got = targets(&mut an);
        assert_eq!(got.len(), 6, "each address once: {got:?}");
        assert_eq!(got[0], Ipv4Addr::new(198, 19, 128, 5));
        // Through a next hop: that one address.
        let routed = tables.with_snat_next_hops(&[(Attachment(1), Ipv4Addr::new(10, 0, 0, 250))]);
        let mut an = Announcer::new(&[Attachment(1)], &routed, &in_use);
        assert_eq!(targets(&mut an), [Ipv4Addr::new(10, 0, 0, 250)]);
    }
}
