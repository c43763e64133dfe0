//! The routing filter's module (`prefixgate_filter.wasm`), which Envoy loads
//! and `prefixgate --filter` runs instead of its embedded copy: named by
//! `$PREFIXGATE_FILTER_WASM`, or built (release, `wasm32-wasip1`) on demand.

use crate::binary::{cargo_build, from_env, own_profile_dir};
use crate::LaunchError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The Rust target the filter module is compiled for.
pub const WASM_TARGET: &str = "wasm32-wasip1";

/// A proxy-wasm module built from a workspace package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    /// The cargo package it is built from.
    pub package: &'static str,
    /// The artifact's file name.
    pub artifact: &'static str,
    /// The environment variable that names a built one.
    pub env: &'static str,
}

/// The routing filter.
pub const FILTER_MODULE: Module = Module {
    package: "prefixgate-filter",
    artifact: "prefixgate_filter.wasm",
    env: "PREFIXGATE_FILTER_WASM",
};

impl Module {
    /// The `cargo build` arguments that build the module (release, wasm32-wasip1).
    pub fn build_args(&self) -> [&'static str; 5] {
        ["--package", self.package, "--release", "--target", WASM_TARGET]
    }

    /// Where a release build puts the module under cargo's target directory `target`.
    pub fn in_target_dir(&self, target: &Path) -> PathBuf {
        target.join(WASM_TARGET).join("release").join(self.artifact)
    }

    /// `explicit`, else `$env`; either must name a file. For programs that
    /// run a module built beforehand (`cargo xtask build-filter`).
    pub fn locate(&self, explicit: Option<&Path>) -> Result<PathBuf, LaunchError> {
        match explicit {
            Some(path) if path.is_file() => Ok(path.to_owned()),
            Some(path) => Err(LaunchError::MissingFile { path: path.to_owned() }),
            None => from_env(self.env)?.ok_or(LaunchError::NoModule { var: self.env }),
        }
    }

    /// `$env` when set (it must name a file); else a release build for
    /// `wasm32-wasip1`, once per process, into the running program's target
    /// directory, and its path.
    pub fn locate_or_build(&self) -> Result<PathBuf, LaunchError> {
        if let Some(path) = from_env(self.env)? {
            return Ok(path);
        }
        static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
        let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(path) = built.as_ref() {
            return Ok(path.clone());
        }
        let (_, target) = own_profile_dir()?;
        let mut args: Vec<std::ffi::OsString> = self.build_args().map(Into::into).to_vec();
        args.extend(["--target-dir".into(), target.clone().into_os_string()]);
        cargo_build(self.package, &args)?;
        let path = self.in_target_dir(&target);
        if !path.is_file() {
            return Err(LaunchError::BuiltButMissing { what: self.package, path });
        }
        *built = Some(path.clone());
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::FILTER_MODULE;
    use std::path::Path;

    #[test]
    fn the_module_lives_under_the_wasm_release_directory() {
        let path = FILTER_MODULE.in_target_dir(Path::new("/t"));
        assert_eq!(path, Path::new("/t/wasm32-wasip1/release/prefixgate_filter.wasm"));
        assert!(FILTER_MODULE.build_args().contains(&"wasm32-wasip1"));
    }
}
