//! Builds the routing filter (`prefixgate-filter`) for `wasm32-wasip1` and
//! embeds it in the binary.
//!
//! The filter is built by a nested cargo with its own target directory under
//! `OUT_DIR`, so it never contends with the outer build's lock. A missing
//! wasm target fails the build with the setup command to run. Set
//! `PREFIXGATE_FILTER_WASM=/path/to/filter.wasm` to embed a prebuilt module
//! instead, or `PREFIXGATE_EMBED_FILTER=0` to embed nothing (the binary then
//! needs `--filter`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";

fn main() {
    println!("cargo:rerun-if-env-changed=PREFIXGATE_FILTER_WASM");
    println!("cargo:rerun-if-env-changed=PREFIXGATE_EMBED_FILTER");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    let embedded = out_dir.join("prefixgate_filter.wasm");
    let note = match build_or_locate(&out_dir) {
        Ok(Some(path)) => {
            if let Err(e) = std::fs::copy(&path, &embedded) {
                fail(&format!("copying {}: {e}", path.display()));
            }
            String::new()
        }
        Ok(None) => {
            write_empty(&embedded);
            "built with PREFIXGATE_EMBED_FILTER=0".to_string()
        }
        Err(note) => {
            println!("cargo:warning=prefixgate: routing filter not embedded: {note}");
            write_empty(&embedded);
            note
        }
    };
    println!("cargo:rustc-env=PREFIXGATE_EMBEDDED_FILTER_NOTE={}", note.replace('\n', " "));
}

fn write_empty(path: &Path) {
    if let Err(e) = std::fs::write(path, b"") {
        fail(&format!("writing {}: {e}", path.display()));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

/// Returns the path of the filter module to embed, `None` when embedding is
/// disabled, or an explanation when the filter crate does not build.
fn build_or_locate(out_dir: &Path) -> Result<Option<PathBuf>, String> {
    if env::var("PREFIXGATE_EMBED_FILTER").as_deref() == Ok("0") {
        return Ok(None);
    }
    if let Ok(path) = env::var("PREFIXGATE_FILTER_WASM") {
        println!("cargo:rerun-if-changed={path}");
        return Ok(Some(PathBuf::from(path)));
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let root = manifest_dir.parent().unwrap_or(&manifest_dir).to_path_buf();
    for p in ["filter/src", "filter/Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    if !target_installed() {
        fail("wasm32-wasip1 target missing: run `cargo xtask setup` (or `rustup target add wasm32-wasip1`)");
    }
    let target_dir = out_dir.join("filter-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "-p", "prefixgate-filter", "--release", "--target", TARGET])
        .env("CARGO_TARGET_DIR", &target_dir);
    // The outer build's flags and wrappers (clippy, coverage) are for the
    // host target; the nested build must not inherit them.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CLIPPY_ARGS",
    ] {
        cmd.env_remove(var);
    }
    if env::var("CARGO_NET_OFFLINE").as_deref() == Ok("true") {
        cmd.arg("--offline");
    }
    let output = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "`cargo build -p prefixgate-filter --target {TARGET}` failed:\n{}",
            tail.join("\n")
        ));
    }
    let wasm = target_dir.join(TARGET).join("release").join("prefixgate_filter.wasm");
    if !wasm.exists() {
        return Err(format!("{} was not produced", wasm.display()));
    }
    Ok(Some(wasm))
}

fn target_installed() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return true;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot).join("lib/rustlib").join(TARGET).exists()
}
