//! The router a strategy runs behind: `prefixgate` with the embedded filter
//! (or a given module), or Envoy with the filter module, both started as
//! processes through the launch crate.

use super::config::{Router, Strategy};
use super::envoy_config::{EnvoySpec, FilterMode, FilterSpec, UpstreamTimeouts};
use super::logs::LogFiles;
use anyhow::{Context, Result};
use prefixgate_filter::FilterConfig;
use prefixgate_launch::{
    EnvoyOptions, EnvoyProcess, Locate as _, PrefixgateProcess, FILTER_MODULE, PREFIXGATE,
};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
            Router::Prefixgate => Self::Prefixgate(PREFIXGATE.locate(prefixgate)?, wasm.map(Path::to_owned)),
            Router::Envoy => Self::Envoy {
                envoy: EnvoyProcess::locate(envoy)?,
                wasm: FILTER_MODULE.locate(wasm).context("Envoy needs the filter module (--filter-wasm)")?,
            },
        })
    }
}

/// A router process, killed when dropped.
#[derive(Debug)]
pub enum RouterProcess {
    /// `prefixgate`.
    Prefixgate(PrefixgateProcess),
    /// Envoy with the filter.
    Envoy(EnvoyProcess),
}

impl RouterProcess {
    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self {
            Self::Prefixgate(p) => p.is_running(),
            Self::Envoy(e) => e.is_running(),
        }
    }

    /// The program's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Prefixgate(_) => "prefixgate",
            Self::Envoy(_) => "envoy",
        }
    }
}

/// A router serving in front of the fleet.
#[derive(Debug)]
pub struct StartedRouter {
    /// The process.
    pub process: RouterProcess,
    /// Its listener, `http://ip:port`.
    pub base_url: String,
    /// The plugin configuration JSON the filter was given.
    pub plugin_config: String,
}

/// The filter's settings that measure the fleet's time, set for replicas simulated at
/// `time_scale` (simulated seconds per wall second): such a fleet prefills `time_scale`
/// times as many tokens per wall second and changes as much between two scrapes as a real
/// one does in `time_scale` times the interval. Scaling both lets the router see the
/// simulated fleet as it would see real GPUs, as the lab's router does in simulated time.
/// Timeouts and ejection times are left as they are: they bound the proxy, not the fleet.
pub fn scale_fleet_time(config: &mut FilterConfig, time_scale: f64) {
    if !(time_scale.is_finite() && time_scale > 0.0) || time_scale == 1.0 {
        return;
    }
    config.prefill_tokens_per_s *= time_scale;
    if config.scrape_interval_ms > 0 {
        config.scrape_interval_ms = ((config.scrape_interval_ms as f64 / time_scale).round() as u64).max(1);
    }
}

/// Starts the router for `strategy` (labelled `label`) in front of
/// `backends` on `port` (0: a free one), with the fleet's time settings for replicas
/// simulated at `time_scale` ([`scale_fleet_time`]), and returns it once it serves.
#[allow(clippy::too_many_arguments, reason = "one call site, each argument a distinct setting")]
pub async fn start_router(
    programs: &RouterPrograms,
    label: &str,
    strategy: &Strategy,
    backends: &[SocketAddr],
    time_scale: f64,
    port: u16,
    logs: &LogFiles,
    timeout: Duration,
) -> Result<StartedRouter> {
    let backend_list: Vec<String> = backends.iter().map(SocketAddr::to_string).collect();
    let mut config = strategy.filter_config(&backend_list);
    scale_fleet_time(&mut config, time_scale);
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    match programs {
        RouterPrograms::Prefixgate(bin, wasm) => {
            config.validate().context("plugin configuration")?;
            let plugin_config = serde_json::to_string(&config).context("plugin configuration")?;
            let mut args: Vec<OsString> = Vec::new();
            if let Some(wasm) = wasm {
                args.extend(["--filter".into(), wasm.into()]);
            }
            args.extend([
                "--backends".into(),
                backend_list.join(",").into(),
                "--plugin-config".into(),
                plugin_config.clone().into(),
            ]);
            let process = PrefixgateProcess::start_on(bin, args, listen, logs.output(), timeout).await?;
            let base_url = process.base_url().to_owned();
            Ok(StartedRouter { process: RouterProcess::Prefixgate(process), base_url, plugin_config })
        }
        RouterPrograms::Envoy { envoy, wasm } => {
            let filter = FilterSpec::new(wasm.to_string_lossy(), config).context("plugin configuration")?;
            let plugin_config = filter.plugin_config_json();
            let spec = EnvoySpec {
                listen,
                // Port 0: Envoy binds, and the address is read back.
                admin: SocketAddr::from(([127, 0, 0, 1], 0)),
                backends: backends.to_vec(),
                mode: FilterMode::Inline(Box::new(filter)),
                timeouts: UpstreamTimeouts::default(),
            };
            let options =
                EnvoyOptions { startup_timeout: timeout, output: logs.output(), ..Default::default() };
            let process = EnvoyProcess::start(envoy, &logs.dir, label, &spec, &options).await?;
            let base_url = process.base_url();
            Ok(StartedRouter { process: RouterProcess::Envoy(process), base_url, plugin_config })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_simulated_faster_is_seen_faster_and_a_real_one_as_it_is() {
        let base = FilterConfig::new(Vec::new());
        let mut scaled = base.clone();
        scale_fleet_time(&mut scaled, 4.0);
        assert_eq!(scaled.prefill_tokens_per_s, 4.0 * base.prefill_tokens_per_s);
        assert_eq!(scaled.scrape_interval_ms, base.scrape_interval_ms / 4);
        assert_eq!(scaled.scrape_timeout_ms, base.scrape_timeout_ms, "timeouts bound the proxy");
        assert_eq!(scaled.ejection_ms, base.ejection_ms);
        let mut real = base.clone();
        scale_fleet_time(&mut real, 1.0);
        assert_eq!(real, base);
        let mut off = FilterConfig { scrape_interval_ms: 0, ..base.clone() };
        scale_fleet_time(&mut off, 1000.0);
        assert_eq!(off.scrape_interval_ms, 0, "scraping stays off");
        let mut fast = base.clone();
        scale_fleet_time(&mut fast, 1e6);
        assert_eq!(fast.scrape_interval_ms, 1, "never 0, which would turn scraping off");
    }
}
