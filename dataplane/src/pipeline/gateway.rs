//! The pipeline's gateway side: new flows from a VPC with gateway endpoints to an address
//! of their services' prefixes, and the re-check of those flows when the tables change.
//!
//! Reached only on a conntrack miss for a destination that is no endpoint, SNAT or service
//! address of the attachment, so it adds nothing to established traffic or to endpoint
//! flows. A gateway flow is opened like an endpoint's (a TCP SYN or a UDP datagram, from a
//! source inside the VPC), to any port, with the source translated to a SNAT address and
//! port and the destination unchanged; it leaves through the route's attachment to the
//! destination's MAC (on-link) or the next hop's. Replies come back through conntrack.
//!
//! A gateway flow is recognised at re-check by its unchanged destination: the flow stays
//! while the client's VPC still routes that destination to the same attachment, and is
//! revoked at its next packet once the endpoint (so the route) is gone.

use super::open::refuse_opening;
use super::{Classified, Destination, FlowSides, Parsed, Pipeline};
use crate::tables::Tables;
use crate::verdict::{DropReason, Verdict};
use crate::wire::ethernet::MacAddr;

impl Pipeline {
    /// The miss path for a destination that is no address of ours: open a flow through the
    /// ingress VPC's gateway route, or drop (`NoEndpoint` where the VPC has no gateway
    /// endpoint, `NoRoute` outside every prefix of its gateway endpoints).
    pub(super) fn gateway(
        &mut self,
        tables: &Tables,
        frame: &mut [u8],
        parsed: Parsed,
        now_secs: u32,
    ) -> Classified {
        let key = parsed.key;
        let Some(routes) = tables.gateways(key.vpc) else {
            return Verdict::Drop(DropReason::NoEndpoint).into();
        };
        let Some(route) = routes.lookup(key.dst) else {
            return Verdict::Drop(DropReason::NoRoute).into();
        };
        if let Some(refused) = refuse_opening(tables, parsed) {
            return Verdict::Drop(refused).into();
        }
        let to = Destination {
            vpc: route.out_vpc,
            ip: key.dst,
            port: key.dport,
            hop: route.hop(key.dst),
            identity: 0,
            meter: route.meter,
        };
        let classified = self.install(tables, frame, parsed, to, now_secs);
        // A refusal of `install` (conntrack or SNAT full) is the route's endpoint's drop,
        // credited there.
        if matches!(classified, Classified::Verdict(Verdict::Forward(_))) {
            self.stats.gateway_flows += 1;
        }
        classified
    }

    /// Re-check a flow the accepted table does not hold as a gateway flow: `None` (revoke)
    /// unless its destination is unchanged and the client's VPC still routes it to the
    /// attachment the flow uses. `Some((mac, meter))`: the next hop's current MAC, if
    /// known, and the flow's meter word (the route's meter slot and the log bit).
    pub(super) fn recheck_gateway(
        &self,
        tables: &Tables,
        f: &FlowSides,
    ) -> Option<(Option<MacAddr>, u32)> {
        let FlowSides {
            client_vpc,
            dst,
            dport,
            out_vpc,
            out_ip,
            out_port,
            ..
        } = *f;
        if dst != out_ip || dport != out_port {
            return None; // translated: an endpoint's flow, whose endpoint is gone
        }
        let route = tables.gateways(client_vpc)?.lookup(dst)?;
        if route.out_vpc != out_vpc {
            return None;
        }
        let mac = self.shared.neighbours.lookup(out_vpc, route.hop(dst));
        Some((mac, route.meter | self.log_bit(client_vpc)))
    }
}
