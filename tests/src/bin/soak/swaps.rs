//! The swap faults: many configuration and module swaps under load, and a
//! swap to a module that traps on every request. prefixgate swaps through
//! its admin API (`PUT /admin/config`, `PUT /admin/module`), Envoy through
//! ECDS (a new resource file renamed into place, as `envoy/` shows).
//!
//! Every module swap installs a module no host has seen before: the filter
//! with a custom section appended that names the swap (a custom section
//! changes nothing a host runs, but the module's hash, so each swap compiles
//! and starts fresh VMs).

use crate::Proxy;
use anyhow::{Context as _, Result};
use prefixgate_tests::envoy_config::{plugin_config, PolicyKind};
use prefixgate_tests::module_variant::variant;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Most error messages kept for the report.
const KEPT_ERRORS: usize = 3;

/// One swap of the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Config,
    Module,
}

/// `config` configuration swaps and `module` module swaps, the module swaps
/// spread evenly among the others (the last swap is a module swap).
pub fn schedule(config: usize, module: usize) -> Vec<Kind> {
    let total = config + module;
    (0..total)
        .map(|k| if (k + 1) * module / total > k * module / total { Kind::Module } else { Kind::Config })
        .collect()
}

/// The modules a run swaps to, written once into the run directory.
pub struct Modules {
    filter: Vec<u8>,
    /// The module that traps on every request, when the run has one.
    pub trap: Option<PathBuf>,
    dir: PathBuf,
}

impl Modules {
    /// Reads the filter module; variants go to `dir`.
    pub fn new(filter: &Path, trap: Option<PathBuf>, dir: &Path) -> Result<Self> {
        let filter = std::fs::read(filter).with_context(|| format!("read {}", filter.display()))?;
        Ok(Self { filter, trap, dir: dir.to_path_buf() })
    }

    /// The path of variant `n` of the filter, written on first use.
    pub fn variant(&self, n: usize) -> Result<PathBuf> {
        let path = self.dir.join(format!("filter-swap-{n}.wasm"));
        if !path.is_file() {
            std::fs::write(&path, variant(&self.filter, &format!("swap {n}")))
                .with_context(|| format!("write {}", path.display()))?;
        }
        Ok(path)
    }
}

/// The plugin configuration of configuration swap `n`: the soak's, with a
/// version label and a match threshold that alternates (the prefix index's
/// shape, chunk size and slots, never changes, so the index must survive).
pub fn swap_config(addrs: &[SocketAddr], scrape_ms: u64, n: usize) -> String {
    let mut config = plugin_config(PolicyKind::PrefixAware, addrs);
    config.scrape_interval_ms = scrape_ms;
    config.match_rate_threshold = if n.is_multiple_of(2) { 0.1 } else { 0.2 };
    config.version = Some(format!("swap-{n}"));
    serde_json::to_string(&config).unwrap_or_default()
}

/// What the swap sequence did.
#[derive(Debug, Default)]
pub struct SwapReport {
    /// Configuration swaps applied, and attempted.
    pub config: (usize, usize),
    /// Module swaps applied, and attempted.
    pub module: (usize, usize),
    /// The first errors.
    pub errors: Vec<String>,
    /// How long the sequence took.
    pub took: Duration,
    /// Idle probes after one more module swap with no load: (matched the
    /// index, carried a decision).
    pub index_probes: (usize, usize),
}

impl SwapReport {
    fn record(&mut self, kind: Kind, result: Result<()>) {
        let counts = match kind {
            Kind::Config => &mut self.config,
            Kind::Module => &mut self.module,
        };
        counts.1 += 1;
        match result {
            Ok(()) => counts.0 += 1,
            Err(e) if self.errors.len() < KEPT_ERRORS => self.errors.push(format!("{kind:?} swap: {e:#}")),
            Err(_) => {}
        }
    }
}

/// Runs `config` configuration and `module` module swaps through `proxy`,
/// started `spread` apart in total (each waits for the one before it).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    proxy: &mut Proxy,
    http: &reqwest::Client,
    modules: &Modules,
    addrs: &[SocketAddr],
    scrape_ms: u64,
    config: usize,
    module: usize,
    spread: Duration,
) -> Result<SwapReport> {
    let kinds = schedule(config, module);
    let spacing = spread / kinds.len().max(1) as u32;
    let start = Instant::now();
    let mut report = SwapReport::default();
    let mut current = proxy.plugin_config().to_owned();
    for (k, kind) in kinds.iter().enumerate() {
        tokio::time::sleep_until((start + spacing * k as u32).into()).await;
        let result = match kind {
            Kind::Config => {
                let next = swap_config(addrs, scrape_ms, report.config.1 + 1);
                let result = proxy.swap_config(http, &next).await;
                current = next;
                result
            }
            Kind::Module => {
                let wasm = modules.variant(report.module.1 + 1)?;
                proxy.swap_module(http, &wasm, &current).await
            }
        };
        report.record(*kind, result);
    }
    report.took = start.elapsed();
    Ok(report)
}
