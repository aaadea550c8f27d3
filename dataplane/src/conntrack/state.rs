//! Flow states, kept in the low bits of the original entry's state byte, and the TCP state
//! machine that moves them ([`tcp_next`]).

use super::Direction;
use crate::wire::tcp;

/// TCP: SYN seen from the client.
pub const SYN_SENT: u8 = 0;
/// TCP: SYN-ACK seen from the backend.
pub const SYN_RECV: u8 = 1;
/// TCP: handshake completed.
pub const ESTABLISHED: u8 = 2;
/// TCP: FIN seen in one direction.
pub const CLOSING: u8 = 3;
/// TCP: RST seen, or FIN in both directions.
pub const CLOSED: u8 = 4;
/// UDP: no reply yet.
pub const UDP_UNREPLIED: u8 = 5;
/// UDP: the backend has answered.
pub const UDP_REPLIED: u8 = 6;
/// Mask of the state bits.
pub const MASK: u8 = 0x07;
/// FIN seen from the client.
pub const FIN_ORIGINAL: u8 = 0x08;
/// FIN seen from the backend.
pub const FIN_REPLY: u8 = 0x10;
/// On a reply entry: a packet has been seen in this direction.
pub const SEEN: u8 = 0x20;
/// In the reply direction's state byte, fixed when the flow opens: the flow's segments
/// toward the backend carry the TOA option (`tcp_proxy` `toa_open` or `open`).
pub const TOA: u8 = 0x40;
/// In the reply direction's state byte, fixed when the flow opens: the flow's stream toward
/// the backend starts with a PROXY v2 header (`proxy_open` or `open`), and sequence and
/// acknowledgment numbers are shifted by its length.
pub const PROXY: u8 = 0x80;
/// Both client identity bits.
pub const IDENTITY: u8 = TOA | PROXY;
/// In the reply direction's state byte of a [`PROXY`] flow: the backend has acknowledged
/// the whole PROXY header. From then on every client sequence number moves up by the
/// header's length and every acknowledgment down, however far the stream has gone from
/// the ISN (past 2 and 4 GiB the distance from the ISN says nothing: it wraps), and no
/// segment gets a header again.
pub const PROXY_ACKED: u8 = 0x10;

/// True for states an eviction may remove: never established or replied flows.
pub fn evictable(s: u8) -> bool {
    matches!(s & MASK, SYN_SENT | SYN_RECV | CLOSED | UDP_UNREPLIED)
}

/// The TCP state after a segment with `flags` travelling in `dir`.
pub fn tcp_next(current: u8, dir: Direction, flags: u8) -> u8 {
    let s = current & MASK;
    if flags & tcp::RST != 0 {
        return CLOSED | (current & !MASK);
    }
    let syn = flags & tcp::SYN != 0;
    let ack = flags & tcp::ACK != 0;
    let fin = flags & tcp::FIN != 0;
    match dir {
        Direction::Original if syn && !ack && s == CLOSED => return SYN_SENT,
        Direction::Reply if syn && ack && s == SYN_SENT => return SYN_RECV | (current & !MASK),
        _ => {}
    }
    let mut next = current;
    if dir == Direction::Original && ack && !syn && s == SYN_RECV {
        next = ESTABLISHED | (next & !MASK);
    }
    if fin {
        next |= if dir == Direction::Original {
            FIN_ORIGINAL
        } else {
            FIN_REPLY
        };
        let both = next & (FIN_ORIGINAL | FIN_REPLY) == FIN_ORIGINAL | FIN_REPLY;
        next = (next & !MASK) | if both { CLOSED } else { CLOSING };
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: u8 = tcp::SYN;
    const SYNACK: u8 = tcp::SYN | tcp::ACK;
    const ACK: u8 = tcp::ACK;
    const FIN: u8 = tcp::FIN | tcp::ACK;

    #[test]
    fn tcp_handshake_and_close() {
        let mut s = SYN_SENT;
        s = tcp_next(s, Direction::Original, SYN);
        assert_eq!(s, SYN_SENT);
        s = tcp_next(s, Direction::Original, ACK);
        assert_eq!(
            s & MASK,
            SYN_SENT,
            "an ACK before the SYN-ACK establishes nothing"
        );
        s = tcp_next(s, Direction::Reply, SYNACK);
        assert_eq!(s, SYN_RECV);
        s = tcp_next(s, Direction::Original, ACK);
        assert_eq!(s, ESTABLISHED);
        s = tcp_next(s, Direction::Reply, FIN);
        assert_eq!(s & MASK, CLOSING);
        s = tcp_next(s, Direction::Original, FIN);
        assert_eq!(s & MASK, CLOSED);
        // Port reuse: a fresh SYN from the client reopens the flow.
        assert_eq!(tcp_next(s, Direction::Original, SYN), SYN_SENT);
        assert_eq!(
            tcp_next(ESTABLISHED, Direction::Reply, tcp::RST) & MASK,
            CLOSED
        );
        assert!(evictable(SYN_SENT) && evictable(UDP_UNREPLIED) && evictable(CLOSED));
        assert!(!evictable(ESTABLISHED) && !evictable(UDP_REPLIED) && !evictable(CLOSING));
    }
}
