//! Running commands: cargo, rustup, with their output passed through.

use anyhow::{bail, Context, Result};
use prefixgate_launch::module::WASM_TARGET;
use std::ffi::OsStr;
use std::process::Command;

/// Runs `cargo <args>` in the workspace root; fails when it fails.
pub fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

/// Runs the release `prefixgate-bench` with `args`, built first if it is not up to date.
pub fn prefixgate_bench(args: &[&str]) -> Result<()> {
    let mut cargo_args =
        vec!["run", "--release", "--package", "prefixgate-bench", "--bin", "prefixgate-bench", "--"];
    cargo_args.extend_from_slice(args);
    cargo(&cargo_args)
}

/// Runs `cargo <args>` with extra environment variables.
pub fn cargo_with_env(args: &[&str], env: &[(&str, &OsStr)]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(crate::paths::workspace_root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    status(&mut cmd, &format!("cargo {}", args.join(" ")))
}

/// Runs a command to completion; an error names the command and its exit status.
pub fn status(cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("xtask: running {what}");
    let status = cmd.status().with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Installs the `wasm32-wasip1` target through rustup unless it is there.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup (needed to install the wasm32-wasip1 target)")?;
    if String::from_utf8_lossy(&installed.stdout).lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    status(
        Command::new("rustup").args(["target", "add", WASM_TARGET]),
        &format!("rustup target add {WASM_TARGET}"),
    )
}
