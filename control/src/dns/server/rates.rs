//! The resolver's rate limiter: a token bucket per client.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use dataplane::wire::ethernet::MacAddr;

/// Frames one client (address and MAC) may send a second: ARP requests, UDP queries, TCP
/// segments, and each whole TCP query once more (Route 53 Resolver's per-interface figure);
/// also the burst. Past it, its frames are dropped and counted (`rate_limited`), and the
/// kernel drops its MAC's frames for [`super::PENALTY`]; other clients are not affected.
pub const CLIENT_QUERIES_PER_SEC: u32 = 1024;

/// Client addresses the rate limiter tracks at once; when more ask, those whose bucket is
/// full (idle for a second) are forgotten first.
pub(super) const MAX_CLIENTS_TRACKED: usize = 4096;

/// A token bucket per client (address and MAC together, so a VM that forges its
/// neighbour's address drains its own bucket, not the neighbour's):
/// [`CLIENT_QUERIES_PER_SEC`] a second, as burst too. Time comes in as an argument.
#[derive(Debug, Default)]
pub(super) struct Rates {
    buckets: HashMap<(Ipv4Addr, MacAddr), (f64, Instant)>,
}

impl Rates {
    const BURST: f64 = CLIENT_QUERIES_PER_SEC as f64;

    fn refill(bucket: &mut (f64, Instant), now: Instant) {
        let secs = now.saturating_duration_since(bucket.1).as_secs_f64();
        bucket.0 = (bucket.0 + secs * f64::from(CLIENT_QUERIES_PER_SEC)).min(Self::BURST);
        bucket.1 = now;
    }

    /// True if `client` may ask one more query at `now` (and count it).
    pub(super) fn allow(&mut self, client: (Ipv4Addr, MacAddr), now: Instant) -> bool {
        if self.buckets.len() >= MAX_CLIENTS_TRACKED && !self.buckets.contains_key(&client) {
            self.buckets.retain(|_, b| {
                Self::refill(b, now);
                b.0 < Self::BURST
            });
            if self.buckets.len() >= MAX_CLIENTS_TRACKED {
                // Every tracked client is busy: start over rather than refuse newcomers.
                self.buckets.clear();
            }
        }
        let b = self.buckets.entry(client).or_insert((Self::BURST, now));
        Self::refill(b, now);
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_client_is_held_to_its_rate_and_the_others_are_not() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let mac = MacAddr([2, 0, 0, 0, 0, 5]);
        let (a, b) = (
            (Ipv4Addr::new(10, 0, 0, 5), mac),
            (Ipv4Addr::new(10, 0, 0, 6), mac),
        );
        let burst = (0..2 * CLIENT_QUERIES_PER_SEC)
            .filter(|_| r.allow(a, t0))
            .count();
        assert_eq!(
            burst, CLIENT_QUERIES_PER_SEC as usize,
            "the burst, then no more"
        );
        assert!(r.allow(b, t0), "another client has its own bucket");
        // A tenth of a second later, a tenth of the rate again.
        let later = t0 + Duration::from_millis(100);
        let refilled = (0..CLIENT_QUERIES_PER_SEC)
            .filter(|_| r.allow(a, later))
            .count();
        assert!((100..=103).contains(&refilled), "{refilled}");
    }

    #[test]
    fn the_limiter_forgets_idle_clients_first_and_stays_bounded() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let mac = MacAddr([2, 0, 0, 0, 0, 5]);
        let busy = (Ipv4Addr::new(10, 0, 0, 5), mac);
        while r.allow(busy, t0) {}
        for i in 0..u32::try_from(MAX_CLIENTS_TRACKED).unwrap() {
            assert!(r.allow((Ipv4Addr::from_bits(0x0a01_0000 + i), mac), t0));
        }
        // Past the bound, a second later: the idle ones (full again) are forgotten.
        let t1 = t0 + Duration::from_secs(1);
        assert!(r.allow((Ipv4Addr::new(10, 2, 0, 1), mac), t1));
        assert!(r.buckets.len() <= MAX_CLIENTS_TRACKED);
    }
}
