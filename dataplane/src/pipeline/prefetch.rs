//! Warming a receive batch's conntrack lines before its frames are processed: the cache
//! misses of a whole batch overlap instead of each packet waiting for its own in turn.

use super::Pipeline;
use crate::flow::{Attachment, FlowKey};
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::ipv4::{self, Ipv4Packet, PROTO_TCP, PROTO_UDP};

/// The most frames one [`Pipeline::prefetch`] warms: a worker's batch, or a chunk of it.
pub const PREFETCH_MAX: usize = 64;

/// Below this many flows [`Pipeline::prefetch`] does nothing: their records and buckets
/// (two 64-byte lines a flow, 2 MiB here) stay in the caches, and warming them would only
/// add instructions (about 100 a packet).
pub const PREFETCH_MIN_FLOWS: usize = 1 << 14;

impl Pipeline {
    /// Warm the conntrack cache lines the next frames will need, before they are processed
    /// one by one (what VPP and DPVS do with a receive batch): first every frame's index
    /// bucket is loaded, then every record those buckets name, so the cache misses of up to
    /// [`PREFETCH_MAX`] frames overlap instead of each packet waiting for two in turn.
    /// Frames past [`PREFETCH_MAX`], and frames that are not plain IPv4 TCP or UDP, are
    /// skipped, and so is the whole batch while the tracker holds fewer than
    /// [`PREFETCH_MIN_FLOWS`]. Changes nothing, counts nothing; the loads are ordinary loads whose values
    /// are discarded (safe code has no prefetch instruction).
    pub fn prefetch<'f>(&mut self, frames: impl IntoIterator<Item = (Attachment, &'f [u8])>) {
        let ct = &*self.shared.conntrack;
        if ct.len() < PREFETCH_MIN_FLOWS {
            return;
        }
        let mut n = 0;
        for (ingress, frame) in frames.into_iter().take(PREFETCH_MAX) {
            if let Some(key) = flow_key(ingress, frame) {
                self.prefetched[n] = ct.hash(&key);
                n += 1;
            }
        }
        // Loads alone in a tight loop: a load waiting for memory blocks retirement, so the
        // fewer instructions between two loads, the more of them are in flight at once.
        let hashes = &mut self.prefetched[..n];
        let mut sink = 0u64;
        for &h in hashes.iter() {
            sink ^= ct.prefetch_bucket(h);
        }
        // The buckets are in cache now: find each one's record, then load them all.
        for h in hashes.iter_mut() {
            *h = ct.record_of(*h).map_or(u64::MAX, u64::from);
        }
        for &slot in hashes.iter() {
            sink ^= u64::from(ct.prefetch_record(slot));
        }
        std::hint::black_box(sink);
    }
}

/// The conntrack key of a plain IPv4 TCP or UDP frame, as [`Pipeline::process`] would
/// build it once every check passed; `None` for anything else. Only lengths are checked:
/// a key of a frame `process` later drops just warmed a line for nothing.
fn flow_key(ingress: Attachment, frame: &[u8]) -> Option<FlowKey> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ethernet::ETHERTYPE_IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).ok()?;
    let proto = ip.protocol();
    let ports = ip.payload().get(..4)?;
    if ip.header_len() != ipv4::MIN_HEADER_LEN || !matches!(proto, PROTO_TCP | PROTO_UDP) {
        return None;
    }
    Some(FlowKey {
        src: ip.src_u32(),
        dst: ip.dst_u32(),
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
        vpc: ingress,
        proto,
    })
}
