//! Packet I/O backends behind one batch trait. Backends are the only modules that make
//! syscalls or use `unsafe`; tests and benches swap backends, never the core.

#[cfg(target_os = "linux")]
pub mod af_packet;
#[cfg(target_os = "linux")]
pub mod af_xdp;
#[cfg(target_os = "linux")]
mod bpf;
#[cfg(target_os = "linux")]
pub mod ingress_drop;
#[cfg(target_os = "linux")]
pub mod link;
pub mod mem;
#[cfg(target_os = "linux")]
pub mod memory;
#[cfg(target_os = "linux")]
mod mmsg;
#[cfg(target_os = "linux")]
mod packet;
#[cfg(target_os = "linux")]
pub mod punt;
#[cfg(target_os = "linux")]
pub mod ring;
pub mod spin;
#[cfg(target_os = "linux")]
mod sys;
#[cfg(target_os = "linux")]
pub mod tx_ring;
#[cfg(target_os = "linux")]
pub mod v2_ring;

use core::ptr::NonNull;
use core::time::Duration;
use std::sync::Arc;

use crate::flow::Attachment;
use crate::verdict::Verdict;
use crate::wire::offload::VnetHdr;

/// One frame of a batch: its bytes, the attachment it came in on, its offload metadata, and
/// what to do with it.
///
/// A slot's bytes are its own buffer, or memory a backend lent it for one batch (a frame
/// of a receive ring, processed where the kernel wrote it: [`Slot::lend`]).
#[derive(Debug)]
pub struct Slot {
    buf: Box<[u8]>,
    /// The lent frame, if any.
    lent: Option<Lent>,
    len: usize,
    /// The attachment the frame arrived on.
    pub ingress: Attachment,
    /// The frame's offload metadata (partial checksum, GSO), set by a backend that has it;
    /// [`VnetHdr::NONE`] otherwise. Transmitted with the frame when it is forwarded.
    pub vnet: VnetHdr,
    /// Set by the worker after processing.
    pub verdict: Verdict,
    /// Set by the backend: the frame was larger than the slot and arrived cut.
    pub truncated: bool,
    /// Set by the backend: what it learned of an 802.1Q tag the kernel stripped off.
    pub vlan: VlanTag,
}

/// A frame a backend lent a slot: its start, how many bytes it may grow to, and what keeps
/// its memory mapped (the backend hands the frame back only when no slot holds this).
#[derive(Clone)]
struct Lent {
    ptr: NonNull<u8>,
    cap: usize,
    _owner: Arc<dyn core::any::Any + Send + Sync>,
}

impl core::fmt::Debug for Lent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lent")
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

// SAFETY: lent memory is reached only through this slot (`Slot::lend`'s contract), so
// moving the slot to another thread moves the only access to it, as with the owned buffer.
#[allow(unsafe_code)]
unsafe impl Send for Slot {}

impl Clone for Slot {
    /// A copy with a buffer of its own (lent memory is never shared by two slots).
    fn clone(&self) -> Self {
        let mut buf = self.buf.clone();
        if self.lent.is_some() {
            let len = self.len.min(buf.len());
            buf[..len].copy_from_slice(&self.bytes()[..len]);
        }
        Self {
            buf,
            lent: None,
            len: self.len.min(self.buf.len()),
            ingress: self.ingress,
            vnet: self.vnet,
            verdict: self.verdict,
            truncated: self.truncated,
            vlan: self.vlan,
        }
    }
}

impl Slot {
    fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity].into_boxed_slice(),
            lent: None,
            len: 0,
            ingress: Attachment(0),
            vnet: VnetHdr::NONE,
            verdict: Verdict::Consumed,
            truncated: false,
            vlan: VlanTag::None,
        }
    }

    /// The whole buffer (the lent one, if any).
    fn buffer(&self) -> &[u8] {
        match &self.lent {
            // SAFETY: `lend`'s contract: `cap` bytes at `ptr`, readable and writable, reached
            // only through this slot while it is lent (and mapped while it holds the owner).
            #[allow(unsafe_code)]
            Some(l) => unsafe { core::slice::from_raw_parts(l.ptr.as_ptr(), l.cap) },
            None => &self.buf,
        }
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buffer()[..self.len]
    }

    /// The frame's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.buffer_mut()[..len]
    }

    /// The whole buffer (the lent one, if any), for a backend to receive into or the
    /// pipeline to grow a frame in; then call [`Slot::set_len`].
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        match &self.lent {
            // SAFETY: as in `buffer`; `&mut self` makes this the only access.
            #[allow(unsafe_code)]
            Some(l) => unsafe { core::slice::from_raw_parts_mut(l.ptr.as_ptr(), l.cap) },
            None => &mut self.buf,
        }
    }

    /// Set the frame length after receiving into [`Slot::buffer_mut`].
    ///
    /// # Panics
    /// If `len` exceeds the buffer.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.buffer().len(), "frame longer than its slot");
        self.len = len;
    }

    /// Use `cap` bytes at `ptr` as this slot's buffer, holding a frame of `len` bytes,
    /// until [`Batch::reclaim`]: a backend's frame processed and sent where the kernel
    /// wrote it, without a copy into the slot's own buffer.
    ///
    /// # Safety
    /// `ptr..ptr + cap` stays mapped while `owner` lives, and nothing but this slot reads or
    /// writes it (the kernel included) while the slot holds `owner`: the backend hands the
    /// memory back only when no slot holds it any more ([`Batch::reclaim`] or a drop lets
    /// go of it). No other slot is lent the same bytes.
    ///
    /// # Panics
    /// If `len` exceeds `cap`.
    #[allow(unsafe_code)]
    pub unsafe fn lend(
        &mut self,
        ptr: NonNull<u8>,
        cap: usize,
        len: usize,
        owner: Arc<dyn core::any::Any + Send + Sync>,
    ) {
        assert!(len <= cap, "frame longer than its lent buffer");
        self.lent = Some(Lent {
            ptr,
            cap,
            _owner: owner,
        });
        self.len = len;
    }

    /// What to transmit for this slot, if anything: `(attachment, offload metadata,
    /// bytes)`. A forwarded frame keeps the metadata it arrived with (its headers were
    /// rewritten in place; client identity may have grown them, see `dataplane::rewrite::identity`);
    /// a frame the dataplane emitted has none.
    pub fn output(&self) -> Option<(Attachment, VnetHdr, &[u8])> {
        match self.verdict {
            Verdict::Forward(vpc) => Some((vpc, self.vnet, self.bytes())),
            Verdict::Emit { vpc, len } => Some((vpc, VnetHdr::NONE, &self.buffer()[..len])),
            Verdict::Drop(_) | Verdict::Consumed => None,
        }
    }
}

/// How many times a forwarded frame's bytes are copied between arrival and departure: by
/// the kernel into memory the worker reads, by the worker, and by the kernel into the skb
/// it sends. (A transmit ring's frame on a veth is copied once more by the kernel's forward
/// path, `skb_orphan_frags`: the ring's pages are zero-copy fragments, which another
/// namespace may not keep; on a NIC they are sent from the ring.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copies {
    /// Copies before the pipeline sees the frame.
    pub receive: u8,
    /// Copies after it.
    pub transmit: u8,
    /// Of those, the ones the worker makes itself.
    pub by_daemon: u8,
}

impl Copies {
    /// Every copy.
    pub fn total(self) -> u8 {
        self.receive + self.transmit
    }
}

/// An 802.1Q tag the kernel took off a frame before a packet socket saw it (it reports the
/// tag beside the frame, in `PACKET_AUXDATA` or the ring's frame header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VlanTag {
    /// Untagged (or the backend cannot tell: the in-memory one).
    #[default]
    None,
    /// Tagged with this VLAN id.
    Tagged(u16),
    /// The frame's metadata arrived cut (`MSG_CTRUNC`): whether it was tagged is unknown.
    Unknown,
}

/// A fixed set of preallocated frame slots; `filled` of them hold received frames.
#[derive(Debug)]
pub struct Batch {
    slots: Vec<Slot>,
    filled: usize,
}

impl Batch {
    /// A batch of `size` slots of `frame_capacity` bytes each, allocated once.
    pub fn new(size: usize, frame_capacity: usize) -> Self {
        Self {
            slots: (0..size).map(|_| Slot::new(frame_capacity)).collect(),
            filled: 0,
        }
    }

    /// The frame capacity of a slot's own buffer (what a lent one is capped to).
    pub fn frame_capacity(&self) -> usize {
        self.slots.first().map_or(0, |s| s.buf.len())
    }

    /// Every slot goes back to its own buffer and lets go of what it was lent: the
    /// backend may hand it back (to the kernel).
    pub fn reclaim(&mut self) {
        for slot in &mut self.slots {
            if slot.lent.take().is_some() {
                slot.len = 0;
            }
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// All slots, for a backend to receive into; it then calls [`Batch::set_filled`].
    pub fn slots_mut(&mut self) -> &mut [Slot] {
        &mut self.slots
    }

    /// Mark the first `n` slots as holding frames.
    pub fn set_filled(&mut self, n: usize) {
        self.filled = n.min(self.slots.len());
    }

    /// The filled slots.
    pub fn filled(&self) -> &[Slot] {
        &self.slots[..self.filled]
    }

    /// The filled slots, writable.
    pub fn filled_mut(&mut self) -> &mut [Slot] {
        &mut self.slots[..self.filled]
    }
}

/// Why a backend failed. Any error stops the worker.
#[derive(Debug)]
pub enum BackendError {
    /// A system call failed.
    Io(std::io::Error),
    /// The backend was closed (its peer or its owner went away).
    Closed,
}

impl core::fmt::Display for BackendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "packet I/O failed: {e}"),
            Self::Closed => f.write_str("packet backend closed"),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Closed => None,
        }
    }
}

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// A source and sink of frames, in batches.
pub trait Backend: Send {
    /// Fill up to `batch.capacity()` slots (setting each slot's length and ingress) and call
    /// `batch.set_filled`. Blocks at most `timeout`; returns the number of frames.
    ///
    /// # Errors
    /// [`BackendError`] if the backend can no longer receive.
    fn recv(&mut self, batch: &mut Batch, timeout: Duration) -> Result<usize, BackendError>;

    /// Transmit every slot whose verdict has an output; returns how many frames could not
    /// be sent (a full queue, a frame over the egress MTU), which the worker counts.
    ///
    /// # Errors
    /// [`BackendError`] if the backend can no longer send.
    fn send(&mut self, batch: &Batch) -> Result<usize, BackendError>;

    /// What the backend counted since the last call. The worker asks about once a second.
    fn take_stats(&mut self) -> IoStats {
        IoStats::default()
    }
}

/// What a backend counts of its own: see [`Backend::take_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Frames the kernel dropped before the backend read them (a full receive queue or
    /// ring).
    pub queue_drops: u64,
    /// What its spins before sleeping found and cost.
    pub spin: spin::SpinStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn a_lent_slot_works_in_the_lent_memory_until_the_batch_is_reclaimed() {
        let mut ring = vec![7u8; 32];
        let ptr = NonNull::new(ring.as_mut_ptr()).unwrap();
        let owner: Arc<dyn core::any::Any + Send + Sync> = Arc::new(());
        let mut batch = Batch::new(2, 16);
        // SAFETY: `ring` outlives the lend and is touched only through the slot until the
        // reclaim below.
        unsafe { batch.slots_mut()[0].lend(ptr, 32, 4, Arc::clone(&owner)) };
        assert_eq!(Arc::strong_count(&owner), 2, "the slot holds the owner");
        batch.set_filled(1);
        let slot = &mut batch.filled_mut()[0];
        assert_eq!(slot.bytes(), &[7, 7, 7, 7]);
        assert_eq!(
            slot.buffer_mut().len(),
            32,
            "a lent frame may grow to its room"
        );
        slot.bytes_mut()[0] = 1;
        slot.set_len(20);
        let copy = slot.clone();
        assert_eq!(
            copy.bytes().len(),
            16,
            "a copy has its own buffer, capped to it"
        );
        assert_eq!(copy.bytes()[0], 1);
        assert_eq!(Arc::strong_count(&owner), 2, "a copy does not hold it");
        batch.reclaim();
        assert_eq!(Arc::strong_count(&owner), 1, "let go at the reclaim");
        assert!(batch.slots_mut()[0].bytes().is_empty());
        assert_eq!(
            batch.slots_mut()[0].buffer_mut(),
            &[0u8; 16],
            "its own buffer, untouched"
        );
        assert_eq!(ring[0], 1, "the frame was rewritten where it was lent");
    }
}
