//! prefixgate-bench: the simulated vLLM replica (`vllm-sim`) and the load driver
//! (`prefixgate-bench`, in [`load`]).
//!
//! The simulator lives in [`sim`] as a library so that the benchmark, the end-to-end tests
//! and other crates can start a fleet of replicas in-process with [`sim::Fleet::start`].

pub mod load;
pub mod report;
pub mod sim;
pub mod sweep;
