//! The running filter and its hot swap: a [`Runtime`] (module version, VM
//! pool, plugin configuration, backends) is built off the request path,
//! proven by a canary request and tick ([`crate::canary`]), and published
//! atomically; requests in flight keep the one they started with.
//!
//! A swapped-in filter is then on probation for
//! [`RollbackPolicy::probation`]: should its VMs trap
//! [`RollbackPolicy::traps`] times within [`RollbackPolicy::window`], the
//! previous module and plugin configuration are started again and
//! published in its place (logged, counted in
//! `prefixgate_hot_swaps_total{result="rolled_back"}`, shown in
//! `/admin/status`).

use crate::canary::{Canary, CanaryError};
use crate::config::{backends_in_plugin_config, is_same_listener};
use crate::metrics::Metrics;
use crate::upstream::{BackendError, Backends};
use crate::wasm::engine::WasmError;
use crate::wasm::host_state::{HostShared, PluginInfo};
use crate::wasm::vm::{VmEnv, VmLimits};
use crate::wasm::{ModuleVersion, Pool, PoolSettings, WasmEngine};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// Why a swap was refused.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The module or its configuration was refused.
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// The plugin configuration names invalid backends.
    #[error("plugin configuration backends")]
    Backends(#[from] BackendError),
    /// Compilation task failed.
    #[error("compilation task failed")]
    Join(#[source] tokio::task::JoinError),
    /// The new filter trapped (or hung) on the canary request or tick.
    #[error("canary failed")]
    Canary(#[from] CanaryError),
}

impl SwapError {
    /// Whether the module or the plugin configuration was at fault (as
    /// opposed to the proxy itself): a bad input, exit code 2 at start.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Join(_))
    }
}

/// When a swapped-in filter is rolled back: `traps` traps within `window`,
/// during the first `probation` after the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackPolicy {
    /// Traps that trigger a rollback; 0 turns rollback off.
    pub traps: u32,
    /// The window they must fall within.
    pub window: Duration,
    /// How long after a swap the new filter is watched.
    pub probation: Duration,
}

/// Recent traps of one runtime's VMs, against its rollback policy.
pub struct TrapWindow {
    policy: RollbackPolicy,
    times: Mutex<VecDeque<Instant>>,
    tripped: AtomicBool,
    notify: tokio::sync::Notify,
}

impl TrapWindow {
    /// An empty window.
    pub fn new(policy: RollbackPolicy) -> Self {
        Self {
            policy,
            times: Mutex::new(VecDeque::new()),
            tripped: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Records a trap now; trips once the policy's count is reached.
    pub fn record(&self) {
        self.record_at(Instant::now());
    }

    fn record_at(&self, now: Instant) {
        let limit = self.policy.traps as usize;
        if limit == 0 {
            return;
        }
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        while times.front().is_some_and(|t| now.saturating_duration_since(*t) > self.policy.window) {
            times.pop_front();
        }
        times.push_back(now);
        // Only the last `limit` matter.
        while times.len() > limit {
            times.pop_front();
        }
        if times.len() >= limit && !self.tripped.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Whether the threshold was reached.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// Forgets every trap (those of the canary, before the swap commits).
    fn reset(&self) {
        self.times.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.tripped.store(false, Ordering::Release);
    }

    /// Traps in the window now.
    pub fn recent(&self) -> usize {
        self.times.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One published filter configuration.
pub struct Runtime {
    /// Module version.
    pub version: Arc<ModuleVersion>,
    /// Its VMs.
    pub pool: Arc<Pool>,
    /// Plugin configuration bytes.
    pub plugin_config: Arc<Vec<u8>>,
    /// Allowed backends.
    pub backends: Arc<Backends>,
    /// When it was published.
    pub since: Instant,
    /// Its VMs' recent traps (probation after a swap).
    pub traps: Arc<TrapWindow>,
}

/// Static settings for building runtimes.
pub struct Builder {
    /// Engine and linker.
    pub engine: Arc<WasmEngine>,
    /// Host-owned shared data, queues and filter metrics.
    pub shared: Arc<HostShared>,
    /// Plugin identity (configuration bytes are replaced per runtime).
    pub plugin: PluginInfo,
    /// Backends when the plugin configuration names none.
    pub backends: Vec<String>,
    /// The configured upstream header (callouts name a backend with it).
    pub upstream_header: String,
    /// Callout clusters.
    pub clusters: BTreeMap<String, Vec<String>>,
    /// VM count and limits.
    pub vms: usize,
    /// Limits of each VM.
    pub limits: VmLimits,
    /// Trap counter.
    pub metrics: Metrics,
    /// The proxy's own bound listen and admin addresses, once bound: a
    /// plugin configuration whose backends name one is refused.
    pub own_addresses: std::sync::OnceLock<Vec<std::net::SocketAddr>>,
    /// The request every swap sends through the new filter first.
    pub canary: Canary,
    /// When a swapped-in filter is rolled back.
    pub rollback: RollbackPolicy,
}

impl Builder {
    /// Compiles module bytes off the async executor.
    pub async fn compile(&self, bytes: Vec<u8>) -> Result<Arc<ModuleVersion>, SwapError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || ModuleVersion::compile(&engine, &bytes))
            .await
            .map_err(SwapError::Join)?
            .map(Arc::new)
            .map_err(SwapError::from)
    }

    /// Starts VMs of `version` configured with `plugin_config`.
    pub fn build(&self, version: Arc<ModuleVersion>, plugin_config: Vec<u8>) -> Result<Runtime, SwapError> {
        let list = backends_in_plugin_config(&plugin_config).unwrap_or_else(|| self.backends.clone());
        let backends =
            Arc::new(Backends::new(&list, &self.clusters)?.with_upstream_header(&self.upstream_header));
        let own = self.own_addresses.get().map(Vec::as_slice).unwrap_or_default();
        if let Some(b) = backends.all().iter().find(|b| own.iter().any(|o| is_same_listener(*o, b.addr))) {
            return Err(SwapError::Backends(BackendError::OwnAddress(b.name.clone())));
        }
        let plugin = Arc::new(PluginInfo { plugin_config: plugin_config.clone(), ..self.plugin.clone() });
        let traps = self.metrics.traps.clone();
        let window = Arc::new(TrapWindow::new(self.rollback));
        let recent = window.clone();
        let settings = PoolSettings {
            vms: self.vms,
            env: VmEnv {
                shared: self.shared.clone(),
                plugin,
                resolver: backends.clone(),
                limits: self.limits.clone(),
            },
            on_trap: Arc::new(move |_| {
                traps.inc();
                recent.record();
            }),
        };
        let pool = Pool::start(version.clone(), settings)?;
        Ok(Runtime {
            version,
            pool,
            plugin_config: Arc::new(plugin_config),
            backends,
            since: Instant::now(),
            traps: window,
        })
    }

    /// [`Builder::build`], then the canary request and tick through the new
    /// VMs: every check a swap runs before it commits (and all that
    /// `prefixgate check` runs).
    pub async fn build_proven(
        &self,
        version: Arc<ModuleVersion>,
        plugin_config: Vec<u8>,
    ) -> Result<Runtime, SwapError> {
        let runtime = self.build(version, plugin_config)?;
        self.canary.run(&runtime.pool).await?;
        Ok(runtime)
    }
}

/// The current runtime plus swap bookkeeping.
pub struct Current {
    runtime: RwLock<Arc<Runtime>>,
    swaps: AtomicU64,
    rollbacks: AtomicU64,
    last_rollback: Mutex<Option<String>>,
    swap_lock: tokio::sync::Mutex<()>,
}

/// What a rollback goes back to.
struct Previous {
    version: Arc<ModuleVersion>,
    plugin_config: Arc<Vec<u8>>,
}

impl Current {
    /// Starts with `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        Self {
            runtime: RwLock::new(Arc::new(runtime)),
            swaps: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            last_rollback: Mutex::new(None),
            swap_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The runtime new requests use.
    pub fn get(&self) -> Arc<Runtime> {
        self.runtime.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Number of swaps so far (rollbacks not included).
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    /// Number of automatic rollbacks so far.
    pub fn rollbacks(&self) -> u64 {
        self.rollbacks.load(Ordering::Relaxed)
    }

    /// Why the last rollback happened, if any did.
    pub fn last_rollback(&self) -> Option<String> {
        self.last_rollback.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn publish(&self, runtime: Arc<Runtime>) {
        *self.runtime.write().unwrap_or_else(|p| p.into_inner()) = runtime;
    }

    /// Builds a runtime from a new module and/or plugin configuration (the
    /// current ones where `None`), runs the canary through it, and
    /// publishes it; it is then on probation (see the module doc). The old
    /// one keeps serving on any error.
    pub async fn swap(
        self: &Arc<Self>,
        builder: &Arc<Builder>,
        module: Option<Vec<u8>>,
        plugin_config: Option<Vec<u8>>,
    ) -> Result<Arc<Runtime>, SwapError> {
        let _one_at_a_time = self.swap_lock.lock().await;
        let kind = SwapKind::of(module.is_some(), plugin_config.is_some());
        let count =
            |result: &str| builder.metrics.hot_swaps.with_label_values(&[kind.as_str(), result]).inc();
        let old = self.get();
        let built = async {
            let version = match module {
                Some(bytes) => builder.compile(bytes).await?,
                None => old.version.clone(),
            };
            let config = plugin_config.unwrap_or_else(|| old.plugin_config.as_ref().clone());
            Ok::<_, SwapError>(Arc::new(builder.build_proven(version, config).await?))
        };
        let new = match built.await {
            Ok(new) => new,
            Err(e) => {
                count(if matches!(e, SwapError::Canary(_)) { "canary_failed" } else { "refused" });
                return Err(e);
            }
        };
        new.traps.reset();
        self.publish(new.clone());
        self.swaps.fetch_add(1, Ordering::Relaxed);
        count("ok");
        tracing::info!(sha256 = %new.version.sha256, "filter swapped");
        if builder.rollback.traps > 0 {
            let previous =
                Previous { version: old.version.clone(), plugin_config: old.plugin_config.clone() };
            tokio::spawn(probation(
                Arc::downgrade(self),
                builder.clone(),
                Arc::downgrade(&new),
                new.traps.clone(),
                previous,
                kind,
            ));
        }
        Ok(new)
    }

    /// Goes back to `previous` if `bad` is still the current runtime.
    async fn roll_back(
        &self,
        builder: &Builder,
        bad: &Weak<Runtime>,
        previous: Previous,
        why: String,
        kind: SwapKind,
    ) {
        let _one_at_a_time = self.swap_lock.lock().await;
        let current = self.get();
        if !bad.upgrade().is_some_and(|bad| Arc::ptr_eq(&bad, &current)) {
            return;
        }
        match builder.build(previous.version, previous.plugin_config.as_ref().clone()) {
            Ok(runtime) => {
                let runtime = Arc::new(runtime);
                tracing::error!(
                    from = %current.version.sha256,
                    to = %runtime.version.sha256,
                    "{why}: rolled back to the previous module and plugin configuration"
                );
                self.publish(runtime);
                self.rollbacks.fetch_add(1, Ordering::Relaxed);
                builder.metrics.hot_swaps.with_label_values(&[kind.as_str(), "rolled_back"]).inc();
                *self.last_rollback.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            }
            Err(e) => {
                tracing::error!(
                    "{why}, but the previous filter failed to start again, so it stays: {}",
                    crate::error_chain(&e)
                );
            }
        }
    }
}

/// Watches a freshly swapped-in runtime for its probation; rolls back if
/// its trap window trips in that time.
async fn probation(
    current: Weak<Current>,
    builder: Arc<Builder>,
    runtime: Weak<Runtime>,
    traps: Arc<TrapWindow>,
    previous: Previous,
    kind: SwapKind,
) {
    let policy = builder.rollback;
    let end = tokio::time::Instant::now() + policy.probation;
    loop {
        tokio::select! {
            // A wake-up left over from before the swap committed (the
            // window was reset since) is not a trip.
            _ = traps.notify.notified() => if traps.tripped() { break },
            _ = tokio::time::sleep_until(end) => return,
        }
    }
    let Some(current) = current.upgrade() else { return };
    let why = format!(
        "the swapped-in filter trapped {} times within {} ms",
        policy.traps,
        policy.window.as_millis()
    );
    current.roll_back(&builder, &runtime, previous, why, kind).await;
}

/// What a swap replaced: the `kind` label of `prefixgate_hot_swaps_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SwapKind {
    Module,
    Config,
    ModuleAndConfig,
}

impl SwapKind {
    fn of(module: bool, config: bool) -> Self {
        match (module, config) {
            (true, true) => Self::ModuleAndConfig,
            (true, false) => Self::Module,
            // A swap of neither rebuilds the same configuration.
            (false, _) => Self::Config,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Config => "config",
            Self::ModuleAndConfig => "module_and_config",
        }
    }
}

/// Default start-up deadline of a VM.
pub const START_DEADLINE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trap_window_trips_on_n_traps_within_the_window_only() {
        let policy =
            RollbackPolicy { traps: 3, window: Duration::from_secs(10), probation: Duration::from_secs(60) };
        let w = TrapWindow::new(policy);
        let t0 = Instant::now();
        w.record_at(t0);
        w.record_at(t0 + Duration::from_secs(6));
        // The first has left the window when the third comes.
        w.record_at(t0 + Duration::from_secs(11));
        assert!(!w.tripped(), "three traps over 11 s");
        w.record_at(t0 + Duration::from_secs(12));
        assert!(w.tripped(), "three traps within 10 s");
        w.reset();
        assert!(!w.tripped());
        let off = TrapWindow::new(RollbackPolicy { traps: 0, ..policy });
        for _ in 0..10 {
            off.record_at(t0);
        }
        assert!(!off.tripped(), "0 turns rollback off");
    }
}
