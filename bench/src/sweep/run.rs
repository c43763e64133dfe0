//! The sweep loop: for each strategy a fresh simulated fleet (or the given
//! replicas), a router with that strategy's policy, one benchmark run, one row
//! in each results CSV; everything stopped before the next strategy.

use super::config::{Strategy, SweepConfig};
use super::logs::LogFiles;
use super::results_csv::{append_row, serve_row, vllm_row, RunSettings, SERVE_CSV, VLLM_CSV};
use super::router::{start_router, RouterPrograms};
use crate::load::run::{append_record, run, write_outcomes, RunReport};
use crate::report::table::{comparison, ComparisonRow};
use anyhow::{bail, Context, Result};
use prefixgate_launch::{SimProcess, VLLM_SIM};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
        true => Some(VLLM_SIM.locate(options.vllm_sim_bin.as_deref())?),
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
    // One process per replica, as vLLM runs one server per GPU.
    let mut fleet: Vec<SimProcess> = Vec::new();
    let backends: Vec<SocketAddr> = match sim_bin {
        Some(bin) => {
            let mut args: Vec<OsString> =
                ["--profile", &server.profile, "--model", &server.model_name].map(OsString::from).to_vec();
            if !server.enable_prefix_caching {
                args.push("--no-enable-prefix-caching".into());
            }
            if !server.enable_chunked_prefill {
                args.push("--no-enable-chunked-prefill".into());
            }
            if let Some(blocks) = server.num_gpu_blocks {
                args.extend(["--num-gpu-blocks".into(), blocks.to_string().into()]);
            }
            for _ in 0..server.num_servers {
                let sim =
                    SimProcess::start_with(bin, server.time_scale, args.clone(), logs.output(), timeout)
                        .await?;
                fleet.push(sim);
            }
            fleet.iter().map(SimProcess::addr).collect()
        }
        None => server
            .backends
            .iter()
            .map(|b| b.trim().parse().with_context(|| format!("backend `{b}` is not ip:port")))
            .collect::<Result<_>>()?,
    };
    let urls: Vec<String> = backends.iter().map(|b| format!("http://{b}")).collect();
    // Independent routers, each its own process with its own index, as several
    // prefixgates or Envoys in front of one fleet run; request `i` goes to router `i mod K`.
    let count = server.routers.max(1);
    let mut routers = Vec::with_capacity(count);
    for k in 0..count {
        let name = if count > 1 { format!("{label}.router-{k}") } else { label.to_owned() };
        let router = start_router(
            router_programs,
            &name,
            strategy,
            &backends,
            server.time_scale,
            server.router_port,
            &logs,
            timeout,
        )
        .await?;
        routers.push(router);
    }

    let mut args = config.bench.run_args(label, &server.model_name, server.time_scale)?;
    args.base_urls = routers.iter().map(|r| r.base_url.clone()).collect();
    args.replica_urls = urls;
    let report = run(args, options.progress).await?;
    for router in &mut routers {
        if !router.process.is_running() {
            bail!("{} exited during the run:\n{}", router.process.name(), logs.tail(20));
        }
    }
    if !fleet.iter_mut().all(SimProcess::is_alive) {
        bail!("a vllm-sim replica exited during the run:\n{}", logs.tail(20));
    }
    let plugin_config = std::mem::take(&mut routers[0].plugin_config);
    drop(routers);
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
