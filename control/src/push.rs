//! The pusher: owns the [`TablePublisher`], turns change notes from the registry into new
//! table generations, and records what it published so callers can wait until a change is
//! live.
//!
//! Incremental: it remembers what each endpoint contributed; a note naming endpoints
//! removes their old entries and adds their new ones in a copy of the live tables that
//! shares every untouched shard, so one accept costs a few shard copies, not a rebuild.
//! Notes that arrive while it works are coalesced into the next generation.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dataplane::tables::sharded::Change;
use dataplane::tables::{AcceptedKey, DnsKey, EndpointKey, Ipv4Cidr};
use dataplane::{TablePublisher, Tables};

use crate::compile::{self, Attachments};
use crate::meters::slots::{SlotMap, SlotPool};
use crate::model::EndpointId;
use crate::registry::{ChangeNote, Registry, Touched};

/// What the pusher has done, readable from anywhere.
#[derive(Debug, Default)]
pub struct PushStatus {
    /// The generation last published.
    pub published_generation: AtomicU64,
    /// The store revision that generation reflects.
    pub applied_revision: AtomicU64,
    /// Accepted-table entries in the live generation.
    pub accepted_entries: AtomicU64,
    /// Endpoint addresses in the live generation.
    pub endpoint_addresses: AtomicU64,
    /// The VPC ids whose addresses this node owns, when the cluster elects owners (see
    /// [`crate::store::owners`]); `None`: it owns every attachment.
    pub owned: Mutex<Option<BTreeSet<String>>>,
}

impl PushStatus {
    /// Whether this node owns attachment `vpc_id`'s addresses.
    pub fn owns(&self, vpc_id: &str) -> bool {
        self.owned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|o| o.contains(vpc_id))
    }

    /// The VPC ids this node owns, if the cluster elects owners.
    pub fn owned_vpcs(&self) -> Option<Vec<String>> {
        self.owned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|o| o.iter().cloned().collect())
    }
}

/// How long a returned meter slot waits before reuse, unless the daemon sets it from its
/// conntrack timeouts ([`Pusher::set_meter_hold`]).
pub const DEFAULT_METER_HOLD: Duration = Duration::from_secs(600);

/// What one endpoint put in the live tables, to take out when it changes.
#[derive(Debug)]
struct Contribution {
    accepted: Vec<AcceptedKey>,
    address: Option<EndpointKey>,
    /// The address's meter slot entry (with `address`, when the endpoint has a slot).
    metered: bool,
    dns: Option<DnsKey>,
}

/// The pusher's state.
#[allow(missing_debug_implementations)] // holds a TablePublisher
pub struct Pusher {
    publisher: TablePublisher,
    attachments: Attachments,
    snat: Ipv4Cidr,
    contributed: HashMap<EndpointId, Contribution>,
    service_addrs: Vec<(dataplane::Attachment, std::net::Ipv4Addr)>,
    /// The attachments' SNAT next hops (`snat_next_hop`).
    snat_next_hops: Vec<(dataplane::Attachment, std::net::Ipv4Addr)>,
    /// The VPC ids this node owns (`None`: all); the other attachments are standby.
    owned: Option<BTreeSet<String>>,
    status: Arc<PushStatus>,
    /// The endpoints' meter slots, and where the reader finds them.
    slots: SlotPool,
    slot_map: Arc<ArcSwap<SlotMap>>,
}

impl Pusher {
    /// A pusher publishing through `publisher`.
    pub fn new(
        publisher: TablePublisher,
        attachments: Attachments,
        snat: Ipv4Cidr,
        status: Arc<PushStatus>,
    ) -> Self {
        Self {
            publisher,
            attachments,
            snat,
            contributed: HashMap::new(),
            service_addrs: Vec::new(),
            snat_next_hops: Vec::new(),
            owned: None,
            status,
            slots: SlotPool::new(DEFAULT_METER_HOLD),
            slot_map: Arc::new(ArcSwap::from_pointee(SlotMap::new())),
        }
    }

    /// Hold returned meter slots `hold` before reuse (see [`SlotPool::new`]).
    pub fn set_meter_hold(&mut self, hold: Duration) {
        self.slots.set_hold(hold);
    }

    /// The meter slots in use, as published with the tables (for the meter reader).
    pub fn slot_map(&self) -> Arc<ArcSwap<SlotMap>> {
        Arc::clone(&self.slot_map)
    }

    /// The publisher, for the workers' readers.
    pub fn publisher(&self) -> &TablePublisher {
        &self.publisher
    }

    /// Apply one (coalesced) note: compile, publish, record. Returns the generation.
    pub fn apply(&mut self, registry: &Registry, touched: &Touched, revision: u64) -> u64 {
        let started = Instant::now();
        let m = registry.read();
        let base: Tables = match touched {
            Touched::All => {
                self.contributed.clear();
                Tables::new(self.snat).with_ownership_of(&self.publisher.current())
            }
            Touched::Endpoints(_) => (*self.publisher.current()).clone(),
        };
        let ids: Vec<EndpointId> = match touched {
            Touched::All => m.endpoints.keys().cloned().collect(),
            Touched::Endpoints(ids) => ids.clone(),
        };
        // Every removal of the batch goes before every addition: an endpoint deleted and
        // another created at its address in one batch must leave the new one in place,
        // whichever order the ids come in.
        let mut accepted = Vec::new();
        let mut addresses = Vec::new();
        let mut names = Vec::new();
        let mut added = Vec::new();
        let mut added_addresses = Vec::new();
        let mut added_names = Vec::new();
        let mut meters = Vec::new();
        let mut added_meters = Vec::new();
        let now = Instant::now();
        for id in &ids {
            if let Some(old) = self.contributed.remove(id) {
                accepted.extend(old.accepted.into_iter().map(Change::Remove));
                addresses.extend(old.address.map(Change::Remove));
                if old.metered {
                    meters.extend(old.address.map(Change::Remove));
                }
                names.extend(old.dns.map(Change::Remove));
            }
            if !m.endpoints.contains_key(id) {
                self.slots.release(id, now);
            }
            if let Some(ep) = m.endpoints.get(id) {
                // Metered only where its VPC is attached: another node carries the rest,
                // and this one exports no series for them.
                let slot = if self.attachments.get(&ep.vpc_id).is_some() {
                    self.slots.slot(&m, ep, now)
                } else {
                    self.slots.release(id, now);
                    0
                };
                let c = compile::endpoint(&m, &self.attachments, ep, slot);
                let dns = compile::dns(&self.attachments, ep, registry.region());
                let keys: Vec<AcceptedKey> = c.accepted.iter().map(|(k, _)| *k).collect();
                added.extend(c.accepted.into_iter().map(|(k, t)| Change::Put(k, t)));
                if let Some((k, s)) = c.address {
                    added_addresses.push(Change::Put(k, s));
                    if slot != 0 {
                        added_meters.push(Change::Put(k, slot));
                    }
                }
                let dns_key = dns.as_ref().map(|(k, _)| k.clone());
                added_names.extend(dns.map(|(k, ip)| Change::Put(k, ip)));
                self.contributed.insert(
                    id.clone(),
                    Contribution {
                        accepted: keys,
                        address: c.address.map(|(k, _)| k),
                        metered: slot != 0,
                        dns: dns_key,
                    },
                );
            }
        }
        accepted.extend(added);
        addresses.extend(added_addresses);
        names.extend(added_names);
        meters.extend(added_meters);
        if matches!(touched, Touched::All) {
            self.slots.retain(&m, now);
        }
        let slots = &self.slots;
        let next = base
            .with_accepted(accepted)
            .with_endpoints(addresses)
            .with_endpoint_meters(meters)
            .with_dns(names)
            .with_service_addresses(&self.service_addrs)
            .with_snat_next_hops(&self.snat_next_hops)
            .with_snat_vpcs(compile::snat_vpcs(&m, &self.attachments))
            .with_backends(compile::backends(&m, &self.attachments))
            .with_sources(compile::sources(&m, &self.attachments))
            .with_ports(compile::ports(&m, &self.attachments))
            .with_gateways(compile::gateways(&m, &self.attachments, |id| slots.get(id)))
            .with_standby(self.standby());
        drop(m);
        let (entries, addrs) = (next.accepted().len() as u64, next.endpoint_count() as u64);
        let generation = self.publisher.publish(next);
        self.slot_map.store(self.slots.published());
        self.status
            .accepted_entries
            .store(entries, Ordering::Relaxed);
        self.status
            .endpoint_addresses
            .store(addrs, Ordering::Relaxed);
        self.status
            .applied_revision
            .store(revision, Ordering::Release);
        self.status
            .published_generation
            .store(generation, Ordering::Release);
        metrics::histogram!("vpcep_push_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("vpcep_push_generations_total").increment(1);
        tracing::debug!(
            generation,
            revision,
            endpoints = ids.len(),
            "tables published"
        );
        generation
    }

    /// The attachments this node is the standby of.
    fn standby(&self) -> Vec<dataplane::Attachment> {
        let Some(owned) = &self.owned else {
            return Vec::new();
        };
        self.attachments
            .iter()
            .filter(|(id, _)| !owned.contains(*id))
            .map(|(_, v)| v)
            .collect()
    }

    /// Own exactly the VPCs `owned` (`None`: every attachment) from now on, and publish it
    /// at once: the attachments just owned are announced with gratuitous ARP, those given
    /// up go quiet. Returns the generation.
    pub fn set_owned(&mut self, owned: Option<BTreeSet<String>>) -> u64 {
        self.set_owned_announcing(owned, &BTreeSet::new())
    }

    /// [`Pusher::set_owned`], and announce `again` too, those of them this node owns then:
    /// VPCs it kept while another node claimed them (a partition), which that node has just
    /// given up. Hosts whose last ARP answer came from the other node still map the
    /// addresses to its MAC, and it answers no more: without this they would send into it
    /// until their neighbour entries age out. One publication, one announcement (the same
    /// addresses a takeover announces). Returns the generation.
    pub fn set_owned_announcing(
        &mut self,
        owned: Option<BTreeSet<String>>,
        again: &BTreeSet<String>,
    ) -> u64 {
        let was = self.owned.clone();
        let gained = |v: &String| was.as_ref().is_some_and(|was| !was.contains(v));
        let announced: BTreeSet<dataplane::Attachment> = match &owned {
            Some(now) => now
                .iter()
                .filter(|v| gained(v) || again.contains(*v))
                .filter_map(|v| self.attachments.get(&v.as_str().into()))
                .collect(),
            None => again
                .iter()
                .filter_map(|v| self.attachments.get(&v.as_str().into()))
                .collect(),
        };
        self.owned.clone_from(&owned);
        *self
            .status
            .owned
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = owned;
        let current = self.publisher.current();
        let mut next = current.with_standby(self.standby());
        if !announced.is_empty() {
            // An announcement no worker has taken yet is replaced: carry its attachments on
            // (those still owned).
            let pending = current
                .announcement()
                .filter(|a| !self.publisher.is_claimed(a))
                .map(|a| a.vpcs().to_vec())
                .unwrap_or_default();
            let all: BTreeSet<dataplane::Attachment> = announced
                .into_iter()
                .chain(pending.into_iter().filter(|v| next.owns(*v)))
                .collect();
            next = next.with_announcement(all.into_iter().collect());
        }
        let generation = self.publisher.publish(next);
        self.status
            .published_generation
            .store(generation, Ordering::Release);
        generation
    }

    /// Announce `again` (those of them this node owns) with gratuitous ARP; see
    /// [`Pusher::set_owned_announcing`]. Returns the generation.
    pub fn announce_again(&mut self, again: &BTreeSet<String>) -> u64 {
        self.set_owned_announcing(self.owned.clone(), again)
    }

    /// Compile for `attachments` from now on (a reload changed them); the caller applies
    /// [`Touched::All`] next, before any worker reads the tables.
    pub fn set_attachments(&mut self, attachments: Attachments) {
        self.attachments = attachments;
    }

    /// The addresses control-plane services own on the attachments (the resolvers'
    /// `dns_ip`s): published in every generation from now on, so the workers leave them be.
    pub fn set_service_addresses(
        &mut self,
        addrs: Vec<(dataplane::Attachment, std::net::Ipv4Addr)>,
    ) {
        self.service_addrs = addrs;
    }

    /// The attachments' SNAT next hops (see `snat_next_hop` of an attachment), published
    /// in every generation from now on.
    pub fn set_snat_next_hops(&mut self, hops: Vec<(dataplane::Attachment, std::net::Ipv4Addr)>) {
        self.snat_next_hops = hops;
    }

    /// Run until the registry drops every sender: wait for a note, drain the queue into one
    /// batch, apply it. The pusher is locked for each batch only, so a reload can take it
    /// between two batches.
    pub fn run(pusher: &Mutex<Self>, registry: &Registry, notes: &Receiver<ChangeNote>) {
        while let Ok(first) = notes.recv() {
            let mut revision = first.revision;
            let mut all = first.touched == Touched::All;
            let mut ids = BTreeSet::new();
            if let Touched::Endpoints(v) = first.touched {
                ids.extend(v);
            }
            while let Ok(more) = notes.try_recv() {
                revision = revision.max(more.revision);
                match more.touched {
                    Touched::All => all = true,
                    Touched::Endpoints(v) => ids.extend(v),
                }
            }
            let touched = if all {
                Touched::All
            } else {
                Touched::Endpoints(ids.into_iter().collect())
            };
            pusher
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(registry, &touched, revision);
        }
    }
}

#[cfg(test)]
mod tests {
    use dataplane::Attachment;
    use dataplane::tables::default_snat_range;

    use super::*;

    fn owned(v: &[&str]) -> Option<BTreeSet<String>> {
        Some(v.iter().map(ToString::to_string).collect())
    }

    /// A pusher over attachments `u`, `p` and `x`, and its status.
    fn pusher() -> (Pusher, Arc<PushStatus>) {
        let snat = default_snat_range();
        let status = Arc::new(PushStatus::default());
        let p = Pusher::new(
            TablePublisher::new(Tables::new(snat)),
            Attachments::new(["u", "p", "x"]),
            snat,
            Arc::clone(&status),
        );
        (p, status)
    }

    #[test]
    fn ownership_is_published_and_only_gains_are_announced() {
        let (mut p, status) = pusher();
        let owns = |p: &Pusher| -> Vec<bool> {
            let t = p.publisher().current();
            (0..3).map(|i| t.owns(Attachment(i))).collect()
        };
        // Before any election: owns everything, announces nothing.
        assert_eq!(owns(&p), [true, true, true]);
        assert!(status.owns("x"));
        // A standby of everything until the election says otherwise.
        let g1 = p.set_owned(owned(&[]));
        assert_eq!(owns(&p), [false, false, false]);
        assert!(p.publisher().current().announcement().is_none());
        assert_eq!(status.owned_vpcs(), Some(Vec::new()));
        // Won two: they are owned and announced.
        let g2 = p.set_owned(owned(&["u", "p"]));
        assert!(g2 > g1);
        assert_eq!(status.published_generation.load(Ordering::Relaxed), g2);
        assert_eq!(owns(&p), [true, true, false]);
        let t = p.publisher().current();
        let a = t.announcement().unwrap();
        let mut vpcs = a.vpcs().to_vec();
        vpcs.sort_unstable();
        assert_eq!(vpcs, [Attachment(0), Attachment(1)]);
        assert!(p.publisher().reader().claims().claim(a));
        assert!(status.owns("u") && !status.owns("x"));
        // The same set again, and a loss: no new announcement.
        p.set_owned(owned(&["u", "p"]));
        p.set_owned(owned(&["u"]));
        assert_eq!(owns(&p), [true, false, false]);
        assert!(
            !p.publisher()
                .reader()
                .claims()
                .claim(p.publisher().current().announcement().unwrap())
        );
        // Regained: announced again, alone.
        p.set_owned(owned(&["u", "p"]));
        let t = p.publisher().current();
        assert_eq!(t.announcement().unwrap().vpcs(), [Attachment(1)]);
        // Attachments moved by a reload: the standby follows the VPC ids.
        p.set_attachments(Attachments::new(["x", "p", "u"]));
        p.set_owned(owned(&["u", "p"]));
        assert_eq!(owns(&p), [false, true, true]);
        // No election (redb, or failover off): owns everything.
        p.set_owned(None);
        assert_eq!(owns(&p), [true, true, true]);
        assert_eq!(status.owned_vpcs(), None);
    }

    #[test]
    fn a_handover_is_announced_again_and_only_what_is_owned() {
        let (mut p, status) = pusher();
        p.set_owned(owned(&[]));
        p.set_owned(owned(&["u", "p"]));
        assert!(
            p.publisher()
                .reader()
                .claims()
                .claim(p.publisher().current().announcement().unwrap())
        );
        // Another node gave up "u" and "x": "u" is announced again; "x" is not ours.
        let g = p.announce_again(&owned(&["u", "x"]).unwrap());
        assert_eq!(status.published_generation.load(Ordering::Relaxed), g);
        let t = p.publisher().current();
        let a = t.announcement().unwrap();
        assert_eq!(a.vpcs(), [Attachment(0)]);
        assert!(t.owns(Attachment(0)) && t.owns(Attachment(1)) && !t.owns(Attachment(2)));
        // Not yet taken by a worker, it is not lost to the next one.
        p.set_owned_announcing(owned(&["u", "p", "x"]), &BTreeSet::new());
        let t = p.publisher().current();
        let mut vpcs = t.announcement().unwrap().vpcs().to_vec();
        vpcs.sort_unstable();
        assert_eq!(vpcs, [Attachment(0), Attachment(2)]);
        // Taken: nothing owned to announce again publishes no new announcement.
        assert!(
            p.publisher()
                .reader()
                .claims()
                .claim(t.announcement().unwrap())
        );
        p.announce_again(&owned(&["y"]).unwrap());
        assert!(
            p.publisher()
                .is_claimed(p.publisher().current().announcement().unwrap())
        );
    }
}
