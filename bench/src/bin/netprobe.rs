//! Small traffic tools for the side-by-side benchmark, run inside namespaces:
//!
//! - `accept-server ADDR`: accept TCP connections and close them at once.
//! - `connect-rate ADDR SECONDS THREADS`: open and close TCP connections as fast as
//!   possible; prints connections per second (completed handshakes).
//! - `connect-count ADDR SECONDS THREADS`: the same, at most 50 a second per thread (a
//!   storm that does not take the cores); prints the connections completed and those that
//!   failed (refused, reset or timed out after 1 s).
//! - `udp-echo ADDR`: echo every UDP datagram.
//! - `udp-rtt ADDR COUNT`: send 64-byte datagrams one at a time and time the echoes;
//!   prints `p50_us p99_us lost`.
//! - `tcp-upload ADDR SECONDS STREAMS`: STREAMS connections write as fast as they can for
//!   SECONDS, then half-close and wait for the server's close (a sink that closes at the
//!   end); prints the Gbit/s delivered (bytes written over the time to the last close).
//! - `connect-echo ADDR SECONDS THREADS`: open a connection, send one byte, wait for it to
//!   come back, close (RST); prints completed echoes per second and failures.
//! - `tcp-rtt ADDR COUNT`: one connection (TCP_NODELAY), one byte at a time, the time to
//!   each echo; prints `p50_us p99_us`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = |i: usize| -> Result<SocketAddr> {
        args.get(i)
            .context("missing address")?
            .parse()
            .context("bad address")
    };
    match args.first().map(String::as_str) {
        Some("accept-server") => {
            let l = TcpListener::bind(addr(1)?)?;
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        loop {
                            match l.accept() {
                                Ok((c, _)) => drop(c),
                                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                                Err(_) => std::thread::sleep(Duration::from_millis(1)),
                            }
                        }
                    });
                }
            });
            Ok(())
        }
        Some("connect-rate") => {
            let target = addr(1)?;
            let secs: u64 = args.get(2).context("seconds")?.parse()?;
            let threads: usize = args.get(3).context("threads")?.parse()?;
            let done = AtomicU64::new(0);
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        while start.elapsed() < Duration::from_secs(secs) {
                            if let Ok(c) =
                                TcpStream::connect_timeout(&target, Duration::from_secs(1))
                            {
                                // RST on close: no TIME_WAIT pile-up on the client.
                                let _ = socket_linger_zero(&c);
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            println!(
                "{:.0}",
                done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Some("connect-count") => {
            let target = addr(1)?;
            let secs: u64 = args.get(2).context("seconds")?.parse()?;
            let threads: usize = args.get(3).context("threads")?.parse()?;
            let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        let mut next = Instant::now();
                        while start.elapsed() < Duration::from_secs(secs) {
                            match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                                Ok(c) => {
                                    let _ = socket_linger_zero(&c);
                                    ok.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(_) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            next += Duration::from_millis(20);
                            std::thread::sleep(next.saturating_duration_since(Instant::now()));
                        }
                    });
                }
            });
            println!(
                "{} {}",
                ok.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed)
            );
            Ok(())
        }
        Some("udp-echo") => {
            let s = UdpSocket::bind(addr(1)?)?;
            let mut buf = [0u8; 2048];
            loop {
                let (n, from) = s.recv_from(&mut buf)?;
                let _ = s.send_to(&buf[..n], from);
            }
        }
        Some("udp-rtt") => {
            let target = addr(1)?;
            let count: usize = args.get(2).context("count")?.parse()?;
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            let mut rtts = Vec::with_capacity(count);
            let mut lost = 0;
            let mut buf = [0u8; 64];
            for i in 0..count {
                let mut msg = [0u8; 64];
                msg[..8].copy_from_slice(&(i as u64).to_be_bytes());
                let t = Instant::now();
                s.send_to(&msg, target)?;
                loop {
                    match s.recv_from(&mut buf) {
                        Ok((64, _)) if buf[..8] == msg[..8] => {
                            rtts.push(t.elapsed().as_secs_f64() * 1e6);
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => {
                            lost += 1;
                            break;
                        }
                    }
                }
            }
            if rtts.is_empty() {
                bail!("no echo came back");
            }
            rtts.sort_by(f64::total_cmp);
            // Nearest rank on integers: index ceil(p% * n) - 1.
            let at = |pct: usize| rtts[(pct * rtts.len()).div_ceil(100).saturating_sub(1)];
            println!("{:.1} {:.1} {lost}", at(50), at(99));
            Ok(())
        }
        Some("tcp-upload") => {
            let secs: u64 = args.get(2).context("seconds")?.parse()?;
            let streams: usize = args.get(3).context("streams")?.parse()?;
            let gbps = tcp_upload(addr(1)?, Duration::from_secs(secs), streams)?;
            println!("{gbps:.3}");
            Ok(())
        }
        Some("connect-echo") => {
            let secs: u64 = args.get(2).context("seconds")?.parse()?;
            let threads: usize = args.get(3).context("threads")?.parse()?;
            let (rate, failed) = connect_echo(addr(1)?, Duration::from_secs(secs), threads);
            println!("{rate:.0} {failed}");
            Ok(())
        }
        Some("tcp-rtt") => {
            let count: usize = args.get(2).context("count")?.parse()?;
            let (p50, p99) = tcp_rtt(addr(1)?, count)?;
            println!("{p50:.1} {p99:.1}");
            Ok(())
        }
        _ => bail!(
            "usage: netprobe accept-server ADDR | connect-rate ADDR SECS THREADS | udp-echo ADDR | udp-rtt ADDR COUNT | tcp-upload ADDR SECS STREAMS | connect-echo ADDR SECS THREADS | tcp-rtt ADDR COUNT"
        ),
    }
}

/// `streams` connections each write for `secs`, half-close, and read until the server
/// closes: every byte written was delivered by then. Gbit/s over the time to the last close.
fn tcp_upload(target: SocketAddr, secs: Duration, streams: usize) -> Result<f64> {
    let start = Instant::now();
    let totals: Vec<Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..streams)
            .map(|_| {
                s.spawn(move || -> Result<u64> {
                    let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
                    let buf = vec![0x5au8; 128 * 1024];
                    let mut sent = 0u64;
                    while start.elapsed() < secs {
                        c.write_all(&buf)?;
                        sent += buf.len() as u64;
                    }
                    c.shutdown(std::net::Shutdown::Write)?;
                    c.set_read_timeout(Some(Duration::from_secs(30)))?;
                    let mut rest = [0u8; 64];
                    while c.read(&mut rest)? > 0 {}
                    Ok(sent)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a stream panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut bytes = 0u64;
    for t in totals {
        bytes += t?;
    }
    Ok(bytes as f64 * 8.0 / elapsed / 1e9)
}

/// Connections per second that carried one byte each way, over `threads` threads for
/// `secs`; and how many failed (refused, timed out, or closed without the echo).
fn connect_echo(target: SocketAddr, secs: Duration, threads: usize) -> (f64, u64) {
    let (done, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while start.elapsed() < secs {
                    let ok = (|| -> std::io::Result<bool> {
                        let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
                        c.set_nodelay(true)?;
                        c.set_read_timeout(Some(Duration::from_secs(1)))?;
                        c.write_all(b"x")?;
                        let mut b = [0u8; 1];
                        let n = c.read(&mut b)?;
                        // RST on close: no TIME_WAIT pile-up on the client.
                        let _ = socket_linger_zero(&c);
                        Ok(n == 1 && b[0] == b'x')
                    })();
                    let counter = if matches!(ok, Ok(true)) {
                        &done
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (
        done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed),
    )
}

/// One-byte round trips over one connection: (p50, p99) in microseconds.
fn tcp_rtt(target: SocketAddr, count: usize) -> Result<(f64, f64)> {
    let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    c.set_nodelay(true)?;
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut rtts = Vec::with_capacity(count);
    let mut b = [0u8; 1];
    for i in 0..count {
        let byte = [u8::try_from(i % 251).unwrap_or(0)];
        let t = Instant::now();
        c.write_all(&byte)?;
        c.read_exact(&mut b).context("the echo")?;
        if b != byte {
            bail!("echo {i}: sent {byte:?}, got {b:?}");
        }
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    if rtts.is_empty() {
        bail!("no round trip");
    }
    rtts.sort_by(f64::total_cmp);
    let at = |pct: usize| rtts[(pct * rtts.len()).div_ceil(100).saturating_sub(1)];
    Ok((at(50), at(99)))
}

#[allow(unsafe_code)]
fn socket_linger_zero(c: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let len = libc::socklen_t::try_from(size_of::<libc::linger>()).unwrap_or(8);
    // SAFETY: `l` is a valid linger struct of `len` bytes that outlives the call.
    let r = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const l).cast(),
            len,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}
