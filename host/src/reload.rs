//! The running filter and its hot swap: a [`Runtime`] (module version, VM
//! pool, plugin configuration, backends) is built off the request path and
//! published atomically; requests in flight keep the one they started with.

use crate::config::{backends_in_plugin_config, is_same_listener};
use crate::metrics::Metrics;
use crate::upstream::{BackendError, Backends};
use crate::wasm::engine::WasmError;
use crate::wasm::host_state::{HostShared, PluginInfo};
use crate::wasm::vm::{VmEnv, VmLimits};
use crate::wasm::{ModuleVersion, Pool, PoolSettings, WasmEngine};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Why a swap was refused.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The module or its configuration was refused.
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// The plugin configuration names invalid backends.
    #[error("plugin configuration backends: {0}")]
    Backends(#[from] BackendError),
    /// Compilation task failed.
    #[error("compilation task failed: {0}")]
    Join(String),
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
}

impl Builder {
    /// Compiles module bytes off the async executor.
    pub async fn compile(&self, bytes: Vec<u8>) -> Result<Arc<ModuleVersion>, SwapError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || ModuleVersion::compile(&engine, &bytes))
            .await
            .map_err(|e| SwapError::Join(e.to_string()))?
            .map(Arc::new)
            .map_err(SwapError::from)
    }

    /// Starts VMs of `version` configured with `plugin_config`.
    pub fn build(&self, version: Arc<ModuleVersion>, plugin_config: Vec<u8>) -> Result<Runtime, SwapError> {
        let list = backends_in_plugin_config(&plugin_config).unwrap_or_else(|| self.backends.clone());
        let backends = Arc::new(Backends::new(&list, &self.clusters)?);
        let own = self.own_addresses.get().map(Vec::as_slice).unwrap_or_default();
        if let Some(b) = backends.all().iter().find(|b| own.iter().any(|o| is_same_listener(*o, b.addr))) {
            return Err(SwapError::Backends(BackendError(format!(
                "{} is this proxy's own listen or admin address; requests to it would loop",
                b.name
            ))));
        }
        let plugin = Arc::new(PluginInfo { plugin_config: plugin_config.clone(), ..self.plugin.clone() });
        let traps = self.metrics.traps.clone();
        let settings = PoolSettings {
            vms: self.vms,
            env: VmEnv {
                shared: self.shared.clone(),
                plugin,
                resolver: backends.clone(),
                limits: self.limits.clone(),
            },
            on_trap: Arc::new(move |_| traps.inc()),
        };
        let pool = Pool::start(version.clone(), settings)?;
        Ok(Runtime { version, pool, plugin_config: Arc::new(plugin_config), backends, since: Instant::now() })
    }
}

/// The current runtime plus swap bookkeeping.
pub struct Current {
    runtime: RwLock<Arc<Runtime>>,
    swaps: AtomicU64,
    swap_lock: tokio::sync::Mutex<()>,
}

impl Current {
    /// Starts with `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        Self {
            runtime: RwLock::new(Arc::new(runtime)),
            swaps: AtomicU64::new(0),
            swap_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The runtime new requests use.
    pub fn get(&self) -> Arc<Runtime> {
        self.runtime.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Number of swaps so far.
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    /// Builds a runtime from a new module and/or plugin configuration (the
    /// current ones where `None`) and publishes it. The old one keeps
    /// serving on any error.
    pub async fn swap(
        &self,
        builder: &Builder,
        module: Option<Vec<u8>>,
        plugin_config: Option<Vec<u8>>,
    ) -> Result<Arc<Runtime>, SwapError> {
        let _one_at_a_time = self.swap_lock.lock().await;
        let old = self.get();
        let version = match module {
            Some(bytes) => builder.compile(bytes).await?,
            None => old.version.clone(),
        };
        let config = plugin_config.unwrap_or_else(|| old.plugin_config.as_ref().clone());
        let new = Arc::new(builder.build(version, config)?);
        *self.runtime.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
        self.swaps.fetch_add(1, Ordering::Relaxed);
        builder.metrics.swaps.inc();
        tracing::info!(sha256 = %new.version.sha256, "filter swapped");
        Ok(new)
    }
}

/// Default start-up deadline of a VM.
pub const START_DEADLINE: Duration = Duration::from_secs(2);
