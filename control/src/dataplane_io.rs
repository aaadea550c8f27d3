//! Bringing the dataplane up on the daemon's attachments: one packet backend and worker
//! set per interface, sharing one conntrack and one neighbour table.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use dataplane::TablePublisher;

use crate::config::DaemonConfig;
use crate::daemon::{DaemonError, Dataplane};

/// Start workers on every attachment of `cfg`.
///
/// # Errors
/// [`DaemonError::Attachment`]: real packet I/O lands with the AF_PACKET backend; until
/// then a config with attachments is refused rather than silently serving the API alone.
pub fn start_workers(
    cfg: &DaemonConfig,
    _publisher: &TablePublisher,
    _stop: Arc<AtomicBool>,
) -> Result<Dataplane, DaemonError> {
    let first = cfg
        .attachments
        .first()
        .map(|a| a.interface.clone())
        .unwrap_or_default();
    Err(DaemonError::Attachment {
        interface: first,
        reason: "this build has no packet I/O backend yet".into(),
    })
}
