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
