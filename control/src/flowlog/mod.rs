//! Flow logs, the control plane's half: the writer thread that turns the dataplane's flow
//! events ([`dataplane::conntrack::flowlog`]) into JSON lines in `flows.log` in the data
//! directory, and the reader behind `vpcepctl flowlog`.
//!
//! One line per flow when it ends (`reason`: `fin`, `rst`, `idle`, `evicted`, `deleted`)
//! and one every `[flow_log] interval_secs` while it lives (`active`, with the counts so
//! far), each with both sides of the NAT: the client's address and port and the endpoint it
//! sent to, the SNAT address and port and the backend, packets and bytes each way, start and
//! end (UTC, whole seconds). Refused attempts are one line per source and reason per
//! interval (`kind: "refused"`, with their `count`; `client: "*"` sums the sources past the
//! dataplane's table).
//!
//! The writer runs off the packet path: the dataplane hands it events through a bounded
//! channel and never waits; what did not fit is counted (`vpcep_flowlog_events_lost_total`).
//! The writer batches lines into few writes, rotates the file by size ([`crate::logfile`]),
//! and counts its lines (`vpcep_flowlog_lines_total{kind}`) and failed writes
//! (`vpcep_flowlog_write_failures_total`). It stops with its dataplane, after writing what
//! was queued.

mod line;

pub use line::{Filter, FlowLine, read};

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dataplane::conntrack::flowlog::{FlowEvent, FlowRecord, Refused};

use crate::config::DaemonConfig;
use crate::logfile::RotatingFile;
use crate::meters::slots::SlotMap;

/// The log's file name in the data directory.
pub const FILE: &str = "flows.log";

/// A batch is written once it holds this many bytes.
const BATCH_BYTES: usize = 64 << 10;

/// What a dataplane with flow logs hands its writer: the events, and the count of those
/// the channel had no room for.
#[derive(Debug)]
pub struct Sink {
    /// The dataplane's events.
    pub events: Receiver<FlowEvent>,
    /// Events lost to a full channel ([`dataplane::conntrack::flowlog::FlowLog::lost`]).
    pub lost: Arc<AtomicU64>,
}

/// Names the writer gives what the events number: attachments (by index) and meter slots.
struct Names {
    vpc_ids: Vec<String>,
    slots: Arc<ArcSwap<SlotMap>>,
}

impl Names {
    fn vpc(&self, a: dataplane::Attachment) -> String {
        self.vpc_ids.get(a.index()).cloned().unwrap_or_default()
    }
}

fn addr(ip: u32, port: u16) -> String {
    format!("{}:{port}", Ipv4Addr::from_bits(ip))
}

fn proto(p: u8) -> &'static str {
    if p == dataplane::wire::ipv4::PROTO_TCP {
        "tcp"
    } else {
        "udp"
    }
}

fn time(unix: u64) -> String {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Names {
    fn flow(&self, f: &FlowRecord, slots: &SlotMap) -> FlowLine {
        let owner = slots.get(&f.meter);
        FlowLine {
            kind: "flow".into(),
            start: time(f.start),
            end: time(f.end),
            reason: f.reason.name().into(),
            proto: proto(f.key.proto).into(),
            vpc_id: self.vpc(f.key.vpc),
            client: addr(f.key.src, f.key.sport),
            endpoint: addr(f.key.dst, f.key.dport),
            endpoint_id: owner.map(|o| o.endpoint_id.clone()),
            service_id: owner.map(|o| o.service_id.clone()),
            backend_vpc_id: Some(self.vpc(f.out_vpc)),
            snat: Some(addr(f.rewrite.src, f.rewrite.sport)),
            backend: Some(addr(f.rewrite.dst, f.rewrite.dport)),
            packets_to_backend: Some(f.packets[0]),
            bytes_to_backend: Some(f.bytes[0]),
            packets_to_client: Some(f.packets[1]),
            bytes_to_client: Some(f.bytes[1]),
            count: None,
        }
    }

    fn refused(&self, r: &Refused, slots: &SlotMap) -> FlowLine {
        let owner = slots.get(&r.meter);
        FlowLine {
            kind: "refused".into(),
            start: time(r.first),
            end: time(r.last),
            reason: r.reason.name().into(),
            proto: proto(r.proto).into(),
            vpc_id: self.vpc(r.vpc),
            client: r
                .src
                .map_or_else(|| "*".into(), |ip| Ipv4Addr::from_bits(ip).to_string()),
            endpoint: addr(r.dst, r.dport),
            endpoint_id: owner.map(|o| o.endpoint_id.clone()),
            service_id: owner.map(|o| o.service_id.clone()),
            backend_vpc_id: None,
            snat: None,
            backend: None,
            packets_to_backend: None,
            bytes_to_backend: None,
            packets_to_client: None,
            bytes_to_client: None,
            count: Some(r.count),
        }
    }
}

/// The writer of one dataplane's flow log.
struct Writer {
    file: RotatingFile,
    names: Names,
    lost: Arc<AtomicU64>,
    lost_seen: u64,
    buf: Vec<u8>,
    lines: [u64; 2],
    last_warning: Option<Instant>,
}

impl Writer {
    fn add(&mut self, event: &FlowEvent, slots: &SlotMap) {
        let (line, kind) = match event {
            FlowEvent::Flow(f) => (self.names.flow(f, slots), 0),
            FlowEvent::Refused(r) => (self.names.refused(r, slots), 1),
        };
        if serde_json::to_writer(&mut self.buf, &line).is_ok() {
            self.buf.push(b'\n');
            self.lines[kind] += 1;
        }
        if self.buf.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() {
            if let Err(e) = self.file.append(&self.buf) {
                metrics::counter!("vpcep_flowlog_write_failures_total").increment(1);
                // At most one warning a minute: a full disk must not flood the daemon's log.
                if self
                    .last_warning
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                {
                    self.last_warning = Some(Instant::now());
                    tracing::warn!(error = %e, "flow log lines not written");
                }
            }
            self.buf.clear();
        }
        for (kind, n) in [("flow", 0), ("refused", 1)] {
            let lines = std::mem::take(&mut self.lines[n]);
            if lines > 0 {
                metrics::counter!("vpcep_flowlog_lines_total", "kind" => kind).increment(lines);
            }
        }
        let lost = self.lost.load(Relaxed);
        if lost > self.lost_seen {
            metrics::counter!("vpcep_flowlog_events_lost_total").increment(lost - self.lost_seen);
            self.lost_seen = lost;
        }
    }

    /// Write events until `stop` (then what is queued) or until every sender is gone.
    fn run(mut self, events: &Receiver<FlowEvent>, stop: &AtomicBool) {
        loop {
            let first = events.recv_timeout(Duration::from_millis(200));
            let done = match first {
                Ok(ev) => {
                    let slots = self.names.slots.load();
                    self.add(&ev, &slots);
                    for ev in events.try_iter() {
                        self.add(&ev, &slots);
                    }
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            if done || stop.load(Relaxed) {
                let slots = self.names.slots.load();
                for ev in events.try_iter() {
                    self.add(&ev, &slots);
                }
                self.flush();
                return;
            }
            self.flush();
        }
    }
}

/// Start the writer of `sink` (the dataplane of `cfg`'s attachments) on `flows.log` in the
/// data directory, naming endpoints from `slots`; it stops with `stop`.
///
/// # Errors
/// The I/O error of opening the file, or of spawning the thread.
pub fn spawn(
    cfg: &DaemonConfig,
    sink: Sink,
    slots: Arc<ArcSwap<SlotMap>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let file = RotatingFile::open(
        cfg.data_dir.join(FILE),
        cfg.flow_log.max_bytes,
        cfg.flow_log.files,
    )?;
    // Every series from the start, so alerts see a zero rather than nothing.
    metrics::counter!("vpcep_flowlog_events_lost_total").increment(0);
    metrics::counter!("vpcep_flowlog_write_failures_total").increment(0);
    let writer = Writer {
        file,
        names: Names {
            vpc_ids: cfg.attachments.iter().map(|a| a.vpc_id.clone()).collect(),
            slots,
        },
        lost_seen: 0,
        lost: sink.lost,
        buf: Vec::with_capacity(BATCH_BYTES + 1024),
        lines: [0; 2],
        last_warning: None,
    };
    std::thread::Builder::new()
        .name("vpcep-flowlog".into())
        .spawn(move || writer.run(&sink.events, &stop))
}

#[cfg(test)]
mod tests {
    use dataplane::conntrack::Rewrite;
    use dataplane::conntrack::flowlog::EndReason;
    use dataplane::{Attachment, DropReason, FlowKey};

    use super::*;
    use crate::meters::slots::Owner;

    const CLIENT: u32 = 0x0a00_0005;
    const ENDPOINT: u32 = 0x0a00_00c8;

    fn flow(sport: u16, reason: EndReason) -> FlowEvent {
        let key = FlowKey {
            src: CLIENT,
            dst: ENDPOINT,
            sport,
            dport: 8080,
            vpc: Attachment(0),
            proto: 6,
        };
        FlowEvent::Flow(FlowRecord {
            key,
            rewrite: Rewrite {
                src: 0xc613_8001,
                dst: 0x0a00_000a,
                sport: 2000,
                dport: 80,
            },
            out_vpc: Attachment(1),
            meter: 1,
            packets: [5, 4],
            bytes: [400, 3000],
            start: 1_800_000_000,
            end: 1_800_000_003,
            reason,
        })
    }

    #[test]
    fn events_become_lines_that_read_back_through_filters() {
        let dir = std::env::temp_dir().join(format!("vpcep-flowlog-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let owner = Arc::new(Owner {
            serial: 1,
            endpoint_id: "ep-1".into(),
            project_id: "u".into(),
            service_id: "svc-1".into(),
            service_project_id: "p".into(),
        });
        let slots = Arc::new(ArcSwap::from_pointee(SlotMap::from_iter([(1, owner)])));
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let writer = Writer {
            file: RotatingFile::open(dir.join(FILE), 1 << 20, 1).unwrap(),
            names: Names {
                vpc_ids: vec!["vpc-user".into(), "vpc-provider".into()],
                slots,
            },
            lost: Arc::new(AtomicU64::new(0)),
            lost_seen: 0,
            buf: Vec::new(),
            lines: [0; 2],
            last_warning: None,
        };
        tx.send(flow(40000, EndReason::Fin)).unwrap();
        tx.send(flow(40001, EndReason::Rst)).unwrap();
        tx.send(FlowEvent::Refused(Refused {
            vpc: Attachment(0),
            src: None,
            dst: ENDPOINT,
            dport: 9999,
            proto: 6,
            meter: 0,
            reason: DropReason::PortNotMapped,
            count: 12,
            first: 1_800_000_001,
            last: 1_800_000_002,
        }))
        .unwrap();
        drop(tx);
        writer.run(&rx, &AtomicBool::new(false));

        let all = read(&dir, &Filter::default()).unwrap();
        assert_eq!(all.len(), 3);
        let first = &all[0];
        assert_eq!(
            (first.client.as_str(), first.endpoint.as_str()),
            ("10.0.0.5:40000", "10.0.0.200:8080")
        );
        assert_eq!(first.snat.as_deref(), Some("198.19.128.1:2000"));
        assert_eq!(first.backend.as_deref(), Some("10.0.0.10:80"));
        assert_eq!(
            (first.vpc_id.as_str(), first.backend_vpc_id.as_deref()),
            ("vpc-user", Some("vpc-provider"))
        );
        assert_eq!(
            (first.endpoint_id.as_deref(), first.service_id.as_deref()),
            (Some("ep-1"), Some("svc-1"))
        );
        assert_eq!(
            (first.start.as_str(), first.end.as_str()),
            ("2027-01-15T08:00:00Z", "2027-01-15T08:00:03Z")
        );
        assert_eq!(
            (first.packets_to_backend, first.bytes_to_client),
            (Some(5), Some(3000))
        );
        let refused = &all[2];
        assert_eq!(
            (
                refused.kind.as_str(),
                refused.client.as_str(),
                refused.count
            ),
            ("refused", "*", Some(12))
        );
        assert_eq!(refused.reason, "port_not_mapped");
        assert_eq!(refused.endpoint_id, None, "no endpoint's slot");

        let only = |f: Filter| read(&dir, &f).unwrap().len();
        let client = |c: &str| Filter {
            client: Some(c.into()),
            ..Filter::default()
        };
        assert_eq!(only(client("10.0.0.5")), 2, "an address matches any port");
        assert_eq!(only(client("10.0.0.5:40001")), 1);
        assert_eq!(
            only(client("10.0.0.50")),
            0,
            "not a prefix of another address"
        );
        let reason = Filter {
            reason: Some("rst".into()),
            ..Filter::default()
        };
        assert_eq!(only(reason), 1);
        let endpoint = Filter {
            endpoint_id: Some("ep-1".into()),
            kind: Some("flow".into()),
            backend: Some("10.0.0.10".into()),
            ..Filter::default()
        };
        assert_eq!(only(endpoint), 2);
        let since = Filter {
            since: Some("2027-01-15T08:00:03Z".into()),
            ..Filter::default()
        };
        assert_eq!(only(since), 2, "the refused line ended before");
        let tail = Filter {
            tail: Some(1),
            ..Filter::default()
        };
        assert_eq!(read(&dir, &tail).unwrap()[0].kind, "refused");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
