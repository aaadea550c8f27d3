//! The few `bpf(2)` calls the daemon makes itself (the AF_XDP backend's redirect program,
//! the kernel ingress drop): no loader library, no object files; each program is a handful
//! of instructions written out where it is used.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;

/// `bpf(cmd, attr, 128)`; `attr` is the zero-padded `union bpf_attr`.
pub(crate) fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live 128-byte buffer, larger than every command's part of the
    // union; the kernel checks the tail it does not know is zero.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128usize) };
    let fd = libc::c_int::try_from(r).unwrap_or(-1);
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the command returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Write `v` at byte offset `at` of a `bpf_attr`.
pub(crate) fn put_u32(attr: &mut [u64; 16], at: usize, v: u32) {
    let word = &mut attr[at / 8];
    let shift = (at % 8) * 8;
    *word = (*word & !(0xffff_ffff << shift)) | (u64::from(v) << shift);
}

/// One `struct bpf_insn` as a little-endian u64.
pub(crate) fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from((src << 4) | (dst & 0x0f)) << 8)
        | (u64::from(off.cast_unsigned()) << 16)
        | (u64::from(imm.cast_unsigned()) << 32)
}

/// Load a program of `kind` (`BPF_PROG_TYPE_*`) made of `insns`.
pub(crate) fn load(kind: u32, insns: &[u64]) -> io::Result<OwnedFd> {
    let license = b"GPL\0";
    let mut attr = [0u64; 16];
    put_u32(&mut attr, 0, kind);
    put_u32(&mut attr, 4, u32::try_from(insns.len()).unwrap_or(u32::MAX));
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    bpf(BPF_PROG_LOAD, &mut attr)
}
