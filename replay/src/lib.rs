//! The replay the prefix index is benchmarked on, natively and in the module:
//! a generated multi-turn chat trace ([`Trace`]), an exact reference of what
//! each backend received ([`ExactIndex`]) and the figures a run reports
//! ([`Timings`], [`Accuracy`]), and the benchmarks' command line
//! ([`BenchArgs`]).
//!
//! The trace is generated from a seed, so every run of every benchmark sees
//! the same requests; nothing in it is tuned to the index (prompts grow by
//! whole exchanges, tails are novel text, the clock advances between
//! requests).

mod cli;
mod exact;
mod report;
mod trace;

pub use cli::BenchArgs;
pub use exact::ExactIndex;
pub use report::{Accuracy, Timings};
pub use trace::{Bucket, Trace, TraceShape, Turn};
