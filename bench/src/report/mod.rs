//! `prefixgate-bench report`: a sweep's results as one self-contained HTML
//! page (`report/index.html`): a summary table and inline SVG charts, no
//! external assets, readable offline and attachable to an issue.

pub mod charts;
pub mod data;
pub mod table;

use anyhow::{Context, Result};
use charts::{cdf_points, grouped_bars, in_flight_points, lines};
use data::StrategyResult;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use table::{comparison, escape, ComparisonRow};

/// Samples per in-flight time series.
const TIMELINE_SAMPLES: usize = 300;

/// Writes the report of the sweep in `input_dir` to `output` (default
/// `input_dir/report/index.html`) and returns its path.
pub fn write_report(input_dir: &Path, output: Option<&Path>) -> Result<PathBuf> {
    let results = data::load(input_dir)?;
    let html = render(&results)?;
    let path = output.map(Path::to_owned).unwrap_or_else(|| input_dir.join("report").join("index.html"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The whole page.
pub fn render(results: &[StrategyResult]) -> Result<String> {
    let labels: Vec<String> = results.iter().map(|r| r.label.clone()).collect();
    let mut sections: Vec<(String, String)> = Vec::new();
    let stat_bars = |title: &str, metric: &str, stats: &[&str]| {
        let series: Vec<(String, Vec<f64>)> = stats
            .iter()
            .map(|s| {
                (s.to_string(), results.iter().map(|r| r.serve_f64(&format!("{s}_{metric}_ms"))).collect())
            })
            .collect();
        grouped_bars(title, "ms", &labels, &series)
    };
    let stats = ["mean", "median", "p99"];
    sections.push(("Time to first token".into(), stat_bars("TTFT (ms)", "ttft", &stats)?));
    sections.push(("Time per output token".into(), stat_bars("TPOT (ms)", "tpot", &stats)?));
    sections.push(("End-to-end latency".into(), stat_bars("E2E latency (ms)", "e2e_latency", &stats)?));
    let single = |title: &str, unit: &str, column: &str| {
        grouped_bars(
            title,
            unit,
            &labels,
            &[(column.to_owned(), results.iter().map(|r| r.serve_f64(column)).collect())],
        )
    };
    sections.push((
        "Throughput".into(),
        single("Request throughput", "req/s", "request_throughput")?
            + &single("Output token throughput", "tok/s", "output_throughput")?,
    ));
    if results.iter().any(|r| r.serve_f64("reuse_bound").is_finite()) {
        // Lab runs: how far each strategy is from the best possible.
        let series: Vec<(String, Vec<f64>)> =
            [("reuse bound", "reuse_bound"), ("captured", "captured"), ("delivered", "delivered")]
                .iter()
                .map(|(name, column)| {
                    (name.to_string(), results.iter().map(|r| r.serve_f64(column) * 100.0).collect())
                })
                .collect();
        sections.push((
            "Scorecard (share of prompt tokens)".into(),
            grouped_bars("Reuse bound, captured, delivered (%)", "%", &labels, &series)?,
        ));
    }
    let ttft: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .map(|r| {
            let v: Vec<f64> = r.outcomes.iter().filter(|o| o.success).map(|o| o.ttft_s * 1000.0).collect();
            (r.label.clone(), cdf_points(&v))
        })
        .collect();
    sections.push((
        "TTFT distribution".into(),
        lines("TTFT CDF", "TTFT (ms)", "fraction of requests", &ttft, Some(1.0))?,
    ));
    sections.push(("Requests in flight per replica".into(), in_flight_charts(results)?));
    let per_replica = |title: &str, column: &str, scale: f64| {
        let values: Vec<Vec<f64>> = results.iter().map(|r| r.per_replica(column)).collect();
        let n = values.iter().map(Vec::len).max().unwrap_or(0);
        let series: Vec<(String, Vec<f64>)> = (0..n)
            .map(|i| {
                (
                    format!("replica {i}"),
                    values.iter().map(|v| v.get(i).copied().unwrap_or(f64::NAN) * scale).collect(),
                )
            })
            .collect();
        grouped_bars(title, "%", &labels, &series)
    };
    sections.push((
        "Prefix cache and load per replica".into(),
        per_replica("Prefix cache hit rate per replica (%)", "replica_prefix_cache_hit_rates", 100.0)?
            + &per_replica("Share of requests per replica (%)", "replica_request_shares", 100.0)?,
    ));

    let mut page = String::new();
    let title = results
        .first()
        .and_then(|r| r.serve.get("benchmark_label"))
        .map(|l| format!("prefixgate sweep: {}", escape(l)))
        .unwrap_or_else(|| "prefixgate sweep".into());
    write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em auto;max-width:1500px;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}section{{display:flex;flex-wrap:wrap;gap:12px}}\
         svg{{border:1px solid #eee}}</style></head><body>\n<h1>{title}</h1>\n"
    )?;
    let rows: Vec<ComparisonRow> = results.iter().map(ComparisonRow::of_result).collect();
    page.push_str(&comparison(&rows).html());
    for (heading, svg) in sections {
        write!(page, "<h2>{}</h2>\n<section>\n{svg}\n</section>\n", escape(&heading))?;
    }
    page.push_str("</body></html>\n");
    Ok(page)
}

fn in_flight_charts(results: &[StrategyResult]) -> Result<String> {
    let mut per_strategy = Vec::new();
    let mut y_max: f64 = 1.0;
    let end = results
        .iter()
        .flat_map(|r| r.outcomes.iter().map(|o| o.start_s + o.latency_s))
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);
    for r in results {
        let mut by_replica: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for o in r.outcomes.iter().filter(|o| o.success) {
            let replica = o.backend.clone().unwrap_or_else(|| "no x-prefixgate-backend".into());
            by_replica.entry(replica).or_default().push((o.start_s, o.start_s + o.latency_s));
        }
        let series: Vec<(String, Vec<(f64, f64)>)> = by_replica
            .into_iter()
            .map(|(name, intervals)| (name, in_flight_points(&intervals, end, TIMELINE_SAMPLES)))
            .collect();
        y_max = series.iter().flat_map(|(_, p)| p.iter().map(|(_, n)| *n)).fold(y_max, f64::max);
        per_strategy.push((r.label.clone(), series));
    }
    let mut out = String::new();
    for (label, series) in per_strategy {
        out.push_str(&lines(&label, "time (s)", "requests in flight", &series, Some(y_max * 1.1))?);
    }
    Ok(out)
}
