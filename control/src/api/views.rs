//! JSON shapes of API.md section 6, built from the model.

use serde_json::{Value, json};

use crate::model::{Endpoint, Permission, Port, Service, Subnet, Vpc, format_time};
use crate::registry::Model;

fn ports(svc: &Service) -> Value {
    svc.ports
        .iter()
        .map(|p| json!({"client_port": p.client_port, "server_port": p.server_port, "protocol": p.protocol.as_str()}))
        .collect()
}

/// Connections in `creating` or `accepted`.
pub fn connection_count(m: &Model, svc: &Service) -> usize {
    m.endpoints_of(&svc.id)
        .filter(|e| e.status == crate::model::ConnectionStatus::Accepted)
        .count()
}

/// The service object (create, show, update; list items add `domain_id` and a count).
pub fn service(m: &Model, svc: &Service) -> Value {
    json!({
        "id": svc.id,
        "port_id": svc.port_id.clone().unwrap_or_default(),
        "service_name": svc.full_name,
        "server_type": svc.server_type.as_str(),
        "vpc_id": svc.vpc_id,
        "pool_id": "",
        "approval_enabled": svc.approval_enabled,
        "status": svc.status.as_str(),
        "service_type": "interface",
        "created_at": format_time(svc.created_at),
        "updated_at": format_time(svc.updated_at),
        "project_id": svc.project_id,
        "domain_id": svc.domain_id,
        "ip": m.backend_ip(svc).map(|ip| ip.to_string()).unwrap_or_default(),
        "ports": ports(svc),
        "tcp_proxy": svc.tcp_proxy,
        "tags": svc.tags,
        "description": svc.description,
        "enable_policy": false,
        "ip_version": "ipv4",
        "connection_count": connection_count(m, svc),
        "supported_editions": ["basic"],
        "cidr_type": "internal",
        "error": [],
    })
}

/// The public view of a service (describe, public list).
pub fn service_public(svc: &Service) -> Value {
    json!({
        "id": svc.id,
        "owner": svc.domain_id,
        "service_name": svc.full_name,
        "service_type": "interface",
        "created_at": format_time(svc.created_at),
        "is_charge": false,
        "enable_policy": false,
        "public_border_group": "",
    })
}

/// The endpoint's `active_status`.
pub fn active_status(ep: &Endpoint) -> &'static str {
    if ep.frozen { "frozen" } else { "active" }
}

/// The internal DNS name of an endpoint.
pub fn dns_name(ep: &Endpoint, region: &str) -> String {
    format!(
        "{}.vpcep.{region}.internal",
        ep.ip.to_string().replace('.', "-")
    )
}

/// The endpoint object; `with_dns` adds `dns_names` (not on create, like the real API).
pub fn endpoint(m: &Model, ep: &Endpoint, region: &str, with_dns: bool) -> Value {
    let svc = m.services.get(&ep.service_id);
    let mut v = json!({
        "id": ep.id,
        "service_type": "interface",
        "status": ep.status.as_str(),
        "active_status": [active_status(ep)],
        "enable_status": "enable",
        "specification_name": "default",
        "endpoint_service_name": svc.map(|s| s.full_name.clone()).unwrap_or_default(),
        "marker_id": ep.marker_id,
        "endpoint_service_id": ep.service_id,
        "enable_dns": ep.enable_dns,
        "ip": ep.ip.to_string(),
        "vpc_id": ep.vpc_id,
        "subnet_id": ep.subnet_id,
        "created_at": format_time(ep.created_at),
        "updated_at": format_time(ep.updated_at),
        "project_id": ep.project_id,
        "tags": ep.tags,
        "error": [],
        "whitelist": ep.whitelist,
        "enable_whitelist": ep.enable_whitelist,
        "routetables": ep.routetables,
        "description": ep.description,
        "policy_statement": ep.policy_statement,
        "policy_document": ep.policy_document.clone().unwrap_or(Value::Null),
        "expires_at": ep.expires_at.map(format_time),
    });
    if with_dns && let Some(obj) = v.as_object_mut() {
        let names: Vec<String> = if ep.enable_dns {
            vec![dns_name(ep, region)]
        } else {
            Vec::new()
        };
        obj.insert("dns_names".into(), json!(names));
    }
    v
}

/// A connection, as the provider sees it.
pub fn connection(ep: &Endpoint) -> Value {
    json!({
        "id": ep.id,
        "marker_id": ep.marker_id,
        "created_at": format_time(ep.created_at),
        "updated_at": format_time(ep.updated_at),
        "domain_id": ep.domain_id,
        "error": [],
        "status": ep.status.as_str(),
        "description": ep.connection_description,
    })
}

/// A whitelist entry; `with_desc` for the batch operations.
pub fn permission(p: &Permission, with_desc: bool) -> Value {
    let mut v = json!({
        "id": p.id,
        "permission": p.permission,
        "permission_type": p.permission_type,
        "created_at": format_time(p.created_at),
    });
    if with_desc && let Some(o) = v.as_object_mut() {
        o.insert("description".into(), json!(p.description));
    }
    v
}

/// A VPC (Huawei VPC API shape, trimmed).
pub fn vpc(v: &Vpc) -> Value {
    json!({"id": v.id, "name": v.name, "cidr": v.cidr, "status": "OK", "project_id": v.project_id,
           "created_at": format_time(v.created_at)})
}

/// A subnet.
pub fn subnet(s: &Subnet) -> Value {
    json!({"id": s.id, "name": s.name, "vpc_id": s.vpc_id, "cidr": s.cidr, "gateway_ip": s.gateway_ip,
           "ip_version": s.ip_version, "status": "ACTIVE", "project_id": s.project_id,
           "created_at": format_time(s.created_at)})
}

/// A port.
pub fn port(p: &Port) -> Value {
    json!({"id": p.id, "name": p.name, "vpc_id": p.vpc_id, "subnet_id": p.subnet_id,
           "fixed_ips": [{"subnet_id": p.subnet_id, "ip_address": p.ip}], "ip": p.ip,
           "ip_version": p.ip_version, "server_type": p.server_type.as_str(), "status": "ACTIVE",
           "project_id": p.project_id, "created_at": format_time(p.created_at)})
}
