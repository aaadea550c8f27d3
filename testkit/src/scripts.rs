//! Small programs the tests run inside the namespaces (python3, as on any Debian host).

use std::path::Path;

/// A backend for the stream tests, in the provider namespace. TCP 10.0.0.10:9000: reads to
/// the end, answers `<bytes> <sha256>`. UDP 10.0.0.10:9001: answers each datagram twice,
/// at once (`now:`) and three seconds later (`late:`).
pub const SHA_BACKEND: &str = r#"
import hashlib, socket, threading, time
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.0.0.10", 9000)); s.listen(4)
    while True:
        c, _ = s.accept()
        h, n = hashlib.sha256(), 0
        while True:
            b = c.recv(65536)
            if not b: break
            h.update(b); n += len(b)
        c.sendall(b"%d %s" % (n, h.hexdigest().encode())); c.close()
def later(u, d, a):
    time.sleep(3); u.sendto(b"late:" + d, a)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.0.0.10", 9001))
threading.Thread(target=tcp, daemon=True).start()
print("ready", flush=True)
while True:
    d, a = u.recvfrom(2048)
    u.sendto(b"now:" + d, a)
    threading.Thread(target=later, args=(u, d, a), daemon=True).start()
"#;

/// A paced client for [`SHA_BACKEND`]: `STREAM <address> <chunks>` sends that many chunks of
/// 32 KiB to port 9000, one every 50 ms, then prints the backend's answer and its own byte
/// count and sha256 (four words; see [`stream_result`]).
pub const STREAM: &str = r#"
import hashlib, random, socket, sys, time
c = socket.create_connection((sys.argv[1], 9000), timeout=30)
h, n, r = hashlib.sha256(), 0, random.Random(3)
for i in range(int(sys.argv[2])):
    b = r.randbytes(32768); c.sendall(b); h.update(b); n += len(b)
    time.sleep(0.05)
c.shutdown(socket.SHUT_WR)
answer = b""
while True:
    b = c.recv(4096)
    if not b: break
    answer += b
print(answer.decode(), n, h.hexdigest(), flush=True)
"#;

/// Check a [`STREAM`] client's output in `log`: the backend got exactly `chunks` chunks,
/// with the client's sha256.
///
/// # Panics
/// If it did not (a test assertion).
pub fn stream_result(log: &Path, chunks: usize) {
    let out: Vec<String> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(out.len(), 4, "client: {out:?}");
    assert_eq!(out[0], out[2], "bytes at the backend");
    assert_eq!(out[1], out[3], "sha256 at the backend");
    assert_eq!(out[2], (chunks * 32768).to_string());
}

/// `SEND addr port total`: one connection sending `total` bytes (a random block of 1 MiB + 7
/// bytes, over and over: no shift by a power of two maps the stream onto itself), then
/// half-closing and reading the answer to the end; prints one JSON object
/// `{"local", "bytes", "sha256", "answer"}` (the client's address, what it sent and its
/// sha256, and the backend's answer). Fast enough for streams of several GiB.
pub const SEND: &str = r#"
import hashlib, json, os, socket, sys
addr, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = os.urandom((1 << 20) + 7)
c = socket.create_connection((addr, port), timeout=60)
local = "%s:%d" % c.getsockname()
h, left = hashlib.sha256(), total
while left:
    b = block[:left] if left < len(block) else block
    c.sendall(b); h.update(b); left -= len(b)
c.shutdown(socket.SHUT_WR)
answer = b""
while True:
    b = c.recv(65536)
    if not b: break
    answer += b
print(json.dumps({"local": local, "bytes": total, "sha256": h.hexdigest(), "answer": answer.decode()}), flush=True)
"#;

/// A backend for the failover streams, in the provider namespace: takes one connection on
/// 10.0.0.10:8080, reads it to its end (or to a reset), then prints and answers one JSON
/// line: the bytes, their sha256, and the longest pause between two reads (`gap_ms`).
pub const GAP_BACKEND: &str = r#"
import hashlib, json, socket, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("10.0.0.10", 8080))
l.listen(4)
print("listening", flush=True)
c, _ = l.accept()
h, n, last, gap = hashlib.sha256(), 0, None, 0.0
try:
    while True:
        b = c.recv(65536)
        if not b:
            break
        now = time.monotonic()
        if last is not None:
            gap = max(gap, now - last)
        last = now
        h.update(b)
        n += len(b)
except OSError:
    pass
r = {"bytes": n, "sha256": h.hexdigest(), "gap_ms": round(gap * 1000)}
print(json.dumps(r), flush=True)
try:
    c.sendall(json.dumps(r).encode())
except OSError:
    pass
"#;

/// A paced client for [`GAP_BACKEND`] through the endpoint 10.0.0.200:80: sends `argv[1]`
/// bytes (seeded random) at `argv[2]` bytes a second, closes its side, reads the answer,
/// and prints one JSON line: the bytes, their sha256 and the backend's answer (or the
/// error that ended it).
pub const PACED_CLIENT: &str = r#"
import hashlib, json, random, socket, sys, time
size, rate = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("10.0.0.200", 80), timeout=60)
print("connected", flush=True)
rng, h, sent, start = random.Random(7), hashlib.sha256(), 0, time.monotonic()
answer, error = b"", None
try:
    while sent < size:
        chunk = rng.randbytes(min(65536, size - sent))
        s.sendall(chunk)
        h.update(chunk)
        sent += len(chunk)
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    s.shutdown(socket.SHUT_WR)
    while True:
        b = s.recv(4096)
        if not b:
            break
        answer += b
except OSError as e:
    error = str(e)
print(json.dumps({"bytes": sent, "sha256": h.hexdigest(), "answer": answer.decode(),
                  "error": error, "secs": round(time.monotonic() - start, 2)}), flush=True)
"#;
