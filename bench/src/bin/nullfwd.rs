//! The floor of an AF_PACKET forwarder (issue 22, item 6): vpcepd's own packet I/O (the
//! same `AfPacketBackend` and transmit sockets, the same batch, slots, spin, receive mode
//! and kernel ingress drop) with no pipeline. Every IPv4 frame that arrives on one
//! interface leaves on the other, its Ethernet addresses rewritten (source: the out
//! interface, destination: the host beyond it) and its offload metadata kept; nothing else
//! is looked at, nothing is NATed. e2ebench runs it where vpcepd runs, so every run shows
//! how far vpcepd is from what its I/O path alone can do.
//!
//! `nullfwd IF_A MAC_BEYOND_A IF_B MAC_BEYOND_B [--spin-us N] [--spin adaptive|fixed] [--rx tpacket_v2|tpacket_v3]
//! [--rx-ring-frames N] [--tx ring]`,
//! as root in the namespace of the interfaces. SIGTERM stops it (and removes its ingress
//! drops). It prints `forwarding` once its sockets are open, and what it moved when it
//! stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dataplane::flow::Attachment;
use dataplane::io::af_packet::{AfPacketBackend, Receive};
use dataplane::io::af_packet::{Interface, TxSocket};
use dataplane::io::ring::RingGeometry;
use dataplane::io::spin::Spin;
use dataplane::io::{Backend, Batch};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::ethernet::MacAddr;

fn mac(s: &str) -> Result<MacAddr> {
    let b: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("a MAC address: {s}"))?;
    let b: [u8; 6] = b
        .try_into()
        .map_err(|_| anyhow::anyhow!("a MAC address: {s}"))?;
    Ok(MacAddr(b))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().skip_while(|a| *a != name).nth(1).cloned();
    let [if_a, mac_a, if_b, mac_b] = match args.get(..4) {
        Some([a, b, c, d]) => [a.clone(), b.clone(), c.clone(), d.clone()],
        _ => bail!(
            "usage: nullfwd IF_A MAC_BEYOND_A IF_B MAC_BEYOND_B [--spin-us N] \
             [--spin adaptive|fixed] [--rx tpacket_v2|tpacket_v3] [--rx-ring-frames N] \
             [--tx ring]"
        ),
    };
    // The daemon's defaults, unless told otherwise.
    let dp = dataplane::config::Config::default();
    let spin_us: u64 = flag("--spin-us").map_or(Ok(50), |n| n.parse())?;
    // The daemon's receive modes, with its `rx_ring_frames` default.
    let receive = match flag("--rx").as_deref() {
        None | Some("recvmmsg") => Receive::Recvmmsg,
        Some("tpacket_v3") => Receive::TpacketV3(RingGeometry::default()),
        Some("tpacket_v2") => Receive::TpacketV2 {
            frames: flag("--rx-ring-frames").map_or(Ok(256), |n| n.parse())?,
            max_frame: dp.max_frame_bytes,
        },
        Some(other) => bail!("--rx {other}: recvmmsg, tpacket_v2 or tpacket_v3"),
    };
    // The daemon's `tx_ring_slots` default.
    let tx_slots = if flag("--tx").as_deref() == Some("ring") {
        256
    } else {
        0
    };
    let ifaces = [Interface::lookup(&if_a)?, Interface::lookup(&if_b)?];
    let beyond = [mac(&mac_a)?, mac(&mac_b)?];
    let tx: Arc<Vec<TxSocket>> = Arc::new(
        ifaces
            .iter()
            .map(|i| TxSocket::open_with_ring(i, tx_slots))
            .collect::<Result<_, _>>()?,
    );
    let attachments: Vec<_> = ifaces
        .iter()
        .zip([Attachment(0), Attachment(1)])
        .map(|(i, a)| (i, a, None))
        .collect();
    let mut backend = AfPacketBackend::open(
        &attachments,
        if flag("--spin").as_deref() == Some("fixed") {
            Spin::fixed(Duration::from_micros(spin_us))
        } else {
            Spin::adaptive(Duration::from_micros(spin_us))
        },
        receive,
        Arc::clone(&tx),
    )?;
    // As the daemon: without `clsact`/`cls_bpf` in the kernel it goes on without the drop.
    for i in &ifaces {
        if let Err(e) = dataplane::io::ingress_drop::install(i.ifindex) {
            eprintln!("no ingress drop on {}: {e}", i.name);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .ok();
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        () = async {
                            match &mut term {
                                Some(t) => { t.recv().await; }
                                None => std::future::pending().await,
                            }
                        } => {}
                    }
                });
            }
            stop.store(true, Ordering::SeqCst);
        });
    }
    println!("forwarding");
    let mut batch = Batch::new(dp.batch_size.get(), dp.max_frame_bytes);
    let (mut frames, mut failed) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let n = backend.recv(&mut batch, dp.idle_poll)?;
        if n == 0 {
            continue;
        }
        for slot in batch.filled_mut() {
            let out = usize::from(1 - slot.ingress.0.min(1));
            let frame = slot.bytes_mut();
            slot.verdict = if frame.len() >= 14 && frame[12..14] == [0x08, 0x00] {
                frame[..6].copy_from_slice(&beyond[out].0);
                frame[6..12].copy_from_slice(&ifaces[out].mac.0);
                Verdict::Forward(Attachment(u16::try_from(out).unwrap_or(0)))
            } else {
                Verdict::Drop(DropReason::Malformed)
            };
        }
        frames += n as u64;
        failed += backend.send(&batch)? as u64;
    }
    for i in &ifaces {
        let _ = dataplane::io::ingress_drop::remove(i.ifindex);
    }
    println!("stopped: {frames} frames in, {failed} not sent");
    Ok(())
}
