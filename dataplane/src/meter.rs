//! Per-endpoint counters: packets, bytes and resets each way, flows opened, and the drops
//! that belong to one endpoint, kept by each pipeline in its own [`Meters`].
//!
//! A connection (endpoint) is metered under a *slot*, a small number the control plane
//! assigns and publishes in the tables ([`crate::tables::Target::meter`], and per endpoint
//! address); slot 0 meters nothing. A flow keeps its slot in a word of its conntrack record
//! ([`crate::conntrack::FlowEntry::meter`]), set when it opens and again at every re-check
//! against newer tables, so a packet finds its counters in the line it already read.
//!
//! Single writer: each pipeline writes only its own `Meters`, with a relaxed load and
//! store (no read-modify-write, no lock prefix); readers (the control plane, off the hot
//! path) load them and sum the pipelines. Counters only grow, per pipeline and slot. A slot
//! given back when its endpoint goes is not handed out again before every flow that could
//! still name it has been re-checked or has expired (the control plane's quarantine), so
//! its counts are never credited to the next endpoint; the reader subtracts what a slot
//! held when it took its new owner.
//!
//! Memory: one zeroed allocation of [`MAX_SLOTS`] meters (128 bytes each, 128 MiB of
//! address space) per pipeline, whose pages the kernel backs only when a slot on them
//! first counts: a pipeline pays for the slots in use (4 KiB a page of 32 slots), and
//! nothing is allocated per packet.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use zerocopy::FromZeros;

use crate::conntrack::Direction;
use crate::verdict::DropReason;

/// The highest slot is below this (about a million endpoints per node).
pub const MAX_SLOTS: usize = 1 << 20;

/// The drops that belong to one endpoint, in the order of [`Reading::drops`].
pub const ENDPOINT_DROPS: [DropReason; 8] = [
    DropReason::SourceNotWhitelisted,
    DropReason::PortNotMapped,
    DropReason::NotAccepted,
    DropReason::SnatExhausted,
    DropReason::ConntrackVpcLimit,
    DropReason::ConntrackFull,
    DropReason::Revoked,
    DropReason::PortSecurity,
];

/// Where `reason` is in [`ENDPOINT_DROPS`], if it belongs to an endpoint.
#[inline]
pub fn drop_index(reason: DropReason) -> Option<usize> {
    ENDPOINT_DROPS.iter().position(|r| *r == reason)
}

/// Words (u64) per slot, two cache lines: packets (2), bytes (2), resets (2), flows opened
/// (1), drops by reason (8), one spare.
const WORDS: usize = 16;
const PACKETS: usize = 0;
const BYTES: usize = 2;
const RESETS: usize = 4;
const OPENED: usize = 6;
const DROPS: usize = 7;
const _: () = assert!(DROPS + ENDPOINT_DROPS.len() <= WORDS);

/// A plain copy of one slot's counters (or a sum of several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// Packets by direction ([`Direction::Original`]: client to service, then reply); a
    /// GSO super-frame counts as the segments it stands for.
    pub packets: [u64; 2],
    /// IPv4 bytes (headers included, as the segments on the wire carry them) by direction.
    pub bytes: [u64; 2],
    /// TCP segments with RST by direction.
    pub resets: [u64; 2],
    /// Flows opened.
    pub flows_opened: u64,
    /// Drops by reason, in the order of [`ENDPOINT_DROPS`].
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

/// One pipeline's meters, by slot: one zeroed allocation for every slot, whose pages the
/// kernel backs only as slots first count (untouched slots cost address space, not
/// memory). Slot 0 is a sink: what it counts is never read, so the hot path has no test.
pub struct Meters {
    words: Box<[AtomicU64]>,
    /// Word offset of slot 0 (aligned to 64 bytes).
    base: usize,
}

impl core::fmt::Debug for Meters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Meters").finish_non_exhaustive()
    }
}

impl Default for Meters {
    fn default() -> Self {
        let n = MAX_SLOTS * WORDS + 8;
        let words = <[AtomicU64]>::new_box_zeroed_with_elems(n).unwrap_or_else(|_| {
            let layout = std::alloc::Layout::array::<AtomicU64>(n);
            std::alloc::handle_alloc_error(layout.unwrap_or(std::alloc::Layout::new::<u64>()))
        });
        let base = ((64 - words.as_ptr() as usize % 64) % 64) / 8;
        Self { words, base }
    }
}

impl Meters {
    /// The words of `slot`, taken modulo [`MAX_SLOTS`] (the control plane hands out none
    /// above it): a flow's whole meter word can be given, its other bits
    /// ([`crate::conntrack::flowlog::LOGGED`]) fall away.
    #[inline(always)]
    fn slot(&self, slot: u32) -> &[AtomicU64] {
        let i = slot as usize & (MAX_SLOTS - 1);
        let at = self.base + i * WORDS;
        &self.words[at..at + WORDS]
    }

    /// Credit one forwarded frame of `slot`'s flow travelling `dir`: `segments` packets of
    /// `bytes` IPv4 bytes in all, `reset` if it carries a TCP RST. `slot` may be a flow's
    /// whole meter word: slots are taken modulo [`MAX_SLOTS`].
    #[inline(always)]
    pub fn packet(&self, slot: u32, dir: Direction, segments: u64, bytes: u64, reset: bool) {
        let m = self.slot(slot);
        let d = usize::from(dir == Direction::Reply);
        bump(&m[PACKETS + d], segments);
        bump(&m[BYTES + d], bytes);
        if reset {
            bump(&m[RESETS + d], 1);
        }
    }

    /// Credit a flow opened under `slot`.
    #[inline]
    pub fn opened(&self, slot: u32) {
        bump(&self.slot(slot)[OPENED], 1);
    }

    /// Credit a drop of `slot`'s endpoint (reasons outside [`ENDPOINT_DROPS`] are not).
    #[inline]
    pub fn dropped(&self, slot: u32, reason: DropReason) {
        if let Some(i) = drop_index(reason) {
            bump(&self.slot(slot)[DROPS + i], 1);
        }
    }

    /// What `slot` holds (zeros for slot 0, the sink, and past [`MAX_SLOTS`]).
    pub fn read(&self, slot: u32) -> Reading {
        if slot == 0 || slot as usize >= MAX_SLOTS {
            return Reading::default();
        }
        let m = self.slot(slot);
        let pair = |at: usize| [m[at].load(Relaxed), m[at + 1].load(Relaxed)];
        Reading {
            packets: pair(PACKETS),
            bytes: pair(BYTES),
            resets: pair(RESETS),
            flows_opened: m[OPENED].load(Relaxed),
            drops: core::array::from_fn(|i| m[DROPS + i].load(Relaxed)),
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
        assert_eq!(m.read(3000), Reading::default(), "never counted");
        let other = Meters::default();
        other.packet(5, Direction::Original, 2, 120, false);
        let total = sum([&m, &other], 5);
        assert_eq!(total.packets, [3, 3]);
        assert_eq!(total.since(&r).packets, [2, 0]);
    }
}
