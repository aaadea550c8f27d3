//! A packet socket for a control-plane service that owns one IPv4 address on an attachment
//! (the private DNS resolver): a classic BPF filter, attached before the socket is bound,
//! lets through only ARP frames whose target is that address and IPv4 packets to it, so
//! the service never sees, nor pays for, the traffic the workers forward.
//!
//! The workers' own sockets still see those frames; the pipeline knows the address (see
//! [`crate::tables::Tables::is_service_address`]) and leaves them to the service, which
//! must then apply the workers' source checks itself
//! ([`crate::pipeline::service::check_service_frame`]). The filter can also drop the frames
//! of a few source MACs ([`PuntSocket::block`]: clients past the service's rate), so a
//! flood from one client neither costs the service nor fills the queue the others wait in.
//!
//! Like the workers' sockets it uses `PACKET_VNET_HDR`, so a frame whose transport checksum
//! the sender left to offload (a veth peer at its default offloads) can be recognised and
//! its checksum finished here; the service's stack then sees ordinary frames. Super-frames
//! (GSO) are not for a service that takes single queries: they are dropped.

#![allow(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use super::packet::{Interface, bind, packet_socket};
use super::sys::{cvt, setsockopt};
use crate::wire::ethernet::MacAddr;
use crate::wire::offload::{VNET_HDR_LEN, VnetHdr, complete_partial};

const ETH_P_ALL: u16 = 0x0003;
/// The socket's receive buffer, bytes (about 5,000 small frames).
const RECV_BUFFER: libc::c_int = 4 << 20;

/// The most source MACs [`PuntSocket::block`] takes (the filter's jumps stay under 256).
pub const MAX_BLOCKED: usize = 32;

/// The filter: no frame from a MAC of `blocked`, then `arp and arp[24:4] = addr`, or
/// `ip and ip[16:4] = addr` (offsets from the Ethernet header; the kernel has already taken
/// any VLAN tag off).
fn filter(addr: Ipv4Addr, blocked: &[MacAddr]) -> Vec<libc::sock_filter> {
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JA: u16 = 0x05; // BPF_JMP | BPF_JA
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let blocked = &blocked[..blocked.len().min(MAX_BLOCKED)];
    let mut program = Vec::with_capacity(4 * blocked.len() + 9);
    for (i, mac) in blocked.iter().enumerate() {
        let [a, b, c, d, e, f] = mac.0;
        // From entry i's last jump to the final drop: the entries after it, then 8.
        let to_drop = u8::try_from(4 * (blocked.len() - i - 1) + 8).unwrap_or(u8::MAX);
        program.extend([
            op(LD_W_ABS, 0, 0, 6), // A = source MAC, first four bytes
            op(JEQ_K, 0, 2, u32::from_be_bytes([a, b, c, d])),
            op(LD_H_ABS, 0, 0, 10), // A = its last two bytes
            op(JEQ_K, to_drop, 0, u32::from(u16::from_be_bytes([e, f]))),
        ]);
    }
    let ip = addr.to_bits();
    program.extend([
        op(LD_H_ABS, 0, 0, 12),       // 0: A = ethertype
        op(JEQ_K, 0, 2, 0x0806),      // 1: ARP? 2 : 4
        op(LD_W_ABS, 0, 0, 14 + 24),  // 2: A = ARP target protocol address
        op(JA, 0, 0, 2),              // 3: -> 6
        op(JEQ_K, 0, 3, 0x0800),      // 4: IPv4? 5 : 8
        op(LD_W_ABS, 0, 0, 14 + 16),  // 5: A = IPv4 destination
        op(JEQ_K, 0, 1, ip),          // 6: ours? 7 : 8
        op(RET_K, 0, 0, 0x0004_0000), // 7: accept (up to 256 KiB)
        op(RET_K, 0, 0, 0),           // 8: drop
    ]);
    program
}

/// Attach `program` to `fd` (replacing any filter there).
fn attach(fd: &OwnedFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).unwrap_or(0),
        filter: program.as_ptr().cast_mut(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// A non-blocking packet socket that sees only the frames for one address.
#[derive(Debug)]
pub struct PuntSocket {
    fd: OwnedFd,
    mac: MacAddr,
    mtu: usize,
    addr: Ipv4Addr,
}

impl PuntSocket {
    /// A socket on `iface` for the frames of `addr`.
    ///
    /// # Errors
    /// The socket, filter or bind calls failed (no `CAP_NET_RAW`, no such interface).
    pub fn open(iface: &Interface, addr: Ipv4Addr) -> io::Result<Self> {
        // Protocol 0: nothing is received until the bind below, after the filter is in.
        let fd = packet_socket(0)?;
        attach(&fd, &filter(addr, &[]))?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &1)?;
        // Room for bursts: a flooding client's frames are dropped by the service after the
        // read (its per-client rate), so the queue must not overflow before they are read
        // and take other clients' frames with them. Past `rmem_max` with CAP_NET_ADMIN.
        let room: libc::c_int = RECV_BUFFER;
        if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &room).is_err() {
            setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &room)?;
        }
        bind(&fd, iface.ifindex, ETH_P_ALL)?;
        Ok(Self {
            fd,
            mac: iface.mac,
            mtu: iface.mtu,
            addr,
        })
    }

    /// From now on, let the kernel drop every frame whose source MAC is one of `macs` (the
    /// first [`MAX_BLOCKED`]) before it is queued: a client past its rate costs the service
    /// nothing, and cannot fill the queue other clients' frames wait in. Replaces the last
    /// list; an empty one blocks nothing.
    ///
    /// # Errors
    /// The filter could not be attached (the old one stays).
    pub fn block(&self, macs: &[MacAddr]) -> io::Result<()> {
        attach(&self.fd, &filter(self.addr, macs))
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The interface's MTU.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Bytes [`PuntSocket::send`] needs in front of a frame.
    pub const HEADROOM: usize = VNET_HDR_LEN;

    /// Read one frame into `buf` without waiting; `None` if there is none (or it was a
    /// super-frame, or larger than `buf`). Checksums come complete.
    ///
    /// # Errors
    /// The receive failed (the link went away).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        // MSG_TRUNC reports the real length: a frame larger than `buf` is dropped.
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > buf.len() || n < VNET_HDR_LEN {
            return Ok(None);
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        hdr.copy_from_slice(&buf[..VNET_HDR_LEN]);
        let vnet = VnetHdr::from_bytes(&hdr);
        if vnet.is_gso() {
            return Ok(None);
        }
        buf.copy_within(VNET_HDR_LEN..n, 0);
        let len = n - VNET_HDR_LEN;
        if vnet.needs_csum() && !complete_partial(&mut buf[..len]) {
            return Ok(None);
        }
        Ok(Some(len))
    }

    /// Send one whole Ethernet frame, which starts [`PuntSocket::HEADROOM`] bytes into
    /// `buf` (the room is overwritten with a plain vnet header).
    ///
    /// # Errors
    /// The send failed (full queue, link down).
    pub fn send(&self, buf: &mut [u8]) -> io::Result<()> {
        let Some(room) = buf.get_mut(..VNET_HDR_LEN) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no headroom"));
        };
        room.copy_from_slice(&VnetHdr::NONE.to_bytes());
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        cvt(if n < 0 { -1 } else { 0 })?;
        Ok(())
    }

    /// Frames the kernel dropped because the socket's queue was full, since the last call
    /// (`PACKET_STATISTICS`, which resets on read); 0 if it cannot be read.
    pub fn take_drops(&self) -> u64 {
        super::sys::take_packet_drops(&self.fd)
    }

    /// Wait up to `timeout` for a frame; true if one is there.
    ///
    /// # Errors
    /// `poll` failed.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pfd` is one valid pollfd that outlives the call.
        let r = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        Ok(r > 0 && pfd.revents & libc::POLLIN != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a classic BPF program of the kinds [`filter`] emits over `frame`: the bytes it
    /// accepts (0: dropped).
    fn run(program: &[libc::sock_filter], frame: &[u8]) -> u32 {
        let load = |k: u32, n: usize| {
            let k = k as usize;
            frame
                .get(k..k + n)
                .map(|b| b.iter().fold(0u32, |a, x| a << 8 | u32::from(*x)))
        };
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = program[pc];
            pc += 1;
            match i.code {
                0x28 => match load(i.k, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                0x20 => match load(i.k, 4) {
                    Some(v) => a = v,
                    None => return 0,
                },
                0x15 => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                0x05 => pc += i.k as usize,
                0x06 => return i.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    fn frame(src: MacAddr, ethertype: u16, dst_ip: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        let at = if ethertype == 0x0806 {
            14 + 24
        } else {
            14 + 16
        };
        f[at..at + 4].copy_from_slice(&dst_ip.octets());
        f
    }

    #[test]
    fn the_filter_takes_the_address_and_drops_blocked_macs() {
        let addr = Ipv4Addr::new(10, 0, 0, 2);
        let other = Ipv4Addr::new(10, 0, 0, 3);
        let mac = |i: u8| MacAddr([2, 0, 0, 0, i, i]);
        let blocked: Vec<MacAddr> = (0..u8::try_from(MAX_BLOCKED).unwrap()).map(mac).collect();
        for list in [&[][..], &blocked[..1], &blocked[..]] {
            let p = filter(addr, list);
            for kind in [0x0800, 0x0806] {
                assert!(run(&p, &frame(mac(200), kind, addr)) > 0, "ours passes");
                assert_eq!(run(&p, &frame(mac(200), kind, other)), 0, "not ours");
                for m in list {
                    assert_eq!(run(&p, &frame(*m, kind, addr)), 0, "{m:?} is blocked");
                }
            }
            // Same first four bytes as a blocked MAC, other last two: not blocked.
            assert!(run(&p, &frame(MacAddr([2, 0, 0, 0, 0, 9]), 0x0800, addr)) > 0);
            assert_eq!(run(&p, &frame(mac(1), 0x86dd, addr)), 0, "IPv6");
        }
        // Past the bound, the rest are ignored (and the program stays valid).
        let more: Vec<MacAddr> = (0..40).map(mac).collect();
        assert_eq!(filter(addr, &more).len(), 4 * MAX_BLOCKED + 9);
    }
}
