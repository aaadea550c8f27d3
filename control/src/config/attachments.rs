//! The `[[attachments]]` of the config: one interface bound to one VPC, and the
//! interface's name, checked as Linux takes it.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// A network interface's name as Linux takes it: 1 to 15 bytes, none of them `/`, a NUL
/// or white space, and neither `.` nor `..`. Checked when the config is read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InterfaceName(String);

impl InterfaceName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InterfaceName {
    type Error = ConfigError;

    fn try_from(s: String) -> Result<Self, ConfigError> {
        let ok = !s.is_empty()
            && s.len() <= 15
            && s != "."
            && s != ".."
            && !s
                .bytes()
                .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace());
        if ok {
            Ok(Self(s))
        } else {
            Err(ConfigError::Invalid(format!(
                "interface {s:?} is not an interface name (1 to 15 bytes, no '/' or white space)"
            )))
        }
    }
}

impl From<InterfaceName> for String {
    fn from(n: InterfaceName) -> Self {
        n.0
    }
}

impl std::ops::Deref for InterfaceName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One interface bound to one VPC.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttachmentConfig {
    /// The interface name (it must exist when the daemon starts).
    pub interface: InterfaceName,
    /// The VPC it carries (the inventory's VPC id).
    pub vpc_id: String,
    /// Port security: take a packet (and an ARP message for the daemon's addresses) only
    /// from the source address and source MAC of one port of the VPC's inventory, flows
    /// already open included; anything else drops as `port_security`. On a provider VPC,
    /// the backends must then be ports with their real MACs. Default false: a source
    /// address need only lie in one of the VPC's subnets.
    #[serde(default)]
    pub port_security: bool,
    /// The private DNS resolver's address in this VPC: the daemon answers ARP for it, and
    /// DNS on UDP and TCP port 53 (see `[dns]`). Default none: no resolver here.
    #[serde(default)]
    pub dns_ip: Option<std::net::Ipv4Addr>,
    /// Flow logs: every flow this VPC's clients open, and the attempts refused, are
    /// written to the node's flow log (`[flow_log]`). Default false.
    #[serde(default)]
    pub flow_log: bool,
    /// On a provider VPC: the address through which its hosts route the SNAT range (a
    /// route `<snat_range> via <snat_next_hop>` on the backends, or in the VPC's route
    /// table). The owner answers ARP for it like a VRRP virtual address, and a takeover
    /// announces this one address instead of every address of the range. Default none:
    /// the range is on-link, and a takeover announces all of it.
    #[serde(default)]
    pub snat_next_hop: Option<std::net::Ipv4Addr>,
}

impl AttachmentConfig {
    /// `interface` carrying `vpc_id`, with every option at its default (no port security,
    /// no DNS resolver).
    pub fn new(interface: InterfaceName, vpc_id: impl Into<String>) -> Self {
        Self {
            interface,
            vpc_id: vpc_id.into(),
            port_security: false,
            dns_ip: None,
            flow_log: false,
            snat_next_hop: None,
        }
    }
}
