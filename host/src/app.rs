//! Assembles and runs the proxy and admin listeners from a [`Config`].

use crate::admin;
use crate::canary::Canary;
use crate::config::{Config, ConfigError};
use crate::limits::BufferBudget;
use crate::listener::{self, ListenerLimits};
use crate::metrics::Metrics;
use crate::reload::{Builder, Current, RollbackPolicy, SwapError, START_DEADLINE};
use crate::server::{Proxy, ProxySettings, ProxyTimeouts};
pub use crate::state::App;
use crate::upstream;
use crate::wasm::host_state::{HostShared, PluginInfo};
use crate::wasm::vm::VmLimits;
use crate::wasm::WasmEngine;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The filter module embedded at build time (empty if it was not built).
pub static EMBEDDED_FILTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/prefixgate_filter.wasm"));

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The filter was refused.
    #[error("filter: {0}")]
    Filter(#[from] SwapError),
    /// The metrics could not be registered.
    #[error("registering metrics")]
    Metrics(#[source] prometheus::Error),
    /// The wasm engine could not start.
    #[error("starting the wasm engine")]
    Engine(#[source] crate::wasm::engine::WasmError),
    /// A listener could not be bound.
    #[error("binding the {what} listener {addr}")]
    Bind {
        /// `listen` or `admin`.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A bound listener has no local address.
    #[error("reading the {what} listener's address")]
    LocalAddr {
        /// `listen` or `admin`.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running proxy.
pub struct Running {
    /// Bound proxy address.
    pub listen: SocketAddr,
    /// Bound admin address.
    pub admin: SocketAddr,
    /// Shared state.
    pub app: Arc<App>,
}

/// The module bytes the configuration asks for.
pub fn module_bytes(config: &Config) -> Result<Vec<u8>, ConfigError> {
    match &config.filter.module {
        Some(path) => std::fs::read(path).map_err(|source| ConfigError::Read { path: path.clone(), source }),
        None if EMBEDDED_FILTER.is_empty() => Err(ConfigError::Field {
            field: "filter.module",
            reason: format!(
                "this binary has no embedded filter ({}); pass --filter path.wasm",
                option_env!("PREFIXGATE_EMBEDDED_FILTER_NOTE").unwrap_or("not built")
            ),
        }),
        None => Ok(EMBEDDED_FILTER.to_vec()),
    }
}

/// The start-up warning for an admin API anyone who reaches it may use.
pub fn admin_token_warning(config: &Config) -> Option<String> {
    config.admin_token.is_none().then(|| {
        format!(
            "the admin API on {} has no token: anyone who can reach it can swap the filter; \
             set admin_token (or --admin-token / PREFIXGATE_ADMIN_TOKEN)",
            config.admin
        )
    })
}

/// The builder of the filter's runtimes `config` describes: engine, shared
/// data, plugin identity, VM limits, canary and rollback policy.
fn builder(config: &Config, metrics: &Metrics) -> Result<Builder, StartError> {
    let engine = Arc::new(WasmEngine::new().map_err(StartError::Engine)?);
    Ok(Builder {
        engine,
        shared: Arc::new(HostShared {
            data: Default::default(),
            queues: Default::default(),
            metrics: Default::default(),
        }),
        plugin: PluginInfo {
            name: config.filter.name.clone(),
            root_id: config.filter.root_id.clone(),
            vm_id: config.filter.vm_id.clone(),
            vm_config: config.filter.vm_config.as_bytes().to_vec(),
            plugin_config: Vec::new(),
        },
        backends: config.backends.clone(),
        upstream_header: config.upstream_header.clone(),
        clusters: config.clusters.clone(),
        vms: config.vms(),
        limits: VmLimits {
            callback_deadline: Duration::from_millis(config.filter.callback_deadline_ms),
            start_deadline: START_DEADLINE,
            memory_bytes: config.filter.memory_limit_mib << 20,
        },
        metrics: metrics.clone(),
        own_addresses: Default::default(),
        canary: Canary {
            path: config.filter.canary.path.clone(),
            body: config.filter.canary.body.as_bytes().to_vec(),
            header: config.filter.canary.header.to_ascii_lowercase(),
            wait: Duration::from_millis(config.filter.canary.wait_ms),
        },
        rollback: RollbackPolicy {
            traps: config.filter.rollback.traps,
            window: Duration::from_millis(config.filter.rollback.window_ms),
            probation: Duration::from_millis(config.filter.rollback.probation_ms),
        },
    })
}

/// Checks a filter module and its plugin configuration as a hot swap does
/// before it commits (compile, configure every VM, a canary request and a
/// tick), binding nothing: what a rollout to another host (Envoy) runs
/// first, so that a module that traps never ships. Returns its sha256.
pub async fn check(config: Config) -> Result<String, StartError> {
    config.validate()?;
    let module = module_bytes(&config)?;
    let plugin_config = config.plugin_config()?;
    let metrics = Metrics::new().map_err(StartError::Metrics)?;
    let builder = builder(&config, &metrics)?;
    let version = builder.compile(module).await?;
    let runtime = builder.build_proven(version, plugin_config).await?;
    Ok(runtime.version.sha256.clone())
}

/// Validates the configuration, starts the filter and binds both listeners.
pub async fn start(config: Config) -> Result<Running, StartError> {
    config.validate()?;
    if let Some(warning) = admin_token_warning(&config) {
        tracing::warn!("{warning}");
    }
    let module = module_bytes(&config)?;
    let plugin_config = config.plugin_config()?;
    let metrics = Metrics::new().map_err(StartError::Metrics)?;
    let builder = builder(&config, &metrics)?;
    let builder = Arc::new(builder);
    let version = builder.compile(module).await?;
    let runtime = builder.build(version, plugin_config)?;
    tracing::info!(sha256 = %runtime.version.sha256, vms = runtime.pool.len(), "filter started");
    let current = Arc::new(Current::new(runtime));
    let t = &config.timeouts;
    let ms = Duration::from_millis;
    let buffered = BufferBudget::new(config.max_buffered_bytes, metrics.buffered_bytes.clone());
    let proxy = Arc::new(Proxy {
        current: current.clone(),
        client: upstream::client(ms(t.upstream_connect_ms)),
        metrics: metrics.clone(),
        buffered: buffered.clone(),
        settings: ProxySettings {
            upstream_header: config.upstream_header.to_ascii_lowercase(),
            backend_header: header_name(&config.backend_header)?,
            decision_header: header_name(&config.decision_header)?,
            max_body_bytes: config.max_body_bytes,
            failure_mode: config.failure_mode,
            hops_header: config.hops_header.to_ascii_lowercase(),
            max_hops: config.max_hops,
            timeouts: ProxyTimeouts {
                request_body_idle: ms(t.request_body_idle_ms),
                upstream_first_byte: ms(t.upstream_first_byte_ms),
                stream_idle: ms(t.stream_idle_ms),
            },
        },
    });
    let app = Arc::new(App {
        current,
        builder,
        metrics: metrics.clone(),
        admin_token: config.admin_token.clone(),
        started: Instant::now(),
        buffered,
        upload_idle: ms(t.request_body_idle_ms),
    });
    let proxy_limits = ListenerLimits {
        max_connections: config.max_connections,
        header_read: ms(t.header_read_ms),
        keep_alive_idle: ms(t.keep_alive_idle_ms),
        connections: metrics.connections.clone(),
        timeouts: metrics.timeouts.clone(),
    };
    let admin_limits = ListenerLimits {
        max_connections: ADMIN_MAX_CONNECTIONS,
        // Not exported: the gauge counts client connections only.
        connections: prometheus::IntGauge::new("admin_connections", "admin connections")
            .map_err(StartError::Metrics)?,
        ..proxy_limits.clone()
    };
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what, addr, source })
    };
    let proxy_listener = bind(config.listen, "listen").await?;
    let admin_listener = bind(config.admin, "admin").await?;
    let local = |l: &TcpListener, what: &'static str| {
        l.local_addr().map_err(|source| StartError::LocalAddr { what, source })
    };
    let listen = local(&proxy_listener, "listen")?;
    let admin = local(&admin_listener, "admin")?;
    let _ = app.builder.own_addresses.set(vec![listen, admin]);
    tokio::spawn(listener::serve(proxy_listener, proxy_limits, move |req, remote| {
        let proxy = proxy.clone();
        async move { proxy.handle(req, remote).await }
    }));
    let admin_app = app.clone();
    tokio::spawn(listener::serve(admin_listener, admin_limits, move |req, _remote| {
        let app = admin_app.clone();
        async move { admin::handle(app, req).await }
    }));
    Ok(Running { listen, admin, app })
}

/// A header name from a validated configuration.
fn header_name(name: &str) -> Result<http::HeaderName, StartError> {
    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
        StartError::Config(ConfigError::Field {
            field: "headers",
            reason: format!("{name:?} is not a header name"),
        })
    })
}

/// Connections the admin listener serves at once.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Re-reads the configuration file and swaps in its module and plugin
/// configuration (SIGHUP).
pub async fn reload_from_file(app: &App, path: &Path) -> Result<(), StartError> {
    let config = Config::from_file(path)?;
    config.validate()?;
    let module = config.filter.module.as_ref().map(|_| module_bytes(&config)).transpose()?;
    let plugin_config = config.plugin_config()?;
    app.current.swap(&app.builder, module, Some(plugin_config)).await?;
    Ok(())
}
