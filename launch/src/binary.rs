//! The workspace's programs (`prefixgate`, `vllm-sim`): found through their
//! environment variable, or built by cargo on demand into the target
//! directory of the running program, with the same profile.

use crate::LaunchError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One of the workspace's executables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    /// The cargo package it belongs to.
    pub package: &'static str,
    /// The binary target's name.
    pub bin: &'static str,
    /// The environment variable that names a built one.
    pub env: &'static str,
}

/// The standalone proxy.
pub const PREFIXGATE: Program = Program { package: "prefixgate", bin: "prefixgate", env: "PREFIXGATE_BIN" };

/// The simulated vLLM replica.
pub const VLLM_SIM: Program = Program { package: "prefixgate-bench", bin: "vllm-sim", env: "VLLM_SIM_BIN" };

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Where cargo put the running program: its profile directory
/// (`<target>/<profile>`, the parent of `deps/` for tests) and the target
/// directory (the nearest ancestor holding cargo's `CACHEDIR.TAG`, else the
/// profile directory's parent).
fn own_profile_dir() -> Result<(PathBuf, PathBuf), LaunchError> {
    let exe = std::env::current_exe().map_err(|source| LaunchError::Io {
        what: "find the running program",
        path: PathBuf::new(),
        source,
    })?;
    let mut dir = exe.parent().map(Path::to_owned).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().map(Path::to_owned).unwrap_or_default();
    }
    let target = dir
        .ancestors()
        .skip(1)
        .find(|a| a.join("CACHEDIR.TAG").is_file())
        .or_else(|| dir.parent())
        .map(Path::to_owned)
        .ok_or_else(|| {
            LaunchError::Missing(format!("{} is not in a cargo target directory", exe.display()))
        })?;
    Ok((dir, target))
}

impl Program {
    /// The executable's file name on this platform.
    pub fn file_name(&self) -> String {
        format!("{}{}", self.bin, std::env::consts::EXE_SUFFIX)
    }

    /// This program in cargo's profile directory `dir` (`<target>/debug`).
    pub fn in_profile_dir(&self, dir: &Path) -> PathBuf {
        dir.join(self.file_name())
    }

    /// `$env` when set (it must name a file); else `cargo build` of this
    /// program, once per process, for the profile and target directory of
    /// the running program (a test's `target/debug`), and its path.
    pub fn locate_or_build(&self) -> Result<PathBuf, LaunchError> {
        if let Some(path) = std::env::var_os(self.env).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(LaunchError::Missing(format!("{}={} is not a file", self.env, path.display())));
            }
            return Ok(path);
        }
        static BUILT: Mutex<BTreeMap<&'static str, PathBuf>> = Mutex::new(BTreeMap::new());
        let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(path) = built.get(self.bin) {
            return Ok(path.clone());
        }
        let path = self.build()?;
        built.insert(self.bin, path.clone());
        Ok(path)
    }

    fn build(&self) -> Result<PathBuf, LaunchError> {
        let (profile_dir, target) = own_profile_dir()?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(&cargo);
        command
            .args(["build", "--package", self.package, "--bin", self.bin])
            .arg("--target-dir")
            .arg(&target);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                command.arg("--release");
            }
            Some(other) => {
                command.args(["--profile", other]);
            }
        }
        let status = command.current_dir(workspace_root()).status().map_err(|source| LaunchError::Io {
            what: "run cargo",
            path: PathBuf::from(&cargo),
            source,
        })?;
        if !status.success() {
            return Err(LaunchError::Missing(format!("building `{}` failed ({status})", self.bin)));
        }
        let path = self.in_profile_dir(&profile_dir);
        if path.is_file() {
            Ok(path)
        } else {
            Err(LaunchError::Missing(format!(
                "the build of `{}` finished but {} is missing",
                self.bin,
                path.display()
            )))
        }
    }
}
