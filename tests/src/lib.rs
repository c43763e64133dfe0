//! End-to-end harness: a simulated vLLM fleet on loopback, a proxy in front of
//! it (Envoy with the prefixgate filter, or the standalone `prefixgate`, both
//! child processes; see [`hosts`]) and an HTTP client that reads the routing
//! headers. The fleet runs in-process ([`vllm_sim::Fleet`]) where a scenario
//! reads the replicas' engines, and as `vllm-sim` processes
//! ([`fleet::ProcessFleet`]) where it kills and restarts them.
//!
//! Every wait is a bounded poll; every port is picked by the system (port 0)
//! and read back, never guessed.

pub use prefixgate_launch::envoy_config;

pub mod client;
pub mod envoy;
pub mod error;
pub mod exposition;
pub mod failing_replica;
pub mod fleet;
pub mod hosts;
pub mod module_variant;
pub mod prefixgate;
pub mod scenarios;

pub use client::{Client, Reply};
pub use envoy::{Envoy, EnvoyMode};
pub use error::HarnessError;
pub use hosts::{Host, ProxyOptions, RunningProxy};
pub use prefixgate::{Prefixgate, PrefixgateOptions, PrefixgateProcess};

/// A running proxy the scenarios can send requests through.
pub trait Proxy {
    /// Base URL of the proxy's listener, `http://ip:port`.
    fn base_url(&self) -> &str;
}

impl Proxy for Envoy {
    fn base_url(&self) -> &str {
        Envoy::base_url(self)
    }
}

impl Proxy for PrefixgateProcess {
    fn base_url(&self) -> &str {
        PrefixgateProcess::base_url(self)
    }
}
