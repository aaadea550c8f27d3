//! Meter slots: the small numbers the dataplane meters endpoints under
//! ([`dataplane::meter`]), handed out by the pusher as endpoints enter the tables.
//!
//! A slot stays with its endpoint while the endpoint exists (whatever its status), and
//! goes back when the endpoint is deleted. A slot given back is held for [`SlotPool::hold`]
//! before it is handed out again: by then every flow that could still name it has either
//! been re-checked against newer tables (which removed its endpoint, so the flow was
//! revoked) or has expired, so no packet of the old endpoint is credited to the new one.
//! Every hand-out has a serial number of its own, so a reader tells a new owner of a slot
//! from the old one even when the slot comes back to the same endpoint id.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::{Endpoint, EndpointId, Model};

/// Whom a slot meters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The hand-out's serial number (unique for the life of the pool).
    pub serial: u64,
    /// The endpoint.
    pub endpoint_id: String,
    /// The endpoint's project (the user's).
    pub project_id: String,
    /// The service it connects to.
    pub service_id: String,
    /// The service's project (the provider's); empty for a gateway service.
    pub service_project_id: String,
}

/// The slots in use: slot to owner, published whole for the reader at every change of
/// the tables. A persistent map: a publication shares the pool's map instead of copying
/// it (a node may meter a hundred thousand endpoints, and the pusher publishes at every
/// write).
pub type SlotMap = imbl::HashMap<u32, Arc<Owner>>;

/// The pool.
#[derive(Debug)]
pub struct SlotPool {
    by_endpoint: HashMap<EndpointId, u32>,
    owners: SlotMap,
    free: Vec<u32>,
    held: VecDeque<(u32, Instant)>,
    next: u32,
    serial: u64,
    hold: Duration,
    /// Set when `owners` changed since the last [`SlotPool::published`].
    dirty: bool,
    published: Arc<SlotMap>,
}

impl SlotPool {
    /// A pool whose returned slots wait `hold` before reuse: the longest a flow of a
    /// deleted endpoint can stay in conntrack unseen (its longest idle timeout) and a
    /// margin for the sweep.
    pub fn new(hold: Duration) -> Self {
        Self {
            by_endpoint: HashMap::new(),
            owners: SlotMap::new(),
            free: Vec::new(),
            held: VecDeque::new(),
            next: 1,
            serial: 0,
            hold,
            dirty: false,
            published: Arc::new(SlotMap::new()),
        }
    }

    /// How long a returned slot waits.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// Make returned slots wait `hold` from now on (a reload changed the timeouts).
    pub fn set_hold(&mut self, hold: Duration) {
        self.hold = hold;
    }

    /// The slot of `ep`, handing one out if it has none (0 if every slot is taken).
    pub fn slot(&mut self, m: &Model, ep: &Endpoint, now: Instant) -> u32 {
        if let Some(&s) = self.by_endpoint.get(&ep.id) {
            return s;
        }
        while let Some(&(s, since)) = self.held.front() {
            if now.duration_since(since) < self.hold {
                break;
            }
            self.held.pop_front();
            self.free.push(s);
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None if (self.next as usize) < dataplane::meter::MAX_SLOTS => {
                self.next += 1;
                self.next - 1
            }
            None => return 0,
        };
        self.serial += 1;
        let service_project_id = m
            .services
            .get(&ep.service_id)
            .map(|s| s.project_id.to_string())
            .unwrap_or_default();
        self.owners.insert(
            slot,
            Arc::new(Owner {
                serial: self.serial,
                endpoint_id: ep.id.to_string(),
                project_id: ep.project_id.to_string(),
                service_id: ep.service_id.to_string(),
                service_project_id,
            }),
        );
        self.by_endpoint.insert(ep.id.clone(), slot);
        self.dirty = true;
        slot
    }

    /// The slot of `id`, if it has one.
    pub fn get(&self, id: &EndpointId) -> u32 {
        self.by_endpoint.get(id).copied().unwrap_or(0)
    }

    /// `id` is gone: its slot waits [`SlotPool::hold`], then may be handed out again.
    pub fn release(&mut self, id: &EndpointId, now: Instant) {
        if let Some(s) = self.by_endpoint.remove(id) {
            self.owners.remove(&s);
            self.held.push_back((s, now));
            self.dirty = true;
        }
    }

    /// Release every endpoint `m` no longer has (after a full recompile).
    pub fn retain(&mut self, m: &Model, now: Instant) {
        let gone: Vec<EndpointId> = self
            .by_endpoint
            .keys()
            .filter(|id| !m.endpoints.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.release(&id, now);
        }
    }

    /// The slots in use, as a shared map (the same one until they change).
    pub fn published(&mut self) -> Arc<SlotMap> {
        if self.dirty {
            self.published = Arc::new(self.owners.clone());
            self.dirty = false;
        }
        Arc::clone(&self.published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{endpoint, endpoint_body, network, registry, service, tenant};

    #[test]
    fn a_returned_slot_waits_its_hold_and_comes_back_with_a_new_serial() {
        let r = registry();
        let (p, u) = (tenant("p"), tenant("u"));
        let svc = service(&r, &p, false, &[&u]);
        let (vpc, sub) = network(&r, &u, "10.1.0.0/16");
        let ea = endpoint(&r, &u, endpoint_body(&svc.id, &vpc, &sub)).unwrap();
        let eb = endpoint(&r, &u, endpoint_body(&svc.id, &vpc, &sub)).unwrap();
        let m = r.read();
        let mut pool = SlotPool::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let sa = pool.slot(&m, &ea, t0);
        assert_eq!(pool.slot(&m, &ea, t0), sa, "stable");
        let sb = pool.slot(&m, &eb, t0);
        assert_ne!(sa, sb);
        let owner = pool.published()[&sa].clone();
        assert_eq!(
            (owner.endpoint_id.as_str(), owner.service_id.as_str()),
            (ea.id.as_str(), svc.id.as_str())
        );
        assert_eq!(owner.service_project_id, svc.project_id.to_string());
        pool.release(&ea.id, t0);
        assert!(!pool.published().contains_key(&sa));
        // Within the hold, a new hand-out gets a fresh slot; after it, the returned one.
        let fresh = pool.slot(&m, &ea, t0 + Duration::from_secs(59));
        assert!(fresh != sa && fresh != sb);
        pool.release(&ea.id, t0 + Duration::from_secs(59));
        let reused = pool.slot(&m, &ea, t0 + Duration::from_secs(61));
        assert_eq!(
            reused, sa,
            "the oldest returned slot, once its hold is over"
        );
        assert!(pool.published()[&sa].serial > owner.serial, "a new serial");
        pool.retain(&m, t0);
        assert_eq!(pool.get(&ea.id), sa, "still in the model: kept");
    }
}
