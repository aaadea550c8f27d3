//! The node namespace serving the clients with the kernel instead of the daemon (the
//! baselines: nftables NAT, HAProxy): the endpoint's address on the user VPC's veth, the
//! SNAT address on the provider's, a route to the backend; and back.

use anyhow::Result;
use testkit::World;

/// Give the node `ep` (on the user VPC's veth), 198.19.128.1 (on the provider's) and a
/// route to the backend 10.0.0.10.
///
/// # Errors
/// An `ip` command failed.
pub fn kernel_addresses(w: &World, ep: &str) -> Result<()> {
    let p = &w.prefix;
    let n = &w.node;
    n.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{ep}/24"),
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
    Ok(())
}

/// Undo [`kernel_addresses`], and make the client and the backend forget the neighbours
/// they learned meanwhile (the daemon resolves its own).
///
/// # Errors
/// An `ip` command failed.
pub fn kernel_addresses_off(w: &World) -> Result<()> {
    let p = &w.prefix;
    let n = &w.node;
    n.exec(&["ip", "route", "del", "10.0.0.10/32"])?;
    n.exec(&["ip", "addr", "flush", "dev", &format!("{p}u0")])?;
    n.exec(&["ip", "addr", "flush", "dev", &format!("{p}p")])?;
    w.users[0].exec(&["ip", "neigh", "flush", "all"])?;
    w.provider.exec(&["ip", "neigh", "flush", "all"])?;
    Ok(())
}

/// The floor (`nullfwd`, no NAT) on the same world: the client reaches `ep` and the
/// backend answers from it. The backend holds `ep` itself (on `lo`) with servers bound to
/// it, each end has a static neighbour entry for the other through the node's MACs (the
/// forwarder answers no ARP), and the forwarder runs in the node namespace with the
/// daemon's I/O settings (`extra`: `--spin-us N`, `--rx tpacket_v3`).
#[derive(Debug)]
pub struct Floor {
    /// The forwarder.
    pub fwd: testkit::Proc,
    servers: Vec<testkit::Proc>,
}

impl Floor {
    /// Start it (the daemon must be stopped).
    ///
    /// # Errors
    /// A command failed, or the forwarder or a server did not come up.
    pub fn start(w: &World, ep: &str, extra: &[String]) -> Result<Self> {
        use testkit::mac_of;
        let p = &w.prefix;
        let (node_u, node_p) = (
            mac_of(&w.node, &format!("{p}u0"))?,
            mac_of(&w.node, &format!("{p}p"))?,
        );
        let (client, backend) = (mac_of(&w.users[0], "eth0")?, mac_of(&w.provider, "eth0")?);
        w.users[0].exec(&[
            "ip", "neigh", "replace", ep, "lladdr", &node_u, "dev", "eth0",
        ])?;
        w.provider.exec(&[
            "ip", "neigh", "replace", "10.0.0.5", "lladdr", &node_p, "dev", "eth0",
        ])?;
        w.provider
            .exec(&["ip", "addr", "add", &format!("{ep}/32"), "dev", "lo"])?;
        let probe = testkit::bin("netprobe");
        let probe = probe.to_str().unwrap_or("netprobe");
        let servers = vec![
            w.provider.spawn(
                &["iperf3", "-s", "-B", ep, "-p", "5201"],
                &w.dir.join("floor-iperf3.log"),
            )?,
            w.provider.spawn(
                &[probe, "accept-server", &format!("{ep}:9000")],
                &w.dir.join("floor-accept.log"),
            )?,
            w.provider.spawn(
                &[probe, "udp-echo", &format!("{ep}:7777")],
                &w.dir.join("floor-echo.log"),
            )?,
        ];
        let fwd_bin = testkit::bin("nullfwd");
        let (ifu, ifp) = (format!("{p}u0"), format!("{p}p"));
        let mut args = vec![
            fwd_bin.to_str().unwrap_or("nullfwd"),
            &ifu,
            &client,
            &ifp,
            &backend,
        ];
        args.extend(extra.iter().map(String::as_str));
        let fwd = w.node.spawn(&args, &w.dir.join("nullfwd.log"))?;
        testkit::poll_until(
            "the null forwarder to forward",
            std::time::Duration::from_secs(5),
            || fwd.output().contains("forwarding"),
        )?;
        // Listening on `ep` too (5201 and 9000 listen on the backend's own address already).
        let filter = format!("src {ep} and ( sport = :5201 or sport = :9000 )");
        testkit::poll_until(
            "the floor's servers",
            std::time::Duration::from_secs(5),
            || {
                w.provider
                    .command("ss")
                    .args(["-ltnH", &filter])
                    .output()
                    .is_ok_and(|o| {
                        o.stdout
                            .split(|b| *b == b'\n')
                            .filter(|l| !l.is_empty())
                            .count()
                            >= 2
                    })
            },
        )?;
        Ok(Self { fwd, servers })
    }

    /// Stop it and undo what [`Floor::start`] set.
    ///
    /// # Errors
    /// An `ip` command failed.
    pub fn stop(mut self, w: &World, ep: &str) -> Result<()> {
        self.fwd.terminate(std::time::Duration::from_secs(5));
        drop(self.servers);
        w.provider
            .exec(&["ip", "addr", "del", &format!("{ep}/32"), "dev", "lo"])?;
        w.users[0].exec(&["ip", "neigh", "flush", "all"])?;
        w.provider.exec(&["ip", "neigh", "flush", "all"])?;
        Ok(())
    }
}
