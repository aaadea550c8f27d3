//! A node that stays up, end to end: an attachment whose link goes down and up, or whose
//! interface is deleted and created again, comes back by itself, while the daemon, its API
//! and the other attachments keep running.
//! Run with `cargo test -p vpcep-tests -- --ignored`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use testkit::*;

const EP: &str = "10.0.0.200";

/// Two user VPCs with an accepted HTTP endpoint each.
fn world() -> (World, Proc) {
    let w = World::new(2).unwrap();
    let server = w.http_server("10.0.0.10", 80, "still here\n").unwrap();
    let (svc, _) = w.service("10.0.0.10", &["TCP:8080:80"], false).unwrap();
    w.endpoint(&svc, 0, EP, &[]).unwrap();
    w.endpoint(&svc, 1, EP, &[]).unwrap();
    w.wait_live().unwrap();
    for i in 0..2 {
        assert_eq!(
            w.curl(i, &format!("http://{EP}:8080/"), 10).unwrap(),
            "still here\n"
        );
    }
    (w, server)
}

/// Wait until `/status` shows attachment `interface` in `state`.
fn link_state(w: &World, interface: &str, state: &str) {
    poll_until(
        &format!("{interface} to show {state} in /status"),
        Duration::from_secs(15),
        || {
            w.status().is_ok_and(|s| {
                s["attachments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["interface"] == interface && a["state"] == state)
            })
        },
    )
    .unwrap();
}

/// Curl from user VPC `i` until it answers, within `timeout`.
fn answers_within(w: &World, i: usize, timeout: Duration) {
    poll_until(
        &format!("user {i} to reach the service again"),
        timeout,
        || {
            w.curl(i, &format!("http://{EP}:8080/"), 2)
                .is_ok_and(|b| b == "still here\n")
        },
    )
    .unwrap();
}

#[test]
#[ignore = "needs root + netns"]
fn a_link_that_goes_down_and_up_comes_back_and_the_rest_keeps_running() {
    let (mut w, _server) = world();
    let dev = format!("{}u0", w.prefix);
    link_state(&w, &dev, "up");
    w.node.exec(&["ip", "link", "set", &dev, "down"]).unwrap();
    link_state(&w, &dev, "down");
    // The other VPC and the API are unaffected while the link is down.
    assert_eq!(
        w.curl(1, &format!("http://{EP}:8080/"), 10).unwrap(),
        "still here\n"
    );
    w.status().unwrap();
    assert!(
        w.daemon.as_mut().unwrap().alive(),
        "the daemon is still running"
    );
    w.node.exec(&["ip", "link", "set", &dev, "up"]).unwrap();
    answers_within(&w, 0, Duration::from_secs(15));
    link_state(&w, &dev, "up");
    let s = w.status().unwrap();
    let flaps: Vec<u64> = s["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["flaps"].as_u64().unwrap())
        .collect();
    assert_eq!(flaps, vec![1, 0, 0], "one flap, on the link that went down");
    assert!(w.daemon.as_mut().unwrap().alive());
}

#[test]
#[ignore = "needs root + netns"]
fn an_interface_deleted_and_created_again_is_taken_back() {
    let (mut w, _server) = world();
    let dev = format!("{}u0", w.prefix);
    // Deleting the node's end deletes the pair: the client loses its eth0 too.
    w.node.exec(&["ip", "link", "del", &dev]).unwrap();
    link_state(&w, &dev, "gone");
    assert_eq!(
        w.curl(1, &format!("http://{EP}:8080/"), 10).unwrap(),
        "still here\n"
    );
    assert!(
        w.daemon.as_mut().unwrap().alive(),
        "the daemon is still running"
    );
    // The operator creates it again, with the same names.
    veth(&w.users[0], "eth0", &w.node, &dev, Offloads::Default).unwrap();
    w.users[0]
        .exec(&["ip", "addr", "add", "10.0.0.5/24", "dev", "eth0"])
        .unwrap();
    answers_within(&w, 0, Duration::from_secs(20));
    link_state(&w, &dev, "up");
    assert_eq!(
        w.curl(1, &format!("http://{EP}:8080/"), 10).unwrap(),
        "still here\n"
    );
    assert!(w.daemon.as_mut().unwrap().alive());
}

/// Every attachment in `/status` shows the kernel ingress drop as `want`.
fn drops_shown(w: &World, want: bool) {
    poll_until(
        &format!("/status to show ingress_drop {want} on every attachment"),
        Duration::from_secs(15),
        || {
            w.status().is_ok_and(|s| {
                let a = s["attachments"].as_array().cloned().unwrap_or_default();
                !a.is_empty() && a.iter().all(|a| a["ingress_drop"] == want)
            })
        },
    )
    .unwrap();
}

/// `KNOCK ip`: a TCP connection to port 9 of `ip` with 1.5 s to answer; prints `refused`
/// or `open` if a stack answered, `silent` if nothing did.
const KNOCK: &str = r#"
import socket, sys
s = socket.socket()
s.settimeout(1.5)
try:
    s.connect((sys.argv[1], 9)); print("open")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("silent", e)
"#;

/// True if a TCP stack at `ip` answers user VPC 0 (a refusal is an answer).
fn answers(w: &World, ip: &str) -> bool {
    let out = w.users[0].exec(&["python3", "-c", KNOCK, ip]).unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!said.is_empty(), "the knock printed nothing: {out:?}");
    !said.starts_with("silent")
}

/// The kernel ingress drop (a direct-action `cls_bpf` filter the daemon loads itself, no
/// `tc`, no `cls_matchall`) is on every attachment, `/status` says so, and the node's own
/// stack sees nothing of an attachment: an address its kernel holds there answers nothing.
/// An interface created again gets the drop back; once the daemon stops, the same address
/// answers (what the drop was holding back).
#[test]
#[ignore = "needs root + netns"]
fn the_kernel_ingress_drop_is_on_every_attachment_and_comes_back_with_the_interface() {
    let (mut w, _server) = world();
    drops_shown(&w, true);
    let dev = format!("{}u0", w.prefix);
    let shown = w
        .node
        .exec(&["tc", "filter", "show", "dev", &dev, "ingress"])
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        shown.contains("vpcep_ingress_drop") && shown.contains("direct-action"),
        "{shown}"
    );
    // An address of the node's kernel on the attachment: its ARP never reaches the stack.
    let kernel_ip = "10.0.0.250";
    w.node
        .exec(&["ip", "addr", "add", &format!("{kernel_ip}/24"), "dev", &dev])
        .unwrap();
    assert!(!answers(&w, kernel_ip), "the node's stack answered");

    // The interface deleted and created again: the drop comes back with it.
    w.node.exec(&["ip", "link", "del", &dev]).unwrap();
    link_state(&w, &dev, "gone");
    veth(&w.users[0], "eth0", &w.node, &dev, Offloads::Default).unwrap();
    w.users[0]
        .exec(&["ip", "addr", "add", "10.0.0.5/24", "dev", "eth0"])
        .unwrap();
    answers_within(&w, 0, Duration::from_secs(20));
    drops_shown(&w, true);
    w.node
        .exec(&["ip", "addr", "add", &format!("{kernel_ip}/24"), "dev", &dev])
        .unwrap();
    assert!(!answers(&w, kernel_ip), "the node's stack answered");

    // The daemon stops and takes the drop with it: the node's stack answers now.
    assert!(w.stop_daemon());
    poll_until(
        "the node's stack to answer",
        Duration::from_secs(10),
        || answers(&w, kernel_ip),
    )
    .unwrap();
}
