//! Why a program could not be found, started or awaited.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

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
    /// An environment variable names a file that is not there.
    #[error("{var}={} is not a file", path.display())]
    NotAFile {
        /// The variable.
        var: &'static str,
        /// What it names.
        path: PathBuf,
    },
    /// A path given for a file names none.
    #[error("{} is not a file", path.display())]
    MissingFile {
        /// The path.
        path: PathBuf,
    },
    /// No filter module was named.
    #[error("no filter module: pass its path or set {var} (`cargo xtask build-filter` builds it and prints its path)")]
    NoModule {
        /// The variable that would name it.
        var: &'static str,
    },
    /// A program is neither named by its variable nor found anywhere looked.
    #[error("cannot find `{name}` ({hint}, or set {var}); looked in {}", looked_in(looked))]
    NotFound {
        /// The executable's name.
        name: &'static str,
        /// The variable that would name it.
        var: &'static str,
        /// How to get it.
        hint: &'static str,
        /// The directories searched.
        looked: Vec<PathBuf>,
    },
    /// The running program is not inside a cargo target directory, so there
    /// is nowhere to build into.
    #[error("{} is not in a cargo target directory", exe.display())]
    NotInTargetDir {
        /// The running program.
        exe: PathBuf,
    },
    /// The filter module could not be built.
    #[error("building the filter module")]
    ModuleBuild(#[source] prefixgate_filter_module::BuildError),
    /// `cargo build` of a program failed.
    #[error("building `{what}` failed ({status})")]
    BuildFailed {
        /// The program.
        what: &'static str,
        /// How cargo exited.
        status: ExitStatus,
    },
    /// `cargo build` succeeded but the program is not where it should be.
    #[error("the build of `{what}` finished but {} is missing", path.display())]
    BuiltButMissing {
        /// The program.
        what: &'static str,
        /// Where it was expected.
        path: PathBuf,
    },
    /// The program exited before it was ready.
    #[error("{program} exited during startup ({}); {log}", status.map(|s| s.to_string()).unwrap_or_else(|| "status unknown".to_owned()))]
    Exited {
        /// The program.
        program: String,
        /// How it exited, when known.
        status: Option<ExitStatus>,
        /// The last lines of its stderr or log.
        log: String,
    },
    /// The program did not say it was ready in time.
    #[error("{program} was not ready within {limit:?}: {waiting_for}; {log}")]
    NotReady {
        /// The program.
        program: String,
        /// How long it was given.
        limit: Duration,
        /// What it did not do.
        waiting_for: &'static str,
        /// The last lines of its stderr or log.
        log: String,
    },
    /// The line the program printed to say it listens has no address in it.
    #[error("{program} printed {line:?}, which names no address")]
    BadAnnouncement {
        /// The program.
        program: String,
        /// The line.
        line: String,
    },
    /// A signal was asked for after the process was reaped.
    #[error("{program} is gone: no process to signal")]
    Gone {
        /// The program.
        program: String,
    },
    /// kill(1) failed.
    #[error("kill -{signal} {pid} failed ({status})")]
    KillFailed {
        /// The signal's name.
        signal: &'static str,
        /// The process.
        pid: u32,
        /// How kill exited.
        status: ExitStatus,
    },
    /// The process did not exit in time.
    #[error("{program} still running after {limit:?}")]
    StillRunning {
        /// The program.
        program: String,
        /// How long it was given.
        limit: Duration,
    },
    /// A wait ran out of time.
    #[error(transparent)]
    TimedOut(#[from] crate::wait::TimedOut),
    /// `prefixgate check` refused a filter module and plugin configuration:
    /// a hot swap would refuse them too, so they must not be rolled out.
    #[error("the filter {} is refused ({status}): {stderr}", module.display())]
    FilterRefused {
        /// The module checked.
        module: PathBuf,
        /// How `prefixgate check` exited.
        status: ExitStatus,
        /// Its error lines.
        stderr: String,
    },
}

fn looked_in(dirs: &[PathBuf]) -> String {
    let shown: Vec<String> = dirs.iter().take(8).map(|d| d.display().to_string()).collect();
    let more = dirs.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

impl LaunchError {
    /// An [`LaunchError::Io`] about `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { what, path: path.into(), source }
    }
}
