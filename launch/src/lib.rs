//! How prefixgate's proxies and replicas are launched: the Envoy bootstrap
//! and ECDS resources that carry the routing filter, the `prefixgate` and
//! `vllm-sim` programs located (or built) and started as child processes,
//! and the one bounded poll that waits for them; shared by `cargo xtask`,
//! the benchmark sweep and the end-to-end tests.

pub mod binary;
pub mod child;
pub mod envoy_config;
pub mod prefixgate;
pub mod sim;
pub mod wait;

pub use binary::{Program, PREFIXGATE, VLLM_SIM};
pub use child::{Signal, StderrTail};
pub use prefixgate::PrefixgateProcess;
pub use prefixgate_filter::{FilterConfig, PolicyKind};
pub use sim::SimProcess;
pub use wait::{poll_until, TimedOut};

use std::path::PathBuf;
use std::process::ExitStatus;

/// Why a program could not be found, started or awaited.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A file or process operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The program or file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A program is missing and could not be built.
    #[error("{0}")]
    Missing(String),
    /// The program exited before it said it was listening.
    #[error("{program} exited during startup ({}); its stderr:\n{stderr}", status.map(|s| s.to_string()).unwrap_or_else(|| "status unknown".to_owned()))]
    Exited {
        /// The program.
        program: String,
        /// How it exited, when known.
        status: Option<ExitStatus>,
        /// The last lines of its stderr.
        stderr: String,
    },
    /// The program did not behave as its protocol says.
    #[error("{0}")]
    Protocol(String),
    /// A wait ran out of time.
    #[error(transparent)]
    TimedOut(#[from] TimedOut),
}
