//! The plugin configuration: JSON handed to `on_configure`, validated as a
//! whole before any of it takes effect.

use crate::policy::PolicyKind;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;

/// Most backends one configuration may list (the index keeps one entry per
/// backend per slot, so this also bounds a slot's size).
pub const MAX_BACKENDS: usize = 64;

/// Configuration of the routing filter (plugin configuration JSON).
///
/// Only `backends` is required: `{"backends": ["10.0.0.7:8000", "10.0.0.8:8000"]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Routing policy: `prefix_aware` (default), `pow2` or `round_robin`.
    #[serde(default)]
    pub policy: PolicyKind,
    /// The vLLM replicas, as `"ip:port"` or `{"address": "ip:port", ...}`.
    pub backends: Vec<BackendConfig>,
    /// Cluster (as the host names it) used for the `/metrics` scrapes of
    /// backends that name none of their own. Default `prefixgate_backends`.
    #[serde(default = "defaults::cluster")]
    pub cluster: String,
    /// prefix_aware: above this spread of load (max − min, in requests) across
    /// healthy backends the request goes to pow2 instead. `null` disables the
    /// check. Default 10, as Ray's router.
    #[serde(default = "defaults::imbalanced_threshold")]
    pub imbalanced_threshold: Option<f64>,
    /// prefix_aware: a match covering at least this share of the prompt routes
    /// to the backends holding the longest match. Default 0.1.
    #[serde(default = "defaults::match_rate_threshold")]
    pub match_rate_threshold: f64,
    /// prefix_aware: where a request without a good match goes:
    /// `smallest_tenant` (default, as Ray) or `least_loaded` (as SGLang now does).
    #[serde(default)]
    pub miss_policy: MissPolicy,
    /// least_ttft: prompt tokens of work each request already at a backend
    /// stands for in the predicted time to first token, beside the prefill
    /// queue (it decodes in the same engine steps, and other routers'
    /// requests show only in the scraped load). Default 100, the best of
    /// 0, 100 on the policy lab's grid (README, "Policy lab").
    #[serde(default = "defaults::queue_tokens")]
    pub queue_tokens: f64,
    /// least_ttft: prompt tokens one backend prefills per second, at which
    /// the prefill work this router sent it is taken to drain. Default
    /// 15000: an NVIDIA L4 serving a 1.5B model (the simulated fleet's
    /// profile prefills a fresh 2,048-token chunk at 17.7 k tokens/s, less
    /// behind thousands of tokens of context); set it for your fleet, e.g.
    /// from vLLM's logged prompt throughput under load. Too low errs
    /// towards spreading prompts, too high towards affinity.
    #[serde(default = "defaults::prefill_tokens_per_s")]
    pub prefill_tokens_per_s: f64,
    /// least_ttft: how far above the fleet's mean load (as a share of it) a
    /// backend may be and still take a request; the bound of consistent
    /// hashing with bounded loads. Default 0.25.
    #[serde(default = "defaults::load_slack")]
    pub load_slack: f64,
    /// least_ttft: scraped KV-cache usage above which a backend's matched
    /// prefix counts for less (none when full), as a replica near full
    /// evicts. Default 0.9.
    #[serde(default = "defaults::kv_pressure_threshold")]
    pub kv_pressure_threshold: f64,
    /// least_ttft: backends whose predicted cost is within this many tokens
    /// of the least count as tied, and the prompt head's rendezvous hash
    /// chooses among them, so that independent routers agree where their
    /// predictions differ by little. Default 500 (about 30 ms of prefill at
    /// the default rate), the best of 0, 500, 2000 and 8000 on the policy
    /// lab's grid: more buys coherence across routers with TTFT.
    #[serde(default = "defaults::tolerance_tokens")]
    pub tolerance_tokens: f64,
    /// least_ttft: characters of a prompt's head hashed to place a prompt no
    /// backend holds (rendezvous hashing); prompts sharing this head go to
    /// the same backend from every router. Default 1024: past a short system
    /// prompt, within the first turn of a conversation.
    #[serde(default = "defaults::rendezvous_chars")]
    pub rendezvous_chars: usize,
    /// Characters per index chunk at the start of a prompt; 64 is about one
    /// 16-token vLLM block.
    #[serde(default = "defaults::chunk_chars")]
    pub chunk_chars: usize,
    /// Past `chunk_chars / chunk_growth` characters, each chunk is this share
    /// of the text before it, so a long prompt costs few index operations and
    /// a match is exact to within this share. Default 0.125; 0 keeps every
    /// chunk `chunk_chars` wide.
    #[serde(default = "defaults::chunk_growth")]
    pub chunk_growth: f64,
    /// Slots of the prefix index, each holding one node (a run of up to 8
    /// chunks along one prompt path): its memory bound whatever the traffic.
    /// Default 65536 (at most about 43 MiB of shared data with 8 backends,
    /// 24 MiB with 4). Keep it at two to four times the nodes the fleet's KV
    /// caches hold (about a quarter of their chunks: blocks × block size ×
    /// chars per token / chunk_chars, fewer with `chunk_growth`), or prefixes
    /// the replicas still cache drop out of the index and stop attracting
    /// requests.
    #[serde(default = "defaults::index_slots")]
    pub index_slots: u32,
    /// Chunks each backend's KV cache is assumed to hold. Default: derived
    /// from the replica's `vllm:cache_config_info` once scraped, unbounded before.
    #[serde(default)]
    pub capacity_chunks: Option<u64>,
    /// Characters per token used to turn KV blocks into chunks. Default 4.
    #[serde(default = "defaults::chars_per_token")]
    pub chars_per_token: f64,
    /// Index entries older than this stop matching; 0 (default) disables.
    #[serde(default)]
    pub ttl_s: u64,
    /// Period of the `/metrics` scrape of every backend; 0 disables scraping
    /// (every backend healthy, load = in-flight). Default 500.
    #[serde(default = "defaults::scrape_interval_ms")]
    pub scrape_interval_ms: u64,
    /// Timeout of one scrape. Default 1000.
    #[serde(default = "defaults::scrape_timeout_ms")]
    pub scrape_timeout_ms: u64,
    /// Consecutive failed scrapes after which a backend is skipped, until a
    /// scrape succeeds again. Default 3.
    #[serde(default = "defaults::unhealthy_after")]
    pub unhealthy_after: u32,
    /// Passive health: consecutive failed responses (5xx, or a request the
    /// proxy could not deliver) after which a backend is ejected; 0 disables
    /// ejection. Default 5, as Envoy's outlier detection (`consecutive_5xx`).
    #[serde(default = "defaults::eject_after_failures")]
    pub eject_after_failures: u32,
    /// Length of a backend's first ejection; each further ejection in a row
    /// (its half-open probe failed) doubles it. Default 5000: shorter than
    /// Envoy's 30 s, since the probe re-admits a replica that recovered and a
    /// failed probe costs one request.
    #[serde(default = "defaults::ejection_ms")]
    pub ejection_ms: u64,
    /// Longest ejection. Default 60000.
    #[serde(default = "defaults::max_ejection_ms")]
    pub max_ejection_ms: u64,
    /// Path scraped on each backend. Default `/metrics`.
    #[serde(default = "defaults::metrics_path")]
    pub metrics_path: String,
    /// Request header that carries the chosen backend to the proxy; always
    /// overwritten. Default `x-envoy-original-dst-host` (Envoy ORIGINAL_DST).
    #[serde(default = "defaults::upstream_header")]
    pub upstream_header: String,
    /// Further backends named after the chosen one in `upstream_header`,
    /// comma-separated, least loaded first: where a retry goes when the chosen
    /// one fails before its first response byte (Envoy's `override_host` load
    /// balancer retries on the next address). 0 (default) names only the
    /// chosen backend, as Envoy's ORIGINAL_DST cluster requires; at most 7.
    #[serde(default)]
    pub upstream_fallbacks: u32,
    /// Request header in which a gateway lists the endpoints (`ip:port`,
    /// comma-separated) this request may go to, as the Gateway API inference
    /// extension's endpoint-picker protocol does with
    /// `x-gateway-destination-endpoint-subset`: the pick is confined to the
    /// configured, healthy members, and none answers 503. Default none
    /// (ignored): only a gateway that sets it should have it honoured.
    #[serde(default)]
    pub subset_header: Option<String>,
    /// Only the first this many characters of a prompt are matched and
    /// indexed (a huge prompt would otherwise cost a shared-data access per
    /// chunk for text no replica context holds). Default 131072 (~32k tokens).
    #[serde(default = "defaults::max_prompt_chars")]
    pub max_prompt_chars: usize,
    /// Bodies larger than this are routed without reading a prompt. Default 4 MiB.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Add `x-prefixgate-backend` and `x-prefixgate-decision` to responses. Default true.
    #[serde(default = "defaults::decision_headers")]
    pub decision_headers: bool,
    /// Most requests one backend takes at once (its load: this router's
    /// in-flight count or its scraped running + waiting, whichever is more),
    /// for every policy, as Ray's `max_ongoing_requests`: a backend at its
    /// cap is not picked, and a request that finds every available backend
    /// at its cap gets 429. Default none (no cap): vLLM queues requests
    /// itself, and a cap set too low turns away work the fleet could do.
    #[serde(default)]
    pub max_ongoing_requests: Option<u64>,
    /// Seed for the random choices; default: from the host's clock.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Free-form version label; ignored, but changing it changes the config,
    /// which is what makes Envoy's ECDS apply a rollout.
    #[serde(default)]
    pub version: Option<String>,
}

/// One backend: a bare `"ip:port"` or a full object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackendConfig {
    /// `"ip:port"`.
    Address(String),
    /// `{"address": "ip:port", "name": ..., "weight": ..., ...}`.
    Detailed(BackendDetails),
}

/// The object form of a backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendDetails {
    /// `ip:port` the proxy forwards to (Envoy ORIGINAL_DST needs an IP).
    pub address: String,
    /// Display name; default the address.
    #[serde(default)]
    pub name: Option<String>,
    /// Relative capacity: load is divided by it when backends are compared. Default 1.
    #[serde(default = "defaults::weight")]
    pub weight: f64,
    /// Cluster for this backend's scrapes (e.g. one STATIC cluster per replica in Envoy).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Cache capacity in chunks, overriding the global setting.
    #[serde(default)]
    pub capacity_chunks: Option<u64>,
    /// Most requests the backend takes at once, overriding the global
    /// `max_ongoing_requests`.
    #[serde(default)]
    pub max_ongoing_requests: Option<u64>,
}

impl BackendConfig {
    /// The backend's `ip:port`.
    pub fn address(&self) -> &str {
        match self {
            Self::Address(a) => a,
            Self::Detailed(d) => &d.address,
        }
    }

    /// Display name (the address unless one is given).
    pub fn name(&self) -> &str {
        match self {
            Self::Detailed(BackendDetails { name: Some(n), .. }) => n,
            _ => self.address(),
        }
    }

    /// Relative capacity, 1 unless given.
    pub fn weight(&self) -> f64 {
        match self {
            Self::Address(_) => 1.0,
            Self::Detailed(d) => d.weight,
        }
    }

    /// Cluster for scrapes, if this backend names its own.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Self::Address(_) => None,
            Self::Detailed(d) => d.cluster.as_deref(),
        }
    }

    /// The backend's own cap on requests at once, if it sets one.
    pub fn max_ongoing_requests(&self) -> Option<u64> {
        match self {
            Self::Address(_) => None,
            Self::Detailed(d) => d.max_ongoing_requests,
        }
    }

    /// Configured cache capacity, if given for this backend.
    pub fn capacity_chunks(&self) -> Option<u64> {
        match self {
            Self::Address(_) => None,
            Self::Detailed(d) => d.capacity_chunks,
        }
    }
}

/// Where prefix_aware sends a request whose prompt is not (well) cached anywhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissPolicy {
    /// The least-loaded of the backends caching the least text (Ray).
    #[default]
    SmallestTenant,
    /// The least-loaded healthy backend (SGLang after the "death spiral" fix).
    LeastLoaded,
}

/// A configuration that cannot be used, naming the field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid plugin configuration at `{field}`: {message}")]
pub struct ConfigError {
    /// Path of the offending field, e.g. `backends[1]` or `match_rate_threshold`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Most fallback backends [`FilterConfig::upstream_fallbacks`] may name.
pub const MAX_UPSTREAM_FALLBACKS: u32 = 7;

impl FilterConfig {
    /// The configuration a JSON object holding only `backends` gives: every
    /// other field at its documented default.
    pub fn new(backends: Vec<BackendConfig>) -> Self {
        Self {
            policy: PolicyKind::default(),
            backends,
            cluster: defaults::cluster(),
            imbalanced_threshold: defaults::imbalanced_threshold(),
            match_rate_threshold: defaults::match_rate_threshold(),
            miss_policy: MissPolicy::default(),
            queue_tokens: defaults::queue_tokens(),
            prefill_tokens_per_s: defaults::prefill_tokens_per_s(),
            load_slack: defaults::load_slack(),
            kv_pressure_threshold: defaults::kv_pressure_threshold(),
            rendezvous_chars: defaults::rendezvous_chars(),
            tolerance_tokens: defaults::tolerance_tokens(),
            chunk_chars: defaults::chunk_chars(),
            chunk_growth: defaults::chunk_growth(),
            index_slots: defaults::index_slots(),
            capacity_chunks: None,
            chars_per_token: defaults::chars_per_token(),
            ttl_s: 0,
            scrape_interval_ms: defaults::scrape_interval_ms(),
            scrape_timeout_ms: defaults::scrape_timeout_ms(),
            unhealthy_after: defaults::unhealthy_after(),
            eject_after_failures: defaults::eject_after_failures(),
            ejection_ms: defaults::ejection_ms(),
            max_ejection_ms: defaults::max_ejection_ms(),
            metrics_path: defaults::metrics_path(),
            upstream_header: defaults::upstream_header(),
            upstream_fallbacks: 0,
            subset_header: None,
            max_prompt_chars: defaults::max_prompt_chars(),
            max_body_bytes: defaults::max_body_bytes(),
            decision_headers: defaults::decision_headers(),
            max_ongoing_requests: None,
            seed: None,
            version: None,
        }
    }

    /// Parses and validates plugin configuration bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let config: Self = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "(root)".to_owned() } else { path };
            ConfigError::new(field, e.into_inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field's range and the backend list.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backends.is_empty() {
            return Err(ConfigError::new("backends", "at least one backend is required"));
        }
        if self.backends.len() > MAX_BACKENDS {
            return Err(ConfigError::new(
                "backends",
                format!("at most {MAX_BACKENDS} backends are supported"),
            ));
        }
        let mut seen = HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            let field = format!("backends[{i}]");
            if b.address().parse::<SocketAddr>().is_err() {
                return Err(ConfigError::new(
                    field,
                    format!("`{}` is not an ip:port address (e.g. 10.0.0.7:8000 or [::1]:8000)", b.address()),
                ));
            }
            if !seen.insert(b.address()) {
                return Err(ConfigError::new(field, format!("`{}` is listed twice", b.address())));
            }
            if !(b.weight().is_finite() && b.weight() > 0.0) {
                return Err(ConfigError::new(format!("{field}.weight"), "must be a positive number"));
            }
            if b.max_ongoing_requests() == Some(0) {
                return Err(ConfigError::new(format!("{field}.max_ongoing_requests"), "must be at least 1"));
            }
            if b.capacity_chunks() == Some(0) {
                return Err(ConfigError::new(format!("{field}.capacity_chunks"), "must be at least 1"));
            }
        }
        if let Some(t) = self.imbalanced_threshold {
            if !(t.is_finite() && t >= 0.0) {
                return Err(ConfigError::new(
                    "imbalanced_threshold",
                    "must be a number >= 0, or null to disable",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.match_rate_threshold) {
            return Err(ConfigError::new("match_rate_threshold", "must be between 0 and 1"));
        }
        if !(self.queue_tokens.is_finite() && self.queue_tokens >= 0.0) {
            return Err(ConfigError::new("queue_tokens", "must be a number >= 0"));
        }
        if !(self.prefill_tokens_per_s.is_finite() && self.prefill_tokens_per_s > 0.0) {
            return Err(ConfigError::new("prefill_tokens_per_s", "must be a positive number"));
        }
        if !(self.load_slack.is_finite() && self.load_slack >= 0.0) {
            return Err(ConfigError::new("load_slack", "must be a number >= 0"));
        }
        if !(0.0..=1.0).contains(&self.kv_pressure_threshold) {
            return Err(ConfigError::new("kv_pressure_threshold", "must be between 0 and 1"));
        }
        if !(self.tolerance_tokens.is_finite() && self.tolerance_tokens >= 0.0) {
            return Err(ConfigError::new("tolerance_tokens", "must be a number >= 0"));
        }
        if self.rendezvous_chars == 0 {
            return Err(ConfigError::new("rendezvous_chars", "must be at least 1"));
        }
        if !(1..=1 << 16).contains(&self.chunk_chars) {
            return Err(ConfigError::new("chunk_chars", "must be between 1 and 65536"));
        }
        if !(self.chunk_growth.is_finite() && (0.0..=1.0).contains(&self.chunk_growth)) {
            return Err(ConfigError::new("chunk_growth", "must be between 0 and 1"));
        }
        if !(1..=1 << 26).contains(&self.index_slots) {
            return Err(ConfigError::new("index_slots", "must be between 1 and 67108864"));
        }
        if self.max_ongoing_requests == Some(0) {
            return Err(ConfigError::new("max_ongoing_requests", "must be at least 1, or absent for no cap"));
        }
        if self.capacity_chunks == Some(0) {
            return Err(ConfigError::new("capacity_chunks", "must be at least 1"));
        }
        if !(self.chars_per_token.is_finite() && self.chars_per_token > 0.0) {
            return Err(ConfigError::new("chars_per_token", "must be a positive number"));
        }
        if self.scrape_interval_ms != 0 && self.scrape_interval_ms < 10 {
            return Err(ConfigError::new("scrape_interval_ms", "must be 0 (off) or at least 10"));
        }
        if self.scrape_timeout_ms == 0 {
            return Err(ConfigError::new("scrape_timeout_ms", "must be at least 1"));
        }
        if self.unhealthy_after == 0 {
            return Err(ConfigError::new("unhealthy_after", "must be at least 1"));
        }
        if self.eject_after_failures > 0 && self.ejection_ms == 0 {
            return Err(ConfigError::new(
                "ejection_ms",
                "must be at least 1 while eject_after_failures is set",
            ));
        }
        if self.max_ejection_ms < self.ejection_ms {
            return Err(ConfigError::new("max_ejection_ms", "must be at least ejection_ms"));
        }
        if !self.metrics_path.starts_with('/') {
            return Err(ConfigError::new("metrics_path", "must start with `/`"));
        }
        if !is_header_name(&self.upstream_header) {
            return Err(ConfigError::new("upstream_header", "must be a lowercase header name"));
        }
        if self.subset_header.as_deref().is_some_and(|h| !is_header_name(h)) {
            return Err(ConfigError::new("subset_header", "must be a lowercase header name"));
        }
        if self.upstream_fallbacks > MAX_UPSTREAM_FALLBACKS {
            return Err(ConfigError::new(
                "upstream_fallbacks",
                format!("must be at most {MAX_UPSTREAM_FALLBACKS}"),
            ));
        }
        if self.cluster.is_empty() {
            return Err(ConfigError::new("cluster", "must not be empty"));
        }
        if self.max_prompt_chars == 0 {
            return Err(ConfigError::new("max_prompt_chars", "must be at least 1"));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new("max_body_bytes", "must be at least 1"));
        }
        Ok(())
    }

    /// Period of the root context's tick: half the scrape interval (each
    /// tick beats the VM's heartbeat, every other one scrapes), or 500 ms
    /// with scraping off.
    pub fn tick_ms(&self) -> u64 {
        match self.scrape_interval_ms {
            0 => 500,
            interval => (interval / 2).max(5),
        }
    }

    /// A VM whose heartbeat is older than this is taken for gone and its
    /// in-flight counts are dropped: two ticks, so one scrape interval.
    pub fn vm_expiry_ms(&self) -> u64 {
        self.tick_ms().saturating_mul(2)
    }

    /// The passive-health settings.
    pub fn outlier(&self) -> crate::outlier::OutlierSettings {
        crate::outlier::OutlierSettings {
            eject_after_failures: self.eject_after_failures,
            ejection_ms: self.ejection_ms,
            max_ejection_ms: self.max_ejection_ms,
        }
    }

    /// Index entries' time to live in milliseconds (0 = none).
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_s.saturating_mul(1000)
    }
}

/// A lowercase header name: letters, digits and dashes.
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

mod defaults {
    pub fn cluster() -> String {
        "prefixgate_backends".to_owned()
    }
    pub fn imbalanced_threshold() -> Option<f64> {
        Some(10.0)
    }
    pub fn match_rate_threshold() -> f64 {
        0.1
    }
    pub fn queue_tokens() -> f64 {
        100.0
    }
    pub fn prefill_tokens_per_s() -> f64 {
        15_000.0
    }
    pub fn load_slack() -> f64 {
        0.25
    }
    pub fn kv_pressure_threshold() -> f64 {
        0.9
    }
    pub fn tolerance_tokens() -> f64 {
        500.0
    }
    pub fn rendezvous_chars() -> usize {
        1024
    }
    pub fn chunk_chars() -> usize {
        64
    }
    pub fn chunk_growth() -> f64 {
        0.125
    }
    pub fn index_slots() -> u32 {
        65_536
    }
    pub fn chars_per_token() -> f64 {
        4.0
    }
    pub fn scrape_interval_ms() -> u64 {
        500
    }
    pub fn scrape_timeout_ms() -> u64 {
        1_000
    }
    pub fn unhealthy_after() -> u32 {
        3
    }
    pub fn eject_after_failures() -> u32 {
        5
    }
    pub fn ejection_ms() -> u64 {
        5_000
    }
    pub fn max_ejection_ms() -> u64 {
        60_000
    }
    pub fn metrics_path() -> String {
        "/metrics".to_owned()
    }
    pub fn upstream_header() -> String {
        "x-envoy-original-dst-host".to_owned()
    }
    pub fn max_prompt_chars() -> usize {
        131_072
    }
    pub fn max_body_bytes() -> usize {
        4 << 20
    }
    pub fn decision_headers() -> bool {
        true
    }
    pub fn weight() -> f64 {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        FilterConfig::from_json(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = FilterConfig::from_json(br#"{"backends":["127.0.0.1:8001"]}"#).unwrap();
        assert_eq!(c.policy, PolicyKind::PrefixAware);
        assert_eq!(c.imbalanced_threshold, Some(10.0));
        assert_eq!(c.match_rate_threshold, 0.1);
        assert_eq!(c.miss_policy, MissPolicy::SmallestTenant);
        assert_eq!(c.chunk_chars, 64);
        assert_eq!(c.chunk_growth, 0.125);
        assert_eq!(c.scrape_interval_ms, 500);
        assert_eq!(c.unhealthy_after, 3);
        assert_eq!((c.eject_after_failures, c.ejection_ms, c.max_ejection_ms), (5, 5_000, 60_000));
        assert_eq!((c.tick_ms(), c.vm_expiry_ms()), (250, 500));
        assert_eq!(c.upstream_header, "x-envoy-original-dst-host");
        assert_eq!(c.max_body_bytes, 4 << 20);
        assert_eq!(c.backends[0].name(), "127.0.0.1:8001");
    }

    #[test]
    fn new_equals_the_parsed_minimal_config_and_round_trips() {
        let parsed = FilterConfig::from_json(br#"{"backends":["127.0.0.1:8001"]}"#).unwrap();
        let built = FilterConfig::new(vec![BackendConfig::Address("127.0.0.1:8001".into())]);
        assert_eq!(built, parsed);
        let json = serde_json::to_vec(&built).unwrap();
        assert_eq!(FilterConfig::from_json(&json).unwrap(), built);
    }

    #[test]
    fn upstream_fallbacks_are_bounded() {
        let c = FilterConfig::from_json(br#"{"backends":["127.0.0.1:1"],"upstream_fallbacks":7}"#).unwrap();
        assert_eq!(c.upstream_fallbacks, 7);
        assert_eq!(err(r#"{"backends":["127.0.0.1:1"],"upstream_fallbacks":8}"#).field, "upstream_fallbacks");
        assert_eq!(err(r#"{"backends":["127.0.0.1:1"],"subset_header":"Bad Name"}"#).field, "subset_header");
    }

    #[test]
    fn full_config_parses() {
        let c = FilterConfig::from_json(
            br#"{"policy":"pow2","backends":["127.0.0.1:1",{"address":"[::1]:2","name":"b","weight":2,"cluster":"c2","capacity_chunks":5}],
                 "imbalanced_threshold":null,"miss_policy":"least_loaded","ttl_s":60,"version":"v2"}"#,
        )
        .unwrap();
        assert_eq!(c.policy, PolicyKind::Pow2);
        assert_eq!(c.imbalanced_threshold, None);
        assert_eq!(c.backends[1].name(), "b");
        assert_eq!(c.backends[1].weight(), 2.0);
        assert_eq!(c.backends[1].cluster(), Some("c2"));
        assert_eq!(c.ttl_ms(), 60_000);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"backends":[]}"#).field, "backends");
        assert_eq!(err(r#"{"backends":["127.0.0.1:1","localhost"]}"#).field, "backends[1]");
        assert_eq!(err(r#"{"backends":["127.0.0.1:1","127.0.0.1:1"]}"#).field, "backends[1]");
        assert_eq!(
            err(r#"{"backends":["127.0.0.1:1"],"match_rate_threshold":2}"#).field,
            "match_rate_threshold"
        );
        assert_eq!(err(r#"{"backends":["127.0.0.1:1"],"chunk_chars":"big"}"#).field, "chunk_chars");
        assert_eq!(err(r#"{"backends":["127.0.0.1:1"],"chunk_growth":1.5}"#).field, "chunk_growth");
        assert_eq!(err(r#"{"backends":["127.0.0.1:1"],"policy":"fastest"}"#).field, "policy");
        assert_eq!(err(r#"{"backends":["127.0.0.1:1"],"upstream_header":"X Bad"}"#).field, "upstream_header");
        let unknown = err(r#"{"backends":["127.0.0.1:1"],"polcy":"pow2"}"#);
        assert!(unknown.message.contains("polcy"), "{unknown}");
        assert_eq!(err(r#"{"backends":[{"address":"127.0.0.1:1","weight":0}]}"#).field, "backends[0].weight");
        assert_eq!(err(r#"{"backends":["127.0.0.1:1"],"ejection_ms":0}"#).field, "ejection_ms");
        assert_eq!(
            err(r#"{"backends":["127.0.0.1:1"],"ejection_ms":9,"max_ejection_ms":8}"#).field,
            "max_ejection_ms"
        );
        assert_eq!(err("not json").field, "(root)");
        assert_eq!(err(r#"{"policy":"pow2"}"#).field, "(root)");
    }
}
