//! Client identity to backends (`tcp_proxy`), byte for byte: the PROXY v2 header at the
//! start of the client's stream (and again in a retransmission), sequence, acknowledgment
//! and SACK numbers shifted both ways, the TOA option on the SYN and the ISN + 1 segments,
//! the SYN-ACK's MSS lowered, FIN, Fast Open data, offloaded checksums, and the frames
//! that cannot take what they must carry.

#![allow(clippy::unwrap_used, clippy::tests_outside_test_module)]

use std::net::Ipv4Addr;

use crate::common::*;
use dataplane::tables::{ClientIdentity, Tables, default_snat_range};
use dataplane::wire::offload::{self, F_NEEDS_CSUM, GSO_TCPV4, VnetHdr};
use dataplane::wire::proxy;
use dataplane::{DropReason, Verdict};
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

const ISN: u32 = 1_000;
const BACKEND_ISN: u32 = 5_000;
const SPORT: u16 = 40_000;
/// MSS 1460, NOP, NOP, SACK permitted.
const SYN_OPTIONS: [u8; 8] = [2, 4, 0x05, 0xb4, 1, 1, 4, 2];

fn tables(identity: ClientIdentity) -> Tables {
    let mut t = target(7, 80);
    t.marker_id = 0x0102_0304_0506_0708;
    t.identity = identity;
    Tables::new(default_snat_range()).with_endpoint(A, ENDPOINT, [(TCP, 8080, t)])
}

const OPEN: ClientIdentity = ClientIdentity {
    toa: true,
    proxy_v2: true,
};
const PROXY_ONLY: ClientIdentity = ClientIdentity {
    toa: false,
    proxy_v2: true,
};
const TOA_ONLY: ClientIdentity = ClientIdentity {
    toa: true,
    proxy_v2: false,
};

/// A TCP segment with every field the test cares about. `flags`: S, A (with `ack`), F, R.
#[allow(clippy::too_many_arguments)]
fn segment(
    macs: (
        dataplane::wire::ethernet::MacAddr,
        dataplane::wire::ethernet::MacAddr,
    ),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: &str,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(macs.0.0, macs.1.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, seq, 65_535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'F' => b.fin(),
            'R' => b.rst(),
            other => panic!("flag {other}"),
        };
    }
    if !options.is_empty() {
        b = b.options_raw(options).unwrap();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// What the test reads off a forwarded TCP frame (after checking both checksums).
#[derive(Debug, PartialEq, Eq)]
struct Tcp {
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    options: Vec<u8>,
    payload: Vec<u8>,
}

fn read(frame: &[u8]) -> Tcp {
    assert!(checksums_ok(frame), "checksums of {frame:02x?}");
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    assert_eq!(
        usize::from(ip.header().total_len()),
        frame.len() - 14,
        "IPv4 total length"
    );
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP")
    };
    Tcp {
        src: (ip.header().source_addr(), t.source_port()),
        dst: (ip.header().destination_addr(), t.destination_port()),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        options: t.options().to_vec(),
        payload: t.payload().to_vec(),
    }
}

fn toa() -> Vec<u8> {
    let mut o = vec![254, 8];
    o.extend_from_slice(&SPORT.to_be_bytes());
    o.extend_from_slice(&CLIENT.octets());
    o
}

fn pp2_header() -> [u8; proxy::HEADER_LEN] {
    proxy::header(
        proxy::Addresses {
            src: CLIENT.to_bits(),
            dst: ENDPOINT.to_bits(),
            sport: SPORT,
            dport: 8080,
        },
        0x0102_0304_0506_0708,
    )
}

/// A world with one flow of `identity` through its handshake: returns the world, the
/// flow's SNAT address and port, and the forwarded SYN and handshake ACK.
struct Flow {
    w: World,
    snat: (Ipv4Addr, u16),
    syn: Tcp,
    synack: Tcp,
    ack: Tcp,
}

impl Flow {
    fn open(identity: ClientIdentity) -> Self {
        let mut w = World::new(tables(identity));
        let mut syn = client_with(ISN, 0, "S", &SYN_OPTIONS, &[]);
        assert_eq!(w.send_in(A, &mut syn), Verdict::Forward(B));
        let syn = read(&syn);
        let snat = syn.src;
        let mut synack = segment(
            (BACKEND_MAC, MAC_B),
            (BACKEND, 80),
            snat,
            BACKEND_ISN,
            ISN + 1,
            "SA",
            &SYN_OPTIONS,
            &[],
        );
        assert_eq!(w.send_in(B, &mut synack), Verdict::Forward(A));
        let synack = read(&synack);
        let mut ack = client(ISN + 1, "A", b"");
        assert_eq!(w.send_in(A, &mut ack), Verdict::Forward(B));
        let ack = read(&ack);
        Self {
            w,
            snat,
            syn,
            synack,
            ack,
        }
    }

    /// Send a client segment; the forwarded frame.
    fn client_sends(&mut self, seq: u32, flags: &str, payload: &[u8]) -> Tcp {
        let mut f = client(seq, flags, payload);
        assert_eq!(self.w.send_in(A, &mut f), Verdict::Forward(B));
        read(&f)
    }

    /// Send a backend segment acknowledging `ack` with `options`; the forwarded frame.
    fn backend_sends(&mut self, ack: u32, options: &[u8], payload: &[u8]) -> Tcp {
        let mut f = segment(
            (BACKEND_MAC, MAC_B),
            (BACKEND, 80),
            self.snat,
            BACKEND_ISN + 1,
            ack,
            "A",
            options,
            payload,
        );
        assert_eq!(self.w.send_in(B, &mut f), Verdict::Forward(A));
        read(&f)
    }
}

fn client(seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
    client_with(seq, BACKEND_ISN + 1, flags, &[], payload)
}

/// A client segment with every field chosen.
fn client_with(seq: u32, ack: u32, flags: &str, options: &[u8], payload: &[u8]) -> Vec<u8> {
    segment(
        (CLIENT_MAC, MAC_A),
        (CLIENT, SPORT),
        (ENDPOINT, 8080),
        seq,
        ack,
        flags,
        options,
        payload,
    )
}

#[test]
fn open_carries_toa_on_the_handshake_and_a_proxy_header_before_the_first_byte() {
    let mut f = Flow::open(OPEN);
    // The SYN: its own options, then the TOA; sequence numbers untouched.
    let mut want = SYN_OPTIONS.to_vec();
    want.extend(toa());
    assert_eq!(f.syn.options, want);
    assert_eq!((f.syn.seq, f.syn.dst), (ISN, (BACKEND, 80)));
    // The SYN-ACK: MSS 1460 lowered by 8 (TOA) and 39 (PROXY v2) = 1413.
    assert_eq!(f.synack.options, [2, 4, 0x05, 0x85, 1, 1, 4, 2]);
    assert_eq!((f.synack.ack, f.synack.dst), (ISN + 1, (CLIENT, SPORT)));
    // The handshake's ACK: the TOA, nothing in the stream yet.
    assert_eq!((f.ack.seq, f.ack.options.clone()), (ISN + 1, toa()));
    assert!(f.ack.payload.is_empty());

    // The first data segment: TOA, then the header before the client's bytes.
    let first = f.client_sends(ISN + 1, "A", b"GET /");
    let mut stream = pp2_header().to_vec();
    stream.extend_from_slice(b"GET /");
    assert_eq!(
        (first.seq, &first.options, &first.payload),
        (ISN + 1, &toa(), &stream)
    );
    // Its retransmission carries the very same bytes.
    let again = f.client_sends(ISN + 1, "A", b"GET /");
    assert_eq!(again, first);
    // Later bytes sit 39 further on, without the option.
    let next = f.client_sends(ISN + 6, "A", b"x");
    assert_eq!(
        (next.seq, next.options.len(), &next.payload[..]),
        (ISN + 45, 0, &b"x"[..])
    );
    let s = f.w.stats();
    assert_eq!((s.proxy_headers, s.toa_options), (2, 4));
}

#[test]
fn acknowledgments_and_sack_blocks_from_the_backend_are_moved_back() {
    let mut f = Flow::open(PROXY_ONLY);
    assert!(
        f.syn.options == SYN_OPTIONS && f.ack.options.is_empty(),
        "no TOA"
    );
    assert_eq!(&f.synack.options[..4], &[2, 4, 0x05, 0x8d], "1460 - 39");
    f.client_sends(ISN + 1, "A", &[b'a'; 100]);
    // An acknowledgment inside the header is no client byte yet.
    assert_eq!(f.backend_sends(ISN + 1, &[], b"").ack, ISN + 1);
    assert_eq!(f.backend_sends(ISN + 1 + 20, &[], b"").ack, ISN + 1);
    // Backend-side stream: 39 header bytes at ISN + 1, then the client's 100.
    let acked = f.backend_sends(ISN + 1 + 39 + 100, &[], b"");
    assert_eq!(acked.ack, ISN + 101);
    // SACK: NOP, NOP, kind 5 length 18, two blocks (backend numbering).
    let mut sack = vec![1, 1, 5, 18];
    for edge in [ISN + 240, ISN + 340, ISN + 440, ISN + 540] {
        sack.extend_from_slice(&edge.to_be_bytes());
    }
    let seen = f.backend_sends(ISN + 140, &sack, b"reply");
    let mut want = vec![1, 1, 5, 18];
    for edge in [ISN + 201, ISN + 301, ISN + 401, ISN + 501] {
        want.extend_from_slice(&edge.to_be_bytes());
    }
    assert_eq!(
        (seen.ack, seen.options, seen.payload),
        (ISN + 101, want, b"reply".to_vec())
    );
    // The client's ACK of the reply keeps the backend's numbers; its FIN moves by 39.
    let fin = f.client_sends(ISN + 101, "AF", b"");
    assert_eq!((fin.seq, fin.ack), (ISN + 140, BACKEND_ISN + 1));
    let last = f.backend_sends(ISN + 141, &[], b"");
    assert_eq!(
        last.ack,
        ISN + 102,
        "the FIN acknowledged, client numbering"
    );
}

#[test]
fn a_fin_before_any_data_still_delivers_the_header() {
    let mut f = Flow::open(PROXY_ONLY);
    let fin = f.client_sends(ISN + 1, "AF", b"");
    assert_eq!((fin.seq, fin.payload), (ISN + 1, pp2_header().to_vec()));
    assert_eq!(f.backend_sends(ISN + 1 + 39 + 1, &[], b"").ack, ISN + 2);
}

#[test]
fn toa_alone_leaves_the_stream_as_it_is() {
    let mut f = Flow::open(TOA_ONLY);
    assert_eq!(&f.synack.options[..4], &[2, 4, 0x05, 0xac], "1460 - 8");
    let first = f.client_sends(ISN + 1, "A", b"hello");
    assert_eq!(
        (first.seq, first.options, first.payload),
        (ISN + 1, toa(), b"hello".to_vec())
    );
    let later = f.client_sends(ISN + 6, "A", b"world");
    assert_eq!((later.seq, later.options.len()), (ISN + 6, 0));
    assert_eq!(f.backend_sends(ISN + 11, &[], b"").ack, ISN + 11);
}

#[test]
fn the_toa_goes_before_an_end_of_list_and_only_where_it_fits() {
    let mut w = World::new(tables(TOA_ONLY));
    // MSS, then end of list and padding: the option goes before the end of list.
    let mut syn = segment(
        (CLIENT_MAC, MAC_A),
        (CLIENT, SPORT),
        (ENDPOINT, 8080),
        ISN,
        0,
        "S",
        &[2, 4, 0x05, 0xb4, 0, 0, 0, 0],
        &[],
    );
    assert_eq!(w.send_in(A, &mut syn), Verdict::Forward(B));
    let mut want = vec![2, 4, 0x05, 0xb4];
    want.extend(toa());
    want.extend([0, 0, 0, 0]);
    assert_eq!(read(&syn).options, want);

    // 36 bytes of options already: no room for 8 more. Sent on without it, and counted.
    let mut w = World::new(tables(TOA_ONLY));
    let full = [1u8; 36];
    let mut syn = client_with(ISN, 0, "S", &full, &[]);
    assert_eq!(w.send_in(A, &mut syn), Verdict::Forward(B));
    assert_eq!(read(&syn).options, full);
    assert_eq!((w.stats().toa_options, w.stats().toa_no_room), (0, 1));
}

#[test]
fn a_toa_option_the_client_forged_never_reaches_the_backend() {
    let mut w = World::new(tables(TOA_ONLY));
    let forged = [254, 8, 0, 80, 192, 0, 2, 66];
    let mut options = forged.to_vec();
    options.extend(SYN_OPTIONS);
    let mut syn = client_with(ISN, 0, "S", &options, &[]);
    assert_eq!(w.send_in(A, &mut syn), Verdict::Forward(B));
    let mut want = vec![1; 8];
    want.extend(SYN_OPTIONS);
    want.extend(toa());
    assert_eq!(
        read(&syn).options,
        want,
        "no-ops in place of the forged option"
    );
    // Later segments too (where no TOA of ours goes).
    let mut later = client_with(ISN + 100, BACKEND_ISN + 1, "A", &forged, b"data");
    assert_eq!(w.send_in(A, &mut later), Verdict::Forward(B));
    let seen = read(&later);
    assert_eq!((seen.options, seen.payload), (vec![1; 8], b"data".to_vec()));
    assert_eq!(w.stats().toa_stripped, 2);
}

#[test]
fn fast_open_data_on_the_syn_is_cut_so_the_header_comes_first() {
    let mut w = World::new(tables(PROXY_ONLY));
    let mut syn = client_with(ISN, 0, "S", &SYN_OPTIONS, b"early data");
    assert_eq!(w.send_in(A, &mut syn), Verdict::Forward(B));
    let seen = read(&syn);
    assert!(seen.payload.is_empty());
    assert_eq!((seen.seq, seen.options), (ISN, SYN_OPTIONS.to_vec()));
}

#[test]
fn a_frame_without_room_or_with_a_bad_checksum_is_dropped_not_forwarded_bare() {
    let mut f = Flow::open(PROXY_ONLY);
    // `process` has no room to grow: the first segment cannot take its header.
    let mut first = client(ISN + 1, "A", b"data");
    let verdict = f.w.send(A, &mut first);
    assert_eq!(verdict, Verdict::Drop(DropReason::IdentityNoRoom));
    // A damaged first segment is not made valid by the recomputed checksum.
    let mut bad = client(ISN + 1, "A", b"data");
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert_eq!(
        f.w.send_in(A, &mut bad),
        Verdict::Drop(DropReason::Malformed)
    );
    let s = f.w.stats();
    assert_eq!(s.drops[DropReason::IdentityNoRoom.index()], 1);
    assert_eq!(s.proxy_headers, 0);
    // Later segments are shifted in place and need no room.
    let mut later = client(ISN + 5, "A", b"more");
    assert_eq!(f.w.send(A, &mut later), Verdict::Forward(B));
    assert_eq!(read(&later).seq, ISN + 44);
}

#[test]
fn an_offloaded_super_frame_gets_the_header_and_a_partial_checksum() {
    let mut f = Flow::open(OPEN);
    let payload: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let mut frame = client(ISN + 1, "A", &payload);
    // What a GSO sender hands over: the pseudo-header sum in the checksum field.
    let l4_len = u16::try_from(frame.len() - 34).unwrap();
    let pseudo = dataplane::wire::checksum::pseudo_header_sum(
        CLIENT.to_bits(),
        ENDPOINT.to_bits(),
        6,
        l4_len,
    );
    frame[50..52].copy_from_slice(&dataplane::wire::checksum::fold(pseudo).to_be_bytes());
    let vnet = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1400,
        csum_start: 34,
        csum_offset: 16,
    };
    let (verdict, out) = f.w.send_offloaded(A, &mut frame, vnet);
    assert_eq!(verdict, Verdict::Forward(B));
    assert_eq!(
        out.hdr_len, 62,
        "the TOA is in the header every segment is cut with"
    );
    assert_eq!(
        (out.gso_size, out.csum_start, out.csum_offset),
        (1400, 34, 16)
    );
    // Finishing the partial checksum as the kernel would gives a valid segment.
    assert!(offload::complete_partial(&mut frame));
    let seen = read(&frame);
    assert_eq!(seen.options, toa());
    assert_eq!(&seen.payload[..proxy::HEADER_LEN], &pp2_header());
    assert_eq!(&seen.payload[proxy::HEADER_LEN..], &payload[..]);
}

#[test]
fn a_new_syn_on_the_same_ports_restarts_the_stream() {
    let mut f = Flow::open(PROXY_ONLY);
    f.client_sends(ISN + 1, "A", b"one");
    let mut rst = client(ISN + 4, "AR", b"");
    assert_eq!(f.w.send_in(A, &mut rst), Verdict::Forward(B));
    assert_eq!(read(&rst).seq, ISN + 43);
    // The client opens again with another ISN: the header comes again, from there.
    let isn2 = 90_000;
    let mut syn = client_with(isn2, 0, "S", &SYN_OPTIONS, &[]);
    assert_eq!(f.w.send_in(A, &mut syn), Verdict::Forward(B));
    assert_eq!(backend_synack(&mut f, isn2), Verdict::Forward(A));
    let first = f.client_sends(isn2 + 1, "A", b"two");
    assert_eq!(first.seq, isn2 + 1);
    assert_eq!(&first.payload[..proxy::HEADER_LEN], &pp2_header());
}

#[test]
fn a_close_service_s_flows_are_untouched() {
    let mut w = World::new(tables(ClientIdentity::NONE));
    let mut syn = client_with(ISN, 0, "S", &SYN_OPTIONS, &[]);
    let before = syn.len();
    assert_eq!(w.send_in(A, &mut syn), Verdict::Forward(B));
    assert_eq!(
        (syn.len(), read(&syn).options),
        (before, SYN_OPTIONS.to_vec())
    );
    let s = w.stats();
    assert_eq!((s.proxy_headers, s.toa_options), (0, 0));
}

// Review findings (the forged header): a client never chooses the first bytes the backend
// reads, whatever sequence numbers, SYNs and resets it sends.

/// The backend's SYN-ACK to a client SYN with `isn` (after the flow reopened).
fn backend_synack(f: &mut Flow, isn: u32) -> Verdict {
    let mut synack = segment(
        (BACKEND_MAC, MAC_B),
        (BACKEND, 80),
        f.snat,
        BACKEND_ISN,
        isn.wrapping_add(1),
        "SA",
        &SYN_OPTIONS,
        &[],
    );
    f.w.send_in(B, &mut synack)
}

/// A client segment's verdict, and the forwarded frame if it was forwarded.
fn client_try(f: &mut Flow, seq: u32, flags: &str, payload: &[u8]) -> (Verdict, Option<Tcp>) {
    let mut frame = client(seq, flags, payload);
    let v = f.w.send_in(A, &mut frame);
    (v, matches!(v, Verdict::Forward(_)).then(|| read(&frame)))
}

#[test]
fn data_that_starts_before_the_first_byte_is_trimmed_so_the_header_still_comes_first() {
    let mut f = Flow::open(PROXY_ONLY);
    // seq = ISN carries one junk byte, then a forged header, then the request: Linux would
    // keep what lies from ISN + 1 on, so the forged header would start the stream.
    let forged = proxy::header(
        proxy::Addresses {
            src: Ipv4Addr::new(203, 0, 113, 9).to_bits(),
            dst: ENDPOINT.to_bits(),
            sport: 1,
            dport: 8080,
        },
        7,
    );
    let mut payload = vec![b'j'];
    payload.extend_from_slice(&forged);
    payload.extend_from_slice(b"GET /");
    let seen = f.client_sends(ISN, "A", &payload);
    let mut want = pp2_header().to_vec();
    want.extend_from_slice(&payload[1..]);
    assert_eq!((seen.seq, &seen.payload), (ISN + 1, &want));
    assert_eq!(f.w.stats().proxy_headers, 1);
}

#[test]
fn data_wholly_before_the_first_byte_goes_on_as_a_bare_ack_and_a_fin_there_is_dropped() {
    let mut f = Flow::open(PROXY_ONLY);
    // A keepalive with a garbage byte (as some stacks send it) keeps its sequence number.
    let keepalive = f.client_sends(ISN, "A", b"k");
    assert_eq!((keepalive.seq, keepalive.payload.len()), (ISN, 0));
    let old = f.client_sends(ISN - 100, "A", &[b'x'; 50]);
    assert_eq!((old.seq, old.payload.len()), (ISN - 100, 0));
    let (v, _) = client_try(&mut f, ISN - 10, "AF", b"");
    assert_eq!(v, Verdict::Drop(DropReason::IdentityOutOfStream));
    // The stream itself still starts with the header.
    let first = f.client_sends(ISN + 1, "A", b"GET /");
    assert_eq!(&first.payload[..proxy::HEADER_LEN], &pp2_header());
}

#[test]
fn a_syn_on_an_open_flow_does_not_move_its_isn() {
    let mut f = Flow::open(PROXY_ONLY);
    // The backend answers such a SYN with a challenge ACK and keeps the connection.
    let (v, _) = client_try(&mut f, ISN.wrapping_add(1 << 30), "S", b"");
    assert_eq!(v, Verdict::Forward(B));
    let first = f.client_sends(ISN + 1, "A", b"GET /");
    assert_eq!(
        (first.seq, &first.payload[..proxy::HEADER_LEN]),
        (ISN + 1, &pp2_header()[..])
    );
}

#[test]
fn a_reset_the_backend_ignored_cannot_move_where_the_stream_starts() {
    let mut f = Flow::open(PROXY_ONLY);
    // A reset far out of the window: the backend ignores it (RFC 5961) and keeps its
    // connection, with the stream to start at ISN + 1.
    let (v, _) = client_try(&mut f, ISN.wrapping_add(1 << 30), "R", b"");
    assert_eq!(v, Verdict::Forward(B));
    // A SYN 40 before: a header at ISN - 39 would end before the backend's ISN + 1 and be
    // cut off there, leaving the client's own bytes first.
    let isn2 = ISN - 40;
    let (v, _) = client_try(&mut f, isn2, "S", b"");
    assert_eq!(v, Verdict::Forward(B));
    // The backend's challenge ACK is no SYN-ACK, and a SYN-ACK of the old handshake
    // acknowledges the old ISN: neither completes the new one.
    f.backend_sends(ISN + 1, &[], b"");
    assert_eq!(backend_synack(&mut f, ISN), Verdict::Forward(A));
    let (v, _) = client_try(&mut f, isn2 + 1, "A", &[b'p'; 60]);
    assert_eq!(v, Verdict::Drop(DropReason::IdentityOutOfStream));
}

#[test]
fn a_flow_that_opens_again_takes_the_service_s_current_mode() {
    let mut f = Flow::open(ClientIdentity::NONE);
    f.client_sends(ISN + 1, "A", b"one");
    // The provider turns on proxy_open; the client resets and reconnects from the same
    // port while the closed flow is still tracked.
    f.w.publish(tables(PROXY_ONLY));
    f.client_sends(ISN + 4, "AR", b"");
    let isn2 = 90_000;
    let (v, _) = client_try(&mut f, isn2, "S", b"");
    assert_eq!(v, Verdict::Forward(B));
    assert_eq!(backend_synack(&mut f, isn2), Verdict::Forward(A));
    let first = f.client_sends(isn2 + 1, "A", b"two");
    assert_eq!(first.seq, isn2 + 1);
    assert_eq!(&first.payload[..proxy::HEADER_LEN], &pp2_header());
    assert_eq!(&first.payload[proxy::HEADER_LEN..], b"two");
}

#[test]
fn the_shift_holds_past_two_and_four_gib_and_no_second_header_comes() {
    let mut f = Flow::open(PROXY_ONLY);
    f.client_sends(ISN + 1, "A", b"GET /");
    // The backend acknowledges the header and the request.
    assert_eq!(f.backend_sends(ISN + 1 + 39 + 5, &[], b"").ack, ISN + 6);
    for offset in [1u64 << 31, (1 << 31) + 1, 3 << 30, 1 << 32, (1 << 32) + 7] {
        #[allow(clippy::cast_possible_truncation)]
        let seq = ISN.wrapping_add(1).wrapping_add(offset as u32);
        let seen = f.client_sends(seq, "A", b"data");
        assert_eq!(
            (seen.seq, &seen.payload[..]),
            (seq.wrapping_add(39), &b"data"[..]),
            "{offset} bytes into the stream"
        );
        // The backend's acknowledgment of it comes back in the client's numbering.
        let ack = seq.wrapping_add(4);
        assert_eq!(f.backend_sends(ack.wrapping_add(39), &[], b"").ack, ack);
    }
    assert_eq!(f.w.stats().proxy_headers, 1);
}

#[test]
fn the_urgent_pointer_of_the_segment_that_gets_the_header_moves_with_the_data() {
    let mut f = Flow::open(PROXY_ONLY);
    let mut b = PacketBuilder::ethernet2(CLIENT_MAC.0, MAC_A.0)
        .ipv4(CLIENT.octets(), ENDPOINT.octets(), 64)
        .tcp(SPORT, 8080, ISN + 1, 65_535)
        .ack(BACKEND_ISN + 1)
        .urg(3);
    b = b.psh();
    let mut frame = Vec::new();
    b.write(&mut frame, b"abcdef").unwrap();
    assert_eq!(f.w.send_in(A, &mut frame), Verdict::Forward(B));
    let seen = read(&frame);
    assert_eq!(&seen.payload[proxy::HEADER_LEN..], b"abcdef");
    let p = SlicedPacket::from_ethernet(&frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP")
    };
    assert!(t.urg());
    assert_eq!(t.urgent_pointer(), 3 + 39);
}
