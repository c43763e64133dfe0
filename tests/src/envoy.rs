//! Envoy as the scenarios use it: started through the launch crate in a
//! fresh directory (inline filter, ECDS or plain round robin), with its
//! admin interface, stats, log and ECDS rollouts at hand; killed on drop.

use crate::envoy_config::{render_ecds_resource, EnvoySpec, FilterMode, FilterSpec, UpstreamTimeouts};
use crate::error::HarnessError;
use prefixgate_filter::{FilterConfig, PolicyKind};
use prefixgate_launch::{poll_until, EnvoyOptions, EnvoyProcess, Locate as _, FILTER_MODULE};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Name of the ECDS resource file in the run directory.
const ECDS_FILE: &str = "prefixgate-ecds.yaml";

/// How the routing filter is configured.
#[derive(Clone, Debug)]
pub enum EnvoyMode {
    /// The filter with this plugin configuration JSON, inline in the bootstrap.
    Filter(String),
    /// The filter through ECDS from a watched file, starting with this
    /// plugin configuration JSON; [`Envoy::ecds_swap`] rolls out the next.
    Ecds(String),
    /// No filter: plain round-robin over the backends.
    RoundRobin,
}

/// A running Envoy.
#[derive(Debug)]
pub struct Envoy {
    process: Option<EnvoyProcess>,
    dir: PathBuf,
    wasm: PathBuf,
    base_url: String,
    admin_url: String,
    http: reqwest::Client,
    rollouts: u32,
}

/// A fresh directory under the system temp dir, unique to this process and call.
pub fn fresh_dir(tag: &str) -> Result<PathBuf, HarnessError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "prefixgate-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| HarnessError::io("clear run dir", &dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io("create run dir", &dir, e))?;
    Ok(dir)
}

/// The default plugin configuration for `backends` as JSON: `policy`,
/// scrapes every `scrape_ms`, plus `extra` fields as `(name, raw JSON value)`
/// pairs, validated as the filter would validate them.
///
/// # Panics
/// On an unknown policy or an `extra` field the filter refuses: a test bug.
pub fn plugin_config(
    policy: &str,
    backends: &[SocketAddr],
    scrape_ms: u64,
    extra: &[(&str, &str)],
) -> String {
    let policy: PolicyKind =
        serde_json::from_value(policy.into()).unwrap_or_else(|e| panic!("unknown policy `{policy}`: {e}"));
    let mut config = crate::envoy_config::plugin_config(policy, backends);
    config.scrape_interval_ms = scrape_ms;
    config.version = Some("v0".to_owned());
    let mut json = serde_json::to_value(&config).unwrap_or_default();
    for (name, value) in extra {
        let value: serde_json::Value =
            serde_json::from_str(value).unwrap_or_else(|e| panic!("`{name}`: `{value}` is not JSON: {e}"));
        json[*name] = value;
    }
    let text = json.to_string();
    if let Err(e) = FilterConfig::from_json(text.as_bytes()) {
        panic!("test plugin config refused: {e}");
    }
    text
}

impl Envoy {
    /// Starts Envoy (`--concurrency 2`) in front of `backends`.
    pub async fn start(backends: &[SocketAddr], mode: EnvoyMode) -> Result<Self, HarnessError> {
        Self::start_with(backends, mode, 2, None).await
    }

    /// Starts Envoy with `concurrency` worker threads and the route's
    /// `timeouts` (default: [`UpstreamTimeouts::default`]).
    pub async fn start_with(
        backends: &[SocketAddr],
        mode: EnvoyMode,
        concurrency: u32,
        timeouts: Option<UpstreamTimeouts>,
    ) -> Result<Self, HarnessError> {
        let bin = EnvoyProcess::locate(None)?;
        let dir = fresh_dir("envoy")?;
        let wasm = match mode {
            EnvoyMode::RoundRobin => PathBuf::new(),
            _ => FILTER_MODULE.locate_or_build()?,
        };
        let filter =
            |plugin_config: String| FilterSpec::from_json(wasm.to_string_lossy(), plugin_config.as_bytes());
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mode = match mode {
            EnvoyMode::Filter(config) => FilterMode::Inline(Box::new(filter(config)?)),
            EnvoyMode::Ecds(config) => {
                write_atomically(&dir, ECDS_FILE, &render_ecds_resource(&filter(config)?, "v0"))?;
                FilterMode::Ecds { path: dir.join(ECDS_FILE).to_string_lossy().into_owned() }
            }
            EnvoyMode::RoundRobin => FilterMode::RoundRobin,
        };
        let spec = EnvoySpec {
            listen: loopback,
            admin: loopback,
            backends: backends.to_vec(),
            mode,
            timeouts: timeouts.unwrap_or_default(),
        };
        let options = EnvoyOptions { concurrency, ..EnvoyOptions::default() };
        let process = EnvoyProcess::start(&bin, &dir, "envoy", &spec, &options).await?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        Ok(Self {
            base_url: process.base_url(),
            admin_url: process.admin_url(),
            process: Some(process),
            dir,
            wasm,
            http,
            rollouts: 0,
        })
    }

    /// GET on the admin interface; the body as text.
    pub async fn admin_get(&self, path: &str) -> Result<String, HarnessError> {
        let reply = self.http.get(format!("{}{path}", self.admin_url)).send().await?;
        if !reply.status().is_success() {
            return Err(HarnessError::AdminStatus { path: path.to_owned(), status: reply.status().as_u16() });
        }
        Ok(reply.text().await?)
    }

    /// A counter or gauge from `/stats` whose name contains `name`, summed
    /// over every match (0 when absent).
    pub async fn stat(&self, name: &str) -> Result<u64, HarnessError> {
        let text = self.admin_get(&format!("/stats?filter={name}")).await?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, _)| k.contains(name))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum())
    }

    /// Base URL of the listener.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Process id of Envoy (`None` only while it is being dropped).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(EnvoyProcess::pid)
    }

    /// Base URL of the admin interface.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The run directory (bootstrap, log, ECDS file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The warnings and errors at the end of Envoy's log.
    pub fn log_tail(&self) -> String {
        self.process.as_ref().map(EnvoyProcess::log_tail).unwrap_or_default()
    }

    /// Count of lines in Envoy's log containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        let log = self.process.as_ref().map(|p| p.log_path().to_owned()).unwrap_or_default();
        std::fs::read_to_string(log).unwrap_or_default().matches(needle).count()
    }

    fn failure(&self, message: String) -> HarnessError {
        HarnessError::Envoy { message, log: self.log_tail() }
    }

    /// Rolls out a new plugin configuration through ECDS (Envoy started in
    /// [`EnvoyMode::Ecds`]): the resource is rewritten with a new version and
    /// renamed into place. Returns the version label.
    pub fn ecds_swap(&mut self, plugin_config: &str) -> Result<String, HarnessError> {
        let wasm = self.wasm.clone();
        self.ecds_swap_module(&wasm, plugin_config)
    }

    /// [`Envoy::ecds_swap`] with another module: the rollout names `wasm`
    /// (the `vm_id` stays, so shared data and the prefix index stay).
    pub fn ecds_swap_module(&mut self, wasm: &Path, plugin_config: &str) -> Result<String, HarnessError> {
        self.rollouts += 1;
        let version = format!("v{}", self.rollouts);
        let mut spec = FilterSpec::from_json(wasm.to_string_lossy(), plugin_config.as_bytes())?;
        spec.config.version = Some(version.clone());
        write_atomically(&self.dir, ECDS_FILE, &render_ecds_resource(&spec, &version))?;
        Ok(version)
    }
}

/// Envoy's ECDS counters, summed over its filter configs: rollouts applied
/// (`config_reload`) and refused (`config_fail`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EcdsCounts {
    /// Rollouts applied.
    pub reloads: u64,
    /// Rollouts refused.
    pub failures: u64,
}

impl Envoy {
    /// The ECDS counters now.
    pub async fn ecds_counts(&self) -> Result<EcdsCounts, HarnessError> {
        let text = self.admin_get("/stats?filter=extension_config_discovery").await?;
        let mut counts = EcdsCounts::default();
        for (key, value) in text.lines().filter_map(|l| l.split_once(": ")) {
            let Ok(value) = value.trim().parse::<u64>() else { continue };
            if key.ends_with(".config_reload") {
                counts.reloads += value;
            } else if key.ends_with(".config_fail") {
                counts.failures += value;
            }
        }
        Ok(counts)
    }

    /// Waits (at most `limit`) until Envoy has applied or refused a rollout
    /// since `before`: `Ok(true)` applied, `Ok(false)` refused.
    pub async fn ecds_outcome(&self, before: EcdsCounts, limit: Duration) -> Result<bool, HarnessError> {
        let outcome = poll_until(limit, "a rollout to be applied or refused", || async {
            match self.ecds_counts().await {
                Ok(now) if now.reloads > before.reloads => Some(Ok(true)),
                Ok(now) if now.failures > before.failures => Some(Ok(false)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        })
        .await;
        outcome.unwrap_or_else(|timed_out| Err(self.failure(timed_out.to_string())))
    }
}

/// Writes `dir/name` through a temporary file and a rename.
fn write_atomically(dir: &Path, name: &str, contents: &str) -> Result<(), HarnessError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).map_err(|e| HarnessError::io("write", &tmp, e))?;
    let target = dir.join(name);
    std::fs::rename(&tmp, &target).map_err(|e| HarnessError::io("rename", &target, e))
}

impl Drop for Envoy {
    fn drop(&mut self) {
        // Kill and reap Envoy first, then remove its files.
        drop(self.process.take());
        if std::env::var_os("PREFIXGATE_KEEP_RUN_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
