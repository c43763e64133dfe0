//! The load driver behind `prefixgate-bench`: bench_serving's workload,
//! timing and metrics, plus the replicas' own metrics.

pub mod client;
pub mod dataset;
pub mod run;
pub mod shapes;
pub mod stats;
pub mod vllm_side;
pub mod workload;
