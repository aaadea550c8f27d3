//! The network inventory's rules: VPCs, subnets and ports.
//!
//! A subnet lies inside its VPC's block and overlaps no other subnet of the VPC. A VPC or a
//! subnet is not deleted while something is in it. Deleting a port suspends every service
//! it backs, in the same commit.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::{Registry, ipam, now};
use crate::command::{NewPort, NewSubnet, NewVpc};
use crate::error::{ErrorCode, Rejection};
use crate::model::index::Key;
use crate::model::{
    MacAddress, Mutation, Port, PortId, Record, ServiceId, ServiceStatus, Subnet, SubnetId, Tenant,
    Vpc, VpcId,
};

/// Refuse one more of `what` when the tenant already holds `quota`.
fn quota_check(held: usize, quota: usize, what: &str) -> Result<(), Rejection> {
    if held >= quota {
        return Err(Rejection::new(
            ErrorCode::QuotaExceeded,
            format!("Quota exceeded: at most {quota} {what}."),
        ));
    }
    Ok(())
}

impl Registry {
    /// Create a VPC.
    ///
    /// # Errors
    /// EndPoint.0002 for a block overlapping the reserved (SNAT) range, Endpoint.1018 over
    /// the quota, EndPoint.0001 if the store failed.
    pub fn create_vpc(&self, t: &Tenant, cmd: NewVpc) -> Result<Vpc, Rejection> {
        if let Some(r) = self.reserved()
            && (r.contains(&cmd.cidr) || cmd.cidr.contains(&r))
        {
            return Err(Rejection::param(format!(
                "cidr {} overlaps the node's reserved SNAT range {r}",
                cmd.cidr
            )));
        }
        let vpc = Vpc {
            id: VpcId::random(),
            project_id: t.project_id.clone(),
            domain_id: t.domain_id.clone(),
            name: cmd.name,
            cidr: cmd.cidr,
            created_at: now(),
        };
        let quota = self.quotas().vpc;
        self.write_as(t, |v| {
            // Cloned: the rule runs again if another node commits first.
            let vpc = vpc.clone();
            quota_check(v.vpcs().count(), quota, "VPCs")?;
            Ok((vec![Mutation::Put(Record::Vpc(vpc.clone()))], vpc))
        })
    }

    /// Delete a VPC; refused while it holds a service, an endpoint or a subnet.
    ///
    /// # Errors
    /// EndPoint.0005 if not the tenant's; EndPoint.0020 while in use.
    pub fn delete_vpc(&self, t: &Tenant, id: &VpcId) -> Result<(), Rejection> {
        self.write_as(t, |v| {
            let vpc = v.vpc(id).ok_or_else(|| Rejection::not_found("vpc"))?;
            let m = v.model();
            let in_use = |what: &str, which: &dyn std::fmt::Display, then: &str| {
                Err(Rejection::new(
                    ErrorCode::InvalidVpcId,
                    format!("The VPC holds {what} {which}; delete {then} first."),
                ))
            };
            if let Some(s) = m.services.values().find(|s| s.vpc_id == vpc.id) {
                return in_use("endpoint service", &s.id, "the service");
            }
            if let Some(e) = m.endpoints.values().find(|e| e.vpc_id == vpc.id) {
                return in_use("endpoint", &e.id, "it");
            }
            if let Some(s) = m.subnets.values().find(|s| s.vpc_id == vpc.id) {
                return in_use("subnet", &s.id, "it");
            }
            Ok((vec![Mutation::Delete(Key::Vpc(vpc.id.clone()))], ()))
        })
    }

    /// Create a subnet in one of the tenant's VPCs.
    ///
    /// # Errors
    /// EndPoint.0020 for an unknown VPC, EndPoint.0002 for a block outside the VPC's, an
    /// overlap, or a gateway outside the block.
    pub fn create_subnet(&self, t: &Tenant, cmd: NewSubnet) -> Result<Subnet, Rejection> {
        let quota = self.quotas().subnet;
        self.write_as(t, |v| {
            // Cloned: the rule runs again if another node commits first.
            let cmd = cmd.clone();
            quota_check(v.subnets(None).count(), quota, "subnets")?;
            let vpc = v
                .vpc(&cmd.vpc_id)
                .ok_or_else(|| Rejection::new(ErrorCode::InvalidVpcId, "Invalid VPC ID."))?;
            let gateway_ip = match cmd.cidr {
                IpNet::V4(net) => {
                    let outer = vpc.cidr;
                    if net.prefix_len() < outer.prefix_len()
                        || !outer.contains(&net.network())
                        || net.prefix_len() > 30
                    {
                        return Err(Rejection::param(format!(
                            "subnet {net} must be a /30 or larger block inside the VPC's {outer}"
                        )));
                    }
                    let clash = v.model().subnets.values().find(|s| {
                        s.vpc_id == vpc.id
                            && s.ipv4().is_some_and(|o| {
                                o.contains(&net.network()) || net.contains(&o.network())
                            })
                    });
                    if let Some(other) = clash {
                        return Err(Rejection::param(format!(
                            "subnet {net} overlaps subnet {} ({})",
                            other.id, other.cidr
                        )));
                    }
                    // The command checked that a given gateway is inside the block.
                    Some(
                        cmd.gateway_ip.unwrap_or(IpAddr::V4(Ipv4Addr::from_bits(
                            net.network().to_bits() + 1,
                        ))),
                    )
                }
                IpNet::V6(_) => cmd.gateway_ip,
            };
            let subnet = Subnet {
                id: SubnetId::random(),
                project_id: t.project_id.clone(),
                domain_id: t.domain_id.clone(),
                vpc_id: vpc.id.clone(),
                name: cmd.name,
                cidr: cmd.cidr,
                gateway_ip,
                created_at: now(),
            };
            Ok((vec![Mutation::Put(Record::Subnet(subnet.clone()))], subnet))
        })
    }

    /// Delete a subnet; refused while ports or endpoints use it.
    ///
    /// # Errors
    /// EndPoint.0005 if not the tenant's; EndPoint.0023 while in use.
    pub fn delete_subnet(&self, t: &Tenant, id: &SubnetId) -> Result<(), Rejection> {
        self.write_as(t, |v| {
            let s = v.subnet(id).ok_or_else(|| Rejection::not_found("subnet"))?;
            let m = v.model();
            if m.ports.values().any(|p| p.subnet_id == s.id)
                || m.endpoints.values().any(|e| e.subnet_id == s.id)
            {
                return Err(Rejection::new(
                    ErrorCode::InvalidSubnetId,
                    "The subnet still holds ports or endpoints.",
                ));
            }
            Ok((vec![Mutation::Delete(Key::Subnet(s.id.clone()))], ()))
        })
    }

    /// Create a port (a NIC or an LB VIP) in one of the tenant's subnets, with the MAC
    /// address given or a random one.
    ///
    /// # Errors
    /// EndPoint.0023 for an unknown subnet, EndPoint.0002 for an IPv6 subnet without an
    /// address, EndPoint.2041/2042/2043 for a bad, used or foreign address.
    pub fn create_port(&self, t: &Tenant, cmd: NewPort) -> Result<Port, Rejection> {
        let quota = self.quotas().port;
        self.write_as(t, |v| {
            // Cloned: the rule runs again if another node commits first.
            let cmd = cmd.clone();
            quota_check(v.ports(None).count(), quota, "ports")?;
            let subnet = v
                .subnet(&cmd.subnet_id)
                .ok_or_else(|| Rejection::new(ErrorCode::InvalidSubnetId, "Invalid subnet_id."))?;
            let wrong_family = || {
                Rejection::new(
                    ErrorCode::InvalidPortIp,
                    "Invalid Port IP address: not of the subnet's family.",
                )
            };
            let ip = match (subnet.cidr, cmd.ip) {
                (IpNet::V6(_), None) => {
                    return Err(Rejection::missing(
                        "ip (IPv6 subnets have no automatic addresses)",
                    ));
                }
                (IpNet::V6(_), Some(IpAddr::V6(a))) => IpAddr::V6(a),
                (IpNet::V4(_), None) => IpAddr::V4(ipam::pick(v.model(), subnet, None)?),
                (IpNet::V4(_), Some(IpAddr::V4(a))) => {
                    IpAddr::V4(ipam::pick(v.model(), subnet, Some(a))?)
                }
                _ => return Err(wrong_family()),
            };
            // Two ports may share a MAC: a VM with two addresses is two ports here.
            let mac_address = cmd.mac_address.unwrap_or_else(MacAddress::random);
            let port = Port {
                id: PortId::random(),
                project_id: t.project_id.clone(),
                domain_id: t.domain_id.clone(),
                vpc_id: subnet.vpc_id.clone(),
                subnet_id: subnet.id.clone(),
                name: cmd.name,
                ip,
                server_type: cmd.server_type,
                mac_address: Some(mac_address),
                created_at: now(),
            };
            Ok((vec![Mutation::Put(Record::Port(port.clone()))], port))
        })
    }

    /// Delete a port; every service on it becomes `suspended` and stops carrying traffic.
    /// Returns the suspended services.
    ///
    /// # Errors
    /// EndPoint.0005 if not the tenant's.
    pub fn delete_port(&self, t: &Tenant, id: &PortId) -> Result<Vec<ServiceId>, Rejection> {
        self.write_as(t, |v| {
            let port = v.port(id).ok_or_else(|| Rejection::not_found("port"))?;
            let mut muts = vec![Mutation::Delete(Key::Port(port.id.clone()))];
            let mut suspended = Vec::new();
            for s in v.model().services_on(&port.id, None) {
                let mut s = s.clone();
                s.port_id = None;
                s.status = ServiceStatus::Suspended;
                s.updated_at = now();
                suspended.push(s.id.clone());
                muts.push(Mutation::Put(Record::Service(s)));
            }
            Ok((muts, suspended))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::*;
    use crate::requests::CreateSubnet;

    fn subnet(r: &Registry, t: &Tenant, vpc: &VpcId, cidr: &str) -> Result<Subnet, Rejection> {
        let body = CreateSubnet {
            vpc_id: Some(vpc.to_string()),
            cidr: Some(cidr.into()),
            ..CreateSubnet::default()
        };
        r.create_subnet(t, NewSubnet::try_from(body)?)
    }

    #[test]
    fn subnets_stay_inside_their_vpc_and_apart() {
        let r = registry();
        let t = tenant("p");
        let (vpc, sub) = network(&r, &t, "10.0.0.0/16");
        assert_eq!(
            r.read().subnets[&sub].gateway_ip.unwrap().to_string(),
            "10.0.0.1"
        );
        let code = |c: &str| subnet(&r, &t, &vpc, c).unwrap_err().code;
        assert_eq!(code("10.1.0.0/24"), ErrorCode::Parameter, "outside");
        assert_eq!(code("10.0.0.128/25"), ErrorCode::Parameter, "overlap");
        assert_eq!(
            code("10.0.0.0/8"),
            ErrorCode::Parameter,
            "larger than the VPC"
        );
        assert_eq!(code("10.0.5.0/31"), ErrorCode::Parameter, "too small");
        assert!(subnet(&r, &t, &vpc, "10.0.1.0/24").is_ok());
        // Another tenant's VPC is not there.
        assert_eq!(
            subnet(&r, &tenant("x"), &vpc, "10.0.2.0/24")
                .unwrap_err()
                .code,
            ErrorCode::InvalidVpcId
        );
    }

    #[test]
    fn nothing_in_use_is_deleted_and_a_port_deletion_suspends_its_services() {
        let r = registry();
        let p = tenant("p");
        let svc = service(&r, &p, false, &[]);
        let m = || r.read();
        let (vpc, sub, port) = {
            let m = m();
            let s = &m.services[&svc.id];
            let port = s.port_id.clone().unwrap();
            (s.vpc_id.clone(), m.ports[&port].subnet_id.clone(), port)
        };
        let e = r.delete_vpc(&p, &vpc).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidVpcId);
        assert!(e.msg.contains("endpoint service"), "{}", e.msg);
        assert_eq!(
            r.delete_subnet(&p, &sub).unwrap_err().code,
            ErrorCode::InvalidSubnetId
        );
        assert_eq!(
            r.delete_port(&tenant("x"), &port).unwrap_err().code,
            ErrorCode::NotFound,
            "another tenant's port is not there"
        );
        assert_eq!(r.delete_port(&p, &port).unwrap(), vec![svc.id.clone()]);
        let s = m().services[&svc.id].clone();
        assert_eq!((s.status, s.port_id), (ServiceStatus::Suspended, None));
        // Empty now, the subnet goes; the VPC still holds the service.
        r.delete_subnet(&p, &sub).unwrap();
        assert_eq!(
            r.delete_vpc(&p, &vpc).unwrap_err().code,
            ErrorCode::InvalidVpcId
        );
    }

    #[test]
    fn ports_take_addresses_of_their_subnets_family() {
        let r = registry();
        let t = tenant("p");
        let (vpc, v4) = network(&r, &t, "10.0.0.0/16");
        let v6 = r
            .create_subnet(
                &t,
                CreateSubnet {
                    vpc_id: Some(vpc.to_string()),
                    cidr: Some("2001:db8::/64".into()),
                    ip_version: Some(6),
                    ..CreateSubnet::default()
                }
                .try_into()
                .unwrap(),
            )
            .unwrap();
        assert_eq!(v6.gateway_ip, None);
        let create = |sub: &SubnetId, ip: Option<&str>| {
            r.create_port(
                &t,
                crate::requests::CreatePort {
                    subnet_id: Some(sub.to_string()),
                    server_type: Some("LB".into()),
                    ip: ip.map(Into::into),
                    name: None,
                    mac_address: None,
                }
                .try_into()?,
            )
        };
        assert_eq!(create(&v6.id, None).unwrap_err().code, ErrorCode::Parameter);
        assert_eq!(create(&v6.id, Some("2001:db8::5")).unwrap().ip_version(), 6);
        assert_eq!(
            create(&v6.id, Some("10.0.0.9")).unwrap_err().code,
            ErrorCode::InvalidPortIp
        );
        assert_eq!(
            create(&v4, Some("2001:db8::6")).unwrap_err().code,
            ErrorCode::InvalidPortIp
        );
        assert_eq!(
            create(&v4, Some("nope")).unwrap_err().code,
            ErrorCode::InvalidPortIp
        );
    }

    #[test]
    fn ports_get_a_unicast_mac() {
        let r = registry();
        let t = tenant("p");
        let (_, sub) = network(&r, &t, "10.0.0.0/16");
        let create = |mac: Option<&str>| {
            r.create_port(
                &t,
                crate::requests::CreatePort {
                    subnet_id: Some(sub.to_string()),
                    server_type: Some("VM".into()),
                    ip: None,
                    name: None,
                    mac_address: mac.map(Into::into),
                }
                .try_into()?,
            )
        };
        let given = create(Some("02:00:00:AB:cd:01")).unwrap();
        assert_eq!(given.mac_address.unwrap().to_string(), "02:00:00:ab:cd:01");
        // A VM with a second address is a second port with the same MAC.
        let second = create(Some("02:00:00:ab:cd:01")).unwrap();
        assert_eq!(second.mac_address, given.mac_address);
        // Assigned when absent: unicast, locally administered, OpenStack's prefix.
        let assigned = create(None).unwrap().mac_address.unwrap();
        assert_eq!(&assigned.octets()[..3], &[0xfa, 0x16, 0x3e]);
        // Not a unicast MAC: refused at the edge, nothing stored.
        let ports = r.read().ports.len();
        for bad in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "x",
        ] {
            let e = create(Some(bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::Parameter, "{bad}");
            assert!(e.msg.contains("mac_address"), "{}", e.msg);
        }
        assert_eq!(r.read().ports.len(), ports);
    }
}
