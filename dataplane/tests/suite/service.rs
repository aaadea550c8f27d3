//! The checks a control-plane service's frames pass (`pipeline::service`, the private DNS
//! resolver's): the workers' own rules, port security and the VPC's subnets, for every
//! frame, ARP included; an ARP request is answered at the verified sender's MAC.

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::Ipv4Addr;

use crate::common::*;
use dataplane::DropReason;
use dataplane::pipeline::service::{Sender, ServiceFrame, arp_reply, check_service_frame};
use dataplane::tables::{Ipv4Cidr, PortSet};
use dataplane::wire::ethernet::MacAddr;

/// The service's address on A.
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);
const NEIGHBOUR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x07]);

fn subnets() -> dataplane::Tables {
    let cidr: Ipv4Cidr = "10.0.0.0/24".parse().unwrap();
    tables().with_sources(vec![Some(vec![cidr])])
}

fn secured() -> dataplane::Tables {
    subnets().with_ports(vec![Some(PortSet::new([
        (CLIENT, CLIENT_MAC),
        (NEIGHBOUR, NEIGHBOUR_MAC),
    ]))])
}

fn query(mac: MacAddr, src: Ipv4Addr) -> Vec<u8> {
    udp((mac, MAC_A), (src, 5555), (DNS, 53), b"\x42\x42")
}

#[test]
fn a_query_from_a_subnet_passes_with_its_sender() {
    let got = check_service_frame(&subnets(), A, (MAC_A, DNS), &query(CLIENT_MAC, CLIENT));
    assert_eq!(
        got,
        Ok(ServiceFrame::Ipv4 {
            from: Sender {
                ip: CLIENT,
                mac: CLIENT_MAC
            },
            proto: UDP,
            sport: 5555,
            dport: 53,
            flags: 0,
        })
    );
    // TTL 1 is fine for an on-link service (the workers drop it: they would forward it).
    let mut f = query(CLIENT_MAC, CLIENT);
    f[14 + 8] = 1;
    f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let sum = dataplane::wire::checksum::checksum(&f[14..34]);
    f[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
    assert!(check_service_frame(&subnets(), A, (MAC_A, DNS), &f).is_ok());
}

#[test]
fn a_source_outside_the_subnets_is_refused() {
    for src in [Ipv4Addr::new(192, 0, 2, 99), Ipv4Addr::new(10, 0, 1, 5)] {
        assert_eq!(
            check_service_frame(&subnets(), A, (MAC_A, DNS), &query(CLIENT_MAC, src)),
            Err(DropReason::SourceOutsideVpc)
        );
    }
}

#[test]
fn with_port_security_only_a_known_pair_passes() {
    let t = secured();
    assert!(check_service_frame(&t, A, (MAC_A, DNS), &query(CLIENT_MAC, CLIENT)).is_ok());
    // The neighbour's address from the client's MAC; an unregistered address.
    for (mac, src) in [
        (CLIENT_MAC, NEIGHBOUR),
        (CLIENT_MAC, Ipv4Addr::new(10, 0, 0, 9)),
    ] {
        assert_eq!(
            check_service_frame(&t, A, (MAC_A, DNS), &query(mac, src)),
            Err(DropReason::PortSecurity)
        );
    }
}

#[test]
fn arp_names_a_verified_sender_or_nothing() {
    let t = secured();
    let ask = |sender: (MacAddr, Ipv4Addr), op| {
        arp(op, MacAddr::BROADCAST, sender, (MacAddr::default(), DNS))
    };
    let got = check_service_frame(&t, A, (MAC_A, DNS), &ask((CLIENT_MAC, CLIENT), 1));
    let from = Sender {
        ip: CLIENT,
        mac: CLIENT_MAC,
    };
    assert_eq!(got, Ok(ServiceFrame::ArpRequest(from)));
    // The client's MAC speaking for its neighbour's address: refused.
    assert_eq!(
        check_service_frame(&t, A, (MAC_A, DNS), &ask((CLIENT_MAC, NEIGHBOUR), 1)),
        Err(DropReason::PortSecurity)
    );
    // Without port security, still only from the subnets; replies are never taken.
    assert_eq!(
        check_service_frame(
            &subnets(),
            A,
            (MAC_A, DNS),
            &ask((CLIENT_MAC, Ipv4Addr::new(192, 0, 2, 1)), 1)
        ),
        Err(DropReason::SourceOutsideVpc)
    );
    assert_eq!(
        check_service_frame(&t, A, (MAC_A, DNS), &ask((CLIENT_MAC, CLIENT), 2)),
        Err(DropReason::ArpNotForUs)
    );
    // Another address's ARP is not the service's.
    let other = arp(
        1,
        MacAddr::BROADCAST,
        (CLIENT_MAC, CLIENT),
        (MacAddr::default(), NEIGHBOUR),
    );
    assert_eq!(
        check_service_frame(&t, A, (MAC_A, DNS), &other),
        Err(DropReason::NotForUs)
    );
    // The answer goes to the verified sender.
    let mut buf = [0u8; 64];
    let n = arp_reply(&mut buf, MAC_A, DNS, from);
    assert_eq!(seen_arp(&buf[..n]), (2, (MAC_A, DNS), (CLIENT_MAC, CLIENT)));
    assert_eq!(&buf[..6], &CLIENT_MAC.0);
}

#[test]
fn broken_or_foreign_frames_are_refused_with_the_workers_reasons() {
    let t = subnets();
    let mut multicast = query(CLIENT_MAC, CLIENT);
    multicast[6] |= 1;
    assert_eq!(
        check_service_frame(&t, A, (MAC_A, DNS), &multicast),
        Err(DropReason::SourceMac)
    );
    let q = query(CLIENT_MAC, CLIENT);
    assert_eq!(
        check_service_frame(&t, A, (MAC_A, DNS), &q[..30]),
        Err(DropReason::Malformed)
    );
    let mut bad_sum = q.clone();
    bad_sum[14 + 10] ^= 0xff;
    assert_eq!(
        check_service_frame(&t, A, (MAC_A, DNS), &bad_sum),
        Err(DropReason::Malformed)
    );
    // For the address, but for another MAC (a frame a switch flooded here).
    let other_mac = udp((CLIENT_MAC, MAC_B), (CLIENT, 5555), (DNS, 53), b"");
    assert_eq!(
        check_service_frame(&t, A, (MAC_A, DNS), &other_mac),
        Err(DropReason::NotForUs)
    );
    let elsewhere = udp((CLIENT_MAC, MAC_A), (CLIENT, 5555), (NEIGHBOUR, 53), b"");
    assert_eq!(
        check_service_frame(&t, A, (MAC_A, DNS), &elsewhere),
        Err(DropReason::NotForUs)
    );
}
