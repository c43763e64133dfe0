//! How prefixgate's proxies and replicas are launched: the Envoy bootstrap
//! and ECDS resources that carry the routing filter, the filter module and
//! the `prefixgate`, `vllm-sim` and `envoy` programs located (or built),
//! each started as a child process and awaited until it serves, and the one
//! bounded poll and the one HTTP GET those waits use; shared by
//! `cargo xtask`, the benchmark sweep, the end-to-end tests and the proxy
//! benchmark.

pub mod binary;
pub mod child;
pub mod envoy;
pub mod envoy_config;
mod error;
pub mod http;
pub mod module;
pub mod prefixgate;
pub mod sim;
pub mod wait;

pub use binary::{find_executable, Program, PREFIXGATE, VLLM_SIM};
pub use child::{Output, Signal, StderrTail};
pub use envoy::{EnvoyOptions, EnvoyProcess};
pub use error::LaunchError;
pub use module::{Locate, Module, FILTER_MODULE};
pub use prefixgate::{check_filter, PrefixgateProcess};
pub use prefixgate_filter::{FilterConfig, PolicyKind};
pub use sim::SimProcess;
pub use wait::{poll_until, TimedOut};
