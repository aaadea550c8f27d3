//! The election of VPC owners (`control::store::owners`) against a real etcd (on host
//! loopback ports; no namespaces, no root): two nodes attaching the same VPCs, exactly one
//! owns them all; a clean stop hands them over at once; a node that dies (its runtime gone,
//! its lease never revoked) hands them over when its lease expires, within the TTL; a VPC a
//! node no longer attaches goes to the other.
//!
//! Needs the `etcd` binary (apt `etcd-server`): `cargo test -p vpcep-tests --test
//! etcd_owners -- --ignored`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control::store::owners::{self, Election, OwnerEvent};
use control::store::{EtcdConfig, EtcdStore};
use testkit::etcd::Etcd;

const TTL: Duration = Duration::from_secs(3);

/// One node: its store, its election, and what it was told it owns.
struct Node {
    store: Option<Arc<EtcdStore>>,
    election: Option<Election>,
    owned: Receiver<BTreeSet<String>>,
    last: Option<BTreeSet<String>>,
    attached: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(etcd: &Etcd, name: &str, vpcs: &[&str]) -> Self {
        let cfg = EtcdConfig {
            endpoints: vec![etcd.url.clone()],
            prefix: "/owners-test/".into(),
            timeout_ms: 1000,
            ..EtcdConfig::default()
        };
        let store = Arc::new(EtcdStore::connect(&cfg).unwrap());
        let attached = Arc::new(Mutex::new(
            vpcs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ));
        let (tx, owned) = channel();
        let a = Arc::clone(&attached);
        let election = Election::start(
            &store,
            name,
            TTL,
            Box::new(move || a.lock().unwrap().clone()),
            Box::new(move |event| {
                // No dataplane here: published as soon as told; handovers are not counted.
                if let OwnerEvent::Owned { vpcs, published } = event {
                    let _ = tx.send(vpcs);
                    let _ = published.send(());
                }
            }),
        );
        Self {
            store: Some(store),
            election: Some(election),
            owned,
            last: None,
            attached,
        }
    }

    /// Wait (at most `within`) until the node is told it owns exactly `want`.
    fn wait_owns(&mut self, want: &[&str], within: Duration) -> Duration {
        let want: BTreeSet<String> = want.iter().map(ToString::to_string).collect();
        let started = Instant::now();
        while self.last.as_ref() != Some(&want) {
            let left = within
                .checked_sub(started.elapsed())
                .unwrap_or_else(|| panic!("owns {:?}, not {want:?}, after {within:?}", self.last));
            if let Ok(o) = self.owned.recv_timeout(left) {
                self.last = Some(o);
            }
        }
        started.elapsed()
    }

    /// Dies: the runtime goes (the election's task with it), the lease is never revoked.
    fn crash(&mut self) {
        drop(self.store.take());
        drop(self.election.take());
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn owner_names(etcd_node: &Node) -> Vec<(String, String)> {
    owners::owners(etcd_node.store.as_ref().unwrap()).unwrap()
}

#[test]
#[ignore = "needs etcd (apt etcd-server)"]
fn one_node_owns_a_shared_vpc_and_a_standby_takes_over() {
    let etcd = Etcd::start().unwrap();
    let mut a = Node::start(&etcd, "node-a", &["user", "provider"]);
    a.wait_owns(&["user", "provider"], Duration::from_secs(5));
    let mut b = Node::start(&etcd, "node-b", &["user", "provider", "other"]);
    // b owns what only it attaches, and none of the VPCs a owns.
    b.wait_owns(&["other"], Duration::from_secs(5));
    // Several campaigns later nothing moved. (A sleep on purpose: it shows that something
    // does not happen.)
    std::thread::sleep(TTL);
    assert!(a.owned.try_recv().is_err(), "a's ownership changed");
    assert!(b.owned.try_recv().is_err(), "b's ownership changed");
    assert_eq!(
        owner_names(&b),
        [
            ("other".to_string(), "node-b".to_string()),
            ("provider".into(), "node-a".into()),
            ("user".into(), "node-a".into()),
        ]
    );

    // a stops cleanly: its lease is revoked and b owns everything well before a TTL.
    rt().block_on(a.election.take().unwrap().resign());
    let took = b.wait_owns(&["user", "provider", "other"], TTL);
    // The standby's next campaign (a third of the TTL apart), with room for a loaded
    // machine: two of them.
    assert!(took < TTL * 2 / 3, "took over after {took:?}");
    println!("clean handover: {took:?}");

    // a comes back: a standby now (b holds the keys).
    // Its first campaign's report (nothing reported yet is no match): it owns nothing.
    let mut a = Node::start(&etcd, "node-a", &["user", "provider"]);
    a.wait_owns(&[], Duration::from_secs(2));

    // b dies without a word: a owns the shared VPCs once b's lease expires (within the
    // TTL of the last renewal, a third of a TTL before the death at most).
    b.crash();
    let killed = Instant::now();
    a.wait_owns(&["user", "provider"], TTL + Duration::from_secs(2));
    let failover = killed.elapsed();
    assert!(failover <= TTL + Duration::from_millis(500), "{failover:?}");
    println!("failover after a crash: {failover:?} (TTL {TTL:?})");
    // "other", attached by nobody alive, has no owner left.
    assert_eq!(
        owner_names(&a),
        [
            ("provider".to_string(), "node-a".to_string()),
            ("user".into(), "node-a".into()),
        ]
    );
}

#[test]
#[ignore = "needs etcd (apt etcd-server)"]
fn a_vpc_no_longer_attached_goes_to_the_other_node() {
    let etcd = Etcd::start().unwrap();
    let mut a = Node::start(&etcd, "node-a", &["user", "provider"]);
    a.wait_owns(&["user", "provider"], Duration::from_secs(5));
    let mut b = Node::start(&etcd, "node-b", &["user", "provider"]);
    b.wait_owns(&[], Duration::from_secs(2));
    // A reload on a drops the user VPC: a gives it up at its next campaign, b takes it.
    a.attached.lock().unwrap().retain(|v| v != "user");
    a.wait_owns(&["provider"], TTL);
    b.wait_owns(&["user"], TTL);
}
