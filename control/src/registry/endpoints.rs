//! Endpoints' rules, on the user's side: creating one (a connection to a service the user's
//! account may see), changing its whitelist, route tables, policy and lifetime, deleting it,
//! and freezing the ones whose lifetime ended.

use super::endpoint_rules::new_marker;

use super::{Registry, now};
use crate::command::{EndpointChange, NewEndpoint};
use crate::error::{ErrorCode, Rejection};
use crate::model::index::Key;
use crate::model::{
    ConnectionStatus, Endpoint, EndpointId, Mutation, Record, ServiceStatus, Tenant,
};
use crate::registry::{ipam, tags};

fn endpoint_not_found() -> Rejection {
    Rejection::new(
        ErrorCode::EndpointNotFound,
        "The requested endpoint does not exist.",
    )
}

impl Registry {
    /// Create an endpoint (a connection to a service).
    ///
    /// # Errors
    /// EndPoint.2003 (no service), 2012 (not whitelisted), 2004 (suspended), 0020/0023
    /// (VPC, subnet), 2042/2043 (address), 1018 (quota).
    pub fn create_endpoint(&self, t: &Tenant, cmd: NewEndpoint) -> Result<Endpoint, Rejection> {
        self.write_as(t, |v| {
            // Cloned: the rule runs again if another node commits first.
            let cmd = cmd.clone();
            let m = v.model();
            if let Some(g) = m.gateways.get(&cmd.service_id) {
                return self.gateway_endpoint(t, v, g, cmd);
            }
            let svc = m.services.get(&cmd.service_id).ok_or_else(|| {
                Rejection::new(
                    ErrorCode::ServiceNotFound,
                    "The endpoint service does not exist.",
                )
            })?;
            if !m.visible(svc, t) {
                return Err(Rejection::new(
                    ErrorCode::NotWhitelisted,
                    "You have no permission to connect to the VPC endpoint service.",
                ));
            }
            if svc.status != ServiceStatus::Available {
                return Err(Rejection::new(
                    ErrorCode::ServiceUnavailable,
                    "The endpoint service is unavailable (its backend was deleted).",
                ));
            }
            if !cmd.routetables.is_empty() {
                return Err(Rejection::param(
                    "routetables: only endpoints of a gateway service take route tables",
                ));
            }
            v.vpc(&cmd.vpc_id)
                .ok_or_else(|| Rejection::new(ErrorCode::InvalidVpcId, "Invalid VPC ID."))?;
            let subnet_id = cmd
                .subnet_id
                .ok_or_else(|| Rejection::missing("subnet_id"))?;
            let subnet = v
                .subnet(&subnet_id)
                .filter(|s| s.vpc_id == cmd.vpc_id)
                .ok_or_else(|| Rejection::new(ErrorCode::InvalidSubnetId, "Invalid subnet_id."))?;
            if subnet.ipv4().is_none() {
                return Err(Rejection::new(
                    ErrorCode::InvalidSubnetId,
                    "Invalid subnet_id: an endpoint's subnet must be IPv4.",
                ));
            }
            let quota = self.quotas().endpoint;
            if v.endpoint_count() >= quota {
                return Err(Rejection::new(
                    ErrorCode::QuotaExceeded,
                    format!("Quota exceeded: at most {quota} endpoints."),
                ));
            }
            let ip = ipam::pick(m, subnet, cmd.ip)?;
            let ts = now();
            let mut ep = Endpoint {
                id: EndpointId::random(),
                project_id: t.project_id.clone(),
                domain_id: t.domain_id.clone(),
                service_id: cmd.service_id,
                vpc_id: cmd.vpc_id,
                subnet_id,
                ip,
                marker_id: new_marker(m),
                status: if svc.approval_enabled {
                    ConnectionStatus::PendingAcceptance
                } else {
                    ConnectionStatus::Accepted
                },
                enable_dns: cmd.enable_dns,
                whitelist: cmd.whitelist,
                enable_whitelist: cmd.enable_whitelist,
                description: cmd.description,
                connection_description: String::new(),
                tags: cmd.tags,
                routetables: cmd.routetables,
                policy_statement: cmd.policy_statement,
                policy_document: cmd.policy_document,
                expires_at: None,
                frozen: false,
                created_at: ts,
                updated_at: ts,
            };
            if cmd.lifetime.is_some() {
                tags::set_lifetime(&mut ep, cmd.lifetime, ts);
            }
            Ok((vec![Mutation::Put(Record::Endpoint(ep.clone()))], ep))
        })
    }

    /// Change one of the tenant's endpoints.
    ///
    /// # Errors
    /// EndPoint.2006; EndPoint.0002 for route tables on an interface endpoint or a source
    /// whitelist on a gateway endpoint.
    pub fn update_endpoint(
        &self,
        t: &Tenant,
        id: &EndpointId,
        change: EndpointChange,
    ) -> Result<Endpoint, Rejection> {
        self.write_as(t, |v| {
            // Cloned: the rule runs again if another node commits first.
            let change = change.clone();
            let mut ep = v.endpoint(id).ok_or_else(endpoint_not_found)?.clone();
            let ts = now();
            match change {
                EndpointChange::Whitelist(list, enable) => {
                    super::endpoint_rules::no_whitelist(v.model(), &ep, list.as_deref(), enable)?;
                    if let Some(l) = list {
                        ep.whitelist = l;
                    }
                    if let Some(e) = enable {
                        ep.enable_whitelist = e;
                    }
                }
                EndpointChange::Routetables(r) => {
                    ep.routetables = super::endpoint_rules::routetables(v.model(), &ep, r)?;
                }
                EndpointChange::Policy(statement, document) => {
                    if let Some(s) = statement {
                        ep.policy_statement = s;
                    }
                    if document.is_some() {
                        ep.policy_document = document;
                    }
                }
                EndpointChange::ClearPolicy => {
                    ep.policy_statement.clear();
                    ep.policy_document = None;
                }
                EndpointChange::Lifetime(d) => tags::set_lifetime(&mut ep, d, ts),
            }
            ep.updated_at = ts;
            Ok((vec![Mutation::Put(Record::Endpoint(ep.clone()))], ep))
        })
    }

    /// Delete an endpoint.
    ///
    /// # Errors
    /// EndPoint.2006.
    pub fn delete_endpoint(&self, t: &Tenant, id: &EndpointId) -> Result<(), Rejection> {
        self.write_as(t, |v| {
            let ep = v.endpoint(id).ok_or_else(endpoint_not_found)?;
            Ok((vec![Mutation::Delete(Key::Endpoint(ep.id.clone()))], ()))
        })
    }

    /// Freeze every endpoint whose lifetime ended by `at`; returns how many.
    ///
    /// # Errors
    /// EndPoint.0001 if the store failed (nothing was frozen).
    pub fn freeze_expired(&self, at: i64) -> Result<usize, Rejection> {
        self.freeze_expired_at(at)
    }

    /// When the next endpoint expires (Unix seconds), if any is due to: the sweeper sleeps
    /// until then, so an endpoint stops at its expiry time rather than at a periodic sweep.
    pub fn next_expiry(&self) -> Option<i64> {
        self.read()
            .endpoints
            .values()
            .filter(|e| !e.frozen)
            .filter_map(|e| e.expires_at)
            .min()
    }

    fn freeze_expired_at(&self, at: i64) -> Result<usize, Rejection> {
        self.write(|m| {
            let muts: Vec<Mutation> = m
                .endpoints
                .values()
                .filter(|e| !e.frozen && e.expires_at.is_some_and(|x| x <= at))
                .map(|e| {
                    let mut e = e.clone();
                    e.frozen = true;
                    e.updated_at = at;
                    Mutation::Put(Record::Endpoint(e))
                })
                .collect();
            let n = muts.len();
            Ok((muts, n))
        })
    }

    /// Testing and benchmarking aid: commit many endpoints in one transaction (the checks
    /// of [`Registry::create_endpoint`] are not repeated; callers build valid ones).
    ///
    /// # Errors
    /// EndPoint.0001 if the store failed.
    pub fn import_endpoints(&self, eps: Vec<Endpoint>) -> Result<u64, Rejection> {
        self.write(|_| {
            let muts = eps
                .iter()
                .map(|e| Mutation::Put(Record::Endpoint(e.clone())))
                .collect();
            Ok((muts, ()))
        })?;
        Ok(self.revision())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PermissionType;
    use crate::registry::Quotas;
    use crate::registry::testing::*;

    #[test]
    fn connecting_needs_the_whitelist_an_available_service_and_own_network() {
        let r = registry();
        let p = tenant("p");
        let u = tenant("u");
        let svc = service(&r, &p, true, &[]);
        let (vpc, sub) = network(&r, &u, "10.1.0.0/16");
        let (pvpc, psub) = {
            let m = r.read();
            let s = &m.services[&svc.id];
            let port = &m.ports[s.port_id.as_ref().unwrap()];
            (s.vpc_id.clone(), port.subnet_id.clone())
        };
        let code = |b| endpoint(&r, &u, b).unwrap_err().code;
        assert_eq!(
            code(endpoint_body(&"nope".into(), &vpc, &sub)),
            ErrorCode::ServiceNotFound
        );
        assert_eq!(
            code(endpoint_body(&svc.id, &vpc, &sub)),
            ErrorCode::NotWhitelisted
        );
        r.permission_action(
            &p,
            &svc.id,
            crate::command::PermissionEdit {
                add: true,
                permission_type: PermissionType::DomainId,
                permissions: vec!["iam:domain::du".into()],
            },
        )
        .unwrap();
        assert_eq!(
            code(endpoint_body(&svc.id, &pvpc, &sub)),
            ErrorCode::InvalidVpcId,
            "the provider's VPC"
        );
        assert_eq!(
            code(endpoint_body(&svc.id, &vpc, &psub)),
            ErrorCode::InvalidSubnetId,
            "the provider's subnet"
        );
        let ep = endpoint(&r, &u, endpoint_body(&svc.id, &vpc, &sub)).unwrap();
        assert_eq!(ep.ip.to_string(), "10.1.0.2");
        assert_eq!(ep.status, ConnectionStatus::PendingAcceptance);
        assert!(ep.marker_id > 0 && ep.marker_id < 1 << 53);
        let mut at = endpoint_body(&svc.id, &vpc, &sub);
        at.port_ip = Some("10.1.0.2".into());
        assert_eq!(code(at), ErrorCode::PortIpInUse);
        // An IPv6 subnet cannot hold an endpoint.
        let v6 = crate::requests::CreateSubnet {
            vpc_id: Some(vpc.to_string()),
            cidr: Some("2001:db8::/64".into()),
            ip_version: Some(6),
            ..Default::default()
        };
        let v6 = r.create_subnet(&u, v6.try_into().unwrap()).unwrap();
        assert_eq!(
            code(endpoint_body(&svc.id, &vpc, &v6.id)),
            ErrorCode::InvalidSubnetId
        );
        // Suspended: nothing new connects.
        let backend = r.read().services[&svc.id].port_id.clone().unwrap();
        r.delete_port(&p, &backend).unwrap();
        assert_eq!(
            code(endpoint_body(&svc.id, &vpc, &sub)),
            ErrorCode::ServiceUnavailable
        );
    }

    #[test]
    fn approval_off_connects_at_once_and_the_endpoint_quota_holds() {
        let r = registry_with(Quotas {
            endpoint_service: 5,
            endpoint: 2,
            ..Quotas::default()
        });
        let p = tenant("p");
        let u = tenant("u");
        let svc = service(&r, &p, false, &[&u]);
        let (vpc, sub) = network(&r, &u, "10.1.0.0/16");
        for _ in 0..2 {
            let ep = endpoint(&r, &u, endpoint_body(&svc.id, &vpc, &sub)).unwrap();
            assert_eq!(ep.status, ConnectionStatus::Accepted);
        }
        assert_eq!(
            endpoint(&r, &u, endpoint_body(&svc.id, &vpc, &sub))
                .unwrap_err()
                .code,
            ErrorCode::QuotaExceeded
        );
    }

    #[test]
    fn changes_lifetimes_and_freezing() {
        let r = registry();
        let p = tenant("p");
        let u = tenant("u");
        let svc = service(&r, &p, false, &[&u]);
        let (vpc, sub) = network(&r, &u, "10.1.0.0/16");
        let mut b = endpoint_body(&svc.id, &vpc, &sub);
        b.duration = Some(60);
        let ep = endpoint(&r, &u, b).unwrap();
        let expires = ep.expires_at.unwrap();
        assert_eq!(r.freeze_expired(expires - 1).unwrap(), 0);
        assert_eq!(r.freeze_expired(expires).unwrap(), 1);
        assert!(r.read().endpoints[&ep.id].frozen);
        assert_eq!(r.freeze_expired(expires + 100).unwrap(), 0, "frozen once");
        let e = r
            .update_endpoint(&u, &ep.id, EndpointChange::Lifetime(None))
            .unwrap();
        assert!(!e.frozen && e.expires_at.is_none());
        let wl = vec!["192.0.2.0/24".parse().unwrap()];
        let e = r
            .update_endpoint(
                &u,
                &ep.id,
                EndpointChange::Whitelist(Some(wl.clone()), Some(true)),
            )
            .unwrap();
        assert_eq!((e.whitelist, e.enable_whitelist), (wl, true));
        let doc = serde_json::json!({"Version": "1"});
        let e = r
            .update_endpoint(&u, &ep.id, EndpointChange::Policy(None, Some(doc.clone())))
            .unwrap();
        assert_eq!(e.policy_document, Some(doc));
        let e = r
            .update_endpoint(&u, &ep.id, EndpointChange::ClearPolicy)
            .unwrap();
        assert_eq!(e.policy_document, None);
        assert_eq!(
            r.update_endpoint(&p, &ep.id, EndpointChange::ClearPolicy)
                .unwrap_err()
                .code,
            ErrorCode::EndpointNotFound,
            "the provider does not own the endpoint"
        );
        assert_eq!(
            r.delete_endpoint(&p, &ep.id).unwrap_err().code,
            ErrorCode::EndpointNotFound
        );
        r.delete_endpoint(&u, &ep.id).unwrap();
        assert!(r.read().endpoints.is_empty());
    }
}
