//! The pnet backend: pnet's AF_PACKET datalink channel, one per attachment per worker.
//!
//! Kept as the reference the design started from and measured against the raw AF_PACKET
//! backend (BENCHMARKS.md): a channel reads one frame per call (no batch), sees the node's
//! own outgoing frames, offers no checksum status (frames a sender left with a partial
//! checksum are forwarded as they are: run peers with offloads off), and cannot share a
//! transmit socket, so each worker opens a channel on every attachment to reach it.

use core::time::Duration;
use std::io;

use pnet_datalink::{Channel, Config, DataLinkReceiver, DataLinkSender, NetworkInterface};

use super::{Backend, BackendError, Batch};
use crate::flow::VpcId;
use crate::wire::offload::VnetHdr;

/// A worker's receive channel and a transmit channel per attachment.
#[allow(missing_debug_implementations)] // pnet's channel halves are not Debug
pub struct PnetBackend {
    rx: Box<dyn DataLinkReceiver>,
    ingress: VpcId,
    tx: Vec<Box<dyn DataLinkSender>>,
}

fn open(
    iface: &NetworkInterface,
    timeout: Duration,
) -> io::Result<(Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>)> {
    let cfg = Config {
        read_timeout: Some(timeout),
        read_buffer_size: 65536,
        write_buffer_size: 65536,
        promiscuous: false,
        ..Config::default()
    };
    match pnet_datalink::channel(iface, cfg)? {
        Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => Err(io::Error::other("not an Ethernet channel")),
    }
}

impl PnetBackend {
    /// Channels on `attachments` (by name, indexed by `VpcId`) receiving on `ingress`.
    ///
    /// # Errors
    /// A missing interface or a channel that cannot be opened.
    pub fn open(attachments: &[String], ingress: VpcId, timeout: Duration) -> io::Result<Self> {
        let all = pnet_datalink::interfaces();
        let find = |name: &str| {
            all.iter().find(|i| i.name == name).cloned().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}"))
            })
        };
        let mut rx = None;
        let mut tx = Vec::new();
        for (i, name) in attachments.iter().enumerate() {
            let (t, r) = open(&find(name)?, timeout)?;
            tx.push(t);
            if i == ingress.index() {
                rx = Some(r);
            }
        }
        let rx = rx.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "ingress is not an attachment")
        })?;
        Ok(Self { rx, ingress, tx })
    }
}

impl Backend for PnetBackend {
    fn recv(&mut self, batch: &mut Batch, _timeout: Duration) -> Result<usize, BackendError> {
        let n = match self.rx.next() {
            Ok(frame) => {
                let slot = &mut batch.slots_mut()[0];
                let len = frame.len().min(slot.buffer_mut().len());
                slot.buffer_mut()[..len].copy_from_slice(&frame[..len]);
                slot.set_len(len);
                slot.ingress = self.ingress;
                slot.vnet = VnetHdr::NONE;
                slot.truncated = frame.len() > len;
                1
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) =>
            {
                0
            }
            Err(e) => return Err(e.into()),
        };
        batch.set_filled(n);
        Ok(n)
    }

    fn send(&mut self, batch: &Batch) -> Result<usize, BackendError> {
        let mut failed = 0;
        for slot in batch.filled() {
            let Some((vpc, _, bytes)) = slot.output() else {
                continue;
            };
            match self
                .tx
                .get_mut(vpc.index())
                .and_then(|t| t.send_to(bytes, None))
            {
                Some(Ok(())) => {}
                _ => failed += 1,
            }
        }
        Ok(failed)
    }
}
