//! Frames in batches through a packet socket's own calls: `recvmmsg` into the batch's
//! slots, each after its `virtio_net_hdr` and with its `PACKET_AUXDATA` (the VLAN tag the
//! kernel stripped), and `sendmmsg` of frames each after its `virtio_net_hdr`. The
//! AF_PACKET backend's default I/O; the rings are the alternatives.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::packet::{SOL_PACKET, TP_STATUS_VLAN_VALID};
use super::{Slot, VlanTag};
use crate::flow::Attachment;
use crate::wire::offload::{VNET_HDR_LEN, VnetHdr};

/// Most frames one `recvmmsg`/`sendmmsg` handles; batches are capped to it.
pub const MAX_BATCH: usize = 64;
pub(super) const PACKET_AUXDATA: libc::c_int = 8;
/// Room for one `PACKET_AUXDATA` control message.
const CMSG_SPACE: usize = 64;

/// Size of `struct tpacket_auxdata`.
const AUXDATA_LEN: u32 = 20;

/// `struct tpacket_auxdata`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// The VLAN tag `PACKET_AUXDATA` reports for a received message, if any.
fn vlan_of(hdr: &libc::msghdr) -> VlanTag {
    // SAFETY: the kernel filled `msg_control` up to `msg_controllen`; CMSG_FIRSTHDR and
    // CMSG_NXTHDR stay within it. A PACKET_AUXDATA payload is read only when `cmsg_len`
    // covers a whole `tpacket_auxdata` (read unaligned: cmsg data alignment is only the
    // kernel's promise).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let whole = (*c).cmsg_len as usize >= libc::CMSG_LEN(AUXDATA_LEN) as usize;
            if (*c).cmsg_level == SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA && whole {
                let aux = core::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<TpacketAuxdata>());
                return if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                    VlanTag::Tagged(aux.tp_vlan_tci & 0x0fff)
                } else {
                    VlanTag::None
                };
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    VlanTag::None
}

const _: () = assert!(size_of::<TpacketAuxdata>() == AUXDATA_LEN as usize);

/// Read what `fd` has queued, without blocking, into `slots` (at most [`MAX_BATCH`]) as
/// frames of `ingress`; returns how many arrived (0 if none was waiting).
///
/// # Errors
/// The socket reported an error (a link down or gone, a broken socket).
pub(super) fn recv_mmsg(
    fd: &OwnedFd,
    ingress: Attachment,
    slots: &mut [Slot],
) -> io::Result<usize> {
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut iov: [[libc::iovec; 2]; MAX_BATCH] = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { core::mem::zeroed() };
    let mut vnet = [[0u8; VNET_HDR_LEN]; MAX_BATCH];
    let mut cmsg = [[0u64; CMSG_SPACE / 8]; MAX_BATCH];
    for (i, slot) in slots.iter_mut().take(MAX_BATCH).enumerate() {
        let buf = slot.buffer_mut();
        iov[i] = [
            libc::iovec {
                iov_base: vnet[i].as_mut_ptr().cast(),
                iov_len: VNET_HDR_LEN,
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
        ];
        msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
        msgs[i].msg_hdr.msg_iovlen = 2;
        msgs[i].msg_hdr.msg_control = cmsg[i].as_mut_ptr().cast();
        msgs[i].msg_hdr.msg_controllen = CMSG_SPACE;
    }
    let n = slots.len().min(MAX_BATCH);
    let vlen = libc::c_uint::try_from(n).unwrap_or(0);
    // SAFETY: `msgs[..n]` point at `iov[..n]`, each pair at a live `vnet` entry and a live
    // slot buffer of the stated lengths, and at `cmsg[..n]` (CMSG_SPACE bytes each); all
    // outlive the call.
    let got = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            vlen,
            libc::MSG_DONTWAIT,
            core::ptr::null_mut(),
        )
    };
    if got < 0 {
        let e = io::Error::last_os_error();
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ) {
            return Ok(0);
        }
        return Err(e);
    }
    let got = usize::try_from(got).unwrap_or(0);
    for (i, slot) in slots.iter_mut().enumerate().take(got) {
        let hdr = &msgs[i].msg_hdr;
        let len = usize::try_from(msgs[i].msg_len)
            .unwrap_or(0)
            .saturating_sub(VNET_HDR_LEN)
            .min(slot.buffer_mut().len());
        slot.set_len(len);
        slot.ingress = ingress;
        slot.vnet = VnetHdr::from_bytes(&vnet[i]);
        slot.truncated = hdr.msg_flags & libc::MSG_TRUNC != 0;
        slot.vlan = if hdr.msg_flags & libc::MSG_CTRUNC != 0 {
            VlanTag::Unknown
        } else {
            vlan_of(hdr)
        };
    }
    Ok(got)
}

/// Send `frames` (at most [`MAX_BATCH`]) on `fd` with their offload metadata; returns how
/// many were lost: the rest of the batch when the link is down or gone, else each frame the
/// kernel refused (a full queue, over the MTU, a vnet header it refuses), the others still
/// sent. A frame a peer sent can never stop the worker.
///
/// # Errors
/// The socket itself is unusable (`EBADF`, `ENOTSOCK`, `EFAULT`).
pub(super) fn send_mmsg<'a>(
    fd: &OwnedFd,
    frames: impl Iterator<Item = (VnetHdr, &'a [u8])>,
) -> io::Result<usize> {
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut iov: [[libc::iovec; 2]; MAX_BATCH] = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { core::mem::zeroed() };
    let mut vnet = [[0u8; VNET_HDR_LEN]; MAX_BATCH];
    let (mut n, mut failed) = (0, 0);
    for (hdr, bytes) in frames.take(MAX_BATCH) {
        vnet[n] = hdr.to_bytes();
        iov[n] = [
            libc::iovec {
                iov_base: vnet[n].as_mut_ptr().cast(),
                iov_len: VNET_HDR_LEN,
            },
            libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            },
        ];
        msgs[n].msg_hdr.msg_iov = iov[n].as_mut_ptr();
        msgs[n].msg_hdr.msg_iovlen = 2;
        n += 1;
    }
    let mut sent = 0;
    while sent < n {
        let vlen = libc::c_uint::try_from(n - sent).unwrap_or(0);
        // SAFETY: `msgs[sent..n]` point at `iov`, each pair at a live `vnet` entry and
        // a live slot buffer of the stated lengths, which the kernel only reads; all
        // outlive the call.
        let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr().add(sent), vlen, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                // The egress link is down or gone: the rest of this batch for it
                // is lost, counted; the receive side notices and checks the link.
                _ if matches!(
                    e.raw_os_error(),
                    Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV | libc::EIO)
                ) =>
                {
                    failed += n - sent;
                    break;
                }
                // The socket itself is unusable: the worker cannot go on.
                _ if matches!(
                    e.raw_os_error(),
                    Some(libc::EBADF | libc::ENOTSOCK | libc::EFAULT)
                ) =>
                {
                    return Err(e);
                }
                // Anything else concerns the first frame of what was left (a full
                // queue, a frame over the egress MTU, a vnet header the kernel
                // refuses): that frame is lost, counted, and the rest of the batch
                // still goes. A frame a peer sent can never stop the worker.
                _ => {
                    failed += 1;
                    sent += 1;
                }
            }
        } else {
            sent += usize::try_from(r).unwrap_or(1).max(1);
        }
    }
    Ok(failed)
}
