//! A packet socket for a control-plane service that owns one IPv4 address on an attachment
//! (the private DNS resolver): a classic BPF filter, attached before the socket is bound,
//! lets through only ARP frames whose target is that address and IPv4 packets to it, so
//! the service never sees, nor pays for, the traffic the workers forward.
//!
//! The workers' own sockets still see those frames; the pipeline knows the address (see
//! [`crate::tables::Tables::is_service_address`]) and leaves them to the service.
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

use super::af_packet::{Interface, bind, packet_socket};
use super::sys::{cvt, setsockopt};
use crate::wire::ethernet::MacAddr;
use crate::wire::offload::{VNET_HDR_LEN, VnetHdr, complete_partial};

const ETH_P_ALL: u16 = 0x0003;

/// The filter: `arp and arp[24:4] = addr`, or `ip and ip[16:4] = addr` (offsets from the
/// Ethernet header; the kernel has already taken any VLAN tag off).
fn filter(addr: Ipv4Addr) -> [libc::sock_filter; 9] {
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JA: u16 = 0x05; // BPF_JMP | BPF_JA
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let ip = addr.to_bits();
    [
        op(LD_H_ABS, 0, 0, 12),       // 0: A = ethertype
        op(JEQ_K, 0, 2, 0x0806),      // 1: ARP? 2 : 4
        op(LD_W_ABS, 0, 0, 14 + 24),  // 2: A = ARP target protocol address
        op(JA, 0, 0, 2),              // 3: -> 6
        op(JEQ_K, 0, 3, 0x0800),      // 4: IPv4? 5 : 8
        op(LD_W_ABS, 0, 0, 14 + 16),  // 5: A = IPv4 destination
        op(JEQ_K, 0, 1, ip),          // 6: ours? 7 : 8
        op(RET_K, 0, 0, 0x0004_0000), // 7: accept (up to 256 KiB)
        op(RET_K, 0, 0, 0),           // 8: drop
    ]
}

/// A non-blocking packet socket that sees only the frames for one address.
#[derive(Debug)]
pub struct PuntSocket {
    fd: OwnedFd,
    mac: MacAddr,
    mtu: usize,
}

impl PuntSocket {
    /// A socket on `iface` for the frames of `addr`.
    ///
    /// # Errors
    /// The socket, filter or bind calls failed (no `CAP_NET_RAW`, no such interface).
    pub fn open(iface: &Interface, addr: Ipv4Addr) -> io::Result<Self> {
        // Protocol 0: nothing is received until the bind below, after the filter is in.
        let fd = packet_socket(0)?;
        let program = filter(addr);
        let prog = libc::sock_fprog {
            len: u16::try_from(program.len()).unwrap_or(0),
            filter: program.as_ptr().cast_mut(),
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &1)?;
        bind(&fd, iface.ifindex, ETH_P_ALL)?;
        Ok(Self {
            fd,
            mac: iface.mac,
            mtu: iface.mtu,
        })
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
