//! Per-endpoint and per-service traffic, read from the dataplane's meters off the hot path.
//!
//! The pusher hands each endpoint a meter slot ([`slots`]); each pipeline counts its
//! packets there ([`dataplane::meter`]). The [`MeterBook`] turns that into figures per
//! endpoint, once a second ([`MeterBook::tick`]):
//! - it sums the pipelines' meters of every slot in use and adds what moved since the last
//!   tick to the slot's endpoint, so the totals only grow: across a reload (new pipelines,
//!   whose meters start at zero) and across the reuse of a slot (a new owner starts from
//!   what the slot held when it took it);
//! - every [`SCAN_EVERY`] it counts the live flows of each slot in conntrack (active
//!   flows, exact whatever opened or closed them);
//! - every [`SAMPLE_EVERY`] it keeps a sample of each endpoint that carried traffic in the
//!   last [`HISTORY`], for the console's charts and the API: at most [`HISTORY_ENDPOINTS`]
//!   endpoints have a history, [`HISTORY`] / [`SAMPLE_EVERY`] samples each.
//!
//! Prometheus series (rendered by [`MeterBook::render`] beside the process's others): one
//! set per endpoint that exists and one per service with endpoints, gone with them. So
//! their number is bounded by the resources: per endpoint 2 + 2 + 2 + 1 + 1 + (drop reasons
//! seen) series, per service 2 + 2 + 1 + 1 + (drop reasons seen).

pub mod slots;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dataplane::conntrack::ConnTrack;
use dataplane::meter::{ENDPOINT_DROPS, Meters, Reading};
use serde::Serialize;

use self::slots::{Owner, SlotMap};

/// How often active flows are counted.
pub const SCAN_EVERY: Duration = Duration::from_secs(5);
/// The history's resolution.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How far the history goes back.
pub const HISTORY: Duration = Duration::from_secs(3600);
/// Most endpoints with a history (those with the latest traffic keep theirs).
pub const HISTORY_ENDPOINTS: usize = 4096;

/// One point of an endpoint's history: its totals then.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    /// Packets, client to service.
    pub packets_to_service: u64,
    /// Packets, service to client.
    pub packets_to_client: u64,
    /// IPv4 bytes, client to service.
    pub bytes_to_service: u64,
    /// IPv4 bytes, service to client.
    pub bytes_to_client: u64,
    /// Flows opened.
    pub flows_opened: u64,
    /// Flows in conntrack at the last count.
    pub active_flows: u64,
    /// Drops of every reason.
    pub drops: u64,
    /// TCP resets, both ways.
    pub resets: u64,
}

/// An endpoint's figures.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Figures {
    /// Packets, client to service.
    pub packets_to_service: u64,
    /// Packets, service to client.
    pub packets_to_client: u64,
    /// IPv4 bytes, client to service.
    pub bytes_to_service: u64,
    /// IPv4 bytes, service to client.
    pub bytes_to_client: u64,
    /// TCP resets, client to service.
    pub resets_to_service: u64,
    /// TCP resets, service to client.
    pub resets_to_client: u64,
    /// Flows opened.
    pub flows_opened: u64,
    /// Flows in conntrack at the last count.
    pub active_flows: u64,
    /// Drops by reason (only reasons with drops).
    pub drops: std::collections::BTreeMap<&'static str, u64>,
}

impl Figures {
    /// The figures of `r`, with `active` flows.
    pub fn of(r: &Reading, active: u64) -> Self {
        Self {
            packets_to_service: r.packets[0],
            packets_to_client: r.packets[1],
            bytes_to_service: r.bytes[0],
            bytes_to_client: r.bytes[1],
            resets_to_service: r.resets[0],
            resets_to_client: r.resets[1],
            flows_opened: r.flows_opened,
            active_flows: active,
            drops: ENDPOINT_DROPS
                .iter()
                .zip(r.drops)
                .filter(|(_, n)| *n > 0)
                .map(|(reason, n)| (reason.name(), n))
                .collect(),
        }
    }
}

/// What the book keeps of one endpoint.
#[derive(Debug)]
struct Account {
    owner: Arc<Owner>,
    totals: Reading,
    active: u64,
    /// When its totals last moved.
    moved: Option<Instant>,
    history: VecDeque<Sample>,
}

impl Account {
    fn sample(&self, at: i64) -> Sample {
        let t = &self.totals;
        Sample {
            at,
            packets_to_service: t.packets[0],
            packets_to_client: t.packets[1],
            bytes_to_service: t.bytes[0],
            bytes_to_client: t.bytes[1],
            flows_opened: t.flows_opened,
            active_flows: self.active,
            drops: t.drops.iter().sum(),
            resets: t.resets[0] + t.resets[1],
        }
    }
}

/// Where the book reads: the live dataplane's pipelines and conntrack.
#[derive(Default)]
struct Sources {
    meters: Vec<Arc<Meters>>,
    conntrack: Option<Arc<ConnTrack>>,
    /// Bumped at every [`MeterBook::set_sources`].
    epoch: u64,
}

#[derive(Default)]
struct Book {
    /// Per slot ever used: the serial of its (last) owner, and what its meters held at the
    /// last tick (at most [`dataplane::meter::MAX_SLOTS`] entries).
    slots: HashMap<u32, (u64, Reading)>,
    /// Per endpoint id.
    accounts: HashMap<String, Account>,
    epoch: u64,
    scanned: Option<Instant>,
    sampled: Option<Instant>,
}

/// The per-endpoint figures of this node.
pub struct MeterBook {
    slot_map: Arc<ArcSwap<SlotMap>>,
    sources: Mutex<Sources>,
    book: Mutex<Book>,
}

impl core::fmt::Debug for MeterBook {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MeterBook").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MeterBook {
    /// A book over the slots the pusher publishes in `slot_map`.
    pub fn new(slot_map: Arc<ArcSwap<SlotMap>>) -> Self {
        Self {
            slot_map,
            sources: Mutex::new(Sources::default()),
            book: Mutex::new(Book::default()),
        }
    }

    /// Read these pipelines' meters and this conntrack from now on (a dataplane started
    /// or replaced by a reload). What the previous ones counted since the last tick is
    /// taken first (their workers have stopped: their counts are final).
    pub fn set_sources(&self, meters: Vec<Arc<Meters>>, conntrack: Option<Arc<ConnTrack>>) {
        self.tick(Instant::now(), chrono::Utc::now().timestamp());
        let mut s = lock(&self.sources);
        s.meters = meters;
        s.conntrack = conntrack;
        s.epoch += 1;
    }

    /// Take what moved since the last tick (see the module's doc).
    pub fn tick(&self, now: Instant, unix_now: i64) {
        let map = self.slot_map.load_full();
        let (meters, conntrack, epoch) = {
            let s = lock(&self.sources);
            (s.meters.clone(), s.conntrack.clone(), s.epoch)
        };
        let mut book = lock(&self.book);
        let book = &mut *book;
        if book.epoch != epoch {
            // New pipelines: their meters start at zero.
            book.epoch = epoch;
            for (_, last) in book.slots.values_mut() {
                *last = Reading::default();
            }
        }
        // Slots out of use keep their last reading: if one comes back for a new owner,
        // that owner starts from there.
        let serials: std::collections::HashSet<u64> = map.values().map(|o| o.serial).collect();
        book.accounts
            .retain(|_, a| serials.contains(&a.owner.serial));
        for (&slot, owner) in map.iter() {
            let raw = dataplane::meter::sum(meters.iter().map(|m| &**m), slot);
            let account = book
                .accounts
                .entry(owner.endpoint_id.clone())
                .or_insert_with(|| Account {
                    owner: owner.clone(),
                    totals: Reading::default(),
                    active: 0,
                    moved: None,
                    history: VecDeque::new(),
                });
            // A slot never seen counts from zero (the pipelines' meters started with this
            // book); a new owner of a slot starts from what the slot holds now.
            let (serial, last) = book
                .slots
                .entry(slot)
                .or_insert((owner.serial, Reading::default()));
            if *serial != owner.serial {
                *serial = owner.serial;
                *last = raw;
            }
            let delta = raw.since(last);
            *last = raw;
            if delta != Reading::default() {
                account.totals.add(&delta);
                account.moved = Some(now);
            }
        }
        if book
            .scanned
            .is_none_or(|t| now.duration_since(t) >= SCAN_EVERY)
        {
            book.scanned = Some(now);
            let mut live: HashMap<u32, u64> = HashMap::new();
            if let Some(ct) = &conntrack {
                for meter in ct.live_meters() {
                    *live.entry(meter).or_default() += 1;
                }
            }
            for (&slot, owner) in map.iter() {
                if let Some(a) = book.accounts.get_mut(&owner.endpoint_id) {
                    a.active = live.get(&slot).copied().unwrap_or(0);
                }
            }
        }
        if book
            .sampled
            .is_none_or(|t| now.duration_since(t) >= SAMPLE_EVERY)
        {
            book.sampled = Some(now);
            sample(book, now, unix_now);
        }
    }

    /// The figures and history of endpoint `id`, if it is metered here.
    pub fn endpoint(&self, id: &str) -> Option<(Figures, Vec<Sample>)> {
        let book = lock(&self.book);
        let a = book.accounts.get(id)?;
        Some((
            Figures::of(&a.totals, a.active),
            a.history.iter().copied().collect(),
        ))
    }

    /// The figures of service `id`, summed over its endpoints, and each endpoint's.
    pub fn service(&self, id: &str) -> (Figures, Vec<(String, Figures)>) {
        let book = lock(&self.book);
        let mut total = Reading::default();
        let mut active = 0;
        let mut each = Vec::new();
        for a in book.accounts.values().filter(|a| a.owner.service_id == id) {
            total.add(&a.totals);
            active += a.active;
            each.push((
                a.owner.endpoint_id.clone(),
                Figures::of(&a.totals, a.active),
            ));
        }
        each.sort_by(|x, y| x.0.cmp(&y.0));
        (Figures::of(&total, active), each)
    }

    /// The Prometheus text of every endpoint's and service's series.
    pub fn render(&self) -> String {
        let book = lock(&self.book);
        let mut out = String::new();
        let mut services: HashMap<(&str, &str), (Reading, u64)> = HashMap::new();
        let mut accounts: Vec<&Account> = book.accounts.values().collect();
        accounts.sort_by(|a, b| a.owner.endpoint_id.cmp(&b.owner.endpoint_id));
        header(&mut out);
        for a in &accounts {
            let o = &a.owner;
            let labels = format!(
                "endpoint_id=\"{}\",service_id=\"{}\",project_id=\"{}\"",
                escape(&o.endpoint_id),
                escape(&o.service_id),
                escape(&o.project_id)
            );
            series(&mut out, "vpcep_endpoint", &labels, &a.totals, a.active);
            let s = services
                .entry((&o.service_id, &o.service_project_id))
                .or_default();
            s.0.add(&a.totals);
            s.1 += a.active;
        }
        let mut services: Vec<_> = services.into_iter().collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        for ((service, project), (totals, active)) in &services {
            let labels = format!(
                "service_id=\"{}\",project_id=\"{}\"",
                escape(service),
                escape(project)
            );
            series(&mut out, "vpcep_service", &labels, totals, *active);
        }
        out
    }
}

/// Keep a sample of each endpoint with traffic in the last [`HISTORY`], at most
/// [`HISTORY_ENDPOINTS`] of them (the latest to move).
fn sample(book: &mut Book, now: Instant, unix_now: i64) {
    let keep = usize::try_from(HISTORY.as_secs() / SAMPLE_EVERY.as_secs()).unwrap_or(1);
    let mut recent: Vec<(Instant, &String)> = book
        .accounts
        .iter()
        .filter_map(|(id, a)| {
            a.moved
                .filter(|t| now.duration_since(*t) < HISTORY)
                .map(|t| (t, id))
        })
        .collect();
    recent.sort_by_key(|r| std::cmp::Reverse(r.0));
    let chosen: std::collections::HashSet<String> = recent
        .into_iter()
        .take(HISTORY_ENDPOINTS)
        .map(|(_, id)| id.clone())
        .collect();
    for (id, a) in &mut book.accounts {
        if chosen.contains(id) {
            if a.history.len() == keep {
                a.history.pop_front();
            }
            let s = a.sample(unix_now);
            a.history.push_back(s);
        } else if !a.history.is_empty() {
            a.history = VecDeque::new();
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The HELP and TYPE lines of every series [`series`] writes.
fn header(out: &mut String) {
    for (kind, what) in [
        ("endpoint", "endpoint"),
        ("service", "service (its endpoints summed)"),
    ] {
        for (name, ty, help) in [
            (
                "packets_total",
                "counter",
                "Packets forwarded, by direction (a GSO super-frame counts as its segments).",
            ),
            (
                "bytes_total",
                "counter",
                "IPv4 bytes forwarded, by direction.",
            ),
            (
                "resets_total",
                "counter",
                "TCP segments with RST forwarded, by direction.",
            ),
            ("flows_opened_total", "counter", "Flows opened."),
            (
                "active_flows",
                "gauge",
                "Flows in conntrack at the last count.",
            ),
            ("drops_total", "counter", "Packets dropped, by reason."),
        ] {
            let _ = writeln!(out, "# HELP vpcep_{kind}_{name} Per {what}: {help}");
            let _ = writeln!(out, "# TYPE vpcep_{kind}_{name} {ty}");
        }
    }
}

fn series(out: &mut String, prefix: &str, labels: &str, r: &Reading, active: u64) {
    for (i, dir) in ["to_service", "to_client"].iter().enumerate() {
        let _ = writeln!(
            out,
            "{prefix}_packets_total{{{labels},direction=\"{dir}\"}} {}",
            r.packets[i]
        );
        let _ = writeln!(
            out,
            "{prefix}_bytes_total{{{labels},direction=\"{dir}\"}} {}",
            r.bytes[i]
        );
        let _ = writeln!(
            out,
            "{prefix}_resets_total{{{labels},direction=\"{dir}\"}} {}",
            r.resets[i]
        );
    }
    let _ = writeln!(
        out,
        "{prefix}_flows_opened_total{{{labels}}} {}",
        r.flows_opened
    );
    let _ = writeln!(out, "{prefix}_active_flows{{{labels}}} {active}");
    for (reason, n) in ENDPOINT_DROPS.iter().zip(r.drops) {
        if n > 0 {
            let _ = writeln!(
                out,
                "{prefix}_drops_total{{{labels},reason=\"{}\"}} {n}",
                reason.name()
            );
        }
    }
}

/// Tick `book` every second on a thread (`vpcep-meters`) until `stop`.
///
/// # Errors
/// The thread could not be spawned.
pub fn spawn(
    book: Arc<MeterBook>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("vpcep-meters".into())
        .spawn(move || {
            let mut last: Option<Instant> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if last.is_none_or(|t| t.elapsed() >= TICK) {
                    last = Some(Instant::now());
                    book.tick(Instant::now(), chrono::Utc::now().timestamp());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
}

/// How often [`spawn`]'s thread ticks (it looks at the stop flag in between).
pub const TICK: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use dataplane::conntrack::Direction;

    use super::*;

    fn owner(serial: u64, ep: &str, svc: &str) -> Arc<Owner> {
        Arc::new(Owner {
            serial,
            endpoint_id: ep.into(),
            project_id: "puser".into(),
            service_id: svc.into(),
            service_project_id: "pprov".into(),
        })
    }

    #[test]
    fn totals_grow_across_reloads_and_a_reused_slot_starts_from_zero() {
        let map = Arc::new(ArcSwap::from_pointee(SlotMap::from_iter([
            (1, owner(1, "ep-a", "svc")),
            (2, owner(2, "ep-b", "svc")),
        ])));
        let book = MeterBook::new(Arc::clone(&map));
        let w1 = Arc::new(Meters::default());
        book.set_sources(vec![Arc::clone(&w1)], None);
        let t0 = Instant::now();
        w1.packet(1, Direction::Original, 1, 100, false);
        w1.packet(1, Direction::Reply, 2, 3000, false);
        w1.opened(1);
        book.tick(t0, 0);
        let (a, _) = book.endpoint("ep-a").unwrap();
        assert_eq!((a.packets_to_service, a.packets_to_client), (1, 2));
        assert_eq!(
            (a.bytes_to_service, a.bytes_to_client, a.flows_opened),
            (100, 3000, 1)
        );
        book.tick(t0 + SAMPLE_EVERY, 10);
        let (_, history) = book.endpoint("ep-a").unwrap();
        assert_eq!(history.len(), 1, "one sample every SAMPLE_EVERY");
        assert_eq!((history[0].at, history[0].packets_to_client), (10, 2));
        assert!(
            book.endpoint("ep-b").unwrap().1.is_empty(),
            "no history without traffic"
        );
        assert_eq!(
            book.endpoint("ep-b").unwrap().0,
            Figures::of(&Reading::default(), 0)
        );

        // A reload: new pipelines, whose meters start at zero; the old ones' last counts
        // are taken first.
        w1.packet(1, Direction::Original, 1, 50, false);
        let w2 = Arc::new(Meters::default());
        book.set_sources(vec![Arc::clone(&w2)], None);
        w2.packet(1, Direction::Original, 1, 70, false);
        book.tick(t0 + Duration::from_secs(11), 11);
        let (a, _) = book.endpoint("ep-a").unwrap();
        assert_eq!((a.packets_to_service, a.bytes_to_service), (3, 220));

        // ep-a deleted; its slot goes to ep-c (a new serial) with what it held.
        map.store(Arc::new(SlotMap::from_iter([
            (1, owner(3, "ep-c", "svc2")),
            (2, owner(2, "ep-b", "svc")),
        ])));
        book.tick(t0 + Duration::from_secs(12), 12);
        assert!(book.endpoint("ep-a").is_none(), "gone with its endpoint");
        assert_eq!(book.endpoint("ep-c").unwrap().0.packets_to_service, 0);
        w2.packet(1, Direction::Original, 1, 10, false);
        book.tick(t0 + Duration::from_secs(13), 13);
        assert_eq!(book.endpoint("ep-c").unwrap().0.packets_to_service, 1);
        w2.dropped(2, dataplane::DropReason::SourceNotWhitelisted);
        book.tick(t0 + Duration::from_secs(14), 14);

        let (svc, each) = book.service("svc");
        assert_eq!(each.len(), 1);
        assert_eq!(svc.drops.get("source_not_whitelisted"), Some(&1));
        let text = book.render();
        assert!(text.contains(
            "vpcep_endpoint_packets_total{endpoint_id=\"ep-c\",service_id=\"svc2\",project_id=\"puser\",direction=\"to_service\"} 1"
        ), "{text}");
        assert!(text.contains(
            "vpcep_endpoint_drops_total{endpoint_id=\"ep-b\",service_id=\"svc\",project_id=\"puser\",reason=\"source_not_whitelisted\"} 1"
        ), "{text}");
        assert!(text.contains(
            "vpcep_service_drops_total{service_id=\"svc\",project_id=\"pprov\",reason=\"source_not_whitelisted\"} 1"
        ), "{text}");
        assert!(!text.contains("ep-a"));
    }
}
