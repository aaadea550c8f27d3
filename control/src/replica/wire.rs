//! One replication datagram: a header naming the sender and its attachments, a batch of
//! events ([`dataplane::conntrack::replica`]), and an HMAC-SHA256 over all of it with the
//! cluster's replication key. Little-endian:
//!
//! ```text
//!  "VPCEPRP1"
//!  u16 length + UTF-8   the sender's node name
//!  u64 boot             a random number the sender drew when it started
//!  u64 seq              counts up from 1 within a boot
//!  u64 sent             the sender's wall clock, Unix milliseconds
//!  u16 count, then each attachment's VPC id (u16 length + UTF-8), by the sender's index
//!  u16 events, then the events
//!  [32] HMAC-SHA256 of everything before it
//! ```
//!
//! The receiver checks the MAC first (in constant time), then the [`ReplayGuard`]: a
//! datagram more than [`MAX_SKEW_MS`] from the receiver's clock, or not newer than the last
//! one of its sender, is refused. A host on the network without the key can neither inject
//! nor change a flow, and one that recorded datagrams cannot play them again.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAGIC: &[u8; 8] = b"VPCEPRP1";
const MAC_BYTES: usize = 32;
/// The most a datagram's `sent` may differ from the receiver's clock.
pub const MAX_SKEW_MS: u64 = 10_000;
/// The largest datagram a sender builds (one Ethernet frame's IPv4/UDP payload).
pub const MAX_DATAGRAM: usize = 1472;

/// Why a datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It does not parse.
    Malformed,
    /// Its MAC is wrong: not from a node with the key, or changed on the way.
    Forged,
    /// Played again, or too old or too far ahead of this node's clock.
    Replayed,
}

impl Refusal {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Forged => "forged",
            Self::Replayed => "replayed",
        }
    }
}

/// Who sent a datagram, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The sender's node name.
    pub name: String,
    /// Its boot number.
    pub boot: u64,
    /// The datagram's number in that boot.
    pub seq: u64,
    /// Its wall clock, Unix milliseconds.
    pub sent_ms: u64,
    /// Its attachments' VPC ids, by index.
    pub vpcs: Vec<String>,
}

/// The bytes of a header, without the event count (the sender fills events in after).
pub fn header_bytes(h: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_DATAGRAM);
    out.extend_from_slice(MAGIC);
    put_str(&mut out, &h.name);
    out.extend_from_slice(&h.boot.to_le_bytes());
    out.extend_from_slice(&h.seq.to_le_bytes());
    out.extend_from_slice(&h.sent_ms.to_le_bytes());
    out.extend_from_slice(
        &u16::try_from(h.vpcs.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    for v in &h.vpcs {
        put_str(&mut out, v);
    }
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&u16::try_from(b.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(b);
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// A whole datagram: `header` (from [`header_bytes`]), `count` events in `events`, sealed
/// with `key`.
pub fn seal(key: &[u8], header: &[u8], count: u16, events: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 2 + events.len() + MAC_BYTES);
    out.extend_from_slice(header);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(events);
    let mut m = mac(key);
    m.update(&out);
    out.extend_from_slice(&m.finalize().into_bytes());
    out
}

/// A datagram whose MAC checked: its header, event count and events.
#[derive(Debug)]
pub struct Opened<'a> {
    /// Who sent it.
    pub header: Header,
    /// How many events it holds.
    pub count: u16,
    /// The events' bytes.
    pub events: &'a [u8],
}

/// Check `datagram`'s MAC with `key` and parse its header.
///
/// # Errors
/// [`Refusal::Forged`] or [`Refusal::Malformed`].
pub fn open<'a>(key: &[u8], datagram: &'a [u8]) -> Result<Opened<'a>, Refusal> {
    let body_len = datagram
        .len()
        .checked_sub(MAC_BYTES)
        .ok_or(Refusal::Malformed)?;
    let (body, tag) = datagram.split_at(body_len);
    let mut m = mac(key);
    m.update(body);
    m.verify_slice(tag).map_err(|_| Refusal::Forged)?;
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(Refusal::Malformed);
    }
    let name = r.string()?;
    let boot = r.u64()?;
    let seq = r.u64()?;
    let sent_ms = r.u64()?;
    let n = r.u16()?;
    let vpcs = (0..n).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?;
    let count = r.u16()?;
    Ok(Opened {
        header: Header {
            name,
            boot,
            seq,
            sent_ms,
            vpcs,
        },
        count,
        events: r.0,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        if self.0.len() < n {
            return Err(Refusal::Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u16(&mut self) -> Result<u16, Refusal> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, Refusal> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self) -> Result<String, Refusal> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Refusal::Malformed)
    }
}

/// The newest datagram seen from each sender, to refuse replays.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    last: HashMap<String, (u64, u64, u64)>,
}

/// Senders remembered at most (a sender is one node of the cluster).
const MAX_SENDERS: usize = 4096;

impl ReplayGuard {
    /// Admit `h` at the receiver's wall clock `now_ms`: it must be within [`MAX_SKEW_MS`],
    /// and newer than its sender's last admitted datagram (a higher `seq` in the same boot;
    /// a later `sent` from another boot, which is a restart).
    ///
    /// # Errors
    /// [`Refusal::Replayed`].
    pub fn admit(&mut self, h: &Header, now_ms: u64) -> Result<(), Refusal> {
        if h.sent_ms.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(Refusal::Replayed);
        }
        if let Some(&(boot, seq, sent)) = self.last.get(&h.name) {
            let newer = if boot == h.boot {
                h.seq > seq
            } else {
                h.sent_ms > sent
            };
            if !newer {
                return Err(Refusal::Replayed);
            }
        } else if self.last.len() >= MAX_SENDERS {
            // Only authenticated senders get here; forget those gone quiet longest.
            let stale = now_ms.saturating_sub(MAX_SKEW_MS);
            self.last.retain(|_, v| v.2 >= stale);
        }
        self.last.insert(
            h.name.clone(),
            (h.boot, h.seq, h.sent_ms.max(self.sent_of(&h.name))),
        );
        Ok(())
    }

    fn sent_of(&self, name: &str) -> u64 {
        self.last.get(name).map_or(0, |v| v.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64, sent_ms: u64) -> Header {
        Header {
            name: "node-1".into(),
            boot: 7,
            seq,
            sent_ms,
            vpcs: vec!["vpc-a".into(), "vpc-b".into()],
        }
    }

    #[test]
    fn a_sealed_datagram_opens_with_the_key_only() {
        let h = header(1, 1000);
        let d = seal(b"0123456789abcdef", &header_bytes(&h), 2, b"events");
        let o = open(b"0123456789abcdef", &d).unwrap();
        assert_eq!(o.header, h);
        assert_eq!((o.count, o.events), (2, &b"events"[..]));
        assert_eq!(open(b"another key.....", &d).unwrap_err(), Refusal::Forged);
        // One bit changed anywhere: refused.
        for i in [0, 9, d.len() - 40, d.len() - 1] {
            let mut bad = d.clone();
            bad[i] ^= 1;
            assert_eq!(
                open(b"0123456789abcdef", &bad).unwrap_err(),
                Refusal::Forged
            );
        }
        assert_eq!(open(b"k", &d[..40]).unwrap_err(), Refusal::Forged);
        assert_eq!(open(b"k", &d[..10]).unwrap_err(), Refusal::Malformed);
        assert_eq!(open(b"k", &[]).unwrap_err(), Refusal::Malformed);
    }

    #[test]
    fn replays_and_stale_datagrams_are_refused() {
        let mut g = ReplayGuard::default();
        let now = 1_000_000;
        g.admit(&header(5, now), now).unwrap();
        assert_eq!(g.admit(&header(5, now), now), Err(Refusal::Replayed));
        assert_eq!(g.admit(&header(4, now), now), Err(Refusal::Replayed));
        g.admit(&header(6, now + 1), now).unwrap();
        // Too old, or too far ahead.
        assert_eq!(
            g.admit(&header(9, now - MAX_SKEW_MS - 1), now),
            Err(Refusal::Replayed)
        );
        assert_eq!(
            g.admit(&header(9, now + MAX_SKEW_MS + 1), now),
            Err(Refusal::Replayed)
        );
        // A restart (another boot) is admitted if newer; an older boot's datagram is not.
        let mut old = header(100, now - 5);
        old.boot = 3;
        assert_eq!(g.admit(&old, now), Err(Refusal::Replayed));
        let mut restarted = header(1, now + 2);
        restarted.boot = 8;
        g.admit(&restarted, now).unwrap();
        // The old boot's datagrams were all sent before the restart's.
        assert_eq!(g.admit(&header(7, now + 1), now), Err(Refusal::Replayed));
    }
}
