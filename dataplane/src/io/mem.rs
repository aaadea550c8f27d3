//! An in-memory backend: frames go in and come out of queues, so tests and benchmarks run
//! the real worker loop without sockets. The queues sit behind a mutex: this backend is
//! for tests, not for the fast path.

use core::time::Duration;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use super::{Backend, BackendError, Batch, VlanTag};
use crate::flow::Attachment;
use crate::wire::offload::VnetHdr;

#[derive(Debug, Default)]
struct Queues {
    rx: VecDeque<(Attachment, VnetHdr, VlanTag, Vec<u8>)>,
    tx: VecDeque<(Attachment, VnetHdr, Vec<u8>)>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    queues: Mutex<Queues>,
    ready: Condvar,
}

/// The backend half, handed to a worker.
#[derive(Debug)]
pub struct MemBackend {
    inner: Arc<Inner>,
}

/// The test's half: inject frames, collect what the worker sent.
#[derive(Clone, Debug)]
pub struct MemPort {
    inner: Arc<Inner>,
}

/// A connected backend and port.
pub fn pair() -> (MemBackend, MemPort) {
    let inner = Arc::new(Inner::default());
    (
        MemBackend {
            inner: Arc::clone(&inner),
        },
        MemPort { inner },
    )
}

impl MemPort {
    /// Queue a frame as if it arrived on attachment `vpc`.
    pub fn inject(&self, vpc: Attachment, frame: Vec<u8>) {
        self.inject_offloaded(vpc, VnetHdr::NONE, frame);
    }

    /// Queue a frame with offload metadata, as a vnet-header backend receives it.
    pub fn inject_offloaded(&self, vpc: Attachment, vnet: VnetHdr, frame: Vec<u8>) {
        self.inject_with(vpc, vnet, VlanTag::None, frame);
    }

    /// Queue a frame with offload metadata and the VLAN tag a kernel stripped off it.
    pub fn inject_with(&self, vpc: Attachment, vnet: VnetHdr, vlan: VlanTag, frame: Vec<u8>) {
        let mut q = self.inner.queues.lock().expect("mem backend lock poisoned");
        q.rx.push_back((vpc, vnet, vlan, frame));
        self.inner.ready.notify_one();
    }

    /// Take every frame the worker has sent so far.
    pub fn drain(&self) -> Vec<(Attachment, Vec<u8>)> {
        self.drain_offloaded()
            .into_iter()
            .map(|(vpc, _, frame)| (vpc, frame))
            .collect()
    }

    /// Take every frame the worker has sent so far, with the metadata it was sent with.
    pub fn drain_offloaded(&self) -> Vec<(Attachment, VnetHdr, Vec<u8>)> {
        let mut q = self.inner.queues.lock().expect("mem backend lock poisoned");
        q.tx.drain(..).collect()
    }

    /// Frames injected but not yet received by the worker.
    pub fn pending(&self) -> usize {
        self.inner
            .queues
            .lock()
            .expect("mem backend lock poisoned")
            .rx
            .len()
    }

    /// Make the backend's next `recv` fail with [`BackendError::Closed`].
    pub fn close(&self) {
        self.inner
            .queues
            .lock()
            .expect("mem backend lock poisoned")
            .closed = true;
        self.inner.ready.notify_all();
    }
}

impl Backend for MemBackend {
    fn recv(&mut self, batch: &mut Batch, timeout: Duration) -> Result<usize, BackendError> {
        let guard = self.inner.queues.lock().map_err(|_| BackendError::Closed)?;
        let (mut q, _) = self
            .inner
            .ready
            .wait_timeout_while(guard, timeout, |q| q.rx.is_empty() && !q.closed)
            .map_err(|_| BackendError::Closed)?;
        if q.closed {
            return Err(BackendError::Closed);
        }
        let mut n = 0;
        for slot in batch.slots_mut() {
            let Some((vpc, vnet, vlan, frame)) = q.rx.pop_front() else {
                break;
            };
            slot.vnet = vnet;
            slot.vlan = vlan;
            let len = frame.len().min(slot.buffer_mut().len());
            slot.buffer_mut()[..len].copy_from_slice(&frame[..len]);
            slot.set_len(len);
            slot.ingress = vpc;
            slot.truncated = frame.len() > len;
            n += 1;
        }
        batch.set_filled(n);
        Ok(n)
    }

    fn send(&mut self, batch: &Batch) -> Result<usize, BackendError> {
        let mut q = self.inner.queues.lock().map_err(|_| BackendError::Closed)?;
        for slot in batch.filled() {
            if let Some((vpc, vnet, bytes)) = slot.output() {
                q.tx.push_back((vpc, vnet, bytes.to_vec()));
            }
        }
        Ok(0)
    }
}
