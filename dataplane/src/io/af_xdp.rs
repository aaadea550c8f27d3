//! AF_XDP backend (`io = "af_xdp"`), kept to measure against AF_PACKET: one XDP socket per
//! attachment on queue 0, in copy mode (veth has no zero-copy AF_XDP), each with its own
//! UMEM of 4 KiB chunks and its fill, completion, receive and transmit rings. A six-
//! instruction XDP program, loaded with `bpf(2)` and attached through a BPF link (closing
//! the link detaches it), redirects every frame of the interface to the socket.
//!
//! What it cannot do, by construction: AF_XDP carries no offload metadata. There is no
//! vnet header, so a partial checksum arrives unflagged (and would leave wrong), and a
//! super-frame does not fit a chunk (attaching an XDP program to a veth turns GSO off on
//! its peer, which then segments in software). It is therefore only correct where the
//! peers run with offloads off; BENCHMARKS.md has the comparison.

#![allow(unsafe_code)]

use super::spin::Spin;
use core::time::Duration;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::af_packet::Interface;
use super::bpf::{bpf, insn, put_u32};
use super::sys::{cvt, map_ring, setsockopt};
use super::{Backend, BackendError, Batch, VlanTag};
use crate::flow::Attachment;
use crate::wire::offload::VnetHdr;

const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_PGOFF_RX_RING: libc::off_t = 0;
const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;
const XDP_COPY: u16 = 1 << 1;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Chunks per UMEM, and their size: a chunk holds one MTU frame.
const FRAMES: u32 = 4096;
const FRAME_SIZE: u32 = 4096;
/// Most XDP sockets (attachments) one worker polls.
const MAX_SOCKS: usize = 64;
/// Ring sizes (descriptors).
const RING: u32 = 2048;

#[repr(C)]
struct XdpUmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct XdpRingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct XdpMmapOffsets {
    rx: XdpRingOffset,
    tx: XdpRingOffset,
    fr: XdpRingOffset,
    cr: XdpRingOffset,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

/// A mapped ring: producer and consumer indices, flags, descriptors.
#[derive(Debug)]
struct Ring<T> {
    map: *mut u8,
    len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    descs: *mut T,
    mask: u32,
}

impl<T: Copy> Ring<T> {
    fn map(fd: &OwnedFd, off: XdpRingOffset, pgoff: libc::off_t, size: u32) -> io::Result<Self> {
        let len = usize::try_from(off.desc).unwrap_or(0) + size as usize * size_of::<T>();
        // The socket's ring of `len` bytes, as the kernel laid it out; unmapped in Drop.
        let map = map_ring(fd, len, pgoff)?;
        let at = |o: u64| usize::try_from(o).unwrap_or(0);
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS and lie within the mapping; the
        // index words are 4-byte aligned u32s the kernel updates atomically.
        unsafe {
            Ok(Self {
                map,
                len,
                producer: map.add(at(off.producer)).cast(),
                consumer: map.add(at(off.consumer)).cast(),
                descs: map.add(at(off.desc)).cast(),
                mask: size - 1,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: see `map`: a live, aligned index word of the mapping.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    fn get(&self, i: u32) -> T {
        // SAFETY: `i & mask` indexes the ring's descriptors, within the mapping.
        unsafe { self.descs.add((i & self.mask) as usize).read() }
    }

    fn set(&self, i: u32, v: T) {
        // SAFETY: as in `get`; only the producer (us, for fill and tx) writes the slot.
        unsafe { self.descs.add((i & self.mask) as usize).write(v) }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe {
            libc::munmap(self.map.cast(), self.len);
        }
    }
}

/// The fill, completion, receive and transmit rings of one socket.
type Rings = (Ring<u64>, Ring<u64>, Ring<XdpDesc>, Ring<XdpDesc>);

/// One attachment's XDP socket, its UMEM, rings and program.
#[derive(Debug)]
struct Xsk {
    ingress: Attachment,
    umem: *mut u8,
    umem_len: usize,
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<XdpDesc>,
    tx: Ring<XdpDesc>,
    /// Chunks free for transmit.
    free: Vec<u64>,
    // Field order is drop order: the link goes first (detaching the program), then the
    // program, the map and the socket.
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
    fd: OwnedFd,
}

// SAFETY: the mappings are owned by this value alone; the kernel's side is synchronised
// through the rings' producer/consumer protocol.
unsafe impl Send for Xsk {}

impl Drop for Xsk {
    fn drop(&mut self) {
        // SAFETY: the UMEM mapping made in `open`, unmapped once (the socket that
        // registered it is closed after this, by field drop order).
        unsafe {
            libc::munmap(self.umem.cast(), self.umem_len);
        }
    }
}

impl Xsk {
    fn open(iface: &Interface, ingress: Attachment) -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = cvt(unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let umem_len = (FRAMES * FRAME_SIZE) as usize;
        // SAFETY: an anonymous private mapping, checked, unmapped in Drop.
        let umem = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                umem_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if umem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let umem = umem.cast::<u8>();
        let reg = XdpUmemReg {
            addr: umem as u64,
            len: umem_len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        let setup = || -> io::Result<Rings> {
            setsockopt(&fd, SOL_XDP, XDP_UMEM_REG, &reg)?;
            setsockopt(&fd, SOL_XDP, XDP_UMEM_FILL_RING, &RING)?;
            setsockopt(&fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &RING)?;
            setsockopt(&fd, SOL_XDP, XDP_RX_RING, &RING)?;
            setsockopt(&fd, SOL_XDP, XDP_TX_RING, &RING)?;
            let mut off = XdpMmapOffsets::default();
            let mut len = libc::socklen_t::try_from(size_of::<XdpMmapOffsets>()).unwrap_or(0);
            // SAFETY: `off` and `len` are live and sized for the option.
            cvt(unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    SOL_XDP,
                    XDP_MMAP_OFFSETS,
                    (&raw mut off).cast(),
                    &raw mut len,
                )
            })?;
            Ok((
                Ring::map(&fd, off.fr, XDP_UMEM_PGOFF_FILL_RING, RING)?,
                Ring::map(&fd, off.cr, XDP_UMEM_PGOFF_COMPLETION_RING, RING)?,
                Ring::map(&fd, off.rx, XDP_PGOFF_RX_RING, RING)?,
                Ring::map(&fd, off.tx, XDP_PGOFF_TX_RING, RING)?,
            ))
        };
        let (fill, comp, rx, tx) = match setup() {
            Ok(r) => r,
            Err(e) => {
                // SAFETY: the UMEM mapping made above, not used after this.
                unsafe { libc::munmap(umem.cast(), umem_len) };
                return Err(e);
            }
        };
        // The first half of the chunks is for receiving, the rest for transmitting.
        for i in 0..RING {
            fill.set(i, u64::from(i) * u64::from(FRAME_SIZE));
        }
        fill.producer().store(RING, Ordering::Release);
        let free = (RING..FRAMES)
            .map(|i| u64::from(i) * u64::from(FRAME_SIZE))
            .collect();
        let sa = SockaddrXdp {
            family: u16::try_from(AF_XDP).unwrap_or(0),
            flags: XDP_COPY,
            ifindex: u32::try_from(iface.ifindex).unwrap_or(0),
            queue_id: 0,
            shared_umem_fd: 0,
        };
        let sa_len = libc::socklen_t::try_from(size_of::<SockaddrXdp>()).unwrap_or(0);
        // SAFETY: `sa` is a live sockaddr_xdp of `sa_len` bytes.
        let bound = cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), sa_len) });
        let xsk_program = bound.and_then(|_| program(&fd, iface.ifindex));
        let (map, prog, link) = match xsk_program {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: as above.
                unsafe { libc::munmap(umem.cast(), umem_len) };
                return Err(e);
            }
        };
        Ok(Self {
            ingress,
            umem,
            umem_len,
            fill,
            comp,
            rx,
            tx,
            free,
            _link: link,
            _prog: prog,
            _map: map,
            fd,
        })
    }

    /// Copy received frames into `slots`, giving their chunks back to the fill ring.
    fn read(&mut self, slots: &mut [super::Slot]) -> usize {
        let prod = self.rx.producer().load(Ordering::Acquire);
        let cons = self.rx.consumer().load(Ordering::Relaxed);
        let n = prod
            .wrapping_sub(cons)
            .min(u32::try_from(slots.len()).unwrap_or(0));
        let fill_at = self.fill.producer().load(Ordering::Relaxed);
        for (k, slot) in slots.iter_mut().take(n as usize).enumerate() {
            let k32 = u32::try_from(k).unwrap_or(0);
            let d = self.rx.get(cons.wrapping_add(k32));
            let buf = slot.buffer_mut();
            let at = usize::try_from(d.addr).unwrap_or(0) % self.umem_len;
            // Never past the UMEM, whatever the descriptor says.
            let len = (d.len as usize)
                .min(FRAME_SIZE as usize)
                .min(buf.len())
                .min(self.umem_len - at);
            // SAFETY: `at < umem_len` and `len <= umem_len - at`, so `at .. at + len` lies
            // within the UMEM mapping; the kernel wrote the frame there before publishing
            // the descriptor (acquire load of the producer index above).
            let src = unsafe { core::slice::from_raw_parts(self.umem.add(at), len) };
            buf[..len].copy_from_slice(src);
            slot.set_len(len);
            slot.ingress = self.ingress;
            slot.vnet = VnetHdr::NONE;
            slot.vlan = VlanTag::None;
            slot.truncated = false;
            // The chunk goes straight back to the kernel for the next frame.
            self.fill.set(
                fill_at.wrapping_add(k32),
                d.addr & !u64::from(FRAME_SIZE - 1),
            );
        }
        self.rx
            .consumer()
            .store(cons.wrapping_add(n), Ordering::Release);
        self.fill
            .producer()
            .store(fill_at.wrapping_add(n), Ordering::Release);
        n as usize
    }

    /// Take back the chunks of frames the kernel has sent.
    fn reclaim(&mut self) {
        let prod = self.comp.producer().load(Ordering::Acquire);
        let cons = self.comp.consumer().load(Ordering::Relaxed);
        let n = prod.wrapping_sub(cons);
        for k in 0..n {
            self.free.push(self.comp.get(cons.wrapping_add(k)));
        }
        self.comp
            .consumer()
            .store(cons.wrapping_add(n), Ordering::Release);
    }

    /// Queue `bytes` for transmit; false if no chunk or descriptor is free.
    fn push(&mut self, at: &mut u32, bytes: &[u8]) -> bool {
        let cons = self.tx.consumer().load(Ordering::Acquire);
        if at.wrapping_sub(cons) >= RING || bytes.len() > FRAME_SIZE as usize {
            return false;
        }
        let Some(addr) = self.free.pop() else {
            return false;
        };
        let off = usize::try_from(addr).unwrap_or(0) % self.umem_len;
        // SAFETY: `off .. off + len` is one of our chunks (len <= chunk size), not owned by
        // the kernel (it came back through the completion ring or was never given).
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.umem.add(off), bytes.len());
        }
        self.tx.set(
            *at,
            XdpDesc {
                addr,
                len: u32::try_from(bytes.len()).unwrap_or(0),
                options: 0,
            },
        );
        *at = at.wrapping_add(1);
        true
    }

    /// Publish queued descriptors and kick the kernel (copy mode sends on `sendto`).
    fn kick(&self, at: u32) {
        self.tx.producer().store(at, Ordering::Release);
        // SAFETY: a zero-length sendto on our socket: the documented AF_XDP transmit kick.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                core::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                core::ptr::null(),
                0,
            );
        }
    }
}

/// The XSKMAP with `fd` at key 0, the redirecting program, and its link on `ifindex`.
fn program(fd: &OwnedFd, ifindex: i32) -> io::Result<(OwnedFd, OwnedFd, OwnedFd)> {
    let mut attr = [0u64; 16];
    put_u32(&mut attr, 0, BPF_MAP_TYPE_XSKMAP);
    put_u32(&mut attr, 4, 4); // key size
    put_u32(&mut attr, 8, 4); // value size
    put_u32(&mut attr, 12, 1); // max entries
    let map = bpf(BPF_MAP_CREATE, &mut attr)?;
    let key = 0u32;
    let value = u32::try_from(fd.as_raw_fd()).unwrap_or(0);
    let mut attr = [0u64; 16];
    put_u32(&mut attr, 0, u32::try_from(map.as_raw_fd()).unwrap_or(0));
    attr[1] = (&raw const key) as u64;
    attr[2] = (&raw const value) as u64;
    // BPF_MAP_UPDATE_ELEM returns 0, not a descriptor.
    // SAFETY: `attr` is live and its pointers point at live `key` and `value`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            attr.as_mut_ptr(),
            128usize,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let map_fd = map.as_raw_fd();
    // r2 = ctx->rx_queue_index; r1 = &xsks_map; r3 = XDP_PASS;
    // return bpf_redirect_map(r1, r2, r3)
    let insns: [u64; 6] = [
        insn(0x61, 2, 1, 16, 0),
        insn(0x18, 1, 1, 0, map_fd),
        0,
        insn(0xb7, 3, 0, 0, 2),
        insn(0x85, 0, 0, 0, 51),
        insn(0x95, 0, 0, 0, 0),
    ];
    let prog = super::bpf::load(BPF_PROG_TYPE_XDP, &insns)?;
    let mut attr = [0u64; 16];
    put_u32(&mut attr, 0, u32::try_from(prog.as_raw_fd()).unwrap_or(0));
    put_u32(&mut attr, 4, u32::try_from(ifindex).unwrap_or(0));
    put_u32(&mut attr, 8, BPF_XDP);
    put_u32(&mut attr, 12, XDP_FLAGS_DRV_MODE);
    let link = bpf(BPF_LINK_CREATE, &mut attr)?;
    Ok((map, prog, link))
}

/// The copies of a forwarded frame in copy mode: the kernel into the UMEM, the worker into
/// its batch; the worker into the UMEM, the kernel into an skb.
pub const COPIES: super::Copies = super::Copies {
    receive: 2,
    transmit: 2,
    by_daemon: 2,
};

/// A worker's XDP sockets, one per attachment.
#[derive(Debug)]
pub struct AfXdpBackend {
    socks: Vec<Xsk>,
    spin: Spin,
    warm: bool,
}

impl AfXdpBackend {
    /// An XDP socket on each of `attachments` (in `Attachment` order), with the bounded spin
    /// `spin` before sleeping.
    ///
    /// # Errors
    /// The kernel refused the socket, a ring, the program or its attachment.
    pub fn open(attachments: &[(&Interface, Attachment)], spin: Spin) -> io::Result<Self> {
        if attachments.len() > MAX_SOCKS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "af_xdp serves at most 64 attachments",
            ));
        }
        let socks = attachments
            .iter()
            .map(|&(iface, vpc)| Xsk::open(iface, vpc))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            socks,
            spin,
            warm: false,
        })
    }

    fn ready(&self) -> bool {
        self.socks.iter().any(|s| {
            s.rx.producer().load(Ordering::Acquire) != s.rx.consumer().load(Ordering::Relaxed)
        })
    }

    fn read_all(&mut self, batch: &mut Batch) -> usize {
        let cap = batch.capacity();
        let mut filled = 0;
        for s in &mut self.socks {
            if filled >= cap {
                break;
            }
            filled += s.read(&mut batch.slots_mut()[filled..cap]);
        }
        filled
    }

    fn poll(&self, timeout: Duration) -> io::Result<()> {
        // No allocation per wait: at most MAX_SOCKS sockets are polled.
        let mut fds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; MAX_SOCKS];
        for (pfd, s) in fds.iter_mut().zip(&self.socks) {
            pfd.fd = s.fd.as_raw_fd();
            pfd.events = libc::POLLIN;
        }
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        let n = libc::nfds_t::try_from(self.socks.len().min(MAX_SOCKS)).unwrap_or(0);
        // SAFETY: `fds` are valid pollfds that outlive the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), n, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Backend for AfXdpBackend {
    fn recv(&mut self, batch: &mut Batch, timeout: Duration) -> Result<usize, BackendError> {
        let mut filled = self.read_all(batch);
        let idle_from = Instant::now();
        if filled == 0 && self.warm && !self.spin.budget().is_zero() {
            let start = idle_from;
            while !self.ready() && !self.spin.expired(start) {
                core::hint::spin_loop();
            }
            filled = self.read_all(batch);
            self.spin.spun(start, filled > 0);
        }
        if filled == 0 {
            self.poll(timeout)?;
            let idle = idle_from.elapsed();
            filled = self.read_all(batch);
            if !timeout.is_zero() {
                self.spin.slept(idle, filled > 0);
            }
        }
        self.warm = filled > 0;
        batch.set_filled(filled);
        Ok(filled)
    }

    fn take_stats(&mut self) -> super::IoStats {
        super::IoStats {
            queue_drops: 0,
            spin: self.spin.take_stats(),
        }
    }

    fn send(&mut self, batch: &Batch) -> Result<usize, BackendError> {
        let mut failed = 0;
        for s in &mut self.socks {
            s.reclaim();
            let vpc = s.ingress;
            let start = s.tx.producer().load(Ordering::Relaxed);
            let mut at = start;
            for slot in batch.filled() {
                let Some((out, _, bytes)) = slot.output() else {
                    continue;
                };
                if out == vpc && !s.push(&mut at, bytes) {
                    failed += 1;
                }
            }
            if at != start {
                s.kick(at);
            }
        }
        Ok(failed)
    }
}
