//! Commands of the network inventory: new VPCs, subnets and ports (bare or in the Huawei
//! VPC API's envelopes).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::port_ip;
use crate::error::{Rejection, require};
use crate::model::net::parse_ipv4_block;
use crate::model::{MacAddress, ServerType, SubnetId, VpcId};
use crate::requests::{
    CreatePort, CreateSubnet, CreateVpc, PortEnvelope, SubnetEnvelope, VpcEnvelope,
};

/// Longest name of a VPC, subnet or port, in characters (the Huawei VPC API's limit).
pub const MAX_NAME_CHARS: usize = 64;

/// A name: absent is empty; at most [`MAX_NAME_CHARS`] characters, no control characters.
fn name(n: Option<String>) -> Result<String, Rejection> {
    let n = n.unwrap_or_default();
    if n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(Rejection::param(format!(
            "name: at most {MAX_NAME_CHARS} characters, no control characters"
        )));
    }
    Ok(n)
}

/// Create a VPC.
#[derive(Clone, Debug)]
pub struct NewVpc {
    /// Name.
    pub name: String,
    /// Its IPv4 block.
    pub cidr: Ipv4Net,
}

impl TryFrom<CreateVpc> for NewVpc {
    type Error = Rejection;

    fn try_from(b: CreateVpc) -> Result<Self, Rejection> {
        let cidr = require(b.cidr, "cidr")?;
        let cidr = parse_ipv4_block(&cidr)
            .ok_or_else(|| Rejection::param(format!("cidr {cidr:?} is not an IPv4 CIDR")))?;
        Ok(Self {
            name: name(b.name)?,
            cidr,
        })
    }
}

/// Create a subnet.
#[derive(Clone, Debug)]
pub struct NewSubnet {
    /// Name.
    pub name: String,
    /// Its VPC.
    pub vpc_id: VpcId,
    /// Its block, of the family asked for.
    pub cidr: IpNet,
    /// The gateway, if given: an address of the block (IPv4: the first host by default).
    pub gateway_ip: Option<IpAddr>,
}

impl TryFrom<CreateSubnet> for NewSubnet {
    type Error = Rejection;

    fn try_from(b: CreateSubnet) -> Result<Self, Rejection> {
        let vpc_id = require(b.vpc_id, "vpc_id")?.into();
        let cidr = require(b.cidr, "cidr")?;
        let cidr = match b.ip_version.unwrap_or(4) {
            4 => IpNet::V4(
                parse_ipv4_block(&cidr)
                    .ok_or_else(|| Rejection::param(format!("cidr {cidr:?} is not IPv4")))?,
            ),
            6 => IpNet::V6(
                cidr.parse::<Ipv6Net>()
                    .map_err(|_| Rejection::param("cidr: an IPv6 address and prefix"))?,
            ),
            _ => return Err(Rejection::param("ip_version must be 4 or 6")),
        };
        let gateway_ip = b
            .gateway_ip
            .as_deref()
            .map(|g| {
                g.parse::<IpAddr>()
                    .ok()
                    .filter(|a| cidr.contains(a))
                    .ok_or_else(|| Rejection::param("gateway_ip must be an address of the subnet"))
            })
            .transpose()?;
        Ok(Self {
            name: name(b.name)?,
            vpc_id,
            cidr,
            gateway_ip,
        })
    }
}

/// Create a port.
#[derive(Clone, Debug)]
pub struct NewPort {
    /// Name.
    pub name: String,
    /// Its subnet.
    pub subnet_id: SubnetId,
    /// A chosen address (required in IPv6 subnets); automatic when absent.
    pub ip: Option<IpAddr>,
    /// NIC or VIP.
    pub server_type: ServerType,
    /// A chosen MAC address (unicast); assigned when absent.
    pub mac_address: Option<MacAddress>,
}

impl TryFrom<CreatePort> for NewPort {
    type Error = Rejection;

    fn try_from(b: CreatePort) -> Result<Self, Rejection> {
        let mac_address = b
            .mac_address
            .map(|m| {
                m.parse::<MacAddress>()
                    .map_err(|e| Rejection::param(format!("mac_address: {e}")))
            })
            .transpose()?;
        Ok(Self {
            subnet_id: require(b.subnet_id, "subnet_id")?.into(),
            server_type: ServerType::parse(&require(b.server_type, "server_type")?)?,
            ip: port_ip(b.ip)?,
            name: name(b.name)?,
            mac_address,
        })
    }
}

impl TryFrom<VpcEnvelope> for NewVpc {
    type Error = Rejection;

    fn try_from(b: VpcEnvelope) -> Result<Self, Rejection> {
        b.vpc.try_into()
    }
}

impl TryFrom<SubnetEnvelope> for NewSubnet {
    type Error = Rejection;

    fn try_from(b: SubnetEnvelope) -> Result<Self, Rejection> {
        b.subnet.try_into()
    }
}

impl TryFrom<PortEnvelope> for NewPort {
    type Error = Rejection;

    fn try_from(b: PortEnvelope) -> Result<Self, Rejection> {
        b.port.try_into()
    }
}
