//! What a report is made of: the sweep's CSV rows, grouped per strategy into
//! its repeated runs, each joined with the per-request detail it points to.

use super::error::ReportError;
use super::spread::Spread;
use crate::load::stats::RequestOutcome;
use crate::sweep::results_csv::{SERVE_CSV, VLLM_CSV};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One CSV row as column → value.
pub type Fields = HashMap<String, String>;

/// One run of one strategy: its CSV rows and its requests.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Which repetition, from 1 (1 when the CSV has no `repeat` column).
    pub repeat: usize,
    /// Its row of the client-side CSV.
    pub serve: Fields,
    /// Its row of the replica-side CSV, if there is one.
    pub vllm: Option<Fields>,
    /// Per-request detail (empty when the file is missing).
    pub outcomes: Vec<RequestOutcome>,
}

impl Run {
    /// A numeric client-side column (NaN when absent or empty).
    pub fn serve_f64(&self, column: &str) -> f64 {
        number(self.serve.get(column).map(String::as_str))
    }

    /// A numeric replica-side column.
    pub fn vllm_f64(&self, column: &str) -> f64 {
        number(self.vllm.as_ref().and_then(|v| v.get(column)).map(String::as_str))
    }

    /// A `;`-separated per-replica column of the replica-side row, as text.
    pub fn per_replica_text(&self, column: &str) -> Vec<String> {
        self.vllm
            .as_ref()
            .and_then(|v| v.get(column))
            .filter(|s| !s.is_empty())
            .map(|s| s.split(';').map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// A `;`-separated per-replica column as numbers.
    pub fn per_replica(&self, column: &str) -> Vec<f64> {
        self.per_replica_text(column).iter().map(|x| number(Some(x))).collect()
    }

    /// A client-side column as text, when present and not empty.
    pub fn serve_text(&self, column: &str) -> Option<&str> {
        self.serve.get(column).map(String::as_str).filter(|s| !s.is_empty())
    }
}

/// Everything known about one strategy: its runs, in the order they ran.
#[derive(Clone, Debug, Default)]
pub struct StrategyResult {
    /// The strategy label.
    pub label: String,
    /// Its runs (at least one).
    pub runs: Vec<Run>,
}

impl StrategyResult {
    /// A client-side metric over the runs.
    pub fn serve_spread(&self, column: &str) -> Spread {
        self.spread(|r| r.serve_f64(column))
    }

    /// Any per-run figure over the runs.
    pub fn spread(&self, f: impl Fn(&Run) -> f64) -> Spread {
        Spread::of(&self.runs.iter().map(f).collect::<Vec<_>>())
    }

    /// The first run (the one the time series show).
    pub fn first(&self) -> Option<&Run> {
        self.runs.first()
    }

    /// Every request of every run.
    pub fn outcomes(&self) -> impl Iterator<Item = &RequestOutcome> {
        self.runs.iter().flat_map(|r| r.outcomes.iter())
    }
}

/// A sweep's results directory, read.
#[derive(Clone, Debug, Default)]
pub struct Results {
    /// Where it was read from.
    pub dir: PathBuf,
    /// Strategies in the order of their first row.
    pub strategies: Vec<StrategyResult>,
    /// Client-side columns of the CSV, in file order.
    pub columns: Vec<String>,
    /// When the client-side CSV was last written (seconds since the Unix epoch).
    pub modified_unix_s: Option<u64>,
}

impl Results {
    /// Whether the client-side CSV has `column`.
    pub fn has_column(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }

    /// The most runs any strategy has.
    pub fn max_runs(&self) -> usize {
        self.strategies.iter().map(|s| s.runs.len()).max().unwrap_or(0)
    }
}

/// `s` as a number, NaN when absent, empty or not a number.
pub fn number(s: Option<&str>) -> f64 {
    s.and_then(|s| s.trim().parse().ok()).unwrap_or(f64::NAN)
}

fn read_rows(path: &Path) -> Result<(Vec<String>, Vec<Fields>), ReportError> {
    let csv_error = |source| ReportError::Csv { path: path.to_owned(), source };
    let mut reader = csv::Reader::from_path(path).map_err(csv_error)?;
    let header: Vec<String> = reader.headers().map_err(csv_error)?.iter().map(str::to_owned).collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        rows.push(header.iter().cloned().zip(record.iter().map(str::to_owned)).collect());
    }
    Ok((header, rows))
}

/// Reads per-request detail (one JSON object per line).
pub fn read_outcomes(path: &Path) -> Result<Vec<RequestOutcome>, ReportError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ReportError::Io { path: path.to_owned(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| ReportError::Detail {
                path: path.to_owned(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Reads a sweep's output directory. Rows of one strategy form its runs: a
/// row with `repeat` 1 (or without a `repeat` column) starts the strategy
/// afresh, so a strategy swept twice shows its last sweep; a later
/// repetition joins the runs before it.
pub fn load(dir: &Path) -> Result<Results, ReportError> {
    let serve_path = dir.join(SERVE_CSV);
    if !serve_path.is_file() {
        return Err(ReportError::NoResults { path: serve_path });
    }
    let vllm_path = dir.join(VLLM_CSV);
    let vllm_rows = if vllm_path.is_file() { read_rows(&vllm_path)?.1 } else { Vec::new() };
    let (columns, rows) = read_rows(&serve_path)?;
    let mut strategies: Vec<StrategyResult> = Vec::new();
    for row in rows {
        let label = row.get("scheduler_strategy").cloned().unwrap_or_default();
        let repeat = row.get("repeat").and_then(|r| r.trim().parse().ok()).unwrap_or(1usize).max(1);
        let vllm = vllm_rows
            .iter()
            .rev()
            .find(|v| {
                v.get("scheduler_strategy") == Some(&label)
                    && v.get("benchmark_label") == row.get("benchmark_label")
                    && v.get("repeat").map(String::as_str).unwrap_or("1") == repeat.to_string()
            })
            .cloned();
        let outcomes = match row.get("requests_file").filter(|f| !f.is_empty()) {
            Some(f) if dir.join(f).is_file() => read_outcomes(&dir.join(f))?,
            _ => Vec::new(),
        };
        let run = Run { repeat, serve: row, vllm, outcomes };
        match strategies.iter_mut().find(|s| s.label == label) {
            Some(existing) if repeat > 1 => existing.runs.push(run),
            Some(existing) => existing.runs = vec![run],
            None => strategies.push(StrategyResult { label, runs: vec![run] }),
        }
    }
    if strategies.is_empty() {
        return Err(ReportError::Empty { path: serve_path });
    }
    let modified_unix_s = std::fs::metadata(&serve_path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    Ok(Results { dir: dir.to_owned(), strategies, columns, modified_unix_s })
}
