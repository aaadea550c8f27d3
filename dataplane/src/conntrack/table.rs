//! The flow table under the tracker: a pre-sized slab of 64-byte flow records (one per
//! flow, both directions in it) and an open-addressing index of 64-byte buckets that maps
//! each direction's key to its record. Shared by every worker without a lock on lookup.
//!
//! ```text
//!  index (capacity / 2 buckets, a cache line each)    records (capacity slots, 64 B each)
//!  ┌ meta: lock bit, overflow count ┐                  ┌ seq, state, original key,     ┐
//!  │ 7 entries: hash tag 32 | slot  │ ── slot, dir ──► │ rewrite, VPCs, both MACs,     │
//!  │            + 1 31 | direction 1│                  │ last seen x2, generation x2   │
//!  └────────────────────────────────┘                  └───────────────────────────────┘
//! ```
//!
//! - **Sizes are fixed at creation**: `capacity` records and enough buckets that they hold
//!   both keys of every flow at an average of four entries in seven, so nothing ever grows
//!   or rehashes and the memory per flow of capacity is fixed: 64 B of record and 32 B of
//!   index. Both arrays are zeroed by the allocator, so untouched pages cost nothing.
//! - **Index**: a key's home bucket is its hash's low 32 bits scaled to the bucket count,
//!   and its 32-bit tag the high bits; an entry that does not fit goes
//!   to the next bucket, and every bucket it passed counts it in its overflow count, so a
//!   lookup stops at the first bucket that has no overflow (F14's scheme). Entries never
//!   move: a reader never misses a live entry. Inserting a key takes its home bucket's lock
//!   bit (so two workers cannot insert the same key twice); lookups and removals take none.
//! - **Records** are read under a per-record sequence lock (`seq` odd while a writer is in),
//!   and always compared with the whole key, so an index entry read just before its flow
//!   went away, or a record reused since, is a miss, not a wrong hit. The hot fields
//!   (state, last seen, generation) are separate atomics written in place. The state word
//!   carries the record's incarnation, so a state change meant for a flow that has gone
//!   never lands on the flow that reuses its record.
//! - **Free records** form a lock-free stack (a tagged head against ABA) threaded through
//!   the records themselves; records never handed out yet come from a high-water mark.
//!
//! Deliberate trade-off: `touch` and `set_checked` through a handle whose flow was removed
//! and whose record was reused meanwhile write the new flow's last-seen time or generation
//! stamp (to the current values): at worst the new flow lives one timeout longer, or skips
//! one re-check against the tables the same batch already checked it against. A state
//! change carries the incarnation and is dropped instead.
//!
//! Everything here is atomics: no `unsafe`, and no lock on the lookup path.

use core::hash::BuildHasher;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::hint::spin_loop;

use foldhash::fast::RandomState;
use zerocopy::FromZeros;

use super::record::{FlowInit, Found, RECORD_WORDS, Record, Words};
use super::{Direction, state};
use crate::flow::FlowKey;

use Ordering::{Acquire, Relaxed, Release};

/// Words (u64) per bucket: one meta word and seven entries, 64 bytes.
const BUCKET_WORDS: usize = 8;
/// The most entries a bucket holds on average when every flow is in: 4 of 7.
const MEAN_LOAD: usize = 4;
/// The most records the slot part of an index entry can name (31 bits, plus one).
pub const MAX_RECORDS: usize = (1 << 31) - 2;

/// What the index could not do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexError {
    /// The key is already in the index.
    Occupied,
    /// Every bucket is full (cannot happen while flows stay within capacity).
    Full,
}

/// The table: records, index, free list.
pub struct FlowTable {
    records: Box<[AtomicU32]>,
    /// One word per record beside it: the client's initial sequence number, read only by
    /// flows that carry client identity, so the record stays one cache line.
    isn: Box<[AtomicU32]>,
    /// Word offset of record 0 (aligns it to 64 bytes).
    rbase: usize,
    capacity: usize,
    index: Box<[AtomicU64]>,
    /// Word offset of bucket 0 (aligns it to 64 bytes).
    ibase: usize,
    /// Bucket count: exactly enough for the mean load, not rounded to a power of two.
    buckets: usize,
    /// Free list head: tag (32 bits, against ABA) | slot + 1 (0: empty).
    free: AtomicU64,
    /// Records never handed out yet start here.
    fresh: AtomicU32,
    hasher: RandomState,
}

impl core::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlowTable")
            .field("capacity", &self.capacity)
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

/// A zeroed slice of `n` atomics plus room to align the first to 64 bytes, and the offset
/// (in elements) of the first aligned one.
fn zeroed<T: FromZeros>(n: usize) -> (Box<[T]>, usize) {
    let per_line = 64 / size_of::<T>();
    let b = <[T]>::new_box_zeroed_with_elems(n + per_line).unwrap_or_else(|_| {
        let layout = std::alloc::Layout::array::<T>(n + per_line);
        std::alloc::handle_alloc_error(layout.unwrap_or(std::alloc::Layout::new::<T>()))
    });
    let addr = b.as_ptr() as usize;
    let offset = ((64 - addr % 64) % 64) / size_of::<T>();
    (b, offset)
}

#[inline]
fn entry(tag: u32, slot: u32, dir: Direction) -> u64 {
    (u64::from(tag) << 32) | (u64::from(slot + 1) << 1) | u64::from(dir == Direction::Reply)
}

#[inline]
#[allow(clippy::cast_possible_truncation)]
fn split(e: u64) -> (u32, u32, Direction) {
    let low = e as u32;
    let dir = if low & 1 == 1 {
        Direction::Reply
    } else {
        Direction::Original
    };
    ((e >> 32) as u32, (low >> 1) - 1, dir)
}

impl FlowTable {
    /// A table for `capacity` flows (at most [`MAX_RECORDS`]), keyed with `hasher`.
    ///
    /// # Panics
    /// If `capacity` is above [`MAX_RECORDS`] (the config refuses it first).
    pub fn new(capacity: usize, hasher: RandomState) -> Self {
        assert!(capacity <= MAX_RECORDS, "conntrack capacity {capacity}");
        let buckets = (2 * capacity).div_ceil(MEAN_LOAD).max(2);
        let (records, rbase) = zeroed::<AtomicU32>(capacity * RECORD_WORDS);
        let (index, ibase) = zeroed::<AtomicU64>(buckets * BUCKET_WORDS);
        let (isn, _) = zeroed::<AtomicU32>(capacity);
        Self {
            records,
            isn,
            rbase,
            capacity,
            index,
            ibase,
            buckets,
            free: AtomicU64::new(0),
            fresh: AtomicU32::new(0),
            hasher,
        }
    }

    /// The table's two allocations (records, index) as (address, bytes), for memory
    /// advice from the I/O layer (huge pages).
    pub fn regions(&self) -> [(usize, usize); 2] {
        [
            (self.records.as_ptr() as usize, self.records.len() * 4),
            (self.index.as_ptr() as usize, self.index.len() * 8),
        ]
    }

    /// Bytes this table holds (records, side words, index, alignment), fixed at creation.
    pub fn footprint(&self) -> usize {
        (self.records.len() + self.isn.len()) * 4 + self.index.len() * 8
    }

    /// The key's hash.
    #[inline(always)]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline(always)]
    fn record(&self, slot: u32) -> &[AtomicU32; RECORD_WORDS] {
        let at = self.rbase + slot as usize * RECORD_WORDS;
        self.records[at..at + RECORD_WORDS]
            .try_into()
            .expect("a record is RECORD_WORDS long")
    }

    /// The client ISN word of record `slot` (see [`FlowInit::client_isn`]): written when a
    /// flow with client identity opens and by its client's new SYN, read by the client
    /// identity rewrite only.
    #[inline]
    pub fn isn(&self, slot: u32) -> &AtomicU32 {
        &self.isn[slot as usize]
    }

    /// The meter word of record `slot` (see [`FlowInit::meter`]), in the record.
    #[inline(always)]
    pub fn meter(&self, slot: u32) -> &AtomicU32 {
        self.at(slot).meter()
    }

    /// The handle on record `slot`.
    #[inline(always)]
    pub fn at(&self, slot: u32) -> Record<'_> {
        Record::new(self.record(slot))
    }

    #[inline(always)]
    fn bucket(&self, b: usize) -> &[AtomicU64; BUCKET_WORDS] {
        let at = self.ibase + b * BUCKET_WORDS;
        self.index[at..at + BUCKET_WORDS]
            .try_into()
            .expect("a bucket is BUCKET_WORDS long")
    }

    /// The hash's low 32 bits scaled to the bucket count (a multiply, not a modulo, and
    /// no power-of-two rounding of the index's size).
    #[inline]
    fn home(&self, h: u64) -> usize {
        let scaled = (h & 0xffff_ffff) * self.buckets as u64;
        usize::try_from(scaled >> 32).unwrap_or(0)
    }

    #[inline]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets { 0 } else { b + 1 }
    }

    #[inline]
    #[allow(clippy::cast_possible_truncation)]
    fn tag(h: u64) -> u32 {
        (h >> 32) as u32
    }

    /// Load the key's home bucket (a prefetch that safe code can write: the load's result
    /// is unused, so the loads of a batch overlap). Returns a word to feed `black_box`.
    #[inline]
    pub fn touch_bucket(&self, h: u64) -> u64 {
        self.bucket(self.home(h))[0].load(Relaxed)
    }

    /// The record the key's home bucket names with the key's tag (the first such entry), if
    /// any: where a lookup will most likely read.
    #[inline]
    pub fn record_of(&self, h: u64) -> Option<u32> {
        let tag = Self::tag(h);
        self.bucket(self.home(h))[1..].iter().find_map(|e| {
            let e = e.load(Relaxed);
            (e != 0 && Self::tag(e) == tag).then(|| split(e).1)
        })
    }

    /// Load record `slot`'s first word, if `slot` names a record (a prefetch, as
    /// [`FlowTable::touch_bucket`]).
    #[inline]
    pub fn touch_record(&self, slot: u64) -> u32 {
        usize::try_from(slot)
            .ok()
            .and_then(|s| s.checked_mul(RECORD_WORDS))
            .and_then(|at| self.records.get(self.rbase + at))
            .map_or(0, |w| w.load(Relaxed))
    }

    /// Read record `slot` (see [`Record::read`]).
    #[inline(always)]
    pub fn read(&self, slot: u32) -> Option<Words> {
        self.at(slot).read()
    }

    /// Write a whole record (live, next incarnation). The record must be one this caller
    /// took with [`FlowTable::alloc`] and has not published yet.
    pub fn write(&self, slot: u32, f: &FlowInit) {
        self.at(slot).write(f);
        // Only flows with client identity read it: others leave its page untouched.
        if f.reply_state & state::IDENTITY != 0 {
            self.isn(slot).store(f.client_isn, Relaxed);
        }
    }

    /// Look `key` (hash `h`) up: the record and direction, if present.
    #[inline(always)]
    pub fn get(&self, key: &FlowKey, h: u64) -> Option<Found> {
        self.find(key, h)
    }

    #[inline(always)]
    fn find(&self, key: &FlowKey, h: u64) -> Option<Found> {
        let tag = Self::tag(h);
        let mut b = self.home(h);
        for _ in 0..self.buckets {
            let bucket = self.bucket(b);
            for e in &bucket[1..] {
                let e = e.load(Acquire);
                if e == 0 || Self::tag(e) != tag {
                    continue;
                }
                let (_, slot, dir) = split(e);
                if let Some(words) = self.read(slot)
                    && words.matches(key, dir)
                {
                    return Some(Found { slot, dir, words });
                }
            }
            if bucket[0].load(Acquire) >> 1 == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    fn lock_bucket(&self, b: usize) {
        let meta = &self.bucket(b)[0];
        loop {
            let m = meta.load(Relaxed);
            if m & 1 == 0
                && meta
                    .compare_exchange_weak(m, m | 1, Acquire, Relaxed)
                    .is_ok()
            {
                return;
            }
            spin_loop();
        }
    }

    fn unlock_bucket(&self, b: usize) {
        self.bucket(b)[0].fetch_and(!1, Release);
    }

    /// Index `key` (hash `h`) to `slot` as direction `dir`, unless the key is there.
    ///
    /// # Errors
    /// [`IndexError::Occupied`] if the key is indexed; [`IndexError::Full`] if no bucket
    /// has room.
    pub fn insert(
        &self,
        key: &FlowKey,
        h: u64,
        slot: u32,
        dir: Direction,
    ) -> Result<(), IndexError> {
        let home = self.home(h);
        self.lock_bucket(home);
        let result = if self.find(key, h).is_some() {
            Err(IndexError::Occupied)
        } else {
            self.place(home, entry(Self::tag(h), slot, dir))
        };
        self.unlock_bucket(home);
        result
    }

    /// Put `e` in the first free way from `home` on, counting it in the overflow of every
    /// bucket it passes (before it is placed, so a reader never stops short of it).
    fn place(&self, home: usize, e: u64) -> Result<(), IndexError> {
        let mut b = home;
        for _ in 0..self.buckets {
            let bucket = self.bucket(b);
            for way in &bucket[1..] {
                if way.load(Relaxed) == 0 && way.compare_exchange(0, e, Release, Relaxed).is_ok() {
                    return Ok(());
                }
            }
            bucket[0].fetch_add(2, Release);
            b = self.next(b);
        }
        // Undo the counts: the walk went round the whole table.
        for i in 0..self.buckets {
            self.bucket(i)[0].fetch_sub(2, Relaxed);
        }
        Err(IndexError::Full)
    }

    /// Remove the index entry of hash `h` naming `slot` as `dir`; returns whether it was
    /// there. Needs no record read, so it works on a record already killed.
    pub fn remove(&self, h: u64, slot: u32, dir: Direction) -> bool {
        let want = entry(Self::tag(h), slot, dir);
        let home = self.home(h);
        let mut b = home;
        for _ in 0..self.buckets {
            let bucket = self.bucket(b);
            for way in &bucket[1..] {
                if way.load(Relaxed) == want
                    && way.compare_exchange(want, 0, Release, Relaxed).is_ok()
                {
                    let mut p = home;
                    while p != b {
                        self.bucket(p)[0].fetch_sub(2, Release);
                        p = self.next(p);
                    }
                    return true;
                }
            }
            if bucket[0].load(Acquire) >> 1 == 0 {
                return false;
            }
            b = self.next(b);
        }
        false
    }

    /// Take a free record, or `None` if all `capacity` are in use.
    pub fn alloc(&self) -> Option<u32> {
        let mut head = self.free.load(Acquire);
        loop {
            #[allow(clippy::cast_possible_truncation)]
            let top = head as u32;
            if top == 0 {
                break;
            }
            let next = self.at(top - 1).link().load(Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(next);
            match self.free.compare_exchange_weak(head, new, Acquire, Acquire) {
                Ok(_) => return Some(top - 1),
                Err(seen) => head = seen,
            }
        }
        self.fresh
            .fetch_update(Relaxed, Relaxed, |n| {
                ((n as usize) < self.capacity).then_some(n + 1)
            })
            .ok()
    }

    /// Kill record `slot` if it is still incarnation `inc` and live; returns its words if
    /// this call did (exactly one of several racing removers does).
    pub fn kill(&self, slot: u32, inc: u8) -> Option<Words> {
        self.at(slot).kill(Some(inc))
    }

    /// Kill and give back a record this caller took with [`FlowTable::alloc`] and whose
    /// index entries are gone (or were never made).
    pub fn kill_and_release(&self, slot: u32) {
        self.at(slot).kill(None);
        self.release(slot);
    }

    /// Give back a record already killed with [`FlowTable::kill`].
    pub fn release(&self, slot: u32) {
        let mut head = self.free.load(Relaxed);
        loop {
            #[allow(clippy::cast_possible_truncation)]
            self.at(slot).link().store(head as u32, Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(slot + 1);
            match self.free.compare_exchange_weak(head, new, Release, Relaxed) {
                Ok(_) => return,
                Err(seen) => head = seen,
            }
        }
    }

    /// The meter slot of every live record. Off the fast path.
    pub fn live_meters(&self) -> impl Iterator<Item = u32> + '_ {
        let high = self.fresh.load(Acquire);
        (0..high).filter_map(|slot| {
            self.at(slot)
                .read_all()
                .filter(Words::live)
                .map(|_| self.meter(slot).load(Relaxed))
        })
    }

    /// Every live record (a copy, each consistent on its own). Off the fast path.
    pub fn live(&self) -> impl Iterator<Item = FlowInit> + '_ {
        let high = self.fresh.load(Acquire);
        (0..high).filter_map(|slot| {
            let rec = self.at(slot);
            rec.read_all().filter(Words::live).map(|w| FlowInit {
                client_isn: if w.reply_state() & state::IDENTITY == 0 {
                    0
                } else {
                    self.isn(slot).load(Relaxed)
                },
                ..w.flow()
            })
        })
    }

    /// Index entries in use (both directions of every flow). Off the fast path.
    pub fn entries(&self) -> usize {
        (0..self.buckets)
            .map(|b| {
                self.bucket(b)[1..]
                    .iter()
                    .filter(|e| e.load(Relaxed) != 0)
                    .count()
            })
            .sum()
    }
}
