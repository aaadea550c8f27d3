//! Offloaded frames through the pipeline, as a vnet-header backend hands them over: GSO
//! super-frames (TCP TSO, UDP GSO) with partial checksums. Each test asserts that the frame
//! is rewritten once, that only the pseudo-header part of the partial checksum moved (the
//! checksum finished afterwards equals a full recompute over the rewritten frame), that
//! the payload is untouched, and which counters moved.

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use crate::common::*;
use dataplane::wire::checksum::{fold, pseudo_header_sum};
use dataplane::wire::offload::{
    F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_UDP_L4, VnetHdr, complete_partial,
};
use dataplane::{Attachment, DropReason, Verdict};
use proptest::prelude::*;

const L4_START: u16 = 34;

/// Turn a frame with a complete checksum into what an offloading sender leaves: the
/// transport checksum field holds the folded pseudo-header sum. Returns the vnet header of
/// such a frame (a super-frame when `gso_size` is not zero).
fn make_partial(frame: &mut [u8], gso_size: u16) -> VnetHdr {
    let proto = frame[23];
    let src = u32::from_be_bytes(frame[26..30].try_into().unwrap());
    let dst = u32::from_be_bytes(frame[30..34].try_into().unwrap());
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let l4_len = u16::try_from(total - 20).unwrap();
    let offset = if proto == TCP { 16 } else { 6 };
    let at = usize::from(L4_START) + offset;
    let seed = fold(pseudo_header_sum(src, dst, proto, l4_len));
    frame[at..at + 2].copy_from_slice(&seed.to_be_bytes());
    let gso_type = match (gso_size, proto) {
        (0, _) => GSO_NONE,
        (_, TCP) => GSO_TCPV4,
        _ => GSO_UDP_L4,
    };
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type,
        hdr_len: 0,
        gso_size,
        csum_start: L4_START,
        csum_offset: u16::try_from(offset).unwrap(),
    }
}

fn send(w: &mut World, ingress: Attachment, frame: &mut [u8], vnet: VnetHdr) -> Verdict {
    w.pipeline
        .process_offloaded(w.now, &w.tables, ingress, frame, vnet)
}

/// The payload of a super-frame: 20,000 bytes that are not all alike.
fn bulk(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
}

#[test]
fn a_tso_super_frame_is_rewritten_once_and_leaves_partial() {
    let mut w = World::new(tables());
    let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    let vnet = make_partial(&mut syn, 0);
    assert_eq!(send(&mut w, A, &mut syn, vnet), Verdict::Forward(B));
    // The SYN left partial: finishing it gives the right checksum for the new addresses.
    let mut done = syn.clone();
    assert!(complete_partial(&mut done));
    let snat = seen(&done).src;

    let mut synack = tcp(TO_NODE_B, (BACKEND, 80), snat, "SA", b"");
    assert_eq!(w.send(B, &mut synack), Verdict::Forward(A));

    let before = w.stats();
    let payload = bulk(20_000);
    let mut sf = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", &payload);
    let vnet = make_partial(&mut sf, 1448);
    assert_eq!(send(&mut w, A, &mut sf, vnet), Verdict::Forward(B));
    assert!(!checksums_ok(&sf), "the checksum field is still partial");
    assert_eq!(&sf[54..], &payload[..], "the payload is untouched");
    let mut done = sf.clone();
    assert!(complete_partial(&mut done));
    let out = seen(&done); // verifies the IPv4 and TCP checksums by full recompute
    assert_eq!((out.src, out.dst), (snat, (BACKEND, 80)));
    assert_eq!(out.ttl, 63);
    assert_moved!(before, w.stats(), [
        "rx_frames" => 1, "forwarded" => 1, "forwarded_super_frames" => 1,
        "forwarded_partial_csum" => 1,
    ]);

    // The reply direction: a partial super-frame from the backend.
    let before = w.stats();
    let mut resp = tcp(TO_NODE_B, (BACKEND, 80), snat, "A", &payload);
    let vnet = make_partial(&mut resp, 1448);
    assert_eq!(send(&mut w, B, &mut resp, vnet), Verdict::Forward(A));
    assert!(complete_partial(&mut resp));
    let back = seen(&resp);
    assert_eq!((back.src, back.dst), ((ENDPOINT, 8080), (CLIENT, 40000)));
    assert_eq!(back.payload, payload);
    assert_moved!(before, w.stats(), [
        "rx_frames" => 1, "forwarded" => 1, "forwarded_reply" => 1,
        "forwarded_super_frames" => 1, "forwarded_partial_csum" => 1,
    ]);
}

#[test]
fn a_udp_gso_super_frame_is_rewritten_once_and_leaves_partial() {
    let mut w = World::new(tables());
    let before = w.stats();
    let payload = bulk(14_000);
    let mut sf = udp(TO_EP, (CLIENT, 5000), (ENDPOINT, 5353), &payload);
    let vnet = make_partial(&mut sf, 1400);
    assert_eq!(send(&mut w, A, &mut sf, vnet), Verdict::Forward(B));
    assert_eq!(&sf[42..], &payload[..]);
    assert!(complete_partial(&mut sf));
    let out = seen(&sf);
    assert_eq!(out.dst, (BACKEND, 53));
    assert_moved!(before, w.stats(), [
        "rx_frames" => 1, "forwarded" => 1, "flows_created" => 1,
        "forwarded_super_frames" => 1, "forwarded_partial_csum" => 1,
    ]);
}

#[test]
fn a_partial_checksum_that_is_not_the_transport_checksum_is_malformed() {
    let mut w = World::new(tables());
    let before = w.stats();
    for (start, offset) in [(L4_START, 6), (14, 16)] {
        // A UDP offset on a TCP segment; a start that is not the transport header.
        let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
        let vnet = VnetHdr {
            csum_start: start,
            csum_offset: offset,
            ..make_partial(&mut syn, 0)
        };
        assert_eq!(
            send(&mut w, A, &mut syn, vnet),
            Verdict::Drop(DropReason::Malformed)
        );
    }
    assert_moved!(before, w.stats(), ["rx_frames" => 2, "drop:malformed" => 2]);
}

proptest! {
    /// Partial in, partial out: finishing the checksum after the rewrite always equals a
    /// full recompute, for either protocol, any payload, any client port.
    #[test]
    fn partial_checksums_finish_right_after_the_rewrite(
        is_tcp in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
        port in 1024u16..,
    ) {
        let mut w = World::new(tables());
        let mut f = if is_tcp {
            tcp(TO_EP, (CLIENT, port), (ENDPOINT, 8080), "S", &payload)
        } else {
            udp(TO_EP, (CLIENT, port), (ENDPOINT, 5353), &payload)
        };
        let vnet = make_partial(&mut f, 0);
        prop_assert_eq!(send(&mut w, A, &mut f, vnet), Verdict::Forward(B));
        prop_assert!(complete_partial(&mut f));
        prop_assert!(checksums_ok(&f));
    }
}
