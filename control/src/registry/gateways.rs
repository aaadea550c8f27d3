//! Gateway services' rules: the operator's set (from the daemon's config, replaced at every
//! reload; see [`crate::model::gateway`]) and the endpoints tenants create to them.
//!
//! A gateway endpoint needs no approval (it is `accepted` at once) and no port mapping. It
//! gets an address in one of its VPC's IPv4 subnets (`subnet_id` and `port_ip` may choose;
//! by default the VPC's oldest IPv4 subnet with a free address): the daemon answers ARP for
//! it, and the VPC's clients route the service's prefixes through it. `enable_dns` is
//! ignored (no name), and the source whitelist, an interface endpoint's, is refused.
//!
//! `routetables` are the VPC's route tables the endpoint is bound to. The node has no
//! route-table inventory and cannot edit a tenant's routes: the ids are recorded and
//! returned, the VPC's default route table is named by the VPC id (the default binding),
//! and the node routes the prefixes for every client of the VPC that sends them to the
//! endpoint's address, whichever table its route is in.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::endpoint_rules::{default_routetables, new_marker};
use super::{ChangeNote, Plan, Registry, Touched, ipam, now, tags};
use crate::command::NewEndpoint;
use crate::error::{ErrorCode, Rejection};
use crate::model::{
    ConnectionStatus, Endpoint, EndpointId, GatewayService, Model, Mutation, Record, ServiceId,
    Subnet, SubnetId, Tenant, TenantView, Vpc,
};

impl Registry {
    /// Replace the gateway services (at start and at every reload). If the set changed, the
    /// pusher recompiles everything (routes, addresses); returns whether it changed.
    pub fn set_gateway_services(&self, list: Vec<GatewayService>) -> bool {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next: BTreeMap<ServiceId, GatewayService> =
            list.into_iter().map(|g| (g.id.clone(), g)).collect();
        {
            let mut m = self
                .model
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *m.gateways == next {
                return false;
            }
            m.gateways = Arc::new(next);
            self.draft().gateways = Arc::clone(&m.gateways);
        }
        let note = ChangeNote {
            touched: Touched::All,
            revision: self.revision(),
        };
        self.lock_notes().retain(|tx| tx.send(note.clone()).is_ok());
        true
    }

    /// The gateway services now.
    pub fn gateway_services(&self) -> Arc<BTreeMap<ServiceId, GatewayService>> {
        Arc::clone(&self.read().gateways)
    }

    /// The rule of [`Registry::create_endpoint`] for gateway service `g`.
    pub(super) fn gateway_endpoint(
        &self,
        t: &Tenant,
        v: TenantView<'_>,
        g: &GatewayService,
        cmd: NewEndpoint,
    ) -> Result<Plan<Endpoint>, Rejection> {
        let m = v.model();
        let vpc = v
            .vpc(&cmd.vpc_id)
            .ok_or_else(|| Rejection::new(ErrorCode::InvalidVpcId, "Invalid VPC ID."))?;
        if cmd.enable_whitelist || !cmd.whitelist.is_empty() {
            return Err(Rejection::param(
                "whitelist: only interface endpoints have a source whitelist",
            ));
        }
        let quota = self.quotas().endpoint;
        if v.endpoint_count() >= quota {
            return Err(Rejection::new(
                ErrorCode::QuotaExceeded,
                format!("Quota exceeded: at most {quota} endpoints."),
            ));
        }
        let (subnet, ip) = address(m, v, vpc, cmd.subnet_id.as_ref(), cmd.ip)?;
        let ts = now();
        let mut ep = Endpoint {
            id: EndpointId::random(),
            project_id: t.project_id.clone(),
            domain_id: t.domain_id.clone(),
            service_id: g.id.clone(),
            vpc_id: vpc.id.clone(),
            subnet_id: subnet,
            ip,
            marker_id: new_marker(m),
            status: ConnectionStatus::Accepted,
            enable_dns: false,
            whitelist: Vec::new(),
            enable_whitelist: false,
            description: cmd.description,
            connection_description: String::new(),
            tags: cmd.tags,
            routetables: default_routetables(cmd.routetables, &vpc.id),
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
    }
}

/// The subnet and address of a new gateway endpoint in `vpc`.
fn address(
    m: &Model,
    v: TenantView<'_>,
    vpc: &Vpc,
    subnet_id: Option<&SubnetId>,
    wanted: Option<std::net::Ipv4Addr>,
) -> Result<(SubnetId, std::net::Ipv4Addr), Rejection> {
    let invalid = |why: &str| {
        Rejection::new(
            ErrorCode::InvalidSubnetId,
            format!("Invalid subnet_id: {why}."),
        )
    };
    if let Some(id) = subnet_id {
        let subnet = v
            .subnet(id)
            .filter(|s| s.vpc_id == vpc.id)
            .ok_or_else(|| invalid("no such subnet in the VPC"))?;
        if subnet.ipv4().is_none() {
            return Err(invalid("an endpoint's subnet must be IPv4"));
        }
        return Ok((subnet.id.clone(), ipam::pick(m, subnet, wanted)?));
    }
    let mut subnets: Vec<&Subnet> = v
        .subnets(Some(vpc.id.clone()))
        .filter(|s| s.ipv4().is_some())
        .collect();
    subnets.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    if let Some(ip) = wanted {
        let subnet = subnets
            .into_iter()
            .find(|s| s.ipv4().is_some_and(|n| n.contains(&ip)))
            .ok_or_else(|| {
                Rejection::new(
                    ErrorCode::PortIpOutsideSubnet,
                    format!("The Port IP {ip} is in no IPv4 subnet of the VPC."),
                )
            })?;
        return Ok((subnet.id.clone(), ipam::pick(m, subnet, Some(ip))?));
    }
    subnets
        .into_iter()
        .find_map(|s| Some((s.id.clone(), ipam::pick(m, s, None).ok()?)))
        .ok_or_else(|| invalid("the VPC has no IPv4 subnet with a free address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::EndpointChange;
    use crate::model::{ServiceName, SourceCidr, VpcId};
    use crate::registry::testing::*;
    use crate::requests::CreateEndpoint;

    fn obs(r: &Registry) -> GatewayService {
        let name = ServiceName::try_from("obs".to_string()).unwrap();
        let id = GatewayService::id_of(r.region(), &name);
        GatewayService {
            full_name: format!("r.obs.{id}"),
            id,
            name,
            prefixes: vec!["100.125.0.0/16".parse().unwrap()],
            vpc_id: "store".into(),
            next_hop: None,
            description: String::new(),
            created_at: 1,
        }
    }

    fn body(g: &ServiceId, vpc: &VpcId) -> CreateEndpoint {
        CreateEndpoint {
            endpoint_service_id: Some(g.to_string()),
            vpc_id: Some(vpc.to_string()),
            ..CreateEndpoint::default()
        }
    }

    #[test]
    fn setting_the_services_recompiles_everything_once_per_change() {
        let r = registry();
        let notes = r.subscribe();
        assert_eq!(notes.try_recv().unwrap().touched, Touched::All); // the first note
        assert!(r.set_gateway_services(vec![obs(&r)]));
        assert_eq!(notes.try_recv().unwrap().touched, Touched::All);
        assert!(!r.set_gateway_services(vec![obs(&r)]), "the same set");
        assert!(notes.try_recv().is_err());
        assert_eq!(r.gateway_services().len(), 1);
        assert!(r.set_gateway_services(Vec::new()));
        assert!(r.gateway_services().is_empty());
    }

    #[test]
    fn a_gateway_endpoint_is_accepted_at_once_with_an_address_and_the_default_table() {
        let r = registry();
        let g = obs(&r);
        r.set_gateway_services(vec![g.clone()]);
        let u = tenant("u");
        let (vpc, sub) = network(&r, &u, "10.1.0.0/16");
        let mut b = body(&g.id, &vpc);
        b.enable_dns = Some(true);
        let ep = endpoint(&r, &u, b).unwrap();
        assert_eq!(ep.status, ConnectionStatus::Accepted, "no approval");
        assert_eq!(
            (ep.subnet_id.clone(), ep.ip),
            (sub.clone(), "10.1.0.2".parse().unwrap())
        );
        assert!(!ep.enable_dns, "ignored for gateway services");
        assert_eq!(ep.routetables, [vpc.to_string()]);
        assert_eq!(r.read().service_type_of(&ep.service_id), "gateway");

        // Chosen tables and address; the address must be free.
        let mut b = body(&g.id, &vpc);
        b.routetables = Some(vec!["rtb-a".into(), "rtb-b".into()]);
        b.port_ip = Some("10.1.0.77".into());
        let ep2 = endpoint(&r, &u, b).unwrap();
        assert_eq!(
            (ep2.ip, ep2.routetables.len()),
            ("10.1.0.77".parse().unwrap(), 2)
        );
        let mut b = body(&g.id, &vpc);
        b.port_ip = Some("10.1.0.77".into());
        assert_eq!(
            endpoint(&r, &u, b).unwrap_err().code.as_str(),
            "EndPoint.2042"
        );
        let mut b = body(&g.id, &vpc);
        b.port_ip = Some("10.9.0.1".into());
        assert_eq!(
            endpoint(&r, &u, b).unwrap_err().code.as_str(),
            "EndPoint.2043"
        );

        // Route tables change on a gateway endpoint; empty means the default again.
        let change = |list: Vec<String>| EndpointChange::Routetables(list);
        let up = r
            .update_endpoint(&u, &ep2.id, change(vec!["rtb-c".into()]))
            .unwrap();
        assert_eq!(up.routetables, ["rtb-c"]);
        let up = r.update_endpoint(&u, &ep2.id, change(Vec::new())).unwrap();
        assert_eq!(up.routetables, [vpc.to_string()]);
        // No source whitelist on a gateway endpoint; switching it off is harmless.
        let cidr: SourceCidr = "10.1.0.0/24".parse().unwrap();
        let wl = EndpointChange::Whitelist(Some(vec![cidr]), Some(true));
        let err = r.update_endpoint(&u, &ep2.id, wl).unwrap_err();
        assert_eq!(err.code.as_str(), "EndPoint.0002");
        let off = EndpointChange::Whitelist(Some(Vec::new()), Some(false));
        assert!(r.update_endpoint(&u, &ep2.id, off).is_ok());
    }

    #[test]
    fn gateway_endpoints_refuse_what_belongs_to_interface_endpoints() {
        let r = registry();
        let g = obs(&r);
        r.set_gateway_services(vec![g.clone()]);
        let (p, u, other) = (tenant("p"), tenant("u"), tenant("o"));
        let (vpc, sub) = network(&r, &u, "10.1.0.0/16");
        let mut b = body(&g.id, &vpc);
        b.whitelist = Some(vec!["10.1.0.0/24".into()]);
        assert_eq!(
            endpoint(&r, &u, b).unwrap_err().code.as_str(),
            "EndPoint.0002"
        );
        // Another tenant's VPC, or a subnet of another VPC.
        let (ovpc, osub) = network(&r, &other, "10.2.0.0/16");
        assert_eq!(
            endpoint(&r, &u, body(&g.id, &ovpc))
                .unwrap_err()
                .code
                .as_str(),
            "EndPoint.0020"
        );
        let mut b = body(&g.id, &vpc);
        b.subnet_id = Some(osub.to_string());
        assert_eq!(
            endpoint(&r, &u, b).unwrap_err().code.as_str(),
            "EndPoint.0023"
        );

        // Interface endpoints: routetables refused, subnet_id required.
        let svc = service(&r, &p, false, &[&u]);
        let mut b = endpoint_body(&svc.id, &vpc, &sub);
        b.routetables = Some(vec!["rtb-a".into()]);
        assert_eq!(
            endpoint(&r, &u, b).unwrap_err().code.as_str(),
            "EndPoint.0002"
        );
        let mut b = endpoint_body(&svc.id, &vpc, &sub);
        b.subnet_id = None;
        assert_eq!(
            endpoint(&r, &u, b).unwrap_err().code.as_str(),
            "EndPoint.0002"
        );
        let ep = endpoint(&r, &u, endpoint_body(&svc.id, &vpc, &sub)).unwrap();
        let change = EndpointChange::Routetables(vec!["rtb-a".into()]);
        assert_eq!(
            r.update_endpoint(&u, &ep.id, change)
                .unwrap_err()
                .code
                .as_str(),
            "EndPoint.0002"
        );
        assert_eq!(r.read().service_type_of(&ep.service_id), "interface");
        // Nothing of the refused ones was stored.
        assert_eq!(r.read().endpoints.len(), 1);
    }

    #[test]
    fn a_vpc_without_a_free_ipv4_address_gets_no_gateway_endpoint() {
        let r = registry();
        let g = obs(&r);
        r.set_gateway_services(vec![g.clone()]);
        let u = tenant("u");
        let vpc = r
            .create_vpc(
                &u,
                crate::requests::CreateVpc {
                    name: None,
                    cidr: Some("10.3.0.0/16".into()),
                }
                .try_into()
                .unwrap(),
            )
            .unwrap();
        let err = endpoint(&r, &u, body(&g.id, &vpc.id)).unwrap_err();
        assert_eq!(err.code.as_str(), "EndPoint.0023", "{err:?}");
    }
}
