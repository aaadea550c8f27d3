//! Bringing the dataplane up on the daemon's attachments: per attachment one shared
//! transmit socket; `workers` worker threads, each with a receive socket on every
//! attachment (one fanout group per attachment when there are several workers), so a
//! request and its reply crossing two attachments need not wake two threads. All workers
//! share one conntrack and one neighbour table.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use dataplane::conntrack::handover;
use dataplane::io::af_packet::{AfPacketBackend, Interface, Receive, TxSocket, fanout_group};
use dataplane::io::af_xdp::AfXdpBackend;
use dataplane::io::ring::RingGeometry;
use dataplane::io::spin::Spin;
use dataplane::worker::{self, Worker};
use dataplane::{Attachment, FlowKey, Pipeline, Shared, TableReader, WorkerCounters};

/// Replication events the channel holds before it counts them lost (a burst of new flows
/// while the sender is between batches).
const REPLICA_QUEUE: usize = 65_536;

use super::dataplane::{DaemonError, Dataplane, OnStop};
use crate::api::admin::LinkStatus;
use crate::config::{DaemonConfig, IoBackend, RxMode, SpinMode, TxMode, WorkerLayout};

/// A worker's opened backend, before it runs.
enum Opened {
    Packet(AfPacketBackend),
    Xdp(AfXdpBackend),
}

/// Start workers on every attachment of `cfg`, reading the tables through `tables`.
///
/// `ready` is called once everything that can fail is open and before any flow is read or
/// any worker runs: it stops the dataplane this one replaces (a reload; it saves its flows)
/// and publishes the tables for `cfg`'s attachments. AF_PACKET receive sockets are opened
/// before it, in each interface's fanout group, so a reload's new sockets take their share
/// of the frames (queued until the new workers run) while the old workers drain theirs:
/// nothing is lost between the two. XDP sockets cannot share a queue, so with AF_XDP the
/// old dataplane stops first.
///
/// # Errors
/// [`DaemonError::Attachment`] if an interface is missing or its sockets cannot be opened
/// (no `CAP_NET_RAW`); [`DaemonError::Spawn`] if a thread cannot start. An error before
/// `ready` leaves the running dataplane untouched.
pub fn start_workers(
    cfg: &DaemonConfig,
    tables: &TableReader,
    stop: Arc<AtomicBool>,
    ready: &mut dyn FnMut(),
) -> Result<Dataplane, DaemonError> {
    let attach_err = |interface: &str, e: std::io::Error| DaemonError::Attachment {
        interface: interface.into(),
        source: e,
    };
    let mut ifaces = Vec::new();
    let mut tx = Vec::new();
    for a in &cfg.attachments {
        let iface = Interface::lookup(&a.interface).map_err(|e| attach_err(&a.interface, e))?;
        let slots = if cfg.tx == TxMode::Ring {
            cfg.tx_ring_slots
        } else {
            0
        };
        tx.push(TxSocket::open_with_ring(&iface, slots).map_err(|e| attach_err(&a.interface, e))?);
        ifaces.push(iface);
    }
    let tx = Arc::new(tx);
    let mut dp_cfg = cfg.dataplane();
    dp_cfg.attachments = ifaces.iter().map(|i| i.mac).collect();
    let epoch = Instant::now();
    let mut conntrack = dataplane::conntrack::ConnTrack::new(&dp_cfg, epoch);
    let mut flow_events = None;
    if dp_cfg.flow_log.contains(&true) {
        let (log, events) =
            dataplane::conntrack::flowlog::flow_log(dataplane::conntrack::flowlog::FlowLogConfig {
                capacity: dp_cfg.conntrack_capacity.get(),
                queue: cfg.flow_log.queue,
                interval_secs: cfg.flow_log.interval_secs,
                epoch_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            });
        let lost = log.lost();
        conntrack = conntrack.with_flow_log(log);
        flow_events = Some(crate::flowlog::Sink { events, lost });
    }
    let mut replica_events = None;
    if cfg.replicates() {
        let (log, events) = dataplane::conntrack::replica::replica_log(REPLICA_QUEUE);
        replica_events = Some((events, log.lost()));
        conntrack = conntrack.with_replica(log);
    }
    let shared = Shared::with_conntrack(&dp_cfg, conntrack);
    // Huge pages for the conntrack table, before any flow touches it: at a million flows
    // every lookup would otherwise also miss the TLB. Advice only; without THP the table
    // works on small pages.
    for (addr, len) in shared.conntrack.regions() {
        if let Err(e) = dataplane::io::memory::advise_huge_pages(addr, len) {
            tracing::warn!(error = %e, "conntrack table stays on small pages");
        }
    }
    // Every worker has a receive socket on every attachment, all of an attachment's in one
    // fanout group (even with one worker: a reload's sockets join it).
    let attachments: Vec<(&Interface, Attachment, Option<u16>)> = ifaces
        .iter()
        .enumerate()
        .map(|(i, iface)| {
            let vpc = Attachment(u16::try_from(i).unwrap_or(u16::MAX));
            (iface, vpc, Some(fanout_group(iface.ifindex)))
        })
        .collect();
    let names = || {
        let names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
        names.join(",")
    };
    let spin = || {
        let max = Duration::from_micros(cfg.spin_us);
        match cfg.spin {
            SpinMode::Fixed => Spin::fixed(max),
            SpinMode::Adaptive => Spin::adaptive(max),
        }
    };
    let mut opened = Vec::new();
    match cfg.io {
        IoBackend::AfPacket => {
            // Which attachments each worker receives from: all of them, or one.
            let sets: Vec<&[(&Interface, Attachment, Option<u16>)]> = match cfg.worker_layout {
                WorkerLayout::Shared => vec![&attachments[..]],
                WorkerLayout::PerAttachment => attachments.chunks(1).collect(),
            };
            for set in sets {
                for _ in 0..cfg.workers {
                    let backend = AfPacketBackend::open(set, spin(), receive(cfg), Arc::clone(&tx))
                        .map_err(|e| attach_err(&names(), e))?;
                    opened.push(Opened::Packet(backend));
                }
            }
            ready();
        }
        IoBackend::AfXdp => {
            ready();
            let xsk: Vec<_> = attachments.iter().map(|&(i, v, _)| (i, v)).collect();
            let backend = AfXdpBackend::open(&xsk, spin()).map_err(|e| attach_err(&names(), e))?;
            opened.push(Opened::Xdp(backend));
        }
    }
    // The flows of the previous process (a planned restart, an upgrade, a crash) or of the
    // dataplane this one replaces (a reload).
    let vpc_ids: Vec<String> = cfg.attachments.iter().map(|a| a.vpc_id.clone()).collect();
    let handover = cfg.data_dir.join(HANDOVER);
    let mut adopted = restore_flows(&shared, &vpc_ids, &cfg.data_dir);
    let mut counters = Vec::new();
    let mut meters = Vec::new();
    let mut threads = Vec::new();
    let spawned = (|| -> Result<(), DaemonError> {
        for (w, backend) in opened.into_iter().enumerate() {
            let c = Arc::new(WorkerCounters::default());
            let mut pipeline = Pipeline::new(dp_cfg.clone(), shared.clone());
            meters.push(pipeline.meters());
            // The first worker's expiry sweep takes the restored flows.
            pipeline.adopt(adopted.drain(..));
            let name = format!("vpcep-worker-{w}");
            let handle = match backend {
                Opened::Packet(b) => {
                    let worker = Worker::new(b, tables.clone(), pipeline, Arc::clone(&c));
                    worker::spawn(name.clone(), worker, Arc::clone(&stop))
                }
                Opened::Xdp(b) => {
                    let worker = Worker::new(b, tables.clone(), pipeline, Arc::clone(&c));
                    worker::spawn(name.clone(), worker, Arc::clone(&stop))
                }
            }
            .map_err(DaemonError::Spawn)?;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{name}-join"))
                    .spawn(move || match handle.join() {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(worker = %name, error = %e, "worker stopped on an I/O error; exiting");
                            std::process::exit(70);
                        }
                        Err(_) => std::process::exit(70),
                    })
                    .map_err(DaemonError::Spawn)?,
            );
            counters.push(c);
        }
        for &(iface, vpc, _) in &attachments {
            // Installed once per interface for the life of the process: a reload that keeps
            // the interface keeps its filter. The link keeps it too: an interface created
            // again gets it back.
            if cfg.ingress_drop && lock_drops().insert(iface.name.clone()) {
                ingress_drop(&iface.name, true);
            }
            if let Some(t) = tx.get(usize::from(vpc.0)) {
                t.keep_ingress_drop(cfg.ingress_drop);
            }
            tracing::info!(interface = %iface.name, mac = %iface.mac, mtu = iface.mtu, vpc = vpc.0, workers = cfg.workers, "attachment up");
        }
        // The private DNS resolvers, one per attachment with a `dns_ip`.
        let zone = crate::dns::Zone {
            name: crate::model::dns_zone(&cfg.region),
            ttl: cfg.dns.ttl_secs,
            forwards: !cfg.dns.upstreams.is_empty(),
        };
        for (&(iface, vpc, _), a) in attachments.iter().zip(&cfg.attachments) {
            let Some(addr) = a.dns_ip else { continue };
            let resolver = crate::dns::server::Resolver {
                iface: iface.clone(),
                vpc,
                addr,
            };
            threads.push(
                crate::dns::server::spawn(
                    resolver,
                    tables.clone(),
                    zone.clone(),
                    &cfg.dns,
                    Arc::clone(&stop),
                )
                .map_err(|e| attach_err(&a.interface, e))?,
            );
        }
        if cfg.conntrack.handover_interval_secs > 0 {
            threads.push(spawn_handovers(
                Arc::clone(&shared.conntrack),
                vpc_ids.clone(),
                handover.clone(),
                Duration::from_secs(cfg.conntrack.handover_interval_secs),
                Arc::clone(&stop),
            )?);
        }
        Ok(())
    })();
    if let Err(e) = spawned {
        // Nothing of a failed start may run on: a reload goes back to the dataplane it
        // replaced, and two sets of workers would forward every frame twice.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        return Err(e);
    }
    let names: Vec<String> = ifaces.iter().map(|i| i.name.clone()).collect();
    let drop_filters = cfg.ingress_drop;
    let conntrack = Arc::clone(&shared.conntrack);
    // Runs once the workers have stopped: the flow table is final. Save it for the next
    // process (a planned restart or an upgrade), then hand the links back to the kernel.
    let on_stop: Option<OnStop> = Some(Box::new(move |keep: &[String]| {
        let now = conntrack.secs(Instant::now());
        match save_handover(&conntrack, &vpc_ids, now, &handover) {
            Ok(n) => {
                tracing::info!(flows = n, path = %handover.display(), "conntrack saved for the next start")
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %handover.display(), "could not save conntrack; flows end with this process")
            }
        }
        if drop_filters {
            for n in names.iter().filter(|n| !keep.contains(n)) {
                if lock_drops().remove(n) {
                    ingress_drop(n, false);
                }
            }
        }
    }));
    let links = cfg
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let link: Arc<dyn LinkStatus> = Arc::new(Link {
                tx: Arc::clone(&tx),
                index: i,
            });
            (a.vpc_id.clone(), link)
        })
        .collect();
    Ok(Dataplane {
        links,
        on_stop,
        counters,
        meters,
        conntrack: Some(Arc::clone(&shared.conntrack)),
        threads,
        flow_events,
        replica_events,
    })
}

/// One attachment's link, as its shared transmit socket sees it.
struct Link {
    tx: Arc<Vec<TxSocket>>,
    index: usize,
}

impl LinkStatus for Link {
    fn interface(&self) -> String {
        self.tx
            .get(self.index)
            .map_or_else(String::new, |t| t.name().to_string())
    }

    fn state(&self) -> &'static str {
        self.tx.get(self.index).map_or("gone", |t| t.state().name())
    }

    fn ingress_drop(&self) -> bool {
        ingress_drop_in_place(&self.interface())
    }

    fn flaps(&self) -> u64 {
        self.tx.get(self.index).map_or(0, TxSocket::flaps)
    }

    fn tx_ring_full(&self) -> u64 {
        self.tx.get(self.index).map_or(0, TxSocket::ring_full)
    }
}

/// Write the flow table to `path` every `interval` (stretched to ten times the last write's
/// duration) until `stop`, so a crash loses only the flows opened since the last write.
/// The planned stop's own save follows this thread's end (the workers' threads are joined
/// first), so the two never write at once.
fn spawn_handovers(
    ct: Arc<dataplane::conntrack::ConnTrack>,
    vpc_ids: Vec<String>,
    path: std::path::PathBuf,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    std::thread::Builder::new()
        .name("vpcep-handover".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            let mut failing = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Short naps: the stop (a reload's, too) waits for this thread.
                std::thread::sleep(Duration::from_millis(10));
                if Instant::now() < next {
                    continue;
                }
                let began = Instant::now();
                let result = save_handover(&ct, &vpc_ids, ct.secs(began), &path);
                let took = began.elapsed();
                match result {
                    Ok(_) => failing = false,
                    // Logged once per run of failures, not every second.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, path = %path.display(), "could not write the periodic conntrack hand-over");
                    }
                    Err(_) => {}
                }
                metrics::histogram!("vpcep_conntrack_handover_seconds").record(took.as_secs_f64());
                next = Instant::now() + interval.max(took * 10);
            }
        })
        .map_err(DaemonError::Spawn)
}

/// The wall clock in Unix seconds (0 if it is before 1970): a hand-over measures downtime.
fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The conntrack hand-over's file name in the data directory.
const HANDOVER: &str = "conntrack.handover";
/// Its name before the word "snapshot" was kept for the store's reads: read when the new
/// name is missing, so an upgrade from such a version keeps its flows.
const HANDOVER_BEFORE: &str = "conntrack.snapshot";

/// Write the conntrack hand-over to `path` (a temporary file, synced, then renamed: a
/// crash never leaves a half file under the real name). Returns the flows written.
fn save_handover(
    ct: &dataplane::conntrack::ConnTrack,
    vpc_ids: &[String],
    now_secs: u32,
    path: &Path,
) -> std::io::Result<usize> {
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let n = handover::encode(ct, vpc_ids, now_secs, wall_secs(), &mut out)?;
    let file = out
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(n)
}

/// Load the hand-over the last process left in `data_dir`, then remove it (it describes
/// that moment only: a later crash must not bring it back). Returns the restored flows'
/// original keys. A missing file is the normal case of a first start or a crash; a bad one
/// is logged and ignored, never a reason not to start.
fn restore_flows(shared: &Shared, vpc_ids: &[String], data_dir: &Path) -> Vec<FlowKey> {
    let mut keys = Vec::new();
    let mut found = false;
    for name in [HANDOVER, HANDOVER_BEFORE] {
        let path = data_dir.join(name);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "conntrack hand-over unreadable");
                continue;
            }
        };
        if !found {
            found = true;
            let now = shared.conntrack.secs(Instant::now());
            let input = std::io::BufReader::new(file);
            match handover::decode(&shared.conntrack, vpc_ids, now, wall_secs(), input) {
                Ok(loaded) => {
                    if let Some(e) = &loaded.cut_short {
                        tracing::warn!(error = %e, flows = loaded.keys.len(), path = %path.display(), "conntrack hand-over cut short: the flows before the cut are restored");
                    } else {
                        tracing::info!(flows = loaded.keys.len(), path = %path.display(), "conntrack restored from the last stop");
                    }
                    keys = loaded.keys;
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "conntrack hand-over ignored");
                }
            }
        }
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, path = %path.display(), "could not remove the conntrack hand-over");
        }
    }
    keys
}

/// The interfaces this process installed an ingress drop on.
fn lock_drops() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<String>> {
    static DROPS: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    DROPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Install (or remove) the kernel ingress drop on `dev`
/// ([`dataplane::io::ingress_drop`]: a direct-action `cls_bpf` filter the daemon loads
/// itself). Packet sockets see frames before tc ingress, so the daemon keeps its copy while
/// the kernel's stack spends nothing on them. A failure is logged, and `/status` shows
/// the drop missing (the kernel then drops the frames later: no address on the interface,
/// no forwarding).
fn ingress_drop(dev: &str, on: bool) {
    let result = Interface::lookup(dev).and_then(|i| {
        if on {
            dataplane::io::ingress_drop::install(i.ifindex)
        } else {
            dataplane::io::ingress_drop::remove(i.ifindex)
        }
    });
    match result {
        Ok(()) => tracing::info!(interface = dev, installed = on, "kernel ingress drop"),
        Err(e) => {
            tracing::warn!(interface = dev, error = %e, "could not change the kernel ingress drop")
        }
    }
}

/// True if the kernel ingress drop is in place on `dev` now.
fn ingress_drop_in_place(dev: &str) -> bool {
    Interface::lookup(dev)
        .and_then(|i| dataplane::io::ingress_drop::installed(i.ifindex))
        .unwrap_or(false)
}

/// How the receive sockets take frames, from `rx`.
pub(crate) fn receive(cfg: &DaemonConfig) -> Receive {
    match cfg.rx {
        RxMode::Recvmmsg => Receive::Recvmmsg,
        RxMode::TpacketV3 => Receive::TpacketV3(RingGeometry::default()),
        RxMode::TpacketV2 => Receive::TpacketV2 {
            frames: cfg.rx_ring_frames,
            max_frame: cfg.max_frame_bytes,
        },
    }
}

/// How many times a forwarded frame is copied with `cfg`'s I/O settings (none without
/// attachments).
pub(crate) fn copies(cfg: &DaemonConfig) -> Option<dataplane::io::Copies> {
    if cfg.attachments.is_empty() {
        return None;
    }
    Some(match cfg.io {
        IoBackend::AfPacket => {
            dataplane::io::af_packet::copies(receive(cfg), cfg.tx == TxMode::Ring)
        }
        IoBackend::AfXdp => dataplane::io::af_xdp::COPIES,
    })
}
