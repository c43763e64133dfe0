//! How a crate of this repository becomes a proxy-wasm module: the Rust
//! target, the `cargo build` arguments, where cargo puts the module, and one
//! nested build of it ([`build_module`]).
//!
//! Three places build the routing filter (`prefixgate-filter`, module
//! `prefixgate_filter.wasm`) and must agree: the host's build script (which
//! embeds it in `prefixgate`), the launch library (which builds it on demand
//! for Envoy, the tests and the benchmarks) and the filter's own ABI test.
//! They all go through [`Module::build`]. The hosts' test modules (each a
//! crate with a workspace of its own) are built by the same function. The
//! crate has no other dependency than `thiserror`, so a build script can use
//! it cheaply.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// The Rust target the filter module is compiled for: WASI preview 1, which
/// both Envoy and the prefixgate host load.
pub const WASM_TARGET: &str = "wasm32-wasip1";

/// Environment variables of an outer cargo build that a nested build of the
/// module must not inherit: flags, wrappers and target meant for the host
/// (clippy, coverage, a cross target).
const HOST_ONLY_VARS: [&str; 6] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_TARGET",
    "CLIPPY_ARGS",
];

/// Lines of cargo's stderr kept in [`BuildError::Failed`].
const STDERR_TAIL_LINES: usize = 15;

/// A proxy-wasm module built from a workspace package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    /// The cargo package it is built from.
    pub package: &'static str,
    /// The artifact's file name.
    pub artifact: &'static str,
    /// The environment variable that names a module built beforehand.
    pub env: &'static str,
}

/// The routing filter.
pub const FILTER_MODULE: Module = Module {
    package: "prefixgate-filter",
    artifact: "prefixgate_filter.wasm",
    env: "PREFIXGATE_FILTER_WASM",
};

/// Why the module could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The toolchain has no standard library for [`WASM_TARGET`].
    #[error(
        "the {WASM_TARGET} target is missing: run `cargo xtask setup` (or `rustup target add {WASM_TARGET}`)"
    )]
    TargetMissing,
    /// Cargo could not be started.
    #[error("running {cargo:?}")]
    Spawn {
        /// The cargo program.
        cargo: OsString,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// Cargo ran and failed.
    #[error("`cargo build {args}` failed ({status}):\n{stderr_tail}")]
    Failed {
        /// The arguments given to `cargo build`.
        args: String,
        /// How cargo exited.
        status: ExitStatus,
        /// The last lines cargo wrote to stderr.
        stderr_tail: String,
    },
    /// Cargo succeeded but the module is not where a release build puts it.
    #[error("cargo finished but {} is missing", path.display())]
    Missing {
        /// Where the module was expected.
        path: PathBuf,
    },
}

impl Module {
    /// The module `$env` names, when it is set and not empty (a module built
    /// beforehand, used instead of building one).
    pub fn prebuilt(&self) -> Option<PathBuf> {
        std::env::var_os(self.env).filter(|p| !p.is_empty()).map(PathBuf::from)
    }

    /// Builds the module from the workspace at `workspace` into `target_dir`
    /// ([`build_module`] with [`Crate::Package`]) and returns its path.
    pub fn build(&self, workspace: &Path, target_dir: &Path) -> Result<PathBuf, BuildError> {
        build_module(Crate::Package { workspace, name: self.package }, self.artifact, target_dir)
    }
}

/// The crate a module is built from.
#[derive(Clone, Copy, Debug)]
pub enum Crate<'a> {
    /// A package of the workspace at `workspace` (the routing filter).
    Package {
        /// The workspace's root directory.
        workspace: &'a Path,
        /// The package's name.
        name: &'a str,
    },
    /// A crate with a workspace of its own (the hosts' test modules), by its manifest.
    Manifest(&'a Path),
}

impl Crate<'_> {
    /// The arguments after `cargo build` that select the crate and the target.
    fn build_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = match self {
            Crate::Package { name, .. } => vec!["--package".into(), (*name).into()],
            Crate::Manifest(manifest) => vec!["--manifest-path".into(), manifest.as_os_str().to_owned()],
        };
        args.extend(["--release".into(), "--target".into(), WASM_TARGET.into()]);
        args
    }
}

/// Where a release build for [`WASM_TARGET`] puts `artifact` under cargo's target directory `target`.
fn in_target_dir(target: &Path, artifact: &str) -> PathBuf {
    target.join(WASM_TARGET).join("release").join(artifact)
}

/// Builds `krate` for [`WASM_TARGET`] (release) with the cargo running this
/// process (`$CARGO`, else `cargo` on `PATH`) into `target_dir`, and returns
/// the path of `artifact`. The outer build's host-only flags are dropped, and
/// `--offline` is passed on when `$CARGO_NET_OFFLINE` asks for it. Cargo's
/// output is captured; a failure carries the tail of its stderr.
pub fn build_module(krate: Crate<'_>, artifact: &str, target_dir: &Path) -> Result<PathBuf, BuildError> {
    if !wasm_target_installed() {
        return Err(BuildError::TargetMissing);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = krate.build_args();
    let mut cmd = Command::new(&cargo);
    if let Crate::Package { workspace, .. } = krate {
        cmd.current_dir(workspace);
    }
    cmd.arg("build").args(&args).arg("--target-dir").arg(target_dir);
    if std::env::var("CARGO_NET_OFFLINE").as_deref() == Ok("true") {
        cmd.arg("--offline");
    }
    for var in HOST_ONLY_VARS {
        cmd.env_remove(var);
    }
    let output = cmd.output().map_err(|source| BuildError::Spawn { cargo: cargo.clone(), source })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        return Err(BuildError::Failed { args: args.join(" "), status: output.status, stderr_tail: tail });
    }
    let path = in_target_dir(target_dir, artifact);
    if path.is_file() {
        Ok(path)
    } else {
        Err(BuildError::Missing { path })
    }
}

/// Whether the toolchain that runs this build (`$RUSTC`, else `rustc`) has
/// the standard library for [`WASM_TARGET`]. When `rustc` cannot be asked,
/// this says yes and lets cargo report the fault.
pub fn wasm_target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return true;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Path::new(&sysroot).join("lib/rustlib").join(WASM_TARGET).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_lives_under_the_wasm_release_directory() {
        let path = in_target_dir(Path::new("/t"), FILTER_MODULE.artifact);
        assert_eq!(path, Path::new("/t/wasm32-wasip1/release/prefixgate_filter.wasm"));
        let krate = Crate::Package { workspace: Path::new("/w"), name: FILTER_MODULE.package };
        assert_eq!(
            krate.build_args(),
            ["--package", "prefixgate-filter", "--release", "--target", WASM_TARGET].map(OsString::from)
        );
    }

    #[test]
    fn a_package_that_does_not_exist_fails_with_cargo_s_own_words() {
        let missing = Module { package: "no-such-package-here", artifact: "x.wasm", env: "UNUSED" };
        let dir = std::env::temp_dir().join(format!("filter-module-test-{}", std::process::id()));
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
        match missing.build(workspace, &dir) {
            Err(BuildError::Failed { stderr_tail, args, .. }) => {
                assert!(stderr_tail.contains("no-such-package-here"), "{stderr_tail}");
                assert!(args.contains("no-such-package-here"));
            }
            // Without the wasm target the build stops before cargo runs.
            Err(BuildError::TargetMissing) => assert!(!wasm_target_installed()),
            other => panic!("expected a failed build, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_manifest_that_does_not_exist_fails_naming_it() {
        let manifest = std::env::temp_dir().join("no-such-module-crate").join("Cargo.toml");
        let dir = std::env::temp_dir().join(format!("filter-module-manifest-test-{}", std::process::id()));
        match build_module(Crate::Manifest(&manifest), "x.wasm", &dir) {
            Err(BuildError::Failed { stderr_tail, args, .. }) => {
                assert!(stderr_tail.contains("no-such-module-crate"), "{stderr_tail}");
                assert!(args.starts_with("--manifest-path "), "{args}");
            }
            Err(BuildError::TargetMissing) => assert!(!wasm_target_installed()),
            other => panic!("expected a failed build, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
