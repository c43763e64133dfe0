//! `cargo xtask soak`: builds the filter module, the release `prefixgate`
//! (embedding it), `vllm-sim` and the trapping module of
//! `tests/trap-filter`, then runs the tests crate's `soak` driver: steady
//! streaming load through prefixgate and/or Envoy with the filter while one
//! fault at a time hits it. A few minutes; `cargo xtask test` runs a short
//! version ([`quick`]).

use anyhow::{bail, Context as _, Result};
use prefixgate_filter_module::{build_module, Crate, WASM_TARGET};
use prefixgate_launch::{Program, PREFIXGATE, VLLM_SIM};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The short soak of `cargo xtask test`: both hosts, two faults of 4 s (kill -9, swaps),
/// 10 configuration and 2 module swaps, a time limit.
const QUICK: &[&str] = &[
    "--host",
    "both",
    "--faults",
    "kill,swaps",
    "--seconds-per-fault",
    "4",
    "--recovery-s",
    "2",
    "--scrape-ms",
    "250",
    "--config-swaps",
    "10",
    "--module-swaps",
    "2",
    "--time-limit-s",
    "240",
];

/// Builds `tests/trap-filter` for wasm32-wasip1 (its own workspace and
/// target directory; the same nested build as the routing filter's) and
/// returns the module's path.
fn build_trap_module() -> Result<PathBuf> {
    let root = crate::paths::workspace_root();
    let target = crate::paths::target_dir().join("trap-filter");
    let manifest = root.join("tests").join("trap-filter").join("Cargo.toml");
    eprintln!("xtask: building tests/trap-filter (release, {WASM_TARGET})");
    build_module(Crate::Manifest(&manifest), "prefixgate_trap_filter.wasm", &target)
        .context("building tests/trap-filter")
}

/// A built program of cargo's `profile` directory.
fn binary(profile: &str, program: Program) -> Result<PathBuf> {
    let bin = program.in_profile_dir(&crate::paths::target_dir().join(profile));
    if !bin.is_file() {
        bail!("the build finished but {} is missing", bin.display());
    }
    Ok(bin)
}

/// `cargo run` of the soak driver (`release` or not) with `args`.
fn run_driver(
    release: bool,
    binaries: &[(&str, &Path)],
    args: &[&str],
    wasm: &Path,
    envoy: &Path,
) -> Result<()> {
    let mut cargo_args = vec!["run"];
    if release {
        cargo_args.push("--release");
    }
    cargo_args.extend(["--package", "prefixgate-tests", "--bin", "soak", "--"]);
    let paths: Vec<(String, String)> =
        binaries.iter().map(|(flag, path)| (flag.to_string(), path.to_string_lossy().into_owned())).collect();
    for (flag, path) in &paths {
        cargo_args.extend([flag.as_str(), path.as_str()]);
    }
    cargo_args.extend_from_slice(args);
    crate::run::cargo_with_env(
        &cargo_args,
        &[("PREFIXGATE_FILTER_WASM", wasm.as_os_str()), ("ENVOY_BIN", envoy.as_os_str())],
    )
}

/// Runs the soak; `args` go to the driver.
pub fn soak(args: &[String], wasm: &Path) -> Result<()> {
    let envoy = crate::envoy::ensure_envoy()?;
    crate::run::cargo_with_env(
        &["build", "--release", "--package", PREFIXGATE.package, "--package", VLLM_SIM.package, "--bins"],
        &[("PREFIXGATE_FILTER_WASM", wasm.as_os_str())],
    )?;
    let (prefixgate, vllm_sim) = (binary("release", PREFIXGATE)?, binary("release", VLLM_SIM)?);
    let trap = build_trap_module()?;
    // `cargo xtask soak -- --help` passes `--help` on.
    let args: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--").collect();
    run_driver(
        true,
        &[("--prefixgate", &prefixgate), ("--vllm-sim", &vllm_sim), ("--trap-module", &trap)],
        &args,
        wasm,
        &envoy,
    )
}

/// The short soak of `cargo xtask test`, with the debug `prefixgate` the
/// tests built: fails when a bound breaks or it runs over its time limit.
pub fn quick(wasm: &Path, prefixgate: &Path, envoy: &Path) -> Result<()> {
    crate::run::cargo_with_env(
        &["build", "--package", VLLM_SIM.package, "--bin", VLLM_SIM.bin],
        &[("PREFIXGATE_FILTER_WASM", OsStr::new(wasm))],
    )?;
    let vllm_sim = binary("debug", VLLM_SIM)?;
    run_driver(false, &[("--prefixgate", prefixgate), ("--vllm-sim", &vllm_sim)], QUICK, wasm, envoy)
}
