//! vpcep's control plane. The resource model, store, API and compiler land here (issue 3);
//! for now it re-exports the dataplane types the control plane is allowed to touch.

pub use dataplane::{Config, TablePublisher, Tables, WorkerCounters};
