//! Helpers of the registry's rule tests: a registry on the in-memory store (no disk, no
//! HTTP), tenants, and the few resources most rules need, built from the same wire bodies
//! the API decodes.

use super::*;
use crate::command::*;
use crate::model::*;
use crate::requests::*;
use crate::store::MemStore;

/// A registry on a fresh in-memory store, region `r`.
pub(crate) fn registry() -> Registry {
    registry_with(Quotas::default())
}

/// The same with `quotas`.
pub(crate) fn registry_with(quotas: Quotas) -> Registry {
    Registry::open(Arc::new(MemStore::default()), "r", quotas).unwrap()
}

/// A tenant of project `p{name}` in account `d{name}`.
pub(crate) fn tenant(name: &str) -> Tenant {
    Tenant {
        domain_id: format!("d{name}").into(),
        project_id: format!("p{name}").into(),
        ak: "ak".into(),
        org_path: None,
    }
}

/// A VPC `cidr16` with its first /24 as a subnet; returns (vpc, subnet).
pub(crate) fn network(r: &Registry, t: &Tenant, cidr16: &str) -> (VpcId, SubnetId) {
    let vpc = r
        .create_vpc(
            t,
            CreateVpc {
                name: None,
                cidr: Some(cidr16.into()),
            }
            .try_into()
            .unwrap(),
        )
        .unwrap();
    let base = cidr16.split('/').next().unwrap();
    let sub = CreateSubnet {
        vpc_id: Some(vpc.id.to_string()),
        cidr: Some(format!("{base}/24")),
        ..CreateSubnet::default()
    };
    let sub = r.create_subnet(t, sub.try_into().unwrap()).unwrap();
    (vpc.id, sub.id)
}

/// A port of `kind` at `ip` (or the next free address).
pub(crate) fn port(r: &Registry, t: &Tenant, sub: &SubnetId, kind: &str, ip: Option<&str>) -> Port {
    let body = CreatePort {
        subnet_id: Some(sub.to_string()),
        server_type: Some(kind.into()),
        ip: ip.map(Into::into),
        name: None,
        mac_address: None,
    };
    r.create_port(t, body.try_into().unwrap()).unwrap()
}

/// A service body on `port` in `vpc`, TCP 8080 -> 80.
pub(crate) fn service_body(vpc: &VpcId, port: &PortId, approval: bool) -> CreateService {
    CreateService {
        vpc_id: Some(vpc.to_string()),
        port_id: Some(port.to_string()),
        server_type: Some("VM".into()),
        approval_enabled: Some(approval),
        ports: Some(vec![PortBody {
            client_port: Some(8080),
            server_port: Some(80),
            protocol: None,
        }]),
        ..CreateService::default()
    }
}

/// The provider `p`'s service on a new VM port at 10.0.0.10, whitelisting `users`.
pub(crate) fn service(r: &Registry, p: &Tenant, approval: bool, users: &[&Tenant]) -> Service {
    let (vpc, sub) = network(r, p, "10.0.0.0/16");
    let port = port(r, p, &sub, "VM", Some("10.0.0.10"));
    let svc = r
        .create_service(
            p,
            service_body(&vpc, &port.id, approval).try_into().unwrap(),
        )
        .unwrap();
    if !users.is_empty() {
        let edit = PermissionAction {
            permissions: Some(
                users
                    .iter()
                    .map(|u| format!("iam:domain::{}", u.domain_id))
                    .collect(),
            ),
            permission_type: None,
            action: Some("add".into()),
        };
        r.permission_action(p, &svc.id, edit.try_into().unwrap())
            .unwrap();
    }
    svc
}

/// An endpoint body for `svc` in (`vpc`, `sub`).
pub(crate) fn endpoint_body(svc: &ServiceId, vpc: &VpcId, sub: &SubnetId) -> CreateEndpoint {
    CreateEndpoint {
        endpoint_service_id: Some(svc.to_string()),
        vpc_id: Some(vpc.to_string()),
        subnet_id: Some(sub.to_string()),
        ..CreateEndpoint::default()
    }
}

/// Create an endpoint from `body`.
pub(crate) fn endpoint(
    r: &Registry,
    u: &Tenant,
    body: CreateEndpoint,
) -> Result<Endpoint, Rejection> {
    r.create_endpoint(u, NewEndpoint::try_from(body)?)
}
