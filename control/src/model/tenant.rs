//! Tenancy in one place: [`Tenant`] is who is calling, [`TenantView`] is the model as that
//! tenant may see it.
//!
//! A tenant (project) sees and changes only its own VPCs, subnets, ports, services and
//! endpoints; a resource another tenant owns answers as if it did not exist. A service is
//! visible to another account only through its whitelist (the owner's account always).
//! Every lookup and list the API and the registry make on a tenant's behalf goes through
//! the view, so the `project_id` check is written once.

use super::{
    ApiStatus, DomainId, Endpoint, EndpointId, GatewayService, Model, Permission, Port, PortId,
    ProjectId, Service, ServiceId, Subnet, SubnetId, Vpc, VpcId,
};

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// The account.
    pub domain_id: DomainId,
    /// The project.
    pub project_id: ProjectId,
    /// The access key that signed.
    pub ak: String,
    /// The account's organisation path (`<org id>/<root id>/<ou id>...`), if the credentials
    /// file puts it in an organisation; `orgPath` permissions match it.
    pub org_path: Option<String>,
}

/// The model as one tenant sees it.
#[derive(Clone, Copy, Debug)]
pub struct TenantView<'m> {
    model: &'m Model,
    tenant: &'m Tenant,
}

impl Model {
    /// The model as `tenant` sees it.
    pub fn tenant<'m>(&'m self, tenant: &'m Tenant) -> TenantView<'m> {
        TenantView {
            model: self,
            tenant,
        }
    }
}

/// Filters of the service lists (all optional; `name` is a case-insensitive substring).
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceQuery<'q> {
    /// Exactly this id.
    pub id: Option<&'q str>,
    /// Part of the full name.
    pub name: Option<&'q str>,
    /// Exactly this status.
    pub status: Option<ApiStatus>,
}

impl ServiceQuery<'_> {
    fn matches(&self, m: &Model, s: &Service) -> bool {
        self.id.is_none_or(|id| s.id == id)
            && name_matches(&s.full_name, self.name)
            && self.status.is_none_or(|st| st == m.service_status(s))
    }
}

/// Filters of the endpoint list.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointQuery<'q> {
    /// Exactly this id.
    pub id: Option<&'q str>,
    /// In this VPC.
    pub vpc_id: Option<&'q str>,
    /// Part of the service's full name.
    pub service_name: Option<&'q str>,
}

/// Filters of a service's connection list.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionQuery<'q> {
    /// Exactly this endpoint id.
    pub id: Option<&'q str>,
    /// Exactly this packet id.
    pub marker_id: Option<u64>,
    /// Exactly this status.
    pub status: Option<ApiStatus>,
}

fn name_matches(full: &str, wanted: Option<&str>) -> bool {
    wanted.is_none_or(|w| full.to_lowercase().contains(&w.to_lowercase()))
}

impl<'m> TenantView<'m> {
    /// The whole model (for what is not owned: a visible service, a service's backend).
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// The caller.
    pub fn tenant(&self) -> &'m Tenant {
        self.tenant
    }

    fn owns(&self, project_id: &ProjectId) -> bool {
        *project_id == self.tenant.project_id
    }

    /// The tenant's VPC `id`.
    pub fn vpc(&self, id: &VpcId) -> Option<&'m Vpc> {
        self.model.vpcs.get(id).filter(|v| self.owns(&v.project_id))
    }

    /// The tenant's subnet `id`.
    pub fn subnet(&self, id: &SubnetId) -> Option<&'m Subnet> {
        self.model
            .subnets
            .get(id)
            .filter(|s| self.owns(&s.project_id))
    }

    /// The tenant's port `id`.
    pub fn port(&self, id: &PortId) -> Option<&'m Port> {
        self.model
            .ports
            .get(id)
            .filter(|p| self.owns(&p.project_id))
    }

    /// The tenant's service `id`.
    pub fn service(&self, id: &ServiceId) -> Option<&'m Service> {
        self.model
            .services
            .get(id)
            .filter(|s| self.owns(&s.project_id))
    }

    /// The tenant's endpoint `id`.
    pub fn endpoint(&self, id: &EndpointId) -> Option<&'m Endpoint> {
        self.model
            .endpoints
            .get(id)
            .filter(|e| self.owns(&e.project_id))
    }

    /// The tenant's VPCs.
    pub fn vpcs(self) -> impl Iterator<Item = &'m Vpc> {
        self.model
            .vpcs
            .values()
            .filter(move |v| self.owns(&v.project_id))
    }

    /// The tenant's subnets, of one VPC if `vpc_id` is given.
    pub fn subnets(self, vpc_id: Option<VpcId>) -> impl Iterator<Item = &'m Subnet> {
        self.model.subnets.values().filter(move |s| {
            self.owns(&s.project_id) && vpc_id.as_ref().is_none_or(|v| s.vpc_id == *v)
        })
    }

    /// The tenant's ports, of one subnet if `subnet_id` is given.
    pub fn ports(self, subnet_id: Option<SubnetId>) -> impl Iterator<Item = &'m Port> {
        self.model.ports.values().filter(move |p| {
            self.owns(&p.project_id) && subnet_id.as_ref().is_none_or(|s| p.subnet_id == *s)
        })
    }

    /// The tenant's services.
    pub fn services(self) -> impl Iterator<Item = &'m Service> {
        self.model
            .services
            .values()
            .filter(move |s| self.owns(&s.project_id))
    }

    /// The tenant's endpoints.
    pub fn endpoints(self) -> impl Iterator<Item = &'m Endpoint> {
        self.model
            .endpoints
            .values()
            .filter(move |e| self.owns(&e.project_id))
    }

    /// How many endpoints the tenant has (what its quota counts).
    pub fn endpoint_count(self) -> usize {
        self.model.endpoint_count(&self.tenant.project_id)
    }

    /// The tenant's services matching `q`.
    pub fn services_where(self, q: ServiceQuery<'_>) -> Vec<&'m Service> {
        self.services()
            .filter(|s| q.matches(self.model, s))
            .collect()
    }

    /// Service `id` if the tenant's account may see it (own, or whitelisted).
    pub fn visible_service(&self, id: &ServiceId) -> Option<&'m Service> {
        self.model
            .services
            .get(id)
            .filter(|s| self.model.visible(s, self.tenant))
    }

    /// The service with full name `name`, if the tenant's account may see it.
    pub fn visible_service_named(&self, name: &str) -> Option<&'m Service> {
        self.model
            .services
            .values()
            .find(|s| s.full_name == name)
            .filter(|s| self.model.visible(s, self.tenant))
    }

    /// Every service the tenant's account may see, matching `q`.
    pub fn visible_services_where(self, q: ServiceQuery<'_>) -> Vec<&'m Service> {
        self.model
            .services
            .values()
            .filter(|s| self.model.visible(s, self.tenant) && q.matches(self.model, s))
            .collect()
    }

    /// Gateway service `id` (every account sees the operator's gateway services).
    pub fn gateway(&self, id: &ServiceId) -> Option<&'m GatewayService> {
        self.model.gateways.get(id)
    }

    /// The gateway service with full name `name`.
    pub fn gateway_named(&self, name: &str) -> Option<&'m GatewayService> {
        self.model.gateways.values().find(|g| g.full_name == name)
    }

    /// Gateway services matching `q` (their status is always `available`).
    pub fn gateways_where(self, q: ServiceQuery<'_>) -> Vec<&'m GatewayService> {
        self.model
            .gateways
            .values()
            .filter(|g| {
                q.id.is_none_or(|id| g.id == id)
                    && name_matches(&g.full_name, q.name)
                    && q.status.is_none_or(|st| st == ApiStatus::Available)
            })
            .collect()
    }

    /// The tenant's endpoints matching `q`.
    pub fn endpoints_where(self, q: EndpointQuery<'_>) -> Vec<&'m Endpoint> {
        self.endpoints()
            .filter(|e| q.id.is_none_or(|id| e.id == id))
            .filter(|e| q.vpc_id.is_none_or(|v| e.vpc_id == v))
            .filter(|e| {
                let name = self.model.service_full_name(&e.service_id).unwrap_or("");
                name_matches(name, q.service_name)
            })
            .collect()
    }

    /// Connections of the tenant's service `service` matching `q`; `None` if the service is
    /// not the tenant's.
    pub fn connections_where(
        self,
        service: &ServiceId,
        q: ConnectionQuery<'_>,
    ) -> Option<Vec<&'m Endpoint>> {
        let svc = self.service(service)?;
        Some(
            self.model
                .endpoints_of(svc.id.as_str())
                .filter(|e| q.id.is_none_or(|id| e.id == id))
                .filter(|e| q.marker_id.is_none_or(|m| m == e.marker_id))
                .filter(|e| {
                    q.status
                        .is_none_or(|st| st == self.model.endpoint_status(e))
                })
                .collect(),
        )
    }

    /// Whitelist entries of the tenant's service `service` whose permission contains
    /// `part`; `None` if the service is not the tenant's.
    pub fn permissions_where(
        self,
        service: &ServiceId,
        part: Option<&str>,
    ) -> Option<Vec<&'m Permission>> {
        let svc = self.service(service)?;
        Some(
            self.model
                .permissions_of(svc.id.as_str())
                .filter(|p| part.is_none_or(|w| p.permission.contains(w)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiStatus, ConnectionQuery, ServiceQuery};
    use crate::registry::testing::*;

    #[test]
    fn a_tenant_sees_only_its_own_and_whitelisted_services() {
        let r = registry();
        let (p, u, x) = (tenant("p"), tenant("u"), tenant("x"));
        let svc = service(&r, &p, true, &[&u]);
        let (uvpc, usub) = network(&r, &u, "10.1.0.0/16");
        let ep = endpoint(&r, &u, endpoint_body(&svc.id, &uvpc, &usub)).unwrap();
        let m = r.read();
        let (pv, uv, xv) = (m.tenant(&p), m.tenant(&u), m.tenant(&x));
        // Owned resources: only through their owner's view.
        assert!(pv.service(&svc.id).is_some());
        assert!(uv.service(&svc.id).is_none());
        assert!(uv.endpoint(&ep.id).is_some());
        assert!(pv.endpoint(&ep.id).is_none());
        assert!(xv.vpc(&uvpc).is_none() && xv.subnet(&usub).is_none());
        assert_eq!(
            (pv.vpcs().count(), uv.vpcs().count(), xv.vpcs().count()),
            (1, 1, 0)
        );
        // Visibility: the owner's account and whitelisted accounts, nobody else.
        assert!(pv.visible_service(&svc.id).is_some());
        assert!(uv.visible_service_named(&svc.full_name).is_some());
        assert!(xv.visible_service(&svc.id).is_none());
        assert!(
            xv.visible_services_where(ServiceQuery::default())
                .is_empty()
        );
        // Connections and whitelists are the owning project's to list.
        let q = ConnectionQuery::default();
        assert_eq!(pv.connections_where(&svc.id, q).unwrap().len(), 1);
        assert!(uv.connections_where(&svc.id, q).is_none());
        assert!(uv.permissions_where(&svc.id, None).is_none());
        let status = ConnectionQuery {
            status: Some(ApiStatus::Accepted),
            ..q
        };
        assert!(pv.connections_where(&svc.id, status).unwrap().is_empty());
    }

    #[test]
    fn queries_filter_by_name_id_and_status() {
        let r = registry();
        let p = tenant("p");
        let svc = service(&r, &p, true, &[]);
        let m = r.read();
        let v = m.tenant(&p);
        let q = |name: Option<&str>, status: Option<ApiStatus>| {
            v.services_where(ServiceQuery {
                id: None,
                name,
                status,
            })
            .len()
        };
        let part = &svc.id.as_str()[..8].to_uppercase();
        assert_eq!(
            q(Some(part), None),
            1,
            "case-insensitive part of the full name"
        );
        assert_eq!(q(Some("nope"), None), 0);
        assert_eq!(q(None, Some(ApiStatus::Available)), 1);
        assert_eq!(q(None, Some(ApiStatus::Suspended)), 0);
    }
}
