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
mod packet;
#[cfg(target_os = "linux")]
pub mod punt;
#[cfg(target_os = "linux")]
pub mod ring;
#[cfg(target_os = "linux")]
mod sys;
#[cfg(target_os = "linux")]
pub mod tx_ring;

use core::time::Duration;

use crate::flow::Attachment;
use crate::verdict::Verdict;
use crate::wire::offload::VnetHdr;

/// One frame of a batch: its bytes, the attachment it came in on, its offload metadata, and
/// what to do with it.
#[derive(Clone, Debug)]
pub struct Slot {
    buf: Box<[u8]>,
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

impl Slot {
    fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity].into_boxed_slice(),
            len: 0,
            ingress: Attachment(0),
            vnet: VnetHdr::NONE,
            verdict: Verdict::Consumed,
            truncated: false,
            vlan: VlanTag::None,
        }
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The frame's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    /// The whole buffer, for a backend to receive into; then call [`Slot::set_len`].
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Set the frame length after receiving into [`Slot::buffer_mut`].
    ///
    /// # Panics
    /// If `len` exceeds the buffer.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.buf.len(), "frame longer than its slot");
        self.len = len;
    }

    /// What to transmit for this slot, if anything: `(attachment, offload metadata,
    /// bytes)`. A forwarded frame keeps the metadata it arrived with (its headers were
    /// rewritten in place; client identity may have grown them, see `dataplane::rewrite::identity`);
    /// a frame the dataplane emitted has none.
    pub fn output(&self) -> Option<(Attachment, VnetHdr, &[u8])> {
        match self.verdict {
            Verdict::Forward(vpc) => Some((vpc, self.vnet, self.bytes())),
            Verdict::Emit { vpc, len } => Some((vpc, VnetHdr::NONE, &self.buf[..len])),
            Verdict::Drop(_) | Verdict::Consumed => None,
        }
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
}
