//! Client identity side by side (`e2ebench --identity`): HAProxy as an L4 proxy with
//! `send-proxy-v2` in the node namespace, and vpcepd with a `tcp_proxy = proxy_open`
//! service, on the same namespaces and veths (default offloads), both toward `pp2_backend`,
//! which fails any connection that does not start with a valid PROXY v2 header.
//!
//! The client in the user VPC dials 10.0.0.200 either way: HAProxy listens there (the
//! node's kernel owns the address while the daemon is stopped), vpcepd serves it as an
//! endpoint. Ports: 9000 to a `sink` backend (10.0.0.10:9100, uploads), 9001 to an `echo`
//! backend (10.0.0.10:9101, connection rate and round trips). HAProxy runs with as many
//! threads as vpcepd has workers, and leaves the node from 198.19.128.1 like the daemon.
//! A third column, `vpcepd_close`, is the same daemon in the same rounds toward a `close`
//! service (endpoint 10.0.0.201, plain backends on 10.0.0.11): what client identity costs.
//!
//! Measures, each `--secs` long (default 3), `--rounds` times alternating (default 4: the
//! two vpcepd endpoints take turns going first, an even count keeps that even),
//! medians printed: TCP upload with 1 and 4 streams (Gbit/s delivered: the client writes,
//! half-closes and waits for the sink's close), new connections per second (each sends a
//! byte and gets it back, so each carried a header), 1-byte TCP round trips over one
//! connection (p50/p99 µs), and the proxy's CPU seconds per Gbit of the 1-stream upload
//! (`/proc/PID/stat` of the haproxy or vpcepd process).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use testkit::{Offloads, Proc, World, bin, poll_until};

use crate::{js, json_line, median};

const EP: &str = "10.0.0.200";
/// The baseline's endpoint: a `close` service (no identity) to plain backends on
/// 10.0.0.11, served by the same daemon in the same rounds.
const EP_CLOSE: &str = "10.0.0.201";
/// USER_HZ: the unit of `/proc/PID/stat` times.
const USER_HZ: f64 = 100.0;

/// The run's settings.
#[derive(Debug, Clone)]
pub struct IdentityBench {
    /// vpcepd workers, and HAProxy threads.
    pub workers: usize,
    /// Seconds per throughput or rate measure.
    pub secs: u64,
    /// Rounds (each measures both proxies); medians are printed.
    pub rounds: usize,
    /// One JSON object per line instead of a table.
    pub json: bool,
}

/// One round's figures for one proxy.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    tcp1_up: f64,
    tcp4_up: f64,
    conn_per_s: f64,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
    cpu_s_per_gbit: f64,
}

impl IdentityBench {
    /// Build the world, measure both proxies `rounds` times, print the medians.
    ///
    /// # Errors
    /// A step failed, or a backend saw a connection without a valid PROXY v2 header.
    pub fn run(&self) -> Result<()> {
        let mut w = World::with_offloads(1, Offloads::Default)?;
        w.stop_daemon();
        w.write_config(&format!("workers = {}", self.workers))?;
        w.start_daemon()?;
        for (backend, tcp_proxy, ep) in [
            ("10.0.0.10", "proxy_open", EP),
            ("10.0.0.11", "close", EP_CLOSE),
        ] {
            let (svc, _) = w.service_with(
                backend,
                &["TCP:9000:9100", "TCP:9001:9101"],
                false,
                &["--tcp-proxy", tcp_proxy],
            )?;
            let ep = w.endpoint(&svc, 0, ep, &[])?;
            if ep["status"] != "accepted" {
                bail!("endpoint not accepted: {ep}");
            }
        }
        w.wait_live()?;
        let pp2 = bin("pp2_backend");
        let pp2 = pp2.to_str().unwrap_or("pp2_backend");
        let mut backends = Vec::new();
        for (ip, extra) in [("10.0.0.10", None), ("10.0.0.11", Some("--no-proxy"))] {
            for (port, mode) in [(9100, "sink"), (9101, "echo")] {
                let addr = format!("{ip}:{port}");
                let mut args = vec![pp2, "--listen", &addr, "--mode", mode];
                args.extend(extra);
                let log = w.dir.join(format!("pp2-{ip}-{mode}.log"));
                backends.push(w.provider.spawn(&args, &log)?);
            }
        }
        poll_until("the pp2 backends", Duration::from_secs(10), || {
            backends.iter().all(|b| b.output().contains("ready"))
        })?;
        let (mut haproxy, mut vpcepd, mut close) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..self.rounds {
            w.stop_daemon();
            haproxy.push(self.haproxy_round(&w)?);
            check_backends(&backends)?;
            // An empty flow table each round (a planned stop saves the flows).
            let _ = std::fs::remove_file(w.dir.join("data").join("conntrack.handover"));
            w.start_daemon()?;
            w.wait_live()?;
            let pid = w
                .daemon
                .as_ref()
                .map(Proc::pid)
                .context("the daemon's pid")?;
            // Whichever goes first after the daemon starts measures a little faster (seen:
            // 10-15% on the 1-stream upload): the two take turns.
            if round % 2 == 0 {
                vpcepd.push(self.measure(&w, pid, EP)?);
                close.push(self.measure(&w, pid, EP_CLOSE)?);
            } else {
                close.push(self.measure(&w, pid, EP_CLOSE)?);
                vpcepd.push(self.measure(&w, pid, EP)?);
            }
            check_backends(&backends)?;
        }
        self.print(&haproxy, &vpcepd, &close);
        Ok(())
    }

    /// Give the node the endpoint's and the SNAT address, run HAProxy, measure, undo.
    fn haproxy_round(&self, w: &World) -> Result<Figures> {
        let n = &w.node;
        crate::node::kernel_addresses(w, EP)?;
        let cfg = w.dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(self.workers))?;
        let mut proxy = n.spawn(
            &["haproxy", "-db", "-f", cfg.to_str().unwrap_or("")],
            &w.dir.join("haproxy.log"),
        )?;
        let listening = n.wait_listening("haproxy", &[9000, 9001], Duration::from_secs(10));
        let figures = listening.and_then(|()| self.measure(w, proxy.pid(), EP));
        proxy.kill();
        crate::node::kernel_addresses_off(w)?;
        figures.with_context(|| format!("haproxy: {}", proxy.output()))
    }

    /// Every measure toward `ep` through whichever proxy serves it now; `pid` is its
    /// process.
    fn measure(&self, w: &World, pid: u32, ep: &str) -> Result<Figures> {
        let secs = self.secs.to_string();
        let before = cpu_ticks(pid)?;
        let t0 = std::time::Instant::now();
        let tcp1_up: f64 = probe(w, &["tcp-upload", &format!("{ep}:9000"), &secs, "1"])?.parse()?;
        let cpu = (cpu_ticks(pid)? - before) / USER_HZ / t0.elapsed().as_secs_f64();
        let tcp4_up = probe(w, &["tcp-upload", &format!("{ep}:9000"), &secs, "4"])?.parse()?;
        let conn = probe(w, &["connect-echo", &format!("{ep}:9001"), &secs, "2"])?;
        let (rate, failed) = conn.split_once(' ').context("connect-echo output")?;
        if failed != "0" {
            bail!("{failed} connections got no echo");
        }
        let rtt = probe(w, &["tcp-rtt", &format!("{ep}:9001"), "3000"])?;
        let (p50, p99) = rtt.split_once(' ').context("tcp-rtt output")?;
        Ok(Figures {
            tcp1_up,
            tcp4_up,
            conn_per_s: rate.parse()?,
            rtt_p50_us: p50.parse()?,
            rtt_p99_us: p99.parse()?,
            cpu_s_per_gbit: cpu / tcp1_up,
        })
    }

    fn print(&self, haproxy: &[Figures], vpcepd: &[Figures], close: &[Figures]) {
        type Pick = fn(&Figures) -> f64;
        let rows: [(&str, Pick, &str, bool); 6] = [
            ("tcp_upload_1_stream", |f| f.tcp1_up, "Gbit/s", true),
            ("tcp_upload_4_streams", |f| f.tcp4_up, "Gbit/s", true),
            (
                "tcp_new_connections_per_second",
                |f| f.conn_per_s,
                "connections/s (1-byte echo each)",
                true,
            ),
            ("tcp_rtt_p50", |f| f.rtt_p50_us, "us", false),
            ("tcp_rtt_p99", |f| f.rtt_p99_us, "us", false),
            (
                "cpu_per_gbit_tcp_upload_1_stream",
                |f| f.cpu_s_per_gbit,
                "CPU s per Gbit",
                false,
            ),
        ];
        for (measure, pick, unit, higher_better) in rows {
            let h = median(haproxy.iter().map(pick).collect());
            let v = median(vpcepd.iter().map(pick).collect());
            let c = median(close.iter().map(pick).collect());
            let ratio = if higher_better { v / h } else { h / v };
            if self.json {
                let fields = [
                    ("mode", js("identity_default_offloads")),
                    ("measure", js(measure)),
                    ("haproxy", format!("{h:.3}")),
                    ("vpcepd_proxy_open", format!("{v:.3}")),
                    ("vpcepd_close", format!("{c:.3}")),
                    ("unit", js(unit)),
                    ("ratio", format!("{ratio:.3}")),
                    ("workers", self.workers.to_string()),
                    ("rounds", self.rounds.to_string()),
                    ("secs", self.secs.to_string()),
                ];
                println!("{}", json_line(&fields));
            } else {
                println!(
                    "{measure:34} haproxy {h:>10.3}  vpcepd_proxy_open {v:>10.3}  vpcepd_close {c:>10.3}  {unit:34} ratio {ratio:.3}"
                );
            }
        }
    }
}

/// HAProxy 2.x as a plain L4 proxy: the two listeners on the endpoint's address, each to
/// its backend with a PROXY v2 header; `threads` threads.
fn haproxy_config(threads: usize) -> String {
    let mut c = format!(
        "global\n  nbthread {threads}\n  maxconn 8000\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
    );
    for (port, backend, extra) in [(9000, 9100, ""), (9001, 9101, "  option nolinger\n")] {
        let _ = write!(
            c,
            "\nlisten l{port}\n  bind {EP}:{port}\n{extra}  server b 10.0.0.10:{backend} send-proxy-v2\n"
        );
    }
    c
}

/// A backend logging an error line means a connection came without a valid header.
fn check_backends(backends: &[Proc]) -> Result<()> {
    for b in backends {
        if let Some(line) = b.output().lines().find(|l| l.contains("\"error\"")) {
            bail!("pp2_backend refused a connection: {line}");
        }
    }
    Ok(())
}

/// Run netprobe in the user VPC; its trimmed output.
fn probe(w: &World, args: &[&str]) -> Result<String> {
    let netprobe = bin("netprobe");
    let mut all = vec![netprobe.to_str().unwrap_or("netprobe")];
    all.extend_from_slice(args);
    let out = w.users[0].exec(&all)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A process's user + system time so far, in USER_HZ ticks.
fn cpu_ticks(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f.get(11).context("utime")?.parse::<f64>()? + f.get(12).context("stime")?.parse::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_config_sends_proxy_v2_from_both_listeners() {
        let c = haproxy_config(2);
        assert!(c.contains("nbthread 2"));
        assert!(c.contains("bind 10.0.0.200:9000\n  server b 10.0.0.10:9100 send-proxy-v2"));
        assert!(c.contains(
            "bind 10.0.0.200:9001\n  option nolinger\n  server b 10.0.0.10:9101 send-proxy-v2"
        ));
    }
}
