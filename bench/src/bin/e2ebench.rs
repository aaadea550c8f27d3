//! Side by side, on one topology and in one run: the kernel's nftables DNAT+SNAT (with
//! conntrack) in the node namespace, and vpcepd on the same namespaces and veths.
//!
//! `cargo run --release -p bench --bin e2ebench -- --json` (as root) prints one JSON object
//! per measure and mode: `mode`, `measure`, `kernel`, `vpcepd`, `floor`, `unit`, `ratio`
//! (above 1.0: vpcepd better; vpcepd/kernel for rates, kernel/vpcepd for latencies and CPU
//! cost), `of_floor` (vpcepd against the floor, the same way) and `floor_ratio` (the floor
//! against the kernel).
//!
//! The floor is `nullfwd` where vpcepd runs: the same AF_PACKET sockets, batch, spin,
//! receive mode, ingress drop and offloads, and no pipeline (Ethernet addresses rewritten,
//! nothing NATed; the backend holds the endpoint's address itself). It is how far an
//! AF_PACKET forwarder gets on this world at all.
//!
//! Modes, all in one run:
//! - `default_offloads`: every veth end as created (tx checksum, TSO, GSO on; GRO off), what
//!   an operator gets: senders hand over GSO super-frames with partial checksums.
//! - `offloads_off`: `ethtool -K tx off rx off tso off gso off gro off` on every end:
//!   MTU-sized frames with complete checksums.
//!
//! Traffic: iperf3 (TCP 1 and 4 streams in both directions, UDP 64-byte payloads counted at
//! the receiver, UDP 1400-byte payloads as throughput), netprobe (new TCP connections per
//! second, UDP round-trip time), between a client namespace and a backend namespace created
//! here and removed on exit. CPU cost: the node's CPU seconds per second of a 1-stream TCP
//! upload, divided by its Gbit/s; for the kernel the softirq time of every CPU
//! (`/proc/stat`), for vpcepd the daemon's user and system time (`/proc/PID/stat`).
//!
//! `--workers N` runs vpcepd with N workers (default 1), `--spin-us N` with that bounded
//! spin (default: the daemon's), `--spin adaptive` with that spin adaptive, `--rx tpacket_v2` or `--rx tpacket_v3` with receive rings
//! (`--rx-ring-frames N` slots of a TPACKET_V2 ring), `--tx ring` with
//! transmit rings (`PACKET_TX_RING`, 256 slots), `--io af_xdp` with
//! XDP sockets (then add `--offloads-off-only`: AF_XDP carries no offload metadata).
//!
//! `--identity` measures client identity instead: HAProxy (`send-proxy-v2`) against vpcepd
//! with a `proxy_open` service, both toward a PROXY v2 backend (`bench::identity`; with
//! `--secs N` and `--rounds N`); columns `haproxy` and `vpcepd_proxy_open`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bench::{js, json_line};
use serde_json::Value;
use testkit::{Offloads, Proc, World, bin, set_offloads};

const EP: &str = "10.0.0.200";
const SECS: &str = "5";
/// The unit of `/proc/stat` and `/proc/PID/stat` times: USER_HZ, 100 on Linux whatever the
/// kernel's own tick.
const USER_HZ: f64 = 100.0;

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    tcp1_up: f64,
    tcp1_down: f64,
    tcp4_up: f64,
    tcp4_down: f64,
    udp_pps: f64,
    udp1400_gbps: f64,
    conn_per_s: f64,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
    cpu_s_per_gbit: f64,
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

fn tcp_gbps(w: &World, streams: &str, reverse: bool) -> Result<f64> {
    let mut args = vec!["-P", streams];
    if reverse {
        args.push("-R");
    }
    let v = iperf(w, &args)?;
    Ok(v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9)
}

/// UDP at `len`-byte payloads, unlimited rate: (datagrams received per second, Gbit/s
/// received).
fn udp(w: &World, len: &str) -> Result<(f64, f64)> {
    let v = iperf(w, &["-u", "-l", len, "-b", "0"])?;
    let sum = &v["end"]["sum"];
    let received =
        sum["packets"].as_f64().unwrap_or(0.0) - sum["lost_packets"].as_f64().unwrap_or(0.0);
    let secs = sum["seconds"].as_f64().unwrap_or(1.0);
    let bytes: f64 = len.parse().unwrap_or(0.0);
    Ok((received / secs, received * bytes * 8.0 / secs / 1e9))
}

/// CPU ticks (USER_HZ) so far: the softirq time of every CPU (`None`) or a process's user
/// and system time.
fn cpu_ticks(pid: Option<u32>) -> Result<f64> {
    match pid {
        None => {
            let stat = std::fs::read_to_string("/proc/stat")?;
            let cpu = stat.lines().next().context("/proc/stat")?;
            // cpu user nice system idle iowait irq softirq ...
            Ok(cpu.split_whitespace().nth(7).context("softirq")?.parse()?)
        }
        Some(pid) => {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
            let rest = stat.rsplit_once(')').context("stat")?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Ok(f.get(11).context("utime")?.parse::<f64>()?
                + f.get(12).context("stime")?.parse::<f64>()?)
        }
    }
}

/// A 1-stream TCP upload and the node's CPU seconds per Gbit/s during it.
fn cpu_per_gbit(w: &World, pid: Option<u32>) -> Result<f64> {
    let before = cpu_ticks(pid)?;
    let v = iperf(w, &["-P", "1"])?;
    let after = cpu_ticks(pid)?;
    let gbps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9;
    let secs = v["end"]["sum_received"]["seconds"].as_f64().unwrap_or(1.0);
    Ok((after - before) / USER_HZ / secs / gbps)
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

/// Every measure on `w` as it stands; `pid` is the daemon's (None: the kernel routes).
/// With `tcp_only`, the TCP throughputs and CPU per Gbit/s only (the others are NaN): a
/// quicker run for a bisect.
fn measure(w: &World, pid: Option<u32>, tcp_only: bool) -> Result<Figures> {
    let mut f = Figures {
        tcp1_up: tcp_gbps(w, "1", false)?,
        tcp1_down: tcp_gbps(w, "1", true)?,
        tcp4_up: tcp_gbps(w, "4", false)?,
        tcp4_down: tcp_gbps(w, "4", true)?,
        cpu_s_per_gbit: cpu_per_gbit(w, pid)?,
        udp_pps: f64::NAN,
        udp1400_gbps: f64::NAN,
        conn_per_s: f64::NAN,
        rtt_p50_us: f64::NAN,
        rtt_p99_us: f64::NAN,
    };
    if tcp_only {
        return Ok(f);
    }
    f.udp_pps = udp(w, "64")?.0;
    f.udp1400_gbps = udp(w, "1400")?.1;
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
    let n = &w.node;
    bench::node::kernel_addresses(w, EP)?;
    n.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    let rules = w.dir.join("nat.nft");
    std::fs::write(&rules, nft_rules(&w.prefix))?;
    n.exec(&["nft", "-f", rules.to_str().unwrap_or("")])?;
    Ok(())
}

fn kernel_off(w: &World) -> Result<()> {
    let n = &w.node;
    n.exec(&["nft", "delete", "table", "ip", "vpcep_bench"])?;
    n.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"])?;
    bench::node::kernel_addresses_off(w)?;
    Ok(())
}

/// The offloads of a phase: every veth end at `Offloads`, or the mixed world of tenants'
/// VMs and a provider's appliance that differ: the client's end at default offloads, the
/// node's two ends and the backend's off.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    All(Offloads),
    Mixed,
}

fn offloads(w: &World, phase: Phase) -> Result<()> {
    let p = &w.prefix;
    for (ns, dev, client) in [
        (&w.users[0], "eth0".to_string(), true),
        (&w.provider, "eth0".to_string(), false),
        (&w.node, format!("{p}u0"), false),
        (&w.node, format!("{p}p"), false),
    ] {
        let mode = match phase {
            Phase::All(mode) => mode,
            Phase::Mixed if client => Offloads::Default,
            Phase::Mixed => Offloads::Off,
        };
        set_offloads(ns, &dev, mode)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let json = std::env::args().any(|a| a == "--json");
    if !testkit::is_root() {
        bail!("e2ebench needs root (it creates network namespaces)");
    }
    // The daemon, its client and the probe, from this same release tree (`--no-build`:
    // as they are beside this binary).
    if !std::env::args().any(|a| a == "--no-build") {
        bench::build_tools()?;
    }
    let flag = |name: &str| std::env::args().skip_while(|a| a != name).nth(1);
    let workers: usize = flag("--workers")
        .map_or(Ok(1), |n| n.parse())
        .context("--workers N")?;
    let spin_us: Option<u64> = flag("--spin-us")
        .map(|n| n.parse())
        .transpose()
        .context("--spin-us N")?;
    if std::env::args().any(|a| a == "--identity") {
        let num = |name: &str, default: u64| -> Result<u64> {
            flag(name).map_or(Ok(default), |n| n.parse().context(format!("{name} N")))
        };
        return bench::identity::IdentityBench {
            workers,
            secs: num("--secs", 3)?,
            rounds: usize::try_from(num("--rounds", 4)?)?,
            json,
        }
        .run();
    }
    let mut w = World::with_offloads(1, Offloads::Default)?;
    let rx = flag("--rx").unwrap_or_else(|| "recvmmsg".into());
    let io = flag("--io").unwrap_or_else(|| "af_packet".into());
    let tx = flag("--tx").unwrap_or_else(|| "sendmmsg".into());
    let mut extra = format!("workers = {workers}\nrx = \"{rx}\"\ntx = \"{tx}\"\nio = \"{io}\"");
    if let Some(us) = spin_us {
        extra.push_str(&format!("\nspin_us = {us}"));
    }
    if let Some(layout) = flag("--worker-layout") {
        extra.push_str(&format!("\nworker_layout = \"{layout}\""));
    }
    // The receive slots' size (a bisect's lever: 64 KiB slots hold super-frames).
    if let Some(n) = flag("--max-frame-bytes") {
        let n: usize = n.parse().context("--max-frame-bytes N")?;
        extra.push_str(&format!("\nmax_frame_bytes = {n}"));
    }
    let rx_frames = flag("--rx-ring-frames");
    if let Some(n) = &rx_frames {
        let n: usize = n.parse().context("--rx-ring-frames N")?;
        extra.push_str(&format!("\nrx_ring_frames = {n}"));
    }
    let tcp_only = std::env::args().any(|a| a == "--tcp-only");
    // The floor runs with the daemon's I/O settings.
    let mut floor_args = Vec::new();
    if let Some(us) = spin_us {
        floor_args.extend(["--spin-us".to_string(), us.to_string()]);
    }
    if rx != "recvmmsg" {
        floor_args.extend(["--rx".to_string(), rx.clone()]);
    }
    let spin_mode = flag("--spin");
    if let Some(mode) = spin_mode.clone() {
        extra.push_str(&format!("\nspin = \"{mode}\""));
        floor_args.extend(["--spin".to_string(), mode]);
    }
    if let Some(n) = rx_frames {
        floor_args.extend(["--rx-ring-frames".to_string(), n]);
    }
    if tx == "ring" {
        floor_args.extend(["--tx".to_string(), tx.clone()]);
    }
    w.stop_daemon();
    w.write_config(&extra)?;
    w.start_daemon()?;
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
    w.provider
        .wait_listening("servers", &[5201, 9000], Duration::from_secs(5))?;

    let mut results = Vec::new();
    let only_off = std::env::args().any(|a| a == "--offloads-off-only");
    let only_mixed = std::env::args().any(|a| a == "--mixed-only");
    let only_default = std::env::args().any(|a| a == "--default-only");
    for (mode, phase) in [
        ("default_offloads", Phase::All(Offloads::Default)),
        ("offloads_off", Phase::All(Offloads::Off)),
        ("mixed", Phase::Mixed),
    ] {
        let off = phase == Phase::All(Offloads::Off);
        if (only_off && !off)
            || (only_mixed && phase != Phase::Mixed)
            || (only_default && phase != Phase::All(Offloads::Default))
        {
            continue;
        }
        offloads(&w, phase)?;
        w.stop_daemon();
        kernel_on(&w)?;
        let kernel = measure(&w, None, tcp_only)?;
        kernel_off(&w)?;
        // Each phase starts with an empty flow table: the flows a planned stop saved
        // belong to the previous phase.
        let _ = std::fs::remove_file(w.dir.join("data").join("conntrack.handover"));
        w.start_daemon()?;
        w.wait_live()?;
        let pid = w.daemon.as_ref().map(Proc::pid);
        let vp = measure(&w, pid, tcp_only)?;
        // What the daemon's own counters say of the phase (it started with it): frames the
        // kernel dropped before a worker read them, and what the spins found and cost.
        let counter = |name: &str| {
            w.metric(&format!("vpcep_dataplane_{name}_total"), None)
                .unwrap_or(f64::NAN)
        };
        eprintln!(
            "{mode}: vpcepd rx_queue_drops {}, spin hits {} misses {} wasted {} us",
            counter("rx_queue_drops"),
            counter("spin_hits"),
            counter("spin_misses"),
            counter("spin_wasted_us"),
        );
        // The floor: vpcepd's I/O path alone, no NAT (`nullfwd`).
        w.stop_daemon();
        let floor = bench::node::Floor::start(&w, EP, &floor_args)?;
        let fl = measure(&w, Some(floor.fwd.pid()), tcp_only)?;
        floor.stop(&w, EP)?;
        w.start_daemon()?;
        w.wait_live()?;
        results.push((mode, kernel, vp, fl));
    }
    for (mode, k, v, f) in results {
        let rows: [(&str, [f64; 3], &str, bool); 10] = [
            (
                "tcp_upload_1_stream",
                [k.tcp1_up, v.tcp1_up, f.tcp1_up],
                "Gbit/s",
                true,
            ),
            (
                "tcp_download_1_stream",
                [k.tcp1_down, v.tcp1_down, f.tcp1_down],
                "Gbit/s",
                true,
            ),
            (
                "tcp_upload_4_streams",
                [k.tcp4_up, v.tcp4_up, f.tcp4_up],
                "Gbit/s",
                true,
            ),
            (
                "tcp_download_4_streams",
                [k.tcp4_down, v.tcp4_down, f.tcp4_down],
                "Gbit/s",
                true,
            ),
            (
                "udp_64b_packets_per_second",
                [k.udp_pps, v.udp_pps, f.udp_pps],
                "packets/s received",
                true,
            ),
            (
                "udp_1400b_throughput",
                [k.udp1400_gbps, v.udp1400_gbps, f.udp1400_gbps],
                "Gbit/s received",
                true,
            ),
            (
                "tcp_new_connections_per_second",
                [k.conn_per_s, v.conn_per_s, f.conn_per_s],
                "connections/s",
                true,
            ),
            (
                "udp_rtt_p50",
                [k.rtt_p50_us, v.rtt_p50_us, f.rtt_p50_us],
                "us",
                false,
            ),
            (
                "udp_rtt_p99",
                [k.rtt_p99_us, v.rtt_p99_us, f.rtt_p99_us],
                "us",
                false,
            ),
            (
                "cpu_per_gbit_tcp_upload_1_stream",
                [k.cpu_s_per_gbit, v.cpu_s_per_gbit, f.cpu_s_per_gbit],
                "CPU s per Gbit",
                false,
            ),
        ];
        for (measure, [k, v, f], unit, higher_better) in rows {
            if k.is_nan() && v.is_nan() {
                continue; // not measured (--tcp-only)
            }
            let better = |a: f64, b: f64| if higher_better { a / b } else { b / a };
            let (ratio, of_floor, floor_ratio) = (better(v, k), better(v, f), better(f, k));
            let fields = [
                ("mode", js(mode)),
                ("measure", js(measure)),
                ("kernel", format!("{k:.3}")),
                ("vpcepd", format!("{v:.3}")),
                ("floor", format!("{f:.3}")),
                ("unit", js(unit)),
                ("ratio", format!("{ratio:.3}")),
                ("of_floor", format!("{of_floor:.3}")),
                ("floor_ratio", format!("{floor_ratio:.3}")),
                ("workers", workers.to_string()),
                ("rx", js(&rx)),
                ("tx", js(&tx)),
                ("io", js(&io)),
                (
                    "spin_us",
                    spin_us.map_or_else(|| js("default"), |u| u.to_string()),
                ),
                ("spin", js(spin_mode.as_deref().unwrap_or("default"))),
            ];
            if json {
                println!("{}", json_line(&fields));
            } else {
                println!(
                    "{mode:17} {measure:34} kernel {k:>12.3}  vpcepd {v:>12.3}  floor {f:>12.3}  {unit:20} ratio {ratio:.3}  of floor {of_floor:.3}"
                );
            }
        }
    }
    Ok(())
}
