//! Commands of the provider side: services, decisions on their connections, and their
//! whitelists.

use super::{batch, check_description, description, only_ipv4, parse_ports, split_create_tags};
use crate::error::{ErrorCode, Rejection, require};
use crate::model::{
    ConnectionStatus, EndpointId, PermissionId, PermissionType, PortId, PortMapping, ServerType,
    ServiceIp, ServiceName, Tag, TcpProxy, VpcId,
};
use crate::requests::{
    ConnectionAction, ConnectionDescs, CreateService, PermissionAction, PermissionBatchCreate,
    PermissionBatchDelete, PermissionDescBody, RenameService, UpdateService,
};

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
    /// Interface-VLAN backend address or name (stored and returned).
    pub ip: Option<ServiceIp>,
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
            tags: split_create_tags(b.tags.unwrap_or_default(), false)?.0,
            ip: b
                .ip
                .filter(|ip| !ip.is_empty())
                .map(ServiceIp::try_from)
                .transpose()?,
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
    /// New interface-VLAN backend address or name (`Some(None)`: cleared).
    pub ip: Option<Option<ServiceIp>>,
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
            ip: b
                .ip
                .map(|ip| {
                    (!ip.is_empty())
                        .then(|| ServiceIp::try_from(ip))
                        .transpose()
                })
                .transpose()?,
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
        let mut seen = std::collections::HashSet::new();
        batch(b.connections, "connections")?
            .into_iter()
            .map(|c| {
                let id = require(c.id, "connections[].id")?;
                let d = require(c.description, "connections[].description")?;
                check_description(&d)?;
                if !seen.insert(id.clone()) {
                    return Err(Rejection::param(format!(
                        "connections[].id {id:?} appears twice"
                    )));
                }
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
