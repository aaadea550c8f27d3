//! The HTTP server under the API and admin routers, with its limits.
//!
//! `axum::serve` sets no timer, so a client that sends half a header holds its connection
//! (and its task) forever, and it accepts without bound. Here each connection is served by
//! hyper's HTTP/1 connection with a [`TokioTimer`], so the header-read timeout applies (to
//! the first request and to every later one on a kept-alive connection), and a semaphore
//! caps the connections: past the cap, new ones wait in the kernel's backlog, unaccepted.
//! The body deadline is applied where the body is read (the authentication middleware), and
//! the per-tenant request rate after authentication ([`RateLimit`]), since only then is the
//! tenant known. An unauthenticated request costs one HMAC and is bounded by the connection
//! cap and the header timeout.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// Serve `router` on `listener` within `limits` until `stop` turns true; then stop
/// accepting, let each connection finish its request in flight, and return.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // closed: never, the semaphore lives here
            },
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        metrics::gauge!("vpcep_api_connections").increment(1.0);
        let svc = TowerToHyperService::new(router.clone());
        let mut stop = stop.clone();
        conns.spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, svc, limits, &mut stop).await;
            metrics::gauge!("vpcep_api_connections").decrement(1.0);
        });
        // Reap finished connections so the set does not grow with the history.
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
}

/// Until `stop` turns true (the guard `wait_for` returns is dropped here: it is not `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    svc: TowerToHyperService<Router>,
    limits: HttpLimits,
    stop: &mut watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The per-tenant request rate: a GCRA bucket per project (`governor`), `per_second`
/// sustained with bursts of `burst`. Keys are authenticated projects only, so the map is
/// bounded by the credentials file.
#[derive(Debug)]
pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl RateLimit {
    /// `per_second` requests a second per project, bursts of `burst`.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ),
        }
    }

    /// True if `project` may make one more request now (and counts it).
    pub fn admit(&self, project: &str) -> bool {
        self.limiter.check_key(&project.to_string()).is_ok()
    }
}
