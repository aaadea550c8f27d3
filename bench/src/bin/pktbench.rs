//! Packet-level benchmark of the dataplane core, one thread, no I/O.
//!
//! `cargo run --release -p bench --bin pktbench -- --json` prints one JSON object per
//! scenario: the established TCP fast path at 1 k, 100 k and 1 M flows (64-byte frames),
//! the reply direction, new-flow setup (to an endpoint, and through a gateway route), a
//! 100 k-connection table publish and a single change, and a reference loop that only
//! copies and parses the same frames (the floor).
//! Each figure is the median of several rounds, in wall-clock and in the thread's CPU time
//! (the machine may be shared). Frames go through the pipeline in batches of 64, each
//! warmed with `Pipeline::prefetch` first as the worker does (`--no-prefetch` turns that
//! off, to measure it). `--quick` shrinks everything for a smoke run.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bench::{CountingAlloc, allocations, js, json_line, live_bytes, median, thread_cpu_time};
use dataplane::tables::sharded::Change;
use dataplane::tables::{
    AcceptedKey, ClientIdentity, EndpointState, GatewayRoute, GatewayTable, Ipv4Cidr, PortSet,
    Target, default_snat_range,
};
use dataplane::wire::ethernet::MacAddr;
use dataplane::wire::ipv4::Ipv4Packet;
use dataplane::wire::tcp::TcpPacket;
use dataplane::{Attachment, Config, Pipeline, Shared, TablePublisher, Tables, Verdict};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const A: Attachment = Attachment(0);
const B: Attachment = Attachment(1);
const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa0]);
const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb0]);
const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const BACKEND_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x10]);
const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
/// Frames are padded to 60 bytes: 64 on the wire with the FCS.
const FRAME: usize = 60;
const BATCH: usize = 64;

struct Opts {
    json: bool,
    /// Process batches without [`Pipeline::prefetch`] (to measure what it brings).
    no_prefetch: bool,
    /// Leave the conntrack table on small pages (to measure what huge pages bring).
    no_huge_pages: bool,
    quick: bool,
    rounds: usize,
    only: Option<String>,
}

fn tcp_frame(
    macs: (MacAddr, MacAddr),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: &str,
) -> Vec<u8> {
    let mut b = etherparse::PacketBuilder::ethernet2(macs.0.0, macs.1.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1, 65535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            _ => b,
        };
    }
    let mut out = Vec::with_capacity(FRAME);
    b.write(&mut out, &[])
        .expect("building a frame into a Vec cannot fail");
    out.resize(FRAME, 0);
    out
}

/// Flow `i`'s client: 250 hosts per /24, each opening ports from 1024 up.
fn client(i: usize) -> (Ipv4Addr, u16) {
    let host = u32::try_from(i % 250).expect("fits") + 1;
    let net = u32::try_from(i / (250 * 60_000)).expect("fits") << 8;
    let port = u16::try_from(1024 + (i / 250) % 60_000).expect("port fits");
    (Ipv4Addr::from(0x0a01_0000 + net + host), port)
}

fn tables() -> Tables {
    let target = Target {
        connection_id: 1,
        marker_id: 1,
        backend_vpc: B,
        backend_ip: BACKEND,
        service_port: 80,
        whitelist: None,
        identity: ClientIdentity::NONE,
        // Metered, as every endpoint flow of the daemon is.
        meter: 1,
    };
    Tables::new(default_snat_range()).with_endpoint(A, ENDPOINT, [(6, 8080, target)])
}

fn config(capacity: usize) -> Config {
    Config {
        attachments: vec![MAC_A, MAC_B],
        conntrack_capacity: capacity.max(1).try_into().expect("non-zero"),
        conntrack_vpc_percent: 100, // every flow comes from one VPC
        ..Config::default()
    }
}

/// [`tables`] with port security on both attachments: every client host of `flows` flows
/// (250 of them at most per /24) and the backend are known ports.
fn secured_tables(flows: usize) -> Tables {
    let clients = (0..flows.min(250 * 60_000)).map(|i| (client(i).0, CLIENT_MAC));
    tables().with_ports(vec![
        Some(PortSet::new(clients)),
        Some(PortSet::new([(BACKEND, BACKEND_MAC)])),
    ])
}

/// A pipeline with `flows` established TCP flows under tables `t`; returns it with the
/// forward (client to endpoint) and reply (backend to SNAT) frames of every flow, and the
/// heap bytes the flows took.
fn established(
    flows: usize,
    t: Tables,
    huge_pages: bool,
) -> (Pipeline, Tables, Vec<u8>, Vec<u8>, usize) {
    let cfg = config(flows + 16);
    let now = Instant::now();
    let shared = Shared::new(&cfg, now);
    if huge_pages {
        advise(&shared);
    }
    shared.neighbours.learn(B, BACKEND.to_bits(), BACKEND_MAC);
    let mut p = Pipeline::new(cfg, shared);
    // Frames sit back to back in one buffer each way, as in a ring.
    let mut fwd = Vec::with_capacity(flows * FRAME);
    let mut rev = Vec::with_capacity(flows * FRAME);
    let heap_before = live_bytes();
    for i in 0..flows {
        let c = client(i);
        let mut syn = tcp_frame((CLIENT_MAC, MAC_A), c, (ENDPOINT, 8080), "S");
        assert_eq!(p.process(now, &t, A, &mut syn), Verdict::Forward(B));
        let ip = Ipv4Packet::new_checked(&syn[14..]).expect("our own frame");
        let snat = (
            ip.src_addr(),
            TcpPacket::new_checked(ip.payload())
                .expect("ours")
                .src_port(),
        );
        let mut synack = tcp_frame((BACKEND_MAC, MAC_B), (BACKEND, 80), snat, "SA");
        assert_eq!(p.process(now, &t, B, &mut synack), Verdict::Forward(A));
        let ack = tcp_frame((CLIENT_MAC, MAC_A), c, (ENDPOINT, 8080), "A");
        let mut a = ack.clone();
        assert_eq!(p.process(now, &t, A, &mut a), Verdict::Forward(B));
        fwd.extend_from_slice(&ack);
        rev.extend_from_slice(&tcp_frame((BACKEND_MAC, MAC_B), (BACKEND, 80), snat, "A"));
    }
    // The memory the flows hold: the conntrack table (allocated whole for the capacity,
    // `flows + 16`, when the tracker was made) and what the heap grew by while they opened
    // (the expiry queue). The frame buffers were allocated before `heap_before`.
    let held = live_bytes().saturating_sub(heap_before) + p.shared().conntrack.footprint();
    (p, t, fwd, rev, held)
}

/// Back the conntrack table with huge pages, as the daemon does.
fn advise(shared: &Shared) {
    for (addr, len) in shared.conntrack.regions() {
        if let Err(e) = dataplane::io::memory::advise_huge_pages(addr, len) {
            eprintln!("no huge pages for the conntrack table: {e}");
        }
    }
}

/// A pseudo-random visiting order, so the table sees no locality the real world lacks.
fn shuffled(n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..u32::try_from(n).expect("fits")).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = usize::try_from(x % (i as u64 + 1)).expect("fits");
        order.swap(i, j);
    }
    order
}

struct Run {
    packets: u64,
    ns_per_packet: f64,
    /// CPU time of this thread per packet (the wall clock also counts waiting for a core).
    cpu_ns_per_packet: f64,
    allocations: u64,
}

/// Lay `frames` (one per flow, `FRAME` bytes each) out in `order`, as a receive ring would
/// hold them: the ring is read front to back while the flows it hits are random.
fn ring(frames: &[u8], order: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.len());
    for &i in order {
        let at = i as usize * FRAME;
        out.extend_from_slice(&frames[at..at + FRAME]);
    }
    out
}

/// Run the ring of frames through `f`, front to back and round again, until at least
/// `min_packets` and `min_time`. Each batch of up to `BATCH` frames is copied into a work
/// buffer (as a receive ring hands frames to the worker) and `f` gets the whole batch.
fn drive(
    ring: &[u8],
    min_packets: u64,
    min_time: Duration,
    mut f: impl FnMut(Instant, &mut [u8]) -> bool,
) -> Run {
    let mut work = vec![0u8; BATCH * FRAME];
    let mut packets = 0u64;
    let alloc0 = allocations();
    let start = Instant::now();
    let cpu0 = thread_cpu_time();
    'outer: loop {
        for chunk in ring.chunks(BATCH * FRAME) {
            let now = Instant::now(); // one clock read per batch, as the worker does
            let buf = &mut work[..chunk.len()];
            buf.copy_from_slice(chunk);
            let ok = f(now, buf);
            debug_assert!(ok);
            black_box(&work);
            packets += (chunk.len() / FRAME) as u64;
            if packets >= min_packets && now - start >= min_time {
                break 'outer;
            }
        }
    }
    let elapsed = start.elapsed();
    let cpu = thread_cpu_time() - cpu0;
    #[allow(clippy::cast_precision_loss)]
    let (ns, cpu_ns) = (
        elapsed.as_nanos() as f64 / packets as f64,
        cpu.as_nanos() as f64 / packets as f64,
    );
    Run {
        packets,
        ns_per_packet: ns,
        cpu_ns_per_packet: cpu_ns,
        allocations: allocations() - alloc0,
    }
}

/// Run `rounds` of [`drive`] over `ring`; returns the median wall and CPU ns per packet,
/// the packets in all rounds and the allocations per packet.
fn rounds_of(
    ring: &[u8],
    rounds: &[(u64, Duration)],
    mut f: impl FnMut(Instant, &mut [u8]) -> bool,
) -> (f64, f64, u64, f64) {
    let mut ns = Vec::new();
    let mut cpu_ns = Vec::new();
    let mut packets = 0;
    let mut allocs = 0;
    for &(min_packets, min_time) in rounds {
        let r = drive(ring, min_packets, min_time, &mut f);
        ns.push(r.ns_per_packet);
        cpu_ns.push(r.cpu_ns_per_packet);
        packets += r.packets;
        allocs += r.allocations;
    }
    #[allow(clippy::cast_precision_loss)]
    let apk = allocs as f64 / packets as f64;
    (median(ns), median(cpu_ns), packets, apk)
}

/// What the worker does with a batch: warm the conntrack lines of all its frames (unless
/// `prefetch` is off), then process them one by one. True if every frame was forwarded.
fn process_batch(
    p: &mut Pipeline,
    prefetch: bool,
    now: Instant,
    t: &Tables,
    ingress: Attachment,
    batch: &mut [u8],
) -> bool {
    if prefetch {
        p.prefetch(batch.chunks_exact(FRAME).map(|f| (ingress, f)));
    }
    // Every frame is processed, even after one that was not forwarded.
    let mut forwarded = true;
    for f in batch.chunks_exact_mut(FRAME) {
        forwarded &= matches!(p.process(now, t, ingress, f), Verdict::Forward(_));
    }
    forwarded
}

/// What the reference loop does to each frame: check the same headers, read the 5-tuple,
/// and copy the addresses and ports in place (no table, no checksum).
fn reference(frame: &mut [u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(&frame[14..]) else {
        return false;
    };
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return false;
    };
    let tuple = (ip.src_u32(), ip.dst_u32(), tcp.src_port(), tcp.dst_port());
    black_box(tuple);
    let (src, dst) = (
        frame[26..30].to_owned_array(),
        frame[30..34].to_owned_array(),
    );
    frame[26..30].copy_from_slice(&dst);
    frame[30..34].copy_from_slice(&src);
    true
}

trait OwnedArray {
    fn to_owned_array(&self) -> [u8; 4];
}

impl OwnedArray for [u8] {
    fn to_owned_array(&self) -> [u8; 4] {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self[..4]);
        a
    }
}

fn emit(opts: &Opts, fields: &[(&str, String)]) {
    if opts.json {
        println!("{}", json_line(fields));
    } else {
        let text: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("{}", text.join("  "));
    }
}

fn f2(x: f64) -> String {
    format!("{x:.2}")
}

/// Packets of `flows` established flows (their replies if `reply`) under tables `t`.
fn packet_scenario(
    opts: &Opts,
    name: &str,
    (flows, t): (usize, Tables),
    reply: bool,
    rounds: &[(u64, Duration)],
) {
    let (mut p, t, fwd, rev, held) = established(flows, t, !opts.no_huge_pages);
    let order = shuffled(flows);
    let (frames, ingress) = if reply { (&rev, B) } else { (&fwd, A) };
    let ring = ring(frames, &order);
    let prefetch = !opts.no_prefetch;
    let (ns, cpu_ns, packets, apk) = rounds_of(&ring, rounds, |now, batch| {
        process_batch(&mut p, prefetch, now, &t, ingress, batch)
    });
    #[allow(clippy::cast_precision_loss)]
    let bytes_per_flow = held as f64 / flows as f64;
    emit(
        opts,
        &[
            ("scenario", js(name)),
            ("flows", flows.to_string()),
            ("packets", packets.to_string()),
            ("mpps", f2(1e3 / ns)),
            ("ns_per_packet", f2(ns)),
            ("cpu_mpps", f2(1e3 / cpu_ns)),
            ("cpu_ns_per_packet", f2(cpu_ns)),
            ("allocations_per_packet", format!("{apk:.4}")),
            ("conntrack_bytes_per_flow", format!("{bytes_per_flow:.1}")),
            ("frame_bytes", FRAME.to_string()),
        ],
    );
}

fn reference_scenario(opts: &Opts, flows: usize, rounds: &[(u64, Duration)]) {
    let frames: Vec<u8> = (0..flows)
        .flat_map(|i| tcp_frame((CLIENT_MAC, MAC_A), client(i), (ENDPOINT, 8080), "A"))
        .collect();
    let ring = ring(&frames, &shuffled(flows));
    let (ns, cpu_ns, packets, apk) = rounds_of(&ring, rounds, |_, batch| {
        batch.chunks_exact_mut(FRAME).all(reference)
    });
    emit(
        opts,
        &[
            (
                "scenario",
                js(&format!("reference_parse_copy_{}", label(flows))),
            ),
            ("flows", flows.to_string()),
            ("packets", packets.to_string()),
            ("mpps", f2(1e3 / ns)),
            ("ns_per_packet", f2(ns)),
            ("cpu_ns_per_packet", f2(cpu_ns)),
            ("allocations_per_packet", format!("{apk:.4}")),
            ("frame_bytes", FRAME.to_string()),
        ],
    );
}

/// Tables where A's gateway endpoint routes 100.125.0.0/16 to B through BACKEND.
fn gateway_tables() -> Tables {
    let route = GatewayRoute {
        out_vpc: B,
        next_hop: Some(BACKEND.to_bits()),
        meter: 1,
    };
    let prefix = Ipv4Cidr::new(Ipv4Addr::new(100, 125, 0, 0), 16).expect("a /16");
    Tables::new(default_snat_range())
        .with_gateways(vec![GatewayTable::new([(prefix, route)])])
        .with_snat_vpcs(vec![B])
}

/// `flows` SYNs from distinct clients to `dst` through tables `t`, each opening a flow.
fn new_flows_scenario(
    opts: &Opts,
    name: &str,
    flows: usize,
    t: fn() -> Tables,
    dst: (Ipv4Addr, u16),
) {
    let frames: Vec<u8> = (0..flows)
        .flat_map(|i| tcp_frame((CLIENT_MAC, MAC_A), client(i), dst, "S"))
        .collect();
    let mut rates = Vec::new();
    let mut allocs = 0;
    let mut packets = 0;
    for _ in 0..opts.rounds {
        let cfg = config(flows + 16);
        let shared = Shared::new(&cfg, Instant::now());
        if !opts.no_huge_pages {
            advise(&shared);
        }
        shared.neighbours.learn(B, BACKEND.to_bits(), BACKEND_MAC);
        let mut p = Pipeline::new(cfg, shared);
        let t = t();
        let prefetch = !opts.no_prefetch;
        let r = drive(&frames, flows as u64, Duration::ZERO, |now, batch| {
            process_batch(&mut p, prefetch, now, &t, A, batch)
        });
        assert_eq!(
            p.stats().flows_created,
            flows as u64,
            "every SYN opened a flow"
        );
        rates.push(1e9 / r.ns_per_packet);
        allocs += r.allocations;
        packets += r.packets;
    }
    let cps = median(rates);
    #[allow(clippy::cast_precision_loss)]
    let apk = allocs as f64 / packets as f64;
    emit(
        opts,
        &[
            ("scenario", js(name)),
            ("flows", flows.to_string()),
            ("packets", packets.to_string()),
            ("mpps", f2(cps / 1e6)),
            ("ns_per_packet", f2(1e9 / cps)),
            ("connections_per_second", format!("{cps:.0}")),
            ("allocations_per_packet", format!("{apk:.4}")),
        ],
    );
}

fn accepted_changes(n: usize) -> Vec<Change<AcceptedKey, Target>> {
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).expect("fits"));
            let target = Target {
                connection_id: i as u64,
                marker_id: i as u64,
                backend_vpc: B,
                backend_ip: BACKEND,
                service_port: 80,
                whitelist: None,
                identity: ClientIdentity::NONE,
                meter: u32::try_from(i % 4096).expect("fits") + 1,
            };
            Change::Put(AcceptedKey::new(A, ip, 6, 8080), target)
        })
        .collect()
}

fn publish_scenarios(opts: &Opts, n: usize) {
    let mut full = Vec::new();
    let mut single = Vec::new();
    for _ in 0..opts.rounds {
        let changes = accepted_changes(n);
        let endpoints: Vec<_> = changes
            .iter()
            .map(|c| match c {
                Change::Put(k, _) | Change::Remove(k) => {
                    Change::Put((k.vpc, k.endpoint), EndpointState::Accepted)
                }
            })
            .collect();
        let mut publisher = TablePublisher::new(Tables::new(default_snat_range()));
        let mut reader = publisher.reader();
        let start = Instant::now();
        let next = publisher
            .current()
            .with_accepted(changes)
            .with_endpoints(endpoints)
            .with_snat_vpcs(vec![B]);
        let g = publisher.publish(next);
        assert_eq!(reader.load().generation(), g);
        full.push(start.elapsed().as_secs_f64() * 1e3);

        // One accept made live: a copy that shares all but one shard, then a publish.
        let ip = Ipv4Addr::new(10, 255, 0, 1);
        let start = Instant::now();
        let one = accepted_changes(1).into_iter().map(|c| match c {
            Change::Put(_, t) => Change::Put(AcceptedKey::new(A, ip, 6, 8080), t),
            other => other,
        });
        let next = publisher.current().with_accepted(one);
        let g = publisher.publish(next);
        let live = reader.load();
        assert_eq!(live.generation(), g);
        assert!(
            live.accepted()
                .contains_key(&AcceptedKey::new(A, ip, 6, 8080))
        );
        single.push(start.elapsed().as_secs_f64() * 1e3);
    }
    for (name, ms) in [
        ("table_publish", median(full)),
        ("table_single_change", median(single)),
    ] {
        emit(
            opts,
            &[
                ("scenario", js(name)),
                ("flows", n.to_string()),
                ("connections", n.to_string()),
                ("packets", "0".into()),
                ("mpps", "0".into()),
                ("ns_per_packet", "0".into()),
                ("allocations_per_packet", "0".into()),
                ("publish_ms", format!("{ms:.4}")),
            ],
        );
    }
}

fn label(flows: usize) -> String {
    match flows {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = Opts {
        json: false,
        no_prefetch: false,
        no_huge_pages: false,
        quick: false,
        rounds: 5,
        only: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => opts.json = true,
            "--no-prefetch" => opts.no_prefetch = true,
            "--no-huge-pages" => opts.no_huge_pages = true,
            "--quick" => opts.quick = true,
            "--rounds" => {
                opts.rounds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--only" => opts.only = Some(it.next().cloned().unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if opts.quick {
        opts.rounds = opts.rounds.min(3);
    }
    let sizes: &[usize] = if opts.quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };
    let (min_packets, min_time) = if opts.quick {
        (20_000, Duration::from_millis(5))
    } else {
        (2_000_000, Duration::from_millis(300))
    };
    let rounds: Vec<_> = (0..opts.rounds).map(|_| (min_packets, min_time)).collect();
    let want = |name: &str| opts.only.as_deref().is_none_or(|o| name.starts_with(o));
    for &n in sizes {
        let name = format!("established_tcp_{}", label(n));
        if want(&name) {
            packet_scenario(&opts, &name, (n, tables()), false, &rounds);
        }
        let name = format!("reference_parse_copy_{}", label(n));
        if want(&name) {
            reference_scenario(&opts, n, &rounds);
        }
    }
    // The same established flows with port security on: one set probe more per packet.
    let secured_flows = if opts.quick { 1_000 } else { 100_000 };
    let name = format!("port_security_tcp_{}", label(secured_flows));
    if want(&name) {
        let t = secured_tables(secured_flows);
        packet_scenario(&opts, &name, (secured_flows, t), false, &rounds);
    }
    let reply_flows = if opts.quick { 1_000 } else { 100_000 };
    let name = format!("reply_tcp_{}", label(reply_flows));
    if want(&name) {
        packet_scenario(&opts, &name, (reply_flows, tables()), true, &rounds);
    }
    let new_flows = if opts.quick { 10_000 } else { 1_000_000 };
    if want("new_flows") {
        new_flows_scenario(&opts, "new_flows", new_flows, tables, (ENDPOINT, 8080));
    }
    // The same through a gateway endpoint's route: any port of a service prefix.
    if want("gateway_new_flows") {
        let dst = (Ipv4Addr::new(100, 125, 0, 10), 443);
        new_flows_scenario(&opts, "gateway_new_flows", new_flows, gateway_tables, dst);
    }
    if want("table") {
        publish_scenarios(&opts, if opts.quick { 10_000 } else { 100_000 });
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: pktbench [--json] [--quick] [--no-prefetch] [--no-huge-pages] [--rounds N] \
         [--only SCENARIO_PREFIX]"
    );
    std::process::exit(2)
}
