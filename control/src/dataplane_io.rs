//! Bringing the dataplane up on the daemon's attachments: per attachment one shared
//! transmit socket and `workers` receive sockets (a fanout group), each receive socket
//! driven by its own worker thread; all workers share one conntrack and one neighbour
//! table.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use dataplane::io::af_packet::{AfPacketBackend, Interface, TxSocket};
use dataplane::io::pnet::PnetBackend;
use dataplane::worker::{self, Worker};
use dataplane::{Pipeline, Shared, TablePublisher, VpcId, WorkerCounters};

use crate::config::{DaemonConfig, IoBackend};
use crate::daemon::{DaemonError, Dataplane};

/// Start workers on every attachment of `cfg`.
///
/// # Errors
/// [`DaemonError::Attachment`] if an interface is missing or its sockets cannot be opened
/// (no `CAP_NET_RAW`); [`DaemonError::Spawn`] if a thread cannot start.
pub fn start_workers(
    cfg: &DaemonConfig,
    publisher: &TablePublisher,
    stop: Arc<AtomicBool>,
) -> Result<Dataplane, DaemonError> {
    let attach_err = |interface: &str, e: std::io::Error| DaemonError::Attachment {
        interface: interface.into(),
        source: e,
    };
    let mut ifaces = Vec::new();
    let mut tx = Vec::new();
    for a in &cfg.attachments {
        let iface = Interface::lookup(&a.interface).map_err(|e| attach_err(&a.interface, e))?;
        tx.push(TxSocket::open(&iface).map_err(|e| attach_err(&a.interface, e))?);
        ifaces.push(iface);
    }
    let tx = Arc::new(tx);
    let mut dp_cfg = cfg.dataplane();
    dp_cfg.attachments = ifaces.iter().map(|i| i.mac).collect();
    let shared = Shared::new(&dp_cfg, Instant::now());
    let mut counters = Vec::new();
    let mut threads = Vec::new();
    for (i, iface) in ifaces.iter().enumerate() {
        let vpc = VpcId(u16::try_from(i).unwrap_or(u16::MAX));
        // A fanout group id unique to this process and attachment.
        let fanout = (cfg.workers > 1)
            .then(|| u16::try_from((std::process::id() as usize + i) % 65_536).unwrap_or(0));
        for w in 0..cfg.workers {
            let c = Arc::new(WorkerCounters::default());
            let pipeline = Pipeline::new(dp_cfg.clone(), shared.clone());
            let name = format!("vpcep-{}-{w}", iface.name);
            let spawned = match cfg.io {
                IoBackend::AfPacket => {
                    let backend = AfPacketBackend::open(iface, vpc, fanout, Arc::clone(&tx))
                        .map_err(|e| attach_err(&iface.name, e))?;
                    let worker = Worker::new(backend, publisher.reader(), pipeline, Arc::clone(&c));
                    worker::spawn(name.clone(), worker, Arc::clone(&stop))
                }
                IoBackend::Pnet => {
                    let names: Vec<String> = cfg
                        .attachments
                        .iter()
                        .map(|a| a.interface.clone())
                        .collect();
                    let backend = PnetBackend::open(&names, vpc, dp_cfg.idle_poll)
                        .map_err(|e| attach_err(&iface.name, e))?;
                    let worker = Worker::new(backend, publisher.reader(), pipeline, Arc::clone(&c));
                    worker::spawn(name.clone(), worker, Arc::clone(&stop))
                }
            };
            let handle = spawned.map_err(DaemonError::Spawn)?;
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
        if cfg.ingress_drop {
            ingress_drop(&iface.name, true);
        }
        tracing::info!(interface = %iface.name, mac = %iface.mac, mtu = iface.mtu, vpc = vpc.0, workers = cfg.workers, "attachment up");
    }
    let names: Vec<String> = ifaces.iter().map(|i| i.name.clone()).collect();
    let on_stop: Option<Box<dyn FnOnce() + Send>> = cfg.ingress_drop.then(|| {
        Box::new(move || {
            for n in &names {
                ingress_drop(n, false);
            }
        }) as Box<dyn FnOnce() + Send>
    });
    Ok(Dataplane {
        on_stop,
        counters,
        conntrack: Some(Arc::clone(&shared.conntrack)),
        threads,
    })
}

/// Install (or remove) a `tc` ingress filter that drops every frame on `dev`. Packet
/// sockets see frames before tc ingress, so the daemon keeps its copy while the kernel's
/// stack spends nothing on them. Best effort: without `tc`, a warning, and the kernel
/// simply keeps dropping the frames later (no address on the interface, no forwarding).
fn ingress_drop(dev: &str, on: bool) {
    let run = |args: &[&str]| {
        std::process::Command::new("tc")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .map(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
                }
            })
            .unwrap_or_else(|e| Err(e.to_string()))
    };
    let result = if on {
        run(&["qdisc", "replace", "dev", dev, "clsact"]).and_then(|()| {
            run(&[
                "filter", "replace", "dev", dev, "ingress", "pref", "49152", "protocol", "all",
                "matchall", "action", "drop",
            ])
        })
    } else {
        run(&["qdisc", "del", "dev", dev, "clsact"])
    };
    match result {
        Ok(()) => tracing::info!(interface = dev, installed = on, "kernel ingress drop"),
        Err(e) => {
            tracing::warn!(interface = dev, error = %e, "could not change the kernel ingress drop")
        }
    }
}
