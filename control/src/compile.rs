//! The compiler: the model into the dataplane's tables, off the fast path, pure.
//!
//! One endpoint compiles to its address (answered for by ARP on its VPC's attachment, and
//! marked accepted or inactive) and, when it may carry traffic, one accepted-table entry per
//! port mapping of its service. It may carry traffic when its connection is accepted, it is
//! not frozen, its service is available with a live IPv4 backend, and both its VPC and the
//! backend's VPC are attached to this node. Anything else compiles to "inactive": the
//! dataplane answers ARP but forwards nothing. An accepted endpoint with `enable_dns` in an
//! attached VPC also compiles to its private DNS name, for that VPC's resolver.
//!
//! A gateway endpoint compiles to its address (the VPC's next hop to the service) and, per
//! VPC, to the gateway routes of [`gateways`].

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::Attachment;
use dataplane::tables::{
    AcceptedKey, ClientIdentity, DnsKey, EndpointKey, EndpointState, GatewayRoute, GatewayTable,
    Ipv4Cidr, PortSet, Target,
};
use dataplane::wire::ethernet::MacAddr;

use crate::model::{ConnectionStatus, Endpoint, Model, ServiceStatus, SourceCidr, TcpProxy};

/// Which VPC each attachment of this node carries: VPC id to attachment index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachments {
    by_vpc: HashMap<String, Attachment>,
    /// Per attachment (indexed by `Attachment`), whether it has port security on.
    port_security: Vec<bool>,
}

impl Attachments {
    /// From the daemon's attachment list, in order (the index is the `Attachment`).
    pub fn new<'a>(vpcs: impl IntoIterator<Item = &'a str>) -> Self {
        let by_vpc = vpcs
            .into_iter()
            .enumerate()
            .map(|(i, v)| (v.to_string(), Attachment(to_u16(i))))
            .collect();
        Self {
            by_vpc,
            port_security: Vec::new(),
        }
    }

    /// The same attachments with port security on or off, in attachment order (missing
    /// ones: off).
    #[must_use]
    pub fn with_port_security(mut self, flags: impl IntoIterator<Item = bool>) -> Self {
        self.port_security = flags.into_iter().collect();
        self
    }

    /// True if attachment `vpc` has port security on.
    pub fn port_security(&self, vpc: Attachment) -> bool {
        self.port_security
            .get(vpc.index())
            .copied()
            .unwrap_or(false)
    }

    /// Every attachment: its VPC id and index, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Attachment)> {
        self.by_vpc.iter().map(|(id, v)| (id.as_str(), *v))
    }

    /// The attachment carrying `vpc_id`, if any.
    pub fn get(&self, vpc_id: &crate::model::VpcId) -> Option<Attachment> {
        self.by_vpc.get(vpc_id.as_str()).copied()
    }

    /// Number of attachments.
    pub fn len(&self) -> usize {
        self.by_vpc.len()
    }

    /// True if the node has no attachment.
    pub fn is_empty(&self) -> bool {
        self.by_vpc.is_empty()
    }
}

/// Per attachment (indexed by `Attachment`), the IPv4 subnets of the VPC it carries: a client's
/// source address must lie in one of them (anti-spoofing: replies go to the sender's MAC,
/// so a forged address must open nothing). Every attachment gets a list; one whose VPC has
/// no IPv4 subnet opens no flow.
pub fn sources(m: &Model, att: &Attachments) -> Vec<Option<Vec<Ipv4Cidr>>> {
    let mut out = vec![Some(Vec::new()); att.len()];
    for s in m.subnets.values() {
        let (Some(vpc), ipnet::IpNet::V4(net)) = (att.get(&s.vpc_id), s.cidr) else {
            continue;
        };
        if let Some(Some(list)) = out.get_mut(vpc.index())
            && let Some(c) = Ipv4Cidr::new(net.addr(), net.prefix_len())
        {
            list.push(c);
        }
    }
    out
}

/// Per attachment (indexed by `Attachment`), for those with port security on, the (IPv4
/// address, MAC) pairs of the ports of the VPC they carry: the only sources they take. A
/// port without a MAC (stored before ports had one) and an IPv6 port contribute nothing.
/// `None` where port security is off.
pub fn ports(m: &Model, att: &Attachments) -> Vec<Option<PortSet>> {
    let mut pairs: Vec<Option<Vec<(Ipv4Addr, MacAddr)>>> = (0..att.len())
        .map(|i| att.port_security(Attachment(to_u16(i))).then(Vec::new))
        .collect();
    for p in m.ports.values() {
        let (Some(vpc), Some(ip), Some(mac)) = (att.get(&p.vpc_id), p.ipv4(), p.mac_address) else {
            continue;
        };
        if let Some(Some(list)) = pairs.get_mut(vpc.index()) {
            list.push((ip, MacAddr(mac.octets())));
        }
    }
    pairs.into_iter().map(|p| p.map(PortSet::new)).collect()
}

fn to_u16(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

/// What one endpoint contributes to the tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    /// Accepted-table entries (one per port mapping).
    pub accepted: Vec<(AcceptedKey, Target)>,
    /// The endpoint's address entry, if its VPC is attached here.
    pub address: Option<(EndpointKey, EndpointState)>,
}

/// A stable 64-bit connection id for logs and metrics: the first 8 bytes of the endpoint's
/// UUID.
fn connection_id(ep: &Endpoint) -> u64 {
    uuid::Uuid::parse_str(ep.id.as_str()).map_or(ep.marker_id, |u| {
        let b = u.as_bytes();
        u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    })
}

/// A whitelist entry as the dataplane's prefix type.
fn cidr(c: &SourceCidr) -> Ipv4Cidr {
    let net = c.net();
    Ipv4Cidr::new(net.addr(), net.prefix_len()).expect("an ipnet prefix is at most 32")
}

/// Compile one endpoint, metered under slot `meter` ([`dataplane::meter`]).
pub fn endpoint(m: &Model, att: &Attachments, ep: &Endpoint, meter: u32) -> Compiled {
    let Some(vpc) = att.get(&ep.vpc_id) else {
        return Compiled::default();
    };
    let key = (vpc, ep.ip.to_bits());
    let inactive = Compiled {
        accepted: Vec::new(),
        address: Some((key, EndpointState::Inactive)),
    };
    if ep.status != ConnectionStatus::Accepted || ep.frozen {
        return inactive;
    }
    if let Some(g) = m.gateways.get(&ep.service_id) {
        // A gateway endpoint's address is its VPC's next hop to the service's prefixes;
        // the routes themselves are compiled per VPC ([`gateways`]).
        return if att.get(&g.vpc_id).is_some() {
            Compiled {
                accepted: Vec::new(),
                address: Some((key, EndpointState::Accepted)),
            }
        } else {
            inactive
        };
    }
    let Some(svc) = m.services.get(&ep.service_id) else {
        return inactive;
    };
    if svc.status != ServiceStatus::Available {
        return inactive;
    }
    let (Some(backend_ip), Some(backend_vpc)) = (m.backend_ip(svc), att.get(&svc.vpc_id)) else {
        return inactive;
    };
    let whitelist = ep.enable_whitelist.then(|| {
        let list: Vec<Ipv4Cidr> = ep.whitelist.iter().map(cidr).collect();
        Arc::<[Ipv4Cidr]>::from(list)
    });
    let accepted = svc
        .ports
        .iter()
        .map(|p| {
            let target = Target {
                connection_id: connection_id(ep),
                marker_id: ep.marker_id,
                backend_vpc,
                backend_ip,
                service_port: p.server_port,
                whitelist: whitelist.clone(),
                identity: client_identity(svc.tcp_proxy),
                meter,
            };
            (
                AcceptedKey::new(vpc, ep.ip, p.protocol.number(), p.client_port),
                target,
            )
        })
        .collect();
    Compiled {
        accepted,
        address: Some((key, EndpointState::Accepted)),
    }
}

/// The private DNS name `ep` contributes, if any: accepted, `enable_dns`, in an attached VPC.
pub fn dns(att: &Attachments, ep: &Endpoint, region: &str) -> Option<(DnsKey, u32)> {
    if !ep.enable_dns || ep.status != ConnectionStatus::Accepted {
        return None;
    }
    let vpc = att.get(&ep.vpc_id)?;
    Some(((vpc, Arc::from(ep.dns_name(region))), ep.ip.to_bits()))
}

/// Attachments on which the daemon owns the SNAT range: those carrying a VPC that holds an
/// available service or a gateway service.
pub fn snat_vpcs(m: &Model, att: &Attachments) -> Vec<Attachment> {
    m.services
        .values()
        .filter(|s| s.status == ServiceStatus::Available)
        .map(|s| &s.vpc_id)
        .chain(m.gateways.values().map(|g| &g.vpc_id))
        .filter_map(|v| att.get(v))
        .collect()
}

/// Backend addresses of available services on attached VPCs, and the next hops of gateway
/// services: the dataplane resolves their MACs ahead of traffic, so a flow's first packet
/// is not lost to ARP.
pub fn backends(m: &Model, att: &Attachments) -> Vec<(Attachment, Ipv4Addr)> {
    m.services
        .values()
        .filter(|s| s.status == ServiceStatus::Available)
        .filter_map(|s| Some((att.get(&s.vpc_id)?, m.backend_ip(s)?)))
        .chain(
            m.gateways
                .values()
                .filter_map(|g| Some((att.get(&g.vpc_id)?, g.next_hop?))),
        )
        .collect()
}

/// Per attachment (indexed by `Attachment`), the gateway routes of the VPC it carries: the
/// prefixes of every gateway service one of its accepted, unfrozen endpoints connects to,
/// when the service's VPC is attached too. Built whole at every push from the gateway
/// services' endpoint index (a handful of endpoints, not a scan of all).
///
/// Each VPC's routes to a service are its endpoint's: metered under `meter_of(endpoint)`.
pub fn gateways(
    m: &Model,
    att: &Attachments,
    meter_of: impl Fn(&crate::model::EndpointId) -> u32,
) -> Vec<GatewayTable> {
    let mut routes: Vec<Vec<(Ipv4Cidr, GatewayRoute)>> = vec![Vec::new(); att.len()];
    for g in m.gateways.values() {
        let Some(out_vpc) = att.get(&g.vpc_id) else {
            continue;
        };
        for ep in m.endpoints_of(g.id.as_str()) {
            if ep.status != ConnectionStatus::Accepted || ep.frozen {
                continue;
            }
            let route = GatewayRoute {
                out_vpc,
                next_hop: g.next_hop.map(Ipv4Addr::to_bits),
                meter: meter_of(&ep.id),
            };
            if let Some(list) = att.get(&ep.vpc_id).and_then(|v| routes.get_mut(v.index())) {
                list.extend(
                    g.prefixes
                        .iter()
                        .filter_map(|p| Some((Ipv4Cidr::new(p.addr(), p.prefix_len())?, route))),
                );
            }
        }
    }
    routes.into_iter().map(GatewayTable::new).collect()
}

/// What a service's `tcp_proxy` makes its TCP flows carry to the backend.
fn client_identity(tcp_proxy: TcpProxy) -> ClientIdentity {
    ClientIdentity {
        toa: matches!(tcp_proxy, TcpProxy::ToaOpen | TcpProxy::Open),
        proxy_v2: matches!(tcp_proxy, TcpProxy::ProxyOpen | TcpProxy::Open),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::model::{MacAddress, Port, Record, ServerType};

    fn port(vpc: &str, ip: &str, mac: Option<&str>) -> Record {
        Record::Port(Port {
            id: crate::model::PortId::random(),
            project_id: "p".into(),
            domain_id: "d".into(),
            vpc_id: vpc.into(),
            subnet_id: "s".into(),
            name: String::new(),
            ip: ip.parse::<IpAddr>().unwrap(),
            server_type: ServerType::Vm,
            mac_address: mac.map(|m| m.parse::<MacAddress>().unwrap()),
            created_at: 0,
        })
    }

    #[test]
    fn port_security_publishes_the_ports_of_secured_attachments_only() {
        let mut m = Model::default();
        for r in [
            port("users", "10.0.0.5", Some("02:00:00:00:00:05")),
            port("users", "10.0.0.6", None), // stored before ports had a MAC
            port("users", "2001:db8::5", Some("02:00:00:00:00:06")),
            port("provider", "10.0.0.10", Some("02:00:00:00:00:10")),
            port("elsewhere", "10.0.0.7", Some("02:00:00:00:00:07")),
        ] {
            m.insert(r);
        }
        let att = Attachments::new(["users", "provider", "third"]).with_port_security([true]);
        assert!(att.port_security(Attachment(0)) && !att.port_security(Attachment(1)));
        let out = ports(&m, &att);
        assert_eq!(out.len(), 3);
        assert!(out[1].is_none() && out[2].is_none(), "off where not asked");
        let users = out[0].as_ref().unwrap();
        assert_eq!(users.len(), 1, "only the IPv4 port with a MAC");
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap().to_bits();
        assert!(users.admits(ip("10.0.0.5"), MacAddr([2, 0, 0, 0, 0, 5])));
        assert!(!users.admits(ip("10.0.0.5"), MacAddr([2, 0, 0, 0, 0, 6])));
        assert!(
            !users.admits(ip("10.0.0.7"), MacAddr([2, 0, 0, 0, 0, 7])),
            "another VPC's"
        );

        // Into the tables: the provider's attachment (off) takes anything.
        let t = dataplane::Tables::new(dataplane::tables::default_snat_range()).with_ports(out);
        assert!(t.admits_port(Attachment(0), ip("10.0.0.5"), MacAddr([2, 0, 0, 0, 0, 5])));
        assert!(!t.admits_port(Attachment(0), ip("10.0.0.6"), MacAddr([2, 0, 0, 0, 0, 5])));
        assert!(t.admits_port(Attachment(1), ip("10.0.0.99"), MacAddr([2, 0, 0, 0, 0, 9])));
        // A secured attachment whose VPC has no port takes nothing.
        let none = ports(&Model::default(), &att);
        assert!(none[0].as_ref().unwrap().is_empty());
    }
}
