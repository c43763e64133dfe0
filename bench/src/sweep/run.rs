//! The sweep loop: for each strategy a fresh simulated fleet (or the given
//! replicas), a router with that strategy's policy, one benchmark run, one row
//! in each results CSV; everything stopped before the next strategy.

use super::component::{find_executable, Component, LogFiles};
use super::config::{Strategy, SweepConfig};
use super::results_csv::{append_row, serve_row, vllm_row, RunSettings, SERVE_CSV, VLLM_CSV};
use super::router::{start_router, RouterPrograms};
use crate::load::run::{append_record, run, write_outcomes, RunReport};
use crate::report::table::{comparison, ComparisonRow};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where the sweep writes and which programs it starts.
#[derive(Clone, Debug, Default)]
pub struct SweepOptions {
    /// Results directory: the two CSVs, `results.jsonl`, `requests/`, `logs/`.
    pub output_dir: PathBuf,
    /// `vllm-sim` executable (default: beside this program, or on PATH).
    pub vllm_sim_bin: Option<PathBuf>,
    /// `prefixgate` executable (default: beside this program, or on PATH).
    pub prefixgate_bin: Option<PathBuf>,
    /// `envoy` executable, for `router = "envoy"`.
    pub envoy_bin: Option<PathBuf>,
    /// Filter module, for `router = "envoy"`.
    pub filter_wasm: Option<PathBuf>,
    /// Show a progress bar per run.
    pub progress: bool,
    /// Runs of each strategy, each on a fresh fleet (0 counts as 1).
    pub repeat: usize,
}

/// The name a strategy's files take for one repetition: the label for the
/// first, `label.repeat-K` for the K-th after it.
pub fn run_name(strategy: &str, repeat: usize) -> String {
    if repeat <= 1 {
        strategy.to_owned()
    } else {
        format!("{strategy}.repeat-{repeat}")
    }
}

/// Per-request detail of a strategy's run (repetition `repeat`, from 1),
/// relative to the output directory.
pub fn requests_file(strategy: &str, repeat: usize) -> PathBuf {
    Path::new("requests").join(format!("{}.jsonl", run_name(strategy, repeat)))
}

/// Runs every strategy in order, `repeat` rounds of them (each strategy once
/// per round, so that drift over time touches every strategy alike), and
/// returns their reports, labelled `label` or `label (repeat K)`.
pub async fn run_sweep(config: &SweepConfig, options: &SweepOptions) -> Result<Vec<(String, RunReport)>> {
    let out = &options.output_dir;
    std::fs::create_dir_all(out.join("requests")).with_context(|| format!("creating {}", out.display()))?;
    let sim_bin = match config.server.backends.is_empty() {
        true => Some(find_executable(
            options.vllm_sim_bin.as_deref(),
            "VLLM_SIM_BIN",
            "vllm-sim",
            "build it with `cargo build --release -p prefixgate-bench`",
        )?),
        false => None,
    };
    let router = RouterPrograms::find(
        config.server.router,
        options.prefixgate_bin.as_deref(),
        options.envoy_bin.as_deref(),
        options.filter_wasm.as_deref(),
    )?;
    let repeats = options.repeat.max(1);
    let mut reports = Vec::with_capacity(config.strategies.len() * repeats);
    for repeat in 1..=repeats {
        for (label, strategy) in &config.strategies {
            let run = Run { label, strategy, repeat };
            match repeats {
                1 => eprintln!("prefixgate-bench: sweep: {label} ({})", strategy.policy()),
                n => eprintln!(
                    "prefixgate-bench: sweep: {label} ({}), repeat {repeat} of {n}",
                    strategy.policy()
                ),
            }
            let report = run_strategy(config, options, &run, sim_bin.as_deref(), &router)
                .await
                .with_context(|| format!("strategy `{label}`, repeat {repeat}"))?;
            let shown = if repeats == 1 { label.clone() } else { format!("{label} (repeat {repeat})") };
            reports.push((shown, report));
        }
    }
    Ok(reports)
}

/// One run of the sweep: which strategy, which repetition.
struct Run<'a> {
    label: &'a str,
    strategy: &'a Strategy,
    repeat: usize,
}

async fn run_strategy(
    config: &SweepConfig,
    options: &SweepOptions,
    run_of: &Run<'_>,
    sim_bin: Option<&Path>,
    router_programs: &RouterPrograms,
) -> Result<RunReport> {
    let Run { label, strategy, repeat } = *run_of;
    let out = &options.output_dir;
    let server = &config.server;
    let logs = LogFiles::create(&out.join("logs"), &run_name(label, repeat))?;
    let timeout = Duration::from_secs_f64(server.startup_timeout_s);
    let mut fleet = None;
    let urls: Vec<String> = match sim_bin {
        Some(bin) => {
            let mut cmd = Command::new(bin);
            cmd.args(["--host", "127.0.0.1", "--port", "0"])
                .args(["--replicas", &server.num_servers.to_string()])
                .args(["--profile", &server.profile, "--model", &server.model_name])
                .args(["--time-scale", &server.time_scale.to_string()]);
            if !server.enable_prefix_caching {
                cmd.arg("--no-enable-prefix-caching");
            }
            if !server.enable_chunked_prefill {
                cmd.arg("--no-enable-chunked-prefill");
            }
            if let Some(blocks) = server.num_gpu_blocks {
                cmd.args(["--num-gpu-blocks", &blocks.to_string()]);
            }
            let mut sim = Component::spawn("vllm-sim", cmd, &logs)?;
            let lines = sim.wait_for_lines("vllm-sim replica ", server.num_servers, timeout).await?;
            fleet = Some(sim);
            lines
                .iter()
                .map(|l| l.rsplit("listening on ").next().unwrap_or_default().trim().to_owned())
                .collect()
        }
        None => server.backends.iter().map(|b| format!("http://{}", b.trim())).collect(),
    };
    let backends: Vec<String> = urls.iter().map(|u| u.trim_start_matches("http://").to_owned()).collect();
    let mut router =
        start_router(router_programs, strategy, &backends, server.router_port, &logs, timeout).await?;

    let mut args = config.bench.run_args(label, &server.model_name, server.time_scale)?;
    args.base_url = Some(router.base_url.clone());
    args.replica_urls = urls;
    let report = run(args, options.progress).await?;
    for c in [Some(&mut router.process), fleet.as_mut()].into_iter().flatten() {
        if !c.is_running() {
            bail!("{} exited during the run:\n{}", c.name(), logs.tail(20));
        }
    }
    let plugin_config = std::mem::take(&mut router.plugin_config);
    drop(router);
    drop(fleet);

    append_record(&report, &out.join("results.jsonl"))?;
    let requests = requests_file(label, repeat);
    write_outcomes(&report.outcomes, &out.join(&requests))?;
    let settings =
        RunSettings { server, benchmark_label: config.bench.benchmark_label(), strategy: label, repeat };
    let extras = [
        ("router", server.router.as_str().to_owned()),
        ("plugin_config", plugin_config),
        ("requests_file", requests.to_string_lossy().into_owned()),
        ("timestamp", unix_seconds().to_string()),
    ];
    append_row(&out.join(SERVE_CSV), &serve_row(&settings, &report, &extras))?;
    append_row(&out.join(VLLM_CSV), &vllm_row(&settings, &report))?;
    Ok(report)
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The comparison table printed at the end of a sweep (Markdown).
pub fn comparison_table(reports: &[(String, RunReport)]) -> String {
    let rows: Vec<ComparisonRow> =
        reports.iter().map(|(label, r)| ComparisonRow::of_report(label, r)).collect();
    comparison(&rows).markdown()
}
