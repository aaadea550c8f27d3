//! The source checks for frames to a control-plane service's address (the private DNS
//! resolver's `dns_ip`), for the service's own socket ([`crate::io::punt`]).
//!
//! The workers leave those frames to the service (`service_frames`), so the service must
//! apply the same rules the workers apply to everything else, and this module is where
//! they live for it, sharing the workers' code: the Ethernet and IPv4 checks of
//! [`super::Pipeline`], port security ([`crate::tables::Tables::admits_port`]) and the
//! subnet check ([`crate::tables::Tables::admits_source`], which the workers apply to a
//! flow's first packet; here to every frame, since every query is answered). A frame that
//! passes names a sender the service may answer, at the sender's own MAC; nothing else is
//! answered, and nothing else may teach the service a neighbour.
//!
//! An ARP request is answered here too ([`arp_reply`]), with the workers' ARP builder, so a
//! service needs no neighbour discovery of its own.

use std::net::Ipv4Addr;

use super::check_ipv4;
use super::neighbour_arp::emit_arp;
use crate::flow::Attachment;
use crate::tables::Tables;
use crate::verdict::DropReason;
use crate::wire::ParseError;
use crate::wire::arp::{self, ArpPacket};
use crate::wire::ethernet::{self, EthernetFrame, MacAddr};
use crate::wire::offload::L4Checksum;

/// The sender of a frame that passed the checks: its address and its MAC, verified
/// together (a known port with port security, else an address of the VPC's subnets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sender {
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Its MAC: where an answer goes.
    pub mac: MacAddr,
}

/// A frame for a service's address that passed the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceFrame {
    /// An ARP request for the address: answer it with [`arp_reply`].
    ArpRequest(Sender),
    /// A TCP or UDP packet to the address (IPv4 without options, not a fragment, header
    /// checksum verified; the transport checksum is the service's to check).
    Ipv4 {
        /// Who sent it.
        from: Sender,
        /// `PROTO_TCP` or `PROTO_UDP`.
        proto: u8,
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// TCP flags (0 for UDP).
        flags: u8,
    },
}

/// Check `frame`, received on attachment `ingress` (whose MAC is `mac`), for the service
/// that owns `addr` there, with the current `tables`: the frame is for `addr` and for `mac`
/// (or broadcast, for ARP), its source MAC is unicast, its headers pass the workers'
/// checks, and its sender (the ARP sender, or the IPv4 source with the frame's source MAC)
/// passes port security and lies in the VPC's subnets.
///
/// # Errors
/// Why the frame is not taken, as the workers would count it: `SourceMac`, `Malformed`,
/// `IpOptions`, `Fragment`, `UnsupportedProtocol`, `ArpNotForUs` (an ARP reply: the service
/// asks nothing; or a sender that is not the frame's source), `NotForUs` (another address,
/// or another MAC), `PortSecurity`, `SourceOutsideVpc`.
pub fn check_service_frame(
    tables: &Tables,
    ingress: Attachment,
    (mac, addr): (MacAddr, Ipv4Addr),
    frame: &[u8],
) -> Result<ServiceFrame, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
    let src_mac = eth.src();
    if src_mac.is_multicast() {
        return Err(DropReason::SourceMac);
    }
    let dst_mac = eth.dst();
    let (from, packet) = match eth.ethertype() {
        ethernet::ETHERTYPE_ARP if dst_mac == mac || dst_mac == MacAddr::BROADCAST => {
            let a = match ArpPacket::new_checked(&frame[ethernet::HEADER_LEN..]) {
                Ok(a) => a,
                Err(ParseError::Version) => return Err(DropReason::UnsupportedProtocol),
                Err(_) => return Err(DropReason::Malformed),
            };
            if a.target_ip() != addr {
                return Err(DropReason::NotForUs);
            }
            if a.operation() != arp::OP_REQUEST {
                return Err(DropReason::ArpNotForUs);
            }
            // The ARP sender, not the frame's source, is what an answer teaches the asker
            // nothing about but goes to: both must be the same verified port.
            if a.sender_mac() != src_mac || a.sender_ip().is_unspecified() {
                return Err(DropReason::ArpNotForUs);
            }
            (a.sender_ip(), None)
        }
        ethernet::ETHERTYPE_IPV4 if dst_mac == mac => {
            // The punt socket completes offloaded checksums: the frame arrives complete.
            let parsed = check_ipv4(ingress, frame, L4Checksum::Complete)?.0;
            if parsed.key.dst != addr.to_bits() {
                return Err(DropReason::NotForUs);
            }
            (Ipv4Addr::from_bits(parsed.key.src), Some(parsed))
        }
        ethernet::ETHERTYPE_ARP | ethernet::ETHERTYPE_IPV4 => return Err(DropReason::NotForUs),
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    if !tables.admits_port(ingress, from.to_bits(), src_mac) {
        return Err(DropReason::PortSecurity);
    }
    if !tables.admits_source(ingress, from.to_bits()) {
        return Err(DropReason::SourceOutsideVpc);
    }
    let from = Sender {
        ip: from,
        mac: src_mac,
    };
    Ok(match packet {
        None => ServiceFrame::ArpRequest(from),
        Some(p) => ServiceFrame::Ipv4 {
            from,
            proto: p.key.proto,
            sport: p.key.sport,
            dport: p.key.dport,
            flags: p.flags,
        },
    })
}

/// Write into `buf` the ARP reply of the service at (`mac`, `addr`) to `to`; returns its
/// length (60 bytes, zero padded, when `buf` has room, else 42).
///
/// # Panics
/// `buf` is shorter than 42 bytes.
pub fn arp_reply(buf: &mut [u8], mac: MacAddr, addr: Ipv4Addr, to: Sender) -> usize {
    emit_arp(
        buf,
        arp::OP_REPLY,
        to.mac,
        (mac, addr.to_bits()),
        (to.mac, to.ip.to_bits()),
    )
}
