//! A TPACKET_V3 receive ring on an AF_PACKET socket: the kernel writes frames into blocks
//! of a shared mapping and hands over a whole block at once (full, or retired by a timer),
//! so a busy socket costs no system call per batch and one wake-up per block.
//!
//! Layout (`include/uapi/linux/if_packet.h`): each block starts with a
//! `tpacket_block_desc` whose `block_status` says who owns it (`TP_STATUS_USER`: us) and
//! `num_pkts` / `offset_to_first_pkt` where its frames are; each frame starts with a
//! `tpacket3_hdr` (`tp_next_offset`, `tp_snaplen`, `tp_len`, `tp_mac`), and with
//! `PACKET_VNET_HDR` its `virtio_net_hdr` sits in the ten bytes before `tp_mac`. A block is
//! given back by writing `TP_STATUS_KERNEL` to its status, after its last frame was read.
//!
//! The trade-off, measured in BENCHMARKS.md: a block that does not fill is handed over
//! only when its retire timer fires, at the kernel's tick (4 ms at HZ=250), so a lone
//! request waits for the timer. That is why this ring is an option, not the default.
//!
//! All header fields are read with unaligned loads from the mapping; the block status is
//! read with acquire and written with release ordering, which is the whole protocol.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::packet::{
    PACKET_RX_RING, PACKET_VERSION, SOL_PACKET, TP_STATUS_KERNEL, TP_STATUS_USER,
    TP_STATUS_VLAN_VALID,
};
use super::sys::{map_ring, setsockopt, unmap_ring};
use crate::wire::offload::{VNET_HDR_LEN, VnetHdr};

const TPACKET_V3: libc::c_int = 2;

/// `struct tpacket_block_desc` offsets: `hdr.bh1.block_status`, `num_pkts`,
/// `offset_to_first_pkt`.
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST: usize = 16;
/// `struct tpacket3_hdr` offsets.
const PKT_NEXT: usize = 0;
const PKT_SNAPLEN: usize = 12;
const PKT_LEN: usize = 16;
const PKT_STATUS: usize = 20;
const PKT_MAC: usize = 24;
/// `tp_vlan_tci` of `tpacket_hdr_variant1`.
const PKT_VLAN_TCI: usize = 32;

/// `struct tpacket_req3`.
#[repr(C)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

/// The ring's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingGeometry {
    /// Bytes per block; a frame (up to 64 KiB plus headers) must fit in one. 256 KiB.
    pub block_size: u32,
    /// Blocks in the ring. 64 (16 MiB per socket).
    pub block_nr: u32,
    /// Milliseconds before a block that is not full is handed over anyway. 1 (rounded up
    /// to the kernel's tick).
    pub retire_ms: u32,
}

impl Default for RingGeometry {
    fn default() -> Self {
        Self {
            block_size: 256 << 10,
            block_nr: 64,
            retire_ms: 1,
        }
    }
}

/// One frame read off the ring.
#[derive(Debug)]
pub struct RingFrame<'a> {
    /// The frame from its Ethernet header, as much as was captured.
    pub bytes: &'a [u8],
    /// Its offload metadata.
    pub vnet: VnetHdr,
    /// The frame was longer than what the block could hold.
    pub truncated: bool,
    /// The VLAN id of an 802.1Q tag the kernel stripped, if any.
    pub vlan: Option<u16>,
}

/// A mapped TPACKET_V3 receive ring.
#[derive(Debug)]
pub struct RxRing {
    map: *mut u8,
    len: usize,
    geometry: RingGeometry,
    /// The block being read.
    block: usize,
    /// Frames of the current block already read, and where the next one starts.
    read: u32,
    offset: usize,
}

// SAFETY: the mapping is owned by this value alone (no other handle to it exists in the
// process), and the kernel's side is synchronised through the block status protocol.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Switch `fd` (a packet socket with `PACKET_VNET_HDR` already set, not yet bound) to
    /// TPACKET_V3 and map a receive ring of `geometry`.
    ///
    /// # Errors
    /// The kernel refused the version, the ring or the mapping.
    pub fn setup(fd: &OwnedFd, geometry: RingGeometry) -> io::Result<Self> {
        setsockopt(fd, SOL_PACKET, PACKET_VERSION, &TPACKET_V3)?;
        // Frame size matters to V3 only as a sanity check: frames are packed in blocks.
        let frame_size = 2048;
        let req = TpacketReq3 {
            tp_block_size: geometry.block_size,
            tp_block_nr: geometry.block_nr,
            tp_frame_size: frame_size,
            tp_frame_nr: geometry.block_size / frame_size * geometry.block_nr,
            tp_retire_blk_tov: geometry.retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req)?;
        let len = usize::try_from(u64::from(geometry.block_size) * u64::from(geometry.block_nr))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ring too large"))?;
        let map = map_ring(fd, len, 0)?;
        Ok(Self {
            map,
            len,
            geometry,
            block: 0,
            read: 0,
            offset: 0,
        })
    }

    fn block_base(&self) -> usize {
        self.block * self.geometry.block_size as usize
    }

    fn status(&self) -> &AtomicU32 {
        // SAFETY: the block descriptor lies inside the mapping (every block is at least a
        // page), its status word is 4-byte aligned (blocks are page aligned), and the
        // kernel only ever accesses it as a 32-bit word.
        unsafe {
            &*self
                .map
                .add(self.block_base() + BLOCK_STATUS)
                .cast::<AtomicU32>()
        }
    }

    fn u32_at(&self, at: usize) -> u32 {
        debug_assert!(at + 4 <= self.len);
        // SAFETY: `at + 4 <= len` (every offset comes from a block the kernel handed over,
        // and is checked against the block's bounds by the caller); unaligned read.
        unsafe { core::ptr::read_unaligned(self.map.add(at).cast::<u32>()) }
    }

    fn u16_at(&self, at: usize) -> u16 {
        debug_assert!(at + 2 <= self.len);
        // SAFETY: as in `u32_at`.
        unsafe { core::ptr::read_unaligned(self.map.add(at).cast::<u16>()) }
    }

    /// True if the current block is ours to read: frames are waiting, no system call made.
    pub fn ready(&self) -> bool {
        self.status().load(Ordering::Acquire) & TP_STATUS_USER != 0
    }

    /// Call `f` with up to `max` frames, in order; returns how many. A block is given back
    /// to the kernel as soon as its last frame was read.
    pub fn read(&mut self, max: usize, mut f: impl FnMut(RingFrame<'_>)) -> usize {
        let block_size = self.geometry.block_size as usize;
        let mut n = 0;
        while n < max && self.ready() {
            let base = self.block_base();
            let num = self.u32_at(base + BLOCK_NUM_PKTS);
            if self.read == 0 {
                self.offset = base + self.u32_at(base + BLOCK_FIRST) as usize;
            }
            while n < max && self.read < num {
                let pkt = self.offset;
                let end = base + block_size;
                if pkt + 48 > end {
                    self.read = num; // a corrupt block: give it back
                    break;
                }
                let snaplen = self.u32_at(pkt + PKT_SNAPLEN) as usize;
                let len = self.u32_at(pkt + PKT_LEN) as usize;
                let mac = usize::from(self.u16_at(pkt + PKT_MAC));
                let next = self.u32_at(pkt + PKT_NEXT) as usize;
                let vlan = (self.u32_at(pkt + PKT_STATUS) & TP_STATUS_VLAN_VALID != 0)
                    .then(|| self.u16_at(pkt + PKT_VLAN_TCI) & 0x0fff);
                let data = pkt + mac;
                if mac < VNET_HDR_LEN || data + snaplen > end {
                    self.read = num;
                    break;
                }
                let mut hdr = [0u8; VNET_HDR_LEN];
                // SAFETY: `data - VNET_HDR_LEN .. data + snaplen` lies within this block,
                // checked above; the kernel does not write a block it handed over.
                let bytes = unsafe {
                    core::ptr::copy_nonoverlapping(
                        self.map.add(data - VNET_HDR_LEN),
                        hdr.as_mut_ptr(),
                        VNET_HDR_LEN,
                    );
                    core::slice::from_raw_parts(self.map.add(data), snaplen)
                };
                f(RingFrame {
                    bytes,
                    vnet: VnetHdr::from_bytes(&hdr),
                    truncated: snaplen < len,
                    vlan,
                });
                n += 1;
                self.read += 1;
                self.offset = pkt + next;
            }
            if self.read >= num {
                self.status().store(TP_STATUS_KERNEL, Ordering::Release);
                self.block = (self.block + 1) % self.geometry.block_nr as usize;
                self.read = 0;
            }
        }
        n
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: `map` and `len` are the mapping made in `setup`, unmapped once here.
        unsafe { unmap_ring(self.map, self.len) };
    }
}
