//! The few system-call helpers the Linux backends share: errno to `io::Error`, and
//! `setsockopt` with a value of any plain type.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// A negative return is the thread's `errno`.
pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `setsockopt(fd, level, name, &value, size_of::<T>())`. `T` must be the plain C value the
/// option expects (an int, a `struct tpacket_req3`, ...).
pub(super) fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).unwrap_or(0);
    // SAFETY: `value` points at a live `T` of `len` bytes for the duration of the call.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), len) })?;
    Ok(())
}

/// Map `len` bytes at `offset` of the ring configured on socket `fd` (a packet socket's
/// ring, or an XDP socket's: shared with the kernel, populated at once).
///
/// # Errors
/// The kernel refused the mapping.
pub(super) fn map_ring(fd: &OwnedFd, len: usize, offset: libc::off_t) -> io::Result<*mut u8> {
    // SAFETY: a fresh shared mapping of the socket's ring, `len` bytes as configured; the
    // result is checked here, and its owner unmaps it once ([`unmap_ring`]).
    let map = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            offset,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(map.cast())
}

/// Unmap what [`map_ring`] mapped.
///
/// # Safety
/// `map` and `len` are a mapping made by [`map_ring`], not yet unmapped, and nothing refers
/// into it any more.
pub(super) unsafe fn unmap_ring(map: *mut u8, len: usize) {
    // SAFETY: the caller's promise.
    unsafe {
        libc::munmap(map.cast(), len);
    }
}

/// Frames the kernel dropped on packet socket `fd` since the last call because its receive
/// queue or ring was full (`PACKET_STATISTICS`, which resets on read); 0 if it cannot be
/// read.
pub(super) fn take_packet_drops(fd: &OwnedFd) -> u64 {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = libc::socklen_t::try_from(size_of_val(&stats)).unwrap_or(0);
    // SAFETY: `stats` and `len` are valid for writes and outlive the call; `len` is
    // `stats`'s size (a ring of TPACKET_V3 writes a larger struct only if `len` allows).
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&raw mut stats).cast(),
            &raw mut len,
        )
    };
    if r < 0 { 0 } else { u64::from(stats.tp_drops) }
}
