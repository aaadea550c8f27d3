//! What the fast path may consult, frozen: [`Tables`], published by one [`TablePublisher`]
//! and read through one cached [`TableReader`] per worker (arc-swap's "consistent
//! snapshots" and "caching of the configuration" patterns).
//!
//! Invariants: a published `Tables` is never mutated; generations are assigned by the
//! publisher and strictly increase; a worker loads one generation per batch. No lock is taken
//! anywhere a worker reads.

pub mod accepted;
pub mod gateway;
pub mod ports;
pub mod sharded;

use core::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Cache};

pub use self::accepted::{AcceptedKey, AcceptedTable, ClientIdentity, Ipv4Cidr, Target};
pub use self::gateway::{GatewayRoute, GatewayTable};
pub use self::ports::PortSet;
use self::sharded::{Change, ShardedMap};
use crate::flow::Attachment;
use crate::wire::ethernet::MacAddr;

/// What an endpoint address is to the dataplane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Its connection is accepted: its mapped ports are in the accepted table.
    Accepted,
    /// It exists (the daemon answers ARP for it) but carries nothing: pending acceptance,
    /// rejected, frozen, or its service is suspended.
    Inactive,
}

/// Key of the endpoint address table: `(vpc, address)`.
pub type EndpointKey = (Attachment, u32);

/// Key of the private DNS names: `(vpc, name)`, the name in lower case without the final
/// dot. Each VPC sees only its own names.
pub type DnsKey = (Attachment, Arc<str>);

/// The frozen tables the fast path reads (one generation).
#[derive(Clone, Debug)]
pub struct Tables {
    generation: u64,
    accepted: AcceptedTable,
    endpoints: ShardedMap<EndpointKey, EndpointState>,
    /// The meter slot ([`crate::meter`]) of each endpoint address that has one: refusals
    /// of its flows are credited there.
    endpoint_meters: ShardedMap<EndpointKey, u32>,
    snat: Ipv4Cidr,
    /// Attachments that carry a backend VPC: the daemon answers ARP for the SNAT range there.
    snat_vpcs: Arc<[Attachment]>,
    /// Backend addresses the accepted connections lead to, resolved ahead of traffic.
    backends: Arc<[(Attachment, u32)]>,
    /// Per attachment (indexed by [`Attachment`]), the prefixes a client's source address must
    /// fall in (the VPC's subnets); `None` (or past the end): not enforced.
    sources: Arc<[Option<Arc<[Ipv4Cidr]>>]>,
    /// The private DNS names of accepted endpoints (`enable_dns`), per attachment: read by
    /// the resolvers, off the fast path; a name goes with the generation that drops it.
    dns: ShardedMap<DnsKey, u32>,
    /// Addresses a control-plane service owns on an attachment (the private DNS resolver's
    /// `dns_ip`): its own socket answers for them, the pipeline leaves their frames alone.
    service_addrs: Arc<[(Attachment, u32)]>,
    /// Per SNAT attachment, the next hop the provider VPC routes the SNAT range through, if
    /// it does (see [`Tables::snat_next_hop`]).
    snat_next_hops: Arc<[(Attachment, u32)]>,
    /// Per attachment (indexed by [`Attachment`]), the known ports when the attachment has
    /// `port_security`; `None` (or past the end): off.
    ports: Arc<[Option<Arc<PortSet>>]>,
    /// Per attachment (indexed by [`Attachment`]), the prefixes its gateway endpoints reach
    /// (see [`gateway`]); `None` (or past the end): no gateway endpoint there.
    gateways: Arc<[Option<Arc<GatewayTable>>]>,
    /// Attachments this node is the standby of (another node of the cluster owns their
    /// addresses): no ARP answered, no backend solicited, no new flow opened there. Empty
    /// (every attachment owned) unless the cluster elects owners.
    standby: Arc<[Attachment]>,
    /// Attachments this node has just become the owner of: one worker announces their
    /// addresses with gratuitous ARP (see [`crate::announce`]).
    announcement: Option<Announcement>,
}

impl Tables {
    /// Empty tables with SNAT range `snat`. Generation 0 until published.
    pub fn new(snat: Ipv4Cidr) -> Self {
        Self {
            generation: 0,
            accepted: AcceptedTable::new(),
            endpoints: ShardedMap::new(),
            endpoint_meters: ShardedMap::new(),
            snat,
            snat_vpcs: Arc::from(Vec::new()),
            backends: Arc::from(Vec::new()),
            sources: Arc::from(Vec::new()),
            dns: ShardedMap::new(),
            service_addrs: Arc::from(Vec::new()),
            snat_next_hops: Arc::from(Vec::new()),
            ports: Arc::from(Vec::new()),
            gateways: Arc::from(Vec::new()),
            standby: Arc::from(Vec::new()),
            announcement: None,
        }
    }

    /// True if this node owns attachment `vpc`'s addresses (it answers ARP for them and
    /// opens flows to them); false on a standby.
    #[inline]
    pub fn owns(&self, vpc: Attachment) -> bool {
        !self.standby.contains(&vpc)
    }

    /// A copy that is the standby of exactly `vpcs` and owns every other attachment.
    pub fn with_standby(&self, mut vpcs: Vec<Attachment>) -> Self {
        vpcs.sort_unstable();
        vpcs.dedup();
        let mut next = self.clone();
        next.standby = vpcs.into();
        next
    }

    /// A copy that asks the workers to announce `vpcs` (just become owned) with
    /// gratuitous ARP; it replaces an announcement not yet taken by a worker. Its epoch is
    /// the generation it is published as.
    pub fn with_announcement(&self, vpcs: Vec<Attachment>) -> Self {
        let mut next = self.clone();
        next.announcement = Some(Announcement {
            epoch: 0,
            vpcs: vpcs.into(),
        });
        next
    }

    /// The latest announcement (taken or not: see [`AnnouncementClaims::claim`] and
    /// [`TablePublisher::is_claimed`]).
    pub fn announcement(&self) -> Option<&Announcement> {
        self.announcement.as_ref()
    }

    /// A copy with `other`'s standby attachments and announcement (tables rebuilt from
    /// scratch keep who owns what).
    pub fn with_ownership_of(&self, other: &Self) -> Self {
        let mut next = self.clone();
        next.standby = Arc::clone(&other.standby);
        next.announcement.clone_from(&other.announcement);
        next
    }

    /// The endpoint addresses on attachment `vpc` (host order), in no particular order.
    pub fn endpoints_of(&self, vpc: Attachment) -> impl Iterator<Item = u32> + '_ {
        self.endpoints
            .iter()
            .filter(move |((v, _), _)| *v == vpc)
            .map(|((_, ip), _)| *ip)
    }

    /// The gateway prefixes of attachment `vpc`, if it has a gateway endpoint.
    #[inline]
    pub fn gateways(&self, vpc: Attachment) -> Option<&GatewayTable> {
        self.gateways.get(vpc.index())?.as_deref()
    }

    /// A copy whose gateway tables are `tables`, indexed by [`Attachment`] (an empty table is
    /// stored as none).
    pub fn with_gateways(&self, tables: Vec<GatewayTable>) -> Self {
        let mut next = self.clone();
        next.gateways = tables
            .into_iter()
            .map(|t| (!t.is_empty()).then(|| Arc::new(t)))
            .collect();
        next
    }

    /// True if `ip` is a control-plane service's address on attachment `vpc`.
    #[inline]
    pub fn is_service_address(&self, vpc: Attachment, ip: u32) -> bool {
        self.service_addrs.contains(&(vpc, ip))
    }

    /// A copy whose service addresses are exactly `addrs`.
    pub fn with_service_addresses(&self, addrs: &[(Attachment, Ipv4Addr)]) -> Self {
        let mut next = self.clone();
        next.service_addrs = addrs.iter().map(|(v, ip)| (*v, ip.to_bits())).collect();
        next
    }

    /// The address through which the provider VPC of SNAT attachment `vpc` routes the
    /// SNAT range (`snat_next_hop` of the attachment), if it does: the owner answers ARP
    /// for it, and a takeover announces it instead of the whole range (one frame, not one
    /// per address).
    #[inline]
    pub fn snat_next_hop(&self, vpc: Attachment) -> Option<u32> {
        self.snat_next_hops
            .iter()
            .find(|(v, _)| *v == vpc)
            .map(|(_, ip)| *ip)
    }

    /// A copy whose SNAT next hops are exactly `hops`.
    pub fn with_snat_next_hops(&self, hops: &[(Attachment, Ipv4Addr)]) -> Self {
        let mut next = self.clone();
        next.snat_next_hops = hops.iter().map(|(v, ip)| (*v, ip.to_bits())).collect();
        next
    }

    /// The address of private DNS name `name` (lower case, no final dot) in `vpc`.
    pub fn dns_name(&self, vpc: Attachment, name: &str) -> Option<Ipv4Addr> {
        self.dns
            .get(&(vpc, Arc::from(name)))
            .map(|ip| Ipv4Addr::from_bits(*ip))
    }

    /// Number of private DNS names.
    pub fn dns_count(&self) -> usize {
        self.dns.len()
    }

    /// A copy with private DNS names changed; untouched shards are shared.
    pub fn with_dns(&self, changes: impl IntoIterator<Item = Change<DnsKey, u32>>) -> Self {
        let mut next = self.clone();
        next.dns = self.dns.apply(changes);
        next
    }

    /// True if a client on attachment `vpc` may have source address `ip`: it lies in one
    /// of the VPC's subnets (or the tables say nothing about the VPC).
    #[inline]
    pub fn admits_source(&self, vpc: Attachment, ip: u32) -> bool {
        match self.sources.get(vpc.index()) {
            Some(Some(prefixes)) => prefixes.iter().any(|p| p.contains_u32(ip)),
            _ => true,
        }
    }

    /// A copy whose source prefixes are `sources`, indexed by [`Attachment`] (`None`: the VPC's
    /// sources are not checked).
    pub fn with_sources(&self, sources: Vec<Option<Vec<Ipv4Cidr>>>) -> Self {
        let mut next = self.clone();
        next.sources = sources.into_iter().map(|s| s.map(Arc::from)).collect();
        next
    }

    /// The known ports of attachment `vpc` if it has `port_security` on: a packet there is
    /// taken only from a pair of them (see [`PortSet`]). `None`: off.
    #[inline]
    pub fn port_security(&self, vpc: Attachment) -> Option<&PortSet> {
        self.ports.get(vpc.index())?.as_deref()
    }

    /// True if attachment `vpc` takes a packet from address `ip` (host order) and MAC
    /// `mac`: port security is off there, or the pair is a known port.
    #[inline]
    pub fn admits_port(&self, vpc: Attachment, ip: u32, mac: MacAddr) -> bool {
        self.port_security(vpc)
            .is_none_or(|ports| ports.admits(ip, mac))
    }

    /// A copy whose port-security sets are `ports`, indexed by [`Attachment`] (`None`: port
    /// security off on that attachment).
    pub fn with_ports(&self, ports: Vec<Option<PortSet>>) -> Self {
        let mut next = self.clone();
        next.ports = ports.into_iter().map(|p| p.map(Arc::new)).collect();
        next
    }

    /// The generation the publisher gave these tables.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The accepted connections.
    #[inline]
    pub fn accepted(&self) -> &AcceptedTable {
        &self.accepted
    }

    /// What `ip` is on attachment `vpc`, if it is an endpoint address.
    #[inline]
    pub fn endpoint(&self, vpc: Attachment, ip: u32) -> Option<EndpointState> {
        self.endpoints.get(&(vpc, ip)).copied()
    }

    /// The meter slot of endpoint address `key` (0: none).
    #[inline]
    pub fn endpoint_meter(&self, key: EndpointKey) -> u32 {
        self.endpoint_meters.get(&key).copied().unwrap_or(0)
    }

    /// A copy with `changes` applied to the endpoint addresses' meter slots.
    pub fn with_endpoint_meters(
        &self,
        changes: impl IntoIterator<Item = Change<EndpointKey, u32>>,
    ) -> Self {
        let mut next = self.clone();
        next.endpoint_meters = self.endpoint_meters.apply(changes);
        next
    }

    /// Number of endpoint addresses.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// The SNAT range.
    #[inline]
    pub fn snat(&self) -> Ipv4Cidr {
        self.snat
    }

    /// True if the daemon owns the SNAT range on attachment `vpc`.
    #[inline]
    pub fn is_snat_vpc(&self, vpc: Attachment) -> bool {
        self.snat_vpcs.contains(&vpc)
    }

    /// A copy with the accepted table changed; untouched shards are shared.
    pub fn with_accepted(
        &self,
        changes: impl IntoIterator<Item = Change<AcceptedKey, Target>>,
    ) -> Self {
        let mut next = self.clone();
        next.accepted = self.accepted.apply(changes);
        next
    }

    /// A copy with endpoint addresses changed; untouched shards are shared.
    pub fn with_endpoints(
        &self,
        changes: impl IntoIterator<Item = Change<EndpointKey, EndpointState>>,
    ) -> Self {
        let mut next = self.clone();
        next.endpoints = self.endpoints.apply(changes);
        next
    }

    /// A copy whose SNAT range is answered for on exactly `vpcs`.
    pub fn with_snat_vpcs(&self, mut vpcs: Vec<Attachment>) -> Self {
        vpcs.sort_unstable();
        vpcs.dedup();
        let mut next = self.clone();
        next.snat_vpcs = vpcs.into();
        next
    }

    /// Backend addresses to resolve ahead of traffic.
    pub fn backends(&self) -> &[(Attachment, u32)] {
        &self.backends
    }

    /// A copy whose backends to resolve are exactly `backends`.
    pub fn with_backends(&self, mut backends: Vec<(Attachment, Ipv4Addr)>) -> Self {
        backends.sort_unstable();
        backends.dedup();
        let mut next = self.clone();
        next.backends = backends
            .into_iter()
            .map(|(v, ip)| (v, ip.to_bits()))
            .collect();
        next
    }

    /// Convenience for tests and benches: add one accepted endpoint address with its
    /// mappings, and make its backend VPC a SNAT VPC.
    pub fn with_endpoint(
        &self,
        vpc: Attachment,
        ip: Ipv4Addr,
        mappings: impl IntoIterator<Item = (u8, u16, Target)>,
    ) -> Self {
        let mut backend_vpcs: Vec<Attachment> = self.snat_vpcs.to_vec();
        let mut meter = 0;
        let changes: Vec<_> = mappings
            .into_iter()
            .map(|(proto, port, target)| {
                backend_vpcs.push(target.backend_vpc);
                meter = target.meter;
                Change::Put(AcceptedKey::new(vpc, ip, proto, port), target)
            })
            .collect();
        let key = (vpc, ip.to_bits());
        self.with_accepted(changes)
            .with_endpoints([Change::Put(key, EndpointState::Accepted)])
            .with_endpoint_meters((meter != 0).then_some(Change::Put(key, meter)))
            .with_snat_vpcs(backend_vpcs)
    }
}

/// Attachments just owned, to announce with gratuitous ARP once (by whichever worker
/// claims it first: [`AnnouncementClaims::claim`]). Data only: the claim is kept beside the
/// tables, keyed by the announcement's epoch (the generation it was published as).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    epoch: u64,
    vpcs: Arc<[Attachment]>,
}

impl Announcement {
    /// The attachments to announce.
    pub fn vpcs(&self) -> &[Attachment] {
        &self.vpcs
    }

    /// The generation the announcement was published as (what a claim names).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// The writer half. Exactly one, owned by the control plane's pusher (`&mut self` to
/// publish makes the single writer a property of the type).
#[derive(Debug)]
pub struct TablePublisher {
    slot: Arc<ArcSwap<Tables>>,
    /// The epoch of the latest announcement a worker has taken (shared with the readers).
    claimed: Arc<AtomicU64>,
}

/// A reader half. One per worker thread; `load` is a pointer compare when nothing changed.
/// A clone reads the same slot (with its own cache): hand one to each thread.
#[allow(missing_debug_implementations)] // arc_swap::Cache is not Debug
#[derive(Clone)]
pub struct TableReader {
    cache: Cache<Arc<ArcSwap<Tables>>, Arc<Tables>>,
    claimed: Arc<AtomicU64>,
}

impl TablePublisher {
    /// A publisher whose first live tables are `initial`, published as generation 1.
    pub fn new(mut initial: Tables) -> Self {
        initial.generation = 1;
        if let Some(a) = &mut initial.announcement {
            a.epoch = 1;
        }
        Self {
            slot: Arc::new(ArcSwap::from_pointee(initial)),
            claimed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Publish `next` as the following generation; returns that generation. A new
    /// announcement in it takes the generation as its epoch.
    pub fn publish(&mut self, mut next: Tables) -> u64 {
        let generation = self.slot.load().generation + 1;
        next.generation = generation;
        if let Some(a) = &mut next.announcement
            && a.epoch == 0
        {
            a.epoch = generation;
        }
        self.slot.store(Arc::new(next));
        generation
    }

    /// True once a worker has taken `announcement` (or a later one).
    pub fn is_claimed(&self, announcement: &Announcement) -> bool {
        announcement.epoch != 0 && self.claimed.load(Ordering::Acquire) >= announcement.epoch
    }

    /// The live tables (for building the next one from it).
    pub fn current(&self) -> Arc<Tables> {
        self.slot.load_full()
    }

    /// A new reader for a worker.
    pub fn reader(&self) -> TableReader {
        TableReader {
            cache: Cache::new(Arc::clone(&self.slot)),
            claimed: Arc::clone(&self.claimed),
        }
    }
}

impl TableReader {
    /// The current tables. Call once per batch and reuse the reference.
    #[inline]
    pub fn load(&mut self) -> &Tables {
        self.cache.load()
    }

    /// The announcement claims this reader shares with the publisher and the other
    /// readers (a worker keeps it beside its reader).
    pub fn claims(&self) -> AnnouncementClaims {
        AnnouncementClaims(Arc::clone(&self.claimed))
    }
}

/// Where workers claim announcements: the epoch of the latest one taken.
#[derive(Clone, Debug)]
pub struct AnnouncementClaims(Arc<AtomicU64>);

impl AnnouncementClaims {
    /// True for the first worker to claim `announcement`: that worker sends it.
    pub fn claim(&self, announcement: &Announcement) -> bool {
        self.0.fetch_max(announcement.epoch, Ordering::AcqRel) < announcement.epoch
    }
}

/// The default SNAT range, 198.19.128.0/17 (a slice of the RFC 2544 benchmarking block).
pub fn default_snat_range() -> Ipv4Cidr {
    Ipv4Cidr::new(Ipv4Addr::new(198, 19, 128, 0), 17).expect("17 is a valid prefix")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_is_claimed_once_by_its_epoch() {
        let mut publisher = TablePublisher::new(Tables::new(default_snat_range()));
        let (a, b) = (publisher.reader().claims(), publisher.reader().claims());
        let g = publisher.publish(publisher.current().with_announcement(vec![Attachment(0)]));
        let t = publisher.current();
        let first = t.announcement().unwrap();
        assert_eq!(first.epoch(), g);
        assert!(!publisher.is_claimed(first));
        assert!(a.claim(first));
        assert!(!b.claim(first), "claimed once");
        assert!(publisher.is_claimed(first));
        // Tables built on these keep the announcement: it is not sent again.
        publisher.publish(publisher.current().with_standby(vec![]));
        assert!(!b.claim(publisher.current().announcement().unwrap()));
        // A new one is.
        publisher.publish(publisher.current().with_announcement(vec![Attachment(1)]));
        let t = publisher.current();
        assert!(!publisher.is_claimed(t.announcement().unwrap()));
        assert!(b.claim(t.announcement().unwrap()));
    }

    #[test]
    fn publish_assigns_increasing_generations() {
        let mut publisher = TablePublisher::new(Tables::new(default_snat_range()));
        let mut reader = publisher.reader();
        assert_eq!(reader.load().generation(), 1);
        let next = publisher.current().with_endpoints([Change::Put(
            (Attachment(0), Ipv4Addr::new(10, 0, 0, 200).to_bits()),
            EndpointState::Inactive,
        )]);
        assert_eq!(publisher.publish(next), 2);
        let t = reader.load();
        assert_eq!(t.generation(), 2);
        assert_eq!(
            t.endpoint(Attachment(0), Ipv4Addr::new(10, 0, 0, 200).to_bits()),
            Some(EndpointState::Inactive)
        );
        assert_eq!(
            t.endpoint(Attachment(1), Ipv4Addr::new(10, 0, 0, 200).to_bits()),
            None
        );
    }
}
