//! The JSON shapes of API.md section 6, as typed views of the model (`Serialize` structs
//! that borrow from it). Fields appear in the order API.md lists them.

use std::net::Ipv4Addr;

use serde::Serialize;
use serde_json::Value;

use crate::model::{
    ApiStatus, ConnectionStatus, DomainId, Endpoint, EndpointId, GatewayService, MacAddress, Model,
    Permission, PermissionId, Port, PortId, PortMapping, ProjectId, Service, ServiceId, SourceCidr,
    Subnet, SubnetId, Tag, Vpc, VpcId, format_time,
};
use crate::model::{gateway, health};

/// An entry of a service's `error` member (`code`/`message`, as API.md says).
#[derive(Debug, Serialize)]
pub struct ServiceError {
    code: &'static str,
    message: String,
}

/// An entry of an endpoint's or connection's `error` member.
#[derive(Debug, Serialize)]
pub struct EndpointError {
    error_code: &'static str,
    error_message: String,
}

fn endpoint_errors(m: &Model, ep: &Endpoint) -> Vec<EndpointError> {
    m.endpoint_failure(ep)
        .map(|error_message| EndpointError {
            error_code: health::NOT_ATTACHED,
            error_message,
        })
        .into_iter()
        .collect()
}

/// A service, as its owner sees it (create, show, update, list).
#[derive(Debug, Serialize)]
pub struct ServiceView<'m> {
    id: &'m ServiceId,
    port_id: &'m str,
    service_name: &'m str,
    server_type: &'static str,
    vpc_id: &'m VpcId,
    pool_id: &'static str,
    approval_enabled: bool,
    status: ApiStatus,
    service_type: &'static str,
    created_at: String,
    updated_at: String,
    project_id: &'m ProjectId,
    domain_id: &'m DomainId,
    ip: String,
    ports: &'m [PortMapping],
    tcp_proxy: &'static str,
    tags: &'m [Tag],
    description: &'m str,
    enable_policy: bool,
    ip_version: &'static str,
    connection_count: usize,
    supported_editions: [&'static str; 1],
    cidr_type: &'static str,
    error: Vec<ServiceError>,
}

impl<'m> ServiceView<'m> {
    /// The view of `svc`.
    pub fn new(m: &'m Model, svc: &'m Service) -> Self {
        Self {
            id: &svc.id,
            port_id: svc.port_id.as_ref().map_or("", PortId::as_str),
            service_name: &svc.full_name,
            server_type: svc.server_type.as_str(),
            vpc_id: &svc.vpc_id,
            pool_id: "",
            approval_enabled: svc.approval_enabled,
            status: m.service_status(svc),
            service_type: "interface",
            created_at: format_time(svc.created_at),
            updated_at: format_time(svc.updated_at),
            project_id: &svc.project_id,
            domain_id: &svc.domain_id,
            // The address the provider gave (`ip`), else the backend port's.
            ip: match &svc.ip {
                Some(ip) => ip.as_str().to_string(),
                None => m
                    .backend_ip(svc)
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
            },
            ports: &svc.ports,
            tcp_proxy: svc.tcp_proxy.as_str(),
            tags: &svc.tags,
            description: &svc.description,
            enable_policy: false,
            ip_version: "ipv4",
            connection_count: m.connection_count(svc),
            supported_editions: ["basic"],
            cidr_type: "internal",
            error: m
                .service_failure(svc)
                .map(|message| ServiceError {
                    code: health::NOT_ATTACHED,
                    message,
                })
                .into_iter()
                .collect(),
        }
    }
}

/// A service as other accounts see it (describe, public list).
#[derive(Debug, Serialize)]
pub struct PublicServiceView<'m> {
    id: &'m ServiceId,
    owner: &'m str,
    service_name: &'m str,
    service_type: &'static str,
    created_at: String,
    is_charge: bool,
    enable_policy: bool,
    public_border_group: &'static str,
}

impl<'m> PublicServiceView<'m> {
    /// The public view of `svc`.
    pub fn new(svc: &'m Service) -> Self {
        Self {
            id: &svc.id,
            owner: svc.domain_id.as_str(),
            service_name: &svc.full_name,
            service_type: "interface",
            created_at: format_time(svc.created_at),
            is_charge: false,
            enable_policy: false,
            public_border_group: "",
        }
    }
}

impl<'m> PublicServiceView<'m> {
    /// The public view of gateway service `g` (owner: [`gateway::GATEWAY_OWNER`]).
    pub fn gateway(g: &'m GatewayService) -> Self {
        Self {
            id: &g.id,
            owner: gateway::GATEWAY_OWNER,
            service_name: &g.full_name,
            service_type: "gateway",
            created_at: format_time(g.created_at),
            is_charge: false,
            enable_policy: false,
            public_border_group: "",
        }
    }
}

/// An endpoint, as its owner sees it.
#[derive(Debug, Serialize)]
pub struct EndpointView<'m> {
    id: &'m EndpointId,
    service_type: &'static str,
    status: ApiStatus,
    active_status: [&'static str; 1],
    enable_status: &'static str,
    specification_name: &'static str,
    endpoint_service_name: &'m str,
    marker_id: u64,
    endpoint_service_id: &'m ServiceId,
    enable_dns: bool,
    ip: Ipv4Addr,
    vpc_id: &'m VpcId,
    subnet_id: &'m SubnetId,
    created_at: String,
    updated_at: String,
    project_id: &'m ProjectId,
    tags: &'m [Tag],
    error: Vec<EndpointError>,
    whitelist: &'m [SourceCidr],
    enable_whitelist: bool,
    routetables: &'m [String],
    description: &'m str,
    policy_statement: &'m [Value],
    policy_document: Option<&'m Value>,
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_names: Option<Vec<String>>,
}

impl<'m> EndpointView<'m> {
    /// The view of `ep`; `with_dns` adds `dns_names` (not on create, like the real API).
    pub fn new(m: &'m Model, ep: &'m Endpoint, region: &str, with_dns: bool) -> Self {
        Self {
            id: &ep.id,
            service_type: m.service_type_of(&ep.service_id),
            status: m.endpoint_status(ep),
            active_status: [if ep.frozen { "frozen" } else { "active" }],
            enable_status: "enable",
            specification_name: "default",
            endpoint_service_name: m.service_full_name(&ep.service_id).unwrap_or(""),
            marker_id: ep.marker_id,
            endpoint_service_id: &ep.service_id,
            enable_dns: ep.enable_dns,
            ip: ep.ip,
            vpc_id: &ep.vpc_id,
            subnet_id: &ep.subnet_id,
            created_at: format_time(ep.created_at),
            updated_at: format_time(ep.updated_at),
            project_id: &ep.project_id,
            tags: &ep.tags,
            error: endpoint_errors(m, ep),
            whitelist: &ep.whitelist,
            enable_whitelist: ep.enable_whitelist,
            routetables: &ep.routetables,
            description: &ep.description,
            policy_statement: &ep.policy_statement,
            policy_document: ep.policy_document.as_ref(),
            expires_at: ep.expires_at.map(format_time),
            // The name exists once the connection is accepted (the user guide), not while
            // it waits or after a reject.
            dns_names: with_dns.then(|| {
                if ep.enable_dns && ep.status == ConnectionStatus::Accepted {
                    vec![ep.dns_name(region)]
                } else {
                    Vec::new()
                }
            }),
        }
    }
}

/// A connection, as the provider sees it.
#[derive(Debug, Serialize)]
pub struct ConnectionView<'m> {
    id: &'m EndpointId,
    marker_id: u64,
    created_at: String,
    updated_at: String,
    domain_id: &'m DomainId,
    error: Vec<EndpointError>,
    status: ApiStatus,
    description: &'m str,
}

impl<'m> ConnectionView<'m> {
    /// The provider's view of `ep`.
    pub fn new(m: &Model, ep: &'m Endpoint) -> Self {
        Self {
            id: &ep.id,
            marker_id: ep.marker_id,
            created_at: format_time(ep.created_at),
            updated_at: format_time(ep.updated_at),
            domain_id: &ep.domain_id,
            error: endpoint_errors(m, ep),
            status: m.endpoint_status(ep),
            description: &ep.connection_description,
        }
    }
}

/// A whitelist entry.
#[derive(Debug, Serialize)]
pub struct PermissionView<'m> {
    id: &'m PermissionId,
    permission: &'m str,
    permission_type: &'static str,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'m str>,
}

impl<'m> PermissionView<'m> {
    /// The view of `p`; `with_desc` for the batch operations.
    pub fn new(p: &'m Permission, with_desc: bool) -> Self {
        Self {
            id: &p.id,
            permission: &p.permission,
            permission_type: p.permission_type.as_str(),
            created_at: format_time(p.created_at),
            description: with_desc.then_some(p.description.as_str()),
        }
    }
}

/// A VPC (Huawei VPC API shape, trimmed).
#[derive(Debug, Serialize)]
pub struct VpcView<'m> {
    id: &'m VpcId,
    name: &'m str,
    cidr: ipnet::Ipv4Net,
    status: &'static str,
    project_id: &'m ProjectId,
    created_at: String,
}

impl<'m> VpcView<'m> {
    /// The view of `v`.
    pub fn new(v: &'m Vpc) -> Self {
        Self {
            id: &v.id,
            name: &v.name,
            cidr: v.cidr,
            status: "OK",
            project_id: &v.project_id,
            created_at: format_time(v.created_at),
        }
    }
}

/// A subnet.
#[derive(Debug, Serialize)]
pub struct SubnetView<'m> {
    id: &'m SubnetId,
    name: &'m str,
    vpc_id: &'m VpcId,
    cidr: ipnet::IpNet,
    gateway_ip: String,
    ip_version: u8,
    status: &'static str,
    project_id: &'m ProjectId,
    created_at: String,
}

impl<'m> SubnetView<'m> {
    /// The view of `s`.
    pub fn new(s: &'m Subnet) -> Self {
        Self {
            id: &s.id,
            name: &s.name,
            vpc_id: &s.vpc_id,
            cidr: s.cidr,
            gateway_ip: s.gateway_ip.map(|g| g.to_string()).unwrap_or_default(),
            ip_version: s.ip_version(),
            status: "ACTIVE",
            project_id: &s.project_id,
            created_at: format_time(s.created_at),
        }
    }
}

/// One fixed address of a port.
#[derive(Debug, Serialize)]
pub struct FixedIp<'m> {
    subnet_id: &'m SubnetId,
    ip_address: std::net::IpAddr,
}

/// A port.
#[derive(Debug, Serialize)]
pub struct PortView<'m> {
    id: &'m PortId,
    name: &'m str,
    vpc_id: &'m VpcId,
    subnet_id: &'m SubnetId,
    fixed_ips: [FixedIp<'m>; 1],
    ip: std::net::IpAddr,
    ip_version: u8,
    server_type: &'static str,
    /// `null` for a port stored before ports had a MAC address.
    mac_address: Option<MacAddress>,
    status: &'static str,
    project_id: &'m ProjectId,
    created_at: String,
}

impl<'m> PortView<'m> {
    /// The view of `p`.
    pub fn new(p: &'m Port) -> Self {
        Self {
            id: &p.id,
            name: &p.name,
            vpc_id: &p.vpc_id,
            subnet_id: &p.subnet_id,
            fixed_ips: [FixedIp {
                subnet_id: &p.subnet_id,
                ip_address: p.ip,
            }],
            ip: p.ip,
            ip_version: p.ip_version(),
            server_type: p.server_type.as_str(),
            mac_address: p.mac_address,
            status: "ACTIVE",
            project_id: &p.project_id,
            created_at: format_time(p.created_at),
        }
    }
}

/// A list and, for the paged lists, the count before paging.
#[derive(Debug, Serialize)]
pub struct Listed<T> {
    /// The items, under the list's name.
    #[serde(flatten)]
    pub items: Named<Vec<T>>,
    /// How many matched, before paging.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_count: Option<usize>,
}

/// A value under a member name chosen at run time (`{"vpcs": [...]}`, `{"vpc": {...}}`).
#[derive(Debug)]
pub struct Named<T>(pub &'static str, pub T);

impl<T: Serialize> Serialize for Named<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.0, &self.1)?;
        map.end()
    }
}

/// `{name: items, "total_count": total}`.
pub fn paged<T>(name: &'static str, items: Vec<T>, total: usize) -> Listed<T> {
    Listed {
        items: Named(name, items),
        total_count: Some(total),
    }
}

/// `{name: items}`.
pub fn listed<T>(name: &'static str, items: Vec<T>) -> Listed<T> {
    Listed {
        items: Named(name, items),
        total_count: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lists_and_names_render_as_the_api_shapes_them() {
        let v = serde_json::to_value(paged("things", vec![1, 2], 7)).unwrap();
        assert_eq!(v, json!({"things": [1, 2], "total_count": 7}));
        let v = serde_json::to_value(listed("things", vec!["a"])).unwrap();
        assert_eq!(v, json!({"things": ["a"]}));
        let v = serde_json::to_value(Named("vpc", 3)).unwrap();
        assert_eq!(v, json!({"vpc": 3}));
    }

    #[test]
    fn an_endpoint_renders_every_member_with_the_whitelist_as_given() {
        let m = Model::default();
        let ep: Endpoint = serde_json::from_value(json!({
            "id": "e", "project_id": "p", "domain_id": "d", "service_id": "s", "vpc_id": "v",
            "subnet_id": "n", "ip": "10.0.0.7", "marker_id": 9, "status": "accepted",
            "enable_dns": true, "whitelist": ["192.0.2.7", "198.51.100.0/24"],
            "enable_whitelist": true, "description": "", "connection_description": "",
            "tags": [], "routetables": [], "policy_statement": [], "policy_document": null,
            "expires_at": null, "frozen": true, "created_at": 0, "updated_at": 0}))
        .unwrap();
        let v = serde_json::to_value(EndpointView::new(&m, &ep, "r", true)).unwrap();
        assert_eq!(v["whitelist"], json!(["192.0.2.7", "198.51.100.0/24"]));
        assert_eq!(v["ip"], "10.0.0.7");
        assert_eq!(v["active_status"], json!(["frozen"]));
        assert_eq!(v["dns_names"], json!(["10-0-0-7.vpcep.r.internal"]));
        assert_eq!(
            (v["policy_document"].clone(), v["expires_at"].clone()),
            (Value::Null, Value::Null)
        );
        // Its service is in no model here (as a gateway service taken out of the config):
        // accepted, it shows why it carries nothing.
        assert_eq!(v["error"][0]["error_code"], "VPC_NOT_ATTACHED");
        assert_eq!(v["status"], "failed");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00Z");
        let v = serde_json::to_value(EndpointView::new(&m, &ep, "r", false)).unwrap();
        assert!(v.get("dns_names").is_none());
        for status in [
            ConnectionStatus::PendingAcceptance,
            ConnectionStatus::Rejected,
        ] {
            let waiting = Endpoint {
                status,
                ..ep.clone()
            };
            let v = serde_json::to_value(EndpointView::new(&m, &waiting, "r", true)).unwrap();
            assert_eq!(
                v["dns_names"],
                json!([]),
                "no name before acceptance: {status:?}"
            );
        }
    }
}
