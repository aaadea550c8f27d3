//! Side by side, on one topology and in one run: the kernel's nftables DNAT+SNAT (with
//! conntrack) in the node namespace, and vpcepd on the same namespaces and veths.
//!
//! `cargo run --release -p bench --bin e2ebench -- --json` (as root) prints one JSON object
//! per measure: `measure`, `kernel`, `vpcepd`, `unit`, `ratio` (above 1.0: vpcepd better;
//! vpcepd/kernel for rates, kernel/vpcepd for latencies). Both sides run with offloads off
//! on every veth (what vpcepd needs); one more line gives the kernel with its default
//! offloads (GSO/TSO super-frames), what an operator gets out of the box.
//!
//! Traffic: iperf3 (TCP 1 and 4 streams, UDP 64-byte payloads counted at the receiver),
//! netprobe (new TCP connections per second, UDP round-trip time), between a client
//! namespace and a backend namespace created here and removed on exit.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bench::{js, json_line};
use serde_json::Value;
use vpcep_tests::{Proc, World, bin, poll_until, s};

const EP: &str = "10.0.0.200";
const SECS: &str = "5";

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    tcp1_gbps: f64,
    tcp4_gbps: f64,
    udp_pps: f64,
    conn_per_s: f64,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
}

fn iperf(w: &World, extra: &[&str]) -> Result<Value> {
    let mut args = vec![
        "iperf3",
        "-c",
        EP,
        "-p",
        "5201",
        "-t",
        SECS,
        "-J",
        "--connect-timeout",
        "5000",
    ];
    args.extend_from_slice(extra);
    let out = w.users[0].command(args[0]).args(&args[1..]).output()?;
    let v: Value = serde_json::from_slice(&out.stdout).context("iperf3 output")?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3: {e}");
    }
    Ok(v)
}

fn tcp_gbps(w: &World, streams: &str) -> Result<f64> {
    let v = iperf(w, &["-P", streams])?;
    Ok(v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9)
}

fn udp_pps(w: &World) -> Result<f64> {
    let v = iperf(w, &["-u", "-l", "64", "-b", "0"])?;
    let sum = &v["end"]["sum"];
    let received =
        sum["packets"].as_f64().unwrap_or(0.0) - sum["lost_packets"].as_f64().unwrap_or(0.0);
    Ok(received / sum["seconds"].as_f64().unwrap_or(1.0))
}

fn probe(w: &World, args: &[&str]) -> Result<String> {
    let out = w.users[0].exec(
        &[bin("netprobe").to_str().unwrap_or("netprobe")]
            .iter()
            .copied()
            .chain(args.iter().copied())
            .collect::<Vec<_>>(),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn measure(w: &World) -> Result<Figures> {
    let mut f = Figures {
        tcp1_gbps: tcp_gbps(w, "1")?,
        tcp4_gbps: tcp_gbps(w, "4")?,
        udp_pps: udp_pps(w)?,
        ..Figures::default()
    };
    f.conn_per_s = probe(w, &["connect-rate", &format!("{EP}:9000"), SECS, "2"])?.parse()?;
    let rtt = probe(w, &["udp-rtt", &format!("{EP}:7777"), "3000"])?;
    let parts: Vec<f64> = rtt
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    f.rtt_p50_us = parts.first().copied().unwrap_or(f64::NAN);
    f.rtt_p99_us = parts.get(1).copied().unwrap_or(f64::NAN);
    Ok(f)
}

fn nft_rules(prefix: &str) -> String {
    format!(
        "table ip vpcep_bench {{\n  chain pre {{ type nat hook prerouting priority dstnat; iifname \"{prefix}u0\" ip daddr {EP} dnat to 10.0.0.10; }}\n  chain post {{ type nat hook postrouting priority srcnat; oifname \"{prefix}p\" snat to 198.19.128.1; }}\n}}\n"
    )
}

fn kernel_on(w: &World) -> Result<()> {
    let p = &w.prefix;
    let n = &w.node;
    n.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{EP}/24"),
        "dev",
        &format!("{p}u0"),
    ])?;
    n.exec(&[
        "ip",
        "addr",
        "add",
        "198.19.128.1/17",
        "dev",
        &format!("{p}p"),
    ])?;
    n.exec(&[
        "ip",
        "route",
        "add",
        "10.0.0.10/32",
        "dev",
        &format!("{p}p"),
    ])?;
    n.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    let rules = w.dir.join("nat.nft");
    std::fs::write(&rules, nft_rules(p))?;
    n.exec(&["nft", "-f", rules.to_str().unwrap_or("")])?;
    Ok(())
}

fn kernel_off(w: &World) -> Result<()> {
    let p = &w.prefix;
    let n = &w.node;
    n.exec(&["nft", "delete", "table", "ip", "vpcep_bench"])?;
    n.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"])?;
    n.exec(&["ip", "route", "del", "10.0.0.10/32"])?;
    n.exec(&["ip", "addr", "flush", "dev", &format!("{p}u0")])?;
    n.exec(&["ip", "addr", "flush", "dev", &format!("{p}p")])?;
    // Forget neighbours learned while the kernel routed (the daemon resolves its own).
    w.users[0].exec(&["ip", "neigh", "flush", "all"])?;
    w.provider.exec(&["ip", "neigh", "flush", "all"])?;
    Ok(())
}

fn offloads(w: &World, on: bool) -> Result<()> {
    let v = if on { "on" } else { "off" };
    let p = &w.prefix;
    for (ns, dev) in [
        (&w.users[0], "eth0".to_string()),
        (&w.provider, "eth0".to_string()),
        (&w.node, format!("{p}u0")),
        (&w.node, format!("{p}p")),
    ] {
        ns.exec(&[
            "ethtool", "-K", &dev, "tx", v, "rx", v, "tso", v, "gso", v, "gro", v,
        ])?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let json = std::env::args().any(|a| a == "--json");
    if !vpcep_tests::is_root() {
        bail!("e2ebench needs root (it creates network namespaces)");
    }
    // The daemon, its client and the probe, from this same release tree.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "control",
            "--bins",
            "-p",
            "bench",
            "--bin",
            "netprobe",
        ])
        .status()?;
    if !status.success() {
        bail!("building vpcepd, vpcepctl and netprobe failed");
    }
    let mut w = World::new(1)?;
    let (svc, _) = w.service(
        "10.0.0.10",
        &[
            "TCP:5201:5201",
            "UDP:5201:5201",
            "TCP:9000:9000",
            "UDP:7777:7777",
        ],
        false,
    )?;
    w.endpoint(&svc, 0, EP, &[])?;
    w.wait_live()?;
    let probe_bin = bin("netprobe");
    let probe_bin = probe_bin.to_str().unwrap_or("netprobe");
    let _servers: Vec<Proc> = vec![
        w.provider.spawn(
            &["iperf3", "-s", "-B", "10.0.0.10", "-p", "5201"],
            &w.dir.join("iperf3.log"),
        )?,
        w.provider.spawn(
            &[probe_bin, "accept-server", "10.0.0.10:9000"],
            &w.dir.join("accept.log"),
        )?,
        w.provider.spawn(
            &[probe_bin, "udp-echo", "10.0.0.10:7777"],
            &w.dir.join("echo.log"),
        )?,
    ];
    poll_until("servers", Duration::from_secs(5), || {
        w.provider
            .command("ss")
            .args(["-ltnH", "sport = :5201 or sport = :9000"])
            .output()
            .is_ok_and(|o| {
                o.stdout
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count()
                    >= 2
            })
    })?;

    // The kernel, same topology, offloads off.
    w.stop_daemon();
    kernel_on(&w)?;
    let kernel = measure(&w)?;
    offloads(&w, true)?;
    let kernel_offload_tcp1 = tcp_gbps(&w, "1")?;
    let kernel_offload_tcp4 = tcp_gbps(&w, "4")?;
    offloads(&w, false)?;
    kernel_off(&w)?;

    // vpcepd.
    w.start_daemon()?;
    w.wait_live()?;
    let vp = measure(&w)?;
    let status = w.status()?;

    // vpcepd again with pnet's channel, the I/O the design started from.
    let pnet = if std::env::args().any(|a| a == "--no-pnet") {
        None
    } else {
        w.stop_daemon();
        w.write_config("io = \"pnet\"")?;
        w.start_daemon()?;
        w.wait_live()?;
        let f = measure(&w)?;
        w.stop_daemon();
        w.write_config("")?;
        Some(f)
    };

    let rows: [(&str, f64, f64, &str, bool); 6] = [
        (
            "tcp_throughput_1_stream",
            kernel.tcp1_gbps,
            vp.tcp1_gbps,
            "Gbit/s",
            true,
        ),
        (
            "tcp_throughput_4_streams",
            kernel.tcp4_gbps,
            vp.tcp4_gbps,
            "Gbit/s",
            true,
        ),
        (
            "udp_64b_packets_per_second",
            kernel.udp_pps,
            vp.udp_pps,
            "packets/s received",
            true,
        ),
        (
            "tcp_new_connections_per_second",
            kernel.conn_per_s,
            vp.conn_per_s,
            "connections/s",
            true,
        ),
        ("udp_rtt_p50", kernel.rtt_p50_us, vp.rtt_p50_us, "us", false),
        ("udp_rtt_p99", kernel.rtt_p99_us, vp.rtt_p99_us, "us", false),
    ];
    for (measure, k, v, unit, higher_better) in rows {
        let ratio = if higher_better { v / k } else { k / v };
        let fields = [
            ("measure", js(measure)),
            ("kernel", format!("{k:.3}")),
            ("vpcepd", format!("{v:.3}")),
            ("unit", js(unit)),
            ("ratio", format!("{ratio:.3}")),
        ];
        if json {
            println!("{}", json_line(&fields));
        } else {
            println!("{measure:32} kernel {k:>12.3}  vpcepd {v:>12.3}  {unit:20} ratio {ratio:.3}");
        }
    }
    for (measure, k, v) in [
        (
            "tcp_throughput_1_stream_kernel_default_offloads",
            kernel_offload_tcp1,
            vp.tcp1_gbps,
        ),
        (
            "tcp_throughput_4_streams_kernel_default_offloads",
            kernel_offload_tcp4,
            vp.tcp4_gbps,
        ),
    ] {
        let fields = [
            ("measure", js(measure)),
            ("kernel", format!("{k:.3}")),
            ("vpcepd", format!("{v:.3}")),
            ("unit", js("Gbit/s")),
            ("ratio", format!("{:.3}", v / k)),
        ];
        if json {
            println!("{}", json_line(&fields));
        } else {
            println!(
                "{measure:32} kernel {k:>12.3}  vpcepd {v:>12.3}  Gbit/s (kernel with GSO/TSO)  ratio {:.3}",
                v / k
            );
        }
    }
    if let Some(p) = pnet {
        let rows: [(&str, f64, f64, f64, &str, bool); 6] = [
            (
                "tcp_throughput_1_stream",
                kernel.tcp1_gbps,
                vp.tcp1_gbps,
                p.tcp1_gbps,
                "Gbit/s",
                true,
            ),
            (
                "tcp_throughput_4_streams",
                kernel.tcp4_gbps,
                vp.tcp4_gbps,
                p.tcp4_gbps,
                "Gbit/s",
                true,
            ),
            (
                "udp_64b_packets_per_second",
                kernel.udp_pps,
                vp.udp_pps,
                p.udp_pps,
                "packets/s received",
                true,
            ),
            (
                "tcp_new_connections_per_second",
                kernel.conn_per_s,
                vp.conn_per_s,
                p.conn_per_s,
                "connections/s",
                true,
            ),
            (
                "udp_rtt_p50",
                kernel.rtt_p50_us,
                vp.rtt_p50_us,
                p.rtt_p50_us,
                "us",
                false,
            ),
            (
                "udp_rtt_p99",
                kernel.rtt_p99_us,
                vp.rtt_p99_us,
                p.rtt_p99_us,
                "us",
                false,
            ),
        ];
        for (measure, k, af, pn, unit, higher_better) in rows {
            // Here `ratio` compares the two vpcepd backends: above 1.0, af_packet is better.
            let ratio = if higher_better { af / pn } else { pn / af };
            let fields = [
                ("measure", js(&format!("{measure}_io_backends"))),
                ("kernel", format!("{k:.3}")),
                ("vpcepd", format!("{af:.3}")),
                ("vpcepd_pnet", format!("{pn:.3}")),
                ("unit", js(unit)),
                ("ratio", format!("{ratio:.3}")),
            ];
            if json {
                println!("{}", json_line(&fields));
            } else {
                println!(
                    "{measure:32} af_packet {af:>12.3}  pnet {pn:>12.3}  {unit:20} af_packet/pnet {ratio:.3}"
                );
            }
        }
    }
    let _ = s(&status["revision"]);
    Ok(())
}
