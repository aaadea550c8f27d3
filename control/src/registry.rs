//! The rules of the product, applied to the resource model.
//!
//! Every operation validates against the current model and returns the records it changes;
//! `Registry::commit` writes them to the store in one durable transaction and only then
//! applies them in memory and tells the pusher which endpoints to recompile. So an answer is
//! sent only for a change that is on disk, a failed commit changes nothing, and writers are
//! serialised (one `writer` lock) while readers keep reading the last committed model.
//!
//! Tenancy: a tenant (project) sees and changes only its own VPCs, subnets, ports, services
//! and endpoints. A service is visible to another account only through its whitelist (the
//! owner's account always); only the owning project manages it and accepts or rejects its
//! connections. A resource another tenant owns answers as if it did not exist.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use dataplane::tables::Ipv4Cidr;
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::auth::Tenant;
use crate::model::*;
use crate::requests::*;
use crate::store::{Op, Store, StoreError};

/// Most port mappings in one request (the API's limit).
pub const MAX_PORTS: usize = 200;
/// Most endpoint services on one backend port.
pub const MAX_SERVICES_PER_BACKEND: usize = 5;
/// Most tags on a resource.
pub const MAX_TAGS: usize = 20;
/// Most entries in an endpoint's source whitelist.
pub const MAX_WHITELIST: usize = 20;

/// Per-project quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Endpoint services per project. Default 50.
    #[serde(default = "default_service_quota")]
    pub endpoint_service: usize,
    /// Endpoints per project. Default 500.
    #[serde(default = "default_endpoint_quota")]
    pub endpoint: usize,
}

fn default_service_quota() -> usize {
    50
}

fn default_endpoint_quota() -> usize {
    500
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            endpoint_service: default_service_quota(),
            endpoint: default_endpoint_quota(),
        }
    }
}

/// What a commit changed, for the pusher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Touched {
    /// Recompile everything (after a load).
    All,
    /// Recompile these endpoints (changed, deleted, or their service changed).
    Endpoints(Vec<String>),
}

/// A change to the pusher: what to recompile and the store revision it reflects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeNote {
    /// What changed.
    pub touched: Touched,
    /// The revision after the change.
    pub revision: u64,
}

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

impl Record {
    fn key(&self) -> String {
        match self {
            Self::Vpc(r) => format!("vpc/{}", r.id),
            Self::Subnet(r) => format!("subnet/{}", r.id),
            Self::Port(r) => format!("port/{}", r.id),
            Self::Service(r) => format!("service/{}", r.id),
            Self::Permission(r) => format!("permission/{}", r.id),
            Self::Endpoint(r) => format!("endpoint/{}", r.id),
        }
    }
}

/// One change of a commit.
#[allow(clippy::large_enum_variant)] // short-lived, built once per write
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Create or replace.
    Put(Record),
    /// Remove by store key (`kind/id`).
    Delete(String),
}

/// The model in memory, with the indexes the rules need.
#[derive(Debug, Default)]
pub struct Model {
    /// VPCs by id.
    pub vpcs: BTreeMap<String, Vpc>,
    /// Subnets by id.
    pub subnets: BTreeMap<String, Subnet>,
    /// Ports by id.
    pub ports: BTreeMap<String, Port>,
    /// Services by id.
    pub services: BTreeMap<String, Service>,
    /// Permissions by id.
    pub permissions: BTreeMap<String, Permission>,
    /// Endpoints by id.
    pub endpoints: BTreeMap<String, Endpoint>,
    endpoints_by_service: HashMap<String, BTreeSet<String>>,
    permissions_by_service: HashMap<String, BTreeSet<String>>,
    used_ips: HashMap<String, BTreeSet<u32>>,
    markers: HashSet<u64>,
}

impl Model {
    fn apply(&mut self, m: Mutation) {
        match m {
            Mutation::Put(r) => {
                self.remove(&r.key());
                self.insert(r);
            }
            Mutation::Delete(key) => self.remove(&key),
        }
    }

    fn insert(&mut self, r: Record) {
        match r {
            Record::Vpc(v) => {
                self.vpcs.insert(v.id.clone(), v);
            }
            Record::Subnet(s) => {
                self.subnets.insert(s.id.clone(), s);
            }
            Record::Port(p) => {
                if let Ok(ip) = p.ip.parse::<Ipv4Addr>() {
                    self.used_ips
                        .entry(p.subnet_id.clone())
                        .or_default()
                        .insert(ip.to_bits());
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
                    .insert(e.ip.to_bits());
                self.markers.insert(e.marker_id);
                self.endpoints.insert(e.id.clone(), e);
            }
        }
    }

    fn remove(&mut self, key: &str) {
        let Some((kind, id)) = key.split_once('/') else {
            return;
        };
        match kind {
            "vpc" => {
                self.vpcs.remove(id);
            }
            "subnet" => {
                self.subnets.remove(id);
            }
            "port" => {
                if let Some(p) = self.ports.remove(id)
                    && let Ok(ip) = p.ip.parse::<Ipv4Addr>()
                    && let Some(set) = self.used_ips.get_mut(&p.subnet_id)
                {
                    set.remove(&ip.to_bits());
                }
            }
            "service" => {
                self.services.remove(id);
            }
            "permission" => {
                if let Some(p) = self.permissions.remove(id)
                    && let Some(set) = self.permissions_by_service.get_mut(&p.service_id)
                {
                    set.remove(id);
                }
            }
            "endpoint" => {
                if let Some(e) = self.endpoints.remove(id) {
                    if let Some(set) = self.endpoints_by_service.get_mut(&e.service_id) {
                        set.remove(id);
                    }
                    if let Some(set) = self.used_ips.get_mut(&e.subnet_id) {
                        set.remove(&e.ip.to_bits());
                    }
                    self.markers.remove(&e.marker_id);
                }
            }
            _ => {}
        }
    }

    /// Endpoints connected to a service.
    pub fn endpoints_of(&self, service_id: &str) -> impl Iterator<Item = &Endpoint> {
        self.endpoints_by_service
            .get(service_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.endpoints.get(id))
    }

    /// Whitelist entries of a service.
    pub fn permissions_of(&self, service_id: &str) -> impl Iterator<Item = &Permission> {
        self.permissions_by_service
            .get(service_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.permissions.get(id))
    }

    /// True if account `domain_id` may see and connect to `svc`.
    pub fn visible(&self, svc: &Service, domain_id: &str) -> bool {
        svc.domain_id == domain_id || self.permissions_of(&svc.id).any(|p| p.admits(domain_id))
    }

    /// The backend address of a service, if it has a live IPv4 backend.
    pub fn backend_ip(&self, svc: &Service) -> Option<Ipv4Addr> {
        let port = self.ports.get(svc.port_id.as_deref()?)?;
        port.ip.parse().ok()
    }
}

/// The registry: the model, its store, and the rules.
pub struct Registry {
    store: Arc<dyn Store>,
    model: RwLock<Model>,
    writer: Mutex<()>,
    region: String,
    quotas: Quotas,
    notes: Mutex<Vec<std::sync::mpsc::Sender<ChangeNote>>>,
    revision: AtomicU64,
}

impl core::fmt::Debug for Registry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registry")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Why loading the store failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record could not be decoded.
    #[error("corrupt record {key}: {source}")]
    Decode {
        /// The record's key.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn require<T>(v: Option<T>, field: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::param(format!("{field} is required")))
}

fn check_description(d: &str) -> Result<(), ApiError> {
    if d.chars().count() > 128 || d.contains(['<', '>']) {
        return Err(ApiError::param(
            "description: at most 128 characters, without < or >",
        ));
    }
    Ok(())
}

fn check_tags(tags: &[Tag]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new(
            "EndPoint.3069",
            "The maximum number of tags has been reached.",
        ));
    }
    let mut keys = HashSet::new();
    for t in tags {
        if t.key.is_empty() {
            return Err(ApiError::new("EndPoint.3066", "The tag cannot be empty."));
        }
        if t.key.chars().count() > 128 || t.value.chars().count() > 255 {
            return Err(ApiError::new(
                "EndPoint.3068",
                "Tag keys and values should meet relevant requirements.",
            ));
        }
        if !keys.insert(&t.key) {
            return Err(ApiError::new(
                "EndPoint.3067",
                "The tag key cannot be duplicated.",
            ));
        }
    }
    Ok(())
}

fn check_service_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            "EndPoint.1003",
            "Invalid service name: 1 to 16 characters of A-Z a-z 0-9 _ -.",
        ))
    }
}

fn check_tcp_proxy(v: &str) -> Result<(), ApiError> {
    match v {
        "close" | "toa_open" | "proxy_open" | "open" => Ok(()),
        _ => Err(ApiError::param(
            "tcp_proxy must be close, toa_open, proxy_open or open",
        )),
    }
}

fn port_number(v: Option<i64>, which: &str) -> Result<u16, ApiError> {
    let v = v.ok_or_else(|| ApiError::new("EndPoint.3043", format!("{which} is required")))?;
    u16::try_from(v).ok().filter(|p| *p >= 1).ok_or_else(|| {
        ApiError::new(
            "EndPoint.3043",
            format!("The service port is invalid: {which} {v} is not in 1..65535."),
        )
    })
}

fn parse_ports(ports: &[PortBody]) -> Result<Vec<PortMapping>, ApiError> {
    if ports.is_empty() {
        return Err(ApiError::param("ports must hold at least one mapping"));
    }
    if ports.len() > MAX_PORTS {
        return Err(ApiError::new(
            "EndPoint.3074",
            format!("The maximum of ports has been reached: at most {MAX_PORTS} per request."),
        ));
    }
    let mut out = Vec::with_capacity(ports.len());
    let mut clients = HashSet::new();
    let mut servers = HashSet::new();
    for p in ports {
        let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            other => {
                return Err(ApiError::new(
                    "EndPoint.3075",
                    format!("The protocol is invalid: {other:?} (TCP or UDP)."),
                ));
            }
        };
        let m = PortMapping {
            protocol,
            client_port: port_number(p.client_port, "client_port")?,
            server_port: port_number(p.server_port, "server_port")?,
        };
        if !clients.insert((protocol, m.client_port)) || !servers.insert((protocol, m.server_port))
        {
            return Err(ApiError::new(
                "EndPoint.3044",
                format!(
                    "The parameter ports conflicted: {} client port {} or server port {} appears twice.",
                    protocol.as_str(),
                    m.client_port,
                    m.server_port
                ),
            ));
        }
        out.push(m);
    }
    Ok(out)
}

fn parse_whitelist(list: &[String]) -> Result<Vec<String>, ApiError> {
    if list.len() > MAX_WHITELIST {
        return Err(ApiError::new(
            "EndPoint.2045",
            "The maximum number of whitelist records has been reached.",
        ));
    }
    list.iter()
        .map(|s| {
            s.parse::<Ipv4Cidr>().map(|_| s.clone()).map_err(|_| {
                ApiError::new(
                    "EndPoint.2044",
                    format!("Invalid whitelist entry {s:?}: an IPv4 address or CIDR."),
                )
            })
        })
        .collect()
}

fn parse_permission(p: &str, permission_type: &str) -> Result<(), ApiError> {
    let bad = || ApiError::new("EndPoint.3002", format!("Invalid permission {p:?}."));
    match permission_type {
        "domainId" => {
            if p == "*" {
                return Ok(());
            }
            let id = p.strip_prefix("iam:domain::").ok_or_else(bad)?;
            let ok = !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*');
            if ok { Ok(()) } else { Err(bad()) }
        }
        "orgPath" => {
            let path = p.strip_prefix("organizations:orgPath::").ok_or_else(bad)?;
            let ok = !path.is_empty()
                && path.len() <= 1024
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/*?-".contains(&b));
            if ok { Ok(()) } else { Err(bad()) }
        }
        _ => Err(ApiError::param(
            "permission_type must be domainId or orgPath",
        )),
    }
}

/// Pagination and sorting of a list.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    /// Page size.
    pub limit: usize,
    /// Skipped entries.
    pub offset: usize,
    /// Sort on `updated_at` instead of `created_at`.
    pub by_update: bool,
    /// Ascending instead of descending.
    pub ascending: bool,
}

impl Page {
    /// Read `limit`, `offset`, `sort_key`, `sort_dir` from query parameters.
    ///
    /// # Errors
    /// EndPoint.0006, 0010, 0017 or 0018.
    pub fn from_params(
        params: &HashMap<String, String>,
        max_limit: usize,
    ) -> Result<Self, ApiError> {
        let limit = match params.get("limit") {
            None => 10,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|l| *l <= max_limit)
                .ok_or_else(|| {
                    ApiError::new(
                        "EndPoint.0006",
                        format!("Invalid limit {v:?}: 0 to {max_limit}."),
                    )
                })?,
        };
        let offset = match params.get("offset") {
            None => 0,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| ApiError::new("EndPoint.0010", format!("Invalid offset {v:?}.")))?,
        };
        let by_update = match params.get("sort_key").map(String::as_str) {
            None | Some("create_at") => false,
            Some("update_at") => true,
            Some(v) => {
                return Err(ApiError::new(
                    "EndPoint.0017",
                    format!("Invalid sort_key {v:?}: create_at or update_at."),
                ));
            }
        };
        let ascending = match params.get("sort_dir").map(String::as_str) {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(v) => {
                return Err(ApiError::new(
                    "EndPoint.0018",
                    format!("Invalid sort_dir {v:?}: asc or desc."),
                ));
            }
        };
        Ok(Self {
            limit,
            offset,
            by_update,
            ascending,
        })
    }

    /// Sort `items` by (time, id) and cut the page; returns the page and the total count.
    pub fn apply<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> (i64, i64, String),
    ) -> (Vec<T>, usize) {
        let total = items.len();
        items.sort_by(|a, b| {
            let (ca, ua, ia) = key(a);
            let (cb, ub, ib) = key(b);
            let ord = if self.by_update {
                (ua, ia).cmp(&(ub, ib))
            } else {
                (ca, ia).cmp(&(cb, ib))
            };
            if self.ascending { ord } else { ord.reverse() }
        });
        (
            items
                .into_iter()
                .skip(self.offset)
                .take(self.limit)
                .collect(),
            total,
        )
    }
}

/// The outcome of a write: the records as committed.
pub type Written<T> = Result<T, ApiError>;

impl Registry {
    /// A registry over `store`, loading everything it holds.
    ///
    /// # Errors
    /// [`LoadError`] if the store cannot be read or holds a corrupt record.
    pub fn open(store: Arc<dyn Store>, region: &str, quotas: Quotas) -> Result<Self, LoadError> {
        let snap = store.load()?;
        let mut model = Model::default();
        for (key, value) in snap.entries {
            let record: Record =
                serde_json::from_slice(&value).map_err(|source| LoadError::Decode {
                    key: key.clone(),
                    source,
                })?;
            model.insert(record);
        }
        Ok(Self {
            store,
            model: RwLock::new(model),
            writer: Mutex::new(()),
            region: region.to_string(),
            quotas,
            notes: Mutex::new(Vec::new()),
            revision: AtomicU64::new(snap.revision),
        })
    }

    /// Subscribe to change notes (the pusher does). The first note it sees is `All`.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<ChangeNote> {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = tx.send(ChangeNote {
            touched: Touched::All,
            revision: self.revision(),
        });
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tx);
        rx
    }

    /// Drop every subscriber (the pusher then finishes its queue and stops).
    pub fn close_subscribers(&self) {
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The revision of the last commit.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The region, first part of service names.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The quotas.
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// A read view of the committed model.
    pub fn read(&self) -> RwLockReadGuard<'_, Model> {
        self.model
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write `muts` durably, then apply them and notify the pusher. Call with the writer lock.
    fn commit(&self, muts: Vec<Mutation>) -> Result<u64, ApiError> {
        let mut ops = Vec::with_capacity(muts.len());
        for m in &muts {
            ops.push(match m {
                Mutation::Put(r) => Op::Put(
                    r.key(),
                    serde_json::to_vec(r)
                        .map_err(|e| ApiError::system(format!("cannot encode record: {e}")))?,
                ),
                Mutation::Delete(k) => Op::Delete(k.clone()),
            });
        }
        let revision = self.store.commit(&ops).map_err(|e| {
            tracing::error!(error = %e, "store commit failed; the change was not applied");
            ApiError::system("System error. Please retry.")
        })?;
        let mut touched = BTreeSet::new();
        {
            let mut model = self
                .model
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for m in &muts {
                match m {
                    Mutation::Put(Record::Endpoint(e)) => {
                        touched.insert(e.id.clone());
                    }
                    Mutation::Put(Record::Service(s)) => {
                        touched.extend(model.endpoints_of(&s.id).map(|e| e.id.clone()));
                    }
                    Mutation::Delete(k) if k.starts_with("endpoint/") => {
                        touched.insert(k["endpoint/".len()..].to_string());
                    }
                    _ => {}
                }
            }
            for m in muts {
                model.apply(m);
            }
            self.revision.store(revision, Ordering::Release);
        }
        let note = ChangeNote {
            touched: Touched::Endpoints(touched.into_iter().collect()),
            revision,
        };
        let mut subs = self
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subs.retain(|tx| tx.send(note.clone()).is_ok());
        Ok(revision)
    }

    // ---- inventory ----

    /// Create a VPC.
    ///
    /// # Errors
    /// EndPoint.0002 for a missing or invalid CIDR.
    pub fn create_vpc(&self, t: &Tenant, body: CreateVpc) -> Written<Vpc> {
        let cidr = require(body.cidr, "cidr")?;
        let net: Ipv4Cidr = cidr
            .parse()
            .map_err(|_| ApiError::param(format!("cidr {cidr:?} is not an IPv4 CIDR")))?;
        let vpc = Vpc {
            id: new_id(),
            project_id: t.project_id.clone(),
            domain_id: t.domain_id.clone(),
            name: body.name.unwrap_or_default(),
            cidr: net.to_string(),
            created_at: now(),
        };
        let _w = self.lock_writer();
        self.commit(vec![Mutation::Put(Record::Vpc(vpc.clone()))])?;
        Ok(vpc)
    }

    /// Delete a VPC; refused while it holds a service, an endpoint or a subnet.
    ///
    /// # Errors
    /// EndPoint.0005 if not the tenant's; EndPoint.0020 while in use.
    pub fn delete_vpc(&self, t: &Tenant, id: &str) -> Written<()> {
        let _w = self.lock_writer();
        {
            let m = self.read();
            m.vpcs
                .get(id)
                .filter(|v| v.project_id == t.project_id)
                .ok_or_else(|| ApiError::not_found("vpc"))?;
            if let Some(s) = m.services.values().find(|s| s.vpc_id == id) {
                return Err(ApiError::new(
                    "EndPoint.0020",
                    format!(
                        "The VPC holds endpoint service {}; delete the service first.",
                        s.id
                    ),
                ));
            }
            if let Some(e) = m.endpoints.values().find(|e| e.vpc_id == id) {
                return Err(ApiError::new(
                    "EndPoint.0020",
                    format!("The VPC holds endpoint {}; delete it first.", e.id),
                ));
            }
            if let Some(s) = m.subnets.values().find(|s| s.vpc_id == id) {
                return Err(ApiError::new(
                    "EndPoint.0020",
                    format!("The VPC holds subnet {}; delete it first.", s.id),
                ));
            }
        }
        self.commit(vec![Mutation::Delete(format!("vpc/{id}"))])?;
        Ok(())
    }

    /// Create a subnet in one of the tenant's VPCs.
    ///
    /// # Errors
    /// EndPoint.0020 for an unknown VPC, EndPoint.0002 for a bad CIDR or gateway.
    pub fn create_subnet(&self, t: &Tenant, body: CreateSubnet) -> Written<Subnet> {
        let vpc_id = require(body.vpc_id, "vpc_id")?;
        let cidr = require(body.cidr, "cidr")?;
        let version = body.ip_version.unwrap_or(4);
        let _w = self.lock_writer();
        let vpc = self
            .read()
            .vpcs
            .get(&vpc_id)
            .filter(|v| v.project_id == t.project_id)
            .cloned()
            .ok_or_else(|| ApiError::new("EndPoint.0020", "Invalid VPC ID."))?;
        let (cidr, gateway) = match version {
            4 => {
                let net: Ipv4Cidr = cidr
                    .parse()
                    .map_err(|_| ApiError::param(format!("cidr {cidr:?} is not IPv4")))?;
                let outer: Ipv4Cidr = vpc
                    .cidr
                    .parse()
                    .map_err(|_| ApiError::system("corrupt VPC cidr"))?;
                if net.prefix() < outer.prefix() || !outer.contains(net.addr()) || net.prefix() > 30
                {
                    return Err(ApiError::param(format!(
                        "subnet {net} must be a /30 or larger block inside the VPC's {outer}"
                    )));
                }
                let m = self.read();
                let clash = m
                    .subnets
                    .values()
                    .filter(|s| s.vpc_id == vpc_id && s.ip_version == 4)
                    .find(|s| {
                        s.cidr
                            .parse::<Ipv4Cidr>()
                            .is_ok_and(|o| o.contains(net.addr()) || net.contains(o.addr()))
                    });
                if let Some(other) = clash {
                    return Err(ApiError::param(format!(
                        "subnet {net} overlaps subnet {} ({})",
                        other.id, other.cidr
                    )));
                }
                let gw = match body.gateway_ip {
                    Some(g) => g
                        .parse::<Ipv4Addr>()
                        .ok()
                        .filter(|a| net.contains(*a))
                        .ok_or_else(|| {
                            ApiError::param("gateway_ip must be an address of the subnet")
                        })?,
                    None => Ipv4Addr::from_bits(net.addr().to_bits() + 1),
                };
                (net.to_string(), gw.to_string())
            }
            6 => {
                let (a, p) = cidr
                    .split_once('/')
                    .ok_or_else(|| ApiError::param("IPv6 cidr needs a prefix"))?;
                let _: Ipv6Addr = a.parse().map_err(|_| ApiError::param("bad IPv6 address"))?;
                let _: u8 = p
                    .parse()
                    .ok()
                    .filter(|p| *p <= 128)
                    .ok_or_else(|| ApiError::param("bad IPv6 prefix"))?;
                (cidr.clone(), body.gateway_ip.unwrap_or_default())
            }
            _ => return Err(ApiError::param("ip_version must be 4 or 6")),
        };
        let subnet = Subnet {
            id: new_id(),
            project_id: t.project_id.clone(),
            domain_id: t.domain_id.clone(),
            vpc_id,
            name: body.name.unwrap_or_default(),
            cidr,
            gateway_ip: gateway,
            ip_version: version,
            created_at: now(),
        };
        self.commit(vec![Mutation::Put(Record::Subnet(subnet.clone()))])?;
        Ok(subnet)
    }

    /// Delete a subnet; refused while ports or endpoints use it.
    ///
    /// # Errors
    /// EndPoint.0005 if not the tenant's; EndPoint.0023 while in use.
    pub fn delete_subnet(&self, t: &Tenant, id: &str) -> Written<()> {
        let _w = self.lock_writer();
        {
            let m = self.read();
            m.subnets
                .get(id)
                .filter(|s| s.project_id == t.project_id)
                .ok_or_else(|| ApiError::not_found("subnet"))?;
            if m.ports.values().any(|p| p.subnet_id == id)
                || m.endpoints.values().any(|e| e.subnet_id == id)
            {
                return Err(ApiError::new(
                    "EndPoint.0023",
                    "The subnet still holds ports or endpoints.",
                ));
            }
        }
        self.commit(vec![Mutation::Delete(format!("subnet/{id}"))])?;
        Ok(())
    }

    /// Create a port (a NIC or an LB VIP) in one of the tenant's subnets.
    ///
    /// # Errors
    /// EndPoint.0023 for an unknown subnet, EndPoint.3021 for a bad server type,
    /// EndPoint.2041/2042/2043 for a bad, used or foreign address.
    pub fn create_port(&self, t: &Tenant, body: CreatePort) -> Written<Port> {
        let subnet_id = require(body.subnet_id, "subnet_id")?;
        let server_type = ServerType::parse(&require(body.server_type, "server_type")?)
            .ok_or_else(|| ApiError::new("EndPoint.3021", "Invalid serverType: VM or LB."))?;
        let _w = self.lock_writer();
        let (subnet, ip) = {
            let m = self.read();
            let subnet = m
                .subnets
                .get(&subnet_id)
                .filter(|s| s.project_id == t.project_id)
                .cloned()
                .ok_or_else(|| ApiError::new("EndPoint.0023", "Invalid subnet_id."))?;
            let ip = if subnet.ip_version == 6 {
                let ip = require(body.ip, "ip (IPv6 subnets have no automatic addresses)")?;
                ip.parse::<Ipv6Addr>()
                    .map_err(|_| ApiError::new("EndPoint.2041", "Invalid Port IP address."))?;
                ip
            } else {
                self.pick_ip(&m, &subnet, body.ip.as_deref())?.to_string()
            };
            (subnet, ip)
        };
        let port = Port {
            id: new_id(),
            project_id: t.project_id.clone(),
            domain_id: t.domain_id.clone(),
            vpc_id: subnet.vpc_id.clone(),
            subnet_id,
            name: body.name.unwrap_or_default(),
            ip,
            ip_version: subnet.ip_version,
            server_type,
            created_at: now(),
        };
        self.commit(vec![Mutation::Put(Record::Port(port.clone()))])?;
        Ok(port)
    }

    /// Delete a port; every service on it becomes `suspended` and stops carrying traffic.
    ///
    /// # Errors
    /// EndPoint.0005 if not the tenant's.
    pub fn delete_port(&self, t: &Tenant, id: &str) -> Written<Vec<String>> {
        let _w = self.lock_writer();
        let mut muts = vec![Mutation::Delete(format!("port/{id}"))];
        let mut suspended = Vec::new();
        {
            let m = self.read();
            m.ports
                .get(id)
                .filter(|p| p.project_id == t.project_id)
                .ok_or_else(|| ApiError::not_found("port"))?;
            for s in m
                .services
                .values()
                .filter(|s| s.port_id.as_deref() == Some(id))
            {
                let mut s = s.clone();
                s.port_id = None;
                s.status = ServiceStatus::Suspended;
                s.updated_at = now();
                suspended.push(s.id.clone());
                muts.push(Mutation::Put(Record::Service(s)));
            }
        }
        self.commit(muts)?;
        Ok(suspended)
    }

    /// An address for a new endpoint or port: `wanted` if free and valid, else the first
    /// free host of the subnet (never the network, gateway or broadcast address).
    fn pick_ip(
        &self,
        m: &Model,
        subnet: &Subnet,
        wanted: Option<&str>,
    ) -> Result<Ipv4Addr, ApiError> {
        let net: Ipv4Cidr = subnet
            .cidr
            .parse()
            .map_err(|_| ApiError::new("EndPoint.0023", "The subnet is not IPv4."))?;
        let gateway = subnet
            .gateway_ip
            .parse::<Ipv4Addr>()
            .ok()
            .map(Ipv4Addr::to_bits);
        let first = net.addr().to_bits();
        let last = u32::try_from(u64::from(first) + net.size() - 1).unwrap_or(u32::MAX);
        let used = m.used_ips.get(&subnet.id);
        let reserved = |ip: u32| ip == first || ip == last || Some(ip) == gateway;
        let taken = |ip: u32| used.is_some_and(|u| u.contains(&ip));
        if let Some(w) = wanted {
            let ip: Ipv4Addr = w.parse().map_err(|_| {
                ApiError::new("EndPoint.2041", format!("Invalid Port IP address {w:?}."))
            })?;
            if !net.contains(ip) || reserved(ip.to_bits()) {
                return Err(ApiError::new(
                    "EndPoint.2043",
                    format!("The Port IP {ip} is not valid for the subnet {net}."),
                ));
            }
            if taken(ip.to_bits()) {
                return Err(ApiError::new(
                    "EndPoint.2042",
                    format!("The Port IP {ip} is in use."),
                ));
            }
            return Ok(ip);
        }
        // First free: walk the used set in order and take the first gap.
        let mut candidate = first + 1;
        let mut iter = used
            .into_iter()
            .flatten()
            .copied()
            .filter(|ip| *ip > first)
            .peekable();
        while candidate < last {
            if reserved(candidate) {
                candidate += 1;
                continue;
            }
            while iter.peek().is_some_and(|u| *u < candidate) {
                iter.next();
            }
            if iter.peek() == Some(&candidate) {
                candidate += 1;
                continue;
            }
            return Ok(Ipv4Addr::from_bits(candidate));
        }
        Err(ApiError::new(
            "EndPoint.2043",
            format!("The subnet {net} has no free address."),
        ))
    }

    // ---- services ----

    fn owned_service<'m>(m: &'m Model, t: &Tenant, id: &str) -> Result<&'m Service, ApiError> {
        m.services
            .get(id)
            .filter(|s| s.project_id == t.project_id)
            .ok_or_else(|| ApiError::not_found("endpoint service"))
    }

    /// A backend port for a service of `server_type` in `vpc_id`, checked against the rules.
    fn check_backend(
        m: &Model,
        t: &Tenant,
        port_id: &str,
        vpc_id: &str,
        server_type: ServerType,
        exclude: Option<&str>,
    ) -> Result<(), ApiError> {
        let port = m
            .ports
            .get(port_id)
            .filter(|p| p.project_id == t.project_id)
            .ok_or_else(|| {
                ApiError::new("EndPoint.3003", format!("Invalid port ID {port_id:?}."))
            })?;
        if port.vpc_id != vpc_id {
            return Err(ApiError::new(
                "EndPoint.3003",
                "The port is not in the service's VPC.",
            ));
        }
        if port.server_type != server_type {
            return Err(ApiError::new(
                "EndPoint.3021",
                format!(
                    "Invalid serverType: the port is a {} backend, the service needs {}.",
                    port.server_type.as_str(),
                    server_type.as_str()
                ),
            ));
        }
        if port.ip_version != 4 {
            let what = if server_type == ServerType::Lb {
                "an IPv6 load balancer"
            } else {
                "an IPv6 port"
            };
            return Err(ApiError::new(
                "EndPoint.3003",
                format!("{what} cannot be a backend."),
            ));
        }
        let on_port = m
            .services
            .values()
            .filter(|s| s.port_id.as_deref() == Some(port_id) && Some(s.id.as_str()) != exclude)
            .count();
        if on_port >= MAX_SERVICES_PER_BACKEND {
            return Err(ApiError::new(
                "EndPoint.3003",
                format!(
                    "At most {MAX_SERVICES_PER_BACKEND} endpoint services may use one backend."
                ),
            ));
        }
        Ok(())
    }

    /// Server ports must be unique per protocol among the services of one backend.
    fn check_backend_ports(
        m: &Model,
        port_id: &str,
        ports: &[PortMapping],
        exclude: Option<&str>,
    ) -> Result<(), ApiError> {
        for s in m
            .services
            .values()
            .filter(|s| s.port_id.as_deref() == Some(port_id) && Some(s.id.as_str()) != exclude)
        {
            for p in ports {
                if s.ports
                    .iter()
                    .any(|q| q.protocol == p.protocol && q.server_port == p.server_port)
                {
                    return Err(ApiError::new(
                        "EndPoint.3044",
                        format!(
                            "The parameter ports conflicted with ports in an existing endpoint service: {} server port {} is used by {}.",
                            p.protocol.as_str(),
                            p.server_port,
                            s.id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn full_name(&self, name: Option<&str>, id: &str) -> String {
        match name {
            Some(n) => format!("{}.{n}.{id}", self.region),
            None => format!("{}.{id}", self.region),
        }
    }

    /// Create an endpoint service.
    ///
    /// # Errors
    /// The codes of API.md section 8 for each rule.
    pub fn create_service(&self, t: &Tenant, body: CreateService) -> Written<Service> {
        let port_id = require(body.port_id, "port_id")?;
        let vpc_id = require(body.vpc_id, "vpc_id")?;
        let server_type = ServerType::parse(&require(body.server_type, "server_type")?)
            .ok_or_else(|| ApiError::new("EndPoint.3021", "Invalid serverType: VM or LB."))?;
        let ports = parse_ports(&require(body.ports, "ports")?)?;
        if let Some(st) = &body.service_type
            && st != "interface"
        {
            return Err(ApiError::param(
                "service_type: only interface services can be created",
            ));
        }
        if body.ip_version.as_deref().is_some_and(|v| v != "ipv4") || body.snat_network_id.is_some()
        {
            return Err(ApiError::param(
                "ip_version: only ipv4 services are supported",
            ));
        }
        if let Some(n) = &body.service_name {
            check_service_name(n)?;
        }
        let tcp_proxy = body.tcp_proxy.unwrap_or_else(|| "close".into());
        check_tcp_proxy(&tcp_proxy)?;
        let description = body.description.unwrap_or_default();
        check_description(&description)?;
        let tags = body.tags.unwrap_or_default();
        check_tags(&tags)?;
        let _w = self.lock_writer();
        let svc = {
            let m = self.read();
            m.vpcs
                .get(&vpc_id)
                .filter(|v| v.project_id == t.project_id)
                .ok_or_else(|| ApiError::new("EndPoint.0020", "Invalid VPC ID."))?;
            Self::check_backend(&m, t, &port_id, &vpc_id, server_type, None)?;
            Self::check_backend_ports(&m, &port_id, &ports, None)?;
            let owned = m
                .services
                .values()
                .filter(|s| s.project_id == t.project_id)
                .count();
            if owned >= self.quotas.endpoint_service {
                return Err(ApiError::new(
                    "Endpoint.1018",
                    format!(
                        "Quota exceeded: at most {} endpoint services.",
                        self.quotas.endpoint_service
                    ),
                ));
            }
            let id = new_id();
            let ts = now();
            Service {
                full_name: self.full_name(body.service_name.as_deref(), &id),
                id,
                project_id: t.project_id.clone(),
                domain_id: t.domain_id.clone(),
                name: body.service_name,
                vpc_id,
                port_id: Some(port_id),
                server_type,
                approval_enabled: body.approval_enabled.unwrap_or(true),
                ports,
                tcp_proxy,
                description,
                tags,
                status: ServiceStatus::Available,
                created_at: ts,
                updated_at: ts,
            }
        };
        self.commit(vec![Mutation::Put(Record::Service(svc.clone()))])?;
        Ok(svc)
    }

    /// Update a service: approval, name, mappings (replaced whole), backend, proxy mode,
    /// description. A new `port_id` of the same server type resumes a suspended service.
    ///
    /// # Errors
    /// As for create.
    pub fn update_service(&self, t: &Tenant, id: &str, body: UpdateService) -> Written<Service> {
        let ports = body.ports.as_deref().map(parse_ports).transpose()?;
        if let Some(n) = &body.service_name {
            check_service_name(n)?;
        }
        if let Some(p) = &body.tcp_proxy {
            check_tcp_proxy(p)?;
        }
        if let Some(d) = &body.description {
            check_description(d)?;
        }
        let _w = self.lock_writer();
        let svc = {
            let m = self.read();
            let mut svc = Self::owned_service(&m, t, id)?.clone();
            if let Some(port_id) = &body.port_id
                && svc.port_id.as_deref() != Some(port_id.as_str())
            {
                Self::check_backend(&m, t, port_id, &svc.vpc_id, svc.server_type, Some(id))?;
                svc.port_id = Some(port_id.clone());
                svc.status = ServiceStatus::Available;
            }
            if let Some(p) = ports {
                svc.ports = p;
            }
            if let Some(port_id) = &svc.port_id {
                Self::check_backend_ports(&m, port_id, &svc.ports, Some(id))?;
            }
            if let Some(a) = body.approval_enabled {
                svc.approval_enabled = a;
            }
            if let Some(n) = body.service_name {
                svc.full_name = self.full_name(Some(&n), &svc.id);
                svc.name = Some(n);
            }
            if let Some(p) = body.tcp_proxy {
                svc.tcp_proxy = p;
            }
            if let Some(d) = body.description {
                svc.description = d;
            }
            svc.updated_at = now();
            svc
        };
        self.commit(vec![Mutation::Put(Record::Service(svc.clone()))])?;
        Ok(svc)
    }

    /// Delete a service. Refused (EndPoint.3006) while endpoints are pending or accepted;
    /// rejected endpoints, which carry nothing, are removed with it, as are its permissions.
    ///
    /// # Errors
    /// EndPoint.0005 or EndPoint.3006.
    pub fn delete_service(&self, t: &Tenant, id: &str) -> Written<()> {
        let _w = self.lock_writer();
        let mut muts = vec![Mutation::Delete(format!("service/{id}"))];
        {
            let m = self.read();
            Self::owned_service(&m, t, id)?;
            let live = m
                .endpoints_of(id)
                .filter(|e| e.status != ConnectionStatus::Rejected)
                .count();
            if live > 0 {
                return Err(ApiError::new(
                    "EndPoint.3006",
                    format!(
                        "The endpoint service is being used: {live} connections are pending or accepted; reject or delete them first."
                    ),
                ));
            }
            muts.extend(
                m.endpoints_of(id)
                    .map(|e| Mutation::Delete(format!("endpoint/{}", e.id))),
            );
            muts.extend(
                m.permissions_of(id)
                    .map(|p| Mutation::Delete(format!("permission/{}", p.id))),
            );
        }
        self.commit(muts)?;
        Ok(())
    }

    /// Rename a service (the short name; the full name follows).
    ///
    /// # Errors
    /// EndPoint.0005 or EndPoint.1003.
    pub fn rename_service(&self, t: &Tenant, id: &str, body: RenameService) -> Written<Service> {
        let name = require(body.endpoint_service_name, "endpoint_service_name")?;
        self.update_service(
            t,
            id,
            UpdateService {
                service_name: Some(name),
                ..UpdateService::default()
            },
        )
    }

    /// Accept (`receive`) or reject one endpoint's connection.
    ///
    /// # Errors
    /// EndPoint.0005 (not the owner), 2027 (action), 2031 (not one endpoint), 2013 (not a
    /// connection of this service).
    pub fn connection_action(
        &self,
        t: &Tenant,
        id: &str,
        body: ConnectionAction,
    ) -> Written<Vec<Endpoint>> {
        let action = require(body.action, "action")?;
        let status = match action.as_str() {
            "receive" => ConnectionStatus::Accepted,
            "reject" => ConnectionStatus::Rejected,
            _ => {
                return Err(ApiError::new(
                    "EndPoint.2027",
                    "Invalid action: receive or reject.",
                ));
            }
        };
        let endpoints = require(body.endpoints, "endpoints")?;
        let [ep_id] = endpoints.as_slice() else {
            return Err(ApiError::new(
                "EndPoint.2031",
                "Only one endpoint is allowed.",
            ));
        };
        let _w = self.lock_writer();
        let ep = {
            let m = self.read();
            Self::owned_service(&m, t, id)?;
            let mut ep = m
                .endpoints
                .get(ep_id)
                .filter(|e| e.service_id == id)
                .cloned()
                .ok_or_else(|| {
                    ApiError::new(
                        "EndPoint.2013",
                        "The endpoint does not belong to the endpoint service.",
                    )
                })?;
            ep.status = status;
            ep.updated_at = now();
            ep
        };
        self.commit(vec![Mutation::Put(Record::Endpoint(ep.clone()))])?;
        Ok(vec![ep])
    }

    /// Set the provider's description of connections.
    ///
    /// # Errors
    /// EndPoint.0005, 2013, 0002.
    pub fn connection_descriptions(
        &self,
        t: &Tenant,
        id: &str,
        body: ConnectionDescs,
    ) -> Written<Vec<Endpoint>> {
        let list = require(body.connections, "connections")?;
        let _w = self.lock_writer();
        let eps = {
            let m = self.read();
            Self::owned_service(&m, t, id)?;
            let mut out = Vec::new();
            for c in list {
                let ep_id = require(c.id, "connections[].id")?;
                let d = require(c.description, "connections[].description")?;
                check_description(&d)?;
                let mut ep = m
                    .endpoints
                    .get(&ep_id)
                    .filter(|e| e.service_id == id)
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::new(
                            "EndPoint.2013",
                            "The endpoint does not belong to the endpoint service.",
                        )
                    })?;
                ep.connection_description = d;
                ep.updated_at = now();
                out.push(ep);
            }
            out
        };
        self.commit(
            eps.iter()
                .cloned()
                .map(|e| Mutation::Put(Record::Endpoint(e)))
                .collect(),
        )?;
        Ok(eps)
    }

    /// Add or remove whitelist entries by permission string.
    ///
    /// # Errors
    /// EndPoint.0005, 3002, 3035, 0016.
    pub fn permission_action(
        &self,
        t: &Tenant,
        id: &str,
        body: PermissionAction,
    ) -> Written<(Vec<String>, String)> {
        let perms = require(body.permissions, "permissions")?;
        let ptype = body.permission_type.unwrap_or_else(|| "domainId".into());
        let action = require(body.action, "action")?;
        if perms.len() > 50 {
            return Err(ApiError::new(
                "EndPoint.0016",
                "The number of batch operated resources exceeded the limit (50).",
            ));
        }
        for p in &perms {
            parse_permission(p, &ptype)?;
        }
        let _w = self.lock_writer();
        let muts = {
            let m = self.read();
            Self::owned_service(&m, t, id)?;
            let existing: HashMap<&str, &Permission> = m
                .permissions_of(id)
                .map(|p| (p.permission.as_str(), p))
                .collect();
            match action.as_str() {
                "add" => perms
                    .iter()
                    .filter(|p| !existing.contains_key(p.as_str()))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|p| {
                        Mutation::Put(Record::Permission(Permission {
                            id: new_id(),
                            service_id: id.to_string(),
                            permission: p.clone(),
                            permission_type: ptype.clone(),
                            description: String::new(),
                            created_at: now(),
                        }))
                    })
                    .collect::<Vec<_>>(),
                "remove" => perms
                    .iter()
                    .filter_map(|p| existing.get(p.as_str()))
                    .map(|p| Mutation::Delete(format!("permission/{}", p.id)))
                    .collect(),
                _ => {
                    return Err(ApiError::new(
                        "EndPoint.3035",
                        "Invalid action: add or remove.",
                    ));
                }
            }
        };
        if !muts.is_empty() {
            self.commit(muts)?;
        }
        Ok((perms, ptype))
    }

    /// Add whitelist entries with descriptions.
    ///
    /// # Errors
    /// EndPoint.0005, 3002, 0016.
    pub fn permissions_batch_create(
        &self,
        t: &Tenant,
        id: &str,
        body: PermissionBatchCreate,
    ) -> Written<Vec<Permission>> {
        let list = require(body.permissions, "permissions")?;
        let ptype = body.permission_type.unwrap_or_else(|| "domainId".into());
        if list.len() > 50 {
            return Err(ApiError::new(
                "EndPoint.0016",
                "The number of batch operated resources exceeded the limit (50).",
            ));
        }
        let mut entries = Vec::new();
        for e in list {
            let p = require(e.permission, "permissions[].permission")?;
            parse_permission(&p, &ptype)?;
            let d = e.description.unwrap_or_default();
            check_description(&d)?;
            entries.push((p, d));
        }
        let _w = self.lock_writer();
        let created = {
            let m = self.read();
            Self::owned_service(&m, t, id)?;
            let existing: HashSet<&str> = m
                .permissions_of(id)
                .map(|p| p.permission.as_str())
                .collect();
            let mut seen = HashSet::new();
            entries
                .into_iter()
                .filter(|(p, _)| !existing.contains(p.as_str()) && seen.insert(p.clone()))
                .map(|(permission, description)| Permission {
                    id: new_id(),
                    service_id: id.to_string(),
                    permission,
                    permission_type: ptype.clone(),
                    description,
                    created_at: now(),
                })
                .collect::<Vec<_>>()
        };
        if !created.is_empty() {
            self.commit(
                created
                    .iter()
                    .cloned()
                    .map(|p| Mutation::Put(Record::Permission(p)))
                    .collect(),
            )?;
        }
        Ok(created)
    }

    /// Remove whitelist entries by id.
    ///
    /// # Errors
    /// EndPoint.0005, 3036.
    pub fn permissions_batch_delete(
        &self,
        t: &Tenant,
        id: &str,
        body: PermissionBatchDelete,
    ) -> Written<Vec<Permission>> {
        let list = require(body.permissions, "permissions")?;
        let _w = self.lock_writer();
        let removed = {
            let m = self.read();
            Self::owned_service(&m, t, id)?;
            let mut out = Vec::new();
            for r in list {
                let pid = require(r.id, "permissions[].id")?;
                let p = m
                    .permissions
                    .get(&pid)
                    .filter(|p| p.service_id == id)
                    .ok_or_else(|| {
                        ApiError::new(
                            "EndPoint.3036",
                            format!(
                                "Invalid permissions: {pid} is not a permission of this service."
                            ),
                        )
                    })?;
                out.push(p.clone());
            }
            out
        };
        self.commit(
            removed
                .iter()
                .map(|p| Mutation::Delete(format!("permission/{}", p.id)))
                .collect(),
        )?;
        Ok(removed)
    }

    /// Change a whitelist entry's description.
    ///
    /// # Errors
    /// EndPoint.0005, 3036, 0002.
    pub fn permission_describe(
        &self,
        t: &Tenant,
        id: &str,
        perm_id: &str,
        body: PermissionDescBody,
    ) -> Written<Permission> {
        let d = require(
            require(body.permission, "permission")?.description,
            "permission.description",
        )?;
        check_description(&d)?;
        let _w = self.lock_writer();
        let p = {
            let m = self.read();
            Self::owned_service(&m, t, id)?;
            let mut p = m
                .permissions
                .get(perm_id)
                .filter(|p| p.service_id == id)
                .cloned()
                .ok_or_else(|| {
                    ApiError::new(
                        "EndPoint.3036",
                        "Invalid permissions: no such permission of this service.",
                    )
                })?;
            p.description = d;
            p
        };
        self.commit(vec![Mutation::Put(Record::Permission(p.clone()))])?;
        Ok(p)
    }

    // ---- endpoints ----

    fn owned_endpoint<'m>(m: &'m Model, t: &Tenant, id: &str) -> Result<&'m Endpoint, ApiError> {
        m.endpoints
            .get(id)
            .filter(|e| e.project_id == t.project_id)
            .ok_or_else(|| ApiError::new("EndPoint.2006", "The requested endpoint does not exist."))
    }

    /// Create an endpoint (a connection to a service).
    ///
    /// # Errors
    /// EndPoint.2003 (no service), 2012 (not whitelisted), 2004 (suspended), 0020/0023
    /// (VPC, subnet), 2041-2043 (address), 2044/2045 (whitelist), 1018 (quota).
    pub fn create_endpoint(&self, t: &Tenant, body: CreateEndpoint) -> Written<Endpoint> {
        let service_id = require(body.endpoint_service_id, "endpoint_service_id")?;
        let vpc_id = require(body.vpc_id, "vpc_id")?;
        let subnet_id = require(body.subnet_id, "subnet_id")?;
        if body.ip_version.as_deref().is_some_and(|v| v != "ipv4") || body.ipv6_address.is_some() {
            return Err(ApiError::param(
                "ip_version: only ipv4 endpoints are supported",
            ));
        }
        let whitelist = parse_whitelist(&body.whitelist.unwrap_or_default())?;
        let description = body.description.unwrap_or_default();
        check_description(&description)?;
        let tags = body.tags.unwrap_or_default();
        check_tags(&tags)?;
        if body.duration.is_some_and(|d| d <= 0) {
            return Err(ApiError::param(
                "duration must be a positive number of seconds",
            ));
        }
        let _w = self.lock_writer();
        let ep = {
            let m = self.read();
            let svc = m.services.get(&service_id).ok_or_else(|| {
                ApiError::new("EndPoint.2003", "The endpoint service does not exist.")
            })?;
            if !m.visible(svc, &t.domain_id) {
                return Err(ApiError::new(
                    "EndPoint.2012",
                    "You have no permission to connect to the VPC endpoint service.",
                ));
            }
            if svc.status != ServiceStatus::Available {
                return Err(ApiError::new(
                    "EndPoint.2004",
                    "The endpoint service is unavailable (its backend was deleted).",
                ));
            }
            m.vpcs
                .get(&vpc_id)
                .filter(|v| v.project_id == t.project_id)
                .ok_or_else(|| ApiError::new("EndPoint.0020", "Invalid VPC ID."))?;
            let subnet = m
                .subnets
                .get(&subnet_id)
                .filter(|s| s.project_id == t.project_id && s.vpc_id == vpc_id)
                .ok_or_else(|| ApiError::new("EndPoint.0023", "Invalid subnet_id."))?;
            if subnet.ip_version != 4 {
                return Err(ApiError::new(
                    "EndPoint.0023",
                    "Invalid subnet_id: an endpoint's subnet must be IPv4.",
                ));
            }
            let owned = m
                .endpoints
                .values()
                .filter(|e| e.project_id == t.project_id)
                .count();
            if owned >= self.quotas.endpoint {
                return Err(ApiError::new(
                    "Endpoint.1018",
                    format!(
                        "Quota exceeded: at most {} endpoints.",
                        self.quotas.endpoint
                    ),
                ));
            }
            let ip = self.pick_ip(&m, subnet, body.port_ip.as_deref())?;
            let mut marker = 0;
            while marker == 0 || m.markers.contains(&marker) {
                // 53 bits: exact in every JSON client.
                marker = rand::random::<u64>() >> 11;
            }
            let ts = now();
            Endpoint {
                id: new_id(),
                project_id: t.project_id.clone(),
                domain_id: t.domain_id.clone(),
                service_id,
                vpc_id,
                subnet_id,
                ip,
                marker_id: marker,
                status: if svc.approval_enabled {
                    ConnectionStatus::PendingAcceptance
                } else {
                    ConnectionStatus::Accepted
                },
                enable_dns: body.enable_dns.unwrap_or(false),
                whitelist,
                enable_whitelist: body.enable_whitelist.unwrap_or(false),
                description,
                connection_description: String::new(),
                tags,
                routetables: body.routetables.unwrap_or_default(),
                policy_statement: body.policy_statement.unwrap_or_default(),
                policy_document: body.policy_document,
                expires_at: body.duration.map(|d| ts.saturating_add(d)),
                frozen: false,
                created_at: ts,
                updated_at: ts,
            }
        };
        self.commit(vec![Mutation::Put(Record::Endpoint(ep.clone()))])?;
        Ok(ep)
    }

    fn update_endpoint(
        &self,
        t: &Tenant,
        id: &str,
        f: impl FnOnce(&mut Endpoint) -> Result<(), ApiError>,
    ) -> Written<Endpoint> {
        let _w = self.lock_writer();
        let ep = {
            let m = self.read();
            let mut ep = Self::owned_endpoint(&m, t, id)?.clone();
            f(&mut ep)?;
            ep.updated_at = now();
            ep
        };
        self.commit(vec![Mutation::Put(Record::Endpoint(ep.clone()))])?;
        Ok(ep)
    }

    /// Replace an endpoint's source whitelist.
    ///
    /// # Errors
    /// EndPoint.2006, 2044, 2045.
    pub fn update_whitelist(
        &self,
        t: &Tenant,
        id: &str,
        body: UpdateWhitelist,
    ) -> Written<Endpoint> {
        let list = body.whitelist.as_deref().map(parse_whitelist).transpose()?;
        self.update_endpoint(t, id, |ep| {
            if let Some(l) = list {
                ep.whitelist = l;
            }
            if let Some(e) = body.enable_whitelist {
                ep.enable_whitelist = e;
            }
            Ok(())
        })
    }

    /// Replace an endpoint's route tables (stored for gateway endpoints).
    ///
    /// # Errors
    /// EndPoint.2006, 0002.
    pub fn update_routetables(
        &self,
        t: &Tenant,
        id: &str,
        body: UpdateRoutetables,
    ) -> Written<Endpoint> {
        let r = require(body.routetables, "routetables")?;
        self.update_endpoint(t, id, |ep| {
            ep.routetables = r;
            Ok(())
        })
    }

    /// Replace (or, with `None`, clear) an endpoint's policy.
    ///
    /// # Errors
    /// EndPoint.2006.
    pub fn update_policy(
        &self,
        t: &Tenant,
        id: &str,
        body: Option<UpdatePolicy>,
    ) -> Written<Endpoint> {
        self.update_endpoint(t, id, |ep| {
            match body {
                Some(b) => {
                    if let Some(s) = b.policy_statement {
                        ep.policy_statement = s;
                    }
                    if b.policy_document.is_some() {
                        ep.policy_document = b.policy_document;
                    }
                }
                None => {
                    ep.policy_statement.clear();
                    ep.policy_document = None;
                }
            }
            Ok(())
        })
    }

    /// Give an endpoint a new lifetime from now (or none); unfreezes it.
    ///
    /// # Errors
    /// EndPoint.2006, 0002.
    pub fn extend_endpoint(&self, t: &Tenant, id: &str, body: Extend) -> Written<Endpoint> {
        if body.duration.is_some_and(|d| d <= 0) {
            return Err(ApiError::param(
                "duration must be a positive number of seconds, or null",
            ));
        }
        self.update_endpoint(t, id, |ep| {
            ep.expires_at = body.duration.map(|d| now().saturating_add(d));
            ep.frozen = false;
            Ok(())
        })
    }

    /// Delete an endpoint.
    ///
    /// # Errors
    /// EndPoint.2006.
    pub fn delete_endpoint(&self, t: &Tenant, id: &str) -> Written<()> {
        let _w = self.lock_writer();
        Self::owned_endpoint(&self.read(), t, id)?;
        self.commit(vec![Mutation::Delete(format!("endpoint/{id}"))])?;
        Ok(())
    }

    /// Freeze every endpoint whose lifetime ended by `at`; returns how many.
    ///
    /// # Errors
    /// EndPoint.0001 if the store failed (nothing was frozen).
    pub fn freeze_expired(&self, at: i64) -> Result<usize, ApiError> {
        let _w = self.lock_writer();
        let frozen: Vec<Endpoint> = self
            .read()
            .endpoints
            .values()
            .filter(|e| !e.frozen && e.expires_at.is_some_and(|x| x <= at))
            .map(|e| {
                let mut e = e.clone();
                e.frozen = true;
                e.updated_at = at;
                e
            })
            .collect();
        if frozen.is_empty() {
            return Ok(0);
        }
        let n = frozen.len();
        self.commit(
            frozen
                .into_iter()
                .map(|e| Mutation::Put(Record::Endpoint(e)))
                .collect(),
        )?;
        Ok(n)
    }

    /// Testing and benchmarking aid: commit many endpoints in one transaction (the same
    /// checks as [`Registry::create_endpoint`] are not repeated; callers build valid ones).
    ///
    /// # Errors
    /// EndPoint.0001 if the store failed.
    pub fn import_endpoints(&self, eps: Vec<Endpoint>) -> Result<u64, ApiError> {
        let _w = self.lock_writer();
        self.commit(
            eps.into_iter()
                .map(|e| Mutation::Put(Record::Endpoint(e)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_rules() {
        let p = |c: i64, s: i64, proto: &str| PortBody {
            client_port: Some(c),
            server_port: Some(s),
            protocol: Some(proto.into()),
        };
        assert!(parse_ports(&[p(80, 8080, "TCP"), p(80, 8080, "UDP")]).is_ok());
        assert_eq!(parse_ports(&[]).unwrap_err().code, "EndPoint.0002");
        assert_eq!(
            parse_ports(&[p(0, 1, "TCP")]).unwrap_err().code,
            "EndPoint.3043"
        );
        assert_eq!(
            parse_ports(&[p(1, 65536, "TCP")]).unwrap_err().code,
            "EndPoint.3043"
        );
        assert_eq!(
            parse_ports(&[p(1, 1, "ICMP")]).unwrap_err().code,
            "EndPoint.3075"
        );
        assert_eq!(
            parse_ports(&[p(1, 1, "TCP"), p(1, 2, "TCP")])
                .unwrap_err()
                .code,
            "EndPoint.3044"
        );
        let many: Vec<_> = (1..=201).map(|i| p(i, i, "TCP")).collect();
        assert_eq!(parse_ports(&many).unwrap_err().code, "EndPoint.3074");
        assert!(parse_ports(&many[..200]).is_ok());
        let default_tcp = PortBody {
            client_port: Some(1),
            server_port: Some(2),
            protocol: None,
        };
        assert_eq!(
            parse_ports(&[default_tcp]).unwrap()[0].protocol,
            Protocol::Tcp
        );
    }

    #[test]
    fn permissions_and_names() {
        assert!(parse_permission("iam:domain::abc123", "domainId").is_ok());
        assert!(parse_permission("*", "domainId").is_ok());
        assert!(parse_permission("iam:domain::", "domainId").is_err());
        assert!(parse_permission("iam:domain::a-b", "domainId").is_err());
        assert!(parse_permission("organizations:orgPath::o-1/r-2", "orgPath").is_ok());
        assert!(parse_permission("x", "other").is_err());
        let p = Permission {
            id: "1".into(),
            service_id: "s".into(),
            permission: "iam:domain::d1".into(),
            permission_type: "domainId".into(),
            description: String::new(),
            created_at: 0,
        };
        assert!(p.admits("d1") && !p.admits("d2"));
        assert!(check_service_name("svc_1-a").is_ok());
        assert!(check_service_name("").is_err());
        assert!(check_service_name("a.b").is_err());
        assert!(check_service_name("12345678901234567").is_err());
        assert!(check_description("<script>").is_err());
        assert!(parse_whitelist(&["10.0.0.0/8".into(), "192.0.2.1".into()]).is_ok());
        assert_eq!(
            parse_whitelist(&["10.0.0.0/33".into()]).unwrap_err().code,
            "EndPoint.2044"
        );
    }
}
