//! [`Model`]: every record in memory, with the indexes the rules and the compiler need, and
//! the queries over them. [`Record`] and [`Mutation`] are what a commit writes; a record's
//! store key is `<kind>/<id>`.
//!
//! The model only changes through [`Model::apply`], so the indexes cannot drift from the
//! records. Tenancy is not applied here: see [`crate::model::TenantView`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{
    ConnectionStatus, Endpoint, EndpointId, GatewayService, Grantee, Permission, PermissionId,
    Port, PortId, ProjectId, Service, ServiceId, Subnet, SubnetId, Tenant, Vpc, VpcId,
    org_path_admits,
};

/// A record of any kind, as stored.
#[allow(clippy::large_enum_variant)] // short-lived, built once per write
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "record", rename_all = "snake_case")]
pub enum Record {
    /// A VPC.
    Vpc(Vpc),
    /// A subnet.
    Subnet(Subnet),
    /// A port.
    Port(Port),
    /// An endpoint service.
    Service(Service),
    /// A whitelist entry.
    Permission(Permission),
    /// An endpoint.
    Endpoint(Endpoint),
}

/// The store key of a record: its kind and its id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// A VPC.
    Vpc(VpcId),
    /// A subnet.
    Subnet(SubnetId),
    /// A port.
    Port(PortId),
    /// An endpoint service.
    Service(ServiceId),
    /// A whitelist entry.
    Permission(PermissionId),
    /// An endpoint.
    Endpoint(EndpointId),
}

impl Key {
    /// The store's spelling: `<kind>/<id>`.
    pub fn encode(&self) -> String {
        match self {
            Self::Vpc(id) => format!("vpc/{id}"),
            Self::Subnet(id) => format!("subnet/{id}"),
            Self::Port(id) => format!("port/{id}"),
            Self::Service(id) => format!("service/{id}"),
            Self::Permission(id) => format!("permission/{id}"),
            Self::Endpoint(id) => format!("endpoint/{id}"),
        }
    }

    /// Read the store's spelling back (what another node's delete names); `None` for a key
    /// that is not a record's.
    pub fn decode(key: &str) -> Option<Self> {
        let (kind, id) = key.split_once('/')?;
        if id.is_empty() {
            return None;
        }
        Some(match kind {
            "vpc" => Self::Vpc(id.into()),
            "subnet" => Self::Subnet(id.into()),
            "port" => Self::Port(id.into()),
            "service" => Self::Service(id.into()),
            "permission" => Self::Permission(id.into()),
            "endpoint" => Self::Endpoint(id.into()),
            _ => return None,
        })
    }
}

impl Record {
    /// The record's key.
    pub fn key(&self) -> Key {
        match self {
            Self::Vpc(r) => Key::Vpc(r.id.clone()),
            Self::Subnet(r) => Key::Subnet(r.id.clone()),
            Self::Port(r) => Key::Port(r.id.clone()),
            Self::Service(r) => Key::Service(r.id.clone()),
            Self::Permission(r) => Key::Permission(r.id.clone()),
            Self::Endpoint(r) => Key::Endpoint(r.id.clone()),
        }
    }
}

/// One change of a commit.
#[allow(clippy::large_enum_variant)] // short-lived, built once per write
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Create or replace.
    Put(Record),
    /// Remove.
    Delete(Key),
}

/// The model in memory, with the indexes the rules need.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// VPCs by id.
    pub vpcs: BTreeMap<VpcId, Vpc>,
    /// Subnets by id.
    pub subnets: BTreeMap<SubnetId, Subnet>,
    /// Ports by id.
    pub ports: BTreeMap<PortId, Port>,
    /// Services by id.
    pub services: BTreeMap<ServiceId, Service>,
    /// Permissions by id.
    pub permissions: BTreeMap<PermissionId, Permission>,
    /// Endpoints by id.
    pub endpoints: BTreeMap<EndpointId, Endpoint>,
    endpoints_by_service: HashMap<ServiceId, BTreeSet<EndpointId>>,
    /// How many endpoints each project has (its quota's count, without a scan).
    endpoints_per_project: HashMap<ProjectId, usize>,
    permissions_by_service: HashMap<ServiceId, BTreeSet<PermissionId>>,
    /// Whom each service's whitelist admits, for [`Model::visible`].
    admits: HashMap<ServiceId, Admits>,
    used_ips: HashMap<SubnetId, UsedIps>,
    markers: HashSet<u64>,
    /// The VPCs the dataplanes attach (`None`: unknown here, as on an API-only node); not
    /// stored: the daemon sets it from its config (see [`super::health`]).
    pub attached: Option<std::sync::Arc<BTreeSet<VpcId>>>,
    /// The operator's gateway services, by id; not stored: the daemon sets them from its
    /// config (see [`super::gateway`]).
    pub gateways: std::sync::Arc<BTreeMap<ServiceId, GatewayService>>,
}

/// The IPv4 addresses taken in one subnet, and where a search for a free one may start.
#[derive(Clone, Debug, Default)]
struct UsedIps {
    set: BTreeSet<u32>,
    /// Every host address of the subnet below this one is taken, reserved or in `freed`
    /// (0: nothing known), so the first free address is in `freed` or at or above it. It
    /// moves up as the addresses at its edge are taken.
    low: u32,
    /// Addresses below `low` given back since it passed them.
    freed: BTreeSet<u32>,
}

impl UsedIps {
    fn take(&mut self, ip: u32, subnet: Option<&Subnet>) {
        self.set.insert(ip);
        if self.freed.remove(&ip) {
            return;
        }
        let Some((hosts, gateway)) = subnet.and_then(Subnet::v4_hosts) else {
            return;
        };
        let mut low = self.low.max(hosts.start);
        while hosts.contains(&low) && (self.set.contains(&low) || Some(low) == gateway) {
            low += 1;
        }
        self.low = low;
    }

    fn free(&mut self, ip: u32) {
        if self.set.remove(&ip) && ip < self.low {
            self.freed.insert(ip);
        }
    }

    /// Where the search for a free address may start.
    fn start(&self) -> u32 {
        self.freed.first().copied().unwrap_or(self.low)
    }
}

/// Whom one service's whitelist admits, kept as entries come and go: entries for everyone,
/// the accounts named (with how many entries name each), and the organisation path
/// patterns (matched one by one, since they carry wildcards).
#[derive(Clone, Debug, Default)]
struct Admits {
    everyone: usize,
    accounts: HashMap<String, usize>,
    org_paths: BTreeMap<PermissionId, String>,
}

impl Admits {
    fn add(&mut self, p: &Permission) {
        match p.grantee() {
            Grantee::Account(d) => *self.accounts.entry(d.to_string()).or_default() += 1,
            Grantee::Everyone => self.everyone += 1,
            Grantee::Nobody => {}
            Grantee::OrgPath(pattern) => {
                self.org_paths.insert(p.id.clone(), pattern.to_string());
            }
        }
    }

    fn remove(&mut self, p: &Permission) {
        match p.grantee() {
            Grantee::Account(d) => {
                if let Some(n) = self.accounts.get_mut(d) {
                    *n -= 1;
                    if *n == 0 {
                        self.accounts.remove(d);
                    }
                }
            }
            Grantee::Everyone => self.everyone = self.everyone.saturating_sub(1),
            Grantee::Nobody => {}
            Grantee::OrgPath(_) => {
                self.org_paths.remove(&p.id);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.everyone == 0 && self.accounts.is_empty() && self.org_paths.is_empty()
    }

    /// The same answer as any entry's [`Permission::admits`], without the scan.
    fn admits(&self, who: &Tenant) -> bool {
        self.everyone > 0
            || self.accounts.contains_key(who.domain_id.as_str())
            || who.org_path.as_deref().is_some_and(|path| {
                self.org_paths
                    .values()
                    .any(|pattern| org_path_admits(pattern, path))
            })
    }
}

impl Model {
    /// Apply one committed change.
    pub fn apply(&mut self, m: Mutation) {
        match m {
            Mutation::Put(r) => {
                self.remove(&r.key());
                self.insert(r);
            }
            Mutation::Delete(key) => self.remove(&key),
        }
    }

    /// The record under `key`, if there is one (a copy).
    pub fn get(&self, key: &Key) -> Option<Record> {
        match key {
            Key::Vpc(id) => self.vpcs.get(id).cloned().map(Record::Vpc),
            Key::Subnet(id) => self.subnets.get(id).cloned().map(Record::Subnet),
            Key::Port(id) => self.ports.get(id).cloned().map(Record::Port),
            Key::Service(id) => self.services.get(id).cloned().map(Record::Service),
            Key::Permission(id) => self.permissions.get(id).cloned().map(Record::Permission),
            Key::Endpoint(id) => self.endpoints.get(id).cloned().map(Record::Endpoint),
        }
    }

    /// Add a record whose key is not in the model yet (loading a store); [`Model::apply`]
    /// is the way to change the model otherwise.
    pub fn insert(&mut self, r: Record) {
        match r {
            Record::Vpc(v) => {
                self.vpcs.insert(v.id.clone(), v);
            }
            Record::Subnet(s) => {
                self.subnets.insert(s.id.clone(), s);
            }
            Record::Port(p) => {
                if let Some(ip) = p.ipv4() {
                    self.used_ips
                        .entry(p.subnet_id.clone())
                        .or_default()
                        .take(ip.to_bits(), self.subnets.get(&p.subnet_id));
                }
                self.ports.insert(p.id.clone(), p);
            }
            Record::Service(s) => {
                self.services.insert(s.id.clone(), s);
            }
            Record::Permission(p) => {
                self.permissions_by_service
                    .entry(p.service_id.clone())
                    .or_default()
                    .insert(p.id.clone());
                self.admits.entry(p.service_id.clone()).or_default().add(&p);
                self.permissions.insert(p.id.clone(), p);
            }
            Record::Endpoint(e) => {
                self.endpoints_by_service
                    .entry(e.service_id.clone())
                    .or_default()
                    .insert(e.id.clone());
                self.used_ips
                    .entry(e.subnet_id.clone())
                    .or_default()
                    .take(e.ip.to_bits(), self.subnets.get(&e.subnet_id));
                self.markers.insert(e.marker_id);
                *self
                    .endpoints_per_project
                    .entry(e.project_id.clone())
                    .or_default() += 1;
                self.endpoints.insert(e.id.clone(), e);
            }
        }
    }

    fn remove(&mut self, key: &Key) {
        match key {
            Key::Vpc(id) => {
                self.vpcs.remove(id);
            }
            Key::Subnet(id) => {
                self.subnets.remove(id);
            }
            Key::Port(id) => {
                if let Some(p) = self.ports.remove(id)
                    && let Some(ip) = p.ipv4()
                    && let Some(used) = self.used_ips.get_mut(&p.subnet_id)
                {
                    used.free(ip.to_bits());
                }
            }
            Key::Service(id) => {
                self.services.remove(id);
            }
            Key::Permission(id) => {
                if let Some(p) = self.permissions.remove(id) {
                    if let Some(set) = self.permissions_by_service.get_mut(&p.service_id) {
                        set.remove(id);
                        if set.is_empty() {
                            self.permissions_by_service.remove(&p.service_id);
                        }
                    }
                    if let Some(a) = self.admits.get_mut(&p.service_id) {
                        a.remove(&p);
                        if a.is_empty() {
                            self.admits.remove(&p.service_id);
                        }
                    }
                }
            }
            Key::Endpoint(id) => {
                if let Some(e) = self.endpoints.remove(id) {
                    if let Some(set) = self.endpoints_by_service.get_mut(&e.service_id) {
                        set.remove(id);
                    }
                    if let Some(used) = self.used_ips.get_mut(&e.subnet_id) {
                        used.free(e.ip.to_bits());
                    }
                    self.markers.remove(&e.marker_id);
                    if let Some(n) = self.endpoints_per_project.get_mut(&e.project_id) {
                        *n -= 1;
                        if *n == 0 {
                            self.endpoints_per_project.remove(&e.project_id);
                        }
                    }
                }
            }
        }
    }

    /// Endpoints connected to a service.
    pub fn endpoints_of<'m>(&'m self, service_id: &str) -> impl Iterator<Item = &'m Endpoint> {
        self.endpoints_by_service
            .get(service_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.endpoints.get(id))
    }

    /// Whitelist entries of a service.
    pub fn permissions_of<'m>(&'m self, service_id: &str) -> impl Iterator<Item = &'m Permission> {
        self.permissions_by_service
            .get(service_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.permissions.get(id))
    }

    /// Services whose backend is `port_id`, except `exclude`.
    pub fn services_on<'m>(
        &'m self,
        port_id: &'m PortId,
        exclude: Option<&'m ServiceId>,
    ) -> impl Iterator<Item = &'m Service> {
        self.services
            .values()
            .filter(move |s| s.port_id.as_ref() == Some(port_id) && Some(&s.id) != exclude)
    }

    /// Connections that count for a service's `connection_count`: the accepted ones.
    pub fn connection_count(&self, svc: &Service) -> usize {
        self.endpoints_of(svc.id.as_str())
            .filter(|e| e.status == ConnectionStatus::Accepted)
            .count()
    }

    /// True if `who` may see and connect to `svc` (its owner's account always, others
    /// through a whitelist entry, by account or organisation). A hash lookup, plus a match
    /// of the service's organisation path patterns when `who` is in an organisation: every
    /// list of services asks this of each service.
    pub fn visible(&self, svc: &Service, who: &Tenant) -> bool {
        svc.domain_id == who.domain_id
            || self
                .admits
                .get(svc.id.as_str())
                .is_some_and(|a| a.admits(who))
    }

    /// The backend address of a service, if it has a live IPv4 backend.
    pub fn backend_ip(&self, svc: &Service) -> Option<Ipv4Addr> {
        self.ports.get(svc.port_id.as_ref()?)?.ipv4()
    }

    /// True if `ip` is taken by a port or an endpoint of subnet `subnet_id`.
    pub fn ip_in_use(&self, subnet_id: &SubnetId, ip: Ipv4Addr) -> bool {
        self.used_ips
            .get(subnet_id)
            .is_some_and(|u| u.set.contains(&ip.to_bits()))
    }

    /// Taken IPv4 addresses of a subnet from `from` on, ascending, as host-order integers.
    pub fn used_ips(&self, subnet_id: &SubnetId, from: u32) -> impl Iterator<Item = u32> + '_ {
        self.used_ips
            .get(subnet_id)
            .into_iter()
            .flat_map(move |u| u.set.range(from..))
            .copied()
    }

    /// Where the search for a free IPv4 address of a subnet may start: every host address
    /// below it is taken or reserved.
    pub fn free_ips_from(&self, subnet_id: &SubnetId) -> u32 {
        self.used_ips.get(subnet_id).map_or(0, UsedIps::start)
    }

    /// How many endpoints project `project_id` has.
    pub fn endpoint_count(&self, project_id: &ProjectId) -> usize {
        self.endpoints_per_project
            .get(project_id)
            .copied()
            .unwrap_or(0)
    }

    /// True if a connection already uses packet id `marker`.
    pub fn marker_taken(&self, marker: u64) -> bool {
        self.markers.contains(&marker)
    }
}
