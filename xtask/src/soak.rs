//! `cargo xtask soak`: builds the filter module, the release `prefixgate`
//! (embedding it) and `vllm-sim`, then runs the tests crate's `soak` driver:
//! steady streaming load through prefixgate and/or Envoy with the filter
//! while one replica of four fails, one fault at a time. Not part of
//! `cargo xtask test`: it takes a few minutes.

use anyhow::{bail, Result};
use std::path::Path;

/// Usage line of the task, appended to the xtask usage text.
pub const USAGE: &str = "\
\x20 soak [--seconds-per-fault S] [--host prefixgate|envoy|both] [--faults kill,stop,fail500,hang,big-metrics]
                  streaming load through prefixgate (release) and Envoy with the filter while one
                  of 4 replicas (vllm-sim processes, or stubs) fails: kill -9, SIGSTOP for S s (20),
                  500 at once, never answers, 15 MB /metrics; one Markdown table, exit 1 when a
                  bound is broken (`cargo xtask soak -- --help` for all options)
";

/// Runs the soak; `args` go to the driver.
pub fn soak(args: &[String], wasm: &Path) -> Result<()> {
    let envoy = crate::envoy::ensure_envoy()?;
    crate::run::cargo_with_env(
        &["build", "--release", "--package", "prefixgate", "--package", "prefixgate-bench", "--bins"],
        &[("PREFIXGATE_FILTER_WASM", wasm.as_os_str())],
    )?;
    let release = crate::paths::target_dir().join("release");
    let exe = |name: &str| release.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let (prefixgate, vllm_sim) = (exe("prefixgate"), exe("vllm-sim"));
    for bin in [&prefixgate, &vllm_sim] {
        if !bin.is_file() {
            bail!("the build finished but {} is missing", bin.display());
        }
    }
    let (prefixgate, vllm_sim) =
        (prefixgate.to_string_lossy().into_owned(), vllm_sim.to_string_lossy().into_owned());
    let mut cargo_args = vec![
        "run",
        "--release",
        "--package",
        "prefixgate-tests",
        "--bin",
        "soak",
        "--",
        "--prefixgate",
        prefixgate.as_str(),
        "--vllm-sim",
        vllm_sim.as_str(),
    ];
    // `cargo xtask soak -- --help` passes `--help` on.
    cargo_args.extend(args.iter().map(String::as_str).filter(|a| *a != "--"));
    crate::run::cargo_with_env(
        &cargo_args,
        &[("PREFIXGATE_FILTER_WASM", wasm.as_os_str()), ("ENVOY_BIN", envoy.as_os_str())],
    )
}
