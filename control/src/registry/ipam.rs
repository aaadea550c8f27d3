//! Address management: which IPv4 address of a subnet a new port or endpoint gets.
//!
//! A wanted address must be inside the subnet, not its network, gateway or broadcast
//! address, and free; without one, the lowest free host is taken. Taken addresses come from
//! the model's per-subnet index, walked in order, so finding a gap costs one pass.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::{ErrorCode, Rejection};
use crate::model::{Model, Subnet};

/// An address in `subnet` for a new port or endpoint: `wanted` if free and valid, else the
/// first free host (never the network, gateway or broadcast address).
///
/// # Errors
/// EndPoint.0023 (an IPv6 subnet), 2042 (in use), 2043 (outside the subnet, reserved, or
/// the subnet is full).
pub fn pick(m: &Model, subnet: &Subnet, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, Rejection> {
    let net: Ipv4Net = subnet
        .ipv4()
        .ok_or_else(|| Rejection::new(ErrorCode::InvalidSubnetId, "The subnet is not IPv4."))?;
    let gateway = subnet.gateway_ip.and_then(|g| match g {
        std::net::IpAddr::V4(a) => Some(a.to_bits()),
        std::net::IpAddr::V6(_) => None,
    });
    let first = net.network().to_bits();
    let last = net.broadcast().to_bits();
    let reserved = |ip: u32| ip == first || ip == last || Some(ip) == gateway;
    if let Some(ip) = wanted {
        if !net.contains(&ip) || reserved(ip.to_bits()) {
            return Err(Rejection::new(
                ErrorCode::PortIpOutsideSubnet,
                format!("The Port IP {ip} is not valid for the subnet {net}."),
            ));
        }
        if m.ip_in_use(&subnet.id, ip) {
            return Err(Rejection::new(
                ErrorCode::PortIpInUse,
                format!("The Port IP {ip} is in use."),
            ));
        }
        return Ok(ip);
    }
    // First free: walk the used set in order from where the model knows every address is
    // taken, and take the first gap.
    let mut candidate = first.saturating_add(1).max(m.free_ips_from(&subnet.id));
    let mut used = m.used_ips(&subnet.id, candidate).peekable();
    while candidate < last {
        if reserved(candidate) {
            candidate += 1;
            continue;
        }
        while used.peek().is_some_and(|u| *u < candidate) {
            used.next();
        }
        if used.peek() == Some(&candidate) {
            candidate += 1;
            continue;
        }
        return Ok(Ipv4Addr::from_bits(candidate));
    }
    Err(Rejection::new(
        ErrorCode::PortIpOutsideSubnet,
        format!("The subnet {net} has no free address."),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::*;

    #[test]
    fn addresses_are_handed_out_in_order_and_never_twice() {
        let r = registry();
        let t = tenant("p");
        let (_, sub) = network(&r, &t, "10.0.0.0/16");
        // .0 is the network, .1 the gateway: the first port gets .2.
        assert_eq!(port(&r, &t, &sub, "VM", None).ip.to_string(), "10.0.0.2");
        port(&r, &t, &sub, "VM", Some("10.0.0.4"));
        assert_eq!(port(&r, &t, &sub, "VM", None).ip.to_string(), "10.0.0.3");
        assert_eq!(port(&r, &t, &sub, "VM", None).ip.to_string(), "10.0.0.5");
        let m = r.read();
        let subnet = &m.subnets[&sub];
        let code = |w: [u8; 4]| pick(&m, subnet, Some(w.into())).unwrap_err().code;
        assert_eq!(code([10, 0, 0, 4]), ErrorCode::PortIpInUse);
        assert_eq!(
            code([10, 0, 0, 1]),
            ErrorCode::PortIpOutsideSubnet,
            "gateway"
        );
        assert_eq!(
            code([10, 0, 0, 255]),
            ErrorCode::PortIpOutsideSubnet,
            "broadcast"
        );
        assert_eq!(
            code([10, 0, 1, 9]),
            ErrorCode::PortIpOutsideSubnet,
            "outside"
        );
    }

    #[test]
    fn a_full_subnet_says_so() {
        let r = registry();
        let t = tenant("p");
        let vpc = r
            .create_vpc(
                &t,
                crate::command::NewVpc {
                    name: String::new(),
                    cidr: "10.0.0.0/16".parse().unwrap(),
                },
            )
            .unwrap();
        let sub = crate::requests::CreateSubnet {
            vpc_id: Some(vpc.id.to_string()),
            cidr: Some("10.0.0.0/30".into()),
            ..Default::default()
        };
        let sub = r.create_subnet(&t, sub.try_into().unwrap()).unwrap();
        // A /30 has one usable host once the gateway (.1) is reserved: .2.
        assert_eq!(port(&r, &t, &sub.id, "VM", None).ip.to_string(), "10.0.0.2");
        let m = r.read();
        assert_eq!(
            pick(&m, &m.subnets[&sub.id], None).unwrap_err().code,
            ErrorCode::PortIpOutsideSubnet
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        /// Whatever ports come and go (wanted addresses or the first free), the first free
        /// address is the lowest host address neither taken nor reserved: the model's
        /// start for the search never skips a freed one.
        #[test]
        fn the_first_free_is_the_lowest_untaken(
            ops in proptest::collection::vec((0u8..4, 2u32..14), 1..60)
        ) {
            let r = registry();
            let t = tenant("p");
            let (_, sub) = network(&r, &t, "10.0.0.0/16");
            let mut held: Vec<(crate::model::PortId, u32)> = Vec::new();
            for (op, n) in ops {
                match op {
                    0 if !held.is_empty() => {
                        let (id, _) = held.remove(n as usize % held.len());
                        r.delete_port(&t, &id).unwrap();
                    }
                    1 => {
                        let ip = format!("10.0.0.{n}");
                        let m = r.read();
                        if !m.ip_in_use(&sub, ip.parse().unwrap()) {
                            drop(m);
                            let p = port(&r, &t, &sub, "VM", Some(&ip));
                            held.push((p.id, n));
                        }
                    }
                    _ => {
                        let m = r.read();
                        let want = (2u32..255).find(|h| !held.iter().any(|(_, u)| u == h));
                        let got = pick(&m, &m.subnets[&sub], None).ok();
                        let got = got.map(|a| a.octets()[3] as u32);
                        proptest::prop_assert_eq!(got, want);
                        drop(m);
                        if let Some(h) = want {
                            let p = port(&r, &t, &sub, "VM", None);
                            held.push((p.id, h));
                        }
                    }
                }
            }
        }
    }
}
