//! Gateway endpoints, end to end: an operator's "object store" (a real HTTP server and a
//! UDP echo on 100.125.0.10, in a namespace of its own behind a router address 10.9.0.1)
//! is a gateway service in the daemon's config. A user VPC creates a gateway endpoint,
//! routes 100.125.0.0/16 through the endpoint's address, and reaches the store on any port,
//! TCP and UDP; other prefixes drop as `no_route`. After the endpoint is deleted it reaches
//! nothing, and a connection open through it is cut (revoked at its next packet); a new
//! endpoint works again until a reload takes the service out of the config.
//! Run with `cargo test -p vpcep-tests -- --ignored`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use serde_json::Value;
use testkit::*;

const STORE_IP: &str = "100.125.0.10";

/// Answers each UDP datagram on 100.125.0.10:5353 with `store:` and the datagram, and
/// echoes TCP on 100.125.0.10:7000.
const ECHO: &str = r#"
import socket, threading
def serve(c):
    while True:
        b = c.recv(4096)
        if not b: break
        c.sendall(b)
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("100.125.0.10", 7000)); s.listen(4)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=tcp, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("100.125.0.10", 5353))
print("ready", flush=True)
while True:
    d, a = u.recvfrom(2048)
    u.sendto(b"store:" + d, a)
"#;

/// One TCP connection to argv[1]:7000, a ping every 100 ms: prints `ok` per echo, `cut`
/// when one does not come back within a second.
const PINGER: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], 7000), timeout=5)
c.settimeout(1)
while True:
    try:
        c.sendall(b"ping"); assert c.recv(16) == b"ping"; print("ok", flush=True)
    except Exception:
        print("cut", flush=True); break
    time.sleep(0.1)
"#;

/// Sends one datagram to argv[1]:5353 and prints the answer (exit 1 after 2 s without).
const UDP_ASK: &str = r#"
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
u.sendto(b"hello", (sys.argv[1], 5353))
print(u.recvfrom(2048)[0].decode())
"#;

/// The gateway service as the operator writes it in the config.
fn gateway_config(vpc: &str) -> String {
    format!(
        "[[gateway_services]]\nname = \"obs\"\nprefixes = [\"100.125.0.0/16\"]\nvpc_id = \"{vpc}\"\nnext_hop = \"10.9.0.1\"\ndescription = \"object store\"\n"
    )
}

/// An HTTP server in `ns` bound to the store's address on `port`, serving `body`.
fn store_http(w: &World, ns: &Netns, port: u16, body: &str) -> Proc {
    let root = w.dir.join(format!("store-{port}"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), body).unwrap();
    let p = ns
        .spawn(
            &[
                "python3",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                STORE_IP,
                "--directory",
                root.to_str().unwrap(),
            ],
            &w.dir.join(format!("store-{port}.log")),
        )
        .unwrap();
    ns.wait_listening("the store", &[port], Duration::from_secs(5))
        .unwrap();
    p
}

fn udp_ask(w: &World) -> Option<String> {
    let out = w.users[0]
        .command("python3")
        .args(["-c", UDP_ASK, STORE_IP])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Create the user's gateway endpoint to `svc` (the VPC alone: the address comes from its
/// subnet) and route the store's prefix through its address; returns (id, address).
fn gateway_endpoint(w: &World, svc: &str) -> (String, String) {
    let vpc = s(&w.ids["uvpcs"][0]).to_string();
    let ep = w
        .ctl(
            USER,
            &["endpoint", "create", "--service", svc, "--vpc", &vpc],
        )
        .unwrap();
    assert_eq!(
        (s(&ep["service_type"]), s(&ep["status"])),
        ("gateway", "accepted"),
        "{ep}"
    );
    assert_eq!(ep["routetables"], serde_json::json!([vpc]));
    let ip = s(&ep["ip"]).to_string();
    let u = &w.users[0];
    let _ = u.exec(&["ip", "route", "del", "100.125.0.0/16"]);
    u.exec(&[
        "ip",
        "route",
        "add",
        "100.125.0.0/16",
        "via",
        &ip,
        "dev",
        "eth0",
    ])
    .unwrap();
    w.wait_live().unwrap();
    (s(&ep["id"]).to_string(), ip)
}

/// curl the store from the user VPC until it answers `body` (a first SYN may meet a table
/// generation not yet loaded), within 10 s.
fn reaches(w: &World, url: &str, body: &str) {
    poll_until(&format!("{url} to answer"), Duration::from_secs(10), || {
        w.curl(0, url, 2).is_ok_and(|b| b == body)
    })
    .unwrap();
}

/// curl fails from the user VPC (polled: the change reaches the workers in a moment).
fn unreachable(w: &World, url: &str) {
    poll_until(
        &format!("{url} to stop answering"),
        Duration::from_secs(10),
        || w.curl(0, url, 2).is_err(),
    )
    .unwrap();
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_user_vpc_reaches_the_object_store_through_a_gateway_endpoint_until_it_is_deleted() {
    assert!(is_root(), "the gateway netns test needs root");
    let mut w = World::new(1).unwrap();
    // The operator's VPC with the store behind a router address, on its own attachment.
    let store_vpc = w
        .ctl(
            PROVIDER,
            &["vpc", "create", "--cidr", "10.9.0.0/16", "--name", "obs"],
        )
        .unwrap()["vpc"]["id"]
        .clone();
    let store = Netns::new(format!("{}-obs", w.prefix)).unwrap();
    veth(
        &store,
        "eth0",
        &w.node,
        &format!("{}o", w.prefix),
        Offloads::Default,
    )
    .unwrap();
    for addr in ["10.9.0.1/24", "100.125.0.10/16"] {
        store
            .exec(&["ip", "addr", "add", addr, "dev", "eth0"])
            .unwrap();
    }
    store
        .exec(&["ip", "route", "add", "198.19.128.0/17", "dev", "eth0"])
        .unwrap();
    let _http = store_http(&w, &store, 80, "object store");
    let _http2 = store_http(&w, &store, 9443, "object store, another port");
    let udp = store
        .spawn(&["python3", "-c", ECHO], &w.dir.join("echo.log"))
        .unwrap();
    poll_until("the echo server", Duration::from_secs(5), || {
        udp.output().contains("ready")
    })
    .unwrap();

    let mut att = w.attachments().to_vec();
    att.push((format!("{}o", w.prefix), s(&store_vpc).to_string()));
    w.set_attachments(att);
    w.write_config(&gateway_config(s(&store_vpc))).unwrap();
    w.reload().unwrap();

    // Tenants find it in the public list, as a gateway service.
    let public = w.ctl(USER, &["service", "public"]).unwrap();
    let svc: &Value = public["endpoint_services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["service_type"] == "gateway")
        .expect("the gateway service is public");
    assert!(s(&svc["service_name"]).starts_with("region-1.obs."));
    let svc = s(&svc["id"]).to_string();

    // Nothing reaches the store before the endpoint.
    let url = format!("http://{STORE_IP}/");
    assert!(w.curl(0, &url, 2).is_err());

    let (ep, ep_ip) = gateway_endpoint(&w, &svc);
    reaches(&w, &url, "object store");
    reaches(
        &w,
        &format!("http://{STORE_IP}:9443/"),
        "object store, another port",
    );
    poll_until("a UDP answer", Duration::from_secs(10), || {
        udp_ask(&w).is_some_and(|a| a == "store:hello")
    })
    .unwrap();
    assert!(
        w.metric("vpcep_dataplane_gateway_flows_total", None)
            .unwrap()
            >= 3.0,
        "TCP on two ports and UDP opened gateway flows"
    );
    // The store saw the node's SNAT address, not the client's.
    let log = std::fs::read_to_string(w.dir.join("store-80.log")).unwrap();
    assert!(log.contains("198.19."), "{log}");

    // Another prefix through the same next hop: no route.
    let u = &w.users[0];
    u.exec(&[
        "ip",
        "route",
        "add",
        "100.127.0.0/16",
        "via",
        &ep_ip,
        "dev",
        "eth0",
    ])
    .unwrap();
    let before = w.drops("no_route").unwrap();
    assert!(w.curl(0, "http://100.127.0.10/", 2).is_err());
    assert!(w.drops("no_route").unwrap() > before);

    // An open connection to the store, echoing.
    let pinger = u
        .spawn(
            &["python3", "-c", PINGER, STORE_IP],
            &w.dir.join("pinger.log"),
        )
        .unwrap();
    poll_until("the pinger's echoes", Duration::from_secs(10), || {
        pinger.output().matches("ok").count() >= 3
    })
    .unwrap();
    let revoked = w
        .metric("vpcep_dataplane_flows_revoked_total", None)
        .unwrap();

    // Deleted: the store is out of reach, and the open connection is cut.
    w.ctl(USER, &["endpoint", "delete", &ep]).unwrap();
    w.wait_live().unwrap();
    poll_until(
        "the open connection to be cut",
        Duration::from_secs(10),
        || pinger.output().contains("cut"),
    )
    .unwrap();
    assert!(
        w.metric("vpcep_dataplane_flows_revoked_total", None)
            .unwrap()
            > revoked
    );
    unreachable(&w, &url);
    assert!(udp_ask(&w).is_none());

    // A new endpoint reaches it again, until a reload takes the service out of the config.
    let (ep2, _) = gateway_endpoint(&w, &svc);
    reaches(&w, &url, "object store");
    w.write_config("").unwrap();
    w.reload().unwrap();
    unreachable(&w, &url);
    let shown = w.ctl(USER, &["endpoint", "show", &ep2]).unwrap();
    assert_eq!(s(&shown["status"]), "failed", "{shown}");
    assert_eq!(s(&shown["error"][0]["error_code"]), "VPC_NOT_ATTACHED");
}
