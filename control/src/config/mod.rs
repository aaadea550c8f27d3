//! The daemon's configuration file (TOML). Unknown keys are refused; every key has a
//! documented default (see `vpcepd.example.toml`), so `vpcepd` runs with no file at all.

mod attachments;
pub mod gateway_services;
mod sections;

pub use self::attachments::{AttachmentConfig, InterfaceName};
pub use self::sections::{
    ApiConfig, AuditConfig, ConntrackConfig, DnsConfig, FlowLogConfig, IoBackend, LogFormat,
    RxMode, SpinMode, TxMode, WorkerLayout,
};

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dataplane::tables::Ipv4Cidr;
use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::registry::Quotas;
use crate::store::{EtcdConfig, StoreEngine};

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML of the expected shape (unknown keys included).
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Largest `auth_window_secs`: a day. Larger values are refused at load (a huge one would
/// overflow the date arithmetic).
pub const MAX_AUTH_WINDOW_SECS: u64 = 86_400;
/// Largest conntrack timeout: a week.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 86_400;
/// Largest `conntrack.capacity` (each flow of capacity reserves 96 bytes of table at start).
pub const MAX_CONNTRACK_CAPACITY: usize = 1 << 27;
/// Largest `api.max_connections` (tokio's semaphore takes at most `usize::MAX >> 3`).
pub const MAX_CONNECTIONS: usize = 1 << 20;
/// Largest `api.replay_cache_entries`.
pub const MAX_REPLAY_ENTRIES: usize = 1 << 24;

fn default_region() -> String {
    "region-1".into()
}
fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9797))
}
fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9798))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/vpcep")
}
fn default_credentials() -> PathBuf {
    PathBuf::from("/etc/vpcep/credentials.toml")
}
fn default_snat() -> Ipv4Net {
    Ipv4Net::new(std::net::Ipv4Addr::new(198, 19, 128, 0), 17).expect("17 is a valid prefix")
}
fn default_window() -> u64 {
    900
}
fn default_workers() -> usize {
    1
}
fn default_spin_us() -> u64 {
    50
}
fn default_max_frame() -> usize {
    dataplane::config::MAX_FRAME_BYTES
}
fn default_tx_ring_slots() -> u32 {
    256
}
fn default_rx_ring_frames() -> usize {
    256
}
fn default_true() -> bool {
    true
}

/// The whole file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Region, the first part of every service name. Default `region-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// The VPCEP API listener. Default `127.0.0.1:9797`.
    #[serde(default = "default_api")]
    pub api_listen: SocketAddr,
    /// The admin listener (`/healthz`, `/status`, `/metrics`). Default `127.0.0.1:9798`.
    #[serde(default = "default_admin")]
    pub admin_listen: SocketAddr,
    /// Where the node's files live (`state.redb` with the redb store, the audit log).
    /// Default `/var/lib/vpcep`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The daemon's own log on stderr: `text` (the default) or `json` (one object a line;
    /// `vpcepd --log-json` forces it). The level comes from `RUST_LOG` (default `info`).
    #[serde(default)]
    pub log_format: LogFormat,
    /// The store's engine: `redb` (one node, the default) or `etcd` (a cluster; see
    /// `[etcd]`).
    #[serde(default)]
    pub store: StoreEngine,
    /// The etcd store's settings (used with `store = "etcd"`).
    #[serde(default)]
    pub etcd: EtcdConfig,
    /// The credentials file. Default `/etc/vpcep/credentials.toml`.
    #[serde(default = "default_credentials")]
    pub credentials: PathBuf,
    /// Allowed difference between `X-Sdk-Date` and the clock, seconds (1 to 86400).
    /// Default 900.
    #[serde(default = "default_window")]
    pub auth_window_secs: u64,
    /// The API's limits and security options.
    #[serde(default)]
    pub api: ApiConfig,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Flow logs.
    #[serde(default)]
    pub flow_log: FlowLogConfig,
    /// The SNAT range (an IPv4 CIDR, a /30 or larger). Default `198.19.128.0/17`.
    #[serde(default = "default_snat")]
    pub snat_range: Ipv4Net,
    /// Worker threads; each serves every attachment (with several, each attachment's
    /// receive sockets form one `PACKET_FANOUT` group). Default 1.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// `shared` (each worker serves every attachment) or `per_attachment` (each
    /// attachment has `workers` of its own). Default `shared`.
    #[serde(default)]
    pub worker_layout: WorkerLayout,
    /// How long a worker that just had traffic keeps looking for frames before it sleeps,
    /// in microseconds; 0 never spins. Default 50 (see BENCHMARKS.md).
    #[serde(default = "default_spin_us")]
    pub spin_us: u64,
    /// `fixed` (always `spin_us`) or `adaptive` (up to `spin_us`, as long as the sleeps
    /// say it pays). Default `adaptive`. The spins' cost is counted (`spin_hits`,
    /// `spin_misses`, `spin_wasted_us`).
    #[serde(default)]
    pub spin: SpinMode,
    /// Largest frame taken, in bytes (a GSO/GRO super-frame is one frame); larger frames
    /// are dropped as `oversize`. Default 65549, the largest IPv4 packet plus Ethernet.
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
    /// Packet I/O backend: `af_packet`.
    #[serde(default)]
    pub io: IoBackend,
    /// How receive sockets take frames: `recvmmsg` (default), `tpacket_v2` (a ring of
    /// `rx_ring_frames` slots, frames processed in place) or `tpacket_v3` (a ring of
    /// blocks).
    #[serde(default)]
    pub rx: RxMode,
    /// Slots of each receive socket's ring with `rx = "tpacket_v2"` (64 to 8192; a slot
    /// holds one frame of up to `max_frame_bytes`, 15 to a MiB). Default 256 (18 MiB per
    /// worker and attachment).
    #[serde(default = "default_rx_ring_frames")]
    pub rx_ring_frames: usize,
    /// How transmit sockets hand frames over: `sendmmsg` (default) or `ring`.
    #[serde(default)]
    pub tx: TxMode,
    /// Slots of each attachment's transmit ring with `tx = "ring"` (8 to 4096, 68 KiB
    /// each). Default 256 (17 MiB per attachment).
    #[serde(default = "default_tx_ring_slots")]
    pub tx_ring_slots: u32,
    /// Keep the kernel's own stack off the attachments: a direct-action `cls_bpf` program on
    /// the ingress hook drops every frame after the daemon's packet sockets have their copy,
    /// so the kernel spends nothing on frames it must not handle (and never answers for
    /// them); `/status` shows whether it is in place. Default true.
    #[serde(default = "default_true")]
    pub ingress_drop: bool,
    /// Conntrack.
    #[serde(default)]
    pub conntrack: ConntrackConfig,
    /// Quotas per project.
    #[serde(default)]
    pub quotas: Quotas,
    /// The private DNS resolvers.
    #[serde(default)]
    pub dns: DnsConfig,
    /// Interfaces and their VPCs; none: the API alone.
    #[serde(default)]
    pub attachments: Vec<AttachmentConfig>,
    /// The operator's gateway services (see [`gateway_services`]). Reloadable.
    #[serde(default)]
    pub gateway_services: Vec<gateway_services::GatewayServiceConfig>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

impl DaemonConfig {
    /// Parse and validate TOML text.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read, parse and validate a file.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Check ranges and consistency.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.region.is_empty() || self.region.contains(char::is_whitespace) {
            return bad("region must be a non-empty word".into());
        }
        let snat = self.snat()?;
        for a in &self.attachments {
            if let Some(ip) = a.snat_next_hop
                && (ip.is_unspecified()
                    || ip.is_broadcast()
                    || ip.is_multicast()
                    || ip.is_loopback()
                    || snat.contains_u32(ip.to_bits())
                    || a.dns_ip == Some(ip))
            {
                return bad(format!(
                    "attachments: snat_next_hop {ip} of {} must be a unicast address outside \
                     the SNAT range, not the dns_ip",
                    a.interface
                ));
            }
            if let Some(ip) = a.dns_ip
                && (ip.is_unspecified()
                    || ip.is_broadcast()
                    || ip.is_multicast()
                    || ip.is_loopback()
                    || snat.contains_u32(ip.to_bits()))
            {
                return bad(format!(
                    "attachments: dns_ip {ip} of {} must be a unicast address outside the SNAT range",
                    a.interface
                ));
            }
        }
        if self.dns.upstreams.len() > 8 {
            return bad("dns.upstreams: at most 8".into());
        }
        if self.dns.ttl_secs > 86_400 {
            return bad("dns.ttl_secs must be 0 to 86400".into());
        }
        if !(1..=1024).contains(&self.dns.tcp_connections) {
            return bad("dns.tcp_connections must be 1 to 1024".into());
        }
        if !(1..=self.dns.tcp_connections).contains(&self.dns.tcp_connections_per_client) {
            return bad("dns.tcp_connections_per_client must be 1 to dns.tcp_connections".into());
        }
        self.etcd.validate().map_err(ConfigError::Invalid)?;
        if !(1..=MAX_AUTH_WINDOW_SECS).contains(&self.auth_window_secs) {
            return bad(format!(
                "auth_window_secs must be 1 to {MAX_AUTH_WINDOW_SECS}"
            ));
        }
        if !(1..=MAX_REPLAY_ENTRIES).contains(&self.api.replay_cache_entries) {
            return bad(format!(
                "api.replay_cache_entries must be 1 to {MAX_REPLAY_ENTRIES}"
            ));
        }
        let api = &self.api;
        for (name, secs) in [
            ("header_read_timeout_secs", api.header_read_timeout_secs),
            ("body_timeout_secs", api.body_timeout_secs),
            ("sign_in_window_secs", api.sign_in_window_secs),
        ] {
            if !(1..=3600).contains(&secs) {
                return bad(format!("api.{name} must be 1 to 3600"));
            }
        }
        if !(60..=86_400).contains(&api.session_ttl_secs) {
            return bad("api.session_ttl_secs must be 60 to 86400".to_string());
        }
        if api.sign_in_failures == 0 {
            return bad("api.sign_in_failures must be at least 1".to_string());
        }
        if !(1..=MAX_CONNECTIONS).contains(&api.max_connections) {
            return bad(format!(
                "api.max_connections must be 1 to {MAX_CONNECTIONS}"
            ));
        }
        if api.tls_cert.is_some() != api.tls_key.is_some() {
            return bad("api.tls_cert and api.tls_key go together".into());
        }
        if api.rate_per_sec == 0 || api.rate_burst == 0 {
            return bad("api.rate_per_sec and api.rate_burst must be above 0".into());
        }
        let fl = &self.flow_log;
        if !(1..=3600).contains(&fl.interval_secs)
            || fl.max_bytes < 4096
            || fl.files > 1000
            || !(1..=1 << 24).contains(&fl.queue)
        {
            return bad("flow_log: interval_secs must be 1 to 3600, max_bytes at least 4096, files at most 1000, queue 1 to 16777216".into());
        }
        if self.audit.max_bytes < 4096 || self.audit.files > 1000 {
            return bad("audit.max_bytes must be at least 4096, audit.files at most 1000".into());
        }
        if self.workers == 0 || self.workers > 64 {
            return bad("workers must be 1 to 64".into());
        }
        if !(1..=MAX_CONNTRACK_CAPACITY).contains(&self.conntrack.capacity) {
            return bad(format!(
                "conntrack.capacity must be 1 to {MAX_CONNTRACK_CAPACITY}"
            ));
        }
        let c = &self.conntrack;
        for (name, secs) in [
            ("tcp_embryonic_secs", c.tcp_embryonic_secs),
            ("tcp_established_secs", c.tcp_established_secs),
            ("tcp_closing_secs", c.tcp_closing_secs),
            ("tcp_closed_secs", c.tcp_closed_secs),
            ("udp_secs", c.udp_secs),
        ] {
            // A timeout is added to the workers' clock: a huge one would overflow `Instant`.
            if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
                return bad(format!("conntrack.{name} must be 1 to {MAX_TIMEOUT_SECS}"));
            }
        }
        if c.handover_interval_secs > MAX_TIMEOUT_SECS {
            return bad(format!(
                "conntrack.handover_interval_secs must be 0 to {MAX_TIMEOUT_SECS}"
            ));
        }
        if self.io == IoBackend::AfXdp && self.worker_layout != WorkerLayout::Shared {
            return bad("worker_layout = \"per_attachment\" needs io = \"af_packet\"".into());
        }
        if self.io == IoBackend::AfXdp && self.workers != 1 {
            return bad("io = \"af_xdp\" runs one worker (workers = 1)".into());
        }
        if self.spin_us > 10_000 {
            return bad("spin_us must be at most 10000".into());
        }
        if !(8..=4096).contains(&self.tx_ring_slots) {
            return bad("tx_ring_slots must be between 8 and 4096".into());
        }
        if self.tx == TxMode::Ring && self.io != IoBackend::AfPacket {
            return bad("tx = \"ring\" is for io = \"af_packet\"".into());
        }
        if self.rx != RxMode::Recvmmsg && self.io != IoBackend::AfPacket {
            return bad("rx rings are for io = \"af_packet\"".into());
        }
        if !(64..=8192).contains(&self.rx_ring_frames) {
            return bad("rx_ring_frames must be between 64 and 8192".into());
        }
        // A ring's slot holds one frame and some headers, and a 1 MiB block at least two.
        if self.rx == RxMode::TpacketV2 && self.max_frame_bytes > 256 << 10 {
            return bad(
                "rx = \"tpacket_v2\" takes frames of at most 262144 bytes (max_frame_bytes)".into(),
            );
        }
        self.dataplane()
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for a in &self.attachments {
            if !seen.insert(&a.interface) {
                return bad(format!("interface {} is attached twice", a.interface));
            }
            if a.vpc_id.is_empty() {
                return bad(format!("attachment {} has an empty vpc_id", a.interface));
            }
        }
        let mut vpcs = std::collections::HashSet::new();
        for a in &self.attachments {
            if !vpcs.insert(&a.vpc_id) {
                return bad(format!("VPC {} is attached twice", a.vpc_id));
            }
        }
        self.snat()?;
        gateway_services::validate(
            &self.gateway_services,
            &self.attachments,
            self.snat_range.trunc(),
        )
    }

    /// How long a deleted endpoint's meter slot waits before another endpoint gets it:
    /// the longest conntrack timeout (a flow of the old endpoint that is never seen again
    /// is gone by then) and a minute for the sweep.
    pub fn meter_hold(&self) -> Duration {
        let c = &self.conntrack;
        let longest = [
            c.tcp_embryonic_secs,
            c.tcp_established_secs,
            c.tcp_closing_secs,
            c.tcp_closed_secs,
            c.udp_secs,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Duration::from_secs(longest.saturating_add(60))
    }

    /// The date window of signed requests.
    pub fn auth_window(&self) -> chrono::TimeDelta {
        // validate() keeps the value at most a day, so this cannot saturate.
        chrono::TimeDelta::seconds(i64::try_from(self.auth_window_secs).unwrap_or(i64::MAX))
    }

    /// The limits of the HTTP listeners.
    pub fn http_limits(&self) -> crate::api::http::HttpLimits {
        crate::api::http::HttpLimits {
            header_read_timeout: Duration::from_secs(self.api.header_read_timeout_secs),
            max_connections: self.api.max_connections,
        }
    }

    /// The per-project request rate limiter.
    pub fn rate_limit(&self) -> crate::api::http::RateLimit {
        let nz = |v: u32| std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN);
        crate::api::http::RateLimit::new(nz(self.api.rate_per_sec), nz(self.api.rate_burst))
    }

    /// The SNAT range.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if it is smaller than 4 addresses.
    pub fn snat(&self) -> Result<Ipv4Cidr, ConfigError> {
        let n = self.snat_range.trunc();
        let c = Ipv4Cidr::new(n.addr(), n.prefix_len())
            .ok_or_else(|| ConfigError::Invalid(format!("snat_range {n} is not an IPv4 CIDR")))?;
        if c.prefix() > 30 {
            return Err(ConfigError::Invalid(
                "snat_range must be a /30 or larger".into(),
            ));
        }
        Ok(c)
    }

    /// True if this node replicates its conntrack to its standbys (a cluster on etcd with
    /// `failover` and a replication address).
    pub fn replicates(&self) -> bool {
        self.store == StoreEngine::Etcd
            && self.etcd.failover
            && self.etcd.replication_listen.is_some()
    }

    /// The dataplane configuration (attachment MACs are filled in by the daemon).
    pub fn dataplane(&self) -> dataplane::Config {
        let c = &self.conntrack;
        dataplane::Config {
            conntrack_capacity: NonZeroUsize::new(c.capacity).unwrap_or(NonZeroUsize::MIN),
            conntrack_vpc_percent: c.vpc_percent,
            timeouts: dataplane::Timeouts {
                tcp_embryonic: Duration::from_secs(c.tcp_embryonic_secs),
                tcp_established: Duration::from_secs(c.tcp_established_secs),
                tcp_closing: Duration::from_secs(c.tcp_closing_secs),
                tcp_closed: Duration::from_secs(c.tcp_closed_secs),
                udp: Duration::from_secs(c.udp_secs),
            },
            max_frame_bytes: self.max_frame_bytes,
            flow_log: self.attachments.iter().map(|a| a.flow_log).collect(),
            ..dataplane::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses_and_states_the_defaults() {
        let text = include_str!("../../../deploy/vpcepd.example.toml");
        let cfg = DaemonConfig::from_toml(text).unwrap();
        let mut defaults = DaemonConfig::default();
        defaults.attachments.clear();
        assert_eq!(cfg, defaults, "the example documents exactly the defaults");
        let cluster = include_str!("../../../deploy/cluster.example.toml");
        let cfg = DaemonConfig::from_toml(cluster).unwrap();
        assert_eq!(
            (cfg.store, cfg.etcd.endpoints.len()),
            (StoreEngine::Etcd, 3)
        );
        let creds = include_str!("../../../deploy/credentials.example.toml");
        assert_eq!(crate::auth::Credentials::from_toml(creds).unwrap().len(), 1);
    }

    #[test]
    fn worker_layout_is_shared_by_default_and_per_attachment_needs_af_packet() {
        assert_eq!(DaemonConfig::default().worker_layout, WorkerLayout::Shared);
        let per = DaemonConfig::from_toml("worker_layout = \"per_attachment\"").unwrap();
        assert_eq!(per.worker_layout, WorkerLayout::PerAttachment);
        let err = DaemonConfig::from_toml("worker_layout = \"per_attachment\"\nio = \"af_xdp\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker_layout"), "{err}");
        assert!(DaemonConfig::from_toml("worker_layout = \"each\"").is_err());
    }

    #[test]
    fn receive_rings_are_for_af_packet_and_sized_within_bounds() {
        let v2 = DaemonConfig::from_toml("rx = \"tpacket_v2\"\nrx_ring_frames = 64").unwrap();
        assert_eq!((v2.rx, v2.rx_ring_frames), (RxMode::TpacketV2, 64));
        for frames in [0, 63, 8193] {
            let err = DaemonConfig::from_toml(&format!("rx_ring_frames = {frames}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("rx_ring_frames"), "{frames}: {err}");
        }
        let err = DaemonConfig::from_toml("rx = \"tpacket_v2\"\nmax_frame_bytes = 300000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_frame_bytes"), "{err}");
        for rx in ["tpacket_v2", "tpacket_v3"] {
            let err = DaemonConfig::from_toml(&format!("rx = \"{rx}\"\nio = \"af_xdp\""))
                .unwrap_err()
                .to_string();
            assert!(err.contains("af_packet"), "{rx}: {err}");
        }
    }

    #[test]
    fn log_format_is_text_by_default_json_on_request_and_nothing_else() {
        assert_eq!(DaemonConfig::default().log_format, LogFormat::Text);
        let json = DaemonConfig::from_toml("log_format = \"json\"").unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
        for bad in ["\"JSON\"", "\"yaml\"", "\"\"", "1"] {
            let err = DaemonConfig::from_toml(&format!("log_format = {bad}")).unwrap_err();
            assert!(matches!(err, ConfigError::Parse(_)), "{bad}: {err}");
            assert!(err.to_string().contains("log_format"), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_and_refusals() {
        let d = DaemonConfig::default();
        assert_eq!(d.api_listen.port(), 9797);
        assert_eq!(d.snat().unwrap().prefix(), 17);
        assert!(
            DaemonConfig::from_toml("nonsense = 1").is_err(),
            "unknown keys are refused"
        );
        assert!(
            DaemonConfig::from_toml("[conntrack]\nvpc_percent = 0").is_err(),
            "a VPC share of 0 % would refuse every flow"
        );
        let att = "[[attachments]]\ninterface = \"a\"\nvpc_id = \"v\"\n";
        let cfg = DaemonConfig::from_toml(att).unwrap();
        assert!(
            !cfg.attachments[0].port_security,
            "port security is off by default"
        );
        let cfg = DaemonConfig::from_toml(&format!("{att}port_security = true")).unwrap();
        assert!(cfg.attachments[0].port_security);
        assert!(DaemonConfig::from_toml(&format!("{att}port_security = \"yes\"")).is_err());
        let fifth = DaemonConfig::from_toml("[conntrack]\ncapacity = 1000\nvpc_percent = 20");
        assert_eq!(fifth.unwrap().dataplane().conntrack_vpc_limit(), 200);
        assert!(DaemonConfig::from_toml("snat_range = \"10.0.0.0/31\"").is_err());
        assert!(DaemonConfig::from_toml("workers = 0").is_err());
        // Beyond i64 TOML itself refuses; within it, validate() does (no panic either way).
        assert!(DaemonConfig::from_toml("auth_window_secs = 18446744073709551615").is_err());
        for huge in [
            "auth_window_secs = 9223372036854775807",
            "auth_window_secs = 86401",
            "auth_window_secs = 0",
            "[api]\nreplay_cache_entries = 0",
            "[conntrack]\nudp_secs = 9223372036854775807",
            "[api]\nheader_read_timeout_secs = 0",
            "[api]\nbody_timeout_secs = 9223372036854775807",
            "[api]\nmax_connections = 9223372036854775807",
            "[api]\nrate_per_sec = 0",
            "[api]\ntls_cert = \"/c.pem\"",
            "[conntrack]\ntcp_established_secs = 0",
            "[conntrack]\ncapacity = 9223372036854775807",
            "[dns]\ntcp_connections_per_client = 0",
            "[dns]\ntcp_connections = 4\ntcp_connections_per_client = 5",
        ] {
            assert!(
                matches!(DaemonConfig::from_toml(huge), Err(ConfigError::Invalid(_))),
                "{huge}"
            );
        }
        assert_eq!(
            DaemonConfig::from_toml("auth_window_secs = 86400")
                .unwrap()
                .auth_window(),
            chrono::TimeDelta::days(1)
        );
        assert!(DaemonConfig::from_toml("[conntrack]\ncapacity = 5\nbogus = 1").is_err());
        let two = "[[attachments]]\ninterface = \"a\"\nvpc_id = \"v\"\n[[attachments]]\ninterface = \"a\"\nvpc_id = \"w\"\n";
        assert!(DaemonConfig::from_toml(two).is_err());
        let etcd =
            "store = \"etcd\"\n[etcd]\nendpoints = [\"http://10.0.0.1:2379\"]\nprefix = \"/c1/\"\n";
        let cfg = DaemonConfig::from_toml(etcd).unwrap();
        assert_eq!(
            (cfg.store, cfg.etcd.prefix.as_str()),
            (StoreEngine::Etcd, "/c1/")
        );
        assert!(DaemonConfig::from_toml("store = \"zookeeper\"").is_err());
        assert!(DaemonConfig::from_toml("[etcd]\nprefix = \"nope\"").is_err());
        let ok = "region = \"r\"\n[[attachments]]\ninterface = \"a\"\nvpc_id = \"v\"\n";
        assert_eq!(DaemonConfig::from_toml(ok).unwrap().attachments.len(), 1);
    }
}
