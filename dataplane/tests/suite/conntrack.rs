//! The flow table under the tracker, through its public API: a property test against a
//! `HashMap` model (insert, look up both directions, remove by either key, capacity, SNAT
//! collisions), and workers racing on one shared tracker (no lost, duplicated or torn
//! flows; hard capacity; eviction never takes an established flow).

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::collections::{HashMap, HashSet};
use std::sync::Barrier;
use std::time::Instant;

use dataplane::conntrack::flowlog::EndReason;
use dataplane::conntrack::state::{ESTABLISHED, SYN_SENT, UDP_UNREPLIED};
use dataplane::conntrack::{ConnTrack, Direction, FlowInit, Full, InsertError, Rewrite};
use dataplane::wire::ethernet::MacAddr;
use dataplane::{Attachment, Config, FlowKey};
use proptest::prelude::*;

const CLIENT_VPC: Attachment = Attachment(0);
const BACKEND_VPC: Attachment = Attachment(1);
const SNAT_IP: u32 = 0xc613_8001;
const BACKEND_IP: u32 = 0x0a00_000a;

fn tracker(capacity: usize) -> ConnTrack {
    let config = Config {
        attachments: vec![
            MacAddr([2, 0, 0, 0, 0, 0xa0]),
            MacAddr([2, 0, 0, 0, 0, 0xb0]),
        ],
        conntrack_capacity: capacity.try_into().unwrap(),
        conntrack_vpc_percent: 100,
        ..Config::default()
    };
    ConnTrack::new(&config, Instant::now())
}

/// Flow `i`'s original key: clients spread over three addresses, TCP and UDP.
fn key(i: u32) -> FlowKey {
    FlowKey {
        src: 0x0a01_0000 + i % 3,
        dst: 0x0a00_00c8,
        sport: u16::try_from(1000 + i).unwrap(),
        dport: 8080,
        vpc: CLIENT_VPC,
        proto: if i.is_multiple_of(2) { 6 } else { 17 },
    }
}

fn flow(i: u32, state: u8) -> FlowInit {
    FlowInit {
        key: key(i),
        rewrite: Rewrite {
            src: 0,
            dst: BACKEND_IP,
            sport: 0,
            dport: 80,
        },
        out_vpc: BACKEND_VPC,
        backend_mac: MacAddr([2, 0, 0, 0, 0, 0x10]),
        client_mac: MacAddr([2, 0, 0, 0, 1, u8::try_from(i % 256).unwrap()]),
        state,
        reply_state: 0,
        generation: 7,
        last_seen: [i, i],
        client_isn: 0,
        meter: 0,
    }
}

/// The reply key of flow `i` if it holds SNAT port `port`.
fn reply_key(i: u32, port: u16) -> FlowKey {
    let rw = Rewrite {
        src: SNAT_IP,
        dst: BACKEND_IP,
        sport: port,
        dport: 80,
    };
    rw.reply_key(BACKEND_VPC, key(i).proto)
}

/// Check both directions of flow `i`, holding SNAT port `port`, as a lookup returns them.
fn assert_flow(ct: &ConnTrack, i: u32, port: u16) {
    let k = key(i);
    let e = ct.get(&k).expect("original direction");
    assert_eq!(e.dir, Direction::Original);
    assert_eq!(
        (e.rewrite.src, e.rewrite.sport),
        (SNAT_IP, port),
        "flow {i}"
    );
    assert_eq!((e.rewrite.dst, e.rewrite.dport), (BACKEND_IP, 80));
    assert_eq!(e.out_vpc, BACKEND_VPC);
    let r = ct.get(&reply_key(i, port)).expect("reply direction");
    assert_eq!(r.dir, Direction::Reply);
    assert_eq!(r.rewrite, Rewrite::back_to(&k), "flow {i}");
    assert_eq!(r.out_vpc, CLIENT_VPC);
    assert_eq!(r.dst_mac, flow(i, 0).client_mac);
}

#[derive(Clone, Debug)]
enum Op {
    Open(u32),
    RemoveByOriginal(u32),
    RemoveByReply(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..48u32).prop_map(Op::Open),
        1 => (0..48u32).prop_map(Op::RemoveByOriginal),
        1 => (0..48u32).prop_map(Op::RemoveByReply),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_table_behaves_as_a_map_of_flows(ops in prop::collection::vec(op(), 1..160)) {
        const CAPACITY: usize = 24;
        let ct = tracker(CAPACITY);
        // Flow -> its SNAT port; (protocol, port) pairs whose reply key is taken.
        let mut model: HashMap<u32, u16> = HashMap::new();
        let mut taken: HashSet<(u8, u16)> = HashSet::new();
        for op in ops {
            match op {
                Op::Open(i) => {
                    if ct.try_reserve(CLIENT_VPC).is_err() {
                        prop_assert_eq!(model.len(), CAPACITY, "refused below capacity");
                        continue;
                    }
                    // Its own port first, then one every flow competes for.
                    let own = u16::try_from(2000 + i).unwrap();
                    let candidates = [(SNAT_IP, own), (SNAT_IP, 3000)];
                    let proto = key(i).proto;
                    let free = candidates.iter().find(|(_, p)| !taken.contains(&(proto, *p)));
                    let expected = match free {
                        None => Err(InsertError::SnatExhausted),
                        Some(_) if model.contains_key(&i) => Err(InsertError::Exists),
                        Some(&c) => Ok(c),
                    };
                    let got = ct.insert_flow(&flow(i, SYN_SENT), candidates);
                    prop_assert_eq!(got, expected);
                    match got {
                        Ok((_, port)) => {
                            model.insert(i, port);
                            taken.insert((proto, port));
                        }
                        Err(_) => ct.release(CLIENT_VPC),
                    }
                }
                Op::RemoveByOriginal(i) => {
                    let gone = model.remove(&i);
                    prop_assert_eq!(ct.remove_flow(&key(i), EndReason::Deleted), gone.is_some());
                    if let Some(port) = gone {
                        taken.remove(&(key(i).proto, port));
                    }
                }
                Op::RemoveByReply(i) => {
                    let port = model.get(&i).copied().unwrap_or(1); // 1: no flow's port
                    let present = model.contains_key(&i);
                    prop_assert_eq!(ct.remove_flow(&reply_key(i, port), EndReason::Deleted), present);
                    if present {
                        model.remove(&i);
                        taken.remove(&(key(i).proto, port));
                    }
                }
            }
            prop_assert_eq!(ct.len(), model.len());
            prop_assert_eq!(ct.len_of(CLIENT_VPC), model.len());
            prop_assert_eq!(ct.index_entries(), 2 * model.len());
            for i in 0..48 {
                match model.get(&i) {
                    Some(&port) => assert_flow(&ct, i, port),
                    None => prop_assert!(ct.get(&key(i)).is_none(), "flow {} lingers", i),
                }
            }
        }
        prop_assert_eq!(ct.flows().len(), model.len());
    }
}

#[test]
fn records_run_out_at_capacity_and_are_reused() {
    let ct = tracker(4);
    for i in 0..4 {
        let port = u16::try_from(2000 + i).unwrap();
        assert_eq!(
            ct.insert_flow(&flow(i, SYN_SENT), [(SNAT_IP, port)]),
            Ok((SNAT_IP, port))
        );
    }
    // Without a reservation (the caller's job) the records themselves refuse a fifth.
    assert_eq!(
        ct.insert_flow(&flow(4, SYN_SENT), [(SNAT_IP, 2004)]),
        Err(InsertError::TableFull)
    );
    assert!(ct.get(&key(4)).is_none());
    assert_eq!(ct.index_entries(), 8);
    assert!(ct.remove_flow(&key(1), EndReason::Deleted));
    assert_eq!(
        ct.insert_flow(&flow(4, SYN_SENT), [(SNAT_IP, 2004)]),
        Ok((SNAT_IP, 2004))
    );
    assert_flow(&ct, 4, 2004);
    assert!(
        ct.get(&key(1)).is_none(),
        "the reused record is the new flow's only"
    );
    assert_eq!(ct.footprint(), tracker(4).footprint(), "nothing grew");
}

#[test]
fn racing_opens_of_one_flow_insert_it_once() {
    let ct = tracker(64);
    let barrier = Barrier::new(4);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u16)
            .map(|w| {
                let (ct, barrier) = (&ct, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    ct.insert_flow(&flow(0, SYN_SENT), [(SNAT_IP, 5000 + w)])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<_> = results.iter().filter_map(|r| r.ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || *r == Err(InsertError::Exists))
    );
    assert_eq!(ct.index_entries(), 2, "the losers' reply keys are gone");
    assert_flow(&ct, 0, won[0].1);
}

#[test]
fn workers_sharing_the_table_lose_duplicate_and_tear_nothing() {
    const WORKERS: u32 = 4;
    const PER_WORKER: u32 = 2000;
    const ROUNDS: u32 = 6;
    let ct = tracker(usize::try_from(WORKERS * PER_WORKER).unwrap());
    let port = |i: u32| u16::try_from(10_000 + i).unwrap();
    let key_of = |i: u32| FlowKey {
        sport: u16::try_from(i % 60_000).unwrap() + 1,
        src: 0x0a02_0000 + i / 60_000,
        proto: 6,
        ..key(0)
    };
    let new_flow = |i: u32| FlowInit {
        key: key_of(i),
        ..flow(0, ESTABLISHED)
    };
    let check = |ct: &ConnTrack, i: u32, must: bool| {
        let k = key_of(i);
        match ct.get(&k) {
            Some(e) => {
                // A torn read would pair one flow's key with another's rewrite.
                assert_eq!(e.rewrite.sport, port(i), "flow {i}");
                let peer = e.peer_key(6);
                if let Some(r) = ct.get(&peer) {
                    assert_eq!(r.rewrite, Rewrite::back_to(&k), "flow {i}");
                }
            }
            None => assert!(!must, "flow {i} lost"),
        }
    };
    let barrier = Barrier::new(usize::try_from(WORKERS).unwrap());
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (ct, barrier) = (&ct, &barrier);
            s.spawn(move || {
                barrier.wait();
                let mine = w * PER_WORKER..(w + 1) * PER_WORKER;
                for round in 0..ROUNDS {
                    for i in mine.clone() {
                        if ct.get(&key_of(i)).is_none() {
                            ct.try_reserve(CLIENT_VPC).expect("room for every flow");
                            let got = ct.insert_flow(&new_flow(i), [(SNAT_IP, port(i))]);
                            assert_eq!(got, Ok((SNAT_IP, port(i))));
                        }
                    }
                    for i in mine.clone() {
                        check(ct, i, true);
                        // Another worker's flow: present or not, never torn.
                        check(ct, (i + PER_WORKER) % (WORKERS * PER_WORKER), false);
                        let e = ct.get(&key_of(i)).expect("mine");
                        e.touch(round);
                        e.update_state(|s| s ^ 0x08);
                    }
                    // Remove a different half each round.
                    for i in mine.clone().filter(|i| (i + round) % 2 == 0) {
                        assert!(ct.remove_flow(&key_of(i), EndReason::Deleted), "flow {i}");
                    }
                }
            });
        }
    });
    let left = usize::try_from(WORKERS * PER_WORKER / 2).unwrap();
    assert_eq!(ct.len(), left);
    assert_eq!(ct.index_entries(), 2 * left);
    assert_eq!(ct.flows().len(), left);
    for i in 0..WORKERS * PER_WORKER {
        let live = !(i + ROUNDS - 1).is_multiple_of(2);
        assert_eq!(ct.get(&key_of(i)).is_some(), live, "flow {i}");
    }
}

#[test]
fn a_full_table_under_racing_openers_stays_at_capacity_and_keeps_established_flows() {
    const CAPACITY: u32 = 64;
    let ct = tracker(usize::try_from(CAPACITY).unwrap());
    let established: Vec<FlowKey> = (0..CAPACITY / 2)
        .map(|i| {
            ct.try_reserve(CLIENT_VPC).unwrap();
            let port = u16::try_from(2000 + i).unwrap();
            ct.insert_flow(&flow(i * 2, ESTABLISHED), [(SNAT_IP, port)])
                .unwrap();
            ct.remember(key(i * 2));
            key(i * 2)
        })
        .collect();
    let opened: u32 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u32)
            .map(|w| {
                let ct = &ct;
                s.spawn(move || {
                    let mut opened = 0;
                    for n in 0..200u32 {
                        let i = 1000 + w * 1000 + n;
                        if let Err(full) = ct.try_reserve(CLIENT_VPC) {
                            assert_eq!(full, Full::Node);
                            if ct.evict(CLIENT_VPC, full, 8).is_none()
                                || ct.try_reserve(CLIENT_VPC).is_err()
                            {
                                continue;
                            }
                        }
                        let f = FlowInit {
                            key: FlowKey {
                                sport: u16::try_from(i).unwrap(),
                                src: 0x0a03_0000 + w,
                                ..key(1)
                            },
                            state: UDP_UNREPLIED,
                            ..flow(1, UDP_UNREPLIED)
                        };
                        let port = u16::try_from(20_000 + i).unwrap();
                        ct.insert_flow(&f, [(SNAT_IP, port)]).unwrap();
                        ct.remember(f.key);
                        opened += 1;
                    }
                    opened
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(
        opened >= 32,
        "embryonic flows made room for each other: {opened}"
    );
    assert_eq!(
        ct.len(),
        usize::try_from(CAPACITY).unwrap(),
        "full, never over"
    );
    assert_eq!(ct.index_entries(), 2 * ct.len());
    for k in &established {
        assert!(ct.get(k).is_some(), "established flow {k:?} evicted");
    }
}

#[test]
fn the_table_costs_100_bytes_a_flow_of_capacity_whatever_the_capacity() {
    // Records (64 B), one word beside each (the client ISN, 4 B, touched only by flows
    // with client identity) and index (two 8-byte entries at four in seven ways, 32 B); no
    // rounding up to a power of two, so a capacity just past one costs no more.
    for capacity in [3usize, 1000, 1 << 16, (1 << 16) + 1, 100_003] {
        let bytes = tracker(capacity).footprint();
        assert!(bytes >= capacity * 100, "{capacity}: {bytes}");
        assert!(bytes <= capacity * 100 + 448, "{capacity}: {bytes}");
    }
}

#[test]
fn workers_churning_the_same_flows_keep_one_flow_a_key_and_exact_counts() {
    // Every worker opens and removes flows from one small pool at random, so the same key
    // is opened, removed and opened again by different workers at once.
    const POOL: u32 = 48;
    let ct = tracker(usize::try_from(POOL).unwrap());
    let port = |i: u32| u16::try_from(30_000 + i).unwrap();
    let barrier = Barrier::new(4);
    std::thread::scope(|s| {
        for w in 0..4u64 {
            let (ct, barrier) = (&ct, &barrier);
            s.spawn(move || {
                barrier.wait();
                let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (w << 32 | 1);
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = u32::try_from(x % u64::from(POOL)).unwrap();
                    match (x >> 8) % 3 {
                        0 | 1 => {
                            if ct.try_reserve(CLIENT_VPC).is_err() {
                                continue;
                            }
                            match ct.insert_flow(&flow(i, SYN_SENT), [(SNAT_IP, port(i))]) {
                                Ok(_) => {}
                                // Its reply key is the live flow's, or the original is.
                                Err(InsertError::SnatExhausted | InsertError::Exists) => {
                                    ct.release(CLIENT_VPC);
                                }
                                Err(e) => panic!("flow {i}: {e:?}"),
                            }
                        }
                        _ => {
                            ct.remove_flow(&key(i), EndReason::Deleted);
                        }
                    }
                    if let Some(e) = ct.get(&key(i)) {
                        assert_eq!(e.rewrite.sport, port(i), "flow {i}");
                    }
                }
            });
        }
    });
    let live = (0..POOL).filter(|&i| ct.get(&key(i)).is_some()).count();
    for i in (0..POOL).filter(|&i| ct.get(&key(i)).is_some()) {
        assert_flow(&ct, i, port(i));
    }
    assert_eq!(ct.len(), live, "no reservation leaked or lost");
    assert_eq!(ct.len_of(CLIENT_VPC), live);
    assert_eq!(
        ct.index_entries(),
        2 * live,
        "one entry a key and direction"
    );
    assert_eq!(ct.flows().len(), live);
}
