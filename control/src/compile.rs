//! The compiler: the model into the dataplane's tables, off the fast path, pure.
//!
//! One endpoint compiles to its address (answered for by ARP on its VPC's attachment, and
//! marked accepted or inactive) and, when it may carry traffic, one accepted-table entry per
//! port mapping of its service. It may carry traffic when its connection is accepted, it is
//! not frozen, its service is available with a live IPv4 backend, and both its VPC and the
//! backend's VPC are attached to this node. Anything else compiles to "inactive": the
//! dataplane answers ARP but forwards nothing. An accepted endpoint with `enable_dns` in an
//! attached VPC also compiles to its private DNS name, for that VPC's resolver.

use std::collections::HashMap;
use std::sync::Arc;

use dataplane::VpcId;
use dataplane::tables::{AcceptedKey, DnsKey, EndpointKey, EndpointState, Ipv4Cidr, Target};

use crate::model::{ConnectionStatus, Endpoint, Model, ServiceStatus, SourceCidr};

/// Which VPC each attachment of this node carries: VPC id to attachment index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachments {
    by_vpc: HashMap<String, VpcId>,
}

impl Attachments {
    /// From the daemon's attachment list, in order (the index is the `VpcId`).
    pub fn new<'a>(vpcs: impl IntoIterator<Item = &'a str>) -> Self {
        let by_vpc = vpcs
            .into_iter()
            .enumerate()
            .map(|(i, v)| (v.to_string(), VpcId(u16::try_from(i).unwrap_or(u16::MAX))))
            .collect();
        Self { by_vpc }
    }

    /// The attachment carrying `vpc_id`, if any.
    pub fn get(&self, vpc_id: &crate::model::VpcId) -> Option<VpcId> {
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

/// Per attachment (indexed by `VpcId`), the IPv4 subnets of the VPC it carries: a client's
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

/// Compile one endpoint.
pub fn endpoint(m: &Model, att: &Attachments, ep: &Endpoint) -> Compiled {
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
/// available service.
pub fn snat_vpcs(m: &Model, att: &Attachments) -> Vec<VpcId> {
    m.services
        .values()
        .filter(|s| s.status == ServiceStatus::Available)
        .filter_map(|s| att.get(&s.vpc_id))
        .collect()
}

/// Backend addresses of available services on attached VPCs: the dataplane resolves their
/// MACs ahead of traffic, so a flow's first packet is not lost to ARP.
pub fn backends(m: &Model, att: &Attachments) -> Vec<(VpcId, std::net::Ipv4Addr)> {
    m.services
        .values()
        .filter(|s| s.status == ServiceStatus::Available)
        .filter_map(|s| Some((att.get(&s.vpc_id)?, m.backend_ip(s)?)))
        .collect()
}
