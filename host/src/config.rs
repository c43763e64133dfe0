//! Configuration: one TOML file, with CLI flags for the common case.
//!
//! ```toml
//! listen = "127.0.0.1:8000"        # proxy listener (default)
//! admin = "127.0.0.1:9901"         # admin listener, loopback by default
//! # admin_token = "secret"         # bearer token for the admin API (none)
//! backends = ["127.0.0.1:8001", "127.0.0.1:8002"]   # required
//! upstream_header = "x-envoy-original-dst-host"     # header the filter routes with
//! backend_header = "x-prefixgate-backend"    # response header naming the backend, when the host routed
//! decision_header = "x-prefixgate-decision"  # response header saying why, when the host routed
//! max_body_bytes = 4194304         # larger request bodies are streamed unseen
//! max_buffered_bytes = 268435456   # request-body bytes held across all requests (256 MiB)
//! max_connections = 4096           # client connections; past it, new ones wait in the backlog
//! failure_mode = "open"            # "open": round robin on filter failure; "closed": 503
//! hops_header = "x-prefixgate-hops"  # loop detection: counted on every forwarded request
//! max_hops = 3                     # a request arriving with more hops than this gets 508
//!
//! [timeouts]                       # all in milliseconds, all > 0
//! header_read_ms = 10000           # request head (and an idle HTTP/1.1 keep-alive wait)
//! request_body_idle_ms = 60000     # gap between two chunks of a request body
//! keep_alive_idle_ms = 60000       # a client connection with no request in flight
//! upstream_connect_ms = 2000       # TCP connect to a backend
//! upstream_first_byte_ms = 120000  # request sent until the backend's response headers
//! stream_idle_ms = 300000          # gap between two chunks of a response body
//!
//! [clusters]                       # callout clusters (prefixgate_backends = all backends)
//! # metrics = ["127.0.0.1:8001"]
//!
//! [filter]
//! # module = "prefixgate_filter.wasm"  # default: the module embedded in the binary
//! # policy = "prefix_aware"            # builds the filter's configuration from `backends`
//! # plugin_config = '{"policy":"pow2","backends":["127.0.0.1:8001"]}'  # inline JSON
//! # plugin_config_file = "plugin.json"
//! name = "prefixgate"              # plugin_name property
//! root_id = ""                     # plugin_root_id property
//! vm_id = "prefixgate"             # shared-data namespace
//! vm_config = ""
//! vms = 0                          # VMs in the pool; 0 = one per CPU
//! callback_deadline_ms = 20
//! memory_limit_mib = 256
//!
//! [filter.canary]                  # sent through the new filter before a swap commits
//! path = "/v1/completions"         # a POST to this path …
//! body = '{"model":"prefixgate-canary","prompt":"prefixgate canary request","max_tokens":1}'
//! header = "x-prefixgate-canary"   # … marked with this header (value 1)
//! wait_ms = 5000                   # longest the filter may hold it paused
//!
//! [filter.rollback]                # after a swap: back to the previous filter when
//! traps = 5                        # its VMs trap this often (0: never roll back)
//! window_ms = 10000                # within this window
//! probation_ms = 60000             # during this long after the swap
//! ```

use prefixgate_filter::config::BackendConfig;
use prefixgate_filter::{FilterConfig as PluginConfig, PolicyKind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// An invalid configuration, naming the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message (names the field).
        message: String,
    },
    /// The plugin configuration built from `backends` and `[filter]` did
    /// not serialise.
    #[error("building the plugin configuration: {source}")]
    PluginConfig {
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A field has an invalid value.
    #[error("invalid config field `{field}`: {reason}")]
    Field {
        /// Dotted field name.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

fn field(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field { field, reason: reason.into() }
}

/// What to do when the filter fails (trap, deadline, VM down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Route by round robin over healthy backends.
    #[default]
    Open,
    /// Answer 503.
    Closed,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Proxy listener. Default `127.0.0.1:8000`.
    pub listen: SocketAddr,
    /// Admin listener. Default `127.0.0.1:9901`.
    pub admin: SocketAddr,
    /// Bearer token required by the admin API. Default: none.
    pub admin_token: Option<String>,
    /// Backend addresses, `ip:port`. Required.
    pub backends: Vec<String>,
    /// Callout clusters by name; `prefixgate_backends` holds every backend.
    pub clusters: BTreeMap<String, Vec<String>>,
    /// Request header naming the upstream. Default `x-envoy-original-dst-host`.
    pub upstream_header: String,
    /// Response header naming the backend that served a request whose
    /// backend the host chose (fallback, retry). Default `x-prefixgate-backend`.
    pub backend_header: String,
    /// Response header saying why the host chose the backend. Default
    /// `x-prefixgate-decision`.
    pub decision_header: String,
    /// Largest request body buffered for the filter. Default 4 MiB.
    pub max_body_bytes: usize,
    /// Request-body bytes buffered across all requests (the proxy's copy and
    /// the filter's copy both count). A request whose next chunk does not
    /// fit stops buffering and is streamed unseen (routed by load); one
    /// that cannot buffer at all gets 503. Default 256 MiB.
    pub max_buffered_bytes: usize,
    /// Client connections served at once; past it, new connections wait in
    /// the listen backlog until one closes. Default 4096.
    pub max_connections: usize,
    /// Behaviour on filter failure. Default `open`.
    pub failure_mode: FailureMode,
    /// Request header counting the prefixgate proxies a request went
    /// through. Default `x-prefixgate-hops`.
    pub hops_header: String,
    /// A request arriving with more hops than this is answered 508 (a
    /// routing loop). Default 3.
    pub max_hops: u32,
    /// Timeouts of every network read.
    pub timeouts: Timeouts,
    /// The filter.
    pub filter: FilterConfig,
}

/// Timeouts, in milliseconds; each must be > 0. The defaults follow
/// Envoy's where an LLM workload does not call for another value (see the
/// host README).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Reading a request head; hyper also runs it while an HTTP/1.1
    /// connection waits for its next request. Default 10 s.
    pub header_read_ms: u64,
    /// Longest gap between two chunks of a request body (408). Default 60 s.
    pub request_body_idle_ms: u64,
    /// A client connection with no request in flight is closed after this.
    /// Default 60 s.
    pub keep_alive_idle_ms: u64,
    /// TCP connect to a backend (then retried on another). Default 2 s.
    pub upstream_connect_ms: u64,
    /// From sending the request until the backend's response headers
    /// (504, counted as a backend failure). Default 120 s.
    pub upstream_first_byte_ms: u64,
    /// Longest gap between two chunks of a response body (the stream is
    /// cut, with an SSE error event for `text/event-stream`). Default 300 s.
    pub stream_idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read_ms: 10_000,
            request_body_idle_ms: 60_000,
            keep_alive_idle_ms: 60_000,
            upstream_connect_ms: 2_000,
            upstream_first_byte_ms: 120_000,
            stream_idle_ms: 300_000,
        }
    }
}

impl Timeouts {
    fn validate(&self) -> Result<(), ConfigError> {
        let all = [
            ("timeouts.header_read_ms", self.header_read_ms),
            ("timeouts.request_body_idle_ms", self.request_body_idle_ms),
            ("timeouts.keep_alive_idle_ms", self.keep_alive_idle_ms),
            ("timeouts.upstream_connect_ms", self.upstream_connect_ms),
            ("timeouts.upstream_first_byte_ms", self.upstream_first_byte_ms),
            ("timeouts.stream_idle_ms", self.stream_idle_ms),
        ];
        for (name, ms) in all {
            if ms == 0 {
                return Err(field(name, "must be > 0 (every network read has a timeout)"));
            }
            if ms > MAX_TIMEOUT_MS {
                return Err(field(name, format!("must be at most {MAX_TIMEOUT_MS} (one day)")));
            }
        }
        Ok(())
    }
}

/// Largest `max_connections` accepted (far above any file-descriptor limit).
const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

/// Largest timeout accepted: one day.
const MAX_TIMEOUT_MS: u64 = 86_400_000;

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9901)),
            admin_token: None,
            backends: Vec::new(),
            clusters: BTreeMap::new(),
            upstream_header: "x-envoy-original-dst-host".into(),
            backend_header: "x-prefixgate-backend".into(),
            decision_header: "x-prefixgate-decision".into(),
            max_body_bytes: 4 << 20,
            max_buffered_bytes: 256 << 20,
            max_connections: 4096,
            failure_mode: FailureMode::Open,
            hops_header: "x-prefixgate-hops".into(),
            max_hops: 3,
            timeouts: Timeouts::default(),
            filter: FilterConfig::default(),
        }
    }
}

/// The filter and its VMs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Path of the `.wasm` module. Default: the embedded module.
    pub module: Option<PathBuf>,
    /// Routing policy of the plugin configuration built from `backends`
    /// (when neither `plugin_config` nor `plugin_config_file` is given).
    /// Default: the filter's default, `prefix_aware`.
    pub policy: Option<PolicyKind>,
    /// Plugin configuration, inline (opaque to the host).
    pub plugin_config: Option<String>,
    /// Plugin configuration file.
    pub plugin_config_file: Option<PathBuf>,
    /// `plugin_name`. Default `prefixgate`.
    pub name: String,
    /// `plugin_root_id`. Default empty.
    pub root_id: String,
    /// Shared-data namespace. Default `prefixgate`.
    pub vm_id: String,
    /// VM configuration (buffer 6). Default empty.
    pub vm_config: String,
    /// Number of VMs; 0 = one per CPU. Default 0.
    pub vms: usize,
    /// Deadline of each callback, enforced to within 5 ms. Default 20 ms.
    pub callback_deadline_ms: u64,
    /// Memory limit per VM. Default 256 MiB.
    pub memory_limit_mib: usize,
    /// The canary request of a swap.
    pub canary: CanaryConfig,
    /// Automatic rollback of a swapped-in filter.
    pub rollback: RollbackConfig,
}

/// The request every swap sends through the new filter before it commits
/// (the default is shaped for the embedded routing filter).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    /// Path of the canary `POST`. Default `/v1/completions`.
    pub path: String,
    /// Its body. Default: a one-token completion of a short prompt.
    pub body: String,
    /// Header marking it (value `1`). Default `x-prefixgate-canary`.
    pub header: String,
    /// Longest time the filter may keep it paused. Default 5 s.
    pub wait_ms: u64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            path: "/v1/completions".into(),
            body: r#"{"model":"prefixgate-canary","prompt":"prefixgate canary request","max_tokens":1}"#
                .into(),
            header: "x-prefixgate-canary".into(),
            wait_ms: 5_000,
        }
    }
}

/// When a swapped-in filter is rolled back to the previous module and
/// plugin configuration: `traps` traps within `window_ms`, during the
/// first `probation_ms` after the swap.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollbackConfig {
    /// Traps that trigger a rollback; 0 turns rollback off. Default 5.
    pub traps: u32,
    /// Window the traps must fall within. Default 10 s.
    pub window_ms: u64,
    /// How long a swapped-in filter is watched. Default 60 s.
    pub probation_ms: u64,
}

impl Default for RollbackConfig {
    fn default() -> Self {
        Self { traps: 5, window_ms: 10_000, probation_ms: 60_000 }
    }
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            module: None,
            policy: None,
            plugin_config: None,
            plugin_config_file: None,
            name: "prefixgate".into(),
            root_id: String::new(),
            vm_id: "prefixgate".into(),
            vm_config: String::new(),
            vms: 0,
            callback_deadline_ms: 20,
            memory_limit_mib: 256,
            canary: CanaryConfig::default(),
            rollback: RollbackConfig::default(),
        }
    }
}

impl Config {
    /// Reads and parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_string())
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let from_plugin = self.plugin_backends();
        match &from_plugin {
            None if self.backends.is_empty() => {
                return Err(field(
                    "backends",
                    "at least one backend is required (here, or in the plugin configuration's `backends`)",
                ));
            }
            Some(listed) if !self.backends.is_empty() && !same_set(listed, &self.backends) => {
                return Err(field(
                    "backends",
                    format!(
                        "{:?} and the plugin configuration's backends {listed:?} differ; give the backends in one place (the plugin configuration's are the ones the proxy uses)",
                        self.backends
                    ),
                ));
            }
            _ => {}
        }
        for b in &self.backends {
            crate::upstream::parse_backend(b).map_err(|e| field("backends", crate::error_chain(&e)))?;
        }
        crate::upstream::Backends::new(&self.backends, &self.clusters)
            .map_err(|e| field("clusters", crate::error_chain(&e)))?;
        if http::HeaderName::from_bytes(self.upstream_header.as_bytes()).is_err() {
            return Err(field("upstream_header", format!("{:?} is not a header name", self.upstream_header)));
        }
        for (name, value) in [
            ("hops_header", &self.hops_header),
            ("backend_header", &self.backend_header),
            ("decision_header", &self.decision_header),
            ("filter.canary.header", &self.filter.canary.header),
        ] {
            if http::HeaderName::from_bytes(value.as_bytes()).is_err() {
                return Err(field(name, format!("{value:?} is not a header name")));
            }
        }
        if !self.filter.canary.path.starts_with('/') {
            return Err(field("filter.canary.path", "must start with /"));
        }
        if self.filter.canary.wait_ms == 0 || self.filter.canary.wait_ms > MAX_TIMEOUT_MS {
            return Err(field("filter.canary.wait_ms", format!("must be in 1..={MAX_TIMEOUT_MS}")));
        }
        let rollback = &self.filter.rollback;
        if rollback.traps > 0 {
            for (name, ms) in [
                ("filter.rollback.window_ms", rollback.window_ms),
                ("filter.rollback.probation_ms", rollback.probation_ms),
            ] {
                if ms == 0 || ms > MAX_TIMEOUT_MS {
                    return Err(field(name, format!("must be in 1..={MAX_TIMEOUT_MS}")));
                }
            }
        }
        if self.hops_header.eq_ignore_ascii_case(&self.upstream_header) {
            return Err(field("hops_header", "must differ from upstream_header"));
        }
        if self.max_buffered_bytes < self.max_body_bytes.saturating_mul(2) {
            return Err(field(
                "max_buffered_bytes",
                format!(
                    "must be at least twice max_body_bytes ({}): a buffered body is held by the proxy and the filter",
                    self.max_body_bytes
                ),
            ));
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(field("max_connections", format!("must be in 1..={MAX_CONNECTIONS_LIMIT}")));
        }
        self.timeouts.validate()?;
        self.refuse_own_addresses(from_plugin.unwrap_or_default())?;
        if self.filter.callback_deadline_ms == 0 {
            return Err(field("filter.callback_deadline_ms", "must be > 0"));
        }
        if self.filter.memory_limit_mib == 0 || self.filter.memory_limit_mib > 4096 {
            return Err(field("filter.memory_limit_mib", "must be in 1..=4096"));
        }
        if self.filter.plugin_config.is_some() && self.filter.plugin_config_file.is_some() {
            return Err(field("filter.plugin_config", "give plugin_config or plugin_config_file, not both"));
        }
        Ok(())
    }

    /// Refuses backends (here, or `from_plugin`: the plugin configuration's)
    /// that are the proxy's own listen or admin address (one request would
    /// loop until file descriptors run out).
    fn refuse_own_addresses(&self, from_plugin: Vec<String>) -> Result<(), ConfigError> {
        let own = [("listen", self.listen), ("admin", self.admin)];
        let lists = [("backends", self.backends.clone()), ("filter.plugin_config", from_plugin)];
        for (list_field, list) in lists {
            for b in &list {
                let Ok((_, addr)) = crate::upstream::parse_backend(b) else { continue };
                if let Some((what, _)) = own.iter().find(|(_, own)| is_same_listener(*own, addr)) {
                    return Err(field(
                        list_field,
                        format!("{b} is this proxy's own {what} address; requests to it would loop"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The `backends` of the given plugin configuration (inline or file), if
    /// it lists any. A file that cannot be read lists none here; reading it
    /// for the filter reports the error.
    fn plugin_backends(&self) -> Option<Vec<String>> {
        match (&self.filter.plugin_config, &self.filter.plugin_config_file) {
            (Some(inline), _) => backends_in_plugin_config(inline.as_bytes()),
            (None, Some(path)) => std::fs::read(path).ok().and_then(|b| backends_in_plugin_config(&b)),
            (None, None) => None,
        }
    }

    /// The plugin configuration bytes: inline, from the file, or built from
    /// `policy`, `backends` and `upstream_header` as the filter's typed
    /// configuration, every other field at the filter's default.
    pub fn plugin_config(&self) -> Result<Vec<u8>, ConfigError> {
        if let Some(inline) = &self.filter.plugin_config {
            return Ok(inline.as_bytes().to_vec());
        }
        if let Some(path) = &self.filter.plugin_config_file {
            return std::fs::read(path).map_err(|source| ConfigError::Read { path: path.clone(), source });
        }
        let backends = self.backends.iter().cloned().map(BackendConfig::Address).collect();
        let mut config = PluginConfig::new(backends);
        if let Some(policy) = self.filter.policy {
            config.policy = policy;
        }
        config.upstream_header = self.upstream_header.clone();
        serde_json::to_vec(&config).map_err(|source| ConfigError::PluginConfig { source })
    }

    /// Number of VMs to run.
    pub fn vms(&self) -> usize {
        match self.filter.vms {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }
}

/// Whether a backend at `addr` is the listener bound at `own`: same port,
/// and the same IP or a listener on every interface reached by loopback
/// or its unspecified address. Port 0 (chosen at bind time) never matches.
pub fn is_same_listener(own: SocketAddr, addr: SocketAddr) -> bool {
    if own.port() == 0 || own.port() != addr.port() {
        return false;
    }
    own.ip() == addr.ip()
        || (own.ip().is_unspecified() && (addr.ip().is_loopback() || addr.ip().is_unspecified()))
}

/// Whether `a` and `b` hold the same addresses, in any order.
fn same_set(a: &[String], b: &[String]) -> bool {
    let set = |l: &[String]| l.iter().map(|s| s.trim().to_owned()).collect::<std::collections::BTreeSet<_>>();
    set(a) == set(b)
}

/// The `backends` array of a JSON plugin configuration, if it has one
/// (entries are `"ip:port"` or objects with an `"address"`): the
/// one field of the (otherwise opaque) plugin configuration the host reads,
/// so that a configuration swap can change the backend set.
pub fn backends_in_plugin_config(bytes: &[u8]) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let arr = v.get("backends")?.as_array()?;
    arr.iter().map(|b| b.as_str().or_else(|| b.get("address")?.as_str()).map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unknown_field_is_named() {
        let err = Config::parse("listen = \"127.0.0.1:1\"\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        let err = Config::parse("[filter]\nvms = \"x\"\n").unwrap_err();
        assert!(err.contains("vms"), "{err}");
    }

    #[test]
    fn plugin_config_from_policy() {
        let mut c =
            Config::parse("backends = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n[filter]\npolicy = \"pow2\"\n")
                .unwrap();
        c.validate().unwrap();
        c.upstream_header = "x-gateway-destination-endpoint".into();
        let pc = String::from_utf8(c.plugin_config().unwrap()).unwrap();
        // The filter reads it back as the typed configuration it was built from.
        let parsed = PluginConfig::from_json(pc.as_bytes()).unwrap();
        assert_eq!(parsed.policy, PolicyKind::Pow2);
        assert_eq!(parsed.upstream_header, "x-gateway-destination-endpoint");
        let defaults = PluginConfig::new(parsed.backends.clone());
        assert_eq!(parsed.cluster, defaults.cluster);
        assert_eq!(backends_in_plugin_config(pc.as_bytes()).unwrap().len(), 2);
        let detailed = br#"{"backends":["127.0.0.1:1",{"address":"127.0.0.1:2","weight":2}]}"#;
        assert_eq!(backends_in_plugin_config(detailed).unwrap(), vec!["127.0.0.1:1", "127.0.0.1:2"]);
        c.backends.clear();
        assert!(c.validate().unwrap_err().to_string().contains("`backends`"));
    }

    #[test]
    fn backends_are_given_in_one_place() {
        let plugin = |list: &str| format!("[filter]\nplugin_config = '{{\"backends\":[{list}]}}'\n");
        // Only in the plugin configuration: the proxy takes them from there.
        Config::parse(&plugin("\"127.0.0.1:1\"")).unwrap().validate().unwrap();
        // In both, the same set in any order: no conflict.
        let both = format!(
            "backends = [\"127.0.0.1:2\", \"127.0.0.1:1\"]\n{}",
            plugin("\"127.0.0.1:1\",\"127.0.0.1:2\"")
        );
        Config::parse(&both).unwrap().validate().unwrap();
        // In both and different: refused, naming both lists, never one silently replacing the other.
        let differ = format!("backends = [\"127.0.0.1:1\"]\n{}", plugin("\"127.0.0.1:2\""));
        let err = Config::parse(&differ).unwrap().validate().unwrap_err().to_string();
        assert!(
            err.contains("`backends`") && err.contains("127.0.0.1:1") && err.contains("127.0.0.1:2"),
            "{err}"
        );
        // Nowhere: refused.
        let err = Config::parse("[filter]\npolicy = \"pow2\"\n").unwrap().validate().unwrap_err().to_string();
        assert!(err.contains("`backends`"), "{err}");
    }

    #[test]
    fn timeouts_and_caps_are_validated_by_name() {
        let ok = "backends = [\"127.0.0.1:1\"]\n";
        Config::parse(ok).unwrap().validate().unwrap();
        let d = Config::default();
        assert_eq!(d.timeouts.header_read_ms, 10_000);
        assert_eq!(d.max_buffered_bytes, 256 << 20);
        for (text, name) in [
            ("[timeouts]\nheader_read_ms = 0\n", "timeouts.header_read_ms"),
            ("[timeouts]\nstream_idle_ms = 0\n", "timeouts.stream_idle_ms"),
            ("[timeouts]\nupstream_first_byte_ms = 100000000\n", "timeouts.upstream_first_byte_ms"),
            ("max_buffered_bytes = 1000\n", "max_buffered_bytes"),
            ("max_connections = 0\n", "max_connections"),
            ("max_connections = 100000000\n", "max_connections"),
            ("hops_header = \"bad header\"\n", "hops_header"),
            ("decision_header = \"bad header\"\n", "decision_header"),
            ("[filter.canary]\npath = \"v1\"\n", "filter.canary.path"),
            ("[filter.rollback]\nwindow_ms = 0\n", "filter.rollback.window_ms"),
        ] {
            let err = Config::parse(&format!("{ok}{text}")).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains(&format!("`{name}`")), "{text}: {err}");
        }
        let err = Config::parse("[timeouts]\nheader_read = 1\n").unwrap_err();
        assert!(err.contains("header_read"), "unknown fields are refused: {err}");
    }

    #[test]
    fn backends_naming_the_proxy_itself_are_refused() {
        for (text, name) in [
            ("listen = \"127.0.0.1:8000\"\nbackends = [\"127.0.0.1:8000\"]\n", "`backends`"),
            (
                "admin = \"127.0.0.1:9901\"\nbackends = [\"127.0.0.1:1\", \"http://127.0.0.1:9901/\"]\n",
                "`backends`",
            ),
            ("listen = \"0.0.0.0:8000\"\nbackends = [\"127.0.0.1:8000\"]\n", "`backends`"),
            ("[filter]\nplugin_config = '{\"backends\":[\"127.0.0.1:8000\"]}'\n", "`filter.plugin_config`"),
        ] {
            let err = Config::parse(text).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("own"), "{text}: {err}");
        }
        let other_port = "listen = \"127.0.0.1:8000\"\nbackends = [\"127.0.0.1:8001\"]\n";
        Config::parse(other_port).unwrap().validate().unwrap();
        let ephemeral =
            "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:8001\"]\n";
        Config::parse(ephemeral).unwrap().validate().unwrap();
    }
}
