//! One routing decision: snapshot the fleet, let the policy pick among the
//! healthy backends, record the prompt and the in-flight request.

use crate::config::FilterConfig;
use crate::fleet::{self, BackendView};
use crate::policy::{Candidates, Policy, PolicyKind, Pow2, PrefixAware, Reason, RoundRobin};
use crate::prefix_index::{IndexShape, PrefixIndex};
use crate::store::{ReadCache, SharedStore};
use std::fmt;

/// Routes requests for one plugin configuration.
pub struct Router {
    config: FilterConfig,
    index: PrefixIndex,
    policy: Box<dyn Policy>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router").field("policy", &self.policy.kind()).finish_non_exhaustive()
    }
}

/// The outcome of one decision, as headers, logs and metrics report it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// `ip:port` of the chosen backend.
    pub backend: String,
    /// The policy that decided.
    pub policy: PolicyKind,
    /// Why this backend.
    pub reason: Reason,
    /// Longest matched prefix over prompt length.
    pub match_ratio: f64,
    /// The chosen backend's load when chosen.
    pub load: u64,
}

impl Decision {
    /// The `x-prefixgate-decision` header value.
    pub fn header_value(&self) -> String {
        format!(
            "policy={}; reason={}; match={:.2}; load={}",
            self.policy,
            self.reason.as_str(),
            self.match_ratio,
            self.load
        )
    }
}

/// No backend is healthy: the request gets a local 503.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no healthy backend among {configured} configured")]
pub struct NoHealthyBackend {
    /// Backends in the configuration.
    pub configured: usize,
}

impl Router {
    /// A router for a validated configuration.
    pub fn new(config: FilterConfig) -> Self {
        let index = PrefixIndex::new(IndexShape {
            chunk_chars: config.chunk_chars,
            chunk_growth: config.chunk_growth,
            slots: config.index_slots,
            ttl_ms: config.ttl_ms(),
            max_backends_per_slot: config.backends.len(),
        });
        let policy: Box<dyn Policy> = match config.policy {
            PolicyKind::RoundRobin => Box::new(RoundRobin),
            PolicyKind::Pow2 => Box::new(Pow2),
            PolicyKind::PrefixAware => Box::new(PrefixAware {
                imbalanced_threshold: config.imbalanced_threshold,
                match_rate_threshold: config.match_rate_threshold,
                miss_policy: config.miss_policy,
            }),
        };
        Self { config, index, policy }
    }

    /// The configuration this router was built from.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// The prefix index (shared data layout) this router uses.
    pub fn index(&self) -> &PrefixIndex {
        &self.index
    }

    /// Reconciles shared state with this configuration (backends removed since
    /// the previous one are forgotten). Call once per configuration.
    pub fn on_configure(&self, store: &dyn SharedStore) -> Vec<String> {
        fleet::sync_backends(store, &self.config, &self.index)
    }

    /// The backends as a decision at `now_ms` sees them.
    pub fn snapshot(&self, store: &dyn SharedStore, now_ms: u64) -> Vec<BackendView> {
        fleet::snapshot(store, &self.config, now_ms)
    }

    /// Chooses a backend for a request with `prompt` (if any), records the
    /// prompt in the index for it and counts the request in flight; call
    /// [`Router::finish`] with the backend when the request ends.
    ///
    /// Every policy records prompts, so a switch to `prefix_aware` starts
    /// with an index of where prompts actually went.
    pub fn route(
        &self,
        store: &dyn SharedStore,
        prompt: Option<&str>,
        now_ms: u64,
        rng: &mut fastrand::Rng,
    ) -> Result<Decision, NoHealthyBackend> {
        let cache = ReadCache::new(store);
        let store: &dyn SharedStore = &cache;
        let healthy: Vec<BackendView> =
            self.snapshot(store, now_ms).into_iter().filter(|b| b.healthy).collect();
        if healthy.is_empty() {
            return Err(NoHealthyBackend { configured: self.config.backends.len() });
        }
        let keys = prompt.map(|p| self.index.prompt_keys(head(p, self.config.max_prompt_chars)));
        let candidates =
            Candidates { backends: &healthy, prompt: keys.as_ref(), store, index: &self.index, now_ms };
        let pick = self.policy.pick(&candidates, rng);
        let chosen = healthy.get(pick.backend).unwrap_or(&healthy[0]);
        if let Some(keys) = &keys {
            self.index.insert(store, keys, chosen.indexed(), now_ms);
        }
        fleet::begin_request(store, &chosen.address);
        Ok(Decision {
            backend: chosen.address.clone(),
            policy: self.policy.kind(),
            reason: pick.reason,
            match_ratio: pick.match_ratio,
            load: chosen.load(),
        })
    }

    /// Marks a request routed to `backend` as finished.
    pub fn finish(&self, store: &dyn SharedStore, backend: &str) {
        fleet::end_request(store, backend);
    }
}

/// The first `chars` characters of `text`.
fn head(text: &str, chars: usize) -> &str {
    if text.len() <= chars {
        return text;
    }
    match text.char_indices().nth(chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests;
