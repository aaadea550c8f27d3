//! A cluster of nodes on one etcd: an etcd namespace linked to every node's namespace by a
//! management veth (etcd side 192.0.2.(4i+1)/30, node side 192.0.2.(4i+2)/30), and one
//! [`World`] per node whose vpcepd runs with `store = "etcd"`. The first node creates the
//! inventory; the next `shared - 1` attach the same user and provider VPCs (their own
//! namespaces play the same VPCs' other hosts), so a change made on any of them is live on
//! all of them; the last `islands` nodes create and attach VPCs of their own (same tenants),
//! so they answer for the shared VPCs' records but compile none of them. Those nodes run
//! with `etcd.failover = false` (each has its own copy of the VPCs' segments, so each must
//! serve it); [`Cluster::on_one_segment`] makes the shared VPCs one L2 segment each instead,
//! with the election on.

use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::etcd::Etcd;
use crate::{Netns, Offloads, World, poll_until, prefix, veth};

/// Nodes and their etcd; dropped nodes first, then etcd, then its namespace.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, in order.
    pub nodes: Vec<World>,
    /// The etcd they share.
    pub etcd: Etcd,
    /// etcd's namespace.
    pub etcd_ns: Netns,
    /// The replication key's file ([`Cluster::replicated`]).
    key_file: Option<std::path::PathBuf>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(f) = &self.key_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// The etcd-side and node-side addresses of node `i`'s management link.
fn mgmt(i: usize) -> (String, String) {
    (
        format!("192.0.2.{}", 4 * i + 1),
        format!("192.0.2.{}", 4 * i + 2),
    )
}

impl Cluster {
    /// `nodes` nodes sharing VPCs, with `users` user VPCs each, on a fresh etcd.
    ///
    /// # Errors
    /// A namespace, link, etcd or daemon could not be set up.
    pub fn new(nodes: usize, users: usize) -> Result<Self> {
        Self::with_islands(nodes, 0, users)
    }

    /// `shared` nodes sharing VPCs and `islands` nodes with VPCs of their own.
    ///
    /// # Errors
    /// As for [`Cluster::new`].
    pub fn with_islands(shared: usize, islands: usize, users: usize) -> Result<Self> {
        Self::make(shared, islands, users, false, None, "")
    }

    /// `nodes` nodes whose attachments to the shared VPCs are ports of one L2 segment per
    /// VPC (a bridge in the first node's user and provider namespaces, which hold the VPCs'
    /// hosts; the other nodes' own VPC namespaces are left unlinked), with `etcd.failover`
    /// on: one node owns the VPCs, the others are standbys.
    ///
    /// # Errors
    /// As for [`Cluster::new`].
    pub fn on_one_segment(nodes: usize, users: usize) -> Result<Self> {
        Self::make(nodes, 0, users, true, None, "")
    }

    /// [`Cluster::on_one_segment`] with more `[etcd]` settings: `etcd`, TOML key-value
    /// pairs (`"fail_static = true"`).
    ///
    /// # Errors
    /// As for [`Cluster::new`].
    pub fn on_one_segment_with(nodes: usize, users: usize, etcd: &str) -> Result<Self> {
        Self::make(nodes, 0, users, true, None, etcd)
    }

    /// [`Cluster::on_one_segment`] with conntrack replication: node `i` receives on
    /// `192.0.2.(4i+2):4790` (its management address; the etcd namespace routes between
    /// the nodes), and every node has the key `key` (in a file the cluster removes when
    /// dropped).
    ///
    /// # Errors
    /// As for [`Cluster::new`].
    pub fn replicated(nodes: usize, users: usize, key: &str) -> Result<Self> {
        Self::replicated_with(nodes, users, key, None)
    }

    /// [`Cluster::replicated`] with `etcd.heartbeat_ms` set to `heartbeat_ms` (default if
    /// `None`).
    ///
    /// # Errors
    /// As for [`Cluster::new`].
    pub fn replicated_with(
        nodes: usize,
        users: usize,
        key: &str,
        heartbeat_ms: Option<u64>,
    ) -> Result<Self> {
        let file = std::env::temp_dir().join(format!("vpcep-{}-replication.key", prefix()));
        std::fs::write(&file, key)?;
        let made = Self::make(nodes, 0, users, true, Some((&file, heartbeat_ms)), "");
        if made.is_err() {
            let _ = std::fs::remove_file(&file);
        }
        let mut c = made?;
        c.key_file = Some(file);
        Ok(c)
    }

    /// The replication key file, if the cluster replicates.
    pub fn key_file(&self) -> Option<&std::path::Path> {
        self.key_file.as_deref()
    }

    fn make(
        shared: usize,
        islands: usize,
        users: usize,
        one_segment: bool,
        replication_key: Option<(&std::path::Path, Option<u64>)>,
        etcd_extra: &str,
    ) -> Result<Self> {
        let nodes = shared + islands;
        let etcd_ns = Netns::new(format!("{}-etcd", prefix()))?;
        if replication_key.is_some() {
            // The nodes reach each other through etcd's namespace.
            etcd_ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        }
        let mut worlds = Vec::new();
        for i in 0..nodes {
            let (etcd_ip, node_ip) = mgmt(i);
            // Without one segment, each node's VPC hosts are its own: every node serves
            // its copy, so none is a standby.
            let replication = replication_key.map_or(String::new(), |(k, beat)| {
                let beat = beat.map_or(String::new(), |ms| format!(", heartbeat_ms = {ms}"));
                format!(
                    ", replication_listen = \"{node_ip}:4790\", replication_key_file = \"{}\"{beat}",
                    k.display()
                )
            });
            let extra = if etcd_extra.is_empty() {
                String::new()
            } else {
                format!(", {etcd_extra}")
            };
            let base = format!(
                "store = \"etcd\"\netcd = {{ endpoints = [\"http://{etcd_ip}:2379\"], prefix = \"/vpcep/\", timeout_ms = 1000, node_name = \"node-{i}\", failover = {one_segment}{replication}{extra} }}"
            );
            let w = World::build(users, Offloads::Default, base)?;
            let dev = format!("{}m", w.prefix);
            veth(&etcd_ns, &format!("m{i}"), &w.node, &dev, Offloads::Default)?;
            etcd_ns.exec(&[
                "ip",
                "addr",
                "add",
                &format!("{etcd_ip}/30"),
                "dev",
                &format!("m{i}"),
            ])?;
            w.node
                .exec(&["ip", "addr", "add", &format!("{node_ip}/30"), "dev", &dev])?;
            if replication_key.is_some() {
                w.node
                    .exec(&["ip", "route", "add", "192.0.2.0/24", "via", &etcd_ip])?;
            }
            worlds.push(w);
        }
        if one_segment {
            join_segments(&worlds)?;
        }
        let ips: Vec<String> = (0..nodes).map(|i| mgmt(i).0).collect();
        let etcd = Etcd::start_in(
            &etcd_ns,
            &ips.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        let mut rest = worlds.split_off(1);
        let first = worlds.pop().expect("at least one node").provision()?;
        let mut nodes = vec![first];
        for (i, w) in rest.drain(..).enumerate() {
            let w = if i + 1 < shared {
                join(w, &nodes[0])?
            } else {
                w.provision()?
            };
            nodes.push(w);
        }
        Ok(Self {
            nodes,
            etcd,
            etcd_ns,
            key_file: None,
        })
    }

    /// Route the SNAT range through `next_hop` in the provider VPC (the segment's hosts,
    /// in the first node's provider namespace), and give every node's provider attachment
    /// `snat_next_hop = next_hop` (a reload each).
    ///
    /// # Errors
    /// A reload or the route failed.
    pub fn route_snat_through(&mut self, next_hop: &str) -> Result<()> {
        for w in &mut self.nodes {
            let provider = w.users.len();
            w.set_attachment_option(provider, &format!("snat_next_hop = \"{next_hop}\""));
            w.write_config("")?;
            w.reload()?;
        }
        self.nodes[0].provider.exec(&[
            "ip",
            "route",
            "replace",
            "198.19.128.0/17",
            "via",
            next_hop,
            "dev",
            "br0",
        ])?;
        self.wait_live_everywhere(0)
    }

    /// The VPC ids node `n` says it owns (sorted), if it answers.
    pub fn owned(&self, n: usize) -> Option<Vec<String>> {
        let st = self.nodes[n].status().ok()?;
        let mut v: Vec<String> = st["owned_vpcs"]
            .as_array()?
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        v.sort();
        Some(v)
    }

    /// Wait (at most `within`) until one of the first two nodes owns the first node's user
    /// VPC 0 and provider VPC and the other owns nothing; that node's index.
    ///
    /// # Errors
    /// It was not so within `within`.
    pub fn wait_one_owner(&self, within: Duration) -> Result<usize> {
        let ids = &self.nodes[0].ids;
        let mut vpcs: Vec<String> = [&ids["uvpcs"][0], &ids["pvpc"]]
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        vpcs.sort();
        let mut owner = 0;
        poll_until("one owner of both VPCs", within, || {
            let (a, b) = (self.owned(0), self.owned(1));
            let none = Some(Vec::new());
            if a.as_ref() == Some(&vpcs) && b == none {
                owner = 0;
                true
            } else if b.as_ref() == Some(&vpcs) && a == none {
                owner = 1;
                true
            } else {
                false
            }
        })?;
        Ok(owner)
    }

    /// Wait until every node has applied at least `node`'s revision and its workers run
    /// tables of it: a change made through `node` is live everywhere.
    ///
    /// # Errors
    /// It was not within 10 s.
    pub fn wait_live_everywhere(&self, node: usize) -> Result<()> {
        let target = self.nodes[node].status()?["revision"].as_u64().unwrap_or(0);
        for (i, w) in self.nodes.iter().enumerate() {
            poll_until(
                &format!("node {i} to apply revision {target}"),
                Duration::from_secs(10),
                || {
                    w.status().is_ok_and(|s| {
                        s["revision"].as_u64().unwrap_or(0) >= target
                            && s["applied_revision"] == s["revision"]
                            && s["all_workers_current"] == true
                    })
                },
            )?;
        }
        Ok(())
    }
}

/// Make each VPC of `worlds[0]` one L2 segment: a bridge `br0` in its namespace takes the
/// host's link (and its addresses and routes), and every other world's attachment to that
/// VPC is re-linked as a port of it.
fn join_segments(worlds: &[World]) -> Result<()> {
    let first = &worlds[0];
    let mut segments: Vec<(&Netns, String)> = first
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (u, format!("u{i}")))
        .collect();
    segments.push((&first.provider, "p".to_string()));
    for (host, suffix) in segments {
        let addrs = host.exec(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"])?;
        let addrs: Vec<String> = String::from_utf8_lossy(&addrs.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.find(|x| *x == "inet")?;
                w.next().map(str::to_string)
            })
            .collect();
        let routes = host.exec(&["ip", "-o", "-4", "route", "show", "dev", "eth0"])?;
        let routes: Vec<String> = String::from_utf8_lossy(&routes.stdout)
            .lines()
            .filter(|l| !l.contains("proto kernel"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        host.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        host.exec(&["ip", "link", "set", "eth0", "master", "br0"])?;
        host.exec(&["ip", "link", "set", "br0", "up"])?;
        host.exec(&["ip", "addr", "flush", "dev", "eth0"])?;
        for a in &addrs {
            host.exec(&["ip", "addr", "add", a, "dev", "br0"])?;
        }
        for r in &routes {
            host.exec(&["ip", "route", "replace", r, "dev", "br0"])?;
        }
        for (k, w) in worlds.iter().enumerate().skip(1) {
            let dev = format!("{}{suffix}", w.prefix);
            // Its own host's link goes; its attachment becomes a port of the bridge.
            w.node.exec(&["ip", "link", "del", &dev])?;
            let port = format!("n{k}");
            veth(host, &port, &w.node, &dev, Offloads::Default)?;
            host.exec(&["ip", "link", "set", &port, "master", "br0"])?;
        }
    }
    Ok(())
}

/// Start `w`'s daemon on the VPCs of `first` (same ids, its own interfaces).
fn join(mut w: World, first: &World) -> Result<World> {
    w.ids = first.ids.clone();
    let users = w.users.len();
    let mut att: Vec<(String, String)> = (0..users)
        .map(|i| (format!("{}u{i}", w.prefix), as_str(&w.ids["uvpcs"][i])))
        .collect();
    att.push((format!("{}p", w.prefix), as_str(&w.ids["pvpc"])));
    w.attachments = att;
    w.write_config("")?;
    w.start_daemon()?;
    Ok(w)
}

fn as_str(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}
