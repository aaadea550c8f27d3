//! The worker loop, the only place where I/O, time, tables and the pipeline meet:
//! receive a batch, read the clock once, load the tables once, process every frame, send,
//! do bounded expiry, publish counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::announce::{self, Announcer};
use crate::flow::Attachment;
use crate::io::{Backend, BackendError, Batch, Slot, VlanTag};
use crate::pipeline::{PREFETCH_MAX, Pipeline};
use crate::stats::WorkerCounters;
use crate::tables::{AnnouncementClaims, TableReader};
use crate::verdict::{DropReason, Verdict};

/// Most batches a stopping worker still takes from its sockets.
const DRAIN_BATCHES: usize = 256;

/// One worker: a backend, a table reader, a pipeline, a batch and its counters.
#[allow(missing_debug_implementations)] // TableReader is not Debug
pub struct Worker<B: Backend> {
    backend: B,
    tables: TableReader,
    pipeline: Pipeline,
    batch: Batch,
    counters: Arc<WorkerCounters>,
    /// When backends were last solicited, and the table generation then.
    solicited: Option<(Instant, u64)>,
    /// Where the workers claim the tables' announcements.
    claims: AnnouncementClaims,
    /// The gratuitous ARP this worker is sending (it claimed the tables' announcement).
    announcer: Option<Announcer>,
}

impl<B: Backend> Worker<B> {
    /// A worker publishing into `counters`.
    pub fn new(
        backend: B,
        tables: TableReader,
        pipeline: Pipeline,
        counters: Arc<WorkerCounters>,
    ) -> Self {
        let config = pipeline.config();
        let batch = Batch::new(config.batch_size.get(), config.max_frame_bytes);
        let claims = tables.claims();
        Self {
            backend,
            tables,
            pipeline,
            batch,
            counters,
            solicited: None,
            claims,
            announcer: None,
        }
    }

    /// One turn of the loop; returns the number of frames received.
    ///
    /// # Errors
    /// The backend's error; the worker should stop.
    pub fn step(&mut self) -> Result<usize, BackendError> {
        let idle_poll = self.pipeline.config().idle_poll;
        self.step_waiting(idle_poll)
    }

    /// [`Worker::step`], waiting at most `wait` for frames.
    fn step_waiting(&mut self, wait: std::time::Duration) -> Result<usize, BackendError> {
        let budget = self.pipeline.config().expire_budget;
        let n = self.backend.recv(&mut self.batch, wait)?;
        let now = Instant::now(); // one clock read per batch
        let tables = self.tables.load(); // one generation per batch
        // Warm the conntrack lines of a chunk of frames, then process them: the chunk's
        // cache misses overlap (see `Pipeline::prefetch`).
        for chunk in self.batch.filled_mut().chunks_mut(PREFETCH_MAX) {
            self.pipeline.prefetch(
                chunk
                    .iter()
                    .filter(|s| !s.truncated && s.vlan == VlanTag::None)
                    .map(|s| (s.ingress, s.bytes())),
            );
            for slot in chunk {
                slot.verdict = if slot.truncated {
                    self.pipeline.record_drop(DropReason::Oversize)
                } else if slot.vlan != VlanTag::None {
                    // No attachment names a VLAN: a tagged frame belongs to no VPC here
                    // (never to the attachment's untagged one). Unknown metadata is not
                    // trusted either.
                    let reason = if slot.vlan == VlanTag::Unknown {
                        DropReason::Malformed
                    } else {
                        DropReason::VlanTagged
                    };
                    self.pipeline.record_drop(reason)
                } else {
                    // The whole slot: client identity may grow the frame.
                    let (ingress, mut vnet, len) = (slot.ingress, slot.vnet, slot.bytes().len());
                    let (verdict, len) = self.pipeline.process_in(
                        now,
                        tables,
                        ingress,
                        slot.buffer_mut(),
                        len,
                        &mut vnet,
                    );
                    slot.set_len(len);
                    slot.vnet = vnet;
                    verdict
                };
            }
        }
        if n > 0 {
            let failed = self.backend.send(&self.batch)?;
            self.pipeline.record_tx_errors(failed);
        }
        // Frames a receive ring lent are done with: what the worker sends next (requests,
        // announcements) goes in the batch's own buffers.
        self.batch.reclaim();
        self.pipeline.expire(now, budget);
        // Resolve backends ahead of traffic: on every new generation, and once a second.
        let generation = tables.generation();
        let due = self
            .solicited
            .is_none_or(|(at, g)| g != generation || now.duration_since(at).as_secs() >= 1);
        if due {
            self.solicited = Some((now, generation));
            let io = self.backend.take_stats();
            self.pipeline.record_io(io);
            let slots = self.batch.slots_mut();
            let mut filled = 0;
            let budget = slots.len();
            self.pipeline.solicit(now, tables, budget, |vpc, frame| {
                stage(slots, &mut filled, vpc, frame);
            });
            if filled > 0 {
                self.batch.set_filled(filled);
                let failed = self.backend.send(&self.batch)?;
                self.pipeline.record_tx_errors(failed);
            }
        }
        self.announce(now)?;
        self.counters.publish(self.pipeline.stats(), generation);
        Ok(n)
    }

    /// Take the tables' announcement if no worker has, and send its next frames (see
    /// [`crate::announce`]).
    fn announce(&mut self, now: Instant) -> Result<(), BackendError> {
        let tables = self.tables.load();
        if self.announcer.is_none()
            && let Some(a) = tables.announcement()
            && self.claims.claim(a)
        {
            // The SNAT addresses of the flows this node carries (a standby's replicated
            // ones) go first; read only if a range will be announced.
            let ranged = a
                .vpcs()
                .iter()
                .any(|v| tables.is_snat_vpc(*v) && tables.snat_next_hop(*v).is_none());
            let in_use = if ranged {
                self.pipeline.shared().conntrack.snat_addresses()
            } else {
                Vec::new()
            };
            let an = Announcer::new(a.vpcs(), tables, &in_use);
            tracing::info!(
                attachments = ?a.vpcs(),
                addresses = an.len(),
                "now the owner: announcing the addresses with gratuitous ARP"
            );
            self.announcer = Some(an);
        }
        let Some(an) = &mut self.announcer else {
            return Ok(());
        };
        let macs = &self.pipeline.config().attachments;
        let mut left = announce::PER_STEP;
        let mut failed = 0;
        let mut announced = 0;
        while left > 0 {
            let slots = self.batch.slots_mut();
            let budget = slots.len().min(left);
            let mut filled = 0;
            an.step(now, budget, macs, |vpc, frame| {
                stage(slots, &mut filled, vpc, frame);
            });
            if filled == 0 {
                break;
            }
            left -= filled;
            announced += filled;
            self.batch.set_filled(filled);
            failed += self.backend.send(&self.batch)?;
        }
        self.pipeline.record_tx_errors(failed);
        self.pipeline.record_announced(announced);
        if an.done() {
            tracing::info!(frames = an.sent(), "gratuitous ARP sent");
            self.announcer = None;
        }
        Ok(())
    }

    /// Run until `stop` is set or the backend fails.
    ///
    /// # Errors
    /// The backend's error.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), BackendError> {
        while !stop.load(Ordering::Relaxed) {
            self.step()?;
        }
        // Forward what the sockets already hold before going (bounded): in a reload, the
        // new workers' sockets share the fanout groups and take everything after this.
        for _ in 0..DRAIN_BATCHES {
            if self.step_waiting(std::time::Duration::ZERO)? == 0 {
                break;
            }
        }
        // What the backend counted since its last report.
        let io = self.backend.take_stats();
        self.pipeline.record_io(io);
        self.counters
            .publish(self.pipeline.stats(), self.tables.load().generation());
        Ok(())
    }

    /// The pipeline (for tests).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
}

/// Put `frame` in `slots[*filled]`, to be sent on `vpc`, and count it (frames the worker
/// makes itself: ARP requests, announcements).
fn stage(slots: &mut [Slot], filled: &mut usize, vpc: Attachment, frame: &[u8]) {
    let slot = &mut slots[*filled];
    slot.buffer_mut()[..frame.len()].copy_from_slice(frame);
    slot.set_len(frame.len());
    slot.verdict = Verdict::Emit {
        vpc,
        len: frame.len(),
    };
    *filled += 1;
}

/// Spawn `worker` on an OS thread named `name`, running until `stop` is set.
///
/// # Errors
/// The OS refused to create the thread.
pub fn spawn<B: Backend + 'static>(
    name: String,
    mut worker: Worker<B>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<Result<(), BackendError>>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || worker.run(&stop))
}
