//! Memory advice for the large tables the core allocates: transparent huge pages for the
//! conntrack table, so a lookup's cache miss is not also a TLB miss (a two-dimensional page
//! walk in a virtual machine). Advice only: nothing is mapped, moved or freed here.

#![allow(unsafe_code)]

use std::io;

use super::sys::cvt;

/// Huge-page size the advice aligns to (x86-64 and aarch64 with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Ask the kernel to back the whole 2 MiB pages inside `[addr, addr + len)` with
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`); returns the bytes advised (0 if the
/// region holds no whole huge page). Takes effect for pages not yet touched, so call it
/// right after the allocation. With THP `never` (or not built into the kernel) the call
/// fails and the memory keeps its small pages.
///
/// `addr` and `len` must describe memory of a live allocation of the caller (as
/// [`crate::conntrack::ConnTrack::regions`] gives).
///
/// # Errors
/// The kernel refused the advice.
pub fn advise_huge_pages(addr: usize, len: usize) -> io::Result<usize> {
    let start = addr.next_multiple_of(HUGE_PAGE);
    let end = (addr + len) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return Ok(0);
    }
    // SAFETY: MADV_HUGEPAGE changes only how the kernel backs the range's pages; it never
    // changes their contents or unmaps them, and the range lies inside the caller's live
    // allocation (aligned inward), so no other memory's policy changes.
    cvt(unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) })?;
    Ok(end - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_covers_the_whole_huge_pages_inside_the_region_only() {
        let buf = vec![0u8; 3 * HUGE_PAGE];
        let addr = buf.as_ptr() as usize;
        assert_eq!(
            advise_huge_pages(addr, HUGE_PAGE / 2).unwrap(),
            0,
            "no whole page"
        );
        match advise_huge_pages(addr, buf.len()) {
            // Three pages' worth holds two whole aligned ones, or three if aligned.
            Ok(n) => assert!(n == 2 * HUGE_PAGE || n == 3 * HUGE_PAGE, "{n}"),
            // A kernel without transparent huge pages refuses the advice.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}"),
        }
    }
}
