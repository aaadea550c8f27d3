//! The resource model: the network inventory (VPCs, subnets, ports), endpoint services with
//! their port mappings and whitelists, and endpoints (each one a connection to a service).
//!
//! Records are typed: ids are newtypes ([`ids`]), addresses and blocks are `std::net` and
//! `ipnet` types, and every closed set of values is an enum. Values are parsed once, at the
//! edge (`command/`), so a record cannot hold an invalid value. The serde shapes are the
//! ones the store has always held, so existing data loads unchanged. The rules that relate
//! records live in `registry/`; [`index::Model`] is the in-memory set with its indexes and
//! queries, [`tenant::TenantView`] the one place where tenancy is applied.
//!
//! Times are whole seconds since the Unix epoch; the API renders them as
//! `YYYY-MM-DDTHH:MM:SSZ`.

pub mod gateway;
pub mod health;
pub mod ids;
pub mod index;
pub mod net;
pub mod tenant;
pub mod values;

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

pub use self::gateway::GatewayService;
pub use self::ids::*;
pub use self::index::{Model, Mutation, Record};
pub use self::net::{MacAddress, SourceCidr};
pub use self::tenant::{Tenant, TenantView};
pub use self::values::*;

/// A VPC of the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    /// UUID.
    pub id: VpcId,
    /// Owner project.
    pub project_id: ProjectId,
    /// Owner account.
    pub domain_id: DomainId,
    /// Free text.
    pub name: String,
    /// The VPC's IPv4 block, e.g. `10.0.0.0/16`.
    pub cidr: Ipv4Net,
    /// Creation time.
    pub created_at: i64,
}

/// A subnet of a VPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// UUID.
    pub id: SubnetId,
    /// Owner project.
    pub project_id: ProjectId,
    /// Owner account.
    pub domain_id: DomainId,
    /// The VPC it belongs to.
    pub vpc_id: VpcId,
    /// Free text.
    pub name: String,
    /// IPv4 (inside the VPC's block) or IPv6 block.
    pub cidr: IpNet,
    /// The gateway address (never handed out); IPv6 subnets may have none.
    #[serde(with = "net::empty_is_none")]
    pub gateway_ip: Option<IpAddr>,
    /// Creation time.
    pub created_at: i64,
}

impl Subnet {
    /// 4 or 6.
    pub fn ip_version(&self) -> u8 {
        ip_version(self.cidr.addr())
    }

    /// The IPv4 block, if this is an IPv4 subnet.
    pub fn ipv4(&self) -> Option<Ipv4Net> {
        match self.cidr {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        }
    }

    /// The IPv4 host addresses a port or endpoint may take, as host-order integers (the
    /// block without its network and broadcast addresses), and whether `ip` of them is
    /// reserved (the gateway). `None` for an IPv6 subnet.
    pub fn v4_hosts(&self) -> Option<(std::ops::Range<u32>, Option<u32>)> {
        let net = self.ipv4()?;
        let gateway = match self.gateway_ip {
            Some(IpAddr::V4(g)) => Some(g.to_bits()),
            _ => None,
        };
        let first = net.network().to_bits().saturating_add(1);
        Some((first..net.broadcast().to_bits(), gateway))
    }
}

fn ip_version(a: IpAddr) -> u8 {
    if a.is_ipv4() { 4 } else { 6 }
}

/// A port of the inventory: a NIC or a VIP with one address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// UUID.
    pub id: PortId,
    /// Owner project.
    pub project_id: ProjectId,
    /// Owner account.
    pub domain_id: DomainId,
    /// The VPC of its subnet.
    pub vpc_id: VpcId,
    /// Its subnet.
    pub subnet_id: SubnetId,
    /// Free text.
    pub name: String,
    /// Its address (of its subnet's family).
    pub ip: IpAddr,
    /// NIC or VIP.
    pub server_type: ServerType,
    /// Its MAC address: given at creation, or assigned (`fa:16:3e:..`). `None` only for a
    /// port stored before ports had one; port security admits no frame of such a port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<MacAddress>,
    /// Creation time.
    pub created_at: i64,
}

impl Port {
    /// 4 or 6.
    pub fn ip_version(&self) -> u8 {
        ip_version(self.ip)
    }

    /// The IPv4 address, if any.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
}

/// One port mapping: the endpoint's `client_port` reaches the backend's `server_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port on the endpoint side.
    pub client_port: u16,
    /// The port on the backend.
    pub server_port: u16,
}

/// A tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Key, 1 to 128 characters.
    pub key: String,
    /// Value, 0 to 255 characters.
    #[serde(default)]
    pub value: String,
}

/// An endpoint service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// UUID.
    pub id: ServiceId,
    /// Owner project.
    pub project_id: ProjectId,
    /// Owner account.
    pub domain_id: DomainId,
    /// The short name given at creation (or by rename), if any.
    pub name: Option<ServiceName>,
    /// `<region>.<name>.<id>` or `<region>.<id>`.
    pub full_name: String,
    /// The provider's VPC.
    pub vpc_id: VpcId,
    /// The backend port; `None` once it was deleted (the service is then suspended).
    pub port_id: Option<PortId>,
    /// The backend's kind; a replacement backend must be of the same kind.
    pub server_type: ServerType,
    /// Whether new connections wait for acceptance.
    pub approval_enabled: bool,
    /// Port mappings.
    pub ports: Vec<PortMapping>,
    /// How the backend learns the client's address.
    pub tcp_proxy: TcpProxy,
    /// Free text.
    pub description: String,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Status.
    pub status: ServiceStatus,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// The interface-VLAN backend address or domain name given by the provider (stored and
    /// returned; traffic goes to the backend port). Records written before it load as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<ServiceIp>,
}

impl Service {
    /// The full name of a service `id` named `name` in `region`.
    pub fn full_name(region: &str, name: Option<&ServiceName>, id: &ServiceId) -> String {
        match name {
            Some(n) => format!("{region}.{}.{id}", n.as_str()),
            None => format!("{region}.{id}"),
        }
    }
}

/// A whitelist entry of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// UUID.
    pub id: PermissionId,
    /// The service.
    pub service_id: ServiceId,
    /// `iam:domain::<id>`, `*`, or `organizations:orgPath::<path>` (checked against
    /// `permission_type` at the edge).
    pub permission: String,
    /// What `permission` names.
    pub permission_type: PermissionType,
    /// Free text.
    pub description: String,
    /// Creation time.
    pub created_at: i64,
}

/// Whom a whitelist entry admits, read from its permission string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grantee<'p> {
    /// One account (`iam:domain::<id>`).
    Account(&'p str),
    /// Every account (`*`, `iam:domain::*`).
    Everyone,
    /// Nobody (a string of no known form; the API refuses those, a store may hold one).
    Nobody,
    /// The accounts under an organisation path pattern (`organizations:orgPath::<path>`,
    /// see [`org_path_admits`]).
    OrgPath(&'p str),
}

impl Permission {
    /// Whom this entry admits.
    pub fn grantee(&self) -> Grantee<'_> {
        match self.permission.as_str() {
            "*" | "iam:domain::*" => Grantee::Everyone,
            p => match p.strip_prefix("organizations:orgPath::") {
                Some(pattern) => Grantee::OrgPath(pattern),
                None => p
                    .strip_prefix("iam:domain::")
                    .map_or(Grantee::Nobody, Grantee::Account),
            },
        }
    }

    /// True if this entry lets `who` see and connect to the service: its account
    /// (`iam:domain::<id>`, `*`), or its organisation path (`organizations:orgPath::<path>`,
    /// see [`org_path_admits`]).
    pub fn admits(&self, who: &Tenant) -> bool {
        match self.grantee() {
            Grantee::Everyone => true,
            Grantee::Account(d) => who.domain_id == *d,
            Grantee::OrgPath(pattern) => who
                .org_path
                .as_deref()
                .is_some_and(|path| org_path_admits(pattern, path)),
            Grantee::Nobody => false,
        }
    }
}

/// True if an `orgPath` permission `pattern` admits an account whose organisation path is
/// `path` (`<org id>/<root id>/<ou id>/...`, from the credentials file): the pattern names
/// the account's unit or one above it, so `o-1/r-1/ou-a` admits accounts of `ou-a` and of
/// every unit below it. In the pattern `*` stands for any run of characters (`/` included)
/// and `?` for one character, so `o-1/*` admits the whole organisation `o-1`.
pub fn org_path_admits(pattern: &str, path: &str) -> bool {
    glob(pattern.as_bytes(), path.as_bytes())
        || glob(format!("{pattern}/*").as_bytes(), path.as_bytes())
}

/// `*`/`?` wildcard match, iterative (no backtracking blow-up: one saved star).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// An endpoint: an address in the user's subnet connected to one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// UUID.
    pub id: EndpointId,
    /// Owner project.
    pub project_id: ProjectId,
    /// Owner account.
    pub domain_id: DomainId,
    /// The service.
    pub service_id: ServiceId,
    /// The user's VPC.
    pub vpc_id: VpcId,
    /// The user's subnet.
    pub subnet_id: SubnetId,
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// The connection's packet ID, unique.
    pub marker_id: u64,
    /// Connection status.
    pub status: ConnectionStatus,
    /// Whether the endpoint gets an internal DNS name.
    pub enable_dns: bool,
    /// Source blocks allowed to use the endpoint (when `enable_whitelist`).
    pub whitelist: Vec<SourceCidr>,
    /// Whether the source whitelist is enforced.
    pub enable_whitelist: bool,
    /// Free text of the endpoint's owner.
    pub description: String,
    /// Free text of the provider about this connection.
    pub connection_description: String,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Route tables (gateway endpoints: recorded and returned; see
    /// [`crate::registry::gateways`]).
    pub routetables: Vec<String>,
    /// Policy statements (stored and returned).
    pub policy_statement: Vec<serde_json::Value>,
    /// Policy document (stored and returned).
    pub policy_document: Option<serde_json::Value>,
    /// When the endpoint expires (frozen until extended); `None`: never.
    pub expires_at: Option<i64>,
    /// Frozen by expiry: carries nothing.
    pub frozen: bool,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

impl Endpoint {
    /// The private DNS name of the endpoint, in lower case: the address with dashes, under
    /// the region's endpoint zone (`10-0-0-7.vpcep.<region>.internal`). It exists (the API
    /// shows it, the resolvers answer it) only while `enable_dns` is on and the connection
    /// is accepted.
    pub fn dns_name(&self, region: &str) -> String {
        format!(
            "{}.{}",
            self.ip.to_string().replace('.', "-"),
            dns_zone(region)
        )
    }
}

/// The private DNS zone of the region's endpoints, in lower case.
pub fn dns_zone(region: &str) -> String {
    format!("vpcep.{}.internal", region.to_ascii_lowercase())
}

/// Render seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    /// A record as an older vpcep wrote it (strings everywhere) still loads.
    #[test]
    fn stored_records_of_the_string_model_load() {
        let subnet: Subnet = serde_json::from_str(
            r#"{"id":"s","project_id":"p","domain_id":"d","vpc_id":"v","name":"",
                "cidr":"2001:db8::/64","gateway_ip":"","ip_version":6,"created_at":1}"#,
        )
        .unwrap();
        assert_eq!((subnet.ip_version(), subnet.gateway_ip), (6, None));
        let port: Port = serde_json::from_str(
            r#"{"id":"p","project_id":"p","domain_id":"d","vpc_id":"v","subnet_id":"s","name":"",
                "ip":"10.0.0.10","ip_version":4,"server_type":"VM","created_at":1}"#,
        )
        .unwrap();
        assert_eq!(port.ipv4(), Some(Ipv4Addr::new(10, 0, 0, 10)));
        assert_eq!(
            port.mac_address, None,
            "a port stored before MACs loads without one"
        );
        let back = serde_json::to_value(&port).unwrap();
        assert!(back.get("mac_address").is_none(), "and is stored as it was");
        let svc: Service = serde_json::from_str(
            r#"{"id":"s","project_id":"p","domain_id":"d","name":"web","full_name":"r.web.s",
                "vpc_id":"v","port_id":null,"server_type":"LB","approval_enabled":true,
                "ports":[{"protocol":"UDP","client_port":53,"server_port":5353}],
                "tcp_proxy":"proxy_open","description":"","tags":[],"status":"suspended",
                "created_at":1,"updated_at":2}"#,
        )
        .unwrap();
        assert_eq!(svc.tcp_proxy, TcpProxy::ProxyOpen);
        assert_eq!(svc.status, ServiceStatus::Suspended);
        let back = serde_json::to_value(&svc).unwrap();
        assert_eq!(back["tcp_proxy"], "proxy_open");
        assert_eq!(back["name"], "web");
    }

    #[test]
    fn enums_parse_their_api_spelling() {
        assert_eq!(ServerType::parse("VIP").unwrap(), ServerType::Lb);
        assert_eq!(
            ServerType::parse("vm").unwrap_err().code,
            ErrorCode::InvalidServerType
        );
        for t in [
            TcpProxy::Close,
            TcpProxy::Open,
            TcpProxy::ProxyOpen,
            TcpProxy::ToaOpen,
        ] {
            assert_eq!(TcpProxy::parse(t.as_str()).unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert!(TcpProxy::parse("on").is_err());
        for t in [PermissionType::DomainId, PermissionType::OrgPath] {
            assert_eq!(PermissionType::parse(t.as_str()).unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }

    #[test]
    fn permissions_and_names() {
        let d = PermissionType::DomainId;
        assert!(d.check("iam:domain::abc123").is_ok());
        assert!(d.check("*").is_ok());
        assert!(d.check("iam:domain::").is_err());
        assert!(d.check("iam:domain::a-b").is_err());
        assert!(
            PermissionType::OrgPath
                .check("organizations:orgPath::o-1/r-2")
                .is_ok()
        );
        assert_eq!(
            PermissionType::OrgPath.check("x").unwrap_err().code,
            ErrorCode::InvalidPermission
        );
        let p = Permission {
            id: "1".into(),
            service_id: "s".into(),
            permission: "iam:domain::d1".into(),
            permission_type: d,
            description: String::new(),
            created_at: 0,
        };
        let who = |d: &str, org: Option<&str>| Tenant {
            domain_id: d.into(),
            project_id: "p".into(),
            ak: "ak".into(),
            org_path: org.map(Into::into),
        };
        assert!(p.admits(&who("d1", None)) && !p.admits(&who("d2", None)));
        let org = Permission {
            permission: "organizations:orgPath::o-1/r-1/ou-a".into(),
            permission_type: PermissionType::OrgPath,
            ..p
        };
        assert!(org.admits(&who("d2", Some("o-1/r-1/ou-a"))));
        assert!(
            org.admits(&who("d2", Some("o-1/r-1/ou-a/ou-b"))),
            "a unit below"
        );
        assert!(
            !org.admits(&who("d2", Some("o-1/r-1/ou-ab"))),
            "not a prefix of a name"
        );
        assert!(
            !org.admits(&who("d2", Some("o-1/r-1"))),
            "not the unit above"
        );
        assert!(!org.admits(&who("d2", None)), "outside any organisation");
        assert!(org_path_admits("o-1/*", "o-1/r-1/ou-z"));
        assert!(org_path_admits("o-?/r-1/ou-a", "o-2/r-1/ou-a"));
        assert!(!org_path_admits("o-?/r-1/ou-a", "o-22/r-1/ou-a"));
        assert!(!org_path_admits("o-1/*", "o-2/r-1"));
        assert!(org_path_admits("*", "o-9/r"));
        for ok in ["192.0.2.7", "backend.example.com", "a-1.b", "localhost"] {
            assert!(ServiceIp::try_from(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "10.0.0.256",
            "1.2.3",
            "fd00::1",
            "a..b",
            "-a.b",
            "a_b.c",
            "a.b-",
        ] {
            let e = ServiceIp::try_from(bad.to_string()).unwrap_err();
            assert_eq!(e.code, ErrorCode::Parameter, "{bad}");
        }
        assert!(ServiceName::try_from("svc_1-a".to_string()).is_ok());
        for bad in ["", "a.b", "12345678901234567"] {
            assert_eq!(
                ServiceName::try_from(bad.to_string()).unwrap_err().code,
                ErrorCode::InvalidServiceName
            );
        }
    }
}
