//! The tracker's own tests: capacity, shares, eviction and aging.

use std::time::Duration;

use super::state::*;
use super::*;
use crate::wire::ethernet::MacAddr;

fn tracker(capacity: usize, vpc_percent: u8) -> ConnTrack {
    let config = Config {
        attachments: vec![MacAddr::default(); 3],
        conntrack_capacity: capacity.try_into().unwrap(),
        conntrack_vpc_percent: vpc_percent,
        ..Config::default()
    };
    ConnTrack::new(&config, Instant::now())
}

fn pair(ct: &ConnTrack, client_port: u16, st: u8, now: u32) -> FlowKey {
    pair_in(ct, Attachment(0), client_port, st, now)
}

/// A flow opened by a client of `vpc`, remembered as a candidate.
fn pair_in(ct: &ConnTrack, vpc: Attachment, client_port: u16, st: u8, now: u32) -> FlowKey {
    let fwd = FlowKey {
        src: 0x0a00_000a,
        dst: 0x0a00_00c8,
        sport: client_port,
        dport: 80,
        vpc,
        proto: PROTO_TCP,
    };
    let flow = FlowInit {
        key: fwd,
        rewrite: Rewrite {
            src: 0,
            dst: 0x0a00_000a,
            sport: 0,
            dport: 80,
        },
        out_vpc: Attachment(1),
        backend_mac: MacAddr::default(),
        client_mac: MacAddr::default(),
        state: st,
        reply_state: 0,
        generation: 1,
        last_seen: [now, now],
        client_isn: 0,
        meter: 0,
    };
    assert_eq!(ct.try_reserve(vpc), Ok(()));
    assert_eq!(
        ct.insert_flow(&flow, [(0xc613_8001, client_port)]),
        Ok((0xc613_8001, client_port))
    );
    ct.remember(fwd);
    fwd
}

#[test]
fn capacity_eviction_and_aging() {
    let ct = tracker(2, 100);
    let a = pair(&ct, 1000, ESTABLISHED, 0);
    let b = pair(&ct, 1001, SYN_SENT, 0);
    assert_eq!(ct.len(), 2);
    assert_eq!(
        ct.try_reserve(Attachment(0)),
        Err(Full::Node),
        "hard capacity"
    );
    assert_eq!(
        ct.len_of(Attachment(0)),
        2,
        "a refused reservation leaves nothing"
    );
    assert!(
        !ct.evict_if_embryonic(&a),
        "established flows are never evicted"
    );
    assert!(ct.evict_if_embryonic(&b));
    assert_eq!(ct.len(), 1);
    assert!(ct.get(&b).is_none());
    // Reverse entries go with the flow.
    assert_eq!(ct.index_entries(), 2);
    assert_eq!(ct.age(&a, 349), Aging::Alive);
    // The reply direction alone keeps the flow alive.
    let peer = ct.get(&a).unwrap().peer_key(PROTO_TCP);
    ct.get(&peer).unwrap().touch(300);
    assert_eq!(ct.age(&a, 600), Aging::Alive);
    assert_eq!(ct.age(&a, 650), Aging::Expired);
    assert_eq!(ct.age(&a, 650), Aging::Gone);
    assert!(ct.is_empty());
    assert_eq!(ct.index_entries(), 0);
}

#[test]
fn vpc_shares_and_node_wide_eviction() {
    let (a, c) = (Attachment(0), Attachment(2));
    let ct = tracker(4, 50);
    assert_eq!(ct.vpc_limit(), 2);
    let est = pair_in(&ct, a, 1, ESTABLISHED, 0);
    let emb = pair_in(&ct, a, 2, SYN_SENT, 0);
    assert_eq!(ct.try_reserve(a), Err(Full::Vpc));
    assert_eq!(
        ct.try_reserve(Attachment(9)),
        Err(Full::Vpc),
        "not an attachment"
    );
    // At its share, A can only replace its own embryonic flow.
    assert_eq!(ct.evict(a, Full::Vpc, 8), Some(a));
    assert!(ct.get(&emb).is_none() && ct.get(&est).is_some());
    assert_eq!(ct.evict(a, Full::Vpc, 8), None, "established flows stay");
    pair_in(&ct, a, 3, SYN_SENT, 0);
    pair_in(&ct, c, 11, ESTABLISHED, 0);
    pair_in(&ct, c, 12, UDP_UNREPLIED, 0);
    assert_eq!((ct.len(), ct.len_of(a), ct.len_of(c)), (4, 2, 2));
    assert_eq!(ct.try_reserve(Attachment(1)), Err(Full::Node));
    // Node-wide: the heaviest VPC first (a tie goes to the last), then the others.
    assert_eq!(ct.evict(Attachment(1), Full::Node, 8), Some(c));
    assert_eq!(ct.evict(Attachment(1), Full::Node, 8), Some(a));
    assert_eq!(
        ct.evict(Attachment(1), Full::Node, 8),
        None,
        "only established flows"
    );
    assert_eq!((ct.len(), ct.len_of(a), ct.len_of(c)), (2, 1, 1));
    assert_eq!(ct.try_reserve(Attachment(1)), Ok(()));
    ct.release(Attachment(1));
    assert_eq!(ct.len(), 2);
}

#[test]
fn a_heavy_vpc_of_established_flows_does_not_hide_a_lighter_flood() {
    let (a, c) = (Attachment(0), Attachment(2));
    let ct = tracker(16, 100);
    for port in 0..12 {
        pair_in(&ct, c, 100 + port, ESTABLISHED, 0);
    }
    let flood: Vec<_> = (0..4).map(|p| pair_in(&ct, a, p, SYN_SENT, 0)).collect();
    assert_eq!(ct.try_reserve(Attachment(1)), Err(Full::Node));
    // C's ring holds 12 established flows, more than one call examines there.
    assert_eq!(ct.evict(Attachment(1), Full::Node, 8), Some(a));
    assert_eq!((ct.len_of(a), ct.len_of(c)), (3, 12));
    assert!(ct.get(&flood[0]).is_none());
}

#[test]
fn the_expiry_sweep_gives_evictions_back_their_older_candidates() {
    let config = Config {
        attachments: vec![MacAddr::default()],
        conntrack_capacity: 4.try_into().unwrap(),
        conntrack_vpc_percent: 100,
        eviction_candidates: 1,
        ..Config::default()
    };
    let ct = ConnTrack::new(&config, Instant::now());
    let old = pair(&ct, 1, SYN_SENT, 0);
    let est = pair(&ct, 2, ESTABLISHED, 0);
    let recent = pair(&ct, 3, SYN_SENT, 0); // the ring holds one: this one
    assert_eq!(ct.evict(Attachment(0), Full::Node, 8), Some(Attachment(0)));
    assert!(ct.get(&recent).is_none());
    assert_eq!(ct.evict(Attachment(0), Full::Node, 8), None, "ring used up");
    assert_eq!(ct.age(&est, 1), Aging::Alive);
    assert_eq!(
        ct.evict(Attachment(0), Full::Node, 8),
        None,
        "established: not offered"
    );
    assert_eq!(ct.age(&old, 1), Aging::Alive);
    assert_eq!(ct.evict(Attachment(0), Full::Node, 8), Some(Attachment(0)));
    assert!(ct.get(&old).is_none() && ct.get(&est).is_some());
}

#[test]
fn secs_saturate() {
    let epoch = Instant::now();
    let ct = tracker(1, 50);
    assert_eq!(ct.secs(epoch + Duration::from_millis(2500)), 2);
    assert_eq!(
        ct.secs(epoch.checked_sub(Duration::from_secs(1)).unwrap_or(epoch)),
        0
    );
}
