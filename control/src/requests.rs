//! The wire bodies of requests, shared by the server (`Deserialize`) and the clients
//! (`Serialize`: `vpcepctl`, [`crate::client`], the tests and benches build these instead of
//! hand-written JSON).
//!
//! Unknown fields are refused (`deny_unknown_fields`), so every field the official SDK may
//! send is listed, including those the product stores without acting on. Field types are
//! checked by serde; `command/` turns each body into a validated command (`TryFrom`), and
//! cross-resource rules live in `registry/`. Absent fields are not serialized.

use serde::{Deserialize, Serialize};

use crate::model::Tag;

/// A port mapping as sent (`protocol` defaults to TCP).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortBody {
    /// Endpoint-side port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_port: Option<i64>,
    /// Backend port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_port: Option<i64>,
    /// `TCP` or `UDP`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `POST /v1/{project_id}/vpc-endpoint-services`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateService {
    /// Backend port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_id: Option<String>,
    /// Short name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Provider VPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_enabled: Option<bool>,
    /// Only `interface`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// `VM` or `LB`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_type: Option<String>,
    /// Interface-VLAN backend: an IPv4 address or a domain name (stored and returned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Port mappings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortBody>>,
    /// `close`, `toa_open`, `proxy_open`, `open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_proxy: Option<String>,
    /// Tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Only `ipv4`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<String>,
    /// Refused when set (IPv6 SNAT is not supported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snat_network_id: Option<String>,
}

/// `PUT /v1/{project_id}/vpc-endpoint-services/{id}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    /// New approval setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_enabled: Option<bool>,
    /// New short name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Replaces every mapping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortBody>>,
    /// A new backend of the same server type (resumes a suspended service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_id: Option<String>,
    /// New TCP proxy setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_proxy: Option<String>,
    /// New description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New interface-VLAN backend address or domain name; `""` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// `PUT .../name`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RenameService {
    /// The new short name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_service_name: Option<String>,
}

/// `POST .../connections/action`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionAction {
    /// `receive` or `reject`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Exactly one endpoint id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
}

/// One entry of `PUT .../connections/description`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionDesc {
    /// Endpoint id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// New description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PUT .../connections/description`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionDescs {
    /// The updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<Vec<ConnectionDesc>>,
}

/// `POST .../permissions/action`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionAction {
    /// Permission strings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// `domainId` (default) or `orgPath`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_type: Option<String>,
    /// `add` or `remove`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// One entry of `permissions/batch-create`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionEntry {
    /// Permission string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `POST .../permissions/batch-create`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionBatchCreate {
    /// The entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<PermissionEntry>>,
    /// `domainId` or `orgPath`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_type: Option<String>,
}

/// One entry of `permissions/batch-delete`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionRef {
    /// Permission id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `POST .../permissions/batch-delete`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionBatchDelete {
    /// The entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<PermissionRef>>,
}

/// The inner object of `PUT .../permissions/{id}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionDesc {
    /// New description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PUT .../permissions/{id}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionDescBody {
    /// The update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<PermissionDesc>,
}

/// `POST /v1/{project_id}/vpc-endpoints`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// The user's subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// The service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_service_id: Option<String>,
    /// The user's VPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Internal DNS name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_dns: Option<bool>,
    /// Tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// Gateway endpoints only (stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routetables: Option<Vec<String>>,
    /// A chosen address; automatic when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_ip: Option<String>,
    /// Source CIDRs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whitelist: Option<Vec<String>>,
    /// Enforce the source whitelist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_whitelist: Option<bool>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Policy statements (stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_statement: Option<Vec<serde_json::Value>>,
    /// Policy document (stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_document: Option<serde_json::Value>,
    /// `ipv4` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<String>,
    /// Refused when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    /// vpcep extension: seconds until the endpoint expires (frozen until extended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
}

/// `PUT /v1/{project_id}/vpc-endpoints/{id}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateWhitelist {
    /// Source CIDRs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whitelist: Option<Vec<String>>,
    /// Enforce the whitelist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_whitelist: Option<bool>,
}

/// `PUT .../routetables`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoutetables {
    /// Route table ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routetables: Option<Vec<String>>,
}

/// `PUT .../policy`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// Statements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_statement: Option<Vec<serde_json::Value>>,
    /// Document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_document: Option<serde_json::Value>,
}

/// vpcep extension, `PUT .../vpc-endpoints/{id}/expiry`: extend the lifetime, or end it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    /// Seconds added to what is left (counted from now once expired); `null` removes the
    /// expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
}

/// One tag of a tag action (`ResourceTag`): `value` is required to create, optional to
/// delete (absent: delete by key).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TagBody {
    /// Key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `POST /v1/{project_id}/{resource_type}/{resource_id}/tags/action`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TagAction {
    /// The tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<TagBody>>,
    /// `create` or `delete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A tag filter (`TagValuesList`): `values` empty means any value.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TagValuesBody {
    /// Key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Values, any of which matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// A search field of a resource query (`Match`): `resource_name` or `resource_id`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchBody {
    /// The field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `POST /v1/{project_id}/{resource_type}/resource_instances/action`
/// (`QueryResourceInstanceTagsBody`). `limit` and `offset` are JSON strings in the SDK;
/// numbers are taken too.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceQueryBody {
    /// Has every one of these.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<TagValuesBody>>,
    /// Has at least one of these.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags_any: Option<Vec<TagValuesBody>>,
    /// Does not have all of these.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_tags: Option<Vec<TagValuesBody>>,
    /// Has none of these.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_tags_any: Option<Vec<TagValuesBody>>,
    /// System tags: `_sys_enterprise_project_id` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sys_tags: Option<Vec<TagValuesBody>>,
    /// Page size, `"1"` to `"1000"` (default `"1000"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<serde_json::Value>,
    /// Skipped resources (default `"0"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<serde_json::Value>,
    /// `filter` or `count`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Search fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<MatchBody>>,
    /// Only resources without tags (the four tag filters are then ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_any_tag: Option<bool>,
}

/// `POST /v1/{project_id}/vpcs`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVpc {
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// IPv4 block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

/// `POST /v1/{project_id}/subnets`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubnet {
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The VPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// The block (IPv4 inside the VPC's, or IPv6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Gateway; the first host by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_ip: Option<String>,
    /// 4 (default) or 6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
}

/// `POST /v1/{project_id}/ports`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePort {
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// The address; automatic for IPv4 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `VM` or `LB`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_type: Option<String>,
    /// The MAC address (`fa:16:3e:01:02:03`); assigned when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

/// Wrapper the Huawei VPC API uses: `{"vpc": {...}}` and so on.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VpcEnvelope {
    /// The VPC.
    pub vpc: CreateVpc,
}

/// `{"subnet": {...}}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetEnvelope {
    /// The subnet.
    pub subnet: CreateSubnet,
}

/// `{"port": {...}}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortEnvelope {
    /// The port.
    pub port: CreatePort,
}
