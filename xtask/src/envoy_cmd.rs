//! `cargo xtask envoy` and `cargo xtask envoy-swap`: run Envoy with the
//! freshly built filter in front of a list of backends, and roll a new filter
//! configuration out through ECDS.

use anyhow::{Context, Result};
use prefixgate_launch::envoy_config::{
    plugin_config, render_bootstrap, render_ecds_resource, EnvoySpec, FilterMode, FilterSpec,
    UpstreamTimeouts,
};
use prefixgate_launch::{check_filter, PolicyKind, PREFIXGATE};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Name of the ECDS resource file inside the ECDS directory.
const ECDS_FILE: &str = "prefixgate.yaml";

/// Default ECDS directory: `<target>/envoy/ecds`.
fn default_ecds_dir() -> PathBuf {
    crate::paths::target_dir().join("envoy").join("ecds")
}

/// Options of `cargo xtask envoy`.
#[derive(Debug, PartialEq, clap::Args)]
pub struct EnvoyArgs {
    /// The replicas, `ip:port,ip:port,...`.
    #[arg(long, required = true, value_delimiter = ',', value_parser = parse_addr)]
    backends: Vec<SocketAddr>,
    /// Routing policy: round_robin, pow2, prefix_aware or least_ttft.
    #[arg(long, default_value = "prefix_aware")]
    policy: PolicyKind,
    /// Envoy's listener.
    #[arg(long, default_value = "127.0.0.1:10000", value_parser = parse_addr)]
    listen: SocketAddr,
    /// Envoy's admin listener.
    #[arg(long, default_value = "127.0.0.1:9901", value_parser = parse_addr)]
    admin: SocketAddr,
    /// Envoy worker threads.
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
    /// ECDS directory (default `<target>/envoy/ecds`).
    #[arg(long, value_name = "DIR", conflicts_with = "inline")]
    ecds: Option<PathBuf>,
    /// The filter config inline in the bootstrap, instead of through ECDS.
    #[arg(long)]
    inline: bool,
}

/// Options of `cargo xtask envoy-swap`.
#[derive(Debug, PartialEq, clap::Args)]
pub struct SwapArgs {
    /// The new plugin configuration (JSON).
    #[arg(long, value_name = "FILE.json")]
    config: PathBuf,
    /// The ECDS directory the running Envoy watches (default `<target>/envoy/ecds`).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The module to roll out with it (default: the one just built). It is
    /// rolled out only if `prefixgate check` passes it with the new config.
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
}

/// An `ip:port` address, blanks around it ignored.
fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value.trim().parse().map_err(|_| format!("`{value}` is not an ip:port address"))
}

/// A rollout label unique to this moment, e.g. `v1764412345123`.
fn new_version() -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    format!("v{millis}")
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// Writes `contents` to `dir/name` by writing a temporary file in `dir` and
/// renaming it over the target, the only kind of update Envoy's file
/// watcher picks up.
fn write_atomically(dir: &Path, name: &str, contents: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), target.display()))?;
    Ok(target)
}

/// Copies the module to a versioned file in `dir`, so that a later build
/// cannot change the code a running config points at.
fn stage_module(wasm: &Path, dir: &Path, version: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let staged = dir.join(format!("prefixgate-{version}.wasm"));
    std::fs::copy(wasm, &staged)
        .with_context(|| format!("cannot copy {} to {}", wasm.display(), staged.display()))?;
    absolute(&staged)
}

/// Writes one ECDS rollout into `dir` and returns the resource file's path.
fn write_rollout(dir: &Path, wasm: &Path, mut spec: FilterSpec, version: &str) -> Result<PathBuf> {
    let staged = stage_module(wasm, dir, version)?;
    spec.wasm_path = staged.to_string_lossy().into_owned();
    write_atomically(dir, ECDS_FILE, &render_ecds_resource(&spec, version))
}

/// `cargo xtask envoy`: render, build, run in the foreground.
pub fn envoy(args: &EnvoyArgs, wasm: &Path) -> Result<()> {
    let envoy = crate::envoy::ensure_envoy()?;
    let version = new_version();
    let mut config = plugin_config(args.policy, &args.backends);
    config.version = Some(version.clone());
    let spec = FilterSpec::new(String::new(), config).context("the rendered plugin configuration")?;
    let out_dir = crate::paths::target_dir().join("envoy");
    let mode = if args.inline {
        let wasm_path = stage_module(wasm, &out_dir, &version)?.to_string_lossy().into_owned();
        FilterMode::Inline(Box::new(FilterSpec { wasm_path, ..spec }))
    } else {
        // Through ECDS by default, so that `envoy-swap` can roll out the next config.
        let dir = absolute(&args.ecds.clone().unwrap_or_else(default_ecds_dir))?;
        let resource = write_rollout(&dir, wasm, spec, &version)?;
        eprintln!(
            "xtask: filter config {} (roll out a new one with `cargo xtask envoy-swap --config new.json --dir {}`)",
            resource.display(),
            dir.display()
        );
        FilterMode::Ecds { path: resource.to_string_lossy().into_owned() }
    };
    let spec = EnvoySpec {
        listen: args.listen,
        admin: args.admin,
        backends: args.backends.clone(),
        mode,
        timeouts: UpstreamTimeouts::default(),
    };
    let bootstrap = write_atomically(&out_dir, "envoy.yaml", &render_bootstrap(&spec))?;
    eprintln!(
        "xtask: Envoy on http://{} (admin http://{}), config {}",
        args.listen,
        args.admin,
        bootstrap.display()
    );
    crate::run::status(
        Command::new(envoy).arg("-c").arg(&bootstrap).args([
            "--concurrency",
            &args.concurrency.to_string(),
            "--log-level",
            "warn",
        ]),
        "envoy",
    )
}

/// `cargo xtask envoy-swap`: writes the next ECDS rollout.
pub fn envoy_swap(args: &SwapArgs, built_wasm: impl FnOnce() -> Result<PathBuf>) -> Result<()> {
    let config = &args.config;
    let text =
        std::fs::read_to_string(config).with_context(|| format!("cannot read {}", config.display()))?;
    // Refused here, not by Envoy after the rollout: the old filter keeps serving.
    let mut spec = FilterSpec::from_json(String::new(), text.as_bytes())
        .with_context(|| format!("{} is refused", config.display()))?;
    let version = new_version();
    // The label makes every rollout a different config: ECDS ignores an
    // update whose hash equals the last one.
    spec.config.version = Some(version.clone());
    let plugin_config = spec.plugin_config_json();
    let wasm = match &args.wasm {
        Some(w) => w.clone(),
        None => built_wasm()?,
    };
    // Envoy applies whatever module it is served, so the hot swap's own
    // checks (a canary request and a tick through the module configured
    // with this plugin configuration) run first, in `prefixgate check`.
    let prefixgate = PREFIXGATE.locate_or_build().context("the rollout checks the filter with prefixgate")?;
    let passed = check_filter(&prefixgate, &wasm, &plugin_config)
        .context("not rolled out: the running Envoy keeps its filter")?;
    eprintln!("xtask: {passed}");
    let dir = absolute(&args.dir.clone().unwrap_or_else(default_ecds_dir))?;
    let resource = write_rollout(&dir, &wasm, spec, &version)?;
    eprintln!("xtask: rolled out {} as {version}: {plugin_config}", resource.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: EnvoyArgs,
    }

    fn parse(args: &[&str]) -> Result<EnvoyArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("envoy").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn envoy_args_parse_backends_and_defaults() {
        let args = parse(&["--backends", "127.0.0.1:8001, 127.0.0.1:8002", "--policy", "pow2"]).unwrap();
        assert_eq!(args.backends.len(), 2);
        assert_eq!(args.policy, PolicyKind::Pow2);
        assert_eq!(args.listen.port(), 10000);
        assert_eq!((args.admin.port(), args.concurrency, args.inline, args.ecds), (9901, 2, false, None));
    }

    #[test]
    fn envoy_args_reject_unknown_flags_and_bad_addresses() {
        assert!(parse(&["--backend", "x"]).is_err());
        assert!(parse(&["--backends", "localhost:80"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--backends", "127.0.0.1:1", "--policy", "fastest"]).is_err());
        assert!(
            parse(&["--backends", "127.0.0.1:1", "--inline", "--ecds", "d"]).is_err(),
            "one or the other"
        );
    }
}
