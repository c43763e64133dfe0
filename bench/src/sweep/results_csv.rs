//! The sweep's two result files, one row per strategy run:
//! `serve_sharegpt_sweep_results.csv` (client side, bench_serving's metrics)
//! and `vllm_sharegpt_sweep_results.csv` (the replicas' `/metrics` deltas).
//! Both start with the same settings columns and end with `repeat`, so rows
//! join on them.

use super::config::ServerSettings;
use crate::load::run::RunReport;
use crate::load::stats::Summary;
use crate::load::vllm_side::HISTOGRAMS;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Client-side results file name.
pub const SERVE_CSV: &str = "serve_sharegpt_sweep_results.csv";
/// Replica-side results file name.
pub const VLLM_CSV: &str = "vllm_sharegpt_sweep_results.csv";

/// One CSV row: column names and values, in column order.
pub type Row = Vec<(String, String)>;

/// What identifies a run besides its results.
#[derive(Clone, Debug)]
pub struct RunSettings<'a> {
    /// Fleet and router.
    pub server: &'a ServerSettings,
    /// The sweep's label.
    pub benchmark_label: &'a str,
    /// The strategy's label.
    pub strategy: &'a str,
    /// Which repetition of the strategy this run is, from 1 (`sweep --repeat`).
    pub repeat: usize,
}

fn num(x: f64) -> String {
    if x.is_infinite() {
        "inf".into()
    } else if x.is_nan() {
        String::new()
    } else {
        format!("{x}")
    }
}

fn push(row: &mut Row, name: &str, value: impl ToString) {
    row.push((name.to_owned(), value.to_string()));
}

fn settings_columns(s: &RunSettings<'_>, report: &RunReport) -> Row {
    let a = &report.args;
    let mut row = Row::new();
    push(&mut row, "gpu_type", s.server.gpu_type());
    push(&mut row, "model_name", &s.server.model_name);
    push(&mut row, "num_servers", s.server.num_servers());
    push(&mut row, "enable_prefix_caching", s.server.enable_prefix_caching);
    push(&mut row, "enable_chunked_prefill", s.server.enable_chunked_prefill);
    push(&mut row, "benchmark_label", s.benchmark_label);
    push(&mut row, "scheduler_strategy", s.strategy);
    push(&mut row, "min_output_len", a.min_output_len);
    push(&mut row, "max_output_len", a.max_output_len);
    push(&mut row, "max_concurrency", a.max_concurrency.map(|c| c.to_string()).unwrap_or_default());
    push(&mut row, "request_rate", num(a.request_rate));
    push(&mut row, "with_warmup", a.with_warmup);
    push(&mut row, "disable_ignore_eos", a.disable_ignore_eos);
    push(&mut row, "disable_stream", a.disable_stream);
    push(&mut row, "max_conversations", a.max_conversations);
    push(&mut row, "num_prompts", a.num_prompts);
    row
}

fn summary_columns(row: &mut Row, name: &str, s: &Summary, which: &[&str]) {
    for w in which {
        let v = match *w {
            "mean" => s.mean,
            "median" => s.median,
            "std" => s.std,
            _ => s.p99,
        };
        push(row, &format!("{w}_{name}_ms"), num(v));
    }
}

/// The client-side row: settings, bench_serving's metrics, then extras.
pub fn serve_row(s: &RunSettings<'_>, report: &RunReport, extras: &[(&str, String)]) -> Row {
    let m = &report.metrics;
    let mut row = settings_columns(s, report);
    push(&mut row, "duration", num(m.duration));
    push(&mut row, "completed", m.completed);
    push(&mut row, "request_throughput", num(m.request_throughput));
    push(&mut row, "input_throughput", num(m.input_throughput));
    push(&mut row, "output_throughput", num(m.output_throughput));
    let all = ["mean", "median", "std", "p99"];
    summary_columns(&mut row, "ttft", &m.ttft_ms, &all);
    summary_columns(&mut row, "tpot", &m.tpot_ms, &all);
    summary_columns(&mut row, "itl", &m.itl_ms, &all);
    summary_columns(&mut row, "e2e_latency", &m.e2e_ms, &["mean", "median"]);
    summary_columns(&mut row, "e2e_latency", &m.e2e_ms, &["std", "p99"]);
    push(&mut row, "failed", m.failed);
    push(&mut row, "total_input_tokens", m.total_input_tokens);
    push(&mut row, "total_output_tokens", m.total_output_tokens);
    push(&mut row, "concurrency", num(m.concurrency));
    push(&mut row, "prefix_groups", report.prefix_groups);
    let dataset = report.args.dataset_name.map(|d| d.name()).unwrap_or_else(|| {
        if report.args.dataset_path.is_some() { "sharegpt" } else { "synthetic" }.to_owned()
    });
    push(&mut row, "dataset_name", dataset);
    push(&mut row, "profile", &s.server.profile);
    push(&mut row, "time_scale", num(s.server.time_scale));
    push(&mut row, "repeat", s.repeat);
    for (k, v) in extras {
        push(&mut row, k, v);
    }
    row
}

/// The replica-side row: settings, the `/metrics` deltas, per-replica lists
/// (`;`-separated, in replica order).
pub fn vllm_row(s: &RunSettings<'_>, report: &RunReport) -> Row {
    let mut row = settings_columns(s, report);
    let v = report.vllm.clone().unwrap_or_default();
    push(&mut row, "prompt_tokens_total", num(v.prompt_tokens_total));
    push(&mut row, "generation_tokens_total", num(v.generation_tokens_total));
    push(&mut row, "request_success_total", num(v.request_success_total));
    for h in HISTOGRAMS {
        push(&mut row, &format!("mean_{h}_s"), v.means_s.get(h).map(|x| num(*x)).unwrap_or_default());
    }
    push(&mut row, "prefix_cache_hit_rate", v.prefix_cache_hit_rate.map(num).unwrap_or_default());
    let list = |f: &dyn Fn(&crate::load::vllm_side::ReplicaDelta) -> String| {
        v.replicas.iter().map(f).collect::<Vec<_>>().join(";")
    };
    push(&mut row, "replica_urls", list(&|r| r.url.clone()));
    push(&mut row, "replica_requests", list(&|r| num(r.requests)));
    push(&mut row, "replica_request_shares", list(&|r| num(r.request_share)));
    push(
        &mut row,
        "replica_prefix_cache_hit_rates",
        list(&|r| r.prefix_cache_hit_rate.map(num).unwrap_or_default()),
    );
    push(&mut row, "repeat", s.repeat);
    row
}

/// Appends `row` to the CSV at `path`, writing the header first if the file
/// is new; refuses a file whose header has other columns.
pub fn append_row(path: &Path, row: &Row) -> Result<()> {
    let names: Vec<&str> = row.iter().map(|(k, _)| k.as_str()).collect();
    let exists = std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false);
    if exists {
        let mut reader =
            csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
        let header = reader.headers().with_context(|| format!("reading {}", path.display()))?;
        if header.iter().ne(names.iter().copied()) {
            bail!(
                "{} has other columns than this sweep writes; move it away or choose another --output-dir",
                path.display()
            );
        }
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut writer = csv::Writer::from_writer(file);
    if !exists {
        writer.write_record(&names)?;
    }
    writer.write_record(row.iter().map(|(_, v)| v.as_str()))?;
    writer.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
