//! Gateway routes: per VPC, the address prefixes of the gateway services its gateway
//! endpoints reach, longest prefix first.
//!
//! A gateway endpoint (an operator's service such as an object store, reached by route and
//! not by port) puts its service's prefixes into the table of the endpoint's VPC. The
//! pipeline consults it only on a conntrack miss for a destination that is no endpoint
//! address: a new TCP or UDP flow to any port of a matching address goes out of the route's
//! attachment, to the destination itself (on-link) or to the route's next hop, with its
//! source translated to a SNAT address like an endpoint's flow, its destination unchanged.
//!
//! The lookup hashes the destination once per distinct prefix length of the VPC's table
//! (longest first), so it costs a few probes for the handful of prefixes a VPC has, and
//! nothing at all for traffic that never reaches it (conntrack hits, endpoint addresses).

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::accepted::Ipv4Cidr;
use crate::flow::Attachment;

/// Where a gateway prefix leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayRoute {
    /// The attachment the prefix is reachable on (the gateway service's VPC).
    pub out_vpc: Attachment,
    /// The router to send through (host order); `None`: the prefix is on-link there, and
    /// the destination itself is resolved.
    pub next_hop: Option<u32>,
    /// The gateway endpoint's meter slot ([`crate::meter`]; 0: none).
    pub meter: u32,
}

impl GatewayRoute {
    /// The address whose MAC a packet to `dst` is sent to.
    #[inline]
    pub fn hop(&self, dst: u32) -> u32 {
        self.next_hop.unwrap_or(dst)
    }
}

/// One VPC's gateway prefixes, for longest-prefix matching.
#[derive(Clone, Debug, Default)]
pub struct GatewayTable {
    /// The distinct prefix lengths present, longest first.
    lengths: Vec<u8>,
    /// `(prefix length, network address)` to route.
    routes: HashMap<(u8, u32), GatewayRoute, RandomState>,
}

impl GatewayTable {
    /// A table of `routes`. When one prefix appears twice, the first route given wins.
    pub fn new(routes: impl IntoIterator<Item = (Ipv4Cidr, GatewayRoute)>) -> Self {
        let mut t = Self::default();
        for (cidr, route) in routes {
            t.routes
                .entry((cidr.prefix(), cidr.addr().to_bits()))
                .or_insert(route);
            if !t.lengths.contains(&cidr.prefix()) {
                t.lengths.push(cidr.prefix());
            }
        }
        t.lengths.sort_unstable_by(|a, b| b.cmp(a));
        t
    }

    /// The route of the longest prefix holding `dst` (host order), if any.
    #[inline]
    pub fn lookup(&self, dst: u32) -> Option<GatewayRoute> {
        self.lengths.iter().find_map(|&len| {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            self.routes.get(&(len, dst & mask)).copied()
        })
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True if the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> u32 {
        s.parse::<core::net::Ipv4Addr>().unwrap().to_bits()
    }

    #[test]
    fn the_longest_prefix_wins_and_outside_addresses_miss() {
        let wide = GatewayRoute {
            out_vpc: Attachment(1),
            next_hop: None,
            meter: 0,
        };
        let narrow = GatewayRoute {
            out_vpc: Attachment(2),
            next_hop: Some(ip("10.9.0.1")),
            meter: 0,
        };
        let t = GatewayTable::new([
            (cidr("100.125.0.0/16"), wide),
            (cidr("100.125.7.0/24"), narrow),
            (cidr("100.125.0.0/16"), narrow), // a duplicate: the first one stays
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(ip("100.125.7.9")), Some(narrow));
        assert_eq!(t.lookup(ip("100.125.8.9")), Some(wide));
        assert_eq!(t.lookup(ip("100.126.0.1")), None);
        assert_eq!(narrow.hop(ip("100.125.7.9")), ip("10.9.0.1"));
        assert_eq!(wide.hop(ip("100.125.8.9")), ip("100.125.8.9"));
        let all = GatewayTable::new([(cidr("0.0.0.0/0"), wide)]);
        assert_eq!(all.lookup(ip("203.0.113.1")), Some(wide));
        assert!(GatewayTable::default().lookup(ip("100.125.0.1")).is_none());
    }
}
