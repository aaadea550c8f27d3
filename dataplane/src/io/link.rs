//! An attachment's link, shared by every worker: its transmit socket (protocol 0, with
//! `PACKET_VNET_HDR`), and what the workers last saw of it (up, down, gone; how often it
//! went away). When the interface is deleted and created again, the first worker to notice
//! moves the socket to the new interface and gives it the attachment's MAC back.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use super::packet::{Interface, PACKET_VNET_HDR, SOL_PACKET, bind, packet_socket};
use super::sys::{cvt, setsockopt};
use super::tx_ring::{Pushed, TxRing};
use crate::wire::ethernet::MacAddr;
use crate::wire::offload::VnetHdr;

/// What a worker last saw of an attachment's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// Frames flow.
    Up = 0,
    /// The interface exists but is down (or lost its carrier); its sockets wait for it.
    Down = 1,
    /// The interface is gone; it is looked for again with backoff, and taken back (with
    /// the attachment's MAC) when it reappears.
    Gone = 2,
}

impl LinkState {
    /// The name `/status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Gone => "gone",
        }
    }
}

/// The sending side of one attachment, shared by every worker, and the attachment's link
/// state. When the interface is deleted and created again, the first worker to notice
/// re-opens the socket on the new interface.
#[derive(Debug)]
pub struct TxSocket {
    name: String,
    mac: MacAddr,
    fd: ArcSwap<OwnedFd>,
    ifindex: AtomicI32,
    state: AtomicU8,
    /// Times the link was seen going away (down or gone).
    flaps: AtomicU64,
    /// One re-open at a time.
    reopening: Mutex<()>,
    /// The daemon keeps the kernel ingress drop on this attachment: an interface created
    /// again gets it back with its MAC.
    ingress_drop: AtomicBool,
    /// Slots of the transmit ring (0: frames go by `sendmmsg`).
    ring_slots: u32,
    /// The transmit ring, with the socket it is mapped on (moved with it).
    ring: Mutex<Option<(Arc<OwnedFd>, TxRing)>>,
    /// Frames not sent because the ring was full.
    ring_full: AtomicU64,
    /// A kick left frames requested: the next send kicks even with no frames of its own
    /// (without, a batch with nothing for this attachment does not take the ring's lock).
    ring_pending: AtomicBool,
}

fn tx_fd(ifindex: i32, ring_slots: u32) -> io::Result<(OwnedFd, Option<TxRing>)> {
    let fd = packet_socket(0)?;
    // Every frame sent carries a virtio_net_hdr: partial checksums and GSO super-frames
    // leave as they are, for the kernel (or the peer) to finish.
    setsockopt(&fd, SOL_PACKET, PACKET_VNET_HDR, &1)?;
    let ring = (ring_slots > 0)
        .then(|| TxRing::setup(&fd, ring_slots))
        .transpose()?;
    bind(&fd, ifindex, 0)?;
    // No PACKET_QDISC_BYPASS: the direct path drops any frame that needs segmenting
    // (`__dev_direct_xmit` refuses an skb that validation replaced), so a super-frame
    // sent to a device without TSO would be lost; dev_queue_xmit segments it in software.
    Ok((fd, ring))
}

impl TxSocket {
    /// The socket to send on now (it moves when the interface is created again).
    pub(super) fn fd(&self) -> arc_swap::Guard<Arc<OwnedFd>> {
        self.fd.load()
    }

    /// A transmit-only socket on `iface` (bound with protocol 0: it receives nothing).
    ///
    /// # Errors
    /// The socket, bind or option call failed (e.g. no `CAP_NET_RAW`).
    pub fn open(iface: &Interface) -> io::Result<Self> {
        Self::open_with_ring(iface, 0)
    }

    /// The same, sending through a `PACKET_TX_RING` of `slots` slots (0: `sendmmsg`).
    ///
    /// # Errors
    /// As for [`TxSocket::open`], or the kernel refused the ring.
    pub fn open_with_ring(iface: &Interface, slots: u32) -> io::Result<Self> {
        let (fd, ring) = tx_fd(iface.ifindex, slots)?;
        let fd = Arc::new(fd);
        let ring = ring.map(|r| (Arc::clone(&fd), r));
        Ok(Self {
            name: iface.name.clone(),
            mac: iface.mac,
            fd: ArcSwap::new(fd),
            ifindex: AtomicI32::new(iface.ifindex),
            state: AtomicU8::new(LinkState::Up as u8),
            flaps: AtomicU64::new(0),
            reopening: Mutex::new(()),
            ingress_drop: AtomicBool::new(false),
            ring_slots: slots,
            ring: Mutex::new(ring),
            ring_full: AtomicU64::new(0),
            ring_pending: AtomicBool::new(false),
        })
    }

    /// True if frames go through a transmit ring.
    pub fn has_ring(&self) -> bool {
        self.ring_slots > 0
    }

    /// Frames not sent because the transmit ring was full (back-pressure).
    pub fn ring_full(&self) -> u64 {
        self.ring_full.load(Ordering::Relaxed)
    }

    /// Send `frames` through the transmit ring (see [`super::tx_ring`]) and kick it once
    /// (also with no frames, if an earlier kick left some requested); returns how many
    /// could not be sent (ring full: back-pressure, never a wait; too long) and how many of
    /// those were for a full ring. Without a ring, all of them fail.
    ///
    /// # Errors
    /// The kick failed with another error than a full device queue (the link went away).
    pub fn send_ring<'a>(
        &self,
        frames: impl Iterator<Item = (VnetHdr, &'a [u8])>,
    ) -> io::Result<(usize, usize)> {
        let mut frames = frames.peekable();
        if frames.peek().is_none() && !self.ring_pending.load(Ordering::Acquire) {
            return Ok((0, 0));
        }
        let mut guard = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((fd, ring)) = guard.as_mut() else {
            return Ok((frames.count(), 0));
        };
        let (mut failed, mut full) = (0, 0);
        for (vnet, bytes) in frames {
            match ring.push(vnet, bytes) {
                Pushed::Queued => {}
                Pushed::Full => {
                    failed += 1;
                    full += 1;
                }
                Pushed::TooLong => failed += 1,
            }
        }
        if full > 0 {
            self.ring_full.fetch_add(full as u64, Ordering::Relaxed);
        }
        let kicked = ring.kick(fd);
        self.ring_pending
            .store(ring.pending() > 0, Ordering::Release);
        match kicked {
            Ok(_) => Ok((failed, full)),
            // Still requested: the next kick (the next batch) sends them.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR)
                ) =>
            {
                Ok((failed, full))
            }
            Err(e) => Err(e),
        }
    }

    /// Keep the kernel ingress drop ([`super::ingress_drop`]) on this attachment from now
    /// on: installed again when the interface is created again.
    pub fn keep_ingress_drop(&self, keep: bool) {
        self.ingress_drop.store(keep, Ordering::Relaxed);
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The link state last seen.
    pub fn state(&self) -> LinkState {
        match self.state.load(Ordering::Relaxed) {
            0 => LinkState::Up,
            1 => LinkState::Down,
            _ => LinkState::Gone,
        }
    }

    /// Times the link went away since the daemon started.
    pub fn flaps(&self) -> u64 {
        self.flaps.load(Ordering::Relaxed)
    }

    pub(super) fn set_state(&self, next: LinkState) {
        let prev = self.state.swap(next as u8, Ordering::Relaxed);
        if prev == LinkState::Up as u8 && next != LinkState::Up {
            self.flaps.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(interface = %self.name, state = next.name(), "attachment link lost");
        } else if prev != LinkState::Up as u8 && next == LinkState::Up {
            tracing::info!(interface = %self.name, "attachment link back");
        }
    }

    /// Look at the interface again: its current index if it exists and is up. A new index
    /// means it was created again: the transmit socket moves to it, and it gets the
    /// attachment's MAC back (clients and backends have that MAC in their caches).
    pub(super) fn check(&self) -> Option<i32> {
        let Ok(iface) = Interface::lookup(&self.name) else {
            self.set_state(LinkState::Gone);
            return None;
        };
        if iface.ifindex != self.ifindex.load(Ordering::Relaxed) {
            let _guard = self
                .reopening
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if iface.ifindex != self.ifindex.load(Ordering::Relaxed) {
                if iface.mac != self.mac
                    && let Err(e) = set_mac(&self.name, self.mac)
                {
                    tracing::warn!(interface = %self.name, error = %e, "could not restore the attachment's MAC");
                }
                if self.ingress_drop.load(Ordering::Relaxed)
                    && let Err(e) = super::ingress_drop::install(iface.ifindex)
                {
                    tracing::warn!(interface = %self.name, error = %e, "could not restore the kernel ingress drop");
                }
                match tx_fd(iface.ifindex, self.ring_slots) {
                    Ok((fd, ring)) => {
                        let fd = Arc::new(fd);
                        *self.ring.lock().unwrap_or_else(PoisonError::into_inner) =
                            ring.map(|r| (Arc::clone(&fd), r));
                        self.fd.store(fd);
                        self.ifindex.store(iface.ifindex, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(interface = %self.name, error = %e, "could not re-open the attachment");
                        self.set_state(LinkState::Gone);
                        return None;
                    }
                }
            }
        }
        let up = std::fs::read_to_string(format!("/sys/class/net/{}/operstate", self.name))
            .is_ok_and(|s| matches!(s.trim(), "up" | "unknown"));
        self.set_state(if up { LinkState::Up } else { LinkState::Down });
        up.then_some(iface.ifindex)
    }
}

/// Set `name`'s MAC (SIOCSIFHWADDR).
fn set_mac(name: &str, mac: MacAddr) -> io::Result<()> {
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { core::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    let mut addr: libc::sockaddr = req_hwaddr_zero();
    addr.sa_family = libc::ARPHRD_ETHER;
    for (dst, src) in addr.sa_data.iter_mut().zip(mac.0) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    req.ifr_ifru.ifru_hwaddr = addr;
    let fd = packet_socket(0)?;
    // SAFETY: `req` is a valid ifreq for SIOCSIFHWADDR that outlives the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFHWADDR, &raw mut req) })?;
    Ok(())
}

fn req_hwaddr_zero() -> libc::sockaddr {
    // SAFETY: all-zero is a valid sockaddr.
    unsafe { core::mem::zeroed() }
}
