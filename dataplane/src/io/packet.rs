//! The packet socket and the interface it binds to: what the AF_PACKET backend's receive
//! sockets and every attachment's shared transmit socket ([`super::link`]) are made of.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::sys::cvt;
use crate::wire::ethernet::MacAddr;

// Kernel ABI constants (linux/if_packet.h); stable since their introduction.
pub(super) const SOL_PACKET: libc::c_int = 263;
pub(super) const PACKET_VNET_HDR: libc::c_int = 15;
pub(super) const PACKET_VERSION: libc::c_int = 10;
pub(super) const PACKET_RX_RING: libc::c_int = 5;
pub(super) const TPACKET_V2: libc::c_int = 1;
/// A receive ring's frame (or block) status: the kernel's to write, or ours to read.
pub(super) const TP_STATUS_KERNEL: u32 = 0;
pub(super) const TP_STATUS_USER: u32 = 1;
/// The frame had an 802.1Q tag the kernel stripped; its id is in the frame header.
pub(super) const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

/// `struct tpacket_req`: a TPACKET_V1/V2 ring's geometry (`PACKET_RX_RING`,
/// `PACKET_TX_RING`).
#[repr(C)]
pub(super) struct TpacketReq {
    pub(super) tp_block_size: u32,
    pub(super) tp_block_nr: u32,
    pub(super) tp_frame_size: u32,
    pub(super) tp_frame_nr: u32,
}

/// A network interface the daemon attaches to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its index.
    pub ifindex: i32,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its MTU.
    pub mtu: usize,
}

impl Interface {
    /// Look an interface up by name (in the caller's network namespace).
    ///
    /// # Errors
    /// `NotFound` if there is no such interface; other I/O errors reading sysfs.
    pub fn lookup(name: &str) -> io::Result<Self> {
        let cname = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
        // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface named {name}"),
            ));
        }
        let sys = |f: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{name}/{f}"))
                .map(|s| s.trim().to_string())
        };
        let mac = sys("address")?.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name} has no Ethernet address"),
            )
        })?;
        let mtu = sys("mtu")?.parse().unwrap_or(1500);
        Ok(Self {
            name: name.into(),
            ifindex: i32::try_from(ifindex).unwrap_or(i32::MAX),
            mac,
            mtu,
        })
    }
}

/// A raw packet socket for `protocol` (host order; 0 receives nothing).
pub(super) fn packet_socket(protocol: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the returned descriptor is owned by the OwnedFd below.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(protocol.to_be()),
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bind `fd` to interface `ifindex` for `protocol` (host order).
pub(super) fn bind(fd: &OwnedFd, ifindex: i32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
    sll.sll_family = libc::sa_family_t::try_from(libc::AF_PACKET).unwrap_or(17);
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(20);
    // SAFETY: `sll` is a valid sockaddr_ll of `len` bytes that outlives the call.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), len) })?;
    Ok(())
}
