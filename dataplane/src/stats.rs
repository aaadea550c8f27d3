//! Counters. [`WorkerStats`] is plain `u64`s inside a pipeline (one writer, no atomics per
//! packet); once per batch the worker copies it into its shared [`WorkerCounters`]
//! (relaxed atomics, written only by that worker), which readers sum on scrape.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::verdict::DropReason;

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident ),* $(,)?) => {
        /// Per-pipeline counters, single writer.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct WorkerStats {
            $( $(#[doc = $doc])* pub $name: u64, )*
            /// Dropped frames, indexed by [`DropReason::index`].
            pub drops: [u64; DropReason::COUNT],
        }

        /// A worker's counters as shared atomics; see [`WorkerStats`] for each meaning.
        #[derive(Debug, Default)]
        pub struct WorkerCounters {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
            /// Dropped frames by reason.
            pub drops: [AtomicU64; DropReason::COUNT],
            /// The table generation this worker loaded for its last batch.
            pub generation: AtomicU64,
        }

        impl WorkerCounters {
            /// Copy `stats` in and record the generation the batch used.
            pub fn publish(&self, stats: &WorkerStats, generation: u64) {
                $( self.$name.store(stats.$name, Relaxed); )*
                for (slot, v) in self.drops.iter().zip(stats.drops.iter()) {
                    slot.store(*v, Relaxed);
                }
                self.generation.store(generation, Relaxed);
            }

            /// A plain copy of the counters.
            pub fn read(&self) -> WorkerStats {
                let mut s = WorkerStats { $( $name: self.$name.load(Relaxed), )* ..WorkerStats::default() };
                for (v, slot) in s.drops.iter_mut().zip(self.drops.iter()) {
                    *v = slot.load(Relaxed);
                }
                s
            }
        }

        impl WorkerStats {
            /// Add `other` into `self` (summing workers).
            pub fn add(&mut self, other: &Self) {
                $( self.$name += other.$name; )*
                for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
                    *a += *b;
                }
            }

            /// `(name, value)` of every counter except drops, for export.
            pub fn named(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }
        }
    };
}

counters! {
    /// Frames handed to `process`.
    rx_frames,
    /// Frames forwarded after NAT (both directions).
    forwarded,
    /// Of `forwarded`: frames in the reply direction (backend to client).
    forwarded_reply,
    /// Of `forwarded`: GSO super-frames (a sender's TSO/GSO, a NIC's GRO), each NATed once
    /// and sent on whole with its vnet header.
    forwarded_super_frames,
    /// Of `forwarded`: frames whose transport checksum arrived partial and left partial.
    forwarded_partial_csum,
    /// ARP replies sent for endpoint or SNAT addresses.
    arp_replies,
    /// Gratuitous ARP frames sent when this node became the owner of attachments
    /// ([`crate::announce`]).
    arp_announced,
    /// ARP requests sent: for unresolved backends, and to re-verify stale ones.
    arp_requests,
    /// ARP replies that answered one of our outstanding requests (a neighbour resolved,
    /// confirmed or changed). Replies nobody asked for are `drop:arp_not_for_us`.
    arp_learned,
    /// Unsolicited ARP frames (gratuitous, a request, or a reply nobody asked for) whose
    /// sender claims a MAC other than the one a resolved neighbour has: nothing changes,
    /// and the neighbour is re-verified by the next solicit (a spoof, or a backend that
    /// moved and announced itself).
    arp_conflicts,
    /// Of `arp_learned`: answers that changed a resolved neighbour's MAC (a backend that
    /// moved, or a spoofer that won the race against the real host).
    neighbours_changed,
    /// Neighbour entries not created because the table or the attachment's share was full.
    neighbours_refused,
    /// Neighbour entries removed by the sweep (nobody asked for them for two reachable
    /// times: backends gone from the tables). Counted by the worker that swept.
    neighbours_expired,
    /// PROXY v2 headers written at the start of a client's stream (`tcp_proxy` `proxy_open`
    /// or `open`); a retransmitted first segment counts again.
    proxy_headers,
    /// TOA options added to segments toward a backend (`toa_open` or `open`).
    toa_options,
    /// TOA options a client wrote into its own segments of a flow with TOA, overwritten
    /// with no-ops before they reached the backend (a forged client identity).
    toa_stripped,
    /// Segments that should have carried the TOA option but had no room for 8 more bytes
    /// of TCP options; sent without it.
    toa_no_room,
    /// Flows created (a flow is both directions).
    flows_created,
    /// Of `flows_created`: flows opened through a gateway endpoint's route (to an address
    /// of a gateway service's prefixes).
    gateway_flows,
    /// Flows removed by idle expiry.
    flows_expired,
    /// Embryonic or unreplied flows evicted to make room for a new flow: from the opener's
    /// own VPC when it held its whole share, else node-wide (heaviest VPC first). Counted by
    /// the pipeline that opened the new flow, whichever pipeline opened the victim.
    flows_evicted,
    /// Flows re-checked against a newer table generation and kept.
    flows_revalidated,
    /// Flows removed because a re-check failed (see `DropReason::Revoked`).
    flows_revoked,
    /// Resets sent to clients for segments of a connection this node does not carry (see
    /// [`crate::rewrite::reset`]); each one's segment is also `drop:tcp_no_flow`. At most
    /// [`crate::pipeline::RESETS_PER_SEC`] a second per worker.
    tcp_resets,
    /// Frames the backend could not transmit (full queue, larger than the egress MTU).
    tx_errors,
    /// Frames the kernel dropped before the worker read them: the worker's receive socket
    /// queue (`recvmmsg`) or ring was full (`PACKET_STATISTICS`, read about once a second).
    rx_queue_drops,
    /// Spins before sleeping that found frames (a sleep and a wake-up saved).
    spin_hits,
    /// Spins that found none and slept after all.
    spin_misses,
    /// Microseconds spent in the spins that found none: the spin's cost.
    spin_wasted_us,
    /// Frames for a control-plane service's address (the private DNS resolver's `dns_ip`):
    /// left to that service's own socket, neither forwarded nor dropped.
    service_frames,
}

impl WorkerStats {
    /// Count a drop.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Sum of several workers' counters.
pub fn sum<'a>(counters: impl IntoIterator<Item = &'a WorkerCounters>) -> WorkerStats {
    let mut total = WorkerStats::default();
    for c in counters {
        total.add(&c.read());
    }
    total
}

/// Export `total` through the `metrics` facade as absolute counter values, with the prefix
/// `vpcep_dataplane_` and drops as `vpcep_dataplane_drops_total{reason=...}`.
pub fn export(total: &WorkerStats) {
    for (name, value) in total.named() {
        metrics::counter!(format!("vpcep_dataplane_{name}_total")).absolute(value);
    }
    for reason in DropReason::ALL {
        metrics::counter!("vpcep_dataplane_drops_total", "reason" => reason.name())
            .absolute(total.dropped(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_read_and_sum() {
        let mut s = WorkerStats {
            rx_frames: 3,
            forwarded: 2,
            ..WorkerStats::default()
        };
        s.drop(DropReason::Malformed);
        let a = WorkerCounters::default();
        let b = WorkerCounters::default();
        a.publish(&s, 7);
        b.publish(&s, 7);
        assert_eq!(a.read(), s);
        assert_eq!(a.generation.load(Relaxed), 7);
        let total = sum([&a, &b]);
        assert_eq!(total.rx_frames, 6);
        assert_eq!(total.dropped(DropReason::Malformed), 2);
        assert_eq!(total.dropped_total(), 2);
        assert!(
            total
                .named()
                .iter()
                .any(|(n, v)| *n == "forwarded" && *v == 4)
        );
    }
}
