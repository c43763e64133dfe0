//! Command-line interface: run the proxy (flags override the config file), or
//! `swap` a running proxy's filter.

use crate::config::{Config, ConfigError, FailureMode};
use clap::{Args, Parser, Subcommand};
use prefixgate_filter::PolicyKind;
use std::net::SocketAddr;
use std::path::PathBuf;

/// prefixgate: a reverse proxy for vLLM fleets whose routing policy is a
/// proxy-wasm filter.
#[derive(Debug, Parser)]
#[command(name = "prefixgate", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Subcommand (default: run the proxy).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Proxy options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Swap the filter module or plugin configuration of a running proxy.
    Swap(SwapArgs),
    /// Check a filter module and its plugin configuration as a hot swap
    /// would before it commits (compile, configure every VM, a canary
    /// request and a tick), without serving: exit 0 if a swap would take
    /// them, 2 if it would refuse them. Run it before a rollout to Envoy,
    /// which applies whatever it is served. Takes the proxy's options
    /// (`--filter`, `--plugin-config`, `--config`, ...) and binds nothing.
    Check(RunArgs),
}

/// Options of the proxy; each overrides the config file.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// TOML configuration file.
    #[arg(long, env = "PREFIXGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Proxy listen address (default 127.0.0.1:8000).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin listen address (default 127.0.0.1:9901).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Bearer token for the admin API.
    #[arg(long, env = "PREFIXGATE_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Backends, comma-separated `ip:port`.
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Routing policy of the plugin configuration built from `--backends`.
    ///
    /// round_robin: cycle through the healthy backends (baseline).
    /// pow2: the less loaded of two random healthy backends.
    /// prefix_aware (default): the backend holding the longest cached prefix
    ///   of the prompt unless load is imbalanced, as Ray Serve's router.
    /// least_ttft: the least predicted time to first token (uncached prefill
    ///   plus queue) under a load bound.
    #[arg(long, verbatim_doc_comment)]
    pub policy: Option<PolicyKind>,
    /// Filter module (default: the embedded one).
    #[arg(long)]
    pub filter: Option<PathBuf>,
    /// Plugin configuration, inline JSON (opaque to the host).
    #[arg(long)]
    pub plugin_config: Option<String>,
    /// Number of filter VMs (0 = one per CPU).
    #[arg(long)]
    pub vms: Option<usize>,
    /// On filter failure: `open` (round robin) or `closed` (503).
    #[arg(long, value_parser = parse_failure_mode)]
    pub failure_mode: Option<FailureMode>,
    /// Threads serving connections (default: one per CPU). Where the proxy
    /// shares a small machine with other busy processes, fewer threads mean
    /// fewer hand-offs between them and lower latency.
    #[arg(long, env = "PREFIXGATE_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,
}

fn parse_failure_mode(s: &str) -> Result<FailureMode, String> {
    match s {
        "open" => Ok(FailureMode::Open),
        "closed" => Ok(FailureMode::Closed),
        _ => Err(format!("{s:?}: expected open or closed")),
    }
}

impl RunArgs {
    /// The configuration: the file (or defaults), then the flags.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.admin {
            c.admin = v;
        }
        if let Some(v) = &self.admin_token {
            c.admin_token = Some(v.clone());
        }
        if !self.backends.is_empty() {
            c.backends = self.backends.iter().filter(|b| !b.trim().is_empty()).cloned().collect();
        }
        if let Some(v) = &self.policy {
            c.filter.policy = Some(*v);
        }
        if let Some(v) = &self.filter {
            c.filter.module = Some(v.clone());
        }
        if let Some(v) = &self.plugin_config {
            c.filter.plugin_config = Some(v.clone());
            c.filter.plugin_config_file = None;
        }
        if let Some(v) = self.vms {
            c.filter.vms = v;
        }
        if let Some(v) = self.failure_mode {
            c.failure_mode = v;
        }
        Ok(c)
    }
}

/// `prefixgate swap`.
#[derive(Debug, Args)]
pub struct SwapArgs {
    /// Admin URL of the running proxy, e.g. http://127.0.0.1:9901.
    #[arg(long)]
    pub admin: String,
    /// New plugin configuration (JSON file).
    #[arg(long, required_unless_present = "module")]
    pub config: Option<PathBuf>,
    /// New filter module (.wasm).
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// Admin bearer token.
    #[arg(long, env = "PREFIXGATE_ADMIN_TOKEN")]
    pub token: Option<String>,
    /// Seconds to wait for each upload's answer. The proxy compiles a new
    /// module and proves it on a canary request before it answers, which
    /// takes seconds on a busy machine: the default, 120, leaves room for
    /// that and still ends a call to an admin address that never answers.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_must_be_at_least_one() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["prefixgate"], args].concat());
        assert_eq!(parse(&["--workers", "3"]).map(|c| c.run.workers).ok(), Some(Some(3)));
        assert_eq!(parse(&[]).map(|c| c.run.workers).ok(), Some(None));
        let err = parse(&["--workers", "0"]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--workers"), "{err}");
    }
}
