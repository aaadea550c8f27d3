//! AF_PACKET backend: raw Ethernet frames on Linux interfaces, batched with `recvmmsg` and
//! `sendmmsg`.
//!
//! Per attachment there is one transmit socket (protocol 0: it receives nothing), shared by
//! every worker, so any worker can forward onto any attachment; it also keeps the
//! attachment's link state. Each worker has a receive socket on every attachment
//! (`ETH_P_ALL`, `PACKET_IGNORE_OUTGOING` so the daemon never sees its own frames,
//! `PACKET_AUXDATA` for the VLAN tag the kernel stripped), waits on all of them in one
//! `poll` after a bounded spin, and with several workers each attachment's sockets form a
//! `PACKET_FANOUT` hash group. A receive socket may use a ring instead of `recvmmsg`
//! ([`Receive`]): TPACKET_V3 (`ring.rs`, frames copied out of its blocks) or TPACKET_V2
//! (`v2_ring.rs`, frames lent to the batch and processed in their slots).
//!
//! Links: an error on a receive socket (link down, interface deleted) marks it down; the
//! worker goes on with the others and looks at the link again with backoff, re-opening the
//! sockets if the interface was created again. Only a broken socket ends the worker.
//!
//! Offloads (docs/design.md, sections 2 and 7): both sockets use `PACKET_VNET_HDR`, so every frame
//! travels with its `virtio_net_hdr`. A GSO super-frame (a sender's TSO/GSO, a NIC's GRO)
//! arrives whole with its GSO type and size; a partial checksum arrives flagged
//! `NEEDS_CSUM`. The pipeline rewrites the headers once and the frame leaves with the same
//! header, so the kernel segments it (or hands it whole to a peer that takes it) and
//! finishes the checksum: no software checksum over a payload on the hot path. A frame
//! larger than a slot (`max_frame_bytes`) is marked truncated and counted as `Oversize`,
//! never forwarded cut.
//!
//! `unsafe` lives in the I/O modules only (this one, `mmsg.rs`, `link.rs`, the rings,
//! `af_xdp.rs`, `sys.rs`); each block says why it holds.

#![allow(unsafe_code)]

use core::time::Duration;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

pub use super::link::{LinkState, TxSocket};
use super::mmsg::{self, PACKET_AUXDATA};
pub use super::packet::Interface;
use super::packet::{PACKET_VNET_HDR, SOL_PACKET, bind, packet_socket};
use super::ring::{RingGeometry, RxRing};
use super::spin::Spin;
use super::sys::setsockopt;
use super::v2_ring::V2Ring;
use super::{Backend, BackendError, Batch, Copies, IoStats, Slot, VlanTag};
use crate::flow::Attachment;

// Kernel ABI constants (linux/if_packet.h); stable since their introduction.
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT_HASH: libc::c_int = 0;
/// The group skips frames this host sends (`PACKET_IGNORE_OUTGOING` on a socket does not
/// reach a fanout group, whose own hook receives the frames): without it every frame the
/// workers transmit comes back as input.
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: libc::c_int = 0x4000;
const ETH_P_ALL: u16 = 0x0003;
pub use super::mmsg::MAX_BATCH;

/// How a worker's receive sockets take frames from the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Receive {
    /// `recvmmsg` into the batch's own buffers: the kernel copies each frame once.
    #[default]
    Recvmmsg,
    /// A TPACKET_V3 ring of this geometry: the kernel copies each frame into a block, and
    /// the worker copies it into the batch (a block that does not fill waits for its
    /// retire timer).
    TpacketV3(RingGeometry),
    /// A TPACKET_V2 ring of at least `frames` slots for frames of up to `max_frame` bytes:
    /// the kernel copies each frame into a slot, where it is processed and sent from.
    TpacketV2 {
        /// Slots per socket.
        frames: usize,
        /// The largest frame a slot holds.
        max_frame: usize,
    },
}

/// The copies of a forwarded frame with this receive mode and a transmit ring or not:
/// `recvmmsg` and the TPACKET_V2 ring take one (the kernel's, into the worker's buffer or
/// the ring's slot), the TPACKET_V3 ring two (the worker copies the frame out of its
/// block); `sendmmsg` one (the kernel's, into a new skb), the transmit ring one (the
/// worker's, into the ring's slot).
pub fn copies(receive: Receive, tx_ring: bool) -> Copies {
    let (receive, rx_daemon) = match receive {
        Receive::Recvmmsg | Receive::TpacketV2 { .. } => (1, 0),
        Receive::TpacketV3(_) => (2, 1),
    };
    Copies {
        receive,
        transmit: 1,
        by_daemon: rx_daemon + u8::from(tx_ring),
    }
}

/// A receive socket's ring.
#[derive(Debug)]
enum Ring {
    V3(RxRing),
    V2(V2Ring),
}

/// One receive socket of a worker: the attachment it listens on.
#[derive(Debug)]
struct RxSocket {
    fd: OwnedFd,
    ingress: Attachment,
    /// The interface index the socket is bound to.
    ifindex: i32,
    fanout: Option<u16>,
    /// The socket reported an error (link down, interface gone): check the link, with
    /// backoff, until it is up again.
    down: bool,
    /// The last read filled all the room it had: read again before sleeping.
    busy: bool,
    /// The socket's ring, if it has one (else frames are read with `recvmmsg`).
    ring: Option<Ring>,
}

impl RxSocket {
    /// Frames are waiting, as far as can be told without a system call.
    fn ready_in_memory(&self) -> bool {
        match &self.ring {
            Some(Ring::V3(r)) => r.ready(),
            Some(Ring::V2(r)) => r.ready(),
            None => false,
        }
    }
}

/// A worker's receive sockets (one per attachment it serves) plus every attachment's
/// transmit socket.
///
/// One worker may serve several attachments: a request and its reply crossing two
/// attachments are then handled by one thread, without waking a second one. Waiting is one
/// `poll` over every receive socket, preceded by a bounded spin when traffic was flowing.
#[derive(Debug)]
pub struct AfPacketBackend {
    rx: Vec<RxSocket>,
    tx: Arc<Vec<TxSocket>>,
    /// Which socket is read first next time, so none starves the others.
    next: usize,
    /// How long to keep looking for frames (zero-timeout polls) before sleeping.
    spin: Spin,
    /// Frames arrived recently: a spin is likely to pay.
    warm: bool,
    /// How the receive sockets take frames, for re-opening them.
    receive: Receive,
    /// When to look at links that went away next, and the current backoff.
    check_at: Instant,
    backoff: Duration,
}

/// First and longest wait between two looks at a link that went away.
const LINK_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LINK_BACKOFF_MAX: Duration = Duration::from_secs(5);

impl AfPacketBackend {
    /// Receive sockets on `attachments` (`(interface, attachment id, fanout group)`), each
    /// joined to its fanout group if it has one, each taking frames as `receive` says;
    /// `tx` is indexed by `Attachment`.
    ///
    /// With a TPACKET_V2 ring, frames are lent to the batch `recv` fills and handed back
    /// to the kernel at the next `recv`: a backend serves one batch.
    ///
    /// # Errors
    /// The socket, bind or option calls failed.
    pub fn open(
        attachments: &[(&Interface, Attachment, Option<u16>)],
        spin: Spin,
        receive: Receive,
        tx: Arc<Vec<TxSocket>>,
    ) -> io::Result<Self> {
        if attachments.len() > MAX_RX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a worker polls at most 64 attachments",
            ));
        }
        let mut rx = Vec::with_capacity(attachments.len());
        for &(iface, ingress, fanout) in attachments {
            let (fd, ring) = rx_socket(iface.ifindex, fanout, receive)?;
            rx.push(RxSocket {
                fd,
                ingress,
                ifindex: iface.ifindex,
                fanout,
                down: false,
                busy: false,
                ring,
            });
        }
        if rx.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a worker needs at least one attachment",
            ));
        }
        Ok(Self {
            rx,
            tx,
            next: 0,
            spin,
            warm: false,
            receive,
            check_at: Instant::now(),
            backoff: LINK_BACKOFF_MIN,
        })
    }
}

fn rx_socket(
    ifindex: i32,
    fanout: Option<u16>,
    receive: Receive,
) -> io::Result<(OwnedFd, Option<Ring>)> {
    // Protocol 0: no frame reaches the socket before `bind` names its interface (a socket
    // of `ETH_P_ALL` would take every interface's frames until then, and read them as
    // this attachment's).
    let rx = packet_socket(0)?;
    // Every frame arrives after its virtio_net_hdr: super-frames whole, with their GSO
    // type and size, and partial checksums flagged instead of completed. (Before the ring:
    // the ring's frame layout depends on it.)
    setsockopt(&rx, SOL_PACKET, PACKET_VNET_HDR, &1)?;
    // The VLAN tag the kernel strips off is reported beside the frame.
    setsockopt(&rx, SOL_PACKET, PACKET_AUXDATA, &1)?;
    let ring = match receive {
        Receive::Recvmmsg => None,
        Receive::TpacketV3(g) => Some(Ring::V3(RxRing::setup(&rx, g)?)),
        Receive::TpacketV2 { frames, max_frame } => {
            Some(Ring::V2(V2Ring::setup(&rx, frames, max_frame)?))
        }
    };
    // Frames this host sends on the interface (ours included) are not input.
    setsockopt(&rx, SOL_PACKET, PACKET_IGNORE_OUTGOING, &1)?;
    // Room for the frames that arrive while the worker is away (the other threads of its
    // core, a sleep's wake-up). `SO_RCVBUF` is capped at `net.core.rmem_max`, 208 KiB on a
    // kernel as shipped (a few hundred frames: TCP through a worker sees them dropped);
    // `SO_RCVBUFFORCE` (CAP_NET_ADMIN, which the daemon has) is not.
    let room = RX_QUEUE_BYTES;
    if setsockopt(&rx, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &room).is_err() {
        setsockopt(&rx, libc::SOL_SOCKET, libc::SO_RCVBUF, &room)?;
    }
    bind(&rx, ifindex, ETH_P_ALL)?;
    if let Some(group) = fanout {
        setsockopt(
            &rx,
            SOL_PACKET,
            PACKET_FANOUT,
            &(i32::from(group) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_IGNORE_OUTGOING) << 16)),
        )?;
    }
    Ok((rx, ring))
}

/// The fanout group id of interface `ifindex` for this process: every worker's socket on
/// the interface joins it, and so do a reload's new sockets (the same process, the same
/// interface), while another process's ids are unlikely to collide.
pub fn fanout_group(ifindex: i32) -> u16 {
    let h = u64::from(std::process::id())
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(ifindex.unsigned_abs()));
    u16::try_from(h % 65_521).unwrap_or(0)
}

/// The receive queue each receive socket asks for, in bytes (the kernel doubles it for its
/// own accounting).
const RX_QUEUE_BYTES: libc::c_int = 8 << 20;

/// Most receive sockets one worker polls.
const MAX_RX: usize = 64;

impl AfPacketBackend {
    /// `poll` every receive socket for at most `timeout` (zero: just look); marks the ready
    /// ones in `ready` and returns how many there are.
    fn poll(
        &mut self,
        timeout: Duration,
        ready: &mut [bool; MAX_RX],
    ) -> Result<usize, BackendError> {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; MAX_RX];
        let n = self.rx.len().min(MAX_RX);
        for (pfd, rx) in fds.iter_mut().zip(&self.rx) {
            pfd.fd = rx.fd.as_raw_fd();
            pfd.events = libc::POLLIN;
        }
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        let nfds = libc::nfds_t::try_from(n).unwrap_or(0);
        // SAFETY: `fds[..n]` are valid pollfds that outlive the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), nfds, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e.into());
        }
        let mut count = 0;
        for (i, (flag, pfd)) in ready.iter_mut().zip(&fds[..n]).enumerate() {
            if pfd.revents & libc::POLLERR != 0 {
                // A link that went down or away reports it once on its sockets; take the
                // error (a ring socket is never read with a system call that would) and
                // check the link with backoff.
                let e = take_error(&self.rx[i].fd);
                self.mark_down(i, &e);
            }
            *flag = pfd.revents & libc::POLLIN != 0;
            count += usize::from(*flag);
        }
        Ok(count)
    }

    /// Read, without blocking, from the sockets `which` selects (in rotation) into the
    /// batch's free slots; returns the new fill level.
    fn read_some(
        &mut self,
        batch: &mut Batch,
        mut filled: usize,
        which: impl Fn(usize, &RxSocket) -> bool,
    ) -> Result<usize, BackendError> {
        let cap = batch.capacity().min(MAX_BATCH);
        let count = self.rx.len();
        for k in 0..count {
            if filled >= cap {
                break;
            }
            let i = (self.next + k) % count;
            if !which(i, &self.rx[i]) {
                continue;
            }
            let room = cap - filled;
            let got = match read_batch(&mut self.rx[i], batch, filled, room) {
                Ok(got) => got,
                Err(e) => {
                    // The worker goes on with the other attachments and checks this one
                    // with backoff (`check_links`).
                    self.mark_down(i, &e);
                    0
                }
            };
            self.rx[i].busy = got == room;
            filled += got;
        }
        self.next = (self.next + 1) % count;
        Ok(filled)
    }
}

/// Read what `rx` has queued, without blocking, into `batch` slots `start..start + room`;
/// returns how many frames arrived.
fn read_batch(
    rx: &mut RxSocket,
    batch: &mut Batch,
    start: usize,
    room: usize,
) -> Result<usize, BackendError> {
    let n = room.min(MAX_BATCH);
    let cap = batch.frame_capacity();
    if let Some(Ring::V2(ring)) = &mut rx.ring {
        let owner = ring.owner();
        let slots = &mut batch.slots_mut()[start..start + n];
        let ingress = rx.ingress;
        let mut k = 0;
        return Ok(ring.read(n, |frame| {
            let slot = &mut slots[k];
            let room = frame.room.min(cap);
            let len = frame.len.min(room);
            // SAFETY: the frame's slot (`room` bytes from `data`) stays mapped while the
            // owner lives, and is the kernel's again only at a `release` that finds no slot
            // holding the owner. Each frame is read (and lent) once.
            unsafe { slot.lend(frame.data, room, len, Arc::clone(&owner)) };
            slot.ingress = ingress;
            slot.vnet = frame.vnet;
            slot.truncated = frame.truncated || len < frame.len;
            slot.vlan = frame.vlan.map_or(VlanTag::None, VlanTag::Tagged);
            k += 1;
        }));
    }
    let slots = &mut batch.slots_mut()[start..start + n];
    if let Some(Ring::V3(ring)) = &mut rx.ring {
        let ingress = rx.ingress;
        let mut k = 0;
        return Ok(ring.read(n, |frame| {
            let slot = &mut slots[k];
            let buf = slot.buffer_mut();
            let len = frame.bytes.len().min(buf.len());
            buf[..len].copy_from_slice(&frame.bytes[..len]);
            slot.set_len(len);
            slot.ingress = ingress;
            slot.vnet = frame.vnet;
            slot.truncated = frame.truncated || len < frame.bytes.len();
            slot.vlan = frame.vlan.map_or(VlanTag::None, VlanTag::Tagged);
            k += 1;
        }));
    }
    Ok(mmsg::recv_mmsg(&rx.fd, rx.ingress, slots)?)
}

/// The pending error of a socket (`SO_ERROR`, which also clears it).
fn take_error(fd: &OwnedFd) -> io::Error {
    let mut err: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `err` and `len` are live and sized for SO_ERROR's int.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &raw mut len,
        )
    };
    if r < 0 {
        io::Error::last_os_error()
    } else {
        io::Error::from_raw_os_error(err)
    }
}

impl AfPacketBackend {
    /// Socket `i` reported `e`: mark it down and have its link looked at now.
    fn mark_down(&mut self, i: usize, e: &dyn std::fmt::Display) {
        let rx = &mut self.rx[i];
        if !rx.down {
            tracing::warn!(ingress = rx.ingress.0, error = %e, "receive failed; checking the link");
        }
        rx.down = true;
        if let Some(tx) = self.tx.get(rx.ingress.index()) {
            tx.set_state(LinkState::Down);
        }
        self.check_at = Instant::now();
    }

    /// Look at the links of sockets that reported an error, at most once per backoff:
    /// a link back up carries on with the same socket; an interface created again gets a
    /// new socket (and the attachment's MAC, see [`TxSocket`]).
    fn check_links(&mut self) {
        let now = Instant::now();
        if now < self.check_at || !self.rx.iter().any(|rx| rx.down) {
            return;
        }
        let mut all_up = true;
        for rx in self.rx.iter_mut().filter(|rx| rx.down) {
            let Some(tx) = self.tx.get(rx.ingress.index()) else {
                continue;
            };
            match tx.check() {
                Some(ifindex) if ifindex == rx.ifindex => rx.down = false,
                // A new interface: a new fanout group too (a group is bound to its device;
                // every worker derives the same id from the new index).
                Some(ifindex) => match rx_socket(
                    ifindex,
                    rx.fanout.map(|_| fanout_group(ifindex)),
                    self.receive,
                ) {
                    Ok((fd, ring)) => {
                        rx.fd = fd;
                        rx.ring = ring;
                        rx.ifindex = ifindex;
                        rx.fanout = rx.fanout.map(|_| fanout_group(ifindex));
                        rx.down = false;
                        tracing::info!(interface = tx.name(), "attachment re-opened");
                    }
                    Err(e) => {
                        tracing::warn!(interface = tx.name(), error = %e, "could not re-open");
                        all_up = false;
                    }
                },
                None => all_up = false,
            }
        }
        self.backoff = if all_up {
            LINK_BACKOFF_MIN
        } else {
            (self.backoff * 2).min(LINK_BACKOFF_MAX)
        };
        self.check_at = now + self.backoff;
    }
}

impl Backend for AfPacketBackend {
    fn recv(&mut self, batch: &mut Batch, timeout: Duration) -> Result<usize, BackendError> {
        // The frames the last batch held in receive rings go back to the kernel (before
        // any poll: a ring with frames held reads as ready).
        batch.reclaim();
        for rx in &mut self.rx {
            if let Some(Ring::V2(ring)) = &mut rx.ring {
                ring.release();
            }
        }
        self.check_links();
        // Under load the queues rarely run dry: read the sockets whose last read filled
        // its room first, and poll only when that finds nothing.
        let mut filled = self.read_some(batch, 0, |_, rx| rx.busy || rx.ready_in_memory())?;
        let mut ready = [false; MAX_RX];
        // From here the worker is idle until frames come: spinning, then sleeping.
        let idle_from = Instant::now();
        if filled == 0 && self.warm && !self.spin.budget().is_zero() {
            // Traffic was flowing: look again for a bounded time before sleeping, which
            // saves a sleep and a wake-up per batch (latency) at the price of some CPU.
            let start = idle_from;
            let rings_only = self.rx.iter().all(|rx| rx.ring.is_some());
            loop {
                // Rings are looked at in memory; plain sockets need a zero-timeout poll.
                if self.rx.iter().any(RxSocket::ready_in_memory) {
                    filled = self.read_some(batch, 0, |_, rx| rx.ready_in_memory())?;
                    break;
                }
                if !rings_only && self.poll(Duration::ZERO, &mut ready)? > 0 {
                    filled = self.read_some(batch, 0, |i, _| ready[i])?;
                    break;
                }
                if self.spin.expired(start) {
                    break;
                }
                core::hint::spin_loop();
            }
            self.spin.spun(start, filled > 0);
        }
        if filled == 0 {
            let woke = self.poll(timeout, &mut ready)?;
            let idle = idle_from.elapsed();
            if woke > 0 {
                filled = self.read_some(batch, 0, |i, _| ready[i])?;
            }
            if !timeout.is_zero() {
                self.spin.slept(idle, filled > 0);
            }
        }
        self.warm = filled > 0;
        batch.set_filled(filled);
        Ok(filled)
    }

    fn take_stats(&mut self) -> IoStats {
        IoStats {
            queue_drops: self
                .rx
                .iter()
                .map(|rx| super::sys::take_packet_drops(&rx.fd))
                .sum(),
            spin: self.spin.take_stats(),
        }
    }

    fn send(&mut self, batch: &Batch) -> Result<usize, BackendError> {
        let mut failed = 0;
        // One sendmmsg (or one ring kick) per egress attachment (a batch usually goes to
        // one or two).
        for (vpc, tx) in self.tx.iter().enumerate() {
            let frames = batch
                .filled()
                .iter()
                .take(MAX_BATCH)
                .filter_map(Slot::output)
                .filter(|(out, _, _)| out.index() == vpc)
                .map(|(_, hdr, bytes)| (hdr, bytes));
            if tx.has_ring() {
                match tx.send_ring(frames) {
                    Ok((lost, _)) => failed += lost,
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EBADF | libc::ENOTSOCK | libc::EFAULT)
                        ) =>
                    {
                        return Err(e.into());
                    }
                    // The link is down or gone, or the kernel refused the kick: what the
                    // ring holds goes at the next kick that works; nothing waits.
                    Err(_) => {}
                }
                continue;
            }
            failed += mmsg::send_mmsg(&tx.fd(), frames)?;
        }
        Ok(failed)
    }
}
