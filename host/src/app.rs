//! Assembles and runs the proxy and admin listeners from a [`Config`].

use crate::admin;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::reload::{Builder, Current, SwapError, START_DEADLINE};
use crate::server::{Proxy, ProxySettings};
use crate::upstream;
use crate::wasm::host_state::{HostShared, PluginInfo};
use crate::wasm::vm::VmLimits;
use crate::wasm::WasmEngine;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
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
    /// Engine or listener failure.
    #[error("{0}")]
    Other(String),
}

/// Shared state of a running proxy.
pub struct App {
    /// The published filter runtime.
    pub current: Arc<Current>,
    /// Builds new runtimes for swaps.
    pub builder: Builder,
    /// Proxy metrics.
    pub metrics: Metrics,
    /// Admin bearer token.
    pub admin_token: Option<String>,
    /// Start time.
    pub started: Instant,
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

/// Validates the configuration, starts the filter and binds both listeners.
pub async fn start(config: Config) -> Result<Running, StartError> {
    config.validate()?;
    let module = module_bytes(&config)?;
    let plugin_config = config.plugin_config()?;
    let metrics = Metrics::new().map_err(|e| StartError::Other(e.to_string()))?;
    let engine = Arc::new(WasmEngine::new().map_err(|e| StartError::Other(e.to_string()))?);
    let builder = Builder {
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
        clusters: config.clusters.clone(),
        vms: config.vms(),
        limits: VmLimits {
            callback_deadline: Duration::from_millis(config.filter.callback_deadline_ms),
            start_deadline: START_DEADLINE,
            memory_bytes: config.filter.memory_limit_mib << 20,
        },
        metrics: metrics.clone(),
    };
    let version = builder.compile(module).await?;
    let runtime = builder.build(version, plugin_config)?;
    tracing::info!(sha256 = %runtime.version.sha256, vms = runtime.pool.len(), "filter started");
    let current = Arc::new(Current::new(runtime));
    let proxy = Arc::new(Proxy {
        current: current.clone(),
        client: upstream::client(Duration::from_millis(config.connect_timeout_ms)),
        metrics: metrics.clone(),
        settings: ProxySettings {
            upstream_header: config.upstream_header.to_ascii_lowercase(),
            max_body_bytes: config.max_body_bytes,
            failure_mode: config.failure_mode,
        },
    });
    let app = Arc::new(App {
        current,
        builder,
        metrics,
        admin_token: config.admin_token.clone(),
        started: Instant::now(),
    });
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr).await.map_err(|e| StartError::Other(format!("binding {what} {addr}: {e}")))
    };
    let proxy_listener = bind(config.listen, "listen").await?;
    let admin_listener = bind(config.admin, "admin").await?;
    let listen = proxy_listener.local_addr().map_err(|e| StartError::Other(e.to_string()))?;
    let admin = admin_listener.local_addr().map_err(|e| StartError::Other(e.to_string()))?;
    tokio::spawn(serve(proxy_listener, move |req, remote| {
        let proxy = proxy.clone();
        async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, remote).await) }
    }));
    let admin_app = app.clone();
    tokio::spawn(serve(admin_listener, move |req, _remote| {
        let app = admin_app.clone();
        async move { Ok::<_, std::convert::Infallible>(admin::handle(app, req).await) }
    }));
    Ok(Running { listen, admin, app })
}

/// Accept loop: HTTP/1.1 and h2c on each connection.
async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(http::Request<hyper::body::Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<http::Response<upstream::ProxyBody>, std::convert::Infallible>>
        + Send
        + 'static,
{
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handler(req, remote));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

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
