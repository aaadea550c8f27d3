//! What a running daemon can change without a restart, and the reload that changes it.
//!
//! A reload (SIGHUP, or `POST /reload` on the admin listener) reads the config file and the
//! credentials file again. It may change:
//! - the attachments (added, removed, moved to another interface);
//! - the conntrack settings (timeouts, capacity, per-VPC share);
//! - the private DNS resolvers (`dns_ip` of an attachment, `[dns]`);
//! - the credentials (key pairs added and revoked; they take effect at the next request);
//! - the gateway services (`[[gateway_services]]`): the set the API shows is replaced and
//!   the pusher recompiles every table; flows to prefixes no longer routed are revoked at
//!   their next packet.
//!
//! Anything else (listeners, data directory, SNAT range, workers, I/O backend, quotas, API
//! limits) needs a restart: a reload that changes it is refused whole, and the old config
//! keeps running. So is a file that does not parse or validate, or an attachment whose
//! interface cannot be opened (the old dataplane is started again). Every refusal is a log
//! line, `vpcep_config_reloads_total{result="failed"}` and the `/status` `config` block.
//!
//! When the attachments, conntrack or DNS settings change, the dataplane is rebuilt in the
//! process, the way a planned restart does it, with a hand-over: the new receive sockets
//! are opened first, in the same fanout groups as the running ones, so the kernel shares
//! each interface's frames between old and new; then the old workers drain what they hold
//! and stop, conntrack is saved to the hand-over file, the pusher publishes tables compiled
//! for the new attachments, and the new workers restore the hand-over and take the frames
//! their sockets queued meanwhile. Flows of attachments that are gone are left out (they
//! end); every other flow carries on, without loss (frames wait a few tens of
//! milliseconds). If the new dataplane cannot open (an interface missing), the old one was
//! never stopped and carries on. The rest of the daemon (the API, the store, the pusher)
//! runs on untouched.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;
use dataplane::stats::WorkerStats;

use super::dataplane::{DaemonError, OnStop, StartWorkers};
use crate::api::admin::{AdminNode, ConfigStatus, DataplaneView, ReloadError, Reloaded};
use crate::auth::Credentials;
use crate::compile::Attachments;
use crate::config::DaemonConfig;
use crate::meters::MeterBook;
use crate::push::Pusher;
use crate::registry::{Registry, Touched};

/// Reads the config and credentials again for a reload (the binary re-reads its files and
/// applies its command-line overrides); the error is shown as is.
pub type ConfigSource = dyn Fn() -> Result<(DaemonConfig, Credentials), String> + Send + Sync;

/// A started dataplane: what it takes to stop it.
struct Live {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    on_stop: Option<OnStop>,
    /// The flow log's writer: it ends by itself once `stop` is set, after writing what was
    /// queued (up to its 200 ms poll later).
    flow_log: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    /// Stop the workers, wait for them, then run the stop hook (it saves conntrack, and
    /// leaves the interfaces of `next`, the config that follows, as they are).
    fn stop(self, next: Option<&DaemonConfig>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        if let Some(f) = self.on_stop {
            let keep: Vec<String> = next
                .into_iter()
                .flat_map(|c| c.attachments.iter().map(|a| a.interface.to_string()))
                .collect();
            f(&keep);
        }
        // At the daemon's stop, wait for the flow log's last lines. A reload does not: the
        // new workers would wait for the old writer's poll.
        if next.is_none()
            && let Some(w) = self.flow_log
        {
            let _ = w.join();
        }
    }
}

struct Inner {
    cfg: DaemonConfig,
    live: Option<Live>,
    source: Option<Arc<ConfigSource>>,
}

/// The reloadable part of a running daemon.
pub struct Node {
    inner: Mutex<Inner>,
    view: ArcSwap<DataplaneView>,
    /// Counters of dataplanes a reload replaced, so totals never go backwards.
    retired: Mutex<WorkerStats>,
    credentials: Arc<ArcSwap<Credentials>>,
    pusher: Arc<Mutex<Pusher>>,
    registry: Arc<Registry>,
    start: Arc<StartWorkers>,
    /// The per-endpoint figures, read from each dataplane this node starts.
    meters: Arc<MeterBook>,
    /// What conntrack replication works on: each dataplane's conntrack and events.
    feeds: Arc<crate::replica::Feeds>,
    /// Notified after a reload: the election campaigns for the new attachments at once.
    attachments_changed: Arc<tokio::sync::Notify>,
    revision: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the compiler needs of `cfg`'s attachments: their VPCs, and which have port
/// security.
pub fn attachments(cfg: &DaemonConfig) -> Attachments {
    Attachments::new(cfg.attachments.iter().map(|a| a.vpc_id.as_str()))
        .with_port_security(cfg.attachments.iter().map(|a| a.port_security))
}

/// The VPCs `cfg` attaches; `None` for a node that attaches nothing (it cannot tell what
/// other nodes attach, so it fails nothing).
fn attached(cfg: &DaemonConfig) -> Option<BTreeSet<crate::model::VpcId>> {
    (!cfg.attachments.is_empty()).then(|| {
        cfg.attachments
            .iter()
            .map(|a| a.vpc_id.as_str().into())
            .collect()
    })
}

/// Give the registry `cfg`'s gateway services (existing ones keep their creation time);
/// true if they changed.
fn set_gateways(registry: &Registry, cfg: &DaemonConfig) -> bool {
    let list = crate::config::gateway_services::resolve(
        &cfg.gateway_services,
        &cfg.attachments,
        registry.region(),
        &registry.gateway_services(),
        chrono::Utc::now().timestamp(),
    );
    registry.set_gateway_services(list)
}

/// The settings of `new` that differ from `old` and need a restart.
fn needs_restart(old: &DaemonConfig, new: &DaemonConfig) -> Vec<&'static str> {
    let mut probe = new.clone();
    probe.attachments.clone_from(&old.attachments);
    probe.conntrack = old.conntrack.clone();
    probe.dns = old.dns.clone();
    probe.flow_log = old.flow_log.clone();
    probe.credentials.clone_from(&old.credentials);
    probe.gateway_services.clone_from(&old.gateway_services);
    if probe == *old {
        return Vec::new();
    }
    let mut changed = Vec::new();
    macro_rules! fields {
        ($($f:ident),*) => { $( if old.$f != new.$f { changed.push(stringify!($f)); } )* };
    }
    fields!(
        region,
        api_listen,
        admin_listen,
        data_dir,
        log_format,
        auth_window_secs,
        api,
        audit,
        snat_range,
        workers,
        worker_layout,
        spin_us,
        spin,
        max_frame_bytes,
        io,
        rx,
        rx_ring_frames,
        tx,
        tx_ring_slots,
        ingress_drop,
        quotas,
        store,
        etcd
    );
    if changed.is_empty() {
        changed.push(
            "(a setting other than attachments, conntrack, gateway services and credentials)",
        );
    }
    changed
}

impl Node {
    /// Start the dataplane for `cfg` (none if it attaches nothing) and keep what a reload
    /// needs.
    ///
    /// # Errors
    /// What `start` returns.
    pub fn start(
        cfg: DaemonConfig,
        credentials: Credentials,
        start: Arc<StartWorkers>,
        pusher: Arc<Mutex<Pusher>>,
        registry: Arc<Registry>,
        meters: Arc<MeterBook>,
    ) -> Result<Self, DaemonError> {
        let node = Self {
            inner: Mutex::new(Inner {
                cfg: cfg.clone(),
                live: None,
                source: None,
            }),
            view: ArcSwap::from_pointee(DataplaneView::default()),
            retired: Mutex::new(WorkerStats::default()),
            credentials: Arc::new(ArcSwap::from_pointee(credentials)),
            pusher,
            registry,
            start,
            meters,
            feeds: Arc::default(),
            attachments_changed: Arc::default(),
            revision: AtomicU64::new(1),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
        };
        set_gateways(&node.registry, &cfg);
        let (live, _) = node.launch(&cfg, &mut None)?;
        lock(&node.inner).live = live;
        Ok(node)
    }

    /// What conntrack replication reads: the running dataplane's conntrack and events.
    pub fn replica_feeds(&self) -> Arc<crate::replica::Feeds> {
        Arc::clone(&self.feeds)
    }

    /// Notified after each reload (see [`crate::store::owners::Options::poke`]).
    pub fn attachments_changed(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.attachments_changed)
    }

    /// The VPC ids of the attachments running now.
    pub fn attached_vpcs(&self) -> Vec<String> {
        lock(&self.inner)
            .cfg
            .attachments
            .iter()
            .map(|a| a.vpc_id.clone())
            .collect()
    }

    /// Where reloads read the config from.
    pub fn set_source(&self, source: Arc<ConfigSource>) {
        lock(&self.inner).source = Some(source);
    }

    /// The credentials the API checks (swapped by reloads).
    pub fn credentials(&self) -> Arc<ArcSwap<Credentials>> {
        Arc::clone(&self.credentials)
    }

    /// The live dataplane's counters, conntrack and links.
    pub fn view(&self) -> Arc<DataplaneView> {
        self.view.load_full()
    }

    /// Every counter since the start, across reloads.
    pub fn totals(&self) -> WorkerStats {
        let mut total = lock(&self.retired).clone();
        total.add(&dataplane::stats::sum(
            self.view.load().counters.iter().map(AsRef::as_ref),
        ));
        total
    }

    /// The `/status` `config` block.
    pub fn config_status(&self) -> ConfigStatus {
        ConfigStatus {
            revision: self.revision.load(Ordering::Relaxed),
            reloads_failed: self.failed.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }

    /// Start the dataplane for `cfg` (none if it attaches nothing) in place of `old`, and
    /// show it. The starter opens what can fail first; then, in its `ready` call, `old`
    /// stops (its flows saved, its counters retired) and the tables compiled for `cfg` are
    /// published, before any new worker reads a frame (so restored flows are re-checked
    /// against the real accepted table, never an empty placeholder that would revoke
    /// them). The pusher is held throughout, so no generation for other attachments is
    /// published in between. On an error, `old` is still `Some` if it was never stopped.
    /// Returns the new dataplane and when `old` was told to stop.
    fn launch(
        &self,
        cfg: &DaemonConfig,
        old: &mut Option<Live>,
    ) -> Result<(Option<Live>, Option<Instant>), DaemonError> {
        let mut pusher = lock(&self.pusher);
        pusher.set_meter_hold(cfg.meter_hold());
        let slot_map = pusher.slot_map();
        let reader = pusher.publisher().reader();
        let mut stopped_at = None;
        let mut done = false;
        // Idempotent: called by the starter, and again (a no-op then) once it returned, for
        // starters that carry no packets and never call it.
        let mut ready = || {
            if std::mem::replace(&mut done, true) {
                return;
            }
            if let Some(live) = old.take() {
                stopped_at = Some(Instant::now());
                live.stop(Some(cfg));
                // Its workers are gone and their counters final (the drain included): they
                // join the totals, and the view shows nothing until the new dataplane runs.
                let view = self.view.swap(Arc::new(DataplaneView::default()));
                lock(&self.retired).add(&dataplane::stats::sum(
                    view.counters.iter().map(AsRef::as_ref),
                ));
            }
            pusher.set_attachments(attachments(cfg));
            pusher.set_service_addresses(
                cfg.attachments
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| {
                        Some((dataplane::Attachment(u16::try_from(i).ok()?), a.dns_ip?))
                    })
                    .collect(),
            );
            pusher.set_snat_next_hops(
                cfg.attachments
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| {
                        Some((
                            dataplane::Attachment(u16::try_from(i).ok()?),
                            a.snat_next_hop?,
                        ))
                    })
                    .collect(),
            );
            pusher.apply(&self.registry, &Touched::All, self.registry.revision());
            self.registry.set_attached(attached(cfg));
        };
        if cfg.attachments.is_empty() {
            ready();
            self.view.store(Arc::new(DataplaneView::default()));
            return Ok((None, stopped_at));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut dp = (self.start)(cfg, &reader, Arc::clone(&stop), &mut ready)?;
        ready();
        let flow_log = dp.flow_events.take().and_then(|sink| {
            crate::flowlog::spawn(cfg, sink, slot_map, Arc::clone(&stop))
                // The dataplane runs on; its flow events are counted lost.
                .inspect_err(|e| tracing::error!(error = %e, "the flow log writer did not start"))
                .ok()
        });
        if let (Some((events, lost)), Some(ct)) = (dp.replica_events.take(), &dp.conntrack) {
            let target = crate::replica::Target {
                vpc_ids: cfg.attachments.iter().map(|a| a.vpc_id.clone()).collect(),
                conntrack: Arc::downgrade(ct),
                eviction_attempts: cfg.dataplane().eviction_attempts,
            };
            self.feeds.set(target, events, lost);
        }
        self.meters
            .set_sources(dp.meters, dp.conntrack.as_ref().map(Arc::clone));
        self.view.store(Arc::new(DataplaneView {
            counters: dp.counters,
            conntrack: dp.conntrack,
            links: dp.links,
            copies: super::af_packet::copies(cfg),
        }));
        let live = Live {
            stop,
            threads: dp.threads,
            on_stop: dp.on_stop,
            flow_log,
        };
        Ok((Some(live), stopped_at))
    }

    /// Stop the dataplane (it saves conntrack for the next start). Blocking.
    pub fn stop(&self) {
        if let Some(live) = lock(&self.inner).live.take() {
            live.stop(None);
        }
    }

    /// Read the config again and apply what changed; on any error nothing changes. Blocking
    /// (it joins worker threads): call it from a blocking context.
    ///
    /// # Errors
    /// [`ReloadError`]: the old config runs on.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let mut inner = lock(&self.inner);
        let result = self.try_reload(&mut inner);
        match &result {
            Ok(r) => {
                *lock(&self.last_error) = None;
                // A node that attached a VPC campaigns for it now, not at its next turn.
                self.attachments_changed.notify_one();
                metrics::counter!("vpcep_config_reloads_total", "result" => "ok").increment(1);
                tracing::info!(
                    revision = r.revision,
                    dataplane_rebuilt = r.dataplane_rebuilt,
                    gap_ms = r.dataplane_gap_ms,
                    attachments = r.attachments,
                    credentials = r.credentials,
                    "config reloaded"
                );
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_error) = Some(e.to_string());
                metrics::counter!("vpcep_config_reloads_total", "result" => "failed").increment(1);
                tracing::error!(error = %e, "config reload refused; the previous config keeps running");
            }
        }
        result
    }

    fn try_reload(&self, inner: &mut Inner) -> Result<Reloaded, ReloadError> {
        let source = inner.source.clone().ok_or(ReloadError::NoSource)?;
        let (cfg, credentials) = source().map_err(ReloadError::Invalid)?;
        let fixed = needs_restart(&inner.cfg, &cfg);
        if !fixed.is_empty() {
            return Err(ReloadError::NeedsRestart(fixed));
        }
        let rebuild = cfg.attachments != inner.cfg.attachments
            || cfg.conntrack != inner.cfg.conntrack
            || cfg.dns != inner.cfg.dns
            || cfg.flow_log != inner.cfg.flow_log;
        let mut gap_ms = 0.0;
        if rebuild {
            let began = Instant::now();
            let mut old = inner.live.take();
            match self.launch(&cfg, &mut old) {
                Ok((live, stopped_at)) => {
                    inner.live = live;
                    // From the old workers' stop to the new ones' start: frames of the
                    // fanout groups wait in the new sockets meanwhile.
                    gap_ms = stopped_at.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3);
                }
                Err(e) if old.is_some() => {
                    // Nothing was stopped: the running dataplane carries on as it was.
                    inner.live = old;
                    return Err(ReloadError::Dataplane(e.to_string()));
                }
                Err(e) => {
                    // Stopped, then the new one failed: back to what ran before (its
                    // flows were saved by the stop).
                    match self.launch(&inner.cfg, &mut None) {
                        Ok((live, _)) => inner.live = live,
                        Err(again) => tracing::error!(
                            error = %again,
                            "the previous attachments did not start again either; no dataplane until the next good reload"
                        ),
                    }
                    return Err(ReloadError::Dataplane(e.to_string()));
                }
            }
            tracing::info!(
                took_ms = began.elapsed().as_secs_f64() * 1e3,
                gap_ms,
                "dataplane rebuilt: new sockets opened, old workers drained and stopped, flows carried over, new workers started"
            );
            metrics::histogram!("vpcep_reload_dataplane_gap_seconds").record(gap_ms / 1e3);
        }
        if set_gateways(&self.registry, &cfg) {
            tracing::info!(
                gateway_services = cfg.gateway_services.len(),
                "gateway services replaced"
            );
        }
        let keys = credentials.len();
        self.credentials.store(Arc::new(credentials));
        let attachments = cfg.attachments.len();
        inner.cfg = cfg;
        Ok(Reloaded {
            revision: self.revision.fetch_add(1, Ordering::Relaxed) + 1,
            dataplane_rebuilt: rebuild,
            dataplane_gap_ms: gap_ms,
            attachments,
            credentials: keys,
        })
    }
}

impl AdminNode for Node {
    fn view(&self) -> Arc<DataplaneView> {
        Self::view(self)
    }

    fn totals(&self) -> WorkerStats {
        Self::totals(self)
    }

    fn config_status(&self) -> ConfigStatus {
        Self::config_status(self)
    }

    fn reload(&self) -> Result<Reloaded, ReloadError> {
        Self::reload(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_attachments_conntrack_gateways_and_credentials_change_without_a_restart() {
        let old = DaemonConfig::default();
        let mut new = old.clone();
        new.attachments.push(crate::config::AttachmentConfig::new(
            "eth9".to_string().try_into().unwrap(),
            "v",
        ));
        new.conntrack.udp_secs += 1;
        new.credentials = "/elsewhere.toml".into();
        new.gateway_services = toml::from_str::<DaemonConfig>(
            "[[gateway_services]]\nname = \"obs\"\nprefixes = [\"100.125.0.0/16\"]\nvpc_id = \"v\"",
        )
        .unwrap()
        .gateway_services;
        assert_eq!(new.gateway_services.len(), 1);
        assert!(needs_restart(&old, &new).is_empty());
        new.workers += 1;
        new.api_listen = "127.0.0.1:1".parse().unwrap();
        assert_eq!(needs_restart(&old, &new), ["api_listen", "workers"]);
        // The log is set up once, at start.
        let mut json = old.clone();
        json.log_format = crate::config::LogFormat::Json;
        assert_eq!(needs_restart(&old, &json), ["log_format"]);
        // The I/O settings are named, not lumped together.
        let mut io = old.clone();
        io.spin = crate::config::SpinMode::Fixed;
        io.rx_ring_frames = 64;
        io.tx = crate::config::TxMode::Ring;
        io.tx_ring_slots = 8;
        assert_eq!(
            needs_restart(&old, &io),
            ["spin", "rx_ring_frames", "tx", "tx_ring_slots"]
        );
    }
}
