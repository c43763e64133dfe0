//! The two hosts of the prefixgate filter, started the same way for every
//! scenario: Envoy 1.40 with the module (two workers), or the `prefixgate`
//! binary with its embedded module (two VMs), each a child process in front
//! of the same fleet with the same plugin configuration.

use crate::envoy::{Envoy, EnvoyMode};
use crate::envoy_config::UpstreamTimeouts;
use crate::error::HarnessError;
use crate::prefixgate::{Prefixgate, PrefixgateOptions};
use crate::Proxy;
use std::net::SocketAddr;
use std::time::Duration;

/// Which host runs the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// Envoy with the module.
    Envoy,
    /// The `prefixgate` binary.
    Prefixgate,
}

/// How a scenario wants its proxy, whichever the host.
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// How long a replica may take to send its response headers before the
    /// request is retried elsewhere (default: the host's).
    pub first_byte_timeout: Option<Duration>,
    /// The plugin configuration will be swapped while running (Envoy then
    /// takes it through ECDS from a watched file; prefixgate always can).
    pub hot_swap: bool,
    /// Options only prefixgate has.
    pub prefixgate: PrefixgateOptions,
}

/// A running host.
#[derive(Debug)]
pub enum RunningProxy {
    /// Envoy.
    Envoy(Envoy),
    /// prefixgate.
    Prefixgate(Prefixgate),
}

impl Host {
    /// Starts this host in front of `backends` with `plugin_config`.
    pub async fn start(
        self,
        backends: &[SocketAddr],
        plugin_config: String,
        options: &ProxyOptions,
    ) -> Result<RunningProxy, HarnessError> {
        Ok(match self {
            Host::Envoy => {
                let mode = match options.hot_swap {
                    true => EnvoyMode::Ecds(plugin_config),
                    false => EnvoyMode::Filter(plugin_config),
                };
                let timeouts = options
                    .first_byte_timeout
                    .map(|first_byte| UpstreamTimeouts::default().with_first_byte(first_byte))
                    .transpose()?;
                RunningProxy::Envoy(Envoy::start_with(backends, mode, 2, timeouts).await?)
            }
            Host::Prefixgate => {
                let mut prefixgate = options.prefixgate.clone();
                prefixgate.upstream_first_byte =
                    prefixgate.upstream_first_byte.or(options.first_byte_timeout);
                RunningProxy::Prefixgate(Prefixgate::start(backends, &plugin_config, &prefixgate).await?)
            }
        })
    }
}

impl RunningProxy {
    /// Which host this is.
    pub fn host(&self) -> Host {
        match self {
            RunningProxy::Envoy(_) => Host::Envoy,
            RunningProxy::Prefixgate(_) => Host::Prefixgate,
        }
    }

    /// The sum over every backend (or label set) of one of the filter's
    /// metrics, e.g. `prefixgate_backend_ejections_total`: Envoy's stats, or
    /// prefixgate's `/metrics`.
    pub async fn filter_metric(&self, name: &str) -> Result<f64, HarnessError> {
        match self {
            RunningProxy::Envoy(envoy) => Ok(envoy.stat(name).await? as f64),
            RunningProxy::Prefixgate(prefixgate) => prefixgate.metric(name).await,
        }
    }

    /// The metrics in the Prometheus text format: Envoy's
    /// `/stats/prometheus`, prefixgate's `/metrics`.
    pub async fn prometheus_text(&self) -> Result<String, HarnessError> {
        match self {
            RunningProxy::Envoy(envoy) => envoy.admin_get("/stats/prometheus").await,
            RunningProxy::Prefixgate(prefixgate) => prefixgate.admin_get("/metrics").await,
        }
    }

    /// Rolls out `plugin_config` as users do: a new ECDS resource file
    /// (Envoy, started with [`ProxyOptions::hot_swap`]) or `PUT
    /// /admin/config` (prefixgate, which must accept it). Envoy applies it
    /// some time later.
    pub async fn swap_plugin_config(&mut self, plugin_config: &str) -> Result<(), HarnessError> {
        match self {
            RunningProxy::Envoy(envoy) => envoy.ecds_swap(plugin_config).map(drop),
            RunningProxy::Prefixgate(prefixgate) => {
                let (status, answer) =
                    prefixgate.admin_put("config", plugin_config.as_bytes().to_vec()).await?;
                match status {
                    200 => Ok(()),
                    _ => Err(HarnessError::SwapRefused { status, answer }),
                }
            }
        }
    }

    /// Envoy, when this is Envoy.
    pub fn envoy(&self) -> Option<&Envoy> {
        match self {
            RunningProxy::Envoy(envoy) => Some(envoy),
            RunningProxy::Prefixgate(_) => None,
        }
    }

    /// prefixgate, when this is prefixgate.
    pub fn prefixgate(&self) -> Option<&Prefixgate> {
        match self {
            RunningProxy::Prefixgate(prefixgate) => Some(prefixgate),
            RunningProxy::Envoy(_) => None,
        }
    }
}

impl Proxy for RunningProxy {
    fn base_url(&self) -> &str {
        match self {
            RunningProxy::Envoy(envoy) => envoy.base_url(),
            RunningProxy::Prefixgate(prefixgate) => prefixgate.base_url(),
        }
    }
}
