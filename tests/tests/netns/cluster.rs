//! vpcepd nodes on one etcd, each in its own namespace, two with their own links to the same
//! user and provider VPCs and a third with VPCs of its own (see `testkit::cluster`): a
//! change made through one node's API is answered by the others' and live in the dataplane of
//! those that attach its VPC (curl through them), and compiled by no other; two nodes racing
//! for one endpoint address: exactly one wins; etcd away: writes get 503 (EndPoint.0025)
//! and both dataplanes keep forwarding; etcd back: nothing is lost, and new changes flow.
//!
//! As root: `cargo test -p vpcep-tests --test cluster -- --ignored`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::Barrier;
use std::time::{Duration, Instant};

use testkit::cluster::Cluster;
use testkit::{USER, is_root, s};

#[test]
#[ignore = "needs root + netns + etcd"]
fn a_cluster_shares_one_truth_and_survives_an_etcd_restart() {
    assert!(is_root(), "run as root");
    let mut c = Cluster::with_islands(2, 1, 1).unwrap();
    let (one, two, three) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    // Each node's provider namespace is a host of the same provider VPC at 10.0.0.10; the
    // body says which node's side answered.
    let _www1 = one.http_server("10.0.0.10", 8080, "via node 1").unwrap();
    let _www2 = two.http_server("10.0.0.10", 8080, "via node 2").unwrap();

    // A write through node 1 ...
    let (svc, _) = one.service("10.0.0.10", &["TCP:80:8080"], false).unwrap();
    let ep = one.endpoint(&svc, 0, "10.0.0.200", &[]).unwrap();
    let ep_id = s(&ep["id"]).to_string();
    c.wait_live_everywhere(0).unwrap();
    // ... is answered by node 2's API ...
    let shown = two.ctl(USER, &["endpoint", "show", &ep_id]).unwrap();
    assert_eq!(s(&shown["ip"]), "10.0.0.200");
    assert_eq!(s(&shown["status"]), "accepted");
    // ... and live in both dataplanes that attach its VPC ...
    assert_eq!(one.curl(0, "http://10.0.0.200/", 5).unwrap(), "via node 1");
    assert_eq!(two.curl(0, "http://10.0.0.200/", 5).unwrap(), "via node 2");
    let entries = |w: &testkit::World, what: &str| w.status().unwrap()[what].as_u64().unwrap();
    assert!(entries(two, "accepted_entries") > 0);
    assert_eq!(entries(two, "endpoint_addresses"), 1);
    // ... while the node with other VPCs knows it but compiles nothing of it.
    let shown = three.ctl(USER, &["endpoint", "show", &ep_id]).unwrap();
    assert_eq!(s(&shown["ip"]), "10.0.0.200");
    assert_eq!(entries(three, "accepted_entries"), 0);
    assert_eq!(entries(three, "endpoint_addresses"), 0);

    // Two nodes race to create an endpoint at the same address: exactly one wins, and the
    // loser is told the address is in use (it retried on the winner's model).
    for (round, ip) in ["10.0.0.201", "10.0.0.202", "10.0.0.203"]
        .iter()
        .enumerate()
    {
        let barrier = Barrier::new(2);
        let results: Vec<Result<serde_json::Value, String>> = std::thread::scope(|scope| {
            let hs: Vec<_> = c.nodes[..2]
                .iter()
                .map(|w| {
                    let (barrier, svc) = (&barrier, &svc);
                    scope.spawn(move || {
                        barrier.wait();
                        w.endpoint(svc, 0, ip, &[]).map_err(|e| e.to_string())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        let loss = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(loss.contains("EndPoint.2042"), "round {round}: {loss}");
    }
    c.wait_live_everywhere(1).unwrap();
    let listed = |w: &testkit::World| {
        let v = w.ctl(USER, &["endpoint", "list"]).unwrap();
        let mut ids: Vec<String> = v["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| s(&e["id"]).to_string())
            .collect();
        ids.sort();
        ids
    };
    let before = listed(&c.nodes[0]);
    assert_eq!(before.len(), 4);
    assert_eq!(listed(&c.nodes[1]), before);
    assert_eq!(listed(&c.nodes[2]), before);

    // etcd away: writes answer 503 with EndPoint.0025 on either node; reads and both
    // dataplanes go on (fail static).
    c.etcd.stop();
    let err = c.nodes[1]
        .endpoint(&svc, 0, "10.0.0.210", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("EndPoint.0025"), "{err}");
    assert_eq!(listed(&c.nodes[1]), before);
    assert_eq!(
        c.nodes[1].curl(0, "http://10.0.0.200/", 5).unwrap(),
        "via node 2"
    );
    assert_eq!(
        c.nodes[0].curl(0, "http://10.0.0.200/", 5).unwrap(),
        "via node 1"
    );
    assert_eq!(c.nodes[1].status().unwrap()["store_up"], false);

    // etcd back on the same data: nothing lost, and a change made through node 2 now is
    // live on node 1.
    c.etcd.restart().unwrap();
    let mut made = None;
    testkit::poll_until(
        "a write to go through once etcd is back",
        Duration::from_secs(20),
        || {
            made = c.nodes[1].endpoint(&svc, 0, "10.0.0.211", &[]).ok();
            made.is_some()
        },
    )
    .unwrap();
    c.wait_live_everywhere(1).unwrap();
    let after = listed(&c.nodes[0]);
    assert_eq!(after.len(), 5);
    assert!(before.iter().all(|id| after.contains(id)));
    assert_eq!(listed(&c.nodes[1]), after);
    assert_eq!(
        c.nodes[0].curl(0, "http://10.0.0.211/", 5).unwrap(),
        "via node 1"
    );
    assert_eq!(c.nodes[0].status().unwrap()["store_up"], true);

    // The member list: every node, from its lease, at the revision it applied.
    let names = |w: &testkit::World| -> Vec<(String, u64)> {
        let v = w.ctl(USER, &["cluster", "status"]).unwrap();
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (s(&n["name"]).to_string(), n["revision"].as_u64().unwrap()))
            .collect()
    };
    let rev = c.nodes[0].status().unwrap()["revision"].as_u64().unwrap();
    let all = ["node-0", "node-1", "node-2"].map(|n| (n.to_string(), rev));
    testkit::poll_until(
        "every node listed at the current revision",
        Duration::from_secs(5),
        || names(&c.nodes[1]) == all,
    )
    .unwrap();
    // kill -9 node 2: its lease expires (TTL 3 s) and it leaves the list.
    c.nodes[1].kill_daemon();
    let killed = Instant::now();
    testkit::poll_until(
        "node 2 to leave the member list",
        Duration::from_secs(10),
        || {
            names(&c.nodes[0])
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                == ["node-0", "node-2"]
        },
    )
    .unwrap();
    let gone = killed.elapsed();
    assert!(gone < Duration::from_secs(5), "left after {gone:?}");
    println!("a killed node left the member list after {gone:?}");
}

#[test]
#[ignore = "needs root + netns + etcd"]
fn a_node_cut_off_from_etcd_keeps_forwarding_and_catches_up() {
    assert!(is_root(), "run as root");
    let c = Cluster::new(2, 1).unwrap();
    let (one, two) = (&c.nodes[0], &c.nodes[1]);
    let _www1 = one.http_server("10.0.0.10", 8080, "via node 1").unwrap();
    let _www2 = two.http_server("10.0.0.10", 8080, "via node 2").unwrap();
    let (svc, _) = one.service("10.0.0.10", &["TCP:80:8080"], false).unwrap();
    one.endpoint(&svc, 0, "10.0.0.200", &[]).unwrap();
    c.wait_live_everywhere(0).unwrap();

    // Cut node 2's link to etcd (no reset: its packets just go nowhere).
    let mgmt = format!("{}m", two.prefix);
    let link = |state: &str| two.node.exec(&["ip", "link", "set", &mgmt, state]).unwrap();
    link("down");
    // Node 1 goes on: a new endpoint is live there.
    one.endpoint(&svc, 0, "10.0.0.201", &[]).unwrap();
    one.wait_live().unwrap();
    assert_eq!(one.curl(0, "http://10.0.0.201/", 5).unwrap(), "via node 1");
    // Node 2 refuses writes with 503 EndPoint.0025, and keeps forwarding what it had.
    let err = two
        .endpoint(&svc, 0, "10.0.0.202", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("EndPoint.0025"), "{err}");
    assert_eq!(two.status().unwrap()["store_up"], false);
    assert_eq!(two.curl(0, "http://10.0.0.200/", 5).unwrap(), "via node 2");
    assert!(
        two.curl(0, "http://10.0.0.201/", 1).is_err(),
        "not there yet"
    );

    // Reconnected, it catches up from where it was: the endpoint made meanwhile is live.
    link("up");
    let reconnected = Instant::now();
    c.wait_live_everywhere(0).unwrap();
    let caught_up = reconnected.elapsed();
    assert_eq!(two.curl(0, "http://10.0.0.201/", 5).unwrap(), "via node 2");
    assert_eq!(two.status().unwrap()["store_up"], true);
    println!("node 2 caught up {caught_up:?} after its link came back");
}
