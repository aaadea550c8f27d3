//! The resource model: the network inventory (VPCs, subnets, ports), endpoint services with
//! their port mappings and whitelists, and endpoints (each one a connection to a service).
//! Plain data with serde; the rules that relate them live in `registry.rs`.
//!
//! Times are whole seconds since the Unix epoch; the API renders them as
//! `YYYY-MM-DDTHH:MM:SSZ`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// A VPC of the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    /// UUID.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// Owner account.
    pub domain_id: String,
    /// Free text.
    pub name: String,
    /// The VPC's IPv4 block, e.g. `10.0.0.0/16`.
    pub cidr: String,
    /// Creation time.
    pub created_at: i64,
}

/// A subnet of a VPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// UUID.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// Owner account.
    pub domain_id: String,
    /// The VPC it belongs to.
    pub vpc_id: String,
    /// Free text.
    pub name: String,
    /// IPv4 or IPv6 block.
    pub cidr: String,
    /// The gateway address (never handed out).
    pub gateway_ip: String,
    /// 4 or 6.
    pub ip_version: u8,
    /// Creation time.
    pub created_at: i64,
}

/// What a port is: a cloud server's NIC or a load balancer's VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerType {
    /// A load balancer's VIP.
    #[serde(rename = "LB")]
    Lb,
    /// A cloud server's NIC.
    #[serde(rename = "VM")]
    Vm,
}

impl ServerType {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lb => "LB",
            Self::Vm => "VM",
        }
    }

    /// Parse the API's spelling (`VIP` is the deprecated name of an LB VIP).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "VM" => Some(Self::Vm),
            "LB" | "VIP" => Some(Self::Lb),
            _ => None,
        }
    }
}

/// A port of the inventory: a NIC or a VIP with one address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// UUID.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// Owner account.
    pub domain_id: String,
    /// The VPC of its subnet.
    pub vpc_id: String,
    /// Its subnet.
    pub subnet_id: String,
    /// Free text.
    pub name: String,
    /// Its address.
    pub ip: String,
    /// 4 or 6.
    pub ip_version: u8,
    /// NIC or VIP.
    pub server_type: ServerType,
    /// Creation time.
    pub created_at: i64,
}

/// Transport protocol of a port mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
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

/// An endpoint service's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServiceStatus {
    /// Connectable.
    Available,
    /// Its backend port was deleted; a new backend of the same type resumes it.
    Suspended,
}

impl ServiceStatus {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Suspended => "suspended",
        }
    }
}

/// An endpoint service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// UUID.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// Owner account.
    pub domain_id: String,
    /// The short name given at creation (or by rename), if any.
    pub name: Option<String>,
    /// `<region>.<name>.<id>` or `<region>.<id>`.
    pub full_name: String,
    /// The provider's VPC.
    pub vpc_id: String,
    /// The backend port; `None` once it was deleted (the service is then suspended).
    pub port_id: Option<String>,
    /// The backend's kind; a replacement backend must be of the same kind.
    pub server_type: ServerType,
    /// Whether new connections wait for acceptance.
    pub approval_enabled: bool,
    /// Port mappings.
    pub ports: Vec<PortMapping>,
    /// `close`, `toa_open`, `proxy_open` or `open`.
    pub tcp_proxy: String,
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
}

/// A whitelist entry of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// UUID.
    pub id: String,
    /// The service.
    pub service_id: String,
    /// `iam:domain::<id>`, `*`, or `organizations:orgPath::<path>`.
    pub permission: String,
    /// `domainId` or `orgPath`.
    pub permission_type: String,
    /// Free text.
    pub description: String,
    /// Creation time.
    pub created_at: i64,
}

impl Permission {
    /// True if this entry lets account `domain_id` see and connect to the service.
    pub fn admits(&self, domain_id: &str) -> bool {
        match self.permission.as_str() {
            "*" | "iam:domain::*" => true,
            p => p
                .strip_prefix("iam:domain::")
                .is_some_and(|d| d == domain_id),
        }
    }
}

/// An endpoint's (connection's) status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionStatus {
    /// Accepted: may carry traffic.
    Accepted,
    /// Waiting for the provider.
    PendingAcceptance,
    /// Rejected by the provider.
    Rejected,
}

impl ConnectionStatus {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::PendingAcceptance => "pendingAcceptance",
            Self::Rejected => "rejected",
        }
    }
}

/// An endpoint: an address in the user's subnet connected to one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// UUID.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// Owner account.
    pub domain_id: String,
    /// The service.
    pub service_id: String,
    /// The user's VPC.
    pub vpc_id: String,
    /// The user's subnet.
    pub subnet_id: String,
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// The connection's packet ID, unique.
    pub marker_id: u64,
    /// Connection status.
    pub status: ConnectionStatus,
    /// Whether the endpoint gets an internal DNS name.
    pub enable_dns: bool,
    /// Source CIDRs allowed to use the endpoint (when `enable_whitelist`).
    pub whitelist: Vec<String>,
    /// Whether the source whitelist is enforced.
    pub enable_whitelist: bool,
    /// Free text of the endpoint's owner.
    pub description: String,
    /// Free text of the provider about this connection.
    pub connection_description: String,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Route tables (gateway endpoints; stored only).
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

/// Render seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
