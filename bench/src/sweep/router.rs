//! The router a strategy runs behind: `prefixgate` with the embedded filter,
//! or Envoy with the filter module, both started as processes.

use super::component::{find_executable, Component, LogFiles};
use super::config::{Router, Strategy};
use super::envoy_config::{render_bootstrap, EnvoySpec, FilterMode, FilterSpec, UpstreamTimeouts};
use crate::load::client::http_client;
use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Starts the router for `strategy` in front of `backends` on `port` (0: a
/// free one) and returns it with its base URL once it serves.
pub async fn start_router(
    programs: &RouterPrograms,
    strategy: &Strategy,
    backends: &[String],
    port: u16,
    logs: &LogFiles,
    timeout: Duration,
) -> Result<(Component, String)> {
    match programs {
        RouterPrograms::Prefixgate(bin, wasm) => {
            let plugin_config = strategy.plugin_config(backends).to_string();
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
            let mut router = Component::spawn("prefixgate", cmd, logs)?;
            let listening = router.wait_for_lines("prefixgate listening on ", 1, timeout).await?;
            let base_url = listening[0].split_whitespace().next().unwrap_or_default().to_owned();
            Ok((router, base_url))
        }
        RouterPrograms::Envoy { envoy, wasm } => {
            let addrs: Vec<SocketAddr> = backends
                .iter()
                .map(|b| b.parse().with_context(|| format!("backend `{b}` is not ip:port")))
                .collect::<Result<_>>()?;
            let listen = SocketAddr::from(([127, 0, 0, 1], if port == 0 { free_port()? } else { port }));
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let plugin_config = strategy.plugin_config(backends).to_string();
            let filter = FilterSpec::from_json(wasm.to_string_lossy(), plugin_config.as_bytes())
                .with_context(|| format!("plugin configuration {plugin_config}"))?;
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
            let mut cmd = Command::new(envoy);
            cmd.arg("-c").arg(&bootstrap).args(["--concurrency", "2", "--disable-hot-restart"]);
            let mut router = Component::spawn("envoy", cmd, logs)?;
            wait_ready(&mut router, admin, timeout, logs).await?;
            Ok((router, format!("http://{listen}")))
        }
    }
}

/// A port that was free a moment ago (Envoy needs it in its bootstrap).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("finding a free port")?.port())
}

/// Waits until Envoy's admin `/ready` answers `LIVE`.
async fn wait_ready(
    router: &mut Component,
    admin: SocketAddr,
    timeout: Duration,
    logs: &LogFiles,
) -> Result<()> {
    let client = http_client();
    let deadline = Instant::now() + timeout;
    let uri = format!("http://{admin}/ready");
    loop {
        if !router.is_running() {
            bail!("envoy exited during startup:\n{}", logs.tail(20));
        }
        if let Ok(request) = hyper::Request::get(&uri).body(Full::default()) {
            if let Ok(Ok(response)) =
                tokio::time::timeout(Duration::from_secs(2), client.request(request)).await
            {
                if let Ok(body) = response.into_body().collect().await {
                    if body.to_bytes().trim_ascii() == b"LIVE" {
                        return Ok(());
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            bail!("envoy not ready within {:.0} s:\n{}", timeout.as_secs_f64(), logs.tail(20));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
