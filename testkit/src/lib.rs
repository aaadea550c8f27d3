//! vpcep's test kit, for the tests of every crate and for the benches: the one
//! [`poll_until`], the tenant fixtures ([`tenants`]), and the network-namespace harness:
//! RAII guards for namespaces and processes, a topology builder for "user VPCs, a provider
//! VPC with the same CIDR, and a node running vpcepd" ([`World`]), and helpers to drive the
//! daemon through `vpcepctl` and read its `/status` and `/metrics`.
//!
//! Every name carries a per-run prefix (`v` + pid + counter), every namespace and process is
//! removed or ended (by its pid) on drop, and traffic stays inside the namespaces made here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub mod cluster;
pub mod etcd;
mod proc;
pub mod scripts;
pub mod tenants;
mod world_api;

pub use self::proc::Proc;
pub use self::scripts::{SHA_BACKEND, STREAM, stream_result};
pub use self::tenants::{PROVIDER, STRANGER, USER, USER2};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short prefix for this run and call (interface names must stay under 16 bytes).
pub fn prefix() -> String {
    format!(
        "v{}{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run a command to completion; fail with its stderr if it fails.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// `ip` with arguments.
pub fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

/// Poll `cond` (every 5 ms) until it holds, or fail once `timeout` has passed: the one way
/// a test waits for something to happen.
///
/// # Errors
/// `timeout` passed and `cond` never held.
pub fn poll_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// Create a namespace with loopback up and IPv6 off (no router solicitations).
    pub fn new(name: String) -> Result<Self> {
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
        Ok(ns)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run `args` inside the namespace and return its output.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        run(self.command(args[0]).args(&args[1..]))
    }

    /// Wait (at most `timeout`) until a TCP socket listens on each of `ports` here (`ss`);
    /// `what` names the servers in the error.
    ///
    /// # Errors
    /// Not all of them listen in time.
    pub fn wait_listening(&self, what: &str, ports: &[u16], timeout: Duration) -> Result<()> {
        let filter = ports
            .iter()
            .map(|p| format!("sport = :{p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        poll_until(what, timeout, || {
            self.command("ss")
                .args(["-ltnH", &filter])
                .output()
                .is_ok_and(|o| {
                    let lines = o.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty());
                    lines.count() >= ports.len()
                })
        })
    }

    /// Start `args` inside the namespace, output to `log`, ended by pid on drop.
    pub fn spawn(&self, args: &[&str], log: &Path) -> Result<Proc> {
        let mut cmd = self.command(args[0]);
        cmd.args(&args[1..]);
        // A fresh log per start.
        std::fs::File::create(log)?;
        Proc::spawn(cmd, log)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Ending processes is Proc's job; here the namespace (and its veth ends) goes.
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if !matches!(out, Ok(ref o) if o.status.success()) && !std::thread::panicking() {
            eprintln!("warning: could not delete netns {}", self.name);
        }
    }
}

/// The offload settings of a world's veth ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offloads {
    /// As every fresh veth comes: tx checksum, TSO and GSO on, GRO off. Senders hand
    /// super-frames with partial checksums to the daemon.
    Default,
    /// `tx rx tso gso gro` all off: MTU-sized frames with complete checksums.
    Off,
}

/// Set `dev` in `ns` to `mode`.
///
/// # Errors
/// ethtool failed.
pub fn set_offloads(ns: &Netns, dev: &str, mode: Offloads) -> Result<()> {
    let (on, gro) = match mode {
        Offloads::Default => ("on", "off"),
        Offloads::Off => ("off", "off"),
    };
    ns.exec(&[
        "ethtool", "-K", dev, "tx", on, "rx", on, "tso", on, "gso", on, "gro", gro,
    ])?;
    Ok(())
}

/// Connect namespace `a` (interface `a_if`) to `b` (`b_if`) with a veth pair, both ends up
/// and at the offloads of `mode`.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str, mode: Offloads) -> Result<()> {
    ip(&[
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ])?;
    for (ns, dev) in [(a, a_if), (b, b_if)] {
        ns.exec(&["ip", "link", "set", dev, "up"])?;
        if mode != Offloads::Default {
            set_offloads(ns, dev, mode)?;
        }
    }
    Ok(())
}

/// Where the workspace's binaries are: the profile directory of the running executable
/// (`target/debug` for a test in `target/debug/deps`, `target/release` for a bench binary).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let mut dir = exe.parent().expect("target dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("profile dir");
    }
    dir.join(name)
}

/// The standard world: user VPCs (`users` of them, each 10.0.0.0/24 with the client at
/// 10.0.0.5), a provider VPC (10.0.0.0/24, backends at 10.0.0.10 and 10.0.0.11) and a node
/// namespace running vpcepd with one attachment per VPC. VPC ids are created through the
/// API before the daemon attaches them (a live reload, no restart).
#[derive(Debug)]
pub struct World {
    /// Per-run prefix.
    pub prefix: String,
    /// Scratch directory (config, credentials, store, logs).
    pub dir: PathBuf,
    /// The node namespace.
    pub node: Netns,
    /// The provider namespace.
    pub provider: Netns,
    /// User namespaces.
    pub users: Vec<Netns>,
    /// The daemon.
    pub daemon: Option<Proc>,
    /// The API port (node loopback).
    pub api_port: u16,
    /// The admin port (node loopback).
    pub admin_port: u16,
    /// Inventory ids: provider VPC, provider subnet, user VPCs and subnets.
    pub ids: Value,
    /// The attachments (interface, VPC id) of the daemon's config.
    attachments: Vec<(String, String)>,
    /// Attachments (by index) written with `port_security = true`.
    secured: Vec<usize>,
    /// Attachments with a private DNS resolver, and its address.
    dns_ips: Vec<(usize, String)>,
    /// Attachments (by index) written with `flow_log = true`.
    flow_logged: Vec<usize>,
    /// More `key = value` lines per attachment ([`World::set_attachment_option`]).
    attachment_options: Vec<(usize, String)>,
    /// The tenant owning each user VPC (all [`USER`] unless built by
    /// [`World::with_tenants`]).
    user_tenants: Vec<(&'static str, &'static str, &'static str, &'static str)>,
    /// Config keys written at every start (a cluster's store).
    base: String,
}

impl World {
    /// Build the namespaces and links (veths at their default offloads), create the
    /// inventory through the API, and start the daemon with the attachments.
    pub fn new(users: usize) -> Result<Self> {
        Self::with_offloads(users, Offloads::Default)
    }

    /// [`World::new`] with one user VPC per tenant of `tenants` (in that order), each
    /// tenant's VPC and endpoints its own; the services whitelist every one of them.
    ///
    /// # Errors
    /// As [`World::new`].
    pub fn with_tenants(
        tenants: &[(&'static str, &'static str, &'static str, &'static str)],
    ) -> Result<Self> {
        let mut w = Self::build(tenants.len(), Offloads::Default, String::new())?;
        w.user_tenants = tenants.to_vec();
        w.provision()
    }

    /// The tenant owning user VPC `i`.
    pub fn user_tenant(
        &self,
        i: usize,
    ) -> (&'static str, &'static str, &'static str, &'static str) {
        self.user_tenants.get(i).copied().unwrap_or(USER)
    }

    /// The domains of the user VPCs' tenants, each once.
    pub(crate) fn user_domains(&self) -> Vec<&'static str> {
        let mut d: Vec<&'static str> = self.user_tenants.iter().map(|t| t.2).collect();
        if d.is_empty() {
            d.push(USER.2);
        }
        d.sort_unstable();
        d.dedup();
        d
    }

    /// [`World::new`] with the veth ends at the offloads of `mode`.
    pub fn with_offloads(users: usize, mode: Offloads) -> Result<Self> {
        Self::build(users, mode, String::new())?.provision()
    }

    /// The namespaces, links and credentials of a world, with no daemon yet; `base` is
    /// config written at every start.
    ///
    /// # Errors
    /// A namespace or link could not be made.
    pub fn build(users: usize, mode: Offloads, base: String) -> Result<Self> {
        let prefix = prefix();
        let dir = std::env::temp_dir().join(format!("vpcep-netns-{prefix}"));
        std::fs::create_dir_all(&dir)?;
        let node = Netns::new(format!("{prefix}-node"))?;
        let provider = Netns::new(format!("{prefix}-prov"))?;
        let mut user_ns = Vec::new();
        for i in 0..users {
            user_ns.push(Netns::new(format!("{prefix}-u{i}"))?);
        }
        veth(&provider, "eth0", &node, &format!("{prefix}p"), mode)?;
        provider.exec(&["ip", "addr", "add", "10.0.0.10/24", "dev", "eth0"])?;
        provider.exec(&["ip", "addr", "add", "10.0.0.11/24", "dev", "eth0"])?;
        provider.exec(&["ip", "route", "add", "198.19.128.0/17", "dev", "eth0"])?;
        for (i, u) in user_ns.iter().enumerate() {
            veth(u, "eth0", &node, &format!("{prefix}u{i}"), mode)?;
            u.exec(&["ip", "addr", "add", "10.0.0.5/24", "dev", "eth0"])?;
        }
        node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"])?;
        // The API and admin ports live on the node namespace's own loopback.
        let port = 9797;
        let creds = tenants::credentials_toml(&[PROVIDER, USER, USER2]);
        std::fs::write(dir.join("credentials.toml"), creds)?;
        Ok(Self {
            prefix,
            dir,
            node,
            provider,
            users: user_ns,
            daemon: None,
            api_port: port,
            admin_port: port + 1,
            ids: Value::Null,
            attachments: Vec::new(),
            secured: Vec::new(),
            dns_ips: Vec::new(),
            flow_logged: Vec::new(),
            attachment_options: Vec::new(),
            user_tenants: vec![USER; users],
            base,
        })
    }

    /// Start the daemon of a [`World::build`], create the inventory through its API, and
    /// attach the VPCs by a live reload.
    ///
    /// # Errors
    /// A step failed.
    pub fn provision(mut self) -> Result<Self> {
        let users = self.users.len();
        let w = &mut self;
        w.write_config("")?;
        w.start_daemon()?;
        // Inventory.
        let pvpc = w.ctl(
            PROVIDER,
            &[
                "vpc",
                "create",
                "--cidr",
                "10.0.0.0/16",
                "--name",
                "provider",
            ],
        )?["vpc"]["id"]
            .clone();
        let psub = w.ctl(
            PROVIDER,
            &[
                "subnet",
                "create",
                "--vpc",
                s(&pvpc),
                "--cidr",
                "10.0.0.0/24",
            ],
        )?["subnet"]["id"]
            .clone();
        let mut uvpcs = Vec::new();
        let mut usubs = Vec::new();
        for i in 0..users {
            let owner = w.user_tenant(i);
            let v = w.ctl(
                owner,
                &[
                    "vpc",
                    "create",
                    "--cidr",
                    "10.0.0.0/16",
                    "--name",
                    &format!("user{i}"),
                ],
            )?["vpc"]["id"]
                .clone();
            usubs.push(
                w.ctl(
                    owner,
                    &["subnet", "create", "--vpc", s(&v), "--cidr", "10.0.0.0/24"],
                )?["subnet"]["id"]
                    .clone(),
            );
            uvpcs.push(v);
        }
        w.ids = serde_json::json!({"pvpc": pvpc, "psub": psub, "uvpcs": uvpcs, "usubs": usubs});
        // Attach: users first (VpcId 0..), provider last.
        let mut att: Vec<(String, String)> = (0..users)
            .map(|i| {
                (
                    format!("{}u{i}", w.prefix),
                    s(&w.ids["uvpcs"][i]).to_string(),
                )
            })
            .collect();
        att.push((format!("{}p", w.prefix), s(&pvpc).to_string()));
        // Attached by a live reload, as an operator adds VPCs to a running node.
        w.attachments = att;
        w.write_config("")?;
        w.reload()?;
        Ok(self)
    }

    /// The attachments (interface, VPC id) the config file names.
    pub fn attachments(&self) -> &[(String, String)] {
        &self.attachments
    }

    /// Name other attachments in the config (takes effect at the next reload or start).
    pub fn set_attachments(&mut self, attachments: Vec<(String, String)>) {
        self.attachments = attachments;
    }

    /// Ask the daemon to reload its config (`POST /reload` on the admin listener); the
    /// daemon's answer, or an error with its refusal.
    pub fn reload(&self) -> Result<Value> {
        let out = self.node.exec(&[
            "curl",
            "-s",
            "-m",
            "30",
            "-X",
            "POST",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{}/reload", self.admin_port),
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        if code != "200" {
            bail!("reload refused ({code}): {body}");
        }
        Ok(serde_json::from_str(body)?)
    }

    /// Rewrite the daemon's config with `extra` TOML keys (takes effect at the next start).
    pub fn write_config(&self, extra: &str) -> Result<()> {
        let mut cfg = format!(
            "region = \"region-1\"\napi_listen = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\ncredentials = \"{}\"\n",
            self.api_port,
            self.admin_port,
            self.dir.join("data").display(),
            self.dir.join("credentials.toml").display()
        );
        cfg.push_str(&self.base);
        cfg.push('\n');
        cfg.push_str(extra);
        cfg.push('\n');
        for (i, (iface, vpc)) in self.attachments.iter().enumerate() {
            let _ = write!(
                cfg,
                "\n[[attachments]]\ninterface = \"{iface}\"\nvpc_id = \"{vpc}\"\n"
            );
            if self.secured.contains(&i) {
                cfg.push_str("port_security = true\n");
            }
            if let Some((_, ip)) = self.dns_ips.iter().find(|(a, _)| *a == i) {
                let _ = writeln!(cfg, "dns_ip = \"{ip}\"");
            }
            if self.flow_logged.contains(&i) {
                cfg.push_str("flow_log = true\n");
            }
            for (_, line) in self.attachment_options.iter().filter(|(a, _)| *a == i) {
                let _ = writeln!(cfg, "{line}");
            }
        }
        std::fs::write(self.dir.join("vpcepd.toml"), cfg)?;
        Ok(())
    }

    /// Turn `port_security` on for these attachments (users are 0.., the provider last)
    /// and off for the others, from the next config written.
    pub fn secure(&mut self, attachments: &[usize]) {
        self.secured = attachments.to_vec();
    }

    /// Log the flows of these attachments (users are 0.., the provider last) and not the
    /// others', from the next config written.
    pub fn log_flows(&mut self, attachments: &[usize]) {
        self.flow_logged = attachments.to_vec();
    }

    /// Add the TOML line `line` (`key = value`) to attachment `i`'s entry (users are 0..,
    /// the provider last), from the next config written.
    pub fn set_attachment_option(&mut self, i: usize, line: &str) {
        self.attachment_options.push((i, line.to_string()));
    }

    /// Give attachment `i` a private DNS resolver at `ip` (`None`: none), from the next
    /// config written.
    pub fn set_dns_ip(&mut self, i: usize, ip: Option<&str>) {
        self.dns_ips.retain(|(a, _)| *a != i);
        if let Some(ip) = ip {
            self.dns_ips.push((i, ip.to_string()));
        }
    }

    /// Another VM in user VPC `i`: a namespace of its own whose `eth0` (a macvlan on the
    /// user namespace's link, so it has a MAC of its own) holds `ip`/24. The namespace (and
    /// the macvlan with it) is deleted when the returned guard drops.
    ///
    /// # Errors
    /// The namespace or the link could not be made.
    pub fn extra_vm(&self, i: usize, ip: &str) -> Result<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let ns = Netns::new(format!("{}-vm{n}", self.prefix))?;
        let link = format!("mv{n}");
        let user = &self.users[i];
        user.exec(&[
            "ip", "link", "add", "link", "eth0", "name", &link, "type", "macvlan", "mode", "bridge",
        ])?;
        user.exec(&["ip", "link", "set", &link, "netns", &ns.name])?;
        ns.exec(&["ip", "link", "set", &link, "name", "eth0"])?;
        ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        ns.exec(&["ip", "link", "set", "eth0", "up"])?;
        Ok(ns)
    }

    /// The index of the provider's attachment.
    pub fn provider_attachment(&self) -> usize {
        self.users.len()
    }

    /// Create a port in user VPC `i` at `ip` with MAC `mac` (the user VM's own MAC when
    /// `None`); returns its view.
    pub fn user_port(&self, i: usize, ip: &str, mac: Option<&str>) -> Result<Value> {
        let own = mac_of(&self.users[i], "eth0")?;
        let mac = mac.unwrap_or(&own);
        let args = [
            "port",
            "create",
            "--subnet",
            s(&self.ids["usubs"][i]),
            "--type",
            "VM",
            "--ip",
            ip,
            "--mac",
            mac,
        ];
        Ok(self.ctl(USER, &args)?["port"].clone())
    }

    /// Start vpcepd in the node namespace and wait for its admin endpoint.
    pub fn start_daemon(&mut self) -> Result<()> {
        let cfg = self.dir.join("vpcepd.toml");
        let log = self.dir.join("vpcepd.log");
        let mut p = self.node.spawn(
            &[
                bin("vpcepd").to_str().unwrap_or("vpcepd"),
                "--config",
                cfg.to_str().unwrap_or(""),
            ],
            &log,
        )?;
        let url = format!("http://127.0.0.1:{}/healthz", self.admin_port);
        let node = &self.node;
        let ok = poll_until("vpcepd to answer /healthz", Duration::from_secs(10), || {
            node.command("curl")
                .args(["-sf", "-m", "1", &url])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if ok.is_err() || !p.alive() {
            bail!("vpcepd did not start: {}", p.output());
        }
        self.daemon = Some(p);
        Ok(())
    }

    /// Stop the daemon (SIGTERM); true if it exited cleanly.
    pub fn stop_daemon(&mut self) -> bool {
        self.daemon
            .take()
            .is_some_and(|mut p| p.terminate(Duration::from_secs(10)))
    }

    /// Start the daemon again (after a stop or a kill) and wait until it forwards.
    ///
    /// # Errors
    /// It did not start, publish or forward in time.
    pub fn start_and_forward(&mut self) -> Result<()> {
        self.start_daemon()?;
        self.wait_live()?;
        poll_until(
            "the new process to forward",
            Duration::from_secs(20),
            || {
                self.metric("vpcep_dataplane_forwarded_total", None)
                    .is_ok_and(|n| n > 0.0)
            },
        )
    }

    /// Kill the daemon with SIGKILL.
    pub fn kill_daemon(&mut self) {
        if let Some(mut p) = self.daemon.take() {
            p.kill();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_daemon();
        if std::thread::panicking() {
            eprintln!(
                "--- vpcepd log ---\n{}",
                std::fs::read_to_string(self.dir.join("vpcepd.log")).unwrap_or_default()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The MAC address of interface `dev` in `ns` (`aa:bb:cc:dd:ee:ff`).
pub fn mac_of(ns: &Netns, dev: &str) -> Result<String> {
    let out = ns.exec(&["cat", &format!("/sys/class/net/{dev}/address")])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A JSON value as a string slice ("" if not a string).
pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// True if running as root (the netns tests need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
