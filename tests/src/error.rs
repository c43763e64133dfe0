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
    /// A required program or module is missing.
    #[error("{0}")]
    Missing(String),
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
    /// A program could not be found, started or awaited.
    #[error(transparent)]
    Launch(#[from] prefixgate_launch::LaunchError),
    /// A reply could not be understood.
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

impl HarnessError {
    /// An [`HarnessError::Io`] about `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { what, path: path.into(), source }
    }
}
