//! Shared pieces of the benchmarks: a counting allocator, frame builders, and the JSON
//! line format.

pub mod daemon;
pub mod failover;
pub mod identity;
pub mod node;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// A global allocator that counts allocations and live bytes, for "allocations per packet"
/// and "bytes per flow". Install it in a binary with `#[global_allocator]`.
#[derive(Debug)]
pub struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are side effects only.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(layout.size(), Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(new_size, Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Build the programs the namespace benches run, from this same release tree: vpcepd,
/// vpcepctl, netprobe and pp2_backend (a bench binary finds them beside itself).
///
/// # Errors
/// cargo could not run, or the build failed.
pub fn build_tools() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "control",
            "--bins",
            "-p",
            "bench",
            "--bin",
            "netprobe",
            "--bin",
            "nullfwd",
            "-p",
            "vpcep-tests",
            "--bin",
            "pp2_backend",
        ])
        .status()?;
    anyhow::ensure!(
        status.success(),
        "building vpcepd, vpcepctl, netprobe, nullfwd and pp2_backend failed"
    );
    Ok(())
}

/// Allocations so far (only meaningful with [`CountingAlloc`] installed).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Relaxed)
}

/// Live heap bytes (only meaningful with [`CountingAlloc`] installed).
pub fn live_bytes() -> usize {
    LIVE_BYTES.load(Relaxed)
}

/// CPU time the calling thread has run (`CLOCK_THREAD_CPUTIME_ID`): unlike the wall clock,
/// it does not count the time the thread waited for a core, so on a shared machine it
/// measures the work, not the neighbours' load (their cache pollution still counts).
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(
        rc, 0,
        "CLOCK_THREAD_CPUTIME_ID is always available on Linux"
    );
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    std::time::Duration::new(secs, nanos)
}

/// The `p` quantile (0 to 1) of a non-empty sample, by nearest rank: the smallest value
/// with at least `p` of the sample at or below it.
pub fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let want = p * xs.len() as f64;
    let rank = (1..=xs.len())
        .find(|k| *k as f64 >= want)
        .unwrap_or(xs.len());
    xs[rank.saturating_sub(1)]
}

/// Run `f(thread, call)` on `threads` threads for `dur`; returns completed calls per
/// second.
pub fn rate(threads: usize, dur: std::time::Duration, f: impl Fn(usize, u64) + Sync) -> f64 {
    let done = AtomicU64::new(0);
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (f, done) = (&f, &done);
            s.spawn(move || {
                let mut i = 0;
                while start.elapsed() < dur {
                    f(t, i);
                    i += 1;
                    done.fetch_add(1, Relaxed);
                }
            });
        }
    });
    done.load(Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Median of a non-empty sample.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// One JSON object on one line, from `(key, value)` pairs whose values are already JSON.
pub fn json_line(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

/// A JSON string literal (the scenario names need no escaping beyond quotes).
pub fn js(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_json() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(
            json_line(&[("a", js("x")), ("b", "1".into())]),
            r#"{"a":"x","b":1}"#
        );
    }
}
