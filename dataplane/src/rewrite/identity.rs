//! Client identity to backends (`tcp_proxy`): the bytes a flow's segments gain or change
//! so the backend learns who the client is, each paired with its checksum fix-up here, as
//! the address rewrite is in [`crate::rewrite::nat`]. Applied after that rewrite, to TCP flows whose
//! service asked for it when the flow opened (the flow keeps its mode for its life).
//!
//! **PROXY protocol v2** (`proxy_open`, `open`): the header of [`crate::wire::proxy`] (39
//! bytes: client address and port, endpoint address and dialled port, the marker id TLV
//! 0xE0) is the first thing in the client-to-backend byte stream.
//! - It is inserted into the client's segment that starts at its ISN + 1 and carries data
//!   or a FIN: the first data segment, and every retransmission of it (the same bytes
//!   again). A SYN's data (TCP Fast Open) is cut: the client sends it again after the
//!   handshake, behind the header.
//! - Every later client sequence number is moved up by the header's length; the backend's
//!   acknowledgment numbers and SACK blocks are moved down by it (an acknowledgment inside
//!   the header becomes the client's ISN + 1), so each side sees a consistent stream.
//!   Sequence numbers up to ISN + 1 (the handshake, keepalives before any data) stay.
//!   Once the backend has acknowledged the whole header ([`state::PROXY_ACKED`]), every
//!   number moves, whatever its distance from the ISN: a stream past 2 or 4 GiB (where that
//!   distance wraps) keeps its shift and never gets a second header.
//! - The client never chooses the first bytes the backend reads. Data that starts before
//!   ISN + 1 is trimmed to start there (it then gets the header); data wholly before it
//!   goes on as a bare acknowledgment (a keepalive); a FIN before it is dropped
//!   (`identity_out_of_stream`). Until the backend has answered the client's SYN with a
//!   SYN-ACK for that very ISN, client data is dropped the same way: a client that resets
//!   a flow the backend kept (a reset out of its window) and opens it again with another
//!   ISN cannot move where the backend's stream starts. The ISN is taken only from a SYN
//!   that opens the flow (a closed flow opening again takes its service's current mode).
//!
//! **TOA** (`toa_open`, `open`): the TCP option kind 254, length 8, `fe 08 PP PP AA AA AA
//! AA` (client port, then client IPv4 address, network order), as the Linux TOA modules
//! read it when the handshake completes. It is added to the client's SYN and to every
//! client segment whose sequence number is its ISN + 1 (the handshake's ACK, the first data
//! segment and their retransmissions) when the header has room for 8 more bytes of options
//! (`toa_no_room` counts those that had not: they go on without it). In a GSO super-frame
//! the option is in the header every segment is cut with. A kind 254 option the client put
//! in any segment of such a flow is overwritten with no-ops first (`toa_stripped`): a
//! client cannot forge the identity the backend reads.
//!
//! Both make those segments longer, so the MSS option of the backend's SYN-ACK toward the
//! client is lowered by what may be added (8 and/or 39 bytes): a full-sized client
//! segment still fits the backend's MTU after it grew.
//!
//! Checksums: a shifted number or a lowered MSS is patched incrementally (RFC 1624); a
//! segment that grew or shrank gets its IPv4 header checksum and its TCP checksum computed
//! anew, after the checksum it arrived with was verified (a damaged segment is not made
//! valid: it is dropped as `malformed`). A partial checksum (offload) gets the new
//! pseudo-header sum and stays partial.

use crate::conntrack::{Direction, state};
use crate::flow::Attachment;
use crate::stats::WorkerStats;
use crate::verdict::DropReason;
use crate::wire::checksum::{self, fold, pseudo_header_sum, update16, update32};
use crate::wire::ethernet;
use crate::wire::ipv4::{self, Ipv4Packet, PROTO_TCP};
use crate::wire::offload::{L4Checksum, VnetHdr};
use crate::wire::proxy::{self, Addresses};
use crate::wire::tcp::{self, TcpPacket};

/// The TOA option's kind.
pub const TOA_KIND: u8 = 254;
/// The TOA option's length.
pub const TOA_LEN: usize = 8;
/// The lowest MSS the SYN-ACK clamp leaves.
const MIN_MSS: u16 = 88;
/// Where the TCP header starts in a frame the pipeline checked (no IPv4 options).
const TCP_AT: usize = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN;
/// The PROXY v2 header's length as a sequence number distance.
const SHIFT: u32 = 39;
const _: () = assert!(SHIFT as usize == proxy::HEADER_LEN);
/// The header's span in the backend's sequence space, as a [`past_first`] distance: an
/// acknowledgment at least this far past ISN + 1 has taken the whole header.
pub const PROXY_SPAN: i32 = 39;

/// One segment of a flow with client identity, as the pipeline found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Which way it travels.
    pub dir: Direction,
    /// The flow's identity bits ([`state::TOA`], [`state::PROXY`]).
    pub identity: u8,
    /// The client's initial sequence number.
    pub isn: u32,
    /// The client and the endpoint it dialled (the original key), for the PROXY header.
    pub addresses: Addresses,
    /// The client's VPC (attachment), to find the connection's marker id.
    pub client_vpc: Attachment,
    /// The backend has acknowledged the whole PROXY header ([`state::PROXY_ACKED`]).
    pub acked: bool,
    /// The backend has not yet answered the client's SYN (the flow is in `SYN_SENT`).
    pub opening: bool,
}

impl Segment {
    /// The client's first segment (its SYN) toward the backend, between `addresses`: the
    /// flow opens with identity bits `identity` and the client's ISN `isn`.
    pub fn opening(addresses: Addresses, client_vpc: Attachment, identity: u8, isn: u32) -> Self {
        Self {
            dir: Direction::Original,
            identity,
            isn,
            addresses,
            client_vpc,
            acked: false,
            opening: true,
        }
    }
}

/// What client identity adds to segments toward the backend, at most: the MSS the
/// backend's SYN-ACK announces is lowered by this.
pub fn overhead(identity: u8) -> u16 {
    let toa = if identity & state::TOA != 0 { 8 } else { 0 };
    let pp = if identity & state::PROXY != 0 { 39 } else { 0 };
    toa + pp
}

/// Apply client identity to the rewritten frame in `buf[..len]` (checked Ethernet, IPv4
/// without options, a whole TCP header); `buf` beyond `len` is room to grow. `marker_id`
/// is asked only when a PROXY header is written. Returns the frame's new length.
///
/// # Errors
/// `IdentityNoRoom`: the frame cannot take the PROXY header or the TOA option (the buffer
/// or the 65,535-byte IPv4 limit); `Malformed`: a segment to be resized arrived with a bad
/// checksum; `IdentityOutOfStream`: data or a FIN outside the stream (see the module
/// docs). The frame must then be dropped.
pub fn apply(
    buf: &mut [u8],
    len: usize,
    l4: L4Checksum,
    vnet: &mut VnetHdr,
    seg: &Segment,
    marker_id: impl FnOnce() -> u64,
    stats: &mut WorkerStats,
) -> Result<usize, DropReason> {
    // The IPv4 total length (the pipeline checked it against the frame).
    let end = ethernet::HEADER_LEN
        + usize::from(Ipv4Packet::new_unchecked(&buf[ethernet::HEADER_LEN..]).total_len());
    debug_assert!(end <= len);
    let mut frame = Frame { buf, end, l4 };
    match seg.dir {
        Direction::Original => toward_backend(&mut frame, vnet, seg, marker_id, stats)?,
        Direction::Reply => toward_client(&mut frame, seg),
    }
    Ok(if frame.end == end { len } else { frame.end })
}

/// A frame being changed: its bytes (with room), where its IP packet ends, and what its
/// TCP checksum field holds.
struct Frame<'a> {
    buf: &'a mut [u8],
    end: usize,
    l4: L4Checksum,
}

impl Frame<'_> {
    fn tcp(&self) -> TcpPacket<&[u8]> {
        TcpPacket::new_unchecked(&self.buf[TCP_AT..self.end])
    }

    fn header_len(&self) -> usize {
        self.tcp().header_len()
    }

    fn tcp_mut(&mut self) -> TcpPacket<&mut [u8]> {
        TcpPacket::new_unchecked(&mut self.buf[TCP_AT..self.end])
    }

    fn ip(&self) -> Ipv4Packet<&[u8]> {
        Ipv4Packet::new_unchecked(&self.buf[ethernet::HEADER_LEN..self.end])
    }

    /// Fold a 16- or 32-bit change of the segment into a complete TCP checksum (RFC 1624);
    /// a partial one covers no payload yet and is left alone.
    fn adjust(&mut self, update: impl FnOnce(u16) -> u16) {
        if self.l4 == L4Checksum::Complete {
            let hc = self.tcp().checksum();
            self.tcp_mut().set_checksum(update(hc));
        }
    }

    /// Write the sequence number, fixing the checksum.
    fn set_seq(&mut self, new: u32) {
        let old = self.tcp().seq();
        self.tcp_mut().set_seq(new);
        self.adjust(|hc| update32(hc, old, new));
    }

    /// Write the acknowledgment number, fixing the checksum.
    fn set_ack(&mut self, new: u32) {
        let old = self.tcp().ack();
        self.tcp_mut().set_ack(new);
        self.adjust(|hc| update32(hc, old, new));
    }

    /// True if the TCP checksum verifies (always for a partial one: not computed yet).
    fn checksum_ok(&self) -> bool {
        if self.l4 != L4Checksum::Complete {
            return true;
        }
        let segment = &self.buf[TCP_AT..self.end];
        fold(checksum::sum(self.pseudo(), segment)) == 0xffff
    }

    fn pseudo(&self) -> u32 {
        let (src, dst) = (self.ip().src_u32(), self.ip().dst_u32());
        let seg_len = u16::try_from(self.end - TCP_AT).unwrap_or(u16::MAX);
        pseudo_header_sum(src, dst, PROTO_TCP, seg_len)
    }

    /// Open `n` bytes at `at` (moving what follows up to the end) if the buffer and the IPv4
    /// length allow it.
    fn open(&mut self, at: usize, n: usize) -> Result<(), DropReason> {
        let end = self.end + n;
        if end > self.buf.len() || end - ethernet::HEADER_LEN > usize::from(u16::MAX) {
            return Err(DropReason::IdentityNoRoom);
        }
        self.buf.copy_within(at..self.end, at + n);
        self.end = end;
        Ok(())
    }

    /// Cut the client data that lies before its ISN + 1 (`first` bytes before it, `first`
    /// negative) from the segment at `seq`, after its checksum was verified; the segment is
    /// then resized. Returns its new distance from ISN + 1: zero if data (or a FIN right
    /// after the cut data) is left, which then starts the stream; the old, negative one if
    /// the segment is left a bare acknowledgment at its own sequence number (a keepalive).
    ///
    /// # Errors
    /// `IdentityOutOfStream`: a FIN before ISN + 1.
    fn trim_before_first(&mut self, seq: u32, first: i32, fin: bool) -> Result<i32, DropReason> {
        let payload_at = TCP_AT + self.header_len();
        let data = self.end - payload_at;
        let before = usize::try_from(first.unsigned_abs()).unwrap_or(usize::MAX);
        let cut = before.min(data);
        if fin && cut == data && before > data {
            return Err(DropReason::IdentityOutOfStream);
        }
        self.buf.copy_within(payload_at + cut..self.end, payload_at);
        self.end -= cut;
        if cut == data && !fin {
            // Nothing of the stream in it: the bare acknowledgment keeps its number.
            self.move_urgent(0, false);
            return Ok(first);
        }
        self.set_seq(seq.wrapping_add(u32::try_from(cut).unwrap_or(u32::MAX)));
        self.move_urgent(cut, false);
        Ok(0)
    }

    /// Keep an urgent pointer pointing at the same client byte after `n` bytes were
    /// inserted before the data (`inserted`) or cut from its front; URG is cleared when the
    /// byte is gone or the pointer no longer fits. The segment is resized afterwards (its
    /// checksum is computed anew).
    fn move_urgent(&mut self, n: usize, inserted: bool) {
        let n = u16::try_from(n).unwrap_or(u16::MAX);
        let mut t = self.tcp_mut();
        let flags = t.flags();
        if flags & tcp::URG == 0 {
            return;
        }
        let ptr = t.urg_ptr();
        let moved = if inserted {
            ptr.checked_add(n)
        } else {
            ptr.checked_sub(n).filter(|p| *p > 0)
        };
        match moved {
            Some(p) => t.set_urg_ptr(p),
            None => {
                t.set_flags(flags & !tcp::URG);
                t.set_urg_ptr(0);
            }
        }
    }

    /// After the segment's length changed: the IPv4 total length and checksum, and the TCP
    /// checksum (complete: from scratch; partial: the new pseudo-header sum).
    fn finish_resized(&mut self) {
        let total = u16::try_from(self.end - ethernet::HEADER_LEN).unwrap_or(u16::MAX);
        let mut ip = Ipv4Packet::new_unchecked(&mut self.buf[ethernet::HEADER_LEN..]);
        ip.set_total_len(total);
        ip.set_checksum(0);
        let hc = checksum::checksum(&self.buf[ethernet::HEADER_LEN..TCP_AT]);
        Ipv4Packet::new_unchecked(&mut self.buf[ethernet::HEADER_LEN..]).set_checksum(hc);
        let pseudo = self.pseudo();
        let value = match self.l4 {
            L4Checksum::Partial { .. } => fold(pseudo),
            L4Checksum::Complete => {
                self.tcp_mut().set_checksum(0);
                !fold(checksum::sum(pseudo, &self.buf[TCP_AT..self.end]))
            }
        };
        self.tcp_mut().set_checksum(value);
    }
}

/// Sequence distance of `seq` past the client's first data byte (ISN + 1). Meaningful
/// within a window of it (2^31 either way): before the header is acknowledged, which the
/// TCP window bounds.
#[inline]
pub fn past_first(seq: u32, isn: u32) -> i32 {
    // Reinterpreting the wrapping difference as signed is the point (RFC 1982 style).
    #[allow(clippy::cast_possible_wrap)]
    let d = seq.wrapping_sub(isn.wrapping_add(1)) as i32;
    d
}

fn toward_backend(
    f: &mut Frame<'_>,
    vnet: &mut VnetHdr,
    seg: &Segment,
    marker_id: impl FnOnce() -> u64,
    stats: &mut WorkerStats,
) -> Result<(), DropReason> {
    let (flags, seq) = {
        let t = f.tcp();
        (t.flags(), t.seq())
    };
    let syn = flags & tcp::SYN != 0;
    let first = past_first(seq, seg.isn);
    let payload_at = TCP_AT + f.header_len();
    let has_data = f.end > payload_at;
    // Any change below but a shift is followed by a full checksum; the checksum the segment
    // came with is verified first, once.
    let mut resized = false;
    let mut verified = false;
    let mut verify = |f: &Frame<'_>| {
        if !verified && !f.checksum_ok() {
            return Err(DropReason::Malformed);
        }
        verified = true;
        Ok(())
    };
    if seg.identity & state::TOA != 0 {
        // A TOA option the client wrote itself would be a forged identity: a TOA module
        // reads the first one. Overwritten with no-ops, on every segment of the flow.
        let forged = f.tcp().options().find(|o| o.kind == TOA_KIND);
        if let Some(first_forged) = forged {
            verify(f)?;
            let mut at = Some(first_forged);
            while let Some(o) = at {
                f.tcp_mut().option_bytes_mut(o.at, o.len).fill(tcp::OPT_NOP);
                stats.toa_stripped += 1;
                at = f.tcp().options().find(|o| o.kind == TOA_KIND);
            }
            resized = true;
        }
    }
    let fin = flags & tcp::FIN != 0;
    if seg.identity & state::PROXY != 0 && !syn && seg.opening && (has_data || fin) {
        // Nothing the client sends before the backend answered its SYN is stream.
        return Err(DropReason::IdentityOutOfStream);
    }
    let mut first = first;
    if seg.identity & state::PROXY != 0 {
        if syn {
            if has_data {
                verify(f)?;
                f.end = payload_at; // Fast Open data: resent after the handshake
                resized = true;
            }
        } else if seg.acked {
            // The header is in the backend's stream: everything moves, at any distance.
            f.set_seq(seq.wrapping_add(SHIFT));
        } else {
            if first < 0 && (has_data || fin) {
                verify(f)?;
                first = f.trim_before_first(seq, first, fin)?;
                resized = true;
            }
            if first == 0 && (f.end > payload_at || fin) {
                verify(f)?;
                f.open(payload_at, proxy::HEADER_LEN)?;
                let h = proxy::header(seg.addresses, marker_id());
                f.buf[payload_at..payload_at + proxy::HEADER_LEN].copy_from_slice(&h);
                f.move_urgent(proxy::HEADER_LEN, true);
                resized = true;
                stats.proxy_headers += 1;
            } else if first > 0 {
                f.set_seq(seq.wrapping_add(SHIFT));
            }
        }
    }
    if seg.identity & state::TOA != 0 && !seg.acked && (syn || first == 0) {
        let header_len = f.header_len();
        if header_len + TOA_LEN > tcp::MAX_HEADER_LEN {
            stats.toa_no_room += 1;
        } else {
            verify(f)?;
            // Before an end-of-list option, if any: nothing after it is read.
            let at = f
                .tcp()
                .options()
                .find(|o| o.kind == tcp::OPT_EOL)
                .map_or(header_len, |o| o.at);
            f.open(TCP_AT + at, TOA_LEN)?;
            let a = seg.addresses;
            let mut t = f.tcp_mut();
            let o = t.option_bytes_mut(at, TOA_LEN);
            o[..2].copy_from_slice(&[TOA_KIND, 8]);
            o[2..4].copy_from_slice(&a.sport.to_be_bytes());
            o[4..8].copy_from_slice(&a.src.to_be_bytes());
            t.set_header_len(header_len + TOA_LEN);
            if vnet.hdr_len != 0 {
                vnet.hdr_len += 8;
            }
            resized = true;
            stats.toa_options += 1;
        }
    }
    if resized {
        f.finish_resized();
    }
    Ok(())
}

/// The backend's view of a client sequence number mapped back to the client's.
#[inline]
fn unshift(x: u32, isn: u32) -> u32 {
    match past_first(x, isn) {
        d if d > 39 => x.wrapping_sub(SHIFT),
        d if d > 0 => isn.wrapping_add(1), // inside the header: nothing of the client's
        _ => x,
    }
}

fn toward_client(f: &mut Frame<'_>, seg: &Segment) {
    let (flags, ack) = {
        let t = f.tcp();
        (t.flags(), t.ack())
    };
    let unshift = |x: u32| {
        if seg.acked {
            x.wrapping_sub(SHIFT)
        } else {
            unshift(x, seg.isn)
        }
    };
    if seg.identity & state::PROXY != 0 {
        if flags & tcp::ACK != 0 {
            let new = unshift(ack);
            if new != ack {
                f.set_ack(new);
            }
        }
        // Blocks of two edges; a malformed SACK option is left alone.
        let mut edges = [(0u32, 0usize); 8];
        let mut n = 0;
        for (edge, e) in f.tcp().sack_edges().zip(&mut edges) {
            *e = edge;
            n += 1;
        }
        for &(old, at) in &edges[..n] {
            let new = unshift(old);
            if new != old {
                f.tcp_mut().set_option_u32(at, new);
                f.adjust(|hc| update32(hc, old, new));
            }
        }
    }
    let syn_ack = flags & (tcp::SYN | tcp::ACK) == tcp::SYN | tcp::ACK;
    if let Some((old, at)) = f.tcp().mss().filter(|_| syn_ack) {
        let new = old
            .saturating_sub(overhead(seg.identity))
            .max(MIN_MSS)
            .min(old);
        if new != old {
            f.tcp_mut().set_option_u16(at, new);
            f.adjust(|hc| update16(hc, old, new));
        }
    }
}
