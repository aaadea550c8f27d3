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
//!
//! TLS is optional ([`tls_acceptor`], rustls with the `ring` provider): the handshake must
//! finish within the header-read timeout, and then the connection is served as above.

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
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not PEM of the expected kind.
    #[error("{path}: {source}")]
    Pem {
        /// The file.
        path: String,
        /// The PEM error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no certificate")]
    NoCertificate(String),
    /// rustls refused the pair (a key that does not match, an unsupported key type).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS acceptor for the certificate chain in `cert` and the private key in `key` (PEM).
///
/// # Errors
/// [`TlsError`].
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, TlsError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    fn pem(p: &std::path::Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
        move |source| TlsError::Pem {
            path: p.display().to_string(),
            source,
        }
    }
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.display().to_string()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(pem(key))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

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
    tls: Option<TlsAcceptor>,
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
        // The peer's address rides in each request (`ConnectInfo`): sign-in limits use it.
        let svc = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        let mut stop = stop.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, peer, svc, limits, &mut stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, svc, limits, &mut stop).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
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

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    svc: TowerToHyperService<Router>,
    limits: HttpLimits,
    stop: &mut watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
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
