//! The router a strategy runs behind: `prefixgate` with the embedded filter,
//! or Envoy with the filter module, both started as processes.

use super::component::{find_executable, Component, LogFiles};
use super::config::{Router, Strategy};
use super::envoy_config::{
    listener_address, render_bootstrap, EnvoySpec, FilterMode, FilterSpec, UpstreamTimeouts,
};
use crate::load::client::{get, http_client};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Longest wait for one answer of Envoy's admin listener during startup.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The programs a router needs, found once per sweep.
#[derive(Clone, Debug)]
pub enum RouterPrograms {
    /// The `prefixgate` executable, and a filter module to run instead of its embedded one.
    Prefixgate(PathBuf, Option<PathBuf>),
    /// The `envoy` executable and the filter module.
    Envoy {
        /// `envoy`.
        envoy: PathBuf,
        /// `prefixgate_filter.wasm`.
        wasm: PathBuf,
    },
}

impl RouterPrograms {
    /// Finds the programs of `router`; explicit paths win over the environment.
    pub fn find(
        router: Router,
        prefixgate: Option<&Path>,
        envoy: Option<&Path>,
        wasm: Option<&Path>,
    ) -> Result<Self> {
        Ok(match router {
            Router::Prefixgate => Self::Prefixgate(
                find_executable(
                    prefixgate,
                    "PREFIXGATE_BIN",
                    "prefixgate",
                    "build it with `cargo build --release -p prefixgate`",
                )?,
                wasm.map(Path::to_owned),
            ),
            Router::Envoy => {
                let envoy =
                    find_executable(envoy, "ENVOY_BIN", "envoy", "`cargo xtask setup` installs Envoy 1.40")?;
                let wasm = match wasm.map(Path::to_owned).or_else(|| std::env::var_os("PREFIXGATE_FILTER_WASM").map(PathBuf::from)) {
                    Some(p) => p,
                    None => bail!("Envoy needs the filter module: pass --filter-wasm or set PREFIXGATE_FILTER_WASM (`cargo xtask build-filter` prints its path)"),
                };
                if !wasm.is_file() {
                    bail!(
                        "filter module {} not found (`cargo xtask build-filter` builds it)",
                        wasm.display()
                    );
                }
                Self::Envoy { envoy, wasm }
            }
        })
    }
}

/// A router serving in front of the fleet.
#[derive(Debug)]
pub struct StartedRouter {
    /// The process, killed when dropped.
    pub process: Component,
    /// Its listener, `http://ip:port`.
    pub base_url: String,
    /// The plugin configuration JSON the filter was given.
    pub plugin_config: String,
}

/// Starts the router for `strategy` in front of `backends` on `port` (0: a
/// free one) and returns it once it serves.
pub async fn start_router(
    programs: &RouterPrograms,
    strategy: &Strategy,
    backends: &[String],
    port: u16,
    logs: &LogFiles,
    timeout: Duration,
) -> Result<StartedRouter> {
    let config = strategy.filter_config(backends);
    match programs {
        RouterPrograms::Prefixgate(bin, wasm) => {
            config.validate().context("plugin configuration")?;
            let plugin_config = serde_json::to_string(&config).context("plugin configuration")?;
            let mut cmd = Command::new(bin);
            if let Some(wasm) = wasm {
                cmd.arg("--filter").arg(wasm);
            }
            cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--admin", "127.0.0.1:0"]).args([
                "--backends",
                &backends.join(","),
                "--plugin-config",
                &plugin_config,
            ]);
            let mut process = Component::spawn("prefixgate", cmd, logs)?;
            let listening = process.wait_for_lines("prefixgate listening on ", 1, timeout).await?;
            let base_url = listening[0].split_whitespace().next().unwrap_or_default().to_owned();
            Ok(StartedRouter { process, base_url, plugin_config })
        }
        RouterPrograms::Envoy { envoy, wasm } => {
            let addrs: Vec<SocketAddr> = backends
                .iter()
                .map(|b| b.parse().with_context(|| format!("backend `{b}` is not ip:port")))
                .collect::<Result<_>>()?;
            // Port 0 (the listener's, unless one is asked for, and the
            // admin's): Envoy binds, and the addresses are read back.
            let listen = SocketAddr::from(([127, 0, 0, 1], port));
            let admin = SocketAddr::from(([127, 0, 0, 1], 0));
            let filter = FilterSpec::new(wasm.to_string_lossy(), config).context("plugin configuration")?;
            let plugin_config = filter.plugin_config_json();
            let spec = EnvoySpec {
                listen,
                admin,
                backends: addrs,
                mode: FilterMode::Inline(Box::new(filter)),
                timeouts: UpstreamTimeouts::default(),
            };
            let bootstrap = logs.stdout.with_extension("envoy.yaml");
            std::fs::write(&bootstrap, render_bootstrap(&spec))
                .with_context(|| format!("writing {}", bootstrap.display()))?;
            let admin_path = logs.stdout.with_extension("admin-address");
            // A stale file from an earlier run would name a dead admin.
            let _ = std::fs::remove_file(&admin_path);
            let mut cmd = Command::new(envoy);
            cmd.arg("-c")
                .arg(&bootstrap)
                .args(["--concurrency", "2", "--disable-hot-restart", "--admin-address-path"])
                .arg(&admin_path);
            let mut process = Component::spawn("envoy", cmd, logs)?;
            let listen = wait_ready(&mut process, &admin_path, timeout, logs).await?;
            Ok(StartedRouter { process, base_url: format!("http://{listen}"), plugin_config })
        }
    }
}

/// Waits until Envoy has written its admin address to `admin_path`, its
/// listener is bound and `/ready` answers `LIVE`; returns the listener's
/// address.
async fn wait_ready(
    router: &mut Component,
    admin_path: &Path,
    timeout: Duration,
    logs: &LogFiles,
) -> Result<SocketAddr> {
    let client = http_client();
    let deadline = Instant::now() + timeout;
    let mut listen = None;
    loop {
        if !router.is_running() {
            bail!("envoy exited during startup:\n{}", logs.tail(20));
        }
        let admin = std::fs::read_to_string(admin_path).ok().filter(|a| !a.trim().is_empty());
        if let Some(admin) = admin.as_deref().map(str::trim) {
            if listen.is_none() {
                let answer =
                    get(&client, &format!("http://{admin}/listeners?format=json"), ADMIN_TIMEOUT).await;
                listen = answer.ok().and_then(|a| listener_address(&String::from_utf8_lossy(&a)).ok());
            }
            if let Some(listen) = listen {
                let ready = get(&client, &format!("http://{admin}/ready"), ADMIN_TIMEOUT).await;
                if ready.is_ok_and(|body| body.trim_ascii() == b"LIVE") {
                    return Ok(listen);
                }
            }
        }
        if Instant::now() >= deadline {
            bail!("envoy not ready within {:.0} s:\n{}", timeout.as_secs_f64(), logs.tail(20));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
