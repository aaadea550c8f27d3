//! The sections of the daemon's file, each a struct with its defaults: the I/O choices
//! (`io`, `worker_layout`, `rx`, `log_format`), `[conntrack]`, `[api]`, `[audit]`,
//! `[flow_log]` and `[dns]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Which packet I/O backend the workers use.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IoBackend {
    /// Raw AF_PACKET sockets with vnet headers, batched (`recvmmsg`/`sendmmsg`), shared
    /// transmit sockets. The default, and today the only one: pnet's channel was removed
    /// (it cannot carry offloaded frames; see BENCHMARKS.md).
    #[default]
    AfPacket,
    /// AF_XDP sockets in copy mode, one worker: measured against AF_PACKET, and correct
    /// only where peers run with offloads off (it carries no checksum-offload metadata).
    AfXdp,
}

/// Which attachments a worker receives from.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLayout {
    /// Each of the `workers` serves every attachment: `workers` threads in all.
    #[default]
    Shared,
    /// Each attachment has `workers` of its own: a flow's two directions are served by
    /// two threads (attachments times `workers` threads in all). AF_PACKET only.
    PerAttachment,
}

/// How a worker's receive sockets take frames from the kernel.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RxMode {
    /// `recvmmsg` batches into the worker's own buffers. The default: a lone frame is
    /// handed over at once.
    #[default]
    Recvmmsg,
    /// A TPACKET_V2 ring of `rx_ring_frames` slots per socket, each sized for a frame of
    /// `max_frame_bytes` (64 KiB by default): no system call per batch under load, a lone
    /// frame handed over at once, and each frame rewritten and sent from its slot (no copy
    /// into the worker's buffers). It loses to `recvmmsg` here, and a slot holds one
    /// frame whatever its size. The kernel leaves a V2 ring stuck after a frame whose
    /// offload metadata it cannot express in a vnet header (`tpacket_rcv` keeps the slot
    /// marked): not for attachments whose senders may send such frames. See BENCHMARKS.md.
    TpacketV2,
    /// A TPACKET_V3 ring (256 KiB blocks, 64 per socket): no system call per batch under
    /// load, but a block that does not fill waits for the kernel's retire timer (a tick:
    /// 4 ms at HZ=250). See BENCHMARKS.md.
    TpacketV3,
}

/// How long a worker spins before it sleeps, within `spin_us`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SpinMode {
    /// Always `spin_us`.
    Fixed,
    /// Up to `spin_us`, as long as the sleeps say a spin would pay: a sleep that ends with
    /// frames sooner than `spin_us` doubles the budget, a longer one halves it (see
    /// `dataplane::io::spin`). The default: in BENCHMARKS.md it moves as much TCP as
    /// `fixed` and 7-19 % more UDP on 2 vCPUs, where the spin takes the generator's core.
    #[default]
    Adaptive,
}

/// How the transmit sockets hand frames to the kernel.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TxMode {
    /// `sendmmsg`, one system call per batch and egress attachment: the kernel copies each
    /// frame from the worker's buffer. The default.
    #[default]
    Sendmmsg,
    /// A `PACKET_TX_RING` of `tx_ring_slots` slots of 68 KiB per attachment: frames are
    /// written into memory shared with the kernel and handed over with one kick; on a NIC
    /// the kernel sends them from there without another copy (on a veth it copies them on
    /// the forward path). A full ring drops and counts (`tx_ring_full` in `/status`). See
    /// BENCHMARKS.md.
    Ring,
}

/// The format of the daemon's own log (stderr), `log_format`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object a line: `timestamp`, `level`, `fields` (the message and its fields),
    /// `target`, and `span`/`spans` (an API request's `request_id`, `method`, `path` and
    /// `project`).
    Json,
    /// Human-readable lines (tracing's default format). The default.
    #[default]
    Text,
}

/// Conntrack sizing and timeouts.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConntrackConfig {
    /// Maximum flows. Default 1048576. The flow table is allocated for all of them at start:
    /// 100 bytes a flow (100 MiB by default), backed by memory as flows first touch it.
    pub capacity: usize,
    /// The share of `capacity` one VPC's clients may hold, in percent (1 to 100; 100 is no
    /// per-VPC limit). Default 50.
    pub vpc_percent: u8,
    /// Embryonic TCP idle timeout, seconds. Default 30.
    pub tcp_embryonic_secs: u64,
    /// Established TCP idle timeout, seconds. Default 350.
    pub tcp_established_secs: u64,
    /// Half-closed TCP idle timeout, seconds. Default 30.
    pub tcp_closing_secs: u64,
    /// Closed TCP (RST, both FINs) timeout, seconds. Default 10.
    pub tcp_closed_secs: u64,
    /// UDP idle timeout, seconds. Default 120.
    pub udp_secs: u64,
    /// How often the flow table is also written to the hand-over file while running, in
    /// seconds, so a crash (kill -9, OOM, power) loses only the flows opened since the
    /// last write; 0: only at a planned stop. The interval stretches to ten times the last
    /// write's duration, so writing costs at most a tenth of a core. Default 1. (Its
    /// former name, `snapshot_interval_secs`, is still read.)
    #[serde(alias = "snapshot_interval_secs")]
    pub handover_interval_secs: u64,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        Self {
            capacity: 1 << 20,
            vpc_percent: 50,
            tcp_embryonic_secs: 30,
            tcp_established_secs: 350,
            tcp_closing_secs: 30,
            tcp_closed_secs: 10,
            udp_secs: 120,
            handover_interval_secs: 1,
        }
    }
}

/// The API's own limits and security options (`[api]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Accept `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`, which leaves the body out of the
    /// signature. Default false: the body is always hashed and signed.
    pub allow_unsigned_payload: bool,
    /// Most write signatures remembered against replay (each until its date window closes;
    /// about 100 bytes each). When all are live, new writes get EndPoint.0022. Default 262144.
    pub replay_cache_entries: usize,
    /// Seconds a client has to send a request's headers (API and admin). Default 10.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's body once the headers arrived. Default 30.
    pub body_timeout_secs: u64,
    /// Most connections served at once, per listener; more wait unaccepted. Default 1024.
    pub max_connections: usize,
    /// Requests per second one project may make, sustained. Default 100.
    pub rate_per_sec: u32,
    /// Requests one project may make in a burst above the rate. Default 200.
    pub rate_burst: u32,
    /// Serve the API over TLS with this certificate chain (PEM); with `tls_key`. Default
    /// none: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM, PKCS#8, SEC1 or PKCS#1).
    pub tls_key: Option<PathBuf>,
    /// Seconds a console session lasts after its sign-in (`POST /v3/auth/tokens`).
    /// Default 3600, at most 86400.
    pub session_ttl_secs: u64,
    /// Failed console sign-ins allowed per user name and per source address in a
    /// `sign_in_window_secs`; more are refused (429) until that window ends. Default 5.
    pub sign_in_failures: u32,
    /// The window of `sign_in_failures`, in seconds. Default 60.
    pub sign_in_window_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            allow_unsigned_payload: false,
            replay_cache_entries: 1 << 18,
            header_read_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 1024,
            rate_per_sec: 100,
            rate_burst: 200,
            tls_cert: None,
            tls_key: None,
            session_ttl_secs: 3600,
            sign_in_failures: 5,
            sign_in_window_secs: 60,
        }
    }
}

/// The audit log (`[audit]`): `audit.log` in the data directory.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Rotate when the file would pass this size, in bytes. Default 16777216 (16 MiB).
    pub max_bytes: u64,
    /// Rotated files kept (`audit.log.1` is the newest). Default 5.
    pub files: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_bytes: 16 << 20,
            files: 5,
        }
    }
}

/// Flow logs (`[flow_log]`) of the attachments with `flow_log = true`: `flows.log` in the
/// data directory ([`crate::flowlog`]).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowLogConfig {
    /// A live flow gets a line this often, and refused attempts are summed over it,
    /// seconds (1 to 3600). Default 60.
    pub interval_secs: u32,
    /// Rotate when the file would pass this size, in bytes. Default 67108864 (64 MiB).
    pub max_bytes: u64,
    /// Rotated files kept (`flows.log.1` is the newest). Default 8: at most 576 MiB.
    pub files: usize,
    /// Events the dataplane queues for the writer before it counts them lost
    /// (`vpcep_flowlog_events_lost_total`). Default 65536.
    pub queue: usize,
}

impl Default for FlowLogConfig {
    fn default() -> Self {
        Self {
            interval_secs: 60,
            max_bytes: 64 << 20,
            files: 8,
            queue: 65_536,
        }
    }
}

/// The private DNS resolvers (`[dns]`), one per attachment with a `dns_ip`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Resolvers to forward names outside the endpoint zone to (`ip:port`, at most 8, the
    /// first that answers wins); reached from the node's own network. Default none: such
    /// names are REFUSED.
    pub upstreams: Vec<SocketAddr>,
    /// TTL of the endpoint names' A records, seconds (0 to 86400). Default 60.
    pub ttl_secs: u32,
    /// DNS-over-TCP connections each resolver serves at once. Default 16.
    pub tcp_connections: usize,
    /// Of those, the most one client holds at once (counted by address and by MAC: a
    /// client past it gets no answer to its SYN). Default 4; at most `tcp_connections`.
    pub tcp_connections_per_client: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            ttl_secs: 60,
            tcp_connections: 16,
            tcp_connections_per_client: 4,
        }
    }
}
