//! A cluster of nodes on one etcd: an etcd namespace linked to every node's namespace by a
//! management veth (etcd side 192.0.2.(4i+1)/30, node side 192.0.2.(4i+2)/30), and one
//! [`World`] per node whose vpcepd runs with `store = "etcd"`. The first node creates the
//! inventory; the next `shared - 1` attach the same user and provider VPCs (their own
//! namespaces play the same VPCs' other hosts), so a change made on any of them is live on
//! all of them; the last `islands` nodes create and attach VPCs of their own (same tenants),
//! so they answer for the shared VPCs' records but compile none of them.

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
        let nodes = shared + islands;
        let etcd_ns = Netns::new(format!("{}-etcd", prefix()))?;
        let mut worlds = Vec::new();
        for i in 0..nodes {
            let (etcd_ip, node_ip) = mgmt(i);
            let base = format!(
                "store = \"etcd\"\netcd = {{ endpoints = [\"http://{etcd_ip}:2379\"], prefix = \"/vpcep/\", timeout_ms = 1000, node_name = \"node-{i}\" }}"
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
            worlds.push(w);
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
        })
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
