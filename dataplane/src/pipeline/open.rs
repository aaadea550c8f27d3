//! The miss path: a packet that matches no flow opens one, if it may (an accepted
//! endpoint's mapping, or a gateway route): SNAT port, both conntrack directions, rewrite.

use std::hash::BuildHasher;
use std::sync::Arc;

use super::{Classified, Destination, Parsed, Pipeline, SNAT_ADDRESS_TRIES};
use crate::conntrack::flowlog;
use crate::conntrack::replica::Replica;
use crate::conntrack::{ConnTrack, Direction, FlowInit, Full, InsertError, Rewrite, stamp, state};
use crate::flow::{Attachment, FlowKey};
use crate::rewrite::{identity, nat, reset};
use crate::tables::{AcceptedKey, EndpointState, Tables};
use crate::verdict::{DropReason, Verdict};
use crate::wire::ethernet::EthernetFrame;
use crate::wire::ipv4::PROTO_TCP;
use crate::wire::proxy;
use crate::wire::tcp;

impl Pipeline {
    /// The miss path: open a new flow to an endpoint. A refusal that belongs to the
    /// endpoint is credited to its meter.
    pub(super) fn open(
        &mut self,
        tables: &Tables,
        frame: &mut [u8],
        parsed: Parsed,
        endpoint: EndpointState,
        now_secs: u32,
    ) -> Classified {
        let key = parsed.key;
        if let Some(refused) = refuse_opening(tables, parsed) {
            if refused == DropReason::TcpNoFlow && parsed.flags & tcp::RST == 0 {
                return self.reset(tables, frame, &key, endpoint, now_secs);
            }
            return Verdict::Drop(refused).into();
        }
        if endpoint != EndpointState::Accepted {
            return self.refuse(tables, &key, DropReason::NotAccepted);
        }
        let akey = AcceptedKey {
            vpc: key.vpc,
            proto: key.proto,
            port: key.dport,
            endpoint: key.dst,
        };
        let Some(target) = tables.accepted().get(&akey) else {
            return self.refuse(tables, &key, DropReason::PortNotMapped);
        };
        if !target.admits(key.src) {
            return self.refused(&key, target.meter, DropReason::SourceNotWhitelisted);
        }
        let to = Destination {
            vpc: target.backend_vpc,
            ip: target.backend_ip.to_bits(),
            port: target.service_port,
            hop: target.backend_ip.to_bits(),
            identity: if key.proto == PROTO_TCP {
                target.identity.bits()
            } else {
                0
            },
            meter: target.meter,
        };
        match self.install(tables, frame, parsed, to, now_secs) {
            Classified::Verdict(Verdict::Forward(out)) if to.identity != 0 => Classified::Identity(
                out,
                identity::Segment::opening(
                    proxy::Addresses {
                        src: key.src,
                        dst: key.dst,
                        sport: key.sport,
                        dport: key.dport,
                    },
                    key.vpc,
                    to.identity,
                    super::tcp_seq(frame),
                ),
            ),
            other => other,
        }
    }

    /// Refuse a flow to the endpoint at `key`'s destination for `reason`, credited to the
    /// endpoint's meter.
    #[cold]
    fn refuse(&mut self, tables: &Tables, key: &FlowKey, reason: DropReason) -> Classified {
        self.refused(key, tables.endpoint_meter((key.vpc, key.dst)), reason)
    }

    /// Open an admitted flow to `to`: SNAT port, both conntrack entries, rewrite.
    pub(super) fn install(
        &mut self,
        tables: &Tables,
        frame: &mut [u8],
        parsed: Parsed,
        to: Destination,
        now_secs: u32,
    ) -> Classified {
        let Parsed { key, l4, .. } = parsed;
        let seq = if key.proto == PROTO_TCP {
            super::tcp_seq(frame)
        } else {
            0
        };
        let Destination {
            vpc: backend_vpc,
            ip: backend_ip,
            port: service_port,
            hop,
            identity,
            meter,
        } = to;
        let ct = Arc::clone(&self.shared.conntrack);

        let Some(backend_mac) = self.shared.neighbours.lookup(backend_vpc, hop) else {
            let sender = self.snat_ip(tables, &key, 0);
            return self
                .ask_neighbour(backend_vpc, hop, sender, frame, now_secs)
                .into();
        };
        if let Err(full) = self.reserve(&ct, key.vpc) {
            let reason = match full {
                Full::Node => DropReason::ConntrackFull,
                Full::Vpc => DropReason::ConntrackVpcLimit,
            };
            return self.refused(&key, meter, reason);
        }
        if !self.make_expiry_room(&ct, now_secs) {
            ct.release(key.vpc);
            return self.refused(&key, meter, DropReason::ConntrackFull);
        }

        // SNAT: the reply key (backend -> snat:port) must be free; inserting it reserves it.
        let client_mac = EthernetFrame::new_unchecked(&*frame).src();
        let count = self.config.snat_port_count();
        let start = usize::try_from(self.hasher.hash_one(key)).unwrap_or(0) % count;
        let g = stamp(self.generation(tables));
        let probes = self.config.snat_probes.get().min(count);
        let initial = if key.proto == PROTO_TCP {
            state::SYN_SENT
        } else {
            state::UDP_UNREPLIED
        };
        let flow = FlowInit {
            key,
            rewrite: Rewrite {
                src: 0,
                dst: backend_ip,
                sport: 0,
                dport: service_port,
            },
            out_vpc: backend_vpc,
            backend_mac,
            client_mac,
            state: initial,
            reply_state: identity,
            generation: g,
            last_seen: [now_secs, now_secs],
            client_isn: seq,
            meter: meter | self.log_bit(key.vpc),
        };
        // The client's own SNAT address first, then a few neighbours in the range, so one
        // busy client does not exhaust its pool while others sit empty.
        let first_port = self.config.snat_port_first;
        let snat_ips: [u32; SNAT_ADDRESS_TRIES] =
            core::array::from_fn(|i| self.snat_ip(tables, &key, i as u64));
        let candidates = snat_ips.into_iter().flat_map(|ip| {
            (0..probes).map(move |i| {
                let offset = u16::try_from((start + i) % count).unwrap_or(0);
                (ip, first_port + offset)
            })
        });
        let rw = match ct.insert_flow(&flow, candidates) {
            Ok((snat_ip, port)) => Rewrite {
                src: snat_ip,
                sport: port,
                ..flow.rewrite
            },
            Err(InsertError::Exists) => {
                // Another worker opened the same flow first: use theirs.
                ct.release(key.vpc);
                return self
                    .established(tables, frame, parsed, now_secs)
                    .unwrap_or_else(|| Verdict::Drop(DropReason::TcpNoFlow).into());
            }
            Err(InsertError::SnatExhausted) => {
                ct.release(key.vpc);
                return self.refused(&key, meter, DropReason::SnatExhausted);
            }
            Err(InsertError::TableFull) => {
                ct.release(key.vpc);
                return self.refused(&key, meter, DropReason::ConntrackFull);
            }
        };
        self.stats.flows_created += 1;
        ct.replicate(|| {
            Replica::Open(FlowInit {
                rewrite: rw,
                ..flow
            })
        });
        self.meters.opened(meter);
        let bytes = super::metering::ip_bytes(frame);
        self.meters
            .packet(meter, Direction::Original, 1, bytes, false);
        let (word, mut record) = (flow.meter, 0);
        if word & flowlog::LOGGED != 0
            && let Some(e) = ct.get(&key)
        {
            record = e.record_slot();
            ct.log_packet(record, Direction::Original, 1, bytes);
        }
        self.metered = (word, Direction::Original, record);
        self.expiry.push_back(key);
        ct.remember(key);
        let src_mac = self.attachment_mac(backend_vpc);
        nat::rewrite(frame, key.proto, l4, &rw, src_mac, backend_mac);
        Verdict::Forward(backend_vpc).into()
    }

    /// A segment of no flow to an endpoint: if the connection could exist (the endpoint is
    /// accepted, the port mapped, the client admitted), answer with a reset (within
    /// [`super::RESETS_PER_SEC`]); it is a `tcp_no_flow` drop either way.
    #[cold]
    fn reset(
        &mut self,
        tables: &Tables,
        frame: &mut [u8],
        key: &FlowKey,
        endpoint: EndpointState,
        now_secs: u32,
    ) -> Classified {
        let drop = Verdict::Drop(DropReason::TcpNoFlow).into();
        let akey = AcceptedKey {
            vpc: key.vpc,
            proto: key.proto,
            port: key.dport,
            endpoint: key.dst,
        };
        let could_exist = endpoint == EndpointState::Accepted
            && tables.admits_source(key.vpc, key.src)
            && tables
                .accepted()
                .get(&akey)
                .is_some_and(|t| t.admits(key.src));
        if !could_exist {
            return drop;
        }
        if self.resets.0 != now_secs {
            self.resets = (now_secs, 0);
        }
        if self.resets.1 >= super::RESETS_PER_SEC {
            return drop;
        }
        let Some(len) = reset::reset_in_place(frame, self.attachment_mac(key.vpc)) else {
            return drop;
        };
        self.resets.1 += 1;
        self.stats.tcp_resets += 1;
        self.stats.drop(DropReason::TcpNoFlow);
        Verdict::Emit { vpc: key.vpc, len }.into()
    }

    /// The SNAT address for a client: a hash of (VPC, client address) over the range's
    /// usable addresses, so one client's flows share an address (the backend's neighbour
    /// table stays small) and pools spread; `attempt` steps to the following addresses.
    fn snat_ip(&self, tables: &Tables, key: &FlowKey, attempt: u64) -> u32 {
        let range = tables.snat();
        let base = range.addr().to_bits();
        let (first, usable) = match range.size() {
            0..=2 => (0, range.size()),
            n => (1, n - 2), // skip the network and broadcast addresses
        };
        let h = self.hasher.hash_one((key.vpc, key.src));
        let offset = first + h.wrapping_add(attempt) % usable.max(1);
        base + u32::try_from(offset).unwrap_or(0)
    }

    /// Reserve room for a flow opened from `vpc`; when its share or the node is full,
    /// evict one embryonic or unreplied flow (its own for the share, node-wide for the
    /// node) and try once more.
    fn reserve(&mut self, ct: &ConnTrack, vpc: Attachment) -> Result<(), Full> {
        let Err(full) = ct.try_reserve(vpc) else {
            return Ok(());
        };
        if ct.evict(vpc, full, self.config.eviction_attempts).is_none() {
            return Err(full);
        }
        self.stats.flows_evicted += 1;
        // Another worker may take the room first: then this flow is refused.
        ct.try_reserve(vpc)
    }
}

/// Why a packet that matches no flow may not open one, if it may not: a TCP segment other
/// than a bare SYN, or a source address outside the ingress VPC's subnets.
#[inline]
pub(super) fn refuse_opening(
    tables: &Tables,
    Parsed { key, flags, .. }: Parsed,
) -> Option<DropReason> {
    if key.proto == PROTO_TCP && flags & (tcp::SYN | tcp::ACK | tcp::RST | tcp::FIN) != tcp::SYN {
        return Some(DropReason::TcpNoFlow);
    }
    (!tables.admits_source(key.vpc, key.src)).then_some(DropReason::SourceOutsideVpc)
}
