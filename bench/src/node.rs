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
