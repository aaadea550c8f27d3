//! A TPACKET_V2 receive ring whose frames are processed where the kernel wrote them: one
//! frame per slot, each slot large enough for a 64 KiB super-frame, and a frame handed to
//! the kernel again only after the batch that held it was sent. Against `recvmmsg` it
//! saves the system call per batch and nothing else: the kernel still copies each frame
//! once (into the slot instead of into the worker's buffer). Against the TPACKET_V3 ring
//! (`ring.rs`) it has no retire timer (a lone frame is ready at once) and no copy out of
//! the ring: the pipeline rewrites the frame in its slot and `sendmmsg` (or the transmit
//! ring) takes it from there.
//!
//! Layout (`include/uapi/linux/if_packet.h`, `tpacket_rcv` in `net/packet/af_packet.c`):
//! frames of `tp_frame_size` bytes, `frames_per_block` to a block, blocks mapped one after
//! the other. A frame starts with a `tpacket2_hdr`: `tp_status` (0), `tp_len` (4),
//! `tp_snaplen` (8), `tp_mac` (12), `tp_vlan_tci` (24); with `PACKET_VNET_HDR` the frame's
//! `virtio_net_hdr` is the ten bytes before `tp_mac`. The kernel writes a frame only when
//! its status is `TP_STATUS_KERNEL` and hands it over with `TP_STATUS_USER`; a frame
//! longer than its slot arrives cut (`tp_snaplen < tp_len`). Frames are used in order, so
//! the ring keeps the next frame to read and how many frames before it are still held.
//!
//! `poll` reports the ring readable while the frame before the kernel's next one is not
//! the kernel's: held frames must go back before the worker sleeps, which
//! [`V2Ring::release`] at the start of every receive does.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::packet::{
    PACKET_RX_RING, PACKET_VERSION, SOL_PACKET, TP_STATUS_KERNEL, TP_STATUS_USER,
    TP_STATUS_VLAN_VALID, TPACKET_V2, TpacketReq,
};
use super::sys::{map_ring, setsockopt, unmap_ring};
use crate::wire::offload::{VNET_HDR_LEN, VnetHdr};

/// `struct tpacket2_hdr` offsets.
const PKT_LEN: usize = 4;
const PKT_SNAPLEN: usize = 8;
const PKT_MAC: usize = 12;
const PKT_VLAN_TCI: usize = 24;
/// Where the kernel puts a frame's Ethernet header in its slot, at most: the header and a
/// `sockaddr_ll` (52 bytes), room for a 16-byte link header, aligned, and the vnet
/// header (`netoff` in `tpacket_rcv`).
const HEADROOM: usize = 128;
/// Bytes per block: 1 MiB, 15 slots of a 64 KiB super-frame.
const BLOCK_BYTES: usize = 1 << 20;

/// The ring's mapping; every slot lent a frame holds it (`super::Slot::lend`), and frames
/// go back to the kernel only when none does.
#[derive(Debug)]
struct Mapping {
    map: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; who may touch which frame is decided by the
// frames' status words (the kernel's side) and by `V2Ring` lending each frame to one slot.
unsafe impl Send for Mapping {}
// SAFETY: as above; `Mapping` itself is never read or written through, only unmapped.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `V2Ring::setup`, unmapped once, when nothing (no
        // ring, no batch) refers into it any more.
        unsafe { unmap_ring(self.map.as_ptr(), self.len) };
    }
}

/// One frame handed over by the kernel, still in its slot.
#[derive(Debug)]
pub struct V2Frame {
    /// Its Ethernet header.
    pub data: NonNull<u8>,
    /// Bytes captured.
    pub len: usize,
    /// Bytes from `data` to the end of the slot: what the frame may grow to.
    pub room: usize,
    /// Its offload metadata.
    pub vnet: VnetHdr,
    /// The frame was longer than its slot.
    pub truncated: bool,
    /// The VLAN id of an 802.1Q tag the kernel stripped, if any.
    pub vlan: Option<u16>,
}

/// A mapped TPACKET_V2 receive ring.
#[derive(Debug)]
pub struct V2Ring {
    mapping: Arc<Mapping>,
    frame_size: usize,
    per_block: usize,
    frames: usize,
    /// The next frame to read.
    head: usize,
    /// Frames before `head` read and not yet given back.
    held: usize,
}

/// The slot size for frames of up to `max_frame` bytes.
fn frame_size(max_frame: usize) -> usize {
    (HEADROOM + max_frame).next_multiple_of(16)
}

impl V2Ring {
    /// Switch `fd` (a packet socket with `PACKET_VNET_HDR` set, not yet bound) to
    /// TPACKET_V2 and map a receive ring of at least `frames` slots for frames of up to
    /// `max_frame` bytes.
    ///
    /// # Errors
    /// The kernel refused the version, the ring or the mapping.
    pub fn setup(fd: &OwnedFd, frames: usize, max_frame: usize) -> io::Result<Self> {
        let frame_size = frame_size(max_frame);
        let per_block = BLOCK_BYTES / frame_size;
        if per_block == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frames too large for a receive ring block",
            ));
        }
        let blocks = frames.max(1).div_ceil(per_block);
        let u32_of = |n: usize| {
            u32::try_from(n)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ring too large"))
        };
        setsockopt(fd, SOL_PACKET, PACKET_VERSION, &TPACKET_V2)?;
        let req = TpacketReq {
            tp_block_size: u32_of(BLOCK_BYTES)?,
            tp_block_nr: u32_of(blocks)?,
            tp_frame_size: u32_of(frame_size)?,
            tp_frame_nr: u32_of(blocks * per_block)?,
        };
        setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req)?;
        let len = BLOCK_BYTES * blocks;
        let map = NonNull::new(map_ring(fd, len, 0)?)
            .ok_or_else(|| io::Error::other("ring mapped at address zero"))?;
        Ok(Self {
            mapping: Arc::new(Mapping { map, len }),
            frame_size,
            per_block,
            frames: blocks * per_block,
            head: 0,
            held: 0,
        })
    }

    /// Where frame `i` starts in the mapping.
    fn frame_base(&self, i: usize) -> usize {
        (i / self.per_block) * BLOCK_BYTES + (i % self.per_block) * self.frame_size
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: frame `i < frames` starts inside the mapping at a 16-byte aligned
        // offset (blocks are page aligned, frame sizes a multiple of 16), and the kernel
        // only ever accesses its status as a 32-bit word.
        unsafe {
            &*self
                .mapping
                .map
                .as_ptr()
                .add(self.frame_base(i))
                .cast::<AtomicU32>()
        }
    }

    fn read_at<T: Copy>(&self, at: usize) -> T {
        debug_assert!(at + size_of::<T>() <= self.mapping.len);
        // SAFETY: `at` is a header field of a frame the kernel handed over (callers add a
        // field offset under 32 to a frame's base); unaligned read.
        unsafe { core::ptr::read_unaligned(self.mapping.map.as_ptr().add(at).cast::<T>()) }
    }

    /// What keeps the mapping alive while frames are lent.
    pub fn owner(&self) -> Arc<dyn core::any::Any + Send + Sync> {
        Arc::clone(&self.mapping) as Arc<dyn core::any::Any + Send + Sync>
    }

    /// True if a frame is waiting, without a system call.
    pub fn ready(&self) -> bool {
        self.held < self.frames
            && self.status(self.head).load(Ordering::Acquire) & TP_STATUS_USER != 0
    }

    /// Frames read and not yet given back.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Call `f` with up to `max` waiting frames, in order; returns how many. Each (and any
    /// frame skipped as malformed) stays
    /// ours (the kernel does not write its slot) until [`V2Ring::release`].
    pub fn read(&mut self, max: usize, mut f: impl FnMut(V2Frame)) -> usize {
        let mut n = 0;
        while n < max && self.ready() {
            let base = self.frame_base(self.head);
            let status = self.status(self.head).load(Ordering::Acquire);
            let len = self.read_at::<u32>(base + PKT_LEN) as usize;
            let snaplen = self.read_at::<u32>(base + PKT_SNAPLEN) as usize;
            let mac = usize::from(self.read_at::<u16>(base + PKT_MAC));
            let vlan = (status & TP_STATUS_VLAN_VALID != 0)
                .then(|| self.read_at::<u16>(base + PKT_VLAN_TCI) & 0x0fff);
            self.held += 1;
            self.head = (self.head + 1) % self.frames;
            // A frame whose offsets do not fit its slot is not the kernel's layout: skip
            // it (it goes back with the others).
            if mac < 32 + VNET_HDR_LEN || mac + snaplen > self.frame_size {
                continue;
            }
            let mut hdr = [0u8; VNET_HDR_LEN];
            // SAFETY: `base + mac - VNET_HDR_LEN .. base + frame_size` lies within this
            // frame's slot (checked above), which the kernel handed over and does not
            // write until it is released.
            let data = unsafe {
                let at = self.mapping.map.as_ptr().add(base + mac);
                core::ptr::copy_nonoverlapping(
                    at.sub(VNET_HDR_LEN),
                    hdr.as_mut_ptr(),
                    VNET_HDR_LEN,
                );
                NonNull::new_unchecked(at)
            };
            f(V2Frame {
                data,
                len: snaplen,
                room: self.frame_size - mac,
                vnet: VnetHdr::from_bytes(&hdr),
                truncated: snaplen < len,
                vlan,
            });
            n += 1;
        }
        n
    }

    /// Give every held frame back to the kernel, unless a slot still holds one (holds
    /// [`V2Ring::owner`]): then they stay held, and the ring fills rather than lets the
    /// kernel write a frame a slot can still reach.
    pub fn release(&mut self) {
        if Arc::strong_count(&self.mapping) > 1 {
            return;
        }
        // Whatever the last slot to let go did to the frames happened before this (it
        // dropped its reference with release ordering).
        std::sync::atomic::fence(Ordering::Acquire);
        let mut i = (self.head + self.frames - self.held) % self.frames;
        for _ in 0..self.held {
            self.status(i).store(TP_STATUS_KERNEL, Ordering::Release);
            i = (i + 1) % self.frames;
        }
        self.held = 0;
    }

    /// Slots in the ring.
    pub fn frames(&self) -> usize {
        self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_holds_the_largest_frame_after_the_kernels_headers() {
        let size = frame_size(crate::config::MAX_FRAME_BYTES);
        assert_eq!(size % 16, 0);
        // tpacket_rcv: netoff = TPACKET_ALIGN(52 + 16) + 10 = 90 at most for an untagged
        // frame; the frame starts 14 bytes before.
        assert!(size >= 90 - 14 + crate::config::MAX_FRAME_BYTES);
        assert_eq!(BLOCK_BYTES / size, 15);
    }
}
