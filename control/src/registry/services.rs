//! Endpoint services' rules.
//!
//! A service's backend is an IPv4 port of the tenant, in the service's VPC, of the
//! service's server type; at most [`MAX_SERVICES_PER_BACKEND`] services share a backend,
//! and their server ports are unique per protocol. A service is not deleted while it has
//! pending or accepted connections; rejected ones and its whitelist go with it.

use super::{Registry, now};
use crate::command::{NewService, ServiceChange};
use crate::error::{ErrorCode, Rejection};
use crate::model::index::Key;
use crate::model::{
    ConnectionStatus, Model, Mutation, PortId, PortMapping, Record, ServerType, Service, ServiceId,
    ServiceStatus, Tenant, TenantView, VpcId,
};

/// Most endpoint services on one backend port.
pub const MAX_SERVICES_PER_BACKEND: usize = 5;

fn service_not_found() -> Rejection {
    Rejection::not_found("endpoint service")
}

/// Check `port_id` as the backend of a service of `server_type` in `vpc_id` (`exclude`: the
/// service itself, when it changes backend).
fn check_backend(
    v: TenantView<'_>,
    port_id: &PortId,
    vpc_id: &VpcId,
    server_type: ServerType,
    exclude: Option<&ServiceId>,
) -> Result<(), Rejection> {
    let invalid = |msg: String| Rejection::new(ErrorCode::InvalidPortId, msg);
    let port = v
        .port(port_id)
        .ok_or_else(|| invalid(format!("Invalid port ID {:?}.", port_id.as_str())))?;
    if port.vpc_id != *vpc_id {
        return Err(invalid("The port is not in the service's VPC.".into()));
    }
    if port.server_type != server_type {
        return Err(Rejection::new(
            ErrorCode::InvalidServerType,
            format!(
                "Invalid serverType: the port is a {} backend, the service needs {}.",
                port.server_type.as_str(),
                server_type.as_str()
            ),
        ));
    }
    if port.ipv4().is_none() {
        let what = match server_type {
            ServerType::Lb => "an IPv6 load balancer",
            ServerType::Vm => "an IPv6 port",
        };
        return Err(invalid(format!("{what} cannot be a backend.")));
    }
    if v.model().services_on(port_id, exclude).count() >= MAX_SERVICES_PER_BACKEND {
        return Err(invalid(format!(
            "At most {MAX_SERVICES_PER_BACKEND} endpoint services may use one backend."
        )));
    }
    Ok(())
}

/// Server ports must be unique per protocol among the services of one backend.
fn check_backend_ports(
    m: &Model,
    port_id: &PortId,
    ports: &[PortMapping],
    exclude: Option<&ServiceId>,
) -> Result<(), Rejection> {
    for s in m.services_on(port_id, exclude) {
        for p in ports {
            if s.ports
                .iter()
                .any(|q| q.protocol == p.protocol && q.server_port == p.server_port)
            {
                return Err(Rejection::new(
                    ErrorCode::PortsConflict,
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

impl Registry {
    /// Create an endpoint service.
    ///
    /// # Errors
    /// EndPoint.0020 (VPC), 3003/3021 (backend), 3044 (ports), 1018 (quota).
    pub fn create_service(&self, t: &Tenant, cmd: NewService) -> Result<Service, Rejection> {
        self.write_as(t, |v| {
            // Cloned: the rule runs again if another node commits first.
            let cmd = cmd.clone();
            v.vpc(&cmd.vpc_id)
                .ok_or_else(|| Rejection::new(ErrorCode::InvalidVpcId, "Invalid VPC ID."))?;
            check_backend(v, &cmd.port_id, &cmd.vpc_id, cmd.server_type, None)?;
            check_backend_ports(v.model(), &cmd.port_id, &cmd.ports, None)?;
            let quota = self.quotas().endpoint_service;
            if v.services().count() >= quota {
                return Err(Rejection::new(
                    ErrorCode::QuotaExceeded,
                    format!("Quota exceeded: at most {quota} endpoint services."),
                ));
            }
            let id = ServiceId::random();
            let ts = now();
            let svc = Service {
                full_name: Service::full_name(self.region(), cmd.name.as_ref(), &id),
                id,
                project_id: t.project_id.clone(),
                domain_id: t.domain_id.clone(),
                name: cmd.name,
                vpc_id: cmd.vpc_id,
                port_id: Some(cmd.port_id),
                server_type: cmd.server_type,
                approval_enabled: cmd.approval_enabled,
                ports: cmd.ports,
                tcp_proxy: cmd.tcp_proxy,
                description: cmd.description,
                tags: cmd.tags,
                status: ServiceStatus::Available,
                created_at: ts,
                updated_at: ts,
                ip: cmd.ip,
            };
            Ok((vec![Mutation::Put(Record::Service(svc.clone()))], svc))
        })
    }

    /// Update a service: approval, name, mappings (replaced whole), backend, proxy mode,
    /// description. A new `port_id` of the same server type resumes a suspended service.
    ///
    /// # Errors
    /// EndPoint.0005, and as for create.
    pub fn update_service(
        &self,
        t: &Tenant,
        id: &ServiceId,
        cmd: ServiceChange,
    ) -> Result<Service, Rejection> {
        self.write_as(t, |v| {
            // Cloned: the rule runs again if another node commits first.
            let cmd = cmd.clone();
            let mut svc = v.service(id).ok_or_else(service_not_found)?.clone();
            if let Some(port_id) = cmd.port_id
                && svc.port_id.as_ref() != Some(&port_id)
            {
                check_backend(v, &port_id, &svc.vpc_id, svc.server_type, Some(id))?;
                svc.port_id = Some(port_id);
                svc.status = ServiceStatus::Available;
            }
            if let Some(p) = cmd.ports {
                svc.ports = p;
            }
            if let Some(port_id) = &svc.port_id {
                check_backend_ports(v.model(), port_id, &svc.ports, Some(id))?;
            }
            if let Some(a) = cmd.approval_enabled {
                svc.approval_enabled = a;
            }
            if let Some(n) = cmd.name {
                svc.full_name = Service::full_name(self.region(), Some(&n), &svc.id);
                svc.name = Some(n);
            }
            if let Some(p) = cmd.tcp_proxy {
                svc.tcp_proxy = p;
            }
            if let Some(d) = cmd.description {
                svc.description = d;
            }
            if let Some(ip) = cmd.ip {
                svc.ip = ip;
            }
            svc.updated_at = now();
            Ok((vec![Mutation::Put(Record::Service(svc.clone()))], svc))
        })
    }

    /// Delete a service. Refused (EndPoint.3006) while endpoints are pending or accepted;
    /// rejected endpoints, which carry nothing, are removed with it, as are its permissions.
    ///
    /// # Errors
    /// EndPoint.0005 or EndPoint.3006.
    pub fn delete_service(&self, t: &Tenant, id: &ServiceId) -> Result<(), Rejection> {
        self.write_as(t, |v| {
            let svc = v.service(id).ok_or_else(service_not_found)?;
            let m = v.model();
            let live = m
                .endpoints_of(svc.id.as_str())
                .filter(|e| e.status != ConnectionStatus::Rejected)
                .count();
            if live > 0 {
                return Err(Rejection::new(
                    ErrorCode::ServiceInUse,
                    format!(
                        "The endpoint service is being used: {live} connections are pending or accepted; reject or delete them first."
                    ),
                ));
            }
            let mut muts = vec![Mutation::Delete(Key::Service(svc.id.clone()))];
            muts.extend(
                m.endpoints_of(svc.id.as_str())
                    .map(|e| Mutation::Delete(Key::Endpoint(e.id.clone()))),
            );
            muts.extend(
                m.permissions_of(svc.id.as_str())
                    .map(|p| Mutation::Delete(Key::Permission(p.id.clone()))),
            );
            Ok((muts, ()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TcpProxy;
    use crate::registry::Quotas;
    use crate::registry::testing::*;
    use crate::requests::{PortBody, UpdateService};

    fn update(
        r: &Registry,
        t: &Tenant,
        id: &ServiceId,
        b: UpdateService,
    ) -> Result<Service, Rejection> {
        r.update_service(t, id, ServiceChange::try_from(b)?)
    }

    #[test]
    fn backends_are_checked() {
        let r = registry();
        let p = tenant("p");
        let (vpc, sub) = network(&r, &p, "10.0.0.0/16");
        let (other_vpc, other_sub) = network(&r, &p, "10.9.0.0/16");
        let vm = port(&r, &p, &sub, "VM", None);
        let lb = port(&r, &p, &sub, "LB", None);
        let far = port(&r, &p, &other_sub, "VM", None);
        let create = |vpc: &VpcId, port: &PortId, t: &Tenant| {
            r.create_service(t, service_body(vpc, port, true).try_into()?)
        };
        let code = |x: Result<Service, Rejection>| x.unwrap_err().code;
        assert_eq!(code(create(&vpc, &lb.id, &p)), ErrorCode::InvalidServerType);
        assert_eq!(code(create(&vpc, &far.id, &p)), ErrorCode::InvalidPortId);
        assert_eq!(
            code(create(&other_vpc, &"nope".into(), &p)),
            ErrorCode::InvalidPortId
        );
        assert_eq!(
            code(create(&vpc, &vm.id, &tenant("x"))),
            ErrorCode::InvalidVpcId
        );
        let first = create(&vpc, &vm.id, &p).unwrap();
        assert_eq!(first.full_name, format!("r.{}", first.id));
        // A second service on the same backend may not reuse server port 80/TCP...
        assert_eq!(code(create(&vpc, &vm.id, &p)), ErrorCode::PortsConflict);
        // ...but other server ports are fine, up to five services per backend.
        for sp in 81..85 {
            let mut b = service_body(&vpc, &vm.id, true);
            b.ports = Some(vec![PortBody {
                client_port: Some(1),
                server_port: Some(sp),
                protocol: None,
            }]);
            r.create_service(&p, b.try_into().unwrap()).unwrap();
        }
        let mut b = service_body(&vpc, &vm.id, true);
        b.ports.as_mut().unwrap()[0].server_port = Some(99);
        assert_eq!(
            code(r.create_service(&p, b.try_into().unwrap())),
            ErrorCode::InvalidPortId
        );
        // An IPv6 load balancer cannot be a backend.
        let v6 = crate::requests::CreateSubnet {
            vpc_id: Some(vpc.to_string()),
            cidr: Some("2001:db8::/64".into()),
            ip_version: Some(6),
            ..Default::default()
        };
        let v6 = r.create_subnet(&p, v6.try_into().unwrap()).unwrap();
        let lb6 = port(&r, &p, &v6.id, "LB", Some("2001:db8::5"));
        let mut b = service_body(&vpc, &lb6.id, true);
        b.server_type = Some("LB".into());
        let e = r.create_service(&p, b.try_into().unwrap()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPortId);
        assert!(e.msg.contains("IPv6 load balancer"), "{}", e.msg);
    }

    #[test]
    fn quotas_count_the_tenants_own_services() {
        let r = registry_with(Quotas {
            endpoint_service: 1,
            endpoint: 1,
            ..Quotas::default()
        });
        let p = tenant("p");
        let svc = service(&r, &p, true, &[]);
        let (vpc, sub) = network(&r, &p, "10.5.0.0/16");
        let other = port(&r, &p, &sub, "VM", None);
        let b = service_body(&vpc, &other.id, true);
        assert_eq!(
            r.create_service(&p, b.try_into().unwrap())
                .unwrap_err()
                .code,
            ErrorCode::QuotaExceeded
        );
        // Another tenant has its own quota.
        service(&r, &tenant("q"), true, &[]);
        r.delete_service(&p, &svc.id).unwrap();
        let b = service_body(&vpc, &other.id, true);
        assert!(r.create_service(&p, b.try_into().unwrap()).is_ok());
    }

    #[test]
    fn updates_rename_and_resume() {
        let r = registry();
        let p = tenant("p");
        let svc = service(&r, &p, true, &[]);
        let renamed = update(
            &r,
            &p,
            &svc.id,
            UpdateService {
                service_name: Some("web".into()),
                tcp_proxy: Some("close".into()),
                ..UpdateService::default()
            },
        )
        .unwrap();
        assert_eq!(renamed.full_name, format!("r.web.{}", svc.id));
        assert_eq!(renamed.tcp_proxy, TcpProxy::Close);
        let toa = UpdateService {
            tcp_proxy: Some("toa_open".into()),
            ..UpdateService::default()
        };
        assert_eq!(
            update(&r, &p, &svc.id, toa).unwrap().tcp_proxy,
            TcpProxy::ToaOpen
        );
        let unknown = UpdateService {
            tcp_proxy: Some("proxy_v1".into()),
            ..UpdateService::default()
        };
        assert_eq!(
            update(&r, &p, &svc.id, unknown).unwrap_err().code,
            ErrorCode::Parameter
        );
        assert_eq!(
            update(&r, &tenant("x"), &svc.id, UpdateService::default())
                .unwrap_err()
                .code,
            ErrorCode::NotFound
        );
        // Suspended by its backend's deletion; a new VM backend resumes it, an LB does not.
        let (old, sub) = {
            let m = r.read();
            let old = svc.port_id.clone().unwrap();
            let sub = m.ports[&old].subnet_id.clone();
            (old, sub)
        };
        r.delete_port(&p, &old).unwrap();
        let lb = port(&r, &p, &sub, "LB", None);
        let with = |port: &PortId| UpdateService {
            port_id: Some(port.to_string()),
            ..UpdateService::default()
        };
        assert_eq!(
            update(&r, &p, &svc.id, with(&lb.id)).unwrap_err().code,
            ErrorCode::InvalidServerType
        );
        let vm = port(&r, &p, &sub, "VM", None);
        let resumed = update(&r, &p, &svc.id, with(&vm.id)).unwrap();
        assert_eq!(resumed.status, ServiceStatus::Available);
        assert_eq!(r.read().backend_ip(&resumed), vm.ipv4());
    }

    #[test]
    fn a_service_with_live_connections_is_not_deleted() {
        let r = registry();
        let p = tenant("p");
        let u = tenant("u");
        let svc = service(&r, &p, true, &[&u]);
        let (vpc, sub) = network(&r, &u, "10.1.0.0/16");
        let ep = endpoint(&r, &u, endpoint_body(&svc.id, &vpc, &sub)).unwrap();
        assert_eq!(
            r.delete_service(&p, &svc.id).unwrap_err().code,
            ErrorCode::ServiceInUse
        );
        let reject = crate::command::Decision {
            endpoint_id: ep.id.clone(),
            status: ConnectionStatus::Rejected,
        };
        r.decide_connection(&p, &svc.id, reject).unwrap();
        r.delete_service(&p, &svc.id).unwrap();
        let m = r.read();
        assert!(m.endpoints.is_empty() && m.permissions.is_empty() && m.services.is_empty());
    }
}
