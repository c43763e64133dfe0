//! `cargo xtask demo`: the sweep in `bench/sweeps/demo.toml` (round robin,
//! pow2 and prefix-aware routing, each on a fresh 4-replica simulated fleet
//! behind `prefixgate`, the same synthetic multi-turn workload), its
//! comparison table and the HTML report.
//!
//! The fleet runs at a time scale and the driver reports in simulated seconds,
//! so figures read as they would on the L4 GPUs the simulator models.

use crate::paths::{target_dir, workspace_root};
use crate::run::{cargo, status};
use anyhow::{Context, Result};
use std::process::Command;

/// Builds the release binaries, runs the demo sweep and writes its report.
pub fn demo() -> Result<()> {
    cargo(&["build", "--release", "--package", "prefixgate", "--package", "prefixgate-bench", "--bins"])?;
    let bench =
        target_dir().join("release").join(format!("prefixgate-bench{}", std::env::consts::EXE_SUFFIX));
    let out = target_dir().join("demo");
    // A fresh directory: the CSVs append, and the demo shows one run.
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    let config = workspace_root().join("bench").join("sweeps").join("demo.toml");
    status(
        Command::new(&bench)
            .arg("sweep")
            .arg("--config")
            .arg(&config)
            .arg("--output-dir")
            .arg(&out)
            .arg("--report")
            .current_dir(workspace_root()),
        "prefixgate-bench sweep",
    )?;
    eprintln!("xtask: demo logs in {}", out.join("logs").display());
    Ok(())
}
