//! `prefixgate-bench`: a load driver compatible with SGLang's bench_serving.
//!
//! ```text
//! prefixgate-bench run --base-url http://127.0.0.1:8000 --num-prompts 1000 \
//!     --request-rate 100 --max-concurrency 40 --replica-urls http://127.0.0.1:8001,...
//! prefixgate-bench sweep --config bench/sweeps/demo.toml --output-dir sweep-results
//! prefixgate-bench report --input-dir sweep-results
//! prefixgate-bench lab --num-prompts 1000 --request-rate 100 --max-concurrency 40 \
//!     --replicas 4 --policy round_robin,pow2,prefix_aware --output-dir lab-results
//! prefixgate-bench calibrate --dataset-path ShareGPT_V3_unfiltered_cleaned_split.json \
//!     --tokenizer tokenizer.json
//! ```

use anyhow::Result;
use clap::{Parser, Subcommand};
use prefixgate_bench::lab::calibrate::{calibrate, CalibrateArgs};
use prefixgate_bench::lab::{lab, scorecard_table, sweep_in_lab, LabArgs};
use prefixgate_bench::load::run::{run, summary_table, write_record, RunArgs};
use prefixgate_bench::report::write_report;
use prefixgate_bench::sweep::config::{Mode, Router, SweepConfig};
use prefixgate_bench::sweep::run::{comparison_table, run_sweep, SweepOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Benchmark an OpenAI-compatible server (prefixgate, Envoy, a peer router or vLLM itself).
#[derive(Debug, Parser)]
#[command(name = "prefixgate-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a dataset's prompts and report bench_serving's metrics.
    Run(RunArgs),
    /// Run the benchmark once per routing strategy, each on a fresh fleet, and
    /// append one row per strategy to the results CSVs.
    Sweep(SweepArgs),
    /// Turn a sweep's results into one self-contained HTML page with charts.
    Report(ReportArgs),
    /// Run the routing filter's own code against a simulated fleet in virtual time:
    /// the same requests as `run`, deterministic, with the scorecard.
    Lab(LabArgs),
    /// Replay the published fleet runs a simulator profile cites (replicas behind a
    /// prefix-aware router, a ShareGPT load) in the lab, and print the simulated figures
    /// beside the published ones with their ratios.
    Calibrate(CalibrateArgs),
}

/// Flags of `sweep`; each overrides the config file.
#[derive(Debug, clap::Args)]
struct SweepArgs {
    /// Sweep configuration (TOML): server, strategies, bench settings.
    #[arg(long)]
    config: PathBuf,
    /// Directory for the CSVs, results.jsonl, requests/ and logs/.
    #[arg(long, default_value = "sweep-results")]
    output_dir: PathBuf,
    /// Real replicas (`ip:port`, comma-separated) instead of a simulated fleet;
    /// their caches are not reset between strategies.
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
    /// Router in front of the replicas.
    #[arg(long, value_enum)]
    router: Option<Router>,
    /// Independent routers in front of the fleet, each with its own index (on the wall
    /// clock, one process each); request `i` goes to router `i mod K`; overrides
    /// `[server] routers`.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    routers: Option<u16>,
    /// `wall` (processes on loopback, on the wall clock) or `lab` (in
    /// process, in virtual time); overrides `[server] mode`.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Simulated seconds per wall-clock second of the simulated fleet;
    /// overrides `[server] time_scale` (wall mode only).
    #[arg(long)]
    time_scale: Option<f64>,
    /// Run only these strategies (labels, comma-separated), in config order.
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<String>,
    /// `prefixgate` executable (default: beside this program, $PREFIXGATE_BIN, or PATH).
    #[arg(long)]
    prefixgate_bin: Option<PathBuf>,
    /// `vllm-sim` executable (default: beside this program, $VLLM_SIM_BIN, or PATH).
    #[arg(long)]
    vllm_sim_bin: Option<PathBuf>,
    /// `envoy` executable for `--router envoy` (default: $ENVOY_BIN, target/tools, or PATH).
    #[arg(long)]
    envoy_bin: Option<PathBuf>,
    /// Filter module: required by `--router envoy` (default: $PREFIXGATE_FILTER_WASM);
    /// with prefixgate, runs instead of the embedded module.
    #[arg(long)]
    filter_wasm: Option<PathBuf>,
    /// Run each strategy this many times, each on a fresh fleet, one CSV row per
    /// run (with its `repeat`); the report shows the mean and spread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    repeat: u16,
    /// Also write the HTML report when the sweep ends.
    #[arg(long)]
    report: bool,
}

/// Flags of `report`.
#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// A sweep's output directory.
    #[arg(long, default_value = "sweep-results")]
    input_dir: PathBuf,
    /// Where to write the page (default: <input-dir>/report/index.html).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Strategy the others are compared with (default: round_robin when
    /// present, else the first).
    #[arg(long)]
    baseline: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prefixgate-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prefixgate-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => {
            let output = args.output_file.clone();
            let report = run(args, true).await?;
            print!("{}", summary_table(&report));
            if let Some(path) = output {
                write_record(&report, &path)?;
            }
            if report.metrics.failed > 0 {
                let first = report.outcomes.iter().find_map(|o| o.error.clone()).unwrap_or_default();
                if report.metrics.completed == 0 {
                    anyhow::bail!(
                        "every request failed ({} of {}); first error: {first}",
                        report.metrics.failed,
                        report.outcomes.len()
                    );
                }
                eprintln!(
                    "prefixgate-bench: {} of {} requests failed; first error: {first}",
                    report.metrics.failed,
                    report.outcomes.len()
                );
            }
            Ok(())
        }
        Command::Sweep(args) => sweep(args).await,
        Command::Lab(args) => lab(&args).map(|_| ()),
        Command::Calibrate(args) => {
            for replay in calibrate(&args)? {
                println!("\n{}", replay.table());
            }
            Ok(())
        }
        Command::Report(args) => {
            let path = write_report(&args.input_dir, args.output.as_deref(), args.baseline.as_deref())?;
            println!("report: {}", path.display());
            Ok(())
        }
    }
}

async fn sweep(args: SweepArgs) -> Result<()> {
    let mut config = SweepConfig::from_file(&args.config)?;
    if !args.backends.is_empty() {
        config.server.backends = args.backends;
        config.server.time_scale = 1.0;
    }
    if let Some(r) = args.router {
        config.server.router = r;
    }
    if let Some(k) = args.routers {
        config.server.routers = usize::from(k);
    }
    if let Some(mode) = args.mode {
        config.server.mode = mode;
    }
    if let Some(scale) = args.time_scale {
        config.server.time_scale = scale;
    }
    if !args.strategies.is_empty() {
        for s in &args.strategies {
            if !config.strategies.contains_key(s) {
                anyhow::bail!("--strategies: `{s}` is not a strategy of {}", args.config.display());
            }
        }
        config.strategies.retain(|label, _| args.strategies.contains(label));
    }
    config.validate()?;
    if config.server.mode == Mode::Lab {
        let runs = sweep_in_lab(&config, &args.output_dir, usize::from(args.repeat))?;
        println!("\n{}", scorecard_table(&runs));
        println!("results: {}", args.output_dir.display());
        if args.report {
            let path = write_report(&args.output_dir, None, None)?;
            println!("report: {}", path.display());
        }
        return Ok(());
    }
    let options = SweepOptions {
        output_dir: args.output_dir.clone(),
        vllm_sim_bin: args.vllm_sim_bin,
        prefixgate_bin: args.prefixgate_bin,
        envoy_bin: args.envoy_bin,
        filter_wasm: args.filter_wasm,
        progress: true,
        repeat: usize::from(args.repeat),
    };
    let reports = run_sweep(&config, &options).await?;
    println!("\n{}", comparison_table(&reports));
    println!("results: {}", args.output_dir.display());
    if args.report {
        let path = write_report(&args.output_dir, None, None)?;
        println!("report: {}", path.display());
    }
    Ok(())
}
