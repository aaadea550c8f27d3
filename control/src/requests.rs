//! Typed request bodies. Unknown fields are refused (`deny_unknown_fields`), so every field
//! the official SDK may send is listed, including those the product stores without acting
//! on. Field types are checked by serde; ranges and cross-resource rules in `registry.rs`.

use serde::Deserialize;

use crate::model::Tag;

/// A port mapping as sent (`protocol` defaults to TCP).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortBody {
    /// Endpoint-side port.
    pub client_port: Option<i64>,
    /// Backend port.
    pub server_port: Option<i64>,
    /// `TCP` or `UDP`.
    pub protocol: Option<String>,
}

/// `POST /v1/{project_id}/vpc-endpoint-services`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateService {
    /// Backend port.
    pub port_id: Option<String>,
    /// Short name.
    pub service_name: Option<String>,
    /// Provider VPC.
    pub vpc_id: Option<String>,
    /// Default true.
    pub approval_enabled: Option<bool>,
    /// Only `interface`.
    pub service_type: Option<String>,
    /// `VM` or `LB`.
    pub server_type: Option<String>,
    /// Stored, unused (interface-VLAN backends).
    pub ip: Option<String>,
    /// Port mappings.
    pub ports: Option<Vec<PortBody>>,
    /// `close`, `toa_open`, `proxy_open`, `open`.
    pub tcp_proxy: Option<String>,
    /// Tags.
    pub tags: Option<Vec<Tag>>,
    /// Free text.
    pub description: Option<String>,
    /// Only `ipv4`.
    pub ip_version: Option<String>,
    /// Refused when set (IPv6 SNAT is not supported).
    pub snat_network_id: Option<String>,
}

/// `PUT /v1/{project_id}/vpc-endpoint-services/{id}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    /// New approval setting.
    pub approval_enabled: Option<bool>,
    /// New short name.
    pub service_name: Option<String>,
    /// Replaces every mapping.
    pub ports: Option<Vec<PortBody>>,
    /// A new backend of the same server type (resumes a suspended service).
    pub port_id: Option<String>,
    /// New TCP proxy setting.
    pub tcp_proxy: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// Stored, unused.
    pub ip: Option<String>,
}

/// `PUT .../name`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameService {
    /// The new short name.
    pub endpoint_service_name: Option<String>,
}

/// `POST .../connections/action`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionAction {
    /// `receive` or `reject`.
    pub action: Option<String>,
    /// Exactly one endpoint id.
    pub endpoints: Option<Vec<String>>,
}

/// One entry of `PUT .../connections/description`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionDesc {
    /// Endpoint id.
    pub id: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// `PUT .../connections/description`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionDescs {
    /// The updates.
    pub connections: Option<Vec<ConnectionDesc>>,
}

/// `POST .../permissions/action`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionAction {
    /// Permission strings.
    pub permissions: Option<Vec<String>>,
    /// `domainId` (default) or `orgPath`.
    pub permission_type: Option<String>,
    /// `add` or `remove`.
    pub action: Option<String>,
}

/// One entry of `permissions/batch-create`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionEntry {
    /// Permission string.
    pub permission: Option<String>,
    /// Free text.
    pub description: Option<String>,
}

/// `POST .../permissions/batch-create`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionBatchCreate {
    /// The entries.
    pub permissions: Option<Vec<PermissionEntry>>,
    /// `domainId` or `orgPath`.
    pub permission_type: Option<String>,
}

/// One entry of `permissions/batch-delete`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionRef {
    /// Permission id.
    pub id: Option<String>,
}

/// `POST .../permissions/batch-delete`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionBatchDelete {
    /// The entries.
    pub permissions: Option<Vec<PermissionRef>>,
}

/// The inner object of `PUT .../permissions/{id}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionDesc {
    /// New description.
    pub description: Option<String>,
}

/// `PUT .../permissions/{id}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionDescBody {
    /// The update.
    pub permission: Option<PermissionDesc>,
}

/// `POST /v1/{project_id}/vpc-endpoints`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// The user's subnet.
    pub subnet_id: Option<String>,
    /// The service.
    pub endpoint_service_id: Option<String>,
    /// The user's VPC.
    pub vpc_id: Option<String>,
    /// Internal DNS name.
    pub enable_dns: Option<bool>,
    /// Tags.
    pub tags: Option<Vec<Tag>>,
    /// Gateway endpoints only (stored).
    pub routetables: Option<Vec<String>>,
    /// A chosen address; automatic when absent.
    pub port_ip: Option<String>,
    /// Source CIDRs.
    pub whitelist: Option<Vec<String>>,
    /// Enforce the source whitelist.
    pub enable_whitelist: Option<bool>,
    /// Free text.
    pub description: Option<String>,
    /// Policy statements (stored).
    pub policy_statement: Option<Vec<serde_json::Value>>,
    /// Policy document (stored).
    pub policy_document: Option<serde_json::Value>,
    /// `ipv4` only.
    pub ip_version: Option<String>,
    /// Refused when set.
    pub ipv6_address: Option<String>,
    /// vpcep extension: seconds until the endpoint expires (frozen until extended).
    pub duration: Option<i64>,
}

/// `PUT /v1/{project_id}/vpc-endpoints/{id}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateWhitelist {
    /// Source CIDRs.
    pub whitelist: Option<Vec<String>>,
    /// Enforce the whitelist.
    pub enable_whitelist: Option<bool>,
}

/// `PUT .../routetables`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoutetables {
    /// Route table ids.
    pub routetables: Option<Vec<String>>,
}

/// `PUT .../policy`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// Statements.
    pub policy_statement: Option<Vec<serde_json::Value>>,
    /// Document.
    pub policy_document: Option<serde_json::Value>,
}

/// vpcep extension, `PUT .../vpc-endpoints/{id}/expiry`: a new lifetime from now, or none.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    /// Seconds from now; `null` removes the expiry.
    pub duration: Option<i64>,
}

/// `POST /v1/{project_id}/vpcs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVpc {
    /// Name.
    pub name: Option<String>,
    /// IPv4 block.
    pub cidr: Option<String>,
}

/// `POST /v1/{project_id}/subnets`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubnet {
    /// Name.
    pub name: Option<String>,
    /// The VPC.
    pub vpc_id: Option<String>,
    /// The block (IPv4 inside the VPC's, or IPv6).
    pub cidr: Option<String>,
    /// Gateway; the first host by default.
    pub gateway_ip: Option<String>,
    /// 4 (default) or 6.
    pub ip_version: Option<u8>,
}

/// `POST /v1/{project_id}/ports`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePort {
    /// Name.
    pub name: Option<String>,
    /// The subnet.
    pub subnet_id: Option<String>,
    /// The address; automatic for IPv4 when absent.
    pub ip: Option<String>,
    /// `VM` or `LB`.
    pub server_type: Option<String>,
}

/// Wrapper the Huawei VPC API uses: `{"vpc": {...}}` and so on.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcEnvelope {
    /// The VPC.
    pub vpc: CreateVpc,
}

/// `{"subnet": {...}}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetEnvelope {
    /// The subnet.
    pub subnet: CreateSubnet,
}

/// `{"port": {...}}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortEnvelope {
    /// The port.
    pub port: CreatePort,
}
