//! Scratch: profile vpcepd under iperf3 (not committed).
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used, missing_docs)]
use std::time::Duration;
use vpcep_tests::*;

#[test]
#[ignore = "scratch"]
fn zz_profile() {
    let w = World::with_offloads(1, Offloads::Default).unwrap();
    let _s = w
        .provider
        .spawn(
            &["iperf3", "-s", "-B", "10.0.0.10", "-p", "5201"],
            &w.dir.join("i.log"),
        )
        .unwrap();
    let (svc, _) = w
        .service("10.0.0.10", &["TCP:5201:5201", "UDP:5201:5201"], false)
        .unwrap();
    w.endpoint(&svc, 0, "10.0.0.200", &[]).unwrap();
    w.wait_live().unwrap();
    poll_until("srv", Duration::from_secs(5), || {
        w.provider
            .command("ss")
            .args(["-ltnH", "sport = :5201"])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty())
    })
    .unwrap();
    let pid = w.daemon.as_ref().unwrap().pid().to_string();
    let args: Vec<String> = std::env::var("IPERF")
        .unwrap_or("-P 1".into())
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut perf = std::process::Command::new("perf")
        .args([
            "record",
            "-g",
            "-o",
            "/tmp/scratch/perf.data",
            "-p",
            &pid,
            "--",
            "sleep",
            "6",
        ])
        .spawn()
        .unwrap();
    let mut cmd = vec!["iperf3", "-c", "10.0.0.200", "-p", "5201", "-t", "6"];
    cmd.extend(args.iter().map(String::as_str));
    let out = w.users[0].exec(&cmd).unwrap();
    perf.wait().unwrap();
    eprintln!(
        "{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let o = w
        .node
        .exec(&[
            "curl",
            "-s",
            &format!("http://127.0.0.1:{}/metrics", w.admin_port),
        ])
        .unwrap();
    eprintln!(
        "{}",
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("vpcep_dataplane") && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
