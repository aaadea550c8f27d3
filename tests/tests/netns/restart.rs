//! Restarts keep flows: the daemon saves its flow table when it stops (SIGTERM, as for an
//! upgrade), and every second while it runs (for a crash), and the next one loads it, so an
//! open TCP stream carries on (every byte arrives, checked by sha256) and a UDP flow's
//! reply still finds its way back.
//! Run with `cargo test -p vpcep-tests -- --ignored`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::{Duration, Instant};

use testkit::*;

const EP: &str = "10.0.0.200";

/// One datagram; prints the immediate answer and the late one (or `timeout`).
const UDP: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(15)
s.sendto(b"x", (sys.argv[1], 9001))
for _ in range(2):
    try:
        d, _ = s.recvfrom(2048); print(d.decode(), flush=True)
    except socket.timeout:
        print("timeout", flush=True)
"#;

fn world() -> (World, Proc) {
    let w = World::new(1).unwrap();
    let backend = w.python_backend_with_endpoint(SHA_BACKEND, &[]).unwrap();
    (w, backend)
}

/// Restart the daemon the way an operator or an upgrade does; returns how long frames of
/// the flow went unforwarded: from SIGTERM until the new process forwarded again.
fn restart(w: &mut World) -> Duration {
    let start = Instant::now();
    assert!(w.stop_daemon(), "SIGTERM: clean exit");
    w.start_and_forward().unwrap();
    start.elapsed()
}

/// Stream through `interrupt` (which returns the gap) and check every byte arrived, in the
/// flow that was open before (no new flow since the new process started).
fn stream_through(what: &str, interrupt: impl FnOnce(&mut World) -> Duration) {
    let (mut w, _backend) = world();
    let log = w.dir.join("stream.log");
    let mut client = w.users[0]
        .spawn(&["timeout", "60", "python3", "-c", STREAM, EP, "80"], &log)
        .unwrap();
    poll_until("the stream to flow", Duration::from_secs(10), || {
        w.metric("vpcep_dataplane_forwarded_total", None)
            .is_ok_and(|n| n > 20.0)
    })
    .unwrap();
    let gap = interrupt(&mut w);
    eprintln!(
        "{what} gap (stop to forwarding again): {} ms",
        gap.as_millis()
    );
    poll_until("the stream to end", Duration::from_secs(45), || {
        !client.alive()
    })
    .unwrap();
    stream_result(&log, 80);
    assert!(
        w.metric("vpcep_dataplane_flows_created_total", None)
            .unwrap()
            == 0.0,
        "the stream went on in the restored flow, not a new one"
    );
}

#[test]
#[ignore = "needs root + netns"]
fn a_tcp_stream_carries_on_through_a_restart_with_every_byte() {
    stream_through("restart", restart);
}

#[test]
#[ignore = "needs root + netns"]
fn a_tcp_stream_carries_on_through_a_crash_with_every_byte() {
    // kill -9: no chance to save. The flow table written in the background (every second)
    // carries the stream, which was opened before the last two writes.
    stream_through("kill -9", |w| {
        let writes = || {
            w.metric("vpcep_conntrack_handover_seconds_count", None)
                .unwrap_or(0.0)
        };
        let seen = writes();
        poll_until("two periodic hand-overs", Duration::from_secs(10), || {
            writes() >= seen + 2.0
        })
        .unwrap();
        let start = Instant::now();
        w.kill_daemon();
        w.start_and_forward().unwrap();
        start.elapsed()
    });
}

#[test]
#[ignore = "needs root + netns"]
fn a_udp_reply_after_a_restart_still_reaches_the_client() {
    let (mut w, _backend) = world();
    let log = w.dir.join("udp.log");
    let mut client = w.users[0]
        .spawn(&["timeout", "30", "python3", "-c", UDP, EP], &log)
        .unwrap();
    poll_until("the first answer", Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("now:x"))
    })
    .unwrap();
    // The backend answers again three seconds later, to the SNAT address and port of a
    // flow that only the saved table knows.
    restart(&mut w);
    poll_until("the client to finish", Duration::from_secs(20), || {
        !client.alive()
    })
    .unwrap();
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(out.contains("late:x"), "client saw: {out}");
}
