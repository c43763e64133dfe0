//! Locating the filter module and Envoy.

use crate::error::HarnessError;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The filter module: `$PREFIXGATE_FILTER_WASM`, else built on demand (once
/// per process) with `cargo build --release --target wasm32-wasip1`.
pub fn filter_wasm() -> Result<PathBuf, HarnessError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(path) = std::env::var_os("PREFIXGATE_FILTER_WASM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(HarnessError::Missing(format!(
                "PREFIXGATE_FILTER_WASM={} is not a file",
                path.display()
            )));
        }
        return Ok(path);
    }
    BUILT.get_or_init(build_filter).clone().map_err(HarnessError::Missing)
}

fn build_filter() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--package", "prefixgate-filter", "--release", "--target", "wasm32-wasip1"])
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo to build the filter module: {e}"))?;
    if !status.success() {
        return Err(format!("building the filter module failed ({status})"));
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    };
    let wasm = target.join("wasm32-wasip1").join("release").join("prefixgate_filter.wasm");
    if wasm.is_file() {
        Ok(wasm)
    } else {
        Err(format!("the filter build finished but {} is missing", wasm.display()))
    }
}

/// The Envoy binary: `$ENVOY_BIN`, else the one `cargo xtask setup` installs
/// under `<target>/tools/envoy`. Missing Envoy is an error, never a skip.
pub fn envoy_bin() -> Result<PathBuf, HarnessError> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(dir).join("tools").join("envoy"));
    }
    candidates.push(workspace_root().join("target").join("tools").join("envoy"));
    candidates.into_iter().find(|c| c.is_file()).ok_or_else(|| {
        HarnessError::Missing(
            "Envoy is not installed: run `cargo xtask setup` or set ENVOY_BIN (the Envoy tests never skip)"
                .to_owned(),
        )
    })
}
