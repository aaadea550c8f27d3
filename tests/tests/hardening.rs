//! Hostile or odd input on the wire, end to end: frames the daemon must not take as its
//! VPC's own.
//! Run with `cargo test -p vpcep-tests -- --ignored`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use vpcep_tests::*;

const EP: &str = "10.0.0.200";

#[test]
#[ignore = "needs root + netns"]
fn a_vlan_tagged_client_is_not_taken_for_the_untagged_vpc() {
    let w = World::new(1).unwrap();
    let _server = w.http_server("10.0.0.10", 80, "untagged only\n").unwrap();
    let (svc, _) = w.service("10.0.0.10", &["TCP:8080:80"], false).unwrap();
    w.endpoint(&svc, 0, EP, &[]).unwrap();
    w.wait_live().unwrap();
    assert_eq!(
        w.curl(0, &format!("http://{EP}:8080/"), 10).unwrap(),
        "untagged only\n"
    );
    // A client on VLAN 100 of the same link asks for the endpoint's MAC. The kernel takes
    // the 802.1Q tag off on receive (before packet sockets see the frame) and reports it
    // beside the frame: the daemon must not take it for the untagged VPC's own.
    let replies = w.metric("vpcep_dataplane_arp_replies_total", None).unwrap();
    let out = w.users[0].exec(&["python3", "-c", TAGGED_ARP, EP]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sent 5");
    poll_until(
        "the tagged frames to be counted",
        std::time::Duration::from_secs(5),
        || w.drops("vlan_tagged").is_ok_and(|n| n >= 5.0),
    )
    .unwrap();
    assert_eq!(
        w.metric("vpcep_dataplane_arp_replies_total", None).unwrap(),
        replies,
        "no ARP answer for a tagged request"
    );
}

/// Five ARP requests for the address in argv[1], tagged with VLAN 100, sent raw on eth0.
const TAGGED_ARP: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac,
                  socket.inet_aton("10.0.0.5"), b"\0" * 6, socket.inet_aton(sys.argv[1]))
frame = b"\xff" * 6 + mac + struct.pack("!HHH", 0x8100, 100, 0x0806) + arp
for _ in range(5):
    s.send(frame.ljust(64, b"\0"))
print("sent 5")
"#;

#[test]
#[ignore = "needs root + netns"]
fn a_source_address_outside_the_vpc_opens_nothing() {
    let w = World::new(1).unwrap();
    let _server = w.http_server("10.0.0.10", 80, "from inside\n").unwrap();
    let (svc, _) = w.service("10.0.0.10", &["TCP:8080:80"], false).unwrap();
    w.endpoint(&svc, 0, EP, &[]).unwrap();
    w.wait_live().unwrap();
    // The VM forges an address its VPC does not hold (192.0.2.7 is in no subnet of it).
    w.users[0]
        .exec(&["ip", "addr", "add", "192.0.2.7/32", "dev", "eth0"])
        .unwrap();
    let forged = w.users[0]
        .command("curl")
        .args(["-sS", "-m", "3", "--interface", "192.0.2.7"])
        .arg(format!("http://{EP}:8080/"))
        .output()
        .unwrap();
    assert!(
        !forged.status.success(),
        "the forged source reached the service"
    );
    assert!(w.drops("source_outside_vpc").unwrap() >= 1.0);
    assert_eq!(
        w.curl(0, &format!("http://{EP}:8080/"), 10).unwrap(),
        "from inside\n"
    );
}
