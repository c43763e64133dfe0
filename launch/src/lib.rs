//! How prefixgate's proxies are launched: the Envoy bootstrap and ECDS
//! resources that carry the routing filter, rendered from one place for
//! `cargo xtask envoy`, the benchmark sweep and the end-to-end tests.

pub mod envoy_config;

pub use prefixgate_filter::{FilterConfig, PolicyKind};
