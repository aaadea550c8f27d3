//! One flow's record: 64 bytes (sixteen `u32` atomics, one cache line) holding both
//! directions, read under its sequence lock, with the hot fields (state, last seen,
//! generation, meter word) written in place.
//!
//! ```text
//!  word  0 seq (odd while a writer is in)     8 rewrite ports
//!        1 incarnation 7 | live 1 | protocol   9 backend MAC 0..4
//!          | reply state | original state     10 backend MAC 4..6 | client MAC 0..2
//!      2-4 original key: src, dst, ports      11 client MAC 2..6
//!        5 key VPC | out VPC              12-13 last seen, original and reply
//!      6-7 rewrite: src, dst                 14 generation (the flow's, both directions)
//!                                             15 meter word (slot, flow log bit)
//! ```

use core::sync::atomic::{AtomicU32, Ordering, fence};
use std::hint::spin_loop;

use super::{Direction, Rewrite};
use crate::flow::{Attachment, FlowKey};
use crate::wire::ethernet::MacAddr;

use Ordering::{Acquire, Relaxed, Release};

/// Words (u32) per record: 64 bytes, one cache line.
pub(super) const RECORD_WORDS: usize = 16;
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
/// The hot words start here: last seen, then generation and the meter word.
const HOT: usize = 12;
/// The generation the flow was last checked against, whichever direction checked it.
const GENERATION: usize = 14;
/// The meter word: the meter slot ([`crate::meter`]) and [`crate::conntrack::flowlog::LOGGED`].
const METER: usize = 15;
/// A free record's link to the next free one (slot + 1, 0 for none); reuses a key word.
const LINK: usize = KEY_SRC;

const LIVE: u32 = 1 << 24;
/// How many times a reader retries a record a writer keeps busy before calling it a miss.
const READ_RETRIES: usize = 64;

/// Everything a new flow's record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInit {
    /// The original (client to endpoint) key.
    pub key: FlowKey,
    /// The rewrite of original-direction packets (SNAT address and port to the backend).
    pub rewrite: Rewrite,
    /// The attachment original-direction packets leave on (the backend's).
    pub out_vpc: Attachment,
    /// The backend's MAC.
    pub backend_mac: MacAddr,
    /// The client's MAC (the next hop of replies).
    pub client_mac: MacAddr,
    /// The original direction's state byte.
    pub state: u8,
    /// The reply direction's state byte.
    pub reply_state: u8,
    /// The generation stamp (the flow's: both directions share it).
    pub generation: u32,
    /// Last-seen seconds, original then reply.
    pub last_seen: [u32; 2],
    /// The client's initial sequence number (TCP flows with [`super::state::PROXY`] or
    /// [`super::state::TOA`]; zero otherwise). Kept beside the record, not in it.
    pub client_isn: u32,
    /// The flow's meter word ([`crate::meter`]'s slot, 0: none; and
    /// [`crate::conntrack::flowlog::LOGGED`]). A hot word of the record.
    pub meter: u32,
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
    pub(super) fn live(&self) -> bool {
        self.0[STATE] & LIVE != 0
    }

    /// The reply direction's state byte (its `SEEN` bit and the flow's client identity bits).
    #[inline]
    pub fn reply_state(&self) -> u8 {
        self.0[STATE].to_be_bytes()[2]
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
            vpc: Attachment(high(w[VPCS])),
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
    pub fn out_vpc(&self) -> Attachment {
        Attachment(low(self.0[VPCS]))
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
    pub(super) fn matches(&self, key: &FlowKey, dir: Direction) -> bool {
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
    /// [`Record::read_all`]).
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
            generation: self.0[GENERATION],
            last_seen: [self.0[LAST[0]], self.0[LAST[1]]],
            client_isn: 0,
            meter: self.0[METER],
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

/// One direction of a flow as a lookup found it: the record's words and where it is.
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
    /// The handle on a record's words.
    #[inline(always)]
    pub(super) fn new(words: &'a [AtomicU32; RECORD_WORDS]) -> Self {
        Self(words)
    }

    /// Read the record consistently (live or not); `None` if a writer kept it busy. The
    /// hot words (last seen, generation, meter word), which change without the sequence
    /// lock, read as zero: see [`Record::read_all`].
    #[inline(always)]
    pub fn read(&self) -> Option<Words> {
        let r = self.0;
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

    /// [`Record::read`] with the hot words too. Off the fast path.
    pub fn read_all(&self) -> Option<Words> {
        let r = self.0;
        self.read().map(|Words(mut w)| {
            for (i, word) in w.iter_mut().enumerate().skip(HOT) {
                *word = r[i].load(Relaxed);
            }
            Words(w)
        })
    }

    /// Write a whole record (live, next incarnation). The record must be one this caller
    /// took with `FlowTable::alloc` and has not published yet.
    pub fn write(&self, f: &FlowInit) {
        let rec = self;
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
        for (word, seen) in LAST.into_iter().zip(f.last_seen) {
            st(word, seen);
        }
        st(GENERATION, f.generation);
        st(METER, f.meter);
        rec.unlock(s);
    }

    /// Kill the record if it is still incarnation `inc` (any, for `None`) and live; returns
    /// its words as they were (read under the lock) if this call did: exactly one of
    /// several racing removers does.
    pub fn kill(&self, inc: Option<u8>) -> Option<Words> {
        let s = self.lock();
        let state = self.word(STATE);
        let w = state.load(Relaxed);
        let mine = inc.is_none_or(|inc| w >> 24 == u32::from(inc)) && w & LIVE != 0;
        let words = mine.then(|| Words(core::array::from_fn(|i| self.0[i].load(Relaxed))));
        if mine {
            state.store(w & !LIVE, Relaxed);
        }
        self.unlock(s);
        words
    }

    /// The free-list link word (meaningful only while the record is free).
    #[inline]
    pub(super) fn link(&self) -> &'a AtomicU32 {
        self.word(LINK)
    }

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

    /// The flow's generation stamp.
    #[inline]
    pub fn generation(&self) -> &'a AtomicU32 {
        self.word(GENERATION)
    }

    /// The flow's meter word.
    #[inline(always)]
    pub fn meter(&self) -> &'a AtomicU32 {
        self.word(METER)
    }

    /// The backend's MAC as the record holds it now (unlocked: a check before
    /// [`Record::set_mac`], which takes the lock).
    pub fn backend_mac_now(&self) -> MacAddr {
        let hi = self.word(BMAC_HI).load(Relaxed).to_be_bytes();
        let lo = high(self.word(MACS).load(Relaxed)).to_be_bytes();
        MacAddr([hi[0], hi[1], hi[2], hi[3], lo[0], lo[1]])
    }
}

#[inline]
fn mac_words(m: MacAddr) -> (u32, u16) {
    let b = m.0;
    (
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}
