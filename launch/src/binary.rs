//! Finding programs: the workspace's own (`prefixgate`, `vllm-sim`), found
//! through their environment variable or built by cargo on demand into the
//! target directory of the running program with its profile; and any
//! executable (Envoy, or an installed `prefixgate`) looked up by one rule.

use crate::LaunchError;
use std::collections::BTreeMap;
use std::ffi::OsString;
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
pub const VLLM_SIM: Program = Program { package: "vllm-sim", bin: "vllm-sim", env: "VLLM_SIM_BIN" };

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Where cargo put the running program: its profile directory
/// (`<target>/<profile>`, the parent of `deps/` for tests) and the target
/// directory (the nearest ancestor holding cargo's `CACHEDIR.TAG`, else the
/// profile directory's parent).
pub(crate) fn own_profile_dir() -> Result<(PathBuf, PathBuf), LaunchError> {
    let exe = std::env::current_exe().map_err(|e| LaunchError::io("find the running program", "", e))?;
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
        .ok_or(LaunchError::NotInTargetDir { exe })?;
    Ok((dir, target))
}

/// `$var` when set (it must name a file), else `None`.
pub(crate) fn from_env(var: &'static str) -> Result<Option<PathBuf>, LaunchError> {
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()).map(PathBuf::from) else {
        return Ok(None);
    };
    if path.is_file() {
        Ok(Some(path))
    } else {
        Err(LaunchError::NotAFile { var, path })
    }
}

/// Runs `cargo build` with `args` from the workspace root; `what` names the
/// artifact for the error.
pub(crate) fn cargo_build(what: &'static str, args: &[OsString]) -> Result<(), LaunchError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .arg("build")
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| LaunchError::io("run cargo", &cargo, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(LaunchError::BuildFailed { what, status })
    }
}

/// Finds an executable by one rule: `explicit`, else `$var`, else beside the
/// running program or in the `tools/` directory of its target directory
/// (where `cargo xtask setup` installs Envoy), else on `PATH`. `hint` says
/// how to get it, for the error.
pub fn find_executable(
    explicit: Option<&Path>,
    var: &'static str,
    name: &'static str,
    hint: &'static str,
) -> Result<PathBuf, LaunchError> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Some(path) = from_env(var)? {
        return Ok(path);
    }
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(me) = std::env::current_exe() {
        // target/<profile>/program, or target/<profile>/deps/<test> in tests.
        for dir in me.ancestors().skip(1).take(3) {
            dirs.push(dir.to_owned());
            dirs.push(dir.join("tools"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    match dirs.iter().map(|d| d.join(&file)).find(|c| c.is_file()) {
        Some(found) => Ok(found),
        None => Err(LaunchError::NotFound { name, var, hint, looked: dirs }),
    }
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

    /// `explicit`, `$env`, beside the running program or on `PATH`
    /// ([`find_executable`]): for programs that run an installed build.
    pub fn locate(&self, explicit: Option<&Path>) -> Result<PathBuf, LaunchError> {
        let hint = match self.bin {
            "prefixgate" => "build it with `cargo build --release -p prefixgate`",
            "vllm-sim" => "build it with `cargo build --release -p vllm-sim`",
            _ => "build it with `cargo build --release -p prefixgate-bench`",
        };
        find_executable(explicit, self.env, self.bin, hint)
    }

    /// `$env` when set (it must name a file); else `cargo build` of this
    /// program, once per process, for the profile and target directory of
    /// the running program (a test's `target/debug`), and its path.
    pub fn locate_or_build(&self) -> Result<PathBuf, LaunchError> {
        if let Some(path) = from_env(self.env)? {
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
        let mut args: Vec<OsString> =
            ["--package", self.package, "--bin", self.bin, "--target-dir"].map(OsString::from).to_vec();
        args.push(target.into_os_string());
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => args.push("--release".into()),
            Some(other) => args.extend(["--profile".into(), other.into()]),
        }
        cargo_build(self.bin, &args)?;
        let path = self.in_profile_dir(&profile_dir);
        if path.is_file() {
            Ok(path)
        } else {
            Err(LaunchError::BuiltButMissing { what: self.bin, path })
        }
    }
}
