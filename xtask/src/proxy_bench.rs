//! `cargo xtask bench proxy`: builds the filter module and the release
//! `prefixgate`, then runs the tests crate's `proxy-bench` driver (direct,
//! prefixgate with round_robin, prefix_aware and prefix_aware on one worker
//! thread, Envoy with the filter, Envoy round robin; one simulated fleet).

use anyhow::{bail, Result};
use std::path::Path;

/// Runs the benchmark; `args` go to the driver.
pub fn bench_proxy(args: &[String], wasm: &Path) -> Result<()> {
    let envoy = crate::envoy::ensure_envoy()?;
    // The proxy embeds the module just built, like the one Envoy loads.
    crate::run::cargo_with_env(
        &["build", "--release", "--package", "prefixgate"],
        &[("PREFIXGATE_FILTER_WASM", wasm.as_os_str())],
    )?;
    let prefixgate =
        prefixgate_launch::PREFIXGATE.in_profile_dir(&crate::paths::target_dir().join("release"));
    if !prefixgate.is_file() {
        bail!("the build finished but {} is missing", prefixgate.display());
    }
    let prefixgate = prefixgate.to_string_lossy().into_owned();
    let mut cargo_args = vec![
        "run",
        "--release",
        "--package",
        "prefixgate-tests",
        "--bin",
        "proxy-bench",
        "--",
        "--prefixgate",
        prefixgate.as_str(),
    ];
    cargo_args.extend(args.iter().map(String::as_str));
    crate::run::cargo_with_env(
        &cargo_args,
        &[("PREFIXGATE_FILTER_WASM", wasm.as_os_str()), ("ENVOY_BIN", envoy.as_os_str())],
    )
}
