//! The smoltcp device over the resolver's punt socket.

use std::collections::VecDeque;

use dataplane::io::punt::PuntSocket;
use dataplane::wire::ethernet;
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;

/// smoltcp's view of a punt socket: it receives only the TCP segments (each after the
/// synthetic ARP reply of its verified sender) the resolver queued, and sends anything but
/// ARP (a request for a neighbour nobody verified) out of the socket.
pub(super) struct PuntDevice {
    pub(super) sock: PuntSocket,
    pub(super) rx: VecDeque<Vec<u8>>,
}

pub(super) struct Rx(Vec<u8>);
pub(super) struct Tx<'a>(&'a PuntSocket);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; PuntSocket::HEADROOM + len];
        let r = f(&mut frame[PuntSocket::HEADROOM..]);
        let ethertype = frame
            .get(PuntSocket::HEADROOM + 12..PuntSocket::HEADROOM + 14)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        if ethertype == Some(ethernet::ETHERTYPE_ARP) {
            tracing::trace!("resolver ARP request not sent: neighbours come from verified senders");
        } else if let Err(e) = self.0.send(&mut frame) {
            tracing::debug!(error = %e, "resolver frame not sent");
        }
        r
    }
}

impl Device for PuntDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&self.sock)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&self.sock))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.sock.mtu() + 14;
        caps
    }
}
