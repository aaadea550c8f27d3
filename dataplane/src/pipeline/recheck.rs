//! The re-check of a flow against newer tables (once per flow and generation, at its first
//! packet of either direction): both sides of the flow recovered from one entry, then the
//! accepted table (or the gateway routes, `gateway.rs`) asked whether it may go on, where,
//! and under which meter slot.

use super::Pipeline;
use crate::conntrack::{Direction, FlowEntry};
use crate::flow::{Attachment, FlowKey};
use crate::tables::{AcceptedKey, Tables};
use crate::wire::ethernet::MacAddr;

impl Pipeline {
    /// Re-check an entry's flow against the current tables. `None`: the flow is no longer
    /// allowed. `Some((mac, meter))`: still allowed; `mac` is the current MAC of the next
    /// hop toward the backend, if known (whichever direction `e` is), `meter` the flow's
    /// meter word (the connection's meter slot, and whether its client's attachment is
    /// logged). Once per flow and table generation: out of line.
    #[cold]
    #[inline(never)]
    pub(super) fn recheck(
        &self,
        tables: &Tables,
        key: &FlowKey,
        e: &FlowEntry<'_>,
    ) -> Option<(Option<MacAddr>, u32)> {
        let f = FlowSides::of(key, e);
        let Some(target) = tables.accepted().get(&AcceptedKey {
            vpc: f.client_vpc,
            proto: key.proto,
            port: f.dport,
            endpoint: f.dst,
        }) else {
            return self.recheck_gateway(tables, &f);
        };
        let same_backend = target.backend_vpc == f.out_vpc
            && target.backend_ip.to_bits() == f.out_ip
            && target.service_port == f.out_port;
        if !same_backend || !target.admits(f.client) {
            return None;
        }
        let mac = self.shared.neighbours.lookup(f.out_vpc, f.out_ip);
        Some((mac, target.meter | self.log_bit(f.client_vpc)))
    }
}

/// Both sides of a flow as its opener saw them, recovered from its key and entry in either
/// direction: the client (VPC, address, port), where it sent (address and port: an
/// endpoint's, or a gateway destination's), and where that went (attachment, address,
/// port: the backend, or the same destination).
#[derive(Clone, Copy)]
pub(super) struct FlowSides {
    pub(super) client_vpc: Attachment,
    pub(super) client: u32,
    pub(super) sport: u16,
    pub(super) dst: u32,
    pub(super) dport: u16,
    pub(super) out_vpc: Attachment,
    pub(super) out_ip: u32,
    pub(super) out_port: u16,
}

impl FlowSides {
    pub(super) fn of(key: &FlowKey, e: &FlowEntry<'_>) -> Self {
        let rw = &e.rewrite;
        match e.dir {
            Direction::Original => Self {
                client_vpc: key.vpc,
                client: key.src,
                sport: key.sport,
                dst: key.dst,
                dport: key.dport,
                out_vpc: e.out_vpc,
                out_ip: rw.dst,
                out_port: rw.dport,
            },
            // The reply's rewrite is the original key reversed; its key comes from `out`.
            Direction::Reply => Self {
                client_vpc: e.out_vpc,
                client: rw.dst,
                sport: rw.dport,
                dst: rw.src,
                dport: rw.sport,
                out_vpc: key.vpc,
                out_ip: key.src,
                out_port: key.sport,
            },
        }
    }
}
