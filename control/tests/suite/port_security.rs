//! A port's MAC address through the API: taken (validated) at creation or assigned, and
//! returned in every view.

#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

use crate::common::*;
use serde_json::json;

#[test]
fn a_port_keeps_the_mac_it_was_given_or_gets_one() {
    let env = Env::new("portmac");
    let p = &env.provider;
    let (_, sub) = network(p, "10.0.0.0/16");
    let body = |mac: &str| {
        Some(json!({"port": {"subnet_id": sub, "server_type": "VM", "mac_address": mac}}))
    };
    let created = ok(p, "POST", "/ports", body("02:00:00:0A:0b:05"));
    assert_eq!(created["port"]["mac_address"], "02:00:00:0a:0b:05");
    let id = created["port"]["id"].as_str().unwrap();
    let shown = ok(p, "GET", &format!("/ports/{id}"), None);
    assert_eq!(shown["port"]["mac_address"], "02:00:00:0a:0b:05");
    let assigned = ok(
        p,
        "POST",
        "/ports",
        Some(json!({"port": {"subnet_id": sub, "server_type": "VM"}})),
    );
    let mac = assigned["port"]["mac_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(mac.starts_with("fa:16:3e:"), "{mac}");
    let listed = ok(p, "GET", "/ports", None);
    let macs: Vec<&str> = listed["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["mac_address"].as_str().unwrap())
        .collect();
    assert!(macs.contains(&"02:00:00:0a:0b:05") && macs.contains(&mac.as_str()));

    // Refused, and nothing stored: not a MAC, not unicast, or zero.
    let revision = env.running().registry.revision();
    for bad in [
        "02:00:00:0a:0b",
        "02-00-00-0a-0b-06",
        "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        "00:00:00:00:00:00",
    ] {
        fails(p, "POST", "/ports", body(bad), 400, "EndPoint.0002");
    }
    fails(
        p,
        "POST",
        "/ports",
        Some(json!({"port": {"subnet_id": sub, "server_type": "VM", "mac_address": 5}})),
        400,
        "EndPoint.0002",
    );
    assert_eq!(env.running().registry.revision(), revision);
    assert_eq!(
        ok(p, "GET", "/ports", None)["ports"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
