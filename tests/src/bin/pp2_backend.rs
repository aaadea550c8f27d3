//! A TCP backend that speaks the receiving side of the PROXY protocol v2, for the client
//! identity tests and benches (`tcp_proxy = proxy_open | open`).
//!
//! Each connection must start with exactly one PROXY v2 header (binary signature, version
//! 2); it is parsed by the `ppp` crate, an implementation independent of the dataplane's
//! writer, so a header vpcepd gets wrong fails here, not in the same code that wrote it. A
//! connection without a valid header is closed at once and a JSON line
//! `{"error": "...", "peer": "..."}` goes to stdout (unless `--no-proxy`: then no header is
//! expected and the stream is taken as it comes; or `--proxy-optional`: a stream that does
//! not start with the v2 signature is taken as it comes, `header_len` 0 in the report).
//!
//! After the header, per `--mode`:
//! - `report`: read to the end, then answer one JSON line and close:
//!   `{"src","dst","marker_id","tlvs":[[type,"hex"]],"header_len","bytes","sha256"}`
//!   (`src`/`dst` from the header, or the socket's peer and local address with
//!   `--no-proxy`; `marker_id` is the big-endian u64 of TLV 0xE0, `null` without one). The
//!   same line goes to stdout, for a harness that reads the log.
//! - `echo`: send every byte back until the client closes (round trips, connection rates).
//! - `sink`: read and discard until the client closes (upload throughput).
//! - `source`: send an endless stream until the client closes (download throughput).
//!
//! Prints `ready` once listening. One thread per connection; nothing is shared between
//! connections but stdout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use ppp::v2::{Addresses, Command, Header, Protocol};
use sha2::{Digest, Sha256};

/// vpcep's TLV type for the connection's marker id (PP2 custom range 0xE0..=0xEF).
const PP2_TYPE_MARKER_ID: u8 = 0xE0;
/// The fixed part of a v2 header: 12-byte signature, version/command, family/protocol,
/// length (the length of what follows).
const FIXED_LEN: usize = 16;

/// What to do with a connection after its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Send everything back.
    Echo,
    /// Read to the end, answer one JSON report line.
    Report,
    /// Read and discard.
    Sink,
    /// Send an endless stream.
    Source,
}

/// The command line.
#[derive(Debug, Parser)]
#[command(about = "A PROXY protocol v2 backend for vpcep's tests and benches")]
struct Cli {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// What each connection gets after its header.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Expect no PROXY header (a plain backend).
    #[arg(long, conflicts_with = "proxy_optional")]
    no_proxy: bool,
    /// Read a PROXY header if the stream starts with the v2 signature, else take the stream
    /// as it comes (a backend behind a service whose `tcp_proxy` changes).
    #[arg(long)]
    proxy_optional: bool,
}

/// Whether a connection must, may or must not start with a PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Never: the stream is data from its first byte.
    Nothing,
    /// If the stream starts with the v2 signature.
    Optional,
    /// Always: a connection without one is refused.
    Required,
}

/// What a connection's header said.
#[derive(Debug)]
struct Identity {
    src: SocketAddr,
    dst: SocketAddr,
    marker_id: Option<u64>,
    /// Every TLV as (type, value in hex).
    tlvs: Vec<(u8, String)>,
    header_len: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(cli.listen).with_context(|| format!("bind {}", cli.listen))?;
    println!("ready");
    std::io::stdout().flush()?;
    loop {
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors under a connection flood: say so, keep serving.
                eprintln!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
        };
        let mode = cli.mode;
        let expect = match (cli.no_proxy, cli.proxy_optional) {
            (true, _) => Expect::Nothing,
            (false, true) => Expect::Optional,
            (false, false) => Expect::Required,
        };
        std::thread::spawn(move || {
            if let Err(e) = serve(conn, mode, expect) {
                let line = serde_json::json!({"error": format!("{e:#}"), "peer": peer.to_string()});
                println!("{line}");
            }
        });
    }
}

/// One connection: the header, then the mode's work.
fn serve(mut conn: TcpStream, mode: Mode, expect: Expect) -> Result<()> {
    conn.set_nodelay(true)?;
    let plain = |conn: &TcpStream| -> Result<Identity> {
        Ok(Identity {
            src: conn.peer_addr()?,
            dst: conn.local_addr()?,
            marker_id: None,
            tlvs: Vec::new(),
            header_len: 0,
        })
    };
    // `pending`: stream bytes read while looking for a header that was not there.
    let (id, pending) = match expect {
        Expect::Nothing => (plain(&conn)?, Vec::new()),
        Expect::Required => (read_header(&mut conn, Vec::new())?, Vec::new()),
        Expect::Optional => {
            let first = read_upto(&mut conn, ppp::v2::PROTOCOL_PREFIX.len())?;
            if first == ppp::v2::PROTOCOL_PREFIX {
                (read_header(&mut conn, first)?, Vec::new())
            } else {
                (plain(&conn)?, first)
            }
        }
    };
    let mut buf = vec![0u8; 256 * 1024];
    match mode {
        Mode::Echo => {
            conn.write_all(&pending)?;
            loop {
                let n = read_some(&mut conn, &mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                conn.write_all(&buf[..n])?;
            }
        }
        Mode::Report => {
            let (mut bytes, mut hash) = (pending.len() as u64, Sha256::new());
            hash.update(&pending);
            loop {
                let n = read_some(&mut conn, &mut buf)?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
                bytes += n as u64;
            }
            let tlvs: Vec<serde_json::Value> = id
                .tlvs
                .iter()
                .map(|(t, v)| serde_json::json!([t, v]))
                .collect();
            let line = serde_json::json!({
                "src": id.src.to_string(),
                "dst": id.dst.to_string(),
                "marker_id": id.marker_id,
                "tlvs": tlvs,
                "header_len": id.header_len,
                "bytes": bytes,
                "sha256": hex(&hash.finalize()),
            });
            println!("{line}");
            conn.write_all(format!("{line}\n").as_bytes())?;
            Ok(())
        }
        Mode::Sink => {
            while read_some(&mut conn, &mut buf)? > 0 {}
            Ok(())
        }
        Mode::Source => loop {
            match conn.write_all(&buf) {
                Ok(()) => {}
                // The client closed: the stream's natural end.
                Err(e)
                    if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        },
    }
}

/// `read`, retried on EINTR; a reset counts as the end (the benches' clients close with RST).
fn read_some(conn: &mut TcpStream, buf: &mut [u8]) -> Result<usize> {
    loop {
        match conn.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(0),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Up to `n` bytes: fewer only if the stream ends first.
fn read_upto(conn: &mut TcpStream, n: usize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = read_some(conn, &mut out[got..])?;
        if k == 0 {
            break;
        }
        got += k;
    }
    out.truncate(got);
    Ok(out)
}

/// Read exactly one PROXY v2 header (no byte past it; `head` holds its first bytes if some
/// were read already) and check it with `ppp`: command PROXY, TCP over IPv4, every TLV
/// well formed.
///
/// # Errors
/// The stream ended first, or the header is invalid.
fn read_header(conn: &mut TcpStream, mut head: Vec<u8>) -> Result<Identity> {
    let read = head.len();
    head.resize(FIXED_LEN, 0);
    conn.read_exact(&mut head[read..])
        .context("the stream ended before a PROXY v2 header's 16 bytes")?;
    if !head.starts_with(ppp::v2::PROTOCOL_PREFIX) {
        bail!("no PROXY v2 signature; the stream starts {}", hex(&head));
    }
    let rest = usize::from(u16::from_be_bytes([head[14], head[15]]));
    head.resize(FIXED_LEN + rest, 0);
    conn.read_exact(&mut head[FIXED_LEN..])
        .with_context(|| format!("the stream ended inside a {}-byte header", FIXED_LEN + rest))?;
    let h = Header::try_from(head.as_slice()).map_err(|e| anyhow::anyhow!("ppp: {e}"))?;
    if h.command != Command::Proxy || h.protocol != Protocol::Stream {
        bail!(
            "expected command PROXY over STREAM, got {:?} over {:?}",
            h.command,
            h.protocol
        );
    }
    let Addresses::IPv4(a) = h.addresses else {
        bail!("expected IPv4 addresses, got {:?}", h.addresses);
    };
    let mut tlvs = Vec::new();
    let mut marker_id = None;
    for tlv in h.tlvs() {
        let tlv = tlv.map_err(|e| anyhow::anyhow!("ppp TLV: {e}"))?;
        if tlv.kind == PP2_TYPE_MARKER_ID {
            let v: [u8; 8] =
                tlv.value.as_ref().try_into().with_context(|| {
                    format!("marker id TLV of {} bytes, not 8", tlv.value.len())
                })?;
            marker_id = Some(u64::from_be_bytes(v));
        }
        tlvs.push((tlv.kind, hex(&tlv.value)));
    }
    Ok(Identity {
        src: SocketAddr::from((a.source_address, a.source_port)),
        dst: SocketAddr::from((a.destination_address, a.destination_port)),
        marker_id,
        tlvs,
        header_len: head.len(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A v2 header as vpcepd writes it: PROXY, TCP over IPv4, then `tlvs` as given.
    fn header(tlvs: &[u8]) -> Vec<u8> {
        let mut h = ppp::v2::PROTOCOL_PREFIX.to_vec();
        h.extend([0x21, 0x11]);
        h.extend(u16::try_from(12 + tlvs.len()).unwrap().to_be_bytes());
        h.extend([10, 0, 0, 5, 10, 0, 0, 200]);
        h.extend(40000u16.to_be_bytes());
        h.extend(9000u16.to_be_bytes());
        h.extend(tlvs);
        h
    }

    fn marker_tlv(len: u16, value: &[u8]) -> Vec<u8> {
        let mut t = vec![PP2_TYPE_MARKER_ID];
        t.extend(len.to_be_bytes());
        t.extend(value);
        t
    }

    /// Send `bytes` then close; the server side's socket.
    fn stream(bytes: &[u8]) -> TcpStream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        c.write_all(bytes).unwrap();
        drop(c);
        l.accept().unwrap().0
    }

    #[test]
    fn reads_exactly_the_header_with_the_marker_id_and_leaves_the_data() {
        let mut bytes = header(&marker_tlv(8, &0x0102_0304_0506_0708u64.to_be_bytes()));
        assert_eq!(bytes.len(), 39);
        bytes.extend(b"data");
        let mut s = stream(&bytes);
        let id = read_header(&mut s, Vec::new()).unwrap();
        assert_eq!(id.src, "10.0.0.5:40000".parse().unwrap());
        assert_eq!(id.dst, "10.0.0.200:9000".parse().unwrap());
        assert_eq!(id.marker_id, Some(0x0102_0304_0506_0708));
        assert_eq!(id.tlvs, vec![(0xE0, "0102030405060708".to_string())]);
        assert_eq!(id.header_len, 39);
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"data");
    }

    #[test]
    fn refuses_a_stream_without_the_signature_a_short_header_or_a_bad_tlv() {
        let err = |bytes: &[u8]| {
            format!(
                "{:#}",
                read_header(&mut stream(bytes), Vec::new()).unwrap_err()
            )
        };
        assert!(err(b"GET / HTTP/1.1\r\n\r\n").contains("no PROXY v2 signature"));
        let h = header(&[]);
        assert!(err(&h[..20]).contains("ended inside"));
        assert!(err(&header(&marker_tlv(4, &[0; 4]))).contains("not 8"));
        // A TLV longer than what is left of the header.
        assert!(err(&header(&marker_tlv(9, &[0; 8]))).contains("ppp TLV"));
        let mut local = header(&[]);
        local[12] = 0x20;
        assert!(err(&local).contains("expected command PROXY"));
    }

    #[test]
    fn an_optional_header_is_read_when_present_and_the_stream_kept_when_not() {
        let mut s = stream(b"plain bytes");
        assert_eq!(read_upto(&mut s, 12).unwrap(), b"plain bytes".to_vec());
        let bytes = header(&[]);
        let mut s = stream(&bytes);
        let first = read_upto(&mut s, 12).unwrap();
        assert_eq!(first, ppp::v2::PROTOCOL_PREFIX);
        assert_eq!(read_header(&mut s, first).unwrap().header_len, 28);
    }
}
