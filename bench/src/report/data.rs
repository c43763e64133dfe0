//! What a report is made of: the sweep's CSV rows per strategy, joined with
//! the per-request detail each row points to.

use crate::load::run::read_outcomes;
use crate::load::stats::RequestOutcome;
use crate::sweep::results_csv::{SERVE_CSV, VLLM_CSV};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// One CSV row as column → value.
pub type Fields = HashMap<String, String>;

/// Everything known about one strategy's run.
#[derive(Clone, Debug)]
pub struct StrategyResult {
    /// The strategy label.
    pub label: String,
    /// Its row of the client-side CSV.
    pub serve: Fields,
    /// Its row of the replica-side CSV, if there is one.
    pub vllm: Option<Fields>,
    /// Per-request detail (empty when the file is missing).
    pub outcomes: Vec<RequestOutcome>,
}

impl StrategyResult {
    /// A numeric client-side column (NaN when absent or empty).
    pub fn serve_f64(&self, column: &str) -> f64 {
        number(self.serve.get(column))
    }

    /// A `;`-separated per-replica column of the replica-side row.
    pub fn per_replica(&self, column: &str) -> Vec<f64> {
        self.vllm
            .as_ref()
            .and_then(|v| v.get(column))
            .map(|s| s.split(';').map(|x| number(Some(&x.to_owned()))).collect())
            .unwrap_or_default()
    }

    /// A numeric replica-side column.
    pub fn vllm_f64(&self, column: &str) -> f64 {
        number(self.vllm.as_ref().and_then(|v| v.get(column)))
    }
}

fn number(s: Option<&String>) -> f64 {
    s.and_then(|s| s.trim().parse().ok()).unwrap_or(f64::NAN)
}

fn read_rows(path: &Path) -> Result<Vec<Fields>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header = reader.headers().with_context(|| format!("reading {}", path.display()))?.clone();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: row {}", path.display(), i + 1))?;
        rows.push(header.iter().map(str::to_owned).zip(record.iter().map(str::to_owned)).collect());
    }
    Ok(rows)
}

/// Reads a sweep's output directory. A strategy run twice keeps its last row.
pub fn load(dir: &Path) -> Result<Vec<StrategyResult>> {
    let serve_path = dir.join(SERVE_CSV);
    if !serve_path.is_file() {
        bail!(
            "{} not found: run `prefixgate-bench sweep` with this output directory first",
            serve_path.display()
        );
    }
    let vllm_path = dir.join(VLLM_CSV);
    let vllm_rows = if vllm_path.is_file() { read_rows(&vllm_path)? } else { Vec::new() };
    let mut results: Vec<StrategyResult> = Vec::new();
    for row in read_rows(&serve_path)? {
        let label = row.get("scheduler_strategy").cloned().unwrap_or_default();
        let vllm = vllm_rows
            .iter()
            .rev()
            .find(|v| {
                v.get("scheduler_strategy") == Some(&label)
                    && v.get("benchmark_label") == row.get("benchmark_label")
            })
            .cloned();
        let outcomes = match row.get("requests_file").filter(|f| !f.is_empty()) {
            Some(f) if dir.join(f).is_file() => read_outcomes(&dir.join(f))?,
            _ => Vec::new(),
        };
        let result = StrategyResult { label: label.clone(), serve: row, vllm, outcomes };
        match results.iter_mut().find(|r| r.label == label) {
            Some(existing) => *existing = result,
            None => results.push(result),
        }
    }
    if results.is_empty() {
        bail!("{} has no rows", serve_path.display());
    }
    Ok(results)
}
