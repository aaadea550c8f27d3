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
use std::time::Instant;

use dataplane::tables::sharded::Change;
use dataplane::tables::{AcceptedKey, DnsKey, EndpointKey, Ipv4Cidr};
use dataplane::{TablePublisher, Tables};

use crate::compile::{self, Attachments};
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
}

/// What one endpoint put in the live tables, to take out when it changes.
#[derive(Debug)]
struct Contribution {
    accepted: Vec<AcceptedKey>,
    address: Option<EndpointKey>,
    dns: Option<DnsKey>,
}

/// The pusher's state.
#[allow(missing_debug_implementations)] // holds a TablePublisher
pub struct Pusher {
    publisher: TablePublisher,
    attachments: Attachments,
    snat: Ipv4Cidr,
    contributed: HashMap<EndpointId, Contribution>,
    service_addrs: Vec<(dataplane::VpcId, std::net::Ipv4Addr)>,
    status: Arc<PushStatus>,
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
            status,
        }
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
                Tables::new(self.snat)
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
        for id in &ids {
            if let Some(old) = self.contributed.remove(id) {
                accepted.extend(old.accepted.into_iter().map(Change::Remove));
                addresses.extend(old.address.map(Change::Remove));
                names.extend(old.dns.map(Change::Remove));
            }
            if let Some(ep) = m.endpoints.get(id) {
                let c = compile::endpoint(&m, &self.attachments, ep);
                let dns = compile::dns(&self.attachments, ep, registry.region());
                let keys: Vec<AcceptedKey> = c.accepted.iter().map(|(k, _)| *k).collect();
                added.extend(c.accepted.into_iter().map(|(k, t)| Change::Put(k, t)));
                if let Some((k, s)) = c.address {
                    added_addresses.push(Change::Put(k, s));
                }
                let dns_key = dns.as_ref().map(|(k, _)| k.clone());
                added_names.extend(dns.map(|(k, ip)| Change::Put(k, ip)));
                self.contributed.insert(
                    id.clone(),
                    Contribution {
                        accepted: keys,
                        address: c.address.map(|(k, _)| k),
                        dns: dns_key,
                    },
                );
            }
        }
        accepted.extend(added);
        addresses.extend(added_addresses);
        names.extend(added_names);
        let next = base
            .with_accepted(accepted)
            .with_endpoints(addresses)
            .with_dns(names)
            .with_service_addresses(&self.service_addrs)
            .with_snat_vpcs(compile::snat_vpcs(&m, &self.attachments))
            .with_backends(compile::backends(&m, &self.attachments))
            .with_sources(compile::sources(&m, &self.attachments))
            .with_ports(compile::ports(&m, &self.attachments))
            .with_gateways(compile::gateways(&m, &self.attachments));
        drop(m);
        let (entries, addrs) = (next.accepted().len() as u64, next.endpoint_count() as u64);
        let generation = self.publisher.publish(next);
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

    /// Compile for `attachments` from now on (a reload changed them); the caller applies
    /// [`Touched::All`] next, before any worker reads the tables.
    pub fn set_attachments(&mut self, attachments: Attachments) {
        self.attachments = attachments;
    }

    /// The addresses control-plane services own on the attachments (the resolvers'
    /// `dns_ip`s): published in every generation from now on, so the workers leave them be.
    pub fn set_service_addresses(&mut self, addrs: Vec<(dataplane::VpcId, std::net::Ipv4Addr)>) {
        self.service_addrs = addrs;
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
