//! vpcep's control plane: the VPCEP API v1 (wire-compatible with Huawei Cloud's, so the
//! official SDK works unchanged), AK/SK authentication, tenancy, the resource model and its
//! rules, a durable embedded store, and the compiler and pusher that turn accepted
//! connections into the dataplane's tables.
//!
//! Flow of a write: request -> [`auth`] -> wire body ([`requests`]) -> validated command
//! ([`command`], `TryFrom`) -> [`registry`] rules over the [`model`] -> [`store`] commit
//! (durable) -> model updated -> change note -> [`push`] compiles ([`compile`]) and
//! publishes a new table generation. The domain (`model`, `command`, `registry`, `store`)
//! rejects with [`error::Rejection`] and never imports [`api`], which maps each
//! [`error::ErrorCode`] to an HTTP status.

pub mod api;
pub mod audit;
pub mod auth;
pub mod client;
pub mod command;
pub mod compile;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod error;
pub mod flowlog;
pub mod logfile;
pub mod meters;
pub mod model;
pub mod push;
pub mod registry;
pub mod replica;
pub mod requests;
pub mod store;
