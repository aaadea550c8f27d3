//! The flow table under the tracker: a pre-sized slab of 64-byte flow records (one per
//! flow, both directions in it) and an open-addressing index of 64-byte buckets that maps
//! each direction's key to its record. Shared by every worker without a lock on lookup.
//!
//! ```text
//!  index (2^k buckets, one cache line each)           records (capacity slots, 64 B each)
//!  ┌ meta: lock bit, overflow count ┐                  ┌ seq, state, original key,     ┐
//!  │ 7 entries: hash tag 32 | slot  │ ── slot, dir ──► │ rewrite, VPCs, both MACs,     │
//!  │            + 1 31 | direction 1│                  │ last seen x2, generation x2   │
//!  └────────────────────────────────┘                  └───────────────────────────────┘
//! ```
//!
//! - **Sizes are fixed at creation**: `capacity` records and enough buckets that they hold
//!   both keys of every flow at an average of at most four entries in seven, so nothing
//!   ever grows or rehashes and the memory per flow is known (64 B of record and 32 to 64 B
//!   of index). Both arrays are zeroed by the allocator, so untouched pages cost nothing.
//! - **Index**: a key's home bucket is its hash's low bits; an entry that does not fit goes
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
//! one re-check against the tables the same batch already checked it against.
//!
//! Everything here is atomics: no `unsafe`, and no lock on the lookup path.

use core::hash::BuildHasher;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::hint::spin_loop;

use foldhash::fast::RandomState;
use zerocopy::FromZeros;

use super::{Direction, Rewrite};
use crate::flow::{FlowKey, VpcId};
use crate::wire::ethernet::MacAddr;

use Ordering::{Acquire, Relaxed, Release};

/// Words (u32) per record: 64 bytes, one cache line.
const RECORD_WORDS: usize = 16;
/// Words (u64) per bucket: one meta word and seven entries, 64 bytes.
const BUCKET_WORDS: usize = 8;
/// The most entries a bucket holds on average when every flow is in: 4 of 7.
const MEAN_LOAD: usize = 4;
/// The most records the slot part of an index entry can name (31 bits, plus one).
pub(crate) const MAX_RECORDS: usize = (1 << 31) - 2;

// Record word offsets.
const SEQ: usize = 0;
/// incarnation 7 bits | live 1 bit | protocol 8 | reply state 8 | original state 8.
const STATE: usize = 1;
const KEY_SRC: usize = 2;
const KEY_DST: usize = 3;
const KEY_PORTS: usize = 4;
/// key VPC 16 | out VPC 16.
const VPCS: usize = 5;
const RW_SRC: usize = 6;
const RW_DST: usize = 7;
const RW_PORTS: usize = 8;
/// backend MAC bytes 0..4.
const BMAC_HI: usize = 9;
/// backend MAC bytes 4..6 | client MAC bytes 0..2.
const MACS: usize = 10;
/// client MAC bytes 2..6.
const CMAC_LO: usize = 11;
const LAST: [usize; 2] = [12, 13];
/// The hot words start here: last seen, then generation.
const HOT: usize = 12;
const GENERATION: [usize; 2] = [14, 15];
/// A free record's link to the next free one (slot + 1, 0 for none); reuses a key word.
const LINK: usize = KEY_SRC;

const LIVE: u32 = 1 << 24;
/// How many times a reader retries a record a writer keeps busy before calling it a miss.
const READ_RETRIES: usize = 64;

/// What the index could not do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexError {
    /// The key is already in the index.
    Occupied,
    /// Every bucket is full (cannot happen while flows stay within capacity).
    Full,
}

/// Everything a new flow's record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInit {
    /// The original (client to endpoint) key.
    pub key: FlowKey,
    /// The rewrite of original-direction packets (SNAT address and port to the backend).
    pub rewrite: Rewrite,
    /// The attachment original-direction packets leave on (the backend's).
    pub out_vpc: VpcId,
    /// The backend's MAC.
    pub backend_mac: MacAddr,
    /// The client's MAC (the next hop of replies).
    pub client_mac: MacAddr,
    /// The original direction's state byte.
    pub state: u8,
    /// The reply direction's state byte.
    pub reply_state: u8,
    /// Generation stamps, original then reply.
    pub generation: [u32; 2],
    /// Last-seen seconds, original then reply.
    pub last_seen: [u32; 2],
}

impl FlowInit {
    /// The key of the reply direction.
    pub fn reply_key(&self) -> FlowKey {
        self.rewrite.reply_key(self.out_vpc, self.key.proto)
    }
}

/// A record's words as read, consistent under its sequence lock.
#[derive(Clone, Copy, Debug)]
pub struct Words([u32; RECORD_WORDS]);

impl Words {
    /// The record's incarnation and live bit (the state word's top byte).
    #[inline]
    pub fn incarnation(&self) -> u8 {
        self.0[STATE].to_be_bytes()[0]
    }

    #[inline]
    fn live(&self) -> bool {
        self.0[STATE] & LIVE != 0
    }

    #[inline]
    fn proto(&self) -> u8 {
        self.0[STATE].to_be_bytes()[1]
    }

    /// The original key.
    #[inline]
    pub fn key(&self) -> FlowKey {
        let w = &self.0;
        FlowKey {
            src: w[KEY_SRC],
            dst: w[KEY_DST],
            sport: high(w[KEY_PORTS]),
            dport: low(w[KEY_PORTS]),
            vpc: VpcId(high(w[VPCS])),
            proto: self.proto(),
        }
    }

    /// The rewrite of original-direction packets.
    #[inline]
    pub fn rewrite(&self) -> Rewrite {
        let w = &self.0;
        Rewrite {
            src: w[RW_SRC],
            dst: w[RW_DST],
            sport: high(w[RW_PORTS]),
            dport: low(w[RW_PORTS]),
        }
    }

    /// The attachment original-direction packets leave on.
    #[inline]
    pub fn out_vpc(&self) -> VpcId {
        VpcId(low(self.0[VPCS]))
    }

    /// The backend's MAC.
    #[inline]
    pub fn backend_mac(&self) -> MacAddr {
        let [b0, b1, b2, b3] = self.0[BMAC_HI].to_be_bytes();
        let [b4, b5, _, _] = self.0[MACS].to_be_bytes();
        MacAddr([b0, b1, b2, b3, b4, b5])
    }

    /// The client's MAC.
    #[inline]
    pub fn client_mac(&self) -> MacAddr {
        let [_, _, c0, c1] = self.0[MACS].to_be_bytes();
        let [c2, c3, c4, c5] = self.0[CMAC_LO].to_be_bytes();
        MacAddr([c0, c1, c2, c3, c4, c5])
    }

    /// True if `key` is this record's key in direction `dir`: word compares, nothing built.
    #[inline(always)]
    fn matches(&self, key: &FlowKey, dir: Direction) -> bool {
        let w = &self.0;
        let ports = (u32::from(key.sport) << 16) | u32::from(key.dport);
        let vpc = u32::from(key.vpc.0);
        let same = match dir {
            Direction::Original => {
                w[KEY_SRC] == key.src
                    && w[KEY_DST] == key.dst
                    && w[KEY_PORTS] == ports
                    && w[VPCS] >> 16 == vpc
            }
            Direction::Reply => {
                w[RW_DST] == key.src
                    && w[RW_SRC] == key.dst
                    && w[RW_PORTS].rotate_left(16) == ports
                    && w[VPCS] & 0xffff == vpc
            }
        };
        same && self.proto() == key.proto && self.live()
    }

    /// The whole flow (last seen and generation only if read with
    /// [`FlowTable::read_all`]).
    pub fn flow(&self) -> FlowInit {
        let [_, _, reply_state, state] = self.0[STATE].to_be_bytes();
        FlowInit {
            key: self.key(),
            rewrite: self.rewrite(),
            out_vpc: self.out_vpc(),
            backend_mac: self.backend_mac(),
            client_mac: self.client_mac(),
            state,
            reply_state,
            generation: [self.0[GENERATION[0]], self.0[GENERATION[1]]],
            last_seen: [self.0[LAST[0]], self.0[LAST[1]]],
        }
    }
}

#[inline]
#[allow(clippy::cast_possible_truncation)]
fn high(w: u32) -> u16 {
    (w >> 16) as u16
}

#[inline]
#[allow(clippy::cast_possible_truncation)]
fn low(w: u32) -> u16 {
    w as u16
}

/// One direction of a flow as a lookup found it: the record's words, and its address for
/// the hot fields.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    /// The record.
    pub slot: u32,
    /// Which direction the looked-up key is.
    pub dir: Direction,
    /// The record as read.
    pub words: Words,
}

/// One record's words: the handle a lookup keeps for the hot fields.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a>(&'a [AtomicU32; RECORD_WORDS]);

impl<'a> Record<'a> {
    #[inline(always)]
    fn word(&self, i: usize) -> &'a AtomicU32 {
        &self.0[i]
    }

    /// Take the record's sequence lock; returns the even value it had.
    fn lock(&self) -> u32 {
        let seq = self.word(SEQ);
        loop {
            let s = seq.load(Relaxed);
            if s & 1 == 0
                && seq
                    .compare_exchange_weak(s, s + 1, Acquire, Relaxed)
                    .is_ok()
            {
                fence(Release);
                return s;
            }
            spin_loop();
        }
    }

    fn unlock(&self, s: u32) {
        self.word(SEQ).store(s.wrapping_add(2), Release);
    }

    /// Replace the backend's (`Original`) or the client's (`Reply`) MAC of a live record
    /// of incarnation `inc`; nothing if the record went away meanwhile.
    pub fn set_mac(&self, inc: u8, dir: Direction, mac: MacAddr) {
        let s = self.lock();
        if self.word(STATE).load(Relaxed) >> 24 == u32::from(inc) {
            let (hi, lo) = mac_words(mac);
            let macs = self.word(MACS);
            let cur = macs.load(Relaxed);
            match dir {
                Direction::Original => {
                    self.word(BMAC_HI).store(hi, Relaxed);
                    macs.store((u32::from(lo) << 16) | (cur & 0xffff), Relaxed);
                }
                Direction::Reply => {
                    macs.store((cur & 0xffff_0000) | (hi >> 16), Relaxed);
                    let lo32 = ((hi & 0xffff) << 16) | u32::from(lo);
                    self.word(CMAC_LO).store(lo32, Relaxed);
                }
            }
        }
        self.unlock(s);
    }

    /// The state byte of `dir` in the live record of incarnation `inc`.
    #[inline]
    pub fn state(&self, dir: Direction) -> u8 {
        let w = self.word(STATE).load(Relaxed);
        let shift = if dir == Direction::Original { 0 } else { 8 };
        (w >> shift).to_le_bytes()[0]
    }

    /// Apply `f` to the state byte of `dir` atomically, if the record is still incarnation
    /// `inc`; returns the new value (`None`: the flow went away).
    pub fn update_state(&self, inc: u8, dir: Direction, f: impl Fn(u8) -> u8) -> Option<u8> {
        let shift = if dir == Direction::Original { 0 } else { 8 };
        let word = self.word(STATE);
        let mut cur = word.load(Relaxed);
        loop {
            if cur >> 24 != u32::from(inc) {
                return None;
            }
            let old = (cur >> shift).to_le_bytes()[0];
            let next = f(old);
            if next == old {
                return Some(old);
            }
            let new = (cur & !(0xff << shift)) | (u32::from(next) << shift);
            match word.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
                Ok(_) => return Some(next),
                Err(seen) => cur = seen,
            }
        }
    }

    /// The last-seen time of `dir`.
    #[inline]
    pub fn last_seen(&self, dir: Direction) -> &'a AtomicU32 {
        self.word(LAST[dir as usize])
    }

    /// The generation stamp of `dir` in a record.
    #[inline]
    pub fn generation(&self, dir: Direction) -> &'a AtomicU32 {
        self.word(GENERATION[dir as usize])
    }
}

/// The table: records, index, free list.
pub struct FlowTable {
    records: Box<[AtomicU32]>,
    /// Word offset of record 0 (aligns it to 64 bytes).
    rbase: usize,
    capacity: usize,
    index: Box<[AtomicU64]>,
    /// Word offset of bucket 0 (aligns it to 64 bytes).
    ibase: usize,
    mask: usize,
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
            .field("buckets", &(self.mask + 1))
            .finish_non_exhaustive()
    }
}

/// A zeroed slice of `n` atomics plus room to align the first to 64 bytes, and the offset
/// (in elements) of the first aligned one.
fn zeroed<T: FromZeros>(n: usize) -> (Box<[T]>, usize) {
    let per_line = 64 / size_of::<T>();
    let b = <[T]>::new_box_zeroed_with_elems(n + per_line)
        .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<T>()));
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

#[inline]
fn mac_words(m: MacAddr) -> (u32, u16) {
    let b = m.0;
    (
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

impl FlowTable {
    /// A table for `capacity` flows (at most [`MAX_RECORDS`]), keyed with `hasher`.
    ///
    /// # Panics
    /// If `capacity` is above [`MAX_RECORDS`] (the config refuses it first).
    pub fn new(capacity: usize, hasher: RandomState) -> Self {
        assert!(capacity <= MAX_RECORDS, "conntrack capacity {capacity}");
        let buckets = (2 * capacity)
            .div_ceil(MEAN_LOAD)
            .next_power_of_two()
            .max(2);
        let (records, rbase) = zeroed::<AtomicU32>(capacity * RECORD_WORDS);
        let (index, ibase) = zeroed::<AtomicU64>(buckets * BUCKET_WORDS);
        Self {
            records,
            rbase,
            capacity,
            index,
            ibase,
            mask: buckets - 1,
            free: AtomicU64::new(0),
            fresh: AtomicU32::new(0),
            hasher,
        }
    }

    /// Bytes this table holds (records, index, alignment), fixed at creation.
    pub fn footprint(&self) -> usize {
        self.records.len() * 4 + self.index.len() * 8
    }

    /// The key's hash.
    #[inline]
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

    #[inline]
    fn rec(&self, slot: u32, word: usize) -> &AtomicU32 {
        &self.record(slot)[word]
    }

    /// The handle on record `slot`.
    #[inline(always)]
    pub fn at(&self, slot: u32) -> Record<'_> {
        Record(self.record(slot))
    }

    #[inline(always)]
    fn bucket(&self, b: usize) -> &[AtomicU64; BUCKET_WORDS] {
        let at = self.ibase + b * BUCKET_WORDS;
        self.index[at..at + BUCKET_WORDS]
            .try_into()
            .expect("a bucket is BUCKET_WORDS long")
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        #[allow(clippy::cast_possible_truncation)]
        let low = h as usize;
        low & self.mask
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

    /// Read record `slot` consistently (live or not); `None` if a writer kept it busy. The
    /// hot words (last seen, generation), which change without the sequence lock, read as
    /// zero: see [`FlowTable::read_all`].
    #[inline(always)]
    pub fn read(&self, slot: u32) -> Option<Words> {
        let r = self.record(slot);
        for _ in 0..READ_RETRIES {
            let s1 = r[SEQ].load(Acquire);
            if s1 & 1 == 1 {
                spin_loop();
                continue;
            }
            let words: [u32; RECORD_WORDS] =
                core::array::from_fn(|i| if i < HOT { r[i].load(Relaxed) } else { 0 });
            fence(Acquire);
            if r[SEQ].load(Relaxed) == s1 {
                return Some(Words(words));
            }
        }
        None
    }

    /// [`FlowTable::read`] with the hot words too. Off the fast path.
    pub fn read_all(&self, slot: u32) -> Option<Words> {
        let r = self.record(slot);
        self.read(slot).map(|Words(mut w)| {
            for (i, word) in w.iter_mut().enumerate().skip(HOT) {
                *word = r[i].load(Relaxed);
            }
            Words(w)
        })
    }

    /// Write a whole record (live, next incarnation). The record must be one this caller
    /// took with [`FlowTable::alloc`] and has not published yet.
    pub fn write(&self, slot: u32, f: &FlowInit) {
        let rec = self.at(slot);
        let s = rec.lock();
        let old = rec.word(STATE).load(Relaxed);
        let inc = ((old >> 25).wrapping_add(1) & 0x7f) << 25;
        let st = |i, v| rec.word(i).store(v, Relaxed);
        let k = &f.key;
        st(
            STATE,
            inc | LIVE
                | (u32::from(k.proto) << 16)
                | (u32::from(f.reply_state) << 8)
                | u32::from(f.state),
        );
        st(KEY_SRC, k.src);
        st(KEY_DST, k.dst);
        st(KEY_PORTS, (u32::from(k.sport) << 16) | u32::from(k.dport));
        st(VPCS, (u32::from(k.vpc.0) << 16) | u32::from(f.out_vpc.0));
        let r = &f.rewrite;
        st(RW_SRC, r.src);
        st(RW_DST, r.dst);
        st(RW_PORTS, (u32::from(r.sport) << 16) | u32::from(r.dport));
        let (bhi, blo) = mac_words(f.backend_mac);
        let c = f.client_mac.0;
        st(BMAC_HI, bhi);
        st(
            MACS,
            (u32::from(blo) << 16) | u32::from(u16::from_be_bytes([c[0], c[1]])),
        );
        st(CMAC_LO, u32::from_be_bytes([c[2], c[3], c[4], c[5]]));
        for d in 0..2 {
            st(LAST[d], f.last_seen[d]);
            st(GENERATION[d], f.generation[d]);
        }
        rec.unlock(s);
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
        for _ in 0..=self.mask {
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
            b = (b + 1) & self.mask;
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
        for _ in 0..=self.mask {
            let bucket = self.bucket(b);
            for way in &bucket[1..] {
                if way.load(Relaxed) == 0 && way.compare_exchange(0, e, Release, Relaxed).is_ok() {
                    return Ok(());
                }
            }
            bucket[0].fetch_add(2, Release);
            b = (b + 1) & self.mask;
        }
        // Undo the counts: the walk went round the whole table.
        for i in 0..=self.mask {
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
        for _ in 0..=self.mask {
            let bucket = self.bucket(b);
            for way in &bucket[1..] {
                if way.load(Relaxed) == want
                    && way.compare_exchange(want, 0, Release, Relaxed).is_ok()
                {
                    let mut p = home;
                    while p != b {
                        self.bucket(p)[0].fetch_sub(2, Release);
                        p = (p + 1) & self.mask;
                    }
                    return true;
                }
            }
            if bucket[0].load(Acquire) >> 1 == 0 {
                return false;
            }
            b = (b + 1) & self.mask;
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
            let next = self.rec(top - 1, LINK).load(Relaxed);
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

    /// Kill record `slot` if it is still incarnation `inc` and live; returns whether this
    /// call did (exactly one of several racing removers does).
    pub fn kill(&self, slot: u32, inc: u8) -> bool {
        let rec = self.at(slot);
        let s = rec.lock();
        let state = rec.word(STATE);
        let w = state.load(Relaxed);
        let mine = w >> 24 == u32::from(inc) && w & LIVE != 0;
        if mine {
            state.store(w & !LIVE, Relaxed);
        }
        rec.unlock(s);
        mine
    }

    /// Kill and give back a record this caller took with [`FlowTable::alloc`] and whose
    /// index entries are gone (or were never made).
    pub fn kill_and_release(&self, slot: u32) {
        let rec = self.at(slot);
        let s = rec.lock();
        let state = rec.word(STATE);
        state.store(state.load(Relaxed) & !LIVE, Relaxed);
        rec.unlock(s);
        self.release(slot);
    }

    /// Give back a record already killed with [`FlowTable::kill`].
    pub fn release(&self, slot: u32) {
        let mut head = self.free.load(Relaxed);
        loop {
            #[allow(clippy::cast_possible_truncation)]
            self.rec(slot, LINK).store(head as u32, Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(slot + 1);
            match self.free.compare_exchange_weak(head, new, Release, Relaxed) {
                Ok(_) => return,
                Err(seen) => head = seen,
            }
        }
    }

    /// Every live record (a copy, each consistent on its own). Off the fast path.
    pub fn live(&self) -> impl Iterator<Item = FlowInit> + '_ {
        let high = self.fresh.load(Acquire);
        (0..high).filter_map(|slot| self.read_all(slot).filter(Words::live).map(|w| w.flow()))
    }

    /// Index entries in use (both directions of every flow). Off the fast path.
    pub fn entries(&self) -> usize {
        (0..=self.mask)
            .map(|b| {
                self.bucket(b)[1..]
                    .iter()
                    .filter(|e| e.load(Relaxed) != 0)
                    .count()
            })
            .sum()
    }
}
