//! The accepted-connection table: `(vpc, endpoint IP, protocol, client port)` to the
//! backend that flow may reach. Only connections that are accepted, not frozen and whose
//! service has a live backend are in it; absence is a refusal.

use core::net::Ipv4Addr;
use core::str::FromStr;
use std::sync::Arc;

use crate::flow::Attachment;
use crate::tables::sharded::ShardedMap;

/// The key of an accepted port mapping of one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AcceptedKey {
    /// The endpoint's VPC (attachment).
    pub vpc: Attachment,
    /// IP protocol number (6 or 17).
    pub proto: u8,
    /// The mapping's client port.
    pub port: u16,
    /// The endpoint's address (host order).
    pub endpoint: u32,
}

impl AcceptedKey {
    /// Build a key.
    pub fn new(vpc: Attachment, endpoint: Ipv4Addr, proto: u8, port: u16) -> Self {
        Self {
            vpc,
            proto,
            port,
            endpoint: endpoint.to_bits(),
        }
    }
}

/// An IPv4 prefix, as used in endpoint source whitelists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// A prefix; host bits of `addr` are cleared.
    ///
    /// # Errors
    /// `None` if `prefix` is above 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self {
            addr: addr.to_bits() & Self::mask_of(prefix),
            prefix,
        })
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.addr)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True if `ip` (host order) is inside the prefix.
    #[inline]
    pub fn contains_u32(&self, ip: u32) -> bool {
        ip & Self::mask_of(self.prefix) == self.addr
    }

    /// True if `ip` is inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.contains_u32(ip.to_bits())
    }

    /// Number of addresses in the prefix.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
}

impl core::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix)
    }
}

/// Why a CIDR string did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CidrParseError;

impl core::fmt::Display for CidrParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("expected an IPv4 address or prefix such as 192.0.2.0/24")
    }
}

impl std::error::Error for CidrParseError {}

impl FromStr for Ipv4Cidr {
    type Err = CidrParseError;

    /// `a.b.c.d/len`, or a bare address as a /32.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().map_err(|_| CidrParseError)?),
            None => (s, 32),
        };
        let addr: Ipv4Addr = addr.parse().map_err(|_| CidrParseError)?;
        Self::new(addr, prefix).ok_or(CidrParseError)
    }
}

/// What the flows of a mapping tell the backend about their client: the service's
/// `tcp_proxy` (`close`: nothing; `toa_open`: `toa`; `proxy_open`: `proxy_v2`; `open`:
/// both). Applies to TCP only; see [`crate::rewrite::identity`] for the bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientIdentity {
    /// The TOA TCP option (kind 254) on the segments that open the stream.
    pub toa: bool,
    /// A PROXY protocol v2 header at the start of the stream.
    pub proxy_v2: bool,
}

impl ClientIdentity {
    /// Nothing carried (`close`).
    pub const NONE: Self = Self {
        toa: false,
        proxy_v2: false,
    };

    /// The flow state bits ([`crate::conntrack::state::TOA`],
    /// [`crate::conntrack::state::PROXY`]) a new flow of this mapping keeps.
    pub fn bits(self) -> u8 {
        use crate::conntrack::state;
        (if self.toa { state::TOA } else { 0 }) | (if self.proxy_v2 { state::PROXY } else { 0 })
    }
}

/// Where an accepted flow goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The connection (endpoint) this mapping belongs to; for logs and metrics.
    pub connection_id: u64,
    /// The connection's packet ID (`marker_id`).
    pub marker_id: u64,
    /// The VPC (attachment) of the backend.
    pub backend_vpc: Attachment,
    /// The backend's address.
    pub backend_ip: Ipv4Addr,
    /// The service port on the backend.
    pub service_port: u16,
    /// Source prefixes allowed to use the endpoint; `None` allows every source.
    pub whitelist: Option<Arc<[Ipv4Cidr]>>,
    /// What TCP flows tell the backend about their client (the service's `tcp_proxy`).
    pub identity: ClientIdentity,
    /// The connection's meter slot ([`crate::meter`]; 0: none).
    pub meter: u32,
}

impl Target {
    /// True if a client at `src` (host order) may use this mapping.
    #[inline]
    pub fn admits(&self, src: u32) -> bool {
        match &self.whitelist {
            None => true,
            Some(list) => list.iter().any(|c| c.contains_u32(src)),
        }
    }
}

/// The accepted table: a structurally shared map, so one change copies one shard.
pub type AcceptedTable = ShardedMap<AcceptedKey, Target>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_and_contains() {
        let c: Ipv4Cidr = "10.1.2.3/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.1.0.0/16");
        assert!(c.contains(Ipv4Addr::new(10, 1, 255, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 2, 0, 1)));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(203, 0, 113, 9)));
        let host: Ipv4Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.prefix(), 32);
        assert_eq!(host.size(), 1);
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "10.0.0.0/-1", ""] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn whitelist_admits() {
        let mut t = Target {
            connection_id: 1,
            marker_id: 1,
            backend_vpc: Attachment(1),
            backend_ip: Ipv4Addr::new(10, 0, 0, 10),
            service_port: 80,
            whitelist: None,
            identity: ClientIdentity::NONE,
            meter: 0,
        };
        assert!(t.admits(Ipv4Addr::new(1, 2, 3, 4).to_bits()));
        t.whitelist = Some(Arc::from(vec!["10.0.0.0/24".parse().unwrap()]));
        assert!(t.admits(Ipv4Addr::new(10, 0, 0, 4).to_bits()));
        assert!(!t.admits(Ipv4Addr::new(10, 0, 1, 4).to_bits()));
    }
}
