//! A node that is the standby of attachments (a cluster elected another node their owner):
//! it answers no ARP for their endpoint and SNAT addresses, asks nothing for their backends
//! and opens no flow there; flows it already carries go on. When it becomes the owner, one
//! worker announces the addresses with gratuitous ARP (frames out of the real worker loop).

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use dataplane::io::mem;
use dataplane::tables::Ipv4Cidr;
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::ethernet::MacAddr;
use dataplane::worker::{Worker, spawn};
use dataplane::{Shared, TablePublisher, Tables, WorkerCounters};

const SNAT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 128, 7);

fn who_has(ip: Ipv4Addr) -> Vec<u8> {
    arp(
        1,
        MacAddr::BROADCAST,
        (BACKEND_MAC, Ipv4Addr::new(10, 0, 0, 10)),
        (MacAddr::default(), ip),
    )
}

#[test]
fn a_standby_answers_no_arp_and_opens_no_flow() {
    let mut w = World::new(tables().with_standby(vec![A, B]));
    let mut req = arp(
        1,
        MacAddr::BROADCAST,
        (CLIENT_MAC, CLIENT),
        (MacAddr::default(), ENDPOINT),
    );
    assert_eq!(w.send(A, &mut req), Verdict::Drop(DropReason::ArpNotForUs));
    assert_eq!(
        w.send(B, &mut who_has(SNAT_ADDR)),
        Verdict::Drop(DropReason::ArpNotForUs)
    );
    let mut syn = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut syn), Verdict::Drop(DropReason::NoEndpoint));
    assert_eq!(w.stats().arp_replies, 0);
    assert_eq!(w.stats().flows_created, 0);

    // The owner of both answers both and opens the flow.
    let owner = w.tables.with_standby(Vec::new());
    w.publish(owner);
    assert!(matches!(w.send(A, &mut req), Verdict::Emit { vpc: A, .. }));
    let (op, (mac, ip), _) = seen_arp(&req);
    assert_eq!((op, mac, ip), (2, MAC_A, ENDPOINT));
    let mut snat = who_has(SNAT_ADDR);
    assert!(matches!(w.send(B, &mut snat), Verdict::Emit { vpc: B, .. }));
    assert_eq!(seen_arp(&snat).1, (MAC_B, SNAT_ADDR));
    let mut syn = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));

    // Stepping down leaves the open flow be (its packets still come here until the
    // clients move), and refuses new ones.
    let standby = w.tables.with_standby(vec![A, B]);
    w.publish(standby);
    let mut ack = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "A",
        b"more",
    );
    assert_eq!(w.send(A, &mut ack), Verdict::Forward(B));
    let mut other = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40001),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut other), Verdict::Drop(DropReason::NoEndpoint));
}

#[test]
fn a_standby_solicits_no_backend() {
    let unresolved = Ipv4Addr::new(10, 0, 0, 11);
    let t = tables().with_backends(vec![(B, unresolved)]);
    let mut w = World::new(t.with_standby(vec![B]));
    let mut sent = Vec::new();
    let n = w
        .pipeline
        .solicit(w.now, &w.tables, 8, |v, f| sent.push((v, f.to_vec())));
    assert_eq!((n, sent.len()), (0, 0));
    let owner = w.tables.with_standby(Vec::new());
    w.publish(owner);
    let n = w
        .pipeline
        .solicit(w.now, &w.tables, 8, |v, f| sent.push((v, f.to_vec())));
    assert_eq!(n, 1);
    assert_eq!(seen_arp(&sent[0].1).2.1, unresolved);
}

#[test]
fn the_new_owner_announces_its_addresses_once() {
    // A /29 SNAT range (six usable addresses) keeps the frames countable.
    let snat = Ipv4Cidr::new(Ipv4Addr::new(198, 19, 128, 0), 29).unwrap();
    let base = Tables::new(snat).with_endpoint(A, ENDPOINT, [(TCP, 8080, target(1, 80))]);
    let mut publisher = TablePublisher::new(base.with_standby(vec![A, B]));
    // Two workers over one shared state, each on a backend of its own.
    let shared = Shared::new(&config(64), Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let mut ports = Vec::new();
    let mut handles = Vec::new();
    for i in 0..2 {
        let (backend, port) = mem::pair();
        let pipeline = dataplane::Pipeline::new(config(64), shared.clone());
        let counters = Arc::new(WorkerCounters::default());
        let worker = Worker::new(backend, publisher.reader(), pipeline, counters);
        handles.push(spawn(format!("test-worker-{i}"), worker, Arc::clone(&stop)).unwrap());
        ports.push(port);
    }
    // The failover: both attachments owned now, and announced.
    let next = publisher
        .current()
        .with_standby(Vec::new())
        .with_announcement(vec![A, B]);
    publisher.publish(next);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out: Vec<(dataplane::Attachment, Vec<u8>)> = Vec::new();
    // One round: the endpoint on A, the six SNAT addresses on B.
    while out.len() < 7 {
        assert!(Instant::now() < deadline, "announced only {out:?}");
        for p in &ports {
            out.extend(p.drain());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let garps: Vec<(dataplane::Attachment, MacAddr, Ipv4Addr, Ipv4Addr)> = out
        .iter()
        .map(|(v, f)| {
            let (op, (mac, sender), (_, target)) = seen_arp(f);
            assert_eq!(op, 1, "a request");
            assert_eq!(&f[..6], &[0xff; 6], "broadcast");
            (*v, mac, sender, target)
        })
        .collect();
    let mut want = vec![(A, MAC_A, ENDPOINT, ENDPOINT)];
    want.extend((1..=6).map(|i| {
        let ip = Ipv4Addr::new(198, 19, 128, i);
        (B, MAC_B, ip, ip)
    }));
    assert_eq!(garps, want);
    // The second round comes a second later, from the same worker only.
    let deadline = Instant::now() + dataplane::announce::ROUND_GAP + Duration::from_secs(5);
    let mut per_port = vec![0usize; ports.len()];
    while per_port.iter().sum::<usize>() < 7 {
        assert!(Instant::now() < deadline, "second round: {per_port:?}");
        for (n, p) in per_port.iter_mut().zip(&ports) {
            *n += p.drain().len();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(per_port.iter().sum::<usize>(), 7, "{per_port:?}");
    // Nothing more: the announcement is done, and not taken again by the other worker.
    std::thread::sleep(Duration::from_millis(200));
    assert!(ports.iter().all(|p| p.drain().is_empty()));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap().unwrap();
    }
}
