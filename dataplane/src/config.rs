//! Dataplane configuration: a plain struct, validated by its builder (the control plane
//! deserialises the daemon's file and builds one). The fast path never re-checks it.

use core::num::NonZeroUsize;
use core::time::Duration;

use crate::wire::ethernet::MacAddr;

/// Idle timeouts per flow state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP flows that have not completed the handshake (SYN sent, SYN-ACK seen). Short, so
    /// a SYN flood ages out fast. Default 30 s.
    pub tcp_embryonic: Duration,
    /// Established TCP flows. Default 350 s (the provider's published idle timeout).
    pub tcp_established: Duration,
    /// TCP flows with a FIN in one direction. Default 30 s.
    pub tcp_closing: Duration,
    /// TCP flows closed by RST or by FINs in both directions (TIME-WAIT). Default 10 s.
    pub tcp_closed: Duration,
    /// UDP flows. Default 120 s.
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_embryonic: Duration::from_secs(30),
            tcp_established: Duration::from_secs(350),
            tcp_closing: Duration::from_secs(30),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(120),
        }
    }
}

/// A [`Config`] that breaks a rule; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidConfig(pub String);

impl core::fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invalid dataplane config: {}", self.0)
    }
}

impl std::error::Error for InvalidConfig {}

/// Everything a pipeline and its worker need besides tables.
#[derive(Clone, Debug)]
pub struct Config {
    /// The MAC of each attachment, indexed by [`crate::flow::Attachment`]: the source MAC of
    /// frames sent there and the address ARP replies give.
    pub attachments: Vec<MacAddr>,
    /// Maximum number of flows (each flow is two conntrack entries). Default 1,048,576.
    pub conntrack_capacity: NonZeroUsize,
    /// The share of `conntrack_capacity` that the clients of one VPC (the ingress
    /// attachment of the flow's opener) may hold, in percent (1 to 100). Default 50: a
    /// tenant that floods fills its own half and then only replaces its own embryonic
    /// flows, while the other VPCs keep the rest. 100 turns the per-VPC limit off.
    pub conntrack_vpc_percent: u8,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// First SNAT port. Default 1024.
    pub snat_port_first: u16,
    /// Last SNAT port. Default 65535.
    pub snat_port_last: u16,
    /// How many ports a new flow tries before counting `SnatExhausted`. Default 64: a
    /// bounded miss path; with a nearly full pool a flow may be refused while a port is free.
    pub snat_probes: NonZeroUsize,
    /// Frames per batch. Default 64.
    pub batch_size: NonZeroUsize,
    /// Flows examined for expiry per batch. Default 64.
    pub expire_budget: usize,
    /// Recently opened flows the node remembers per VPC as eviction candidates (shared by
    /// every pipeline, so any worker can evict any worker's embryonic flows). Default 4096.
    pub eviction_candidates: usize,
    /// How many candidates of one VPC a new flow may examine to evict one (node-wide, each
    /// VPC in turn gets this many). Default 8.
    pub eviction_attempts: usize,
    /// Maximum neighbour (ARP) entries on the node. The table holds only the backends the
    /// tables name (clients' MACs live in their flows), so this is far above need.
    /// Default 16,384.
    pub neighbour_capacity: usize,
    /// Maximum neighbour entries of one attachment, so one provider VPC with many backends
    /// cannot take every entry. Default 4096.
    pub neighbour_per_vpc: usize,
    /// How long an answer to our ARP request keeps a neighbour reachable; after that it is
    /// stale (still used) and re-verified with a fresh request, as the kernel does with
    /// `base_reachable_time`. Default 30 s.
    pub neighbour_reachable: Duration,
    /// Minimum gap between two ARP requests for one address. Default 1 s.
    pub arp_retry: Duration,
    /// How long a worker blocks waiting for frames before doing housekeeping. Default 10 ms.
    pub idle_poll: Duration,
    /// Largest frame a worker takes, in bytes; a larger one is counted as `Oversize` and
    /// never forwarded cut. Default 65,549: the largest IPv4 packet (a GSO or GRO
    /// super-frame) behind an Ethernet header. Each batch slot holds this many bytes.
    pub max_frame_bytes: usize,
    /// Per attachment (as [`Config::attachments`]): true if the flows its clients open are
    /// logged ([`crate::conntrack::flowlog`]; only with a flow log on the conntrack). Default none.
    pub flow_log: Vec<bool>,
}

/// The default [`Config::max_frame_bytes`]: a 65,535-byte IPv4 packet plus Ethernet.
pub const MAX_FRAME_BYTES: usize = 65_535 + crate::wire::ethernet::HEADER_LEN;

impl Default for Config {
    /// Tuned for a node with a few attachments and up to a million concurrent flows.
    fn default() -> Self {
        Self {
            attachments: Vec::new(),
            conntrack_capacity: NonZeroUsize::new(1 << 20).expect("non-zero"),
            conntrack_vpc_percent: 50,
            timeouts: Timeouts::default(),
            snat_port_first: 1024,
            snat_port_last: 65535,
            snat_probes: NonZeroUsize::new(64).expect("non-zero"),
            batch_size: NonZeroUsize::new(64).expect("non-zero"),
            expire_budget: 64,
            eviction_candidates: 4096,
            eviction_attempts: 8,
            neighbour_capacity: 16_384,
            neighbour_per_vpc: 4096,
            neighbour_reachable: Duration::from_secs(30),
            arp_retry: Duration::from_secs(1),
            idle_poll: Duration::from_millis(10),
            max_frame_bytes: MAX_FRAME_BYTES,
            flow_log: Vec::new(),
        }
    }
}

impl Config {
    /// Number of SNAT ports per pool.
    pub fn snat_port_count(&self) -> usize {
        usize::from(self.snat_port_last.saturating_sub(self.snat_port_first)) + 1
    }

    /// The most flows the clients of one VPC may hold: `conntrack_vpc_percent` of the
    /// capacity, at least one.
    pub fn conntrack_vpc_limit(&self) -> usize {
        let capacity = self.conntrack_capacity.get();
        let percent = usize::from(self.conntrack_vpc_percent.clamp(1, 100));
        // capacity / 100 * percent loses nothing that matters and cannot overflow.
        (capacity / 100 * percent + capacity % 100 * percent / 100).max(1)
    }

    /// Check cross-field rules.
    ///
    /// # Errors
    /// [`InvalidConfig`], naming the offending field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.check().map_err(InvalidConfig)
    }

    fn check(&self) -> Result<(), String> {
        if self.snat_port_first == 0 || self.snat_port_first > self.snat_port_last {
            return Err(format!(
                "snat ports {}..={} must be a non-empty range above 0",
                self.snat_port_first, self.snat_port_last
            ));
        }
        if self.max_frame_bytes < 1514 || self.max_frame_bytes > 1 << 20 {
            return Err(format!(
                "max_frame_bytes {} must be between 1514 and 1048576",
                self.max_frame_bytes
            ));
        }
        if !(1..=100).contains(&self.conntrack_vpc_percent) {
            return Err(format!(
                "conntrack_vpc_percent {} must be 1 to 100",
                self.conntrack_vpc_percent
            ));
        }
        if self.attachments.len() > usize::from(u16::MAX) {
            return Err("at most 65535 attachments".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(capacity: usize, percent: u8) -> Config {
        Config {
            conntrack_capacity: capacity.try_into().unwrap(),
            conntrack_vpc_percent: percent,
            ..Config::default()
        }
    }

    #[test]
    fn the_vpc_share_is_a_percentage_of_the_capacity() {
        assert_eq!(Config::default().conntrack_vpc_limit(), 1 << 19);
        assert_eq!(with(1 << 20, 100).conntrack_vpc_limit(), 1 << 20);
        assert_eq!(with(64, 50).conntrack_vpc_limit(), 32);
        assert_eq!(with(250, 10).conntrack_vpc_limit(), 25);
        assert_eq!(with(3, 10).conntrack_vpc_limit(), 1, "never zero");
        assert_eq!(with(usize::MAX, 100).conntrack_vpc_limit(), usize::MAX);
        assert!(Config::default().validate().is_ok());
        assert!(with(64, 0).validate().is_err());
        assert!(with(64, 101).validate().is_err());
    }
}
