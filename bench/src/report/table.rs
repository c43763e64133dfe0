//! The one table renderer behind every comparison the bench prints or
//! writes: a header and rows of cells, as Markdown (the sweep's and the
//! lab's tables, `proxy-bench`) or as an HTML `<table>` (the report).
//!
//! [`comparison`] is the strategy comparison the sweep prints when it ends,
//! from the runs just made ([`ComparisonRow::of_report`]).

use crate::load::run::RunReport;
use std::fmt::Write as _;

/// A table: column names and rows of already formatted cells. The first
/// column (names) is aligned left, the others (figures) right.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self { header: header.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Appends a row; missing cells are left empty, extra ones are dropped.
    pub fn push<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).take(self.header.len()).collect();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// The rows, as pushed.
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    /// GitHub-flavoured Markdown, one line per row; `|` in a cell is escaped.
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut s = line(&self.header);
        let rule: Vec<&str> = (0..self.header.len()).map(|i| if i == 0 { "---" } else { "---:" }).collect();
        s.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &self.rows {
            s.push_str(&line(row));
        }
        s
    }

    /// An HTML `<table>` with escaped cells (alignment is the page's style).
    pub fn html(&self) -> String {
        let mut s = String::from("<table><tr>");
        for h in &self.header {
            let _ = write!(s, "<th>{}</th>", escape(h));
        }
        s.push_str("</tr>\n");
        for row in &self.rows {
            s.push_str("<tr>");
            for c in row {
                let _ = write!(s, "<td>{}</td>", escape(c));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
        s
    }
}

pub use super::svg::escape;

/// `v` with `decimals` digits, `n/a` when it is not a number.
pub fn fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "n/a".to_owned()
    }
}

/// A share as a percentage with one decimal, `n/a` when unknown.
pub fn percent(share: Option<f64>) -> String {
    match share {
        Some(x) if x.is_finite() => format!("{:.1}%", x * 100.0),
        _ => "n/a".to_owned(),
    }
}

/// One strategy's figures in the comparison table.
#[derive(Clone, Debug, PartialEq)]
pub struct ComparisonRow {
    /// Strategy label.
    pub label: String,
    /// Successful requests.
    pub completed: f64,
    /// Failed requests.
    pub failed: f64,
    /// Requests per second.
    pub request_throughput: f64,
    /// Output tokens per second.
    pub output_throughput: f64,
    /// Mean time to first token, ms.
    pub ttft_mean_ms: f64,
    /// 99th percentile time to first token, ms.
    pub ttft_p99_ms: f64,
    /// Mean time per output token, ms.
    pub tpot_mean_ms: f64,
    /// Mean end-to-end latency, ms.
    pub e2e_mean_ms: f64,
    /// The fleet's prefix-cache hit rate, when the replicas report one.
    pub cache_hit: Option<f64>,
    /// Share of the requests the busiest replica finished.
    pub busiest_replica: Option<f64>,
}

impl ComparisonRow {
    /// The row of a run just made.
    pub fn of_report(label: &str, r: &RunReport) -> Self {
        let m = &r.metrics;
        Self {
            label: label.to_owned(),
            completed: m.completed as f64,
            failed: m.failed as f64,
            request_throughput: m.request_throughput,
            output_throughput: m.output_throughput,
            ttft_mean_ms: m.ttft_ms.mean,
            ttft_p99_ms: m.ttft_ms.p99,
            tpot_mean_ms: m.tpot_ms.mean,
            e2e_mean_ms: m.e2e_ms.mean,
            cache_hit: r.vllm.as_ref().and_then(|v| v.prefix_cache_hit_rate),
            busiest_replica: r
                .vllm
                .as_ref()
                .map(|v| v.replicas.iter().map(|x| x.request_share).fold(0.0, f64::max)),
        }
    }
}

/// The strategies side by side: throughput, latency, cache hits, spread.
pub fn comparison(rows: &[ComparisonRow]) -> Table {
    let mut t = Table::new([
        "strategy",
        "completed",
        "failed",
        "req/s",
        "out tok/s",
        "TTFT mean ms",
        "TTFT p99 ms",
        "TPOT mean ms",
        "E2E mean ms",
        "cache hit",
        "busiest replica",
    ]);
    for r in rows {
        t.push([
            r.label.clone(),
            fixed(r.completed, 0),
            fixed(r.failed, 0),
            fixed(r.request_throughput, 2),
            fixed(r.output_throughput, 0),
            fixed(r.ttft_mean_ms, 1),
            fixed(r.ttft_p99_ms, 1),
            fixed(r.tpot_mean_ms, 1),
            fixed(r.e2e_mean_ms, 0),
            percent(r.cache_hit),
            percent(r.busiest_replica),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_aligns_figures_right_and_escapes_pipes() {
        let mut t = Table::new(["setup", "req/s"]);
        t.push(["a|b", "12"]);
        t.push(["short"]);
        assert_eq!(t.markdown(), "| setup | req/s |\n|---|---:|\n| a\\|b | 12 |\n| short |  |\n");
    }

    #[test]
    fn html_escapes_every_cell() {
        let mut t = Table::new(["<s>"]);
        t.push(["a & \"b\""]);
        assert_eq!(
            t.html(),
            "<table><tr><th>&lt;s&gt;</th></tr>\n<tr><td>a &amp; &quot;b&quot;</td></tr>\n</table>\n"
        );
    }

    #[test]
    fn the_comparison_says_n_a_for_what_is_unknown() {
        let row = ComparisonRow {
            label: "pow2".into(),
            completed: 20.0,
            failed: 0.0,
            request_throughput: 1.234,
            output_throughput: f64::NAN,
            ttft_mean_ms: 10.0,
            ttft_p99_ms: 30.0,
            tpot_mean_ms: 2.0,
            e2e_mean_ms: 100.0,
            cache_hit: Some(0.5),
            busiest_replica: None,
        };
        let t = comparison(&[row]);
        assert_eq!(
            t.rows()[0],
            ["pow2", "20", "0", "1.23", "n/a", "10.0", "30.0", "2.0", "100", "50.0%", "n/a"]
        );
        assert!(t.markdown().starts_with("| strategy | completed | failed | req/s |"));
    }
}
