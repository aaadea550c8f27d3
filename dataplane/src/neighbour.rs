//! The neighbour table: `(vpc, IPv4 address)` to MAC, learned from ARP, shared by the
//! workers. Bounded: when full, new neighbours are not learned (known ones still refresh).
//!
//! An address the dataplane needs but does not know gets an `Incomplete` entry that records
//! when it was last asked for, so ARP requests for it go out at most once per `arp_retry`.

use core::time::Duration;

use dashmap::DashMap;
use foldhash::fast::RandomState;

use crate::flow::VpcId;
use crate::wire::ethernet::MacAddr;

#[derive(Clone, Copy, Debug)]
enum Entry {
    Incomplete { asked_at: u32 },
    Resolved(MacAddr),
}

/// The shared neighbour table.
#[derive(Debug)]
pub struct Neighbours {
    map: DashMap<(VpcId, u32), Entry, RandomState>,
    capacity: usize,
}

impl Neighbours {
    /// A table of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::with_hasher(RandomState::default()),
            capacity,
        }
    }

    /// The MAC of `ip` on `vpc`, if resolved.
    #[inline]
    pub fn lookup(&self, vpc: VpcId, ip: u32) -> Option<MacAddr> {
        match *self.map.get(&(vpc, ip))? {
            Entry::Resolved(mac) => Some(mac),
            Entry::Incomplete { .. } => None,
        }
    }

    /// Record `ip` at `mac` on `vpc`. Returns false if the table is full and `ip` is new.
    pub fn learn(&self, vpc: VpcId, ip: u32, mac: MacAddr) -> bool {
        if let Some(mut e) = self.map.get_mut(&(vpc, ip)) {
            *e = Entry::Resolved(mac);
            return true;
        }
        if self.map.len() >= self.capacity {
            return false;
        }
        self.map.insert((vpc, ip), Entry::Resolved(mac));
        true
    }

    /// Update `ip` only if it is already known or being asked for (gratuitous ARP and
    /// replies from others do not grow the table). Returns whether it was updated.
    pub fn refresh(&self, vpc: VpcId, ip: u32, mac: MacAddr) -> bool {
        match self.map.get_mut(&(vpc, ip)) {
            Some(mut e) => {
                *e = Entry::Resolved(mac);
                true
            }
            None => false,
        }
    }

    /// True if an ARP request for `ip` should go out now: it is unresolved and was not asked
    /// for in the last `retry`. Marks it as asked.
    pub fn should_ask(&self, vpc: VpcId, ip: u32, now_secs: u32, retry: Duration) -> bool {
        let retry = u32::try_from(retry.as_secs().max(1)).unwrap_or(u32::MAX);
        if let Some(mut e) = self.map.get_mut(&(vpc, ip)) {
            return match *e {
                Entry::Resolved(_) => false,
                Entry::Incomplete { asked_at } if now_secs.saturating_sub(asked_at) < retry => {
                    false
                }
                Entry::Incomplete { .. } => {
                    *e = Entry::Incomplete { asked_at: now_secs };
                    true
                }
            };
        }
        if self.map.len() >= self.capacity {
            return false;
        }
        self.map
            .insert((vpc, ip), Entry::Incomplete { asked_at: now_secs });
        true
    }

    /// Number of entries (resolved and incomplete).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_ask_and_bound() {
        let n = Neighbours::new(2);
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        assert!(n.should_ask(VpcId(0), 1, 10, Duration::from_secs(1)));
        assert!(
            !n.should_ask(VpcId(0), 1, 10, Duration::from_secs(1)),
            "rate limited"
        );
        assert!(n.should_ask(VpcId(0), 1, 11, Duration::from_secs(1)));
        assert_eq!(n.lookup(VpcId(0), 1), None);
        assert!(n.refresh(VpcId(0), 1, mac));
        assert_eq!(n.lookup(VpcId(0), 1), Some(mac));
        assert!(!n.should_ask(VpcId(0), 1, 99, Duration::from_secs(1)));
        assert!(
            !n.refresh(VpcId(1), 1, mac),
            "unknown addresses are not learned by refresh"
        );
        assert!(n.learn(VpcId(1), 1, mac));
        assert!(!n.learn(VpcId(1), 2, mac), "full");
        assert!(
            n.learn(VpcId(1), 1, MacAddr::BROADCAST),
            "known entries still update"
        );
        assert_eq!(n.len(), 2);
    }
}
