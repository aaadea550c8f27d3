//! The handle types between the daemon's starter and its reloader: the dataplane a start
//! brings up ([`Dataplane`]), the function that brings it up ([`StartWorkers`]), and what
//! can go wrong starting the daemon ([`DaemonError`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use dataplane::{TableReader, WorkerCounters};

use crate::api::admin::LinkStatus;
use crate::config::DaemonConfig;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The credentials file is unusable.
    #[error(transparent)]
    Credentials(#[from] crate::auth::CredentialsError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The audit log could not be opened.
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The API's TLS certificate or key is unusable.
    #[error("API TLS: {0}")]
    Tls(#[from] crate::api::http::TlsError),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The store's records could not be loaded.
    #[error("cannot load the store: {0}")]
    Load(#[from] crate::registry::LoadError),
    /// A listener could not bind (port busy, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An attachment's interface is missing or cannot be opened.
    #[error("attachment {interface}: {source}")]
    Attachment {
        /// The interface.
        interface: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Conntrack replication cannot start (its key, or its socket).
    #[error("conntrack replication: {0}")]
    Replication(String),
    /// A thread could not be spawned.
    #[error("cannot spawn a thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Brings the dataplane up on a config's attachments (the binary passes the AF_PACKET
/// one), its workers reading the tables through clones of the reader. It calls its last
/// argument, `ready`, once, after opening what can fail and before reading any flow or
/// starting any worker: that stops the dataplane it replaces (a reload) and publishes the
/// tables for the new attachments. See `af_packet::start_workers`.
pub type StartWorkers = dyn Fn(
        &DaemonConfig,
        &TableReader,
        Arc<AtomicBool>,
        &mut dyn FnMut(),
    ) -> Result<Dataplane, DaemonError>
    + Send
    + Sync;

/// See [`Dataplane::on_stop`].
pub type OnStop = Box<dyn FnOnce(&[String]) + Send>;

/// The dataplane of this node: its workers and their shared tables.
pub struct Dataplane {
    /// Each worker's counters.
    pub counters: Vec<Arc<WorkerCounters>>,
    /// Each worker's per-endpoint meters.
    pub meters: Vec<Arc<dataplane::meter::Meters>>,
    /// The shared conntrack.
    pub conntrack: Option<Arc<dataplane::conntrack::ConnTrack>>,
    /// Worker threads.
    pub threads: Vec<std::thread::JoinHandle<()>>,
    /// Runs after the workers stopped: saves conntrack, and undoes what the start did to
    /// the interfaces, except those the next dataplane (a reload's) keeps, given as the
    /// argument (none at the daemon's own stop).
    pub on_stop: Option<OnStop>,
    /// Each attachment's VPC id and link, in attachment order.
    pub links: Vec<(String, Arc<dyn LinkStatus>)>,
    /// The flow log's events, if an attachment has `flow_log` (the node starts their
    /// writer).
    pub flow_events: Option<crate::flowlog::Sink>,
    /// The conntrack's replication events and the count of those lost, if the node
    /// replicates ([`crate::replica`]).
    pub replica_events: Option<ReplicaEvents>,
}

/// See [`Dataplane::replica_events`].
pub(super) type ReplicaEvents = (
    std::sync::mpsc::Receiver<dataplane::conntrack::replica::Replica>,
    Arc<std::sync::atomic::AtomicU64>,
);

impl Dataplane {
    /// No dataplane: no workers, no conntrack, no links (an API-only node, or a starter
    /// for tests and benches that carry no packets).
    pub fn none() -> Self {
        Self {
            counters: Vec::new(),
            meters: Vec::new(),
            conntrack: None,
            threads: Vec::new(),
            on_stop: None,
            links: Vec::new(),
            flow_events: None,
            replica_events: None,
        }
    }
}

impl core::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dataplane")
            .field("workers", &self.counters.len())
            .finish_non_exhaustive()
    }
}
