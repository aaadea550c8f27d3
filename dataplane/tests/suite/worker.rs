//! The real worker loop over the in-memory backend: frames in, verdicts applied, frames
//! out, counters and the loaded generation published.

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use dataplane::io::mem;
use dataplane::worker::{Worker, spawn};
use dataplane::{Shared, TablePublisher, WorkerCounters};

/// A worker thread over the in-memory backend, stopped and joined on drop.
struct Running {
    port: mem::MemPort,
    counters: Arc<WorkerCounters>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<(), dataplane::io::BackendError>>>,
}

impl Running {
    fn start(publisher: &TablePublisher, shared: Shared, capacity: usize) -> Self {
        let (backend, port) = mem::pair();
        let counters = Arc::new(WorkerCounters::default());
        let pipeline = dataplane::Pipeline::new(config(capacity), shared);
        let worker = Worker::new(backend, publisher.reader(), pipeline, Arc::clone(&counters));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = spawn("test-worker".into(), worker, Arc::clone(&stop)).unwrap();
        Self {
            port,
            counters,
            stop,
            handle: Some(handle),
        }
    }

    /// Stop the worker and return how its loop ended.
    fn join(self) -> Result<(), dataplane::io::BackendError> {
        self.stop.store(true, Ordering::Relaxed);
        self.wait()
    }

    /// Wait for the worker to end by itself and return how its loop ended.
    fn wait(mut self) -> Result<(), dataplane::io::BackendError> {
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn worker_thread_forwards_and_publishes_counters() {
    let shared = Shared::new(&config(64), Instant::now());
    shared.neighbours.learn(B, BACKEND.to_bits(), BACKEND_MAC);
    let mut publisher = TablePublisher::new(tables());
    let w = Running::start(&publisher, shared, 64);
    let (port, counters) = (&w.port, &w.counters);

    port.inject(
        A,
        tcp(
            (CLIENT_MAC, MAC_A),
            (CLIENT, 40000),
            (ENDPOINT, 8080),
            "S",
            b"",
        ),
    );
    port.inject(A, vec![0u8; 5]); // malformed
    port.inject(A, vec![0u8; dataplane::config::MAX_FRAME_BYTES + 100]); // over the limit
    let mut out = Vec::new();
    testkit::poll_until("the SYN to come out", Duration::from_secs(5), || {
        out.extend(port.drain());
        !out.is_empty()
    })
    .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, B);
    assert_eq!(seen(&out[0].1).dst, (BACKEND, 80));
    testkit::poll_until("counters", Duration::from_secs(5), || {
        let s = counters.read();
        s.rx_frames == 3
            && s.forwarded == 1
            && s.dropped(dataplane::DropReason::Malformed) == 1
            && s.dropped(dataplane::DropReason::Oversize) == 1
    })
    .unwrap();
    assert_eq!(counters.generation.load(Ordering::Relaxed), 1);

    // A new generation reaches the worker without any packet (idle polls load it too).
    let g = publisher.publish(tables());
    testkit::poll_until(
        "the worker to load the new generation",
        Duration::from_secs(5),
        || counters.generation.load(Ordering::Relaxed) == g,
    )
    .unwrap();
    w.join().unwrap();
}

#[test]
fn a_frame_whose_vlan_tag_the_kernel_stripped_belongs_to_no_vpc() {
    let shared = Shared::new(&config(64), Instant::now());
    shared.neighbours.learn(B, BACKEND.to_bits(), BACKEND_MAC);
    let publisher = TablePublisher::new(tables());
    let w = Running::start(&publisher, shared, 64);
    let syn = |port| {
        tcp(
            (CLIENT_MAC, MAC_A),
            (CLIENT, port),
            (ENDPOINT, 8080),
            "S",
            b"",
        )
    };
    let none = dataplane::wire::offload::VnetHdr::NONE;
    w.port
        .inject_with(A, none, dataplane::io::VlanTag::Tagged(100), syn(40000));
    w.port
        .inject_with(A, none, dataplane::io::VlanTag::Unknown, syn(40001));
    w.port.inject(A, syn(40002));
    let mut out = Vec::new();
    testkit::poll_until(
        "the untagged SYN to come out",
        Duration::from_secs(5),
        || {
            out.extend(w.port.drain());
            !out.is_empty()
        },
    )
    .unwrap();
    assert_eq!(out.len(), 1, "only the untagged frame is forwarded");
    testkit::poll_until("counters", Duration::from_secs(5), || {
        let s = w.counters.read();
        s.rx_frames == 3
            && s.forwarded == 1
            && s.dropped(dataplane::DropReason::VlanTagged) == 1
            && s.dropped(dataplane::DropReason::Malformed) == 1
    })
    .unwrap();
}

#[test]
fn a_closed_backend_stops_the_worker_with_an_error() {
    let publisher = TablePublisher::new(tables());
    let w = Running::start(&publisher, Shared::new(&config(8), Instant::now()), 8);
    w.port.close();
    let err = w.wait().unwrap_err();
    assert!(matches!(err, dataplane::io::BackendError::Closed));
}

#[test]
fn backends_are_resolved_ahead_of_traffic() {
    let shared = Shared::new(&config(8), Instant::now());
    let other = std::net::Ipv4Addr::new(10, 0, 0, 11);
    // One backend known, one not: only the unknown one is asked for, with no packet sent.
    shared.neighbours.learn(B, BACKEND.to_bits(), BACKEND_MAC);
    let publisher = TablePublisher::new(tables().with_backends(vec![(B, BACKEND), (B, other)]));
    let w = Running::start(&publisher, shared, 8);
    let mut out = Vec::new();
    testkit::poll_until(
        "an ARP request for the unknown backend",
        Duration::from_secs(5),
        || {
            out.extend(w.port.drain());
            !out.is_empty()
        },
    )
    .unwrap();
    let counters = Arc::clone(&w.counters);
    w.join().unwrap();
    assert_eq!(out.len(), 1, "one request, for the unresolved backend only");
    let (vpc, frame) = &out[0];
    assert_eq!(*vpc, B);
    let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Arp(a)) = p.net else {
        panic!("not ARP")
    };
    assert_eq!(a.operation(), etherparse::ArpOperation::REQUEST);
    assert_eq!(a.target_protocol_addr(), &other.octets());
    assert_eq!(&frame[6..12], &MAC_B.0);
    assert!(counters.read().arp_requests >= 1);
}
