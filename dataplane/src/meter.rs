//! Per-endpoint counters: packets, bytes and resets each way, flows opened, and the drops
//! that belong to one endpoint, kept by each pipeline in its own [`Meters`].
//!
//! A connection (endpoint) is metered under a *slot*, a small number the control plane
//! assigns and publishes in the tables ([`crate::tables::Target::meter`], and per endpoint
//! address); slot 0 meters nothing. A flow keeps its slot in the word beside its conntrack
//! record ([`crate::conntrack::FlowEntry::meter`]), set when it opens and again at every
//! re-check against newer tables, so a packet finds its counters with one load.
//!
//! Single writer: each pipeline writes only its own `Meters`, with a relaxed load and
//! store (no read-modify-write, no lock prefix); readers (the control plane, off the hot
//! path) load them and sum the pipelines. Counters only grow, per pipeline and slot. A slot
//! given back when its endpoint goes is not handed out again before every flow that could
//! still name it has been re-checked or has expired (the control plane's quarantine), so
//! its counts are never credited to the next endpoint; the reader subtracts what a slot
//! held when it took its new owner.
//!
//! Memory: slots come in chunks of [`CHUNK`] meters (128 bytes each), allocated the first
//! time a slot of the chunk is credited, so a pipeline pays only for the slots in use, and
//! nothing is allocated per packet after that.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::conntrack::Direction;
use crate::verdict::DropReason;

/// Meters per chunk.
pub const CHUNK: usize = 1024;
/// The highest slot is below this (about a million endpoints per node).
pub const MAX_SLOTS: usize = 1 << 20;

/// The drops that belong to one endpoint, in the order of [`Meter::drops`].
pub const ENDPOINT_DROPS: [DropReason; 7] = [
    DropReason::SourceNotWhitelisted,
    DropReason::PortNotMapped,
    DropReason::NotAccepted,
    DropReason::SnatExhausted,
    DropReason::ConntrackVpcLimit,
    DropReason::ConntrackFull,
    DropReason::Revoked,
];

/// Where `reason` is in [`ENDPOINT_DROPS`], if it belongs to an endpoint.
#[inline]
pub fn drop_index(reason: DropReason) -> Option<usize> {
    ENDPOINT_DROPS.iter().position(|r| *r == reason)
}

/// One slot's counters in one pipeline (two cache lines).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Meter {
    /// Packets by direction ([`Direction::Original`]: client to service, then reply); a
    /// GSO super-frame counts as the segments it stands for.
    pub packets: [AtomicU64; 2],
    /// IPv4 bytes (headers included, as the segments on the wire carry them) by direction.
    pub bytes: [AtomicU64; 2],
    /// TCP segments with RST by direction.
    pub resets: [AtomicU64; 2],
    /// Flows opened.
    pub flows_opened: AtomicU64,
    /// Drops by reason, in the order of [`ENDPOINT_DROPS`].
    pub drops: [AtomicU64; ENDPOINT_DROPS.len()],
}

/// A plain copy of a [`Meter`] (or a sum of several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// See [`Meter::packets`].
    pub packets: [u64; 2],
    /// See [`Meter::bytes`].
    pub bytes: [u64; 2],
    /// See [`Meter::resets`].
    pub resets: [u64; 2],
    /// See [`Meter::flows_opened`].
    pub flows_opened: u64,
    /// See [`Meter::drops`].
    pub drops: [u64; ENDPOINT_DROPS.len()],
}

impl Reading {
    /// Add `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        for i in 0..2 {
            self.packets[i] += other.packets[i];
            self.bytes[i] += other.bytes[i];
            self.resets[i] += other.resets[i];
        }
        self.flows_opened += other.flows_opened;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += *b;
        }
    }

    /// `self - base`, each counter saturating at zero.
    #[must_use]
    pub fn since(&self, base: &Self) -> Self {
        let mut d = *self;
        for i in 0..2 {
            d.packets[i] = d.packets[i].saturating_sub(base.packets[i]);
            d.bytes[i] = d.bytes[i].saturating_sub(base.bytes[i]);
            d.resets[i] = d.resets[i].saturating_sub(base.resets[i]);
        }
        d.flows_opened = d.flows_opened.saturating_sub(base.flows_opened);
        for (a, b) in d.drops.iter_mut().zip(base.drops.iter()) {
            *a = a.saturating_sub(*b);
        }
        d
    }

    /// Drops for `reason` (0 if it does not belong to an endpoint).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        drop_index(reason).map_or(0, |i| self.drops[i])
    }
}

/// Add `n` to a counter only this thread writes.
#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// One pipeline's meters, by slot.
pub struct Meters {
    chunks: Box<[OnceLock<Box<[Meter]>>]>,
}

impl core::fmt::Debug for Meters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let chunks = self.chunks.iter().filter(|c| c.get().is_some()).count();
        f.debug_struct("Meters")
            .field("chunks", &chunks)
            .finish_non_exhaustive()
    }
}

impl Default for Meters {
    fn default() -> Self {
        Self {
            chunks: (0..MAX_SLOTS / CHUNK).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl Meters {
    /// The meter of `slot` to write, allocating its chunk the first time (none for slot
    /// 0 or past [`MAX_SLOTS`]).
    #[inline(always)]
    fn write(&self, slot: u32) -> Option<&Meter> {
        if slot == 0 {
            return None;
        }
        let slot = slot as usize;
        let chunk = self.chunks.get(slot / CHUNK)?;
        let meters = chunk.get_or_init(|| (0..CHUNK).map(|_| Meter::default()).collect());
        meters.get(slot % CHUNK)
    }

    /// Credit one forwarded frame of `slot`'s flow travelling `dir`: `segments` packets of
    /// `bytes` IPv4 bytes in all, `reset` if it carries a TCP RST.
    #[inline(always)]
    pub fn packet(&self, slot: u32, dir: Direction, segments: u64, bytes: u64, reset: bool) {
        if let Some(m) = self.write(slot) {
            let d = usize::from(dir == Direction::Reply);
            bump(&m.packets[d], segments);
            bump(&m.bytes[d], bytes);
            if reset {
                bump(&m.resets[d], 1);
            }
        }
    }

    /// Credit a flow opened under `slot`.
    #[inline]
    pub fn opened(&self, slot: u32) {
        if let Some(m) = self.write(slot) {
            bump(&m.flows_opened, 1);
        }
    }

    /// Credit a drop of `slot`'s endpoint (reasons outside [`ENDPOINT_DROPS`] are not).
    #[inline]
    pub fn dropped(&self, slot: u32, reason: DropReason) {
        if let (Some(m), Some(i)) = (self.write(slot), drop_index(reason)) {
            bump(&m.drops[i], 1);
        }
    }

    /// What `slot` holds (zeros for a slot never credited).
    pub fn read(&self, slot: u32) -> Reading {
        let slot = slot as usize;
        let Some(m) = self
            .chunks
            .get(slot / CHUNK)
            .and_then(OnceLock::get)
            .and_then(|c| c.get(slot % CHUNK))
        else {
            return Reading::default();
        };
        let load = |a: &[AtomicU64; 2]| [a[0].load(Relaxed), a[1].load(Relaxed)];
        Reading {
            packets: load(&m.packets),
            bytes: load(&m.bytes),
            resets: load(&m.resets),
            flows_opened: m.flows_opened.load(Relaxed),
            drops: core::array::from_fn(|i| m.drops[i].load(Relaxed)),
        }
    }
}

/// The sum over several pipelines' meters of `slot`.
pub fn sum<'a>(meters: impl IntoIterator<Item = &'a Meters>, slot: u32) -> Reading {
    let mut total = Reading::default();
    for m in meters {
        total.add(&m.read(slot));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_land_in_their_slot_only() {
        let m = Meters::default();
        m.packet(5, Direction::Original, 1, 60, false);
        m.packet(5, Direction::Reply, 3, 4380, true);
        m.opened(5);
        m.dropped(5, DropReason::PortNotMapped);
        m.dropped(5, DropReason::Malformed); // not an endpoint's: not counted
        m.packet(0, Direction::Original, 1, 60, false); // slot 0 meters nothing
        m.packet(
            u32::try_from(MAX_SLOTS).unwrap(),
            Direction::Original,
            1,
            60,
            false,
        );
        let r = m.read(5);
        assert_eq!((r.packets, r.bytes, r.resets), ([1, 3], [60, 4380], [0, 1]));
        assert_eq!(r.flows_opened, 1);
        assert_eq!(r.dropped(DropReason::PortNotMapped), 1);
        assert_eq!(r.drops.iter().sum::<u64>(), 1);
        assert_eq!(m.read(6), Reading::default());
        assert_eq!(m.read(0), Reading::default());
        assert_eq!(
            m.read(u32::try_from(CHUNK * 3).unwrap()),
            Reading::default(),
            "never allocated"
        );
        let other = Meters::default();
        other.packet(5, Direction::Original, 2, 120, false);
        let total = sum([&m, &other], 5);
        assert_eq!(total.packets, [3, 3]);
        assert_eq!(total.since(&r).packets, [2, 0]);
        assert_eq!(size_of::<Meter>(), 128);
    }
}
