//! A `PACKET_TX_RING` (TPACKET_V2) on a transmit socket: frames are written into slots of a
//! mapping shared with the kernel, and one `send` with no data hands every written slot
//! over at once (`tpacket_snd`), instead of a `sendmmsg` that copies each frame from the
//! caller's buffer.
//!
//! Layout (`include/uapi/linux/if_packet.h`, `net/packet/af_packet.c`): a slot starts with
//! a `tpacket2_hdr` (`tp_status` at 0, `tp_len` at 4); without `PACKET_TX_HAS_OFF` the
//! data starts `TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)` = 32 bytes in, and with
//! `PACKET_VNET_HDR` the data is the frame's `virtio_net_hdr` followed by the frame, and
//! `tp_len` counts both.
//!
//! The protocol is the slot's status: `TP_STATUS_AVAILABLE` (0) is ours to write; we write
//! the frame, then `TP_STATUS_SEND_REQUEST` with release ordering; the kernel takes it
//! (`TP_STATUS_SENDING`) and sets it available again from the skb's destructor
//! (`tpacket_destruct_skb`), when no skb refers to the slot's pages any more. The skb is
//! marked zero-copy (`skb_zcopy_set_nouarg`), so a path that hands it to another owner
//! first copies the pages (`skb_orphan_frags` in veth's `__dev_forward_skb`, then the
//! destructor runs): on a veth the slot is free once the copy is made, and on a real NIC
//! once the device has sent it. A slot is never rewritten before that (see the netns test
//! with a ring of 8 slots). `PACKET_LOSS` makes the kernel skip a frame it refuses (and
//! give its slot back) instead of stopping the ring at it.
//!
//! A full ring (the next slot not yet given back) is back-pressure: the frame is not
//! sent, the caller counts it, and the worker never waits.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::packet::{PACKET_VERSION, SOL_PACKET, TPACKET_V2, TpacketReq};
use super::sys::{cvt, map_ring, setsockopt, unmap_ring};
use crate::wire::offload::{VNET_HDR_LEN, VnetHdr};

const PACKET_TX_RING: libc::c_int = 13;
const PACKET_LOSS: libc::c_int = 14;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// Where a slot's data starts: `TPACKET_ALIGN(sizeof(struct tpacket2_hdr))`.
const DATA: usize = 32;
/// A slot: the header, the vnet header and the largest frame, in whole pages (17).
pub const SLOT_BYTES: usize = 69_632;

/// A mapped transmit ring.
#[derive(Debug)]
pub struct TxRing {
    map: *mut u8,
    len: usize,
    slots: usize,
    /// The next slot to write.
    next: usize,
    /// Slots written since the last kick that went through.
    pending: usize,
}

// SAFETY: the mapping is owned by this value alone; the kernel's side is synchronised
// through each slot's status word.
unsafe impl Send for TxRing {}

/// What one [`TxRing::push`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Written; it goes at the next kick.
    Queued,
    /// The ring is full (the next slot is still the kernel's): not sent.
    Full,
    /// Longer than a slot holds: not sent.
    TooLong,
}

impl TxRing {
    /// Switch `fd` (a packet socket with `PACKET_VNET_HDR`, not yet bound) to TPACKET_V2
    /// and map a transmit ring of `slots` slots of [`SLOT_BYTES`].
    ///
    /// # Errors
    /// The kernel refused the version, the ring or the mapping.
    pub fn setup(fd: &OwnedFd, slots: u32) -> io::Result<Self> {
        setsockopt(fd, SOL_PACKET, PACKET_VERSION, &TPACKET_V2)?;
        setsockopt(fd, SOL_PACKET, PACKET_LOSS, &1)?;
        let size = u32::try_from(SLOT_BYTES).unwrap_or(u32::MAX);
        let req = TpacketReq {
            tp_block_size: size,
            tp_block_nr: slots,
            tp_frame_size: size,
            tp_frame_nr: slots,
        };
        setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req)?;
        let len = SLOT_BYTES * slots as usize;
        let map = map_ring(fd, len, 0)?;
        Ok(Self {
            map,
            len,
            slots: slots as usize,
            next: 0,
            pending: 0,
        })
    }

    fn status(&self, slot: usize) -> &AtomicU32 {
        // SAFETY: a slot's first word lies inside the mapping (`slot < slots`), is 4-byte
        // aligned (slots are page aligned), and the kernel only accesses it as a 32-bit
        // word.
        unsafe { &*self.map.add(slot * SLOT_BYTES).cast::<AtomicU32>() }
    }

    /// Write `frame` (with its offload metadata) into the next slot, if it is free.
    pub fn push(&mut self, vnet: VnetHdr, frame: &[u8]) -> Pushed {
        if DATA + VNET_HDR_LEN + frame.len() > SLOT_BYTES {
            return Pushed::TooLong;
        }
        let slot = self.next;
        let status = self.status(slot).load(Ordering::Acquire);
        // A frame the kernel refused (with PACKET_LOSS it is skipped and its slot marked
        // so): the slot is free again.
        if status != TP_STATUS_AVAILABLE && status & TP_STATUS_WRONG_FORMAT == 0 {
            return Pushed::Full;
        }
        let base = slot * SLOT_BYTES;
        let hdr = vnet.to_bytes();
        let tp_len = u32::try_from(VNET_HDR_LEN + frame.len()).unwrap_or(u32::MAX);
        // SAFETY: `base + DATA + VNET_HDR_LEN + frame.len() <= base + SLOT_BYTES <= len`
        // (checked above); the slot is ours (status available): the kernel neither reads
        // nor writes it until we set the send request below.
        unsafe {
            core::ptr::write_unaligned(self.map.add(base + 4).cast::<u32>(), tp_len);
            core::ptr::copy_nonoverlapping(hdr.as_ptr(), self.map.add(base + DATA), VNET_HDR_LEN);
            core::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                self.map.add(base + DATA + VNET_HDR_LEN),
                frame.len(),
            );
        }
        self.status(slot)
            .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.next = (slot + 1) % self.slots;
        self.pending += 1;
        Pushed::Queued
    }

    /// Slots written and not yet handed over by a kick that went through.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Hand every written slot to the kernel: one `send` with no data, not waiting for
    /// them to go. Returns how many were pending.
    ///
    /// # Errors
    /// The kick failed. The slots not sent stay requested: the next kick sends them (a
    /// full device queue, `ENOBUFS`, is that); the caller decides about the others.
    pub fn kick(&mut self, fd: &OwnedFd) -> io::Result<usize> {
        let n = self.pending;
        if n == 0 {
            return Ok(0);
        }
        loop {
            // SAFETY: a send of no data: the kernel reads the ring, not a buffer of ours.
            let r = unsafe { libc::send(fd.as_raw_fd(), core::ptr::null(), 0, libc::MSG_DONTWAIT) };
            match cvt(i32::try_from(r).unwrap_or(-1)) {
                Ok(_) => {
                    self.pending = 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TxRing {
    fn drop(&mut self) {
        // SAFETY: `map` and `len` are the mapping made in `setup`, unmapped once here.
        unsafe { unmap_ring(self.map, self.len) };
    }
}
