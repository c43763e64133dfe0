//! `cargo xtask envoy` and `cargo xtask envoy-swap`: run Envoy with the
//! freshly built filter in front of a list of backends, and roll a new filter
//! configuration out through ECDS.

use anyhow::{bail, Context, Result};
use prefixgate_launch::envoy_config::{
    plugin_config, render_bootstrap, render_ecds_resource, EnvoySpec, FilterMode, FilterSpec,
    UpstreamTimeouts,
};
use prefixgate_launch::PolicyKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Usage of the Envoy tasks, appended to the xtask usage text.
pub const USAGE: &str = "\
\x20 envoy --backends IP:PORT,... [--policy P] [--listen ADDR] [--admin ADDR] [--concurrency N]
        [--ecds DIR | --inline]
                  render the Envoy config for the backends, build the filter and run Envoy
                  (foreground); the filter config is read through ECDS from DIR/prefixgate.yaml
                  (default DIR: <target>/envoy/ecds), or with --inline from the bootstrap
  envoy-swap --config FILE.json [--dir DIR] [--wasm FILE]
                  roll out a new plugin config (and module) to that Envoy, without a restart
";

/// Name of the ECDS resource file inside the ECDS directory.
const ECDS_FILE: &str = "prefixgate.yaml";

/// Default ECDS directory: `<target>/envoy/ecds`.
fn default_ecds_dir() -> PathBuf {
    crate::paths::target_dir().join("envoy").join("ecds")
}

/// Options of `cargo xtask envoy`.
#[derive(Debug)]
struct EnvoyArgs {
    backends: Vec<SocketAddr>,
    policy: PolicyKind,
    listen: SocketAddr,
    admin: SocketAddr,
    concurrency: u32,
    ecds: PathBuf,
    inline: bool,
}

/// Reads `--flag value` pairs; every flag must be known.
fn flags<'a>(args: &'a [String], known: &[&str]) -> Result<Vec<(&'a str, &'a str)>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if !known.contains(&flag.as_str()) {
            bail!("unknown option `{flag}` (expected one of {})", known.join(", "));
        }
        let value = it.next().with_context(|| format!("`{flag}` needs a value"))?;
        out.push((flag.as_str(), value.as_str()));
    }
    Ok(out)
}

fn parse_addr(flag: &str, value: &str) -> Result<SocketAddr> {
    value.parse().with_context(|| format!("{flag}: `{value}` is not an ip:port address"))
}

fn parse_envoy_args(args: &[String]) -> Result<EnvoyArgs> {
    let mut parsed = EnvoyArgs {
        backends: Vec::new(),
        policy: PolicyKind::PrefixAware,
        listen: SocketAddr::from(([127, 0, 0, 1], 10000)),
        admin: SocketAddr::from(([127, 0, 0, 1], 9901)),
        concurrency: 2,
        ecds: default_ecds_dir(),
        inline: args.iter().any(|a| a == "--inline"),
    };
    let args: Vec<String> = args.iter().filter(|a| *a != "--inline").cloned().collect();
    for (flag, value) in
        flags(&args, &["--backends", "--policy", "--listen", "--admin", "--concurrency", "--ecds"])?
    {
        match flag {
            "--backends" => {
                parsed.backends = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| parse_addr("--backends", s.trim()))
                    .collect::<Result<_>>()?;
            }
            "--policy" => {
                parsed.policy = value.parse().context("--policy")?;
            }
            "--listen" => parsed.listen = parse_addr(flag, value)?,
            "--admin" => parsed.admin = parse_addr(flag, value)?,
            "--concurrency" => {
                parsed.concurrency = value.parse().with_context(|| format!("--concurrency: `{value}`"))?;
            }
            _ => parsed.ecds = PathBuf::from(value),
        }
    }
    if parsed.backends.is_empty() {
        bail!("--backends is required, e.g. --backends 127.0.0.1:8001,127.0.0.1:8002");
    }
    Ok(parsed)
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
pub fn envoy(args: &[String], wasm: &Path) -> Result<()> {
    let args = parse_envoy_args(args)?;
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
        let dir = absolute(&args.ecds)?;
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
        backends: args.backends,
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
pub fn envoy_swap(args: &[String], built_wasm: impl FnOnce() -> Result<PathBuf>) -> Result<()> {
    let mut config = None;
    let mut dir = default_ecds_dir();
    let mut wasm = None;
    for (flag, value) in flags(args, &["--config", "--dir", "--wasm"])? {
        match flag {
            "--config" => config = Some(PathBuf::from(value)),
            "--dir" => dir = PathBuf::from(value),
            _ => wasm = Some(PathBuf::from(value)),
        }
    }
    let config = config.context("--config FILE.json is required (the new plugin configuration)")?;
    let text =
        std::fs::read_to_string(&config).with_context(|| format!("cannot read {}", config.display()))?;
    // Refused here, not by Envoy after the rollout: the old filter keeps serving.
    let mut spec = FilterSpec::from_json(String::new(), text.as_bytes())
        .with_context(|| format!("{} is refused", config.display()))?;
    let version = new_version();
    // The label makes every rollout a different config: ECDS ignores an
    // update whose hash equals the last one.
    spec.config.version = Some(version.clone());
    let plugin_config = spec.plugin_config_json();
    let wasm = match wasm {
        Some(w) => w,
        None => built_wasm()?,
    };
    let dir = absolute(&dir)?;
    let resource = write_rollout(&dir, &wasm, spec, &version)?;
    eprintln!("xtask: rolled out {} as {version}: {plugin_config}", resource.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn envoy_args_parse_backends_and_defaults() {
        let args =
            parse_envoy_args(&strings(&["--backends", "127.0.0.1:8001,127.0.0.1:8002", "--policy", "pow2"]))
                .unwrap();
        assert_eq!(args.backends.len(), 2);
        assert_eq!(args.policy, PolicyKind::Pow2);
        assert_eq!(args.listen.port(), 10000);
    }

    #[test]
    fn envoy_args_reject_unknown_flags_and_bad_addresses() {
        assert!(parse_envoy_args(&strings(&["--backend", "x"])).is_err());
        assert!(parse_envoy_args(&strings(&["--backends", "localhost:80"])).is_err());
        assert!(parse_envoy_args(&strings(&[])).is_err());
        assert!(parse_envoy_args(&strings(&["--backends", "127.0.0.1:1", "--policy", "fastest"])).is_err());
    }
}
