//! Why a report could not be written.

use std::path::PathBuf;

/// A report that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The results directory has no client-side CSV.
    #[error("{} not found: run `prefixgate-bench sweep` (or `lab --output-dir`) with this output directory first", path.display())]
    NoResults {
        /// The CSV looked for.
        path: PathBuf,
    },
    /// The client-side CSV has a header and no row.
    #[error("{} has no rows", path.display())]
    Empty {
        /// The CSV.
        path: PathBuf,
    },
    /// A results CSV could not be parsed.
    #[error("reading {}", path.display())]
    Csv {
        /// The CSV.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: csv::Error,
    },
    /// A file could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A line of per-request detail is not a request record.
    #[error("{}: line {line}", path.display())]
    Detail {
        /// The detail file.
        path: PathBuf,
        /// Its line, from 1.
        line: usize,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// `--baseline` names no strategy of the results.
    #[error("--baseline {name}: no such strategy (the results have {})", known.join(", "))]
    UnknownBaseline {
        /// The name given.
        name: String,
        /// The strategies there are.
        known: Vec<String>,
    },
}
