//! The standalone `prefixgate` binary as the end-to-end tests run it: a child
//! process (located through `$PREFIXGATE_BIN` or built by cargo) started
//! with a TOML configuration file in a fresh run directory, as a user
//! would, so that `main`, the command line, the file and the signals are
//! the ones under test. The benchmark starts the release binary through
//! [`PrefixgateProcess`] directly.

use crate::error::HarnessError;
use crate::exposition;
pub use prefixgate_launch::{PrefixgateProcess, Signal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the configuration file in the run directory.
const CONFIG_FILE: &str = "prefixgate.toml";
/// Name of the plugin configuration file the configuration file points at.
const PLUGIN_FILE: &str = "plugin.json";

/// What the tests set in prefixgate's configuration file, beyond the backends
/// and the plugin configuration; `None` keeps the default.
///
/// The callback deadline is always the default (20 ms of CPU time per
/// callback). The costliest request of the scenarios, a 2 MiB prompt (its
/// first 131,072 characters read, matched and indexed: about 80 chunks),
/// took 1.4 ms of the filter's decision time on average and at most 5 ms
/// (`prefixgate_decision_duration_seconds`, 10 requests) in the debug
/// binary the tests run, on a shared 2-core machine busy with builds.
#[derive(Clone, Debug, Default)]
pub struct PrefixgateOptions {
    /// `filter.vms` (the tests run two, as Envoy runs two workers).
    pub vms: Option<usize>,
    /// `filter.memory_limit_mib`.
    pub memory_limit_mib: Option<usize>,
    /// `timeouts.upstream_first_byte_ms`.
    pub upstream_first_byte: Option<Duration>,
}

/// A running `prefixgate` and its run directory (removed on drop).
#[derive(Debug)]
pub struct Prefixgate {
    process: PrefixgateProcess,
    dir: PathBuf,
    http: reqwest::Client,
}

/// The configuration file's text for `backends` and `options`; the plugin
/// configuration is read from [`PLUGIN_FILE`] beside it.
fn config_toml(dir: &Path, backends: &[SocketAddr], options: &PrefixgateOptions) -> String {
    let mut root = toml::Table::new();
    let backends = backends.iter().map(|b| toml::Value::String(b.to_string())).collect();
    root.insert("backends".into(), toml::Value::Array(backends));
    if let Some(first_byte) = options.upstream_first_byte {
        let mut timeouts = toml::Table::new();
        let ms = i64::try_from(first_byte.as_millis()).unwrap_or(i64::MAX);
        timeouts.insert("upstream_first_byte_ms".into(), ms.into());
        root.insert("timeouts".into(), timeouts.into());
    }
    let mut filter = toml::Table::new();
    let plugin = dir.join(PLUGIN_FILE).to_string_lossy().into_owned();
    filter.insert("plugin_config_file".into(), plugin.into());
    let vms = i64::try_from(options.vms.unwrap_or(2)).unwrap_or(i64::MAX);
    filter.insert("vms".into(), vms.into());
    if let Some(mib) = options.memory_limit_mib {
        filter.insert("memory_limit_mib".into(), i64::try_from(mib).unwrap_or(i64::MAX).into());
    }
    root.insert("filter".into(), filter.into());
    toml::to_string(&root).unwrap_or_default()
}

impl Prefixgate {
    /// Starts prefixgate in front of `backends` with `plugin_config`
    /// (written to a file the configuration file names) and `options`.
    pub async fn start(
        backends: &[SocketAddr],
        plugin_config: &str,
        options: &PrefixgateOptions,
    ) -> Result<Self, HarnessError> {
        let binary = prefixgate_launch::PREFIXGATE.locate_or_build()?;
        let dir = crate::envoy::fresh_dir("prefixgate")?;
        write(&dir.join(PLUGIN_FILE), plugin_config)?;
        let config = dir.join(CONFIG_FILE);
        write(&config, &config_toml(&dir, backends, options))?;
        let process = PrefixgateProcess::start_args(&binary, vec!["--config".into(), config.into()]).await?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Self { process, dir, http })
    }

    /// The process.
    pub fn process(&self) -> &PrefixgateProcess {
        &self.process
    }

    /// The process, to signal or restart it.
    pub fn process_mut(&mut self) -> &mut PrefixgateProcess {
        &mut self.process
    }

    /// Base URL of the proxy listener.
    pub fn base_url(&self) -> &str {
        self.process.base_url()
    }

    /// The configuration file it was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// Rewrites the plugin configuration file (read again on SIGHUP).
    pub fn write_plugin_config(&self, plugin_config: &str) -> Result<(), HarnessError> {
        write(&self.dir.join(PLUGIN_FILE), plugin_config)
    }

    /// Rewrites the configuration file itself.
    pub fn write_config_file(&self, text: &str) -> Result<(), HarnessError> {
        write(&self.dir.join(CONFIG_FILE), text)
    }

    /// GET on the admin listener; the body as text.
    pub async fn admin_get(&self, path: &str) -> Result<String, HarnessError> {
        let reply = self.http.get(format!("{}{path}", self.process.admin_url())).send().await?;
        Ok(reply.text().await?)
    }

    /// `PUT /admin/<what>` with `body`; the status and the answer.
    pub async fn admin_put(&self, what: &str, body: Vec<u8>) -> Result<(u16, String), HarnessError> {
        let url = format!("{}/admin/{what}", self.process.admin_url());
        let reply = self.http.put(url).body(body).send().await?;
        let status = reply.status().as_u16();
        Ok((status, reply.text().await.unwrap_or_default()))
    }

    /// The sum over every series of the metric family `family` in `/metrics`
    /// (0 when absent).
    pub async fn metric(&self, family: &str) -> Result<f64, HarnessError> {
        let parsed = exposition::parse(&self.admin_get("/metrics").await?)?;
        Ok(exposition::series(&parsed, family).iter().map(|(_, v)| v).sum())
    }
}

fn write(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text).map_err(|e| HarnessError::io("write", path, e))
}

impl Drop for Prefixgate {
    fn drop(&mut self) {
        if std::env::var_os("PREFIXGATE_KEEP_RUN_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
