//! `prefixgate-bench lab`: the policy lab. The routing filter's native code in front
//! of simulated `vllm-sim` engines, in virtual time ([`simulate`]): the same requests as
//! `run` with the same flags, the same summary and records, and beside them the
//! scorecard ([`scorecard`]): reuse bound, captured, delivered.

pub mod calibrate;
pub mod prompt_memo;
pub mod scorecard;
pub mod simulate;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use prefixgate_filter::PolicyKind;
use vllm_sim::{EngineLimits, Profile, SimConfig};

use crate::load::run::{build_requests, write_record, RunArgs, RunReport};
use crate::load::stats::BenchMetrics;
use crate::report::table::{fixed, percent, Table};
use crate::sweep::config::{ServerSettings, SweepConfig};
use crate::sweep::results_csv::{append_row, serve_row, vllm_row, RunSettings, SERVE_CSV, VLLM_CSV};
use crate::sweep::run::requests_file;
use prompt_memo::PromptMemo;
use simulate::{simulate_with, LabSpec};

/// Flags of `lab`: `run`'s workload flags, the simulated fleet's, and the router's.
#[derive(Clone, Debug, clap::Args)]
pub struct LabArgs {
    /// The workload, as `run` takes it (`--base-url`, `--replica-urls` and
    /// `--time-scale` have no meaning here).
    #[command(flatten)]
    pub run: RunArgs,
    /// Simulated replicas.
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Cost-model profile of every replica: l4-qwen2.5-1.5b, l4-qwen2.5-0.5b,
    /// h100-llama3.1-8b, or a TOML file.
    #[arg(long, default_value = "l4-qwen2.5-1.5b")]
    pub profile: String,
    /// KV blocks per replica (default: the profile's).
    #[arg(long)]
    pub num_gpu_blocks: Option<usize>,
    /// No prefix caching in the replicas.
    #[arg(long)]
    pub no_enable_prefix_caching: bool,
    /// No chunked prefill in the replicas.
    #[arg(long)]
    pub no_enable_chunked_prefill: bool,
    /// Policies to run, one run each (comma-separated). Default `prefix_aware` unless
    /// `--plugin-config` is given.
    #[arg(long, value_delimiter = ',')]
    pub policy: Vec<PolicyKind>,
    /// Plugin configuration files (JSON, as the module takes it), one run each; their
    /// `backends` are replaced by the simulated replicas.
    #[arg(long)]
    pub plugin_config: Vec<PathBuf>,
    /// Independent routers in front of the fleet, each with its own shared data and
    /// in-flight counts; request `i` goes to router `i mod K`.
    #[arg(long, default_value_t = 1)]
    pub routers: usize,
    /// A grid over plugin configuration fields, `field=v1,v2,...` (repeatable): every
    /// strategy runs at every point of the product, one row each.
    #[arg(long)]
    pub grid: Vec<String>,
    /// Directory for the sweep's files: both CSVs, `results.jsonl`, `requests/`, so that
    /// `prefixgate-bench report` charts the runs.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Label of the runs in the CSVs (`benchmark_label`).
    #[arg(long, default_value = "lab")]
    pub benchmark_label: String,
}

/// One configuration the lab runs: a label and its plugin configuration JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct LabStrategy {
    /// Label (file-safe: letters, digits, `_`, `-`, `.`).
    pub label: String,
    /// Plugin configuration without backends.
    pub plugin_config: serde_json::Value,
}

/// The fleet every strategy of a lab invocation runs on.
#[derive(Clone, Debug)]
pub struct LabFleet {
    /// Every replica's configuration.
    pub sim: SimConfig,
    /// Replicas.
    pub replicas: usize,
    /// Routers in front of them.
    pub routers: usize,
    /// The settings columns of the CSVs.
    pub server: ServerSettings,
}

/// One strategy's lab run, and how long it took.
#[derive(Clone, Debug)]
pub struct LabRun {
    /// Strategy label.
    pub label: String,
    /// The run, as `run` reports it (with the scorecard).
    pub report: RunReport,
    /// The plugin configuration it ran.
    pub plugin_config: serde_json::Value,
    /// Wall-clock seconds the simulation took.
    pub wall_seconds: f64,
    /// Engine steps simulated.
    pub steps: u64,
    /// Which repetition of the strategy this is, from 1 (`sweep --repeat`).
    pub repeat: usize,
}

impl LabArgs {
    /// The fleet these flags describe.
    pub fn fleet(&self) -> Result<LabFleet> {
        if self.run.base_url.is_some() || !self.run.base_urls.is_empty() || !self.run.replica_urls.is_empty()
        {
            bail!(
                "--base-url, --base-urls and --replica-urls name real servers; the lab simulates its own fleet"
            );
        }
        let profile = Profile::resolve(&self.profile).context("--profile")?;
        let limits = EngineLimits {
            enable_prefix_caching: !self.no_enable_prefix_caching,
            enable_chunked_prefill: !self.no_enable_chunked_prefill,
            ..EngineLimits::default()
        };
        let server = ServerSettings {
            mode: crate::sweep::config::Mode::Lab,
            routers: self.routers.max(1),
            profile: self.profile.clone(),
            num_servers: self.replicas,
            enable_prefix_caching: limits.enable_prefix_caching,
            enable_chunked_prefill: limits.enable_chunked_prefill,
            model_name: self.run.model.clone().unwrap_or_else(|| ServerSettings::default().model_name),
            ..ServerSettings::default()
        };
        let sim = SimConfig {
            model: server.model_name.clone(),
            profile,
            limits,
            num_gpu_blocks: self.num_gpu_blocks,
            tokenizer: self.run.tokenizer.clone(),
            ..SimConfig::default()
        };
        Ok(LabFleet { sim, replicas: self.replicas, routers: self.routers.max(1), server })
    }

    /// The strategies: each `--policy`, then each `--plugin-config`, each at every grid point.
    pub fn strategies(&self) -> Result<Vec<LabStrategy>> {
        let mut base = Vec::new();
        for p in &self.policy {
            base.push(LabStrategy {
                label: p.as_str().to_owned(),
                plugin_config: serde_json::json!({"policy": p}),
            });
        }
        for path in &self.plugin_config {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
            let label = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin-config");
            base.push(LabStrategy { label: file_safe(label), plugin_config: json });
        }
        if base.is_empty() {
            base.push(LabStrategy {
                label: PolicyKind::PrefixAware.as_str().to_owned(),
                plugin_config: serde_json::json!({"policy": PolicyKind::PrefixAware}),
            });
        }
        expand_grid(&base, &self.grid)
    }
}

/// `text` with every character other than letters, digits, `_`, `-` and `.` replaced by `_`.
fn file_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || "_-.".contains(c) { c } else { '_' }).collect()
}

/// Every strategy at every point of the grid `specs` (`field=v1,v2,...`); values are read
/// as JSON (numbers, `null`, `true`), else as strings.
pub fn expand_grid(base: &[LabStrategy], specs: &[String]) -> Result<Vec<LabStrategy>> {
    let mut axes: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for spec in specs {
        let Some((field, values)) = spec.split_once('=') else {
            bail!("--grid {spec}: expected field=v1,v2,...");
        };
        let field = field.trim();
        if field.is_empty() || field == "backends" {
            bail!("--grid {spec}: name a plugin configuration field other than `backends`");
        }
        let values: Vec<serde_json::Value> = values
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned())))
            .collect();
        if values.is_empty() {
            bail!("--grid {spec}: no value");
        }
        axes.push((field.to_owned(), values));
    }
    let mut out = base.to_vec();
    for (field, values) in &axes {
        let mut next = Vec::with_capacity(out.len() * values.len());
        for s in &out {
            for v in values {
                let mut config = s.plugin_config.clone();
                if let Some(obj) = config.as_object_mut() {
                    obj.insert(field.clone(), v.clone());
                }
                let shown = match v {
                    serde_json::Value::String(x) => x.clone(),
                    other => other.to_string(),
                };
                next.push(LabStrategy {
                    label: file_safe(&format!("{}.{field}-{shown}", s.label)),
                    plugin_config: config,
                });
            }
        }
        out = next;
    }
    Ok(out)
}

/// Runs one strategy in the lab over `requests`-generating flags `args`; `memo` holds
/// the per-prompt results of the other strategies run on the same requests and fleet.
pub fn run_strategy(
    args: &RunArgs,
    requests: &crate::load::workload::Workload,
    fleet: &LabFleet,
    strategy: &LabStrategy,
    memo: &mut PromptMemo,
) -> Result<LabRun> {
    let started = Instant::now();
    let spec = LabSpec {
        args,
        requests: &requests.requests,
        sim: &fleet.sim,
        replicas: fleet.replicas,
        plugin_config: &strategy.plugin_config,
        routers: fleet.routers,
    };
    let result = simulate_with(&spec, memo).with_context(|| format!("strategy `{}`", strategy.label))?;
    let plugin_config = serde_json::to_value(&result.config)
        .with_context(|| format!("strategy `{}`: plugin configuration", strategy.label))?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let mut args = args.clone();
    args.label = Some(strategy.label.clone());
    let report = RunReport {
        metrics: BenchMetrics::compute(&result.outcomes, result.duration),
        args,
        prefix_groups: requests.prefix_groups,
        vllm: Some(result.vllm),
        scorecard: Some(result.scorecard),
        outcomes: result.outcomes,
    };
    Ok(LabRun {
        label: strategy.label.clone(),
        report,
        plugin_config,
        wall_seconds,
        steps: result.steps,
        repeat: 1,
    })
}

/// Writes a lab run to a sweep output directory as the sweep does: a line of
/// `results.jsonl`, `requests/<label>.jsonl`, a row in each CSV.
pub fn record_run(dir: &Path, fleet: &LabFleet, benchmark_label: &str, run: &LabRun) -> Result<()> {
    std::fs::create_dir_all(dir.join("requests")).with_context(|| format!("creating {}", dir.display()))?;
    crate::load::run::append_record(&run.report, &dir.join("results.jsonl"))?;
    let requests = requests_file(&run.label, run.repeat);
    crate::load::run::write_outcomes(&run.report.outcomes, &dir.join(&requests))?;
    let settings =
        RunSettings { server: &fleet.server, benchmark_label, strategy: &run.label, repeat: run.repeat };
    let card = run.report.scorecard.clone().unwrap_or_default();
    let extras = [
        ("router", "lab".to_owned()),
        ("plugin_config", run.plugin_config.to_string()),
        ("requests_file", requests.to_string_lossy().into_owned()),
        ("routers", fleet.routers.to_string()),
        ("reuse_bound", card.reuse_bound.to_string()),
        ("captured", card.captured.to_string()),
        ("delivered", card.delivered.to_string()),
    ];
    append_row(&dir.join(SERVE_CSV), &serve_row(&settings, &run.report, &extras))?;
    append_row(&dir.join(VLLM_CSV), &vllm_row(&settings, &run.report))
}

/// Runs a sweep file's strategies in the lab (`[server] mode = "lab"`), writing the
/// sweep's files to `output_dir`; `repeat` rounds of them, as the sweep does. Every
/// repetition sends the same requests; unless a strategy sets its `seed`, the router's
/// seed of repetition K is the run's seed + K − 1, so repetitions differ in the
/// router's random choices (a deterministic policy repeats itself exactly).
pub fn sweep_in_lab(config: &SweepConfig, output_dir: &Path, repeat: usize) -> Result<Vec<LabRun>> {
    let s = &config.server;
    let args = config.bench.run_args("lab", &s.model_name, 1.0)?;
    let sim = SimConfig {
        model: s.model_name.clone(),
        profile: Profile::resolve(&s.profile).context("`server.profile`")?,
        limits: EngineLimits {
            enable_prefix_caching: s.enable_prefix_caching,
            enable_chunked_prefill: s.enable_chunked_prefill,
            ..EngineLimits::default()
        },
        tokenizer: args.tokenizer.clone(),
        num_gpu_blocks: s.num_gpu_blocks,
        ..SimConfig::default()
    };
    let fleet = LabFleet { sim, replicas: s.num_servers, routers: s.routers.max(1), server: s.clone() };
    let requests = build_requests(&args)?;
    let repeats = repeat.max(1);
    let mut memo = PromptMemo::new();
    let mut runs = Vec::with_capacity(config.strategies.len() * repeats);
    for k in 1..=repeats {
        for (label, strategy) in &config.strategies {
            let mut plugin_config = serde_json::to_value(strategy.filter_config(&[]))
                .with_context(|| format!("strategy `{label}`: plugin configuration"))?;
            if let Some(obj) = plugin_config.as_object_mut() {
                if obj.get("seed").is_none_or(serde_json::Value::is_null) {
                    obj.insert("seed".into(), args.seed.wrapping_add(k as u64 - 1).into());
                }
            }
            let strategy = LabStrategy { label: label.clone(), plugin_config };
            let mut run = run_strategy(&args, &requests, &fleet, &strategy, &mut memo)?;
            run.repeat = k;
            record_run(output_dir, &fleet, config.bench.benchmark_label(), &run)?;
            runs.push(run);
        }
    }
    Ok(runs)
}

/// The scorecard table printed after the runs (Markdown).
pub fn scorecard_table(runs: &[LabRun]) -> String {
    let mut t = Table::new([
        "strategy",
        "req/s",
        "TTFT mean ms",
        "TTFT p99 ms",
        "TPOT mean ms",
        "cache hit",
        "reuse bound",
        "captured",
        "delivered",
        "failed",
    ]);
    for run in runs {
        let r = &run.report;
        let m = &r.metrics;
        let c = r.scorecard.clone().unwrap_or_default();
        t.push([
            run.label.clone(),
            fixed(m.request_throughput, 2),
            fixed(m.ttft_ms.mean, 1),
            fixed(m.ttft_ms.p99, 1),
            fixed(m.tpot_ms.mean, 1),
            percent(r.vllm.as_ref().and_then(|v| v.prefix_cache_hit_rate)),
            percent(Some(c.reuse_bound)),
            percent(Some(c.captured)),
            percent(Some(c.delivered)),
            m.failed.to_string(),
        ]);
    }
    t.markdown()
}

/// `prefixgate-bench lab`: runs every strategy, prints each summary and the scorecard
/// table, writes the records asked for. Returns the runs.
pub fn lab(args: &LabArgs) -> Result<Vec<LabRun>> {
    let fleet = args.fleet()?;
    let strategies = args.strategies()?;
    let requests = build_requests(&args.run)?;
    let mut runs = Vec::with_capacity(strategies.len());
    let mut memo = PromptMemo::new();
    for strategy in &strategies {
        let run = run_strategy(&args.run, &requests, &fleet, strategy, &mut memo)?;
        print!("{}", crate::load::run::summary_table(&run.report));
        eprintln!(
            "prefixgate-bench: lab: {}: {} requests, {} engine steps in {:.3} s wall ({:.0} simulated requests per second)",
            run.label,
            run.report.outcomes.len(),
            run.steps,
            run.wall_seconds,
            run.report.outcomes.len() as f64 / run.wall_seconds.max(1e-9)
        );
        if let Some(path) = &args.run.output_file {
            write_record(&run.report, path)?;
        }
        if let Some(dir) = &args.output_dir {
            record_run(dir, &fleet, &args.benchmark_label, &run)?;
        }
        runs.push(run);
    }
    if runs.len() > 1 {
        let requests: usize = runs.iter().map(|r| r.report.outcomes.len()).sum();
        let wall: f64 = runs.iter().map(|r| r.wall_seconds).sum();
        eprintln!(
            "prefixgate-bench: lab: all {} runs: {requests} requests in {wall:.3} s wall ({:.0} simulated requests per second; {} distinct prompts, each prepared once)",
            runs.len(),
            requests as f64 / wall.max(1e-9),
            memo.len()
        );
    }
    println!("\n{}", scorecard_table(&runs));
    Ok(runs)
}
