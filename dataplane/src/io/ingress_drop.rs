//! The kernel ingress drop on an attachment: a `cls_bpf` filter in direct-action mode on
//! the `clsact` qdisc's ingress hook, whose two-instruction program answers `TC_ACT_SHOT`
//! for every frame. Packet sockets take their copy of a frame before tc ingress, so the
//! workers still see everything while the node's own stack spends nothing on the frames
//! (and never answers for a tenant's address).
//!
//! The daemon installs it itself: the program is loaded with `bpf(2)` and the qdisc and
//! filter are made with rtnetlink messages written here. No `tc` binary, and no classifier
//! other than `cls_bpf`, which every kernel with `clsact` (4.5 on) has: some kernels ship
//! without `cls_matchall` (seen: 6.18), where a `matchall` drop silently never existed.
//! [`installed`] asks the kernel whether the filter is in place, for `/status`.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::bpf::{insn, load};

/// The filter's name in the kernel (`tc filter show` prints it).
pub const NAME: &str = "vpcep_ingress_drop";
/// Its preference (priority) on the ingress hook.
const PREF: u32 = 49_152;

const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const TC_ACT_SHOT: i32 = 2;

const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_NEWTFILTER: u16 = 44;
const RTM_GETTFILTER: u16 = 46;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_FD: u16 = 6;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;

/// `TC_H_CLSACT`: the clsact qdisc's parent; its handle is `ffff:0`.
const TC_H_CLSACT: u32 = 0xffff_fff1;
const CLSACT_HANDLE: u32 = 0xffff_0000;
/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)`: the ingress hook, parent of the filter.
const INGRESS: u32 = 0xffff_fff2;
/// `ETH_P_ALL` in network order, as `tcm_info` carries the protocol.
const ALL_PROTOCOLS: u16 = 0x0003_u16.to_be();

const NLMSG_HDR: usize = 16;
const TCMSG_LEN: usize = 20;

/// Install the drop on interface `ifindex` (in the caller's network namespace): the
/// `clsact` qdisc (kept if present), then the filter (replacing ours if present).
///
/// # Errors
/// The program did not load, or the kernel refused the qdisc or the filter (no `clsact`
/// or `cls_bpf`, no such interface, no `CAP_NET_ADMIN`).
pub fn install(ifindex: i32) -> io::Result<()> {
    let nl = Netlink::open()?;
    let mut qdisc = Msg::new(
        RTM_NEWQDISC,
        NLM_F_CREATE | NLM_F_REPLACE,
        Tcmsg {
            ifindex,
            handle: CLSACT_HANDLE,
            parent: TC_H_CLSACT,
            info: 0,
        },
    );
    qdisc.attr(TCA_KIND, b"clsact\0");
    nl.request(&qdisc.finish())?;
    // r0 = TC_ACT_SHOT; exit
    let prog = load(
        BPF_PROG_TYPE_SCHED_CLS,
        &[insn(0xb7, 0, 0, 0, TC_ACT_SHOT), insn(0x95, 0, 0, 0, 0)],
    )?;
    let mut filter = Msg::new(
        RTM_NEWTFILTER,
        NLM_F_CREATE | NLM_F_REPLACE,
        Tcmsg {
            ifindex,
            handle: 1,
            parent: INGRESS,
            info: (PREF << 16) | u32::from(ALL_PROTOCOLS),
        },
    );
    filter.attr(TCA_KIND, b"bpf\0");
    let options = filter.nest(TCA_OPTIONS);
    let fd = u32::try_from(prog.as_raw_fd()).unwrap_or(u32::MAX);
    filter.attr(TCA_BPF_FD, &fd.to_ne_bytes());
    let mut name = NAME.as_bytes().to_vec();
    name.push(0);
    filter.attr(TCA_BPF_NAME, &name);
    filter.attr(TCA_BPF_FLAGS, &TCA_BPF_FLAG_ACT_DIRECT.to_ne_bytes());
    filter.end_nest(options);
    // The filter holds its own reference to the program: `prog` may close after this.
    nl.request(&filter.finish())
}

/// Remove the `clsact` qdisc of `ifindex`, and with it the drop. Nothing to remove is no
/// error.
///
/// # Errors
/// The kernel refused for another reason.
pub fn remove(ifindex: i32) -> io::Result<()> {
    let nl = Netlink::open()?;
    let mut qdisc = Msg::new(
        RTM_DELQDISC,
        0,
        Tcmsg {
            ifindex,
            handle: CLSACT_HANDLE,
            parent: TC_H_CLSACT,
            info: 0,
        },
    );
    qdisc.attr(TCA_KIND, b"clsact\0");
    match nl.request(&qdisc.finish()) {
        Err(e) if absent(&e) => Ok(()),
        other => other,
    }
}

/// True if the ingress hook of `ifindex` holds our filter, in direct-action mode.
///
/// # Errors
/// The netlink socket failed, or the kernel refused the dump for another reason than
/// "no clsact qdisc".
pub fn installed(ifindex: i32) -> io::Result<bool> {
    let nl = Netlink::open()?;
    let dump = Msg::new(
        RTM_GETTFILTER,
        NLM_F_DUMP,
        Tcmsg {
            ifindex,
            handle: 0,
            parent: INGRESS,
            info: 0,
        },
    );
    let mut found = false;
    let done = nl.dump(&dump.finish(), |msg| {
        found |= is_ours(msg);
    });
    match done {
        Ok(()) => Ok(found),
        Err(e) if absent(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// An error that means "there is no clsact qdisc (or interface) to look at".
fn absent(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)
    )
}

/// True for an `RTM_NEWTFILTER` message (after its netlink header) of a `bpf` filter named
/// [`NAME`] in direct-action mode.
fn is_ours(msg: &[u8]) -> bool {
    let Some(attrs) = msg.get(TCMSG_LEN..) else {
        return false;
    };
    let mut kind_bpf = false;
    let mut named = false;
    let mut direct = false;
    for (kind, data) in Attrs(attrs) {
        match kind {
            TCA_KIND => kind_bpf = data == b"bpf\0",
            TCA_OPTIONS => {
                for (kind, data) in Attrs(data) {
                    match kind {
                        TCA_BPF_NAME => {
                            named = data.strip_suffix(&[0]).unwrap_or(data) == NAME.as_bytes();
                        }
                        TCA_BPF_FLAGS => {
                            direct = data.get(..4).and_then(|b| b.try_into().ok()).is_some_and(
                                |b: [u8; 4]| u32::from_ne_bytes(b) & TCA_BPF_FLAG_ACT_DIRECT != 0,
                            );
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    kind_bpf && named && direct
}

/// The attributes of a netlink attribute stream: (type without flags, payload).
struct Attrs<'a>(&'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.0;
        let len = usize::from(u16::from_ne_bytes(b.get(..2)?.try_into().ok()?));
        let kind = u16::from_ne_bytes(b.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            self.0 = &[];
            return None;
        }
        let data = &b[4..len];
        self.0 = b.get(align4(len)..).unwrap_or(&[]);
        Some((kind, data))
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// `struct tcmsg`'s fields that matter here.
struct Tcmsg {
    ifindex: i32,
    handle: u32,
    parent: u32,
    info: u32,
}

/// A netlink request being written: header, `tcmsg`, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, t: Tcmsg) -> Self {
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
        b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        b.extend_from_slice(&[0; 4]); // family AF_UNSPEC, padding
        b.extend_from_slice(&t.ifindex.to_ne_bytes());
        b.extend_from_slice(&t.handle.to_ne_bytes());
        b.extend_from_slice(&t.parent.to_ne_bytes());
        b.extend_from_slice(&t.info.to_ne_bytes());
        Self(b)
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(align4(self.0.len()), 0);
    }

    /// Open a nested attribute; returns where it starts, for [`Msg::end_nest`].
    fn nest(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.attr(kind | NLA_F_NESTED, &[]);
        at
    }

    fn end_nest(&mut self, at: usize) {
        let len = u16::try_from(self.0.len() - at).unwrap_or(u16::MAX);
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// A `NETLINK_ROUTE` socket with a receive deadline.
struct Netlink(OwnedFd);

impl Netlink {
    fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nothing else owns.
        let sock = Self(unsafe { OwnedFd::from_raw_fd(fd) });
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a live timeval of the size passed.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                libc::socklen_t::try_from(size_of::<libc::timeval>()).unwrap_or(0),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is valid (the kernel as destination).
        let mut to: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
        to.nl_family = u16::try_from(libc::AF_NETLINK).unwrap_or(0);
        // SAFETY: `msg` and `to` are live for the call, with the lengths passed.
        let r = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const to).cast(),
                libc::socklen_t::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or(0),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Read messages, calling `each` with every message of another type than error or
    /// done (after its netlink header), until the acknowledgment (or the end of a dump).
    fn read(&self, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: `buf` is live and writable for its length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
            let mut at = 0;
            while at + NLMSG_HDR <= n {
                let h = &buf[at..n];
                let len = usize::try_from(u32::from_ne_bytes([h[0], h[1], h[2], h[3]]))
                    .unwrap_or(usize::MAX);
                let kind = u16::from_ne_bytes([h[4], h[5]]);
                if len < NLMSG_HDR || len > h.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "netlink: bad message length",
                    ));
                }
                let body = &h[NLMSG_HDR..len];
                match kind {
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => each(body),
                }
                at += align4(len);
            }
        }
    }

    /// Send a request and wait for its acknowledgment.
    fn request(&self, msg: &[u8]) -> io::Result<()> {
        self.send(msg)?;
        self.read(|_| {})
    }

    /// Send a dump request and hand each answer to `each`.
    fn dump(&self, msg: &[u8], each: impl FnMut(&[u8])) -> io::Result<()> {
        self.send(msg)?;
        self.read(each)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_message_is_recognised_only_with_our_name_and_direct_action() {
        let msg = |name: &[u8], flags: u32| {
            let mut m = Msg::new(
                RTM_NEWTFILTER,
                0,
                Tcmsg {
                    ifindex: 3,
                    handle: 1,
                    parent: INGRESS,
                    info: 0,
                },
            );
            m.attr(TCA_KIND, b"bpf\0");
            let o = m.nest(TCA_OPTIONS);
            m.attr(TCA_BPF_NAME, name);
            m.attr(TCA_BPF_FLAGS, &flags.to_ne_bytes());
            m.end_nest(o);
            m.finish()[NLMSG_HDR..].to_vec()
        };
        assert!(is_ours(&msg(b"vpcep_ingress_drop\0", 1)));
        assert!(!is_ours(&msg(b"another\0", 1)));
        assert!(!is_ours(&msg(b"vpcep_ingress_drop\0", 0)));
        assert!(!is_ours(&[0; 8]), "short");
    }
}
