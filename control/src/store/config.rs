//! Which engine holds the store (`store = "redb"` or `"etcd"` in the daemon's file) and the
//! etcd engine's settings (`[etcd]`), with their checks and [`open`], which the daemon calls.
//!
//! redb is the embedded default for one node. etcd is for a cluster: every node's vpcepd
//! reads and writes the same records under `etcd.prefix`, and follows the others' changes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{EtcdStore, RedbStore, Store, StoreError};

/// The engine of the store.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreEngine {
    /// A shared etcd cluster (v3 API), configured by `[etcd]`: many nodes, one truth.
    Etcd,
    /// One redb file, `state.redb` in the data directory. The default.
    #[default]
    Redb,
}

/// Shortest `etcd.timeout_ms`.
pub const MIN_ETCD_TIMEOUT_MS: u64 = 100;
/// Longest `etcd.timeout_ms`.
pub const MAX_ETCD_TIMEOUT_MS: u64 = 60_000;

/// The etcd engine (`[etcd]`), used when `store = "etcd"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// The cluster's client URLs (`http://` or `https://`). Default `["http://127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Every key vpcep writes starts with this (it must end with `/`); nodes that share a
    /// prefix share their tenants. Default `/vpcep/`.
    pub prefix: String,
    /// How long one etcd request may take before the API answers 503 (EndPoint.0025),
    /// milliseconds (100 to 60000). Default 2000.
    pub timeout_ms: u64,
    /// CA certificate (PEM) that signed the etcd servers' certificates; with `https://`
    /// endpoints. Default none: the system's roots are not used, so set it for TLS.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's client-certificate auth; with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// etcd user (etcd's own auth); with `password_file`. Default none.
    pub user: Option<String>,
    /// A file holding `user`'s password (one line), so the password is not in this file.
    pub password_file: Option<PathBuf>,
    /// This node's name in the cluster (`vpcepctl cluster status`); unique per cluster.
    /// Default: the host name.
    pub node_name: Option<String>,
    /// Seconds a node's membership lease lives without renewal (2 to 60): a node that dies
    /// leaves the member list this long after, and (with `failover`) a standby takes over
    /// its VPCs this long after its last renewal. Default 2: failover under 3 s; a node
    /// whose etcd renewals stall for 2 s hands its VPCs over.
    pub lease_ttl_secs: u64,
    /// Elect one owner per VPC that several nodes attach (see [`super::owners`]): only the
    /// owner answers ARP for the VPC's endpoint addresses (and the SNAT range on a provider
    /// VPC) and opens flows there; when its lease expires a standby takes over and sends
    /// gratuitous ARP. For nodes whose attachments to a VPC share one L2 segment. Set it
    /// false where each node's attachment is a segment of its own (every node then serves
    /// its own segment). Default true.
    pub failover: bool,
    /// Where this node receives conntrack replication (UDP, `ip:port` on a network the
    /// nodes share; published in the member list). With `replication_key_file` and
    /// `failover`, the owner of each VPC streams its flows to the standbys, so a standby
    /// that takes over carries them on (see [`crate::replica`]). Default none: off.
    pub replication_listen: Option<SocketAddr>,
    /// A file holding the cluster's replication key (at least 16 bytes; surrounding
    /// whitespace is ignored), the same on every node: datagrams are authenticated with
    /// it (HMAC-SHA256). Required with `replication_listen`.
    pub replication_key_file: Option<PathBuf>,
    /// With replication: milliseconds between two heartbeats to the peers (10 to 1000).
    /// A standby that misses [`HEARTBEAT_MISSES`] of its owner's in a row revokes the
    /// owner's election lease, and takes its VPCs over at once instead of when the lease
    /// expires. Default 50 (detection in 150 to 200 ms: a TCP stream through a failover
    /// pauses about 250 ms, its first retransmission; 100 gave 660 ms, see BENCHMARKS.md).
    /// A node stalled that long is taken for dead: its VPCs move, and replication carries
    /// their flows; raise it on machines that stall.
    pub heartbeat_ms: u64,
    /// What an owner does when it cannot renew its election lease (etcd unreachable from
    /// it). False, the default: it steps down two thirds of the TTL after its last renewal,
    /// before etcd can let the lease expire and a standby take over, so two owners never
    /// answer at once: it stops answering ARP and opening flows (established flows go on),
    /// and takes its VPCs back if it renews in time. The price: while etcd is down for
    /// every node, no node opens flows in shared VPCs. True: it keeps what it owns until it
    /// hears otherwise (fail static): etcd down everywhere costs nothing, but an owner cut
    /// off alone answers beside the new owner until it is back.
    pub fail_static: bool,
}

/// Heartbeats missed in a row before a peer is taken for dead.
pub const HEARTBEAT_MISSES: u32 = 3;

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/vpcep/".into(),
            timeout_ms: 2000,
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
            password_file: None,
            node_name: None,
            lease_ttl_secs: 2,
            failover: true,
            replication_listen: None,
            replication_key_file: None,
            heartbeat_ms: 50,
            fail_static: false,
        }
    }
}

impl EtcdConfig {
    /// Check the settings (at config load, whatever the engine, so a mistake is found before
    /// the day it is switched on).
    ///
    /// # Errors
    /// What is wrong, for [`crate::config::ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("etcd.endpoints must list at least one URL".into());
        }
        let tls = self.ca_file.is_some() || self.cert_file.is_some();
        for e in &self.endpoints {
            let https = e.starts_with("https://");
            if !https && !e.starts_with("http://") {
                return Err(format!(
                    "etcd.endpoints: {e:?} must start with http:// or https://"
                ));
            }
            if https != tls {
                return Err(format!(
                    "etcd.endpoints: {e:?}: https:// endpoints need etcd.ca_file (or \
                     cert_file), and http:// ones must not have them"
                ));
            }
        }
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') || self.prefix.len() < 2 {
            return Err("etcd.prefix must start and end with '/', like \"/vpcep/\"".into());
        }
        if !(MIN_ETCD_TIMEOUT_MS..=MAX_ETCD_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(format!(
                "etcd.timeout_ms must be {MIN_ETCD_TIMEOUT_MS} to {MAX_ETCD_TIMEOUT_MS}"
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("etcd.cert_file and etcd.key_file go together".into());
        }
        if self.user.is_some() != self.password_file.is_some() {
            return Err("etcd.user and etcd.password_file go together".into());
        }
        if !(2..=60).contains(&self.lease_ttl_secs) {
            return Err("etcd.lease_ttl_secs must be 2 to 60".into());
        }
        if let Some(n) = &self.node_name
            && (n.is_empty()
                || n.len() > 64
                || !n.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
        {
            return Err("etcd.node_name must be 1 to 64 printable characters, no '/'".into());
        }
        if self.replication_listen.is_some() != self.replication_key_file.is_some() {
            return Err("etcd.replication_listen and etcd.replication_key_file go together".into());
        }
        if self.replication_listen.is_none() && self.heartbeat_ms != Self::default().heartbeat_ms {
            return Err(
                "etcd.heartbeat_ms is for replication: it needs etcd.replication_listen".into(),
            );
        }
        if let Some(a) = self.replication_listen {
            if a.ip().is_unspecified() || a.port() == 0 {
                return Err(format!(
                    "etcd.replication_listen {a}: give the address and port peers send to \
                     (not 0.0.0.0, not port 0)"
                ));
            }
            if !self.failover {
                return Err(
                    "etcd.replication_listen needs etcd.failover (a standby to replicate to)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The replication key, read from `replication_key_file`; `None` if replication is off.
    ///
    /// # Errors
    /// The file cannot be read, or holds under 16 bytes.
    pub fn replication_key(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(path) = &self.replication_key_file else {
            return Ok(None);
        };
        let raw = std::fs::read(path)
            .map_err(|e| format!("etcd.replication_key_file {}: {e}", path.display()))?;
        let key = raw.trim_ascii();
        if key.len() < 16 {
            return Err(format!(
                "etcd.replication_key_file {}: the key must be at least 16 bytes",
                path.display()
            ));
        }
        Ok(Some(key.to_vec()))
    }

    /// This node's name: `node_name`, or the host name.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "vpcepd".into())
        })
    }

    /// The per-request deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// An opened store: the trait object the registry uses, and the etcd connection when the
/// engine is etcd (membership uses it too).
#[allow(missing_debug_implementations)] // a dyn Store is not Debug
pub struct Opened {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The same store as etcd, if it is.
    pub etcd: Option<Arc<EtcdStore>>,
}

/// Open the store the configuration names: redb under `data_dir`, or a connection to etcd.
///
/// # Errors
/// [`StoreError`]: the file cannot be opened, or etcd's settings cannot be used (an
/// unreadable certificate or password file, a bad URL, refused credentials).
pub fn open(engine: StoreEngine, etcd: &EtcdConfig, data_dir: &Path) -> Result<Opened, StoreError> {
    Ok(match engine {
        StoreEngine::Redb => Opened {
            store: Arc::new(RedbStore::open(&data_dir.join("state.redb"))?),
            etcd: None,
        },
        StoreEngine::Etcd => {
            let e = Arc::new(EtcdStore::connect(etcd)?);
            Opened {
                store: Arc::clone(&e) as Arc<dyn Store>,
                etcd: Some(e),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_refuse_what_cannot_work() {
        assert_eq!(EtcdConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut EtcdConfig)| {
            let mut c = EtcdConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.endpoints.clear()).contains("at least one"));
        assert!(bad(|c| c.endpoints = vec!["127.0.0.1:2379".into()]).contains("http://"));
        assert!(bad(|c| c.endpoints = vec!["https://e:2379".into()]).contains("ca_file"));
        assert!(bad(|c| c.ca_file = Some("/ca.pem".into())).contains("ca_file"));
        assert!(bad(|c| c.prefix = "vpcep".into()).contains("prefix"));
        assert!(bad(|c| c.prefix = "/".into()).contains("prefix"));
        assert!(bad(|c| c.timeout_ms = 0).contains("timeout_ms"));
        assert!(bad(|c| c.user = Some("u".into())).contains("password_file"));
        assert!(bad(|c| c.lease_ttl_secs = 1).contains("lease_ttl_secs"));
        assert!(bad(|c| c.node_name = Some("a/b".into())).contains("node_name"));
        assert!(bad(|c| c.node_name = Some(String::new())).contains("node_name"));
        assert!(
            bad(|c| c.replication_listen = Some("10.0.0.1:4790".parse().unwrap()))
                .contains("go together")
        );
        assert!(
            bad(|c| {
                c.replication_listen = Some("0.0.0.0:4790".parse().unwrap());
                c.replication_key_file = Some("/k".into());
            })
            .contains("0.0.0.0")
        );
        assert!(
            bad(|c| {
                c.replication_listen = Some("10.0.0.1:4790".parse().unwrap());
                c.replication_key_file = Some("/k".into());
                c.failover = false;
            })
            .contains("failover")
        );
        assert!(bad(|c| c.heartbeat_ms = 100).contains("replication_listen"));
        assert!(
            bad(|c| {
                c.endpoints = vec!["https://e:2379".into()];
                c.ca_file = Some("/ca.pem".into());
                c.cert_file = Some("/c.pem".into());
            })
            .contains("key_file")
        );
    }
}
