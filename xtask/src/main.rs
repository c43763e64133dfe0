//! `cargo xtask`: the project's tasks, one subcommand each.
//!
//! `setup` installs what a fresh machine lacks, `test` runs every check CI
//! runs, `bench` runs the benchmarks, `demo` runs the simulated fleet demo.

mod demo;
mod envoy;
mod envoy_cmd;
mod paths;
mod promtool;
mod proxy_bench;
mod run;
mod soak;

use anyhow::{bail, Result};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  setup           install what a fresh machine lacks (wasm32-wasip1 target, Envoy 1.40, and
                  promtool from the `prometheus` package where apt-get has it)
  build-filter    build the filter module (release, wasm32-wasip1) and print its path
  test            setup, build the module, then fmt, clippy (native and wasm), every test and
                  a short soak (both hosts, kill -9 and swaps)
  bench [filter]  criterion benchmarks: one routing decision at 1k/8k/32k characters,
                  prompt extraction from 8 KiB and 2 MiB bodies
  bench sim       vllm-sim's calibration: model tables beside the reference, live latency, scheduling lag
  bench lab       the policy lab's speed: simulated requests per wall second on the seed workload
                  (4 replicas, 1,000 prompts, three policies) and on 100k prompts over 16 replicas
  demo            setup, then 4 simulated replicas; round_robin, pow2, prefix_aware compared
                  behind prefixgate
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A task named on the command line, with the arguments it takes.
#[derive(Debug, PartialEq)]
enum Task<'a> {
    Setup,
    BuildFilter,
    Test,
    BenchProxy(&'a [String]),
    Bench(&'a str),
    Demo,
    Envoy(&'a [String]),
    EnvoySwap(&'a [String]),
    Soak(&'a [String]),
    Help,
}

impl<'a> Task<'a> {
    fn parse(args: &'a [String]) -> Result<Self> {
        let rest = args.get(1..).unwrap_or_default();
        Ok(match args.first().map(String::as_str) {
            Some("setup") => Task::Setup,
            Some("build-filter") => Task::BuildFilter,
            Some("test") => Task::Test,
            Some("bench") if rest.first().map(String::as_str) == Some("proxy") => {
                Task::BenchProxy(&rest[1..])
            }
            Some("bench") => Task::Bench(rest.first().map(String::as_str).unwrap_or("filter")),
            Some("demo") => Task::Demo,
            Some("envoy") => Task::Envoy(rest),
            Some("envoy-swap") => Task::EnvoySwap(rest),
            Some("soak") => Task::Soak(rest),
            Some("-h" | "--help" | "help") | None => Task::Help,
            Some(other) => {
                bail!(
                    "unknown task `{other}`\n\n{USAGE}{}{}{}",
                    proxy_bench::USAGE,
                    soak::USAGE,
                    envoy_cmd::USAGE
                )
            }
        })
    }

    /// Whether the task builds or runs something that `setup` installs (the
    /// wasm target for the module the proxy embeds, Envoy): such a task runs
    /// `setup` first, so that it works on a fresh machine as the README says.
    fn needs_setup(&self) -> bool {
        match self {
            // The criterion benchmarks and the simulator's calibration are native code only.
            Task::Setup | Task::Help | Task::Bench(_) => false,
            Task::BuildFilter
            | Task::Test
            | Task::BenchProxy(_)
            | Task::Demo
            | Task::Envoy(_)
            | Task::EnvoySwap(_)
            | Task::Soak(_) => true,
        }
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let task = Task::parse(args)?;
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
        Task::BenchProxy(args) => proxy_bench::bench_proxy(args, &build_filter()?),
        Task::Bench(which) => bench(which),
        Task::Demo => demo::demo(),
        Task::Envoy(args) => envoy_cmd::envoy(args, &build_filter()?),
        Task::EnvoySwap(args) => envoy_cmd::envoy_swap(args, build_filter),
        Task::Soak(args) => soak::soak(args, &build_filter()?),
        Task::Help => {
            print!("{USAGE}{}{}{}", proxy_bench::USAGE, soak::USAGE, envoy_cmd::USAGE);
            Ok(())
        }
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

/// Builds the filter module and returns its path.
fn build_filter() -> Result<std::path::PathBuf> {
    run::cargo(&["build", "--package", "prefixgate-filter", "--release", "--target", "wasm32-wasip1"])?;
    let wasm = paths::filter_wasm();
    if !wasm.is_file() {
        bail!("the build finished but {} is missing", wasm.display());
    }
    Ok(wasm)
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
        "wasm32-wasip1",
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

fn bench(which: &str) -> Result<()> {
    match which {
        "filter" => run::cargo(&["bench", "--package", "prefixgate-filter"]),
        "sim" => run::cargo(&[
            "run",
            "--release",
            "--package",
            "prefixgate-bench",
            "--bin",
            "vllm-sim",
            "--",
            "--calibrate",
        ]),
        "lab" => {
            let lab = |flags: &str| {
                let mut args =
                    vec!["run", "--release", "--package", "prefixgate-bench", "--bin", "prefixgate-bench"];
                args.extend(["--", "lab"]);
                args.extend(flags.split_whitespace());
                run::cargo(&args)
            };
            lab("--num-prompts 1000 --request-rate 100 --max-concurrency 40 --replicas 4 \
                 --policy round_robin,pow2,prefix_aware")?;
            lab("--num-prompts 100000 --request-rate 400 --max-concurrency 160 --replicas 16 \
                 --policy prefix_aware")
        }
        other => bail!("unknown benchmark `{other}` (expected: filter, sim, lab, proxy)"),
    }
}

#[cfg(test)]
mod tests {
    use super::Task;

    fn task(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn every_task_that_builds_runs_setup_first() {
        for args in [
            &["demo"][..],
            &["test"],
            &["build-filter"],
            &["bench", "proxy", "--seconds", "1"],
            &["envoy", "--backends", "127.0.0.1:1"],
            &["envoy-swap", "--config", "x.json"],
        ] {
            let args = task(args);
            let parsed = Task::parse(&args);
            assert!(
                parsed.as_ref().is_ok_and(Task::needs_setup),
                "`cargo xtask {}` must run setup first: {parsed:?}",
                args.join(" ")
            );
        }
    }

    #[test]
    fn setup_help_and_unknown_tasks() {
        assert!(!Task::parse(&task(&["setup"])).is_ok_and(|t| t.needs_setup()));
        assert_eq!(Task::parse(&[]).ok(), Some(Task::Help));
        let err = Task::parse(&task(&["deom"])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("unknown task `deom`"), "{err}");
    }
}
