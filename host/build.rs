//! Builds the routing filter (`prefixgate-filter`) for `wasm32-wasip1` and
//! embeds it in the binary.
//!
//! The filter is built by a nested cargo ([`prefixgate_filter_module`], the
//! one build the launch library and the filter's ABI test also use) with its
//! own target directory under `OUT_DIR`, so it never contends with the outer
//! build's lock. A missing wasm target fails the build with the setup command
//! to run. Set `PREFIXGATE_FILTER_WASM=/path/to/filter.wasm` to embed a
//! prebuilt module instead, or `PREFIXGATE_EMBED_FILTER=0` to embed nothing
//! (the binary then needs `--filter`).

use prefixgate_filter_module::{BuildError, FILTER_MODULE};
use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed={}", FILTER_MODULE.env);
    println!("cargo:rerun-if-env-changed=PREFIXGATE_EMBED_FILTER");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    let embedded = out_dir.join(FILTER_MODULE.artifact);
    let note = match build_or_locate(&out_dir) {
        Ok(Some(path)) => {
            if let Err(e) = std::fs::copy(&path, &embedded) {
                fail(&format!("copying {}: {e}", path.display()));
            }
            String::new()
        }
        Ok(None) => {
            write_empty(&embedded);
            "built with PREFIXGATE_EMBED_FILTER=0".to_owned()
        }
        Err(BuildError::TargetMissing) => fail(&BuildError::TargetMissing.to_string()),
        Err(e) => {
            let note = e.to_string();
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

/// The path of the filter module to embed, `None` when embedding is disabled,
/// or why the filter did not build.
fn build_or_locate(out_dir: &Path) -> Result<Option<PathBuf>, BuildError> {
    if env::var("PREFIXGATE_EMBED_FILTER").as_deref() == Ok("0") {
        return Ok(None);
    }
    if let Some(path) = FILTER_MODULE.prebuilt() {
        println!("cargo:rerun-if-changed={}", path.display());
        return Ok(Some(path));
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let root = manifest_dir.parent().unwrap_or(&manifest_dir).to_path_buf();
    for p in ["filter/src", "filter/Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    FILTER_MODULE.build(&root, &out_dir.join("filter-target")).map(Some)
}
