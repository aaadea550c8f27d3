//! The pipeline's part of client identity (see [`crate::rewrite::identity`] for the
//! bytes): what a segment of such a flow needs, the mode and ISN a flow takes when it opens
//! again, and the SYN-ACK that completes its handshake. Off the common path: only flows
//! with identity bits come here.

use super::{FlowSides, tcp_seq};
use crate::conntrack::{Direction, FlowEntry, state};
use crate::flow::FlowKey;
use crate::rewrite::identity;
use crate::tables::{AcceptedKey, Tables};
use crate::wire::ethernet;
use crate::wire::ipv4::{self, PROTO_TCP};
use crate::wire::proxy;
use crate::wire::tcp::{self, TcpPacket};

/// The marker id of the connection a client identity segment belongs to (0 if the mapping
/// went away meanwhile: the flow is revoked at its next packet).
pub(super) fn marker_of(tables: &Tables, seg: &identity::Segment) -> u64 {
    let a = seg.addresses;
    tables
        .accepted()
        .get(&AcceptedKey {
            vpc: seg.client_vpc,
            proto: PROTO_TCP,
            port: a.dport,
            endpoint: a.dst,
        })
        .map_or(0, |t| t.marker_id)
}

/// What a segment of a flow with client identity (`identity` bits) needs once rewritten.
/// Off the common path. A backend acknowledgment past the whole PROXY header marks the flow
/// [`state::PROXY_ACKED`].
#[cold]
#[inline(never)]
pub(super) fn identity_segment(
    key: &FlowKey,
    entry: &FlowEntry<'_>,
    identity: u8,
    flags: u8,
    frame: &[u8],
) -> identity::Segment {
    let isn = entry.client_isn();
    let mut acked = entry.proxy_acked();
    if !acked
        && identity & state::PROXY != 0
        && entry.dir == Direction::Reply
        && flags & (tcp::ACK | tcp::SYN | tcp::RST) == tcp::ACK
        && identity::past_first(tcp_ack(frame), isn) >= identity::PROXY_SPAN
    {
        entry.set_proxy_acked();
        acked = true;
    }
    let f = FlowSides::of(key, entry);
    identity::Segment {
        dir: entry.dir,
        identity,
        isn,
        addresses: proxy::Addresses {
            src: f.client,
            dst: f.dst,
            sport: f.sport,
            dport: f.dport,
        },
        client_vpc: f.client_vpc,
        acked,
        opening: entry.flow_state() & state::MASK == state::SYN_SENT,
    }
}

/// A closed TCP flow opens again on the same ports (the client's new SYN, not yet counted
/// in its state): it takes the client's new ISN and its service's current client identity
/// mode (none for a gateway flow or a mapping gone: the re-check revokes those). Returns
/// the flow's identity bits. Off the common path.
#[cold]
#[inline(never)]
pub(super) fn reopen(tables: &Tables, key: &FlowKey, entry: &FlowEntry<'_>, frame: &[u8]) -> u8 {
    let f = FlowSides::of(key, entry);
    let identity = tables
        .accepted()
        .get(&AcceptedKey {
            vpc: f.client_vpc,
            proto: PROTO_TCP,
            port: f.dport,
            endpoint: f.dst,
        })
        .map_or(0, |t| t.identity.bits());
    if identity != entry.identity || entry.proxy_acked() {
        entry.set_identity(identity);
    }
    if identity != 0 {
        entry.set_client_isn(tcp_seq(frame));
    }
    identity
}

/// For a flow with client identity: true unless `flags` make a SYN-ACK that does not
/// acknowledge the client's ISN + 1 (the backend answering another SYN than the one the
/// flow opened with: it must not complete the handshake). Off the common path.
#[cold]
#[inline(never)]
pub(super) fn synack_completes(entry: &FlowEntry<'_>, flags: u8, frame: &[u8]) -> bool {
    flags & (tcp::SYN | tcp::ACK | tcp::RST) != tcp::SYN | tcp::ACK
        || tcp_ack(frame) == entry.client_isn().wrapping_add(1)
}

/// The acknowledgment number of a frame the checks found TCP (IPv4 without options).
fn tcp_ack(frame: &[u8]) -> u32 {
    TcpPacket::new_unchecked(&frame[ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN..]).ack()
}
