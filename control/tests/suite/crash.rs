//! Durability: the real `vpcepd` is killed with SIGKILL in the middle of a stream of writes;
//! after a restart every acknowledged change is there, and no change is half applied (a
//! port deletion and the suspension of its services commit together).

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{PROVIDER, daemon_files, free_port, poll_until, temp_dir};
use control::client::Client;
use serde_json::{Value, json};

/// The daemon process, killed (by its pid) when dropped, also when the test fails.
struct Daemon(Child);

impl Daemon {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(dir: &std::path::Path, port: u16) -> Daemon {
    Daemon(spawn_child(dir, port))
}

fn spawn_child(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vpcepd"))
        .arg("--config")
        .arg(dir.join("vpcepd.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
        .tap_wait(port)
}

trait TapWait {
    fn tap_wait(self, port: u16) -> Self;
}

impl TapWait for Child {
    fn tap_wait(self, port: u16) -> Self {
        poll_until("vpcepd to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .unwrap();
        self
    }
}

#[test]
fn sigkill_during_writes_loses_nothing_acknowledged() {
    let dir = temp_dir("crash");
    let (api, admin) = (free_port(), free_port());
    daemon_files(
        &dir,
        &format!("127.0.0.1:{api}"),
        &format!("127.0.0.1:{admin}"),
        "",
    );
    let c = Client::new(
        &format!("http://127.0.0.1:{api}"),
        PROVIDER.0,
        PROVIDER.1,
        PROVIDER.3,
    );
    let mut child = spawn(&dir, api);
    let vpc = c
        .call(
            "POST",
            &c.path("/vpcs"),
            &[],
            Some(&json!({"vpc": {"cidr": "10.0.0.0/16"}})),
        )
        .unwrap()["vpc"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sub = c
        .call(
            "POST",
            &c.path("/subnets"),
            &[],
            Some(&json!({"subnet": {"vpc_id": vpc, "cidr": "10.0.0.0/22"}})),
        )
        .unwrap()["subnet"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut acked_ports: Vec<String> = Vec::new();
    let mut acked_deleted: Vec<String> = Vec::new();
    let mut maybe: Vec<String> = Vec::new(); // deletions in flight at a kill
    for round in 0..2 {
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, sub2, stop2) = (c.clone(), sub.clone(), Arc::clone(&stop));
        // The writer: create a port and a service on it, then delete the port (which
        // suspends the service in the same transaction). Records what was acknowledged.
        let writer = std::thread::spawn(move || {
            let mut ports = Vec::new();
            let mut deleted = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                let Ok(p) = c2.call(
                    "POST",
                    &c2.path("/ports"),
                    &[],
                    Some(&json!({"port": {"subnet_id": sub2, "server_type": "VM"}})),
                ) else {
                    break;
                };
                let pid = p["port"]["id"].as_str().unwrap().to_string();
                ports.push(pid.clone());
                let body = json!({"vpc_id": p["port"]["vpc_id"], "port_id": pid, "server_type": "VM", "ports": [{"client_port": 80, "server_port": 80}]});
                if c2
                    .call("POST", &c2.path("/vpc-endpoint-services"), &[], Some(&body))
                    .is_err()
                {
                    break;
                }
                if c2
                    .call("DELETE", &c2.path(&format!("/ports/{pid}")), &[], None)
                    .is_err()
                {
                    return (ports, deleted, Some(pid)); // unacknowledged: may or may not have committed
                }
                deleted.push(pid);
            }
            (ports, deleted, None)
        });
        // Let some writes land, then SIGKILL mid-stream.
        let target = 10 + round * 10u64;
        poll_until("writes to be acknowledged", Duration::from_secs(30), || {
            c.call("GET", &c.path("/vpc-endpoint-services"), &[], None)
                .map(|v| v["total_count"].as_u64().unwrap_or(0))
                .unwrap_or(0)
                >= target
        })
        .unwrap();
        child.kill();
        stop.store(true, Ordering::Relaxed);
        let (p, d, in_flight) = writer.join().unwrap();
        acked_ports.extend(p);
        acked_deleted.extend(d);
        maybe.extend(in_flight);
        child = spawn(&dir, api);
        let ports: Vec<String> = c.call("GET", &c.path("/ports"), &[], None).unwrap()["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect();
        for id in &acked_ports {
            assert!(
                ports.contains(id) || acked_deleted.contains(id) || maybe.contains(id),
                "acknowledged port {id} was lost"
            );
        }
        for id in &acked_deleted {
            assert!(
                !ports.contains(id),
                "acknowledged deletion of {id} was lost"
            );
        }
        // No half-applied deletion: an available service always has its port.
        let services: Value = c
            .call(
                "GET",
                &c.path("/vpc-endpoint-services"),
                &[("limit", "1000".into())],
                None,
            )
            .unwrap();
        for s in services["endpoint_services"].as_array().unwrap() {
            let has_port = ports.iter().any(|p| s["port_id"] == p.as_str());
            assert_eq!(
                s["status"] == "available",
                has_port,
                "half-applied change: {s}"
            );
        }
        assert!(!acked_ports.is_empty());
    }
    child.kill();
}
