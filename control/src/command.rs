//! Validated commands: each wire body of `requests.rs` becomes one command through
//! `TryFrom`, which checks everything that needs no other resource (presence, ranges,
//! spellings, formats) and parses every value into its model type. After this point nothing
//! is re-parsed; the registry applies the rules that relate resources.
//!
//! The shape follows firecracker's `ParsedRequest` -> `VmmAction`: parse at the edge, act on
//! typed values inside.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::{ErrorCode, Rejection, require};
use crate::model::net::parse_ipv4_block;
use crate::model::*;
use crate::requests::*;

/// Most port mappings in one request (the API's limit).
pub const MAX_PORTS: usize = 200;
/// Most tags on a resource.
pub const MAX_TAGS: usize = 20;
/// Most entries in an endpoint's source whitelist.
pub const MAX_WHITELIST: usize = 20;
/// Most entries in one batch of permissions.
pub const MAX_BATCH: usize = 50;

/// Check a free-text description: at most 128 characters, no `<` or `>`.
///
/// # Errors
/// [`ErrorCode::Parameter`].
pub fn check_description(d: &str) -> Result<(), Rejection> {
    if d.chars().count() > 128 || d.contains(['<', '>']) {
        return Err(Rejection::param(
            "description: at most 128 characters, without < or >",
        ));
    }
    Ok(())
}

fn description(d: Option<String>) -> Result<String, Rejection> {
    let d = d.unwrap_or_default();
    check_description(&d)?;
    Ok(d)
}

/// Check a resource's tags: at most [`MAX_TAGS`], keys non-empty and unique, sizes bounded.
///
/// # Errors
/// EndPoint.3066 to 3069.
pub fn check_tags(tags: &[Tag]) -> Result<(), Rejection> {
    if tags.len() > MAX_TAGS {
        return Err(Rejection::new(
            ErrorCode::TooManyTags,
            "The maximum number of tags has been reached.",
        ));
    }
    let mut keys = HashSet::new();
    for t in tags {
        if t.key.is_empty() {
            return Err(Rejection::new(
                ErrorCode::TagEmpty,
                "The tag cannot be empty.",
            ));
        }
        if t.key.chars().count() > 128 || t.value.chars().count() > 255 {
            return Err(Rejection::new(
                ErrorCode::TagInvalid,
                "Tag keys and values should meet relevant requirements.",
            ));
        }
        if !keys.insert(&t.key) {
            return Err(Rejection::new(
                ErrorCode::TagKeyDuplicated,
                "The tag key cannot be duplicated.",
            ));
        }
    }
    Ok(())
}

fn tags(t: Option<Vec<Tag>>) -> Result<Vec<Tag>, Rejection> {
    let t = t.unwrap_or_default();
    check_tags(&t)?;
    Ok(t)
}

fn port_number(v: Option<i64>, which: &str) -> Result<u16, Rejection> {
    let v = v.ok_or_else(|| {
        Rejection::new(
            ErrorCode::InvalidServicePort,
            format!("{which} is required"),
        )
    })?;
    u16::try_from(v).ok().filter(|p| *p >= 1).ok_or_else(|| {
        Rejection::new(
            ErrorCode::InvalidServicePort,
            format!("The service port is invalid: {which} {v} is not in 1..65535."),
        )
    })
}

/// Parse port mappings: 1 to [`MAX_PORTS`], ports in range, no client or server port twice
/// for one protocol.
///
/// # Errors
/// EndPoint.0002, 3043, 3044, 3074, 3075.
pub fn parse_ports(ports: &[PortBody]) -> Result<Vec<PortMapping>, Rejection> {
    if ports.is_empty() {
        return Err(Rejection::param("ports must hold at least one mapping"));
    }
    if ports.len() > MAX_PORTS {
        return Err(Rejection::new(
            ErrorCode::TooManyPorts,
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
                return Err(Rejection::new(
                    ErrorCode::InvalidProtocol,
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
            return Err(Rejection::new(
                ErrorCode::PortsConflict,
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

/// Parse a source whitelist: at most [`MAX_WHITELIST`] IPv4 addresses or blocks.
///
/// # Errors
/// EndPoint.2044, 2045.
pub fn parse_whitelist(list: &[String]) -> Result<Vec<SourceCidr>, Rejection> {
    if list.len() > MAX_WHITELIST {
        return Err(Rejection::new(
            ErrorCode::WhitelistFull,
            "The maximum number of whitelist records has been reached.",
        ));
    }
    list.iter()
        .map(|s| {
            s.parse().map_err(|_| {
                Rejection::new(
                    ErrorCode::InvalidWhitelist,
                    format!("Invalid whitelist entry {s:?}: an IPv4 address or CIDR."),
                )
            })
        })
        .collect()
}

fn positive_duration(d: Option<i64>, what: &str) -> Result<Option<i64>, Rejection> {
    if d.is_some_and(|d| d <= 0) {
        return Err(Rejection::param(format!(
            "duration must be a positive number of seconds{what}"
        )));
    }
    Ok(d)
}

fn only_ipv4(version: Option<&str>, v6_field_set: bool) -> Result<(), Rejection> {
    if version.is_some_and(|v| v != "ipv4") || v6_field_set {
        return Err(Rejection::param("ip_version: only ipv4 is supported"));
    }
    Ok(())
}

fn batch<T>(list: Option<Vec<T>>, field: &str) -> Result<Vec<T>, Rejection> {
    let list = require(list, field)?;
    if list.len() > MAX_BATCH {
        return Err(Rejection::new(
            ErrorCode::BatchLimit,
            format!("The number of batch operated resources exceeded the limit ({MAX_BATCH})."),
        ));
    }
    Ok(list)
}

/// Create a VPC.
#[derive(Clone, Debug)]
pub struct NewVpc {
    /// Name.
    pub name: String,
    /// Its IPv4 block.
    pub cidr: Ipv4Net,
}

impl TryFrom<CreateVpc> for NewVpc {
    type Error = Rejection;

    fn try_from(b: CreateVpc) -> Result<Self, Rejection> {
        let cidr = require(b.cidr, "cidr")?;
        let cidr = parse_ipv4_block(&cidr)
            .ok_or_else(|| Rejection::param(format!("cidr {cidr:?} is not an IPv4 CIDR")))?;
        Ok(Self {
            name: b.name.unwrap_or_default(),
            cidr,
        })
    }
}

/// Create a subnet.
#[derive(Clone, Debug)]
pub struct NewSubnet {
    /// Name.
    pub name: String,
    /// Its VPC.
    pub vpc_id: VpcId,
    /// Its block, of the family asked for.
    pub cidr: IpNet,
    /// The gateway, if given (IPv4: the first host by default).
    pub gateway_ip: Option<IpAddr>,
}

impl TryFrom<CreateSubnet> for NewSubnet {
    type Error = Rejection;

    fn try_from(b: CreateSubnet) -> Result<Self, Rejection> {
        let vpc_id = require(b.vpc_id, "vpc_id")?.into();
        let cidr = require(b.cidr, "cidr")?;
        let gateway = |family: &str| -> Result<Option<IpAddr>, Rejection> {
            b.gateway_ip
                .as_deref()
                .map(|g| {
                    g.parse::<IpAddr>()
                        .ok()
                        .filter(|a| {
                            (a.is_ipv4() && family == "4") || (a.is_ipv6() && family == "6")
                        })
                        .ok_or_else(|| {
                            Rejection::param("gateway_ip must be an address of the subnet")
                        })
                })
                .transpose()
        };
        let (cidr, gateway_ip) = match b.ip_version.unwrap_or(4) {
            4 => {
                let net = parse_ipv4_block(&cidr)
                    .ok_or_else(|| Rejection::param(format!("cidr {cidr:?} is not IPv4")))?;
                (IpNet::V4(net), gateway("4")?)
            }
            6 => {
                let net = cidr
                    .parse::<Ipv6Net>()
                    .map_err(|_| Rejection::param("cidr: an IPv6 address and prefix"))?;
                (IpNet::V6(net), gateway("6")?)
            }
            _ => return Err(Rejection::param("ip_version must be 4 or 6")),
        };
        Ok(Self {
            name: b.name.unwrap_or_default(),
            vpc_id,
            cidr,
            gateway_ip,
        })
    }
}

/// Create a port.
#[derive(Clone, Debug)]
pub struct NewPort {
    /// Name.
    pub name: String,
    /// Its subnet.
    pub subnet_id: SubnetId,
    /// A chosen address (required in IPv6 subnets); automatic when absent.
    pub ip: Option<IpAddr>,
    /// NIC or VIP.
    pub server_type: ServerType,
}

fn port_ip(s: Option<String>) -> Result<Option<IpAddr>, Rejection> {
    s.map(|s| {
        s.parse().map_err(|_| {
            Rejection::new(
                ErrorCode::InvalidPortIp,
                format!("Invalid Port IP address {s:?}."),
            )
        })
    })
    .transpose()
}

impl TryFrom<CreatePort> for NewPort {
    type Error = Rejection;

    fn try_from(b: CreatePort) -> Result<Self, Rejection> {
        Ok(Self {
            subnet_id: require(b.subnet_id, "subnet_id")?.into(),
            server_type: ServerType::parse(&require(b.server_type, "server_type")?)?,
            ip: port_ip(b.ip)?,
            name: b.name.unwrap_or_default(),
        })
    }
}

/// Create an endpoint service.
#[derive(Clone, Debug)]
pub struct NewService {
    /// The backend port.
    pub port_id: PortId,
    /// The provider's VPC.
    pub vpc_id: VpcId,
    /// The backend's kind.
    pub server_type: ServerType,
    /// Port mappings.
    pub ports: Vec<PortMapping>,
    /// Short name.
    pub name: Option<ServiceName>,
    /// Whether connections wait for acceptance (default true).
    pub approval_enabled: bool,
    /// Proxy mode.
    pub tcp_proxy: TcpProxy,
    /// Free text.
    pub description: String,
    /// Tags.
    pub tags: Vec<Tag>,
}

impl TryFrom<CreateService> for NewService {
    type Error = Rejection;

    fn try_from(b: CreateService) -> Result<Self, Rejection> {
        let port_id = require(b.port_id, "port_id")?.into();
        let vpc_id = require(b.vpc_id, "vpc_id")?.into();
        let server_type = ServerType::parse(&require(b.server_type, "server_type")?)?;
        let ports = parse_ports(&require(b.ports, "ports")?)?;
        if b.service_type.as_deref().is_some_and(|t| t != "interface") {
            return Err(Rejection::param(
                "service_type: only interface services can be created",
            ));
        }
        only_ipv4(b.ip_version.as_deref(), b.snat_network_id.is_some())?;
        Ok(Self {
            port_id,
            vpc_id,
            server_type,
            ports,
            name: b.service_name.map(ServiceName::try_from).transpose()?,
            approval_enabled: b.approval_enabled.unwrap_or(true),
            tcp_proxy: b
                .tcp_proxy
                .as_deref()
                .map(TcpProxy::parse)
                .transpose()?
                .unwrap_or_default(),
            description: description(b.description)?,
            tags: tags(b.tags)?,
        })
    }
}

/// Change a service; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ServiceChange {
    /// New approval setting.
    pub approval_enabled: Option<bool>,
    /// New short name (the full name follows).
    pub name: Option<ServiceName>,
    /// Every mapping, replaced.
    pub ports: Option<Vec<PortMapping>>,
    /// A new backend of the same server type (resumes a suspended service).
    pub port_id: Option<PortId>,
    /// New proxy mode.
    pub tcp_proxy: Option<TcpProxy>,
    /// New description.
    pub description: Option<String>,
}

impl TryFrom<UpdateService> for ServiceChange {
    type Error = Rejection;

    fn try_from(b: UpdateService) -> Result<Self, Rejection> {
        if let Some(d) = &b.description {
            check_description(d)?;
        }
        Ok(Self {
            approval_enabled: b.approval_enabled,
            name: b.service_name.map(ServiceName::try_from).transpose()?,
            ports: b.ports.as_deref().map(parse_ports).transpose()?,
            port_id: b.port_id.map(PortId::from),
            tcp_proxy: b.tcp_proxy.as_deref().map(TcpProxy::parse).transpose()?,
            description: b.description,
        })
    }
}

impl TryFrom<RenameService> for ServiceChange {
    type Error = Rejection;

    fn try_from(b: RenameService) -> Result<Self, Rejection> {
        let name = require(b.endpoint_service_name, "endpoint_service_name")?;
        Ok(Self {
            name: Some(ServiceName::try_from(name)?),
            ..Self::default()
        })
    }
}

/// Accept or reject one connection.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// `Accepted` (receive) or `Rejected` (reject).
    pub status: ConnectionStatus,
}

impl TryFrom<ConnectionAction> for Decision {
    type Error = Rejection;

    fn try_from(b: ConnectionAction) -> Result<Self, Rejection> {
        let status = match require(b.action, "action")?.as_str() {
            "receive" => ConnectionStatus::Accepted,
            "reject" => ConnectionStatus::Rejected,
            _ => {
                return Err(Rejection::new(
                    ErrorCode::InvalidConnectionAction,
                    "Invalid action: receive or reject.",
                ));
            }
        };
        let endpoints = require(b.endpoints, "endpoints")?;
        let [id] = <[String; 1]>::try_from(endpoints).map_err(|_| {
            Rejection::new(ErrorCode::OneEndpointOnly, "Only one endpoint is allowed.")
        })?;
        Ok(Self {
            endpoint_id: id.into(),
            status,
        })
    }
}

/// The provider's descriptions of connections: (endpoint, text).
#[derive(Clone, Debug)]
pub struct ConnectionNotes(pub Vec<(EndpointId, String)>);

impl TryFrom<ConnectionDescs> for ConnectionNotes {
    type Error = Rejection;

    fn try_from(b: ConnectionDescs) -> Result<Self, Rejection> {
        require(b.connections, "connections")?
            .into_iter()
            .map(|c| {
                let id = require(c.id, "connections[].id")?;
                let d = require(c.description, "connections[].description")?;
                check_description(&d)?;
                Ok((id.into(), d))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Add or remove whitelist entries by permission string.
#[derive(Clone, Debug)]
pub struct PermissionEdit {
    /// True to add, false to remove.
    pub add: bool,
    /// What the strings name.
    pub permission_type: PermissionType,
    /// The permission strings, checked against the type.
    pub permissions: Vec<String>,
}

impl TryFrom<PermissionAction> for PermissionEdit {
    type Error = Rejection;

    fn try_from(b: PermissionAction) -> Result<Self, Rejection> {
        let permissions = batch(b.permissions, "permissions")?;
        let permission_type = b
            .permission_type
            .as_deref()
            .map(PermissionType::parse)
            .transpose()?
            .unwrap_or_default();
        let add = match require(b.action, "action")?.as_str() {
            "add" => true,
            "remove" => false,
            _ => {
                return Err(Rejection::new(
                    ErrorCode::InvalidPermissionAction,
                    "Invalid action: add or remove.",
                ));
            }
        };
        for p in &permissions {
            permission_type.check(p)?;
        }
        Ok(Self {
            add,
            permission_type,
            permissions,
        })
    }
}

/// Add whitelist entries with descriptions: (permission, description).
#[derive(Clone, Debug)]
pub struct NewPermissions {
    /// What the strings name.
    pub permission_type: PermissionType,
    /// The entries.
    pub entries: Vec<(String, String)>,
}

impl TryFrom<PermissionBatchCreate> for NewPermissions {
    type Error = Rejection;

    fn try_from(b: PermissionBatchCreate) -> Result<Self, Rejection> {
        let list = batch(b.permissions, "permissions")?;
        let permission_type = b
            .permission_type
            .as_deref()
            .map(PermissionType::parse)
            .transpose()?
            .unwrap_or_default();
        let entries = list
            .into_iter()
            .map(|e| {
                let p = require(e.permission, "permissions[].permission")?;
                permission_type.check(&p)?;
                Ok((p, description(e.description)?))
            })
            .collect::<Result<_, Rejection>>()?;
        Ok(Self {
            permission_type,
            entries,
        })
    }
}

/// Remove whitelist entries by id.
#[derive(Clone, Debug)]
pub struct PermissionRemoval(pub Vec<PermissionId>);

impl TryFrom<PermissionBatchDelete> for PermissionRemoval {
    type Error = Rejection;

    fn try_from(b: PermissionBatchDelete) -> Result<Self, Rejection> {
        require(b.permissions, "permissions")?
            .into_iter()
            .map(|r| require(r.id, "permissions[].id").map(PermissionId::from))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// A whitelist entry's new description.
#[derive(Clone, Debug)]
pub struct PermissionNote(pub String);

impl TryFrom<PermissionDescBody> for PermissionNote {
    type Error = Rejection;

    fn try_from(b: PermissionDescBody) -> Result<Self, Rejection> {
        let d = require(
            require(b.permission, "permission")?.description,
            "permission.description",
        )?;
        check_description(&d)?;
        Ok(Self(d))
    }
}

/// Create an endpoint.
#[derive(Clone, Debug)]
pub struct NewEndpoint {
    /// The service.
    pub service_id: ServiceId,
    /// The user's VPC.
    pub vpc_id: VpcId,
    /// The user's subnet.
    pub subnet_id: SubnetId,
    /// A chosen address; automatic when absent.
    pub ip: Option<Ipv4Addr>,
    /// Internal DNS name.
    pub enable_dns: bool,
    /// Source whitelist.
    pub whitelist: Vec<SourceCidr>,
    /// Enforce it.
    pub enable_whitelist: bool,
    /// Free text.
    pub description: String,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Route tables (stored).
    pub routetables: Vec<String>,
    /// Policy statements (stored).
    pub policy_statement: Vec<serde_json::Value>,
    /// Policy document (stored).
    pub policy_document: Option<serde_json::Value>,
    /// Seconds until it expires.
    pub lifetime: Option<i64>,
}

impl TryFrom<CreateEndpoint> for NewEndpoint {
    type Error = Rejection;

    fn try_from(b: CreateEndpoint) -> Result<Self, Rejection> {
        let service_id = require(b.endpoint_service_id, "endpoint_service_id")?.into();
        let vpc_id = require(b.vpc_id, "vpc_id")?.into();
        let subnet_id = require(b.subnet_id, "subnet_id")?.into();
        only_ipv4(b.ip_version.as_deref(), b.ipv6_address.is_some())?;
        let ip = match port_ip(b.port_ip)? {
            None => None,
            Some(IpAddr::V4(a)) => Some(a),
            Some(IpAddr::V6(a)) => {
                return Err(Rejection::new(
                    ErrorCode::InvalidPortIp,
                    format!("Invalid Port IP address {a}: endpoints are IPv4."),
                ));
            }
        };
        Ok(Self {
            service_id,
            vpc_id,
            subnet_id,
            ip,
            whitelist: parse_whitelist(&b.whitelist.unwrap_or_default())?,
            description: description(b.description)?,
            tags: tags(b.tags)?,
            lifetime: positive_duration(b.duration, "")?,
            enable_dns: b.enable_dns.unwrap_or(false),
            enable_whitelist: b.enable_whitelist.unwrap_or(false),
            routetables: b.routetables.unwrap_or_default(),
            policy_statement: b.policy_statement.unwrap_or_default(),
            policy_document: b.policy_document,
        })
    }
}

/// Change an endpoint (owner side).
#[derive(Clone, Debug)]
pub enum EndpointChange {
    /// Replace the whitelist and/or switch its enforcement.
    Whitelist(Option<Vec<SourceCidr>>, Option<bool>),
    /// Replace the route tables.
    Routetables(Vec<String>),
    /// Replace policy statements and/or document.
    Policy(Option<Vec<serde_json::Value>>, Option<serde_json::Value>),
    /// Remove the policy.
    ClearPolicy,
    /// A new lifetime from now (`None`: none); unfreezes.
    Lifetime(Option<i64>),
}

impl TryFrom<UpdateWhitelist> for EndpointChange {
    type Error = Rejection;

    fn try_from(b: UpdateWhitelist) -> Result<Self, Rejection> {
        let list = b.whitelist.as_deref().map(parse_whitelist).transpose()?;
        Ok(Self::Whitelist(list, b.enable_whitelist))
    }
}

impl TryFrom<UpdateRoutetables> for EndpointChange {
    type Error = Rejection;

    fn try_from(b: UpdateRoutetables) -> Result<Self, Rejection> {
        Ok(Self::Routetables(require(b.routetables, "routetables")?))
    }
}

impl TryFrom<UpdatePolicy> for EndpointChange {
    type Error = Rejection;

    fn try_from(b: UpdatePolicy) -> Result<Self, Rejection> {
        Ok(Self::Policy(b.policy_statement, b.policy_document))
    }
}

impl TryFrom<Extend> for EndpointChange {
    type Error = Rejection;

    fn try_from(b: Extend) -> Result<Self, Rejection> {
        Ok(Self::Lifetime(positive_duration(b.duration, ", or null")?))
    }
}

impl TryFrom<VpcEnvelope> for NewVpc {
    type Error = Rejection;

    fn try_from(b: VpcEnvelope) -> Result<Self, Rejection> {
        b.vpc.try_into()
    }
}

impl TryFrom<SubnetEnvelope> for NewSubnet {
    type Error = Rejection;

    fn try_from(b: SubnetEnvelope) -> Result<Self, Rejection> {
        b.subnet.try_into()
    }
}

impl TryFrom<PortEnvelope> for NewPort {
    type Error = Rejection;

    fn try_from(b: PortEnvelope) -> Result<Self, Rejection> {
        b.port.try_into()
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
        let code = |r: Result<Vec<PortMapping>, Rejection>| r.unwrap_err().code;
        assert!(parse_ports(&[p(80, 8080, "TCP"), p(80, 8080, "UDP")]).is_ok());
        assert_eq!(code(parse_ports(&[])), ErrorCode::Parameter);
        assert_eq!(
            code(parse_ports(&[p(0, 1, "TCP")])),
            ErrorCode::InvalidServicePort
        );
        assert_eq!(
            code(parse_ports(&[p(1, 65536, "TCP")])),
            ErrorCode::InvalidServicePort
        );
        assert_eq!(
            code(parse_ports(&[p(1, 1, "ICMP")])),
            ErrorCode::InvalidProtocol
        );
        assert_eq!(
            code(parse_ports(&[p(1, 1, "TCP"), p(1, 2, "TCP")])),
            ErrorCode::PortsConflict
        );
        let many: Vec<_> = (1..=201).map(|i| p(i, i, "TCP")).collect();
        assert_eq!(code(parse_ports(&many)), ErrorCode::TooManyPorts);
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
    fn whitelists_descriptions_and_tags() {
        assert!(parse_whitelist(&["10.0.0.0/8".into(), "192.0.2.1".into()]).is_ok());
        assert_eq!(
            parse_whitelist(&["10.0.0.0/33".into()]).unwrap_err().code,
            ErrorCode::InvalidWhitelist
        );
        let big: Vec<String> = (0..21).map(|i| format!("192.0.2.{i}")).collect();
        assert_eq!(
            parse_whitelist(&big).unwrap_err().code,
            ErrorCode::WhitelistFull
        );
        assert!(check_description("<script>").is_err());
        assert!(check_description(&"x".repeat(128)).is_ok());
        assert!(check_description(&"x".repeat(129)).is_err());
        let tag = |k: &str| Tag {
            key: k.into(),
            value: String::new(),
        };
        assert_eq!(
            check_tags(&[tag("")]).unwrap_err().code,
            ErrorCode::TagEmpty
        );
        assert_eq!(
            check_tags(&[tag("a"), tag("a")]).unwrap_err().code,
            ErrorCode::TagKeyDuplicated
        );
        assert_eq!(
            check_tags(&[tag(&"k".repeat(129))]).unwrap_err().code,
            ErrorCode::TagInvalid
        );
        let many: Vec<Tag> = (0..21).map(|i| tag(&i.to_string())).collect();
        assert_eq!(check_tags(&many).unwrap_err().code, ErrorCode::TooManyTags);
    }

    #[test]
    fn bodies_become_typed_commands() {
        let svc: NewService = CreateService {
            port_id: Some("p".into()),
            vpc_id: Some("v".into()),
            server_type: Some("VIP".into()),
            ports: Some(vec![PortBody {
                client_port: Some(80),
                server_port: Some(8080),
                protocol: None,
            }]),
            ..CreateService::default()
        }
        .try_into()
        .unwrap();
        assert_eq!(
            (svc.server_type, svc.tcp_proxy, svc.approval_enabled),
            (ServerType::Lb, TcpProxy::Close, true)
        );
        let bad = |b: CreateService| NewService::try_from(b).unwrap_err().code;
        assert_eq!(bad(CreateService::default()), ErrorCode::Parameter);
        let decision = |a: &str, n: usize| {
            Decision::try_from(ConnectionAction {
                action: Some(a.into()),
                endpoints: Some(vec!["e".into(); n]),
            })
        };
        assert_eq!(
            decision("receive", 1).unwrap().status,
            ConnectionStatus::Accepted
        );
        assert_eq!(
            decision("accept", 1).unwrap_err().code,
            ErrorCode::InvalidConnectionAction
        );
        assert_eq!(
            decision("reject", 2).unwrap_err().code,
            ErrorCode::OneEndpointOnly
        );
        let subnet = |cidr: &str, v: Option<u8>, gw: Option<&str>| {
            NewSubnet::try_from(CreateSubnet {
                vpc_id: Some("v".into()),
                cidr: Some(cidr.into()),
                ip_version: v,
                gateway_ip: gw.map(Into::into),
                name: None,
            })
        };
        assert_eq!(
            subnet("10.0.1.7/24", None, None).unwrap().cidr.to_string(),
            "10.0.1.0/24"
        );
        assert!(subnet("2001:db8::/64", Some(6), Some("2001:db8::1")).is_ok());
        assert!(subnet("2001:db8::/64", None, None).is_err());
        assert!(subnet("10.0.0.0/24", Some(5), None).is_err());
        assert!(subnet("10.0.0.0/24", None, Some("2001:db8::1")).is_err());
        let edit = PermissionEdit::try_from(PermissionAction {
            permissions: Some(vec!["iam:domain::abc".into()]),
            permission_type: None,
            action: Some("drop".into()),
        });
        assert_eq!(edit.unwrap_err().code, ErrorCode::InvalidPermissionAction);
        let too_many = PermissionAction {
            permissions: Some(vec!["*".into(); 51]),
            permission_type: None,
            action: Some("add".into()),
        };
        assert_eq!(
            PermissionEdit::try_from(too_many).unwrap_err().code,
            ErrorCode::BatchLimit
        );
        let ep = |ip: &str| {
            NewEndpoint::try_from(CreateEndpoint {
                endpoint_service_id: Some("s".into()),
                vpc_id: Some("v".into()),
                subnet_id: Some("n".into()),
                port_ip: Some(ip.into()),
                ..CreateEndpoint::default()
            })
        };
        assert_eq!(ep("10.0.0.300").unwrap_err().code, ErrorCode::InvalidPortIp);
        assert_eq!(ep("fd00::1").unwrap_err().code, ErrorCode::InvalidPortIp);
        assert_eq!(ep("10.0.0.3").unwrap().ip, Some(Ipv4Addr::new(10, 0, 0, 3)));
        assert!(EndpointChange::try_from(Extend { duration: Some(0) }).is_err());
        assert!(matches!(
            EndpointChange::try_from(Extend { duration: None }),
            Ok(EndpointChange::Lifetime(None))
        ));
    }
}
