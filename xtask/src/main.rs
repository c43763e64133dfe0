//! `cargo xtask`: the project's tasks, one subcommand each.
//!
//! `setup` installs what a fresh machine lacks, `test` runs every check CI
//! runs, `bench` runs the benchmarks, `demo` runs the simulated fleet demo.

mod demo;
mod envoy;
mod envoy_cmd;
mod envoy_config;
mod paths;
mod proxy_bench;
mod run;

use anyhow::{bail, Result};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  setup           install what a fresh machine lacks (wasm32-wasip1 target, Envoy 1.40)
  build-filter    build the filter module (release, wasm32-wasip1) and print its path
  test            setup, build the module, then fmt, clippy (native and wasm) and every test
  bench [filter]  criterion benchmarks: one routing decision at 1k/8k/32k characters,
                  prompt extraction from 8 KiB and 2 MiB bodies
  bench sim       vllm-sim's calibration: model tables beside the reference, live latency, scheduling lag
  demo            4 simulated replicas; round_robin, pow2, prefix_aware compared behind prefixgate
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

fn dispatch(args: &[String]) -> Result<()> {
    let task = args.first().map(String::as_str);
    match task {
        Some("setup") => setup(),
        Some("build-filter") => {
            let wasm = build_filter()?;
            println!("{}", wasm.display());
            Ok(())
        }
        Some("test") => test(),
        Some("bench") if args.get(1).map(String::as_str) == Some("proxy") => {
            proxy_bench::bench_proxy(&args[2..], &build_filter()?)
        }
        Some("bench") => bench(args.get(1).map(String::as_str).unwrap_or("filter")),
        Some("demo") => demo::demo(),
        Some("envoy") => envoy_cmd::envoy(&args[1..], &build_filter()?),
        Some("envoy-swap") => envoy_cmd::envoy_swap(&args[1..], build_filter),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}{}{}", proxy_bench::USAGE, envoy_cmd::USAGE);
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n\n{USAGE}{}{}", proxy_bench::USAGE, envoy_cmd::USAGE),
    }
}

/// Installs the wasm target and Envoy; does nothing for what is already there.
fn setup() -> Result<()> {
    run::ensure_wasm_target()?;
    let envoy = envoy::ensure_envoy()?;
    eprintln!("xtask: envoy ready at {}", envoy.display());
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
    setup()?;
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
    // The sweep tests start the proxy as a process, as users run it.
    run::cargo(&["build", "--package", "prefixgate", "--bin", "prefixgate"])?;
    let prefixgate =
        paths::target_dir().join("debug").join(format!("prefixgate{}", std::env::consts::EXE_SUFFIX));
    run::cargo_with_env(
        &["test", "--workspace"],
        &[
            ("PREFIXGATE_FILTER_WASM", wasm.as_os_str()),
            ("ENVOY_BIN", envoy.as_os_str()),
            ("PREFIXGATE_BIN", prefixgate.as_os_str()),
        ],
    )?;
    Ok(())
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
        other => bail!("unknown benchmark `{other}` (expected: filter, sim, proxy)"),
    }
}
