//! Configuration: one TOML file, with CLI flags for the common case.
//!
//! ```toml
//! listen = "127.0.0.1:8000"        # proxy listener (default)
//! admin = "127.0.0.1:9901"         # admin listener, loopback by default
//! # admin_token = "secret"         # bearer token for the admin API (none)
//! backends = ["127.0.0.1:8001", "127.0.0.1:8002"]   # required
//! upstream_header = "x-envoy-original-dst-host"     # header the filter routes with
//! max_body_bytes = 4194304         # larger request bodies are streamed unseen
//! failure_mode = "open"            # "open": round robin on filter failure; "closed": 503
//! connect_timeout_ms = 2000
//!
//! [clusters]                       # callout clusters (prefixgate_backends = all backends)
//! # metrics = ["127.0.0.1:8001"]
//!
//! [filter]
//! # module = "prefixgate_filter.wasm"  # default: the module embedded in the binary
//! # policy = "prefix_aware"            # builds {"policy":…,"backends":[…]}
//! # plugin_config = '{"policy":"pow2","backends":["127.0.0.1:8001"]}'  # inline JSON
//! # plugin_config_file = "plugin.json"
//! name = "prefixgate"              # plugin_name property
//! root_id = ""                     # plugin_root_id property
//! vm_id = "prefixgate"             # shared-data namespace
//! vm_config = ""
//! vms = 0                          # VMs in the pool; 0 = one per CPU
//! callback_deadline_ms = 20
//! memory_limit_mib = 256
//! ```

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
    /// Largest request body buffered for the filter. Default 4 MiB.
    pub max_body_bytes: usize,
    /// Behaviour on filter failure. Default `open`.
    pub failure_mode: FailureMode,
    /// Upstream connect timeout. Default 2000 ms.
    pub connect_timeout_ms: u64,
    /// The filter.
    pub filter: FilterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9901)),
            admin_token: None,
            backends: Vec::new(),
            clusters: BTreeMap::new(),
            upstream_header: "x-envoy-original-dst-host".into(),
            max_body_bytes: 4 << 20,
            failure_mode: FailureMode::Open,
            connect_timeout_ms: 2000,
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
    /// Policy name, for the plugin configuration built from the backends.
    pub policy: Option<String>,
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
        if self.backends.is_empty() {
            return Err(field("backends", "at least one backend is required"));
        }
        for b in &self.backends {
            crate::upstream::parse_backend(b).map_err(|e| field("backends", e.0))?;
        }
        crate::upstream::Backends::new(&self.backends, &self.clusters).map_err(|e| field("clusters", e.0))?;
        if http::HeaderName::from_bytes(self.upstream_header.as_bytes()).is_err() {
            return Err(field("upstream_header", format!("{:?} is not a header name", self.upstream_header)));
        }
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

    /// The plugin configuration bytes: inline, from the file, or built from
    /// `policy` and `backends` (`{"policy":…,"backends":[…]}`).
    pub fn plugin_config(&self) -> Result<Vec<u8>, ConfigError> {
        if let Some(inline) = &self.filter.plugin_config {
            return Ok(inline.as_bytes().to_vec());
        }
        if let Some(path) = &self.filter.plugin_config_file {
            return std::fs::read(path).map_err(|source| ConfigError::Read { path: path.clone(), source });
        }
        let mut obj = serde_json::Map::new();
        if let Some(p) = &self.filter.policy {
            obj.insert("policy".into(), p.clone().into());
        }
        obj.insert("backends".into(), self.backends.clone().into());
        Ok(serde_json::Value::Object(obj).to_string().into_bytes())
    }

    /// Number of VMs to run.
    pub fn vms(&self) -> usize {
        match self.filter.vms {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }
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
        let pc = String::from_utf8(c.plugin_config().unwrap()).unwrap();
        assert_eq!(pc, r#"{"backends":["127.0.0.1:1","127.0.0.1:2"],"policy":"pow2"}"#);
        assert_eq!(backends_in_plugin_config(pc.as_bytes()).unwrap().len(), 2);
        let detailed = br#"{"backends":["127.0.0.1:1",{"address":"127.0.0.1:2","weight":2}]}"#;
        assert_eq!(backends_in_plugin_config(detailed).unwrap(), vec!["127.0.0.1:1", "127.0.0.1:2"]);
        c.backends.clear();
        assert!(c.validate().unwrap_err().to_string().contains("`backends`"));
    }
}
