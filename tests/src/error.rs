//! The harness's error type.

use std::path::PathBuf;

/// Why a piece of the test setup could not be started or queried.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or process operation failed.
    #[error("{what} ({path}): {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or program involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Envoy did not come up, or exited.
    #[error("envoy: {message}\n--- envoy log (tail) ---\n{log}")]
    Envoy {
        /// What went wrong.
        message: String,
        /// The end of Envoy's log.
        log: String,
    },
    /// The simulated fleet failed.
    #[error("vllm-sim: {0}")]
    Sim(#[from] vllm_sim::SimError),
    /// An HTTP exchange failed.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// A plugin configuration the filter would refuse.
    #[error(transparent)]
    Config(#[from] prefixgate_filter::ConfigError),
    /// Route timeouts Envoy could not honour.
    #[error(transparent)]
    Timeouts(#[from] prefixgate_launch::envoy_config::TimeoutsError),
    /// A program could not be found, started or awaited.
    #[error(transparent)]
    Launch(#[from] prefixgate_launch::LaunchError),
    /// An admin interface answered a GET with an error status.
    #[error("admin {path}: HTTP {status}")]
    AdminStatus {
        /// The admin path.
        path: String,
        /// The status it answered.
        status: u16,
    },
    /// prefixgate refused a configuration swap.
    #[error("config swap refused: HTTP {status} {answer}")]
    SwapRefused {
        /// The status it answered.
        status: u16,
        /// Its answer.
        answer: String,
    },
    /// A Prometheus exposition did not parse.
    #[error("exposition does not parse: {0}")]
    Exposition(openmetrics_parser::ParseError),
    /// A scenario asked for a replica the fleet does not have.
    #[error("no replica {index} in a fleet of {len}")]
    NoReplica {
        /// The index asked for.
        index: usize,
        /// The fleet's size.
        len: usize,
    },
    /// A scenario's task panicked or was cancelled.
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl HarnessError {
    /// An [`HarnessError::Io`] about `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { what, path: path.into(), source }
    }
}
