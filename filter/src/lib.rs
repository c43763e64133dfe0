//! Prefix-aware routing for vLLM fleets, as a proxy-wasm HTTP filter.
//!
//! The routing logic is plain Rust with no I/O and no clock: time comes from
//! the host, state lives in a [`store::SharedStore`] (proxy-wasm shared data in
//! the module, memory in native tests). Only the `glue` module, compiled for
//! `wasm32`, touches the proxy-wasm SDK.

pub mod config;
pub mod fleet;
pub mod in_flight;
pub mod metrics;
pub mod outlier;
pub mod policy;
pub mod prefill_queue;
pub mod prefix_index;
pub mod prompt;
mod record_table;
pub mod router;
pub mod store;
pub mod vllm_metrics;
mod wire;

#[cfg(target_arch = "wasm32")]
mod glue;

pub use config::{ConfigError, FilterConfig, MissPolicy};
pub use policy::{PolicyKind, Reason};
pub use router::{Decision, RouteError, Router};
