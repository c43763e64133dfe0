//! One routing decision: snapshot the fleet, let the policy pick among the
//! available backends, record the prompt and the in-flight request; and the
//! outcome of each response, for passive health.

use crate::config::FilterConfig;
use crate::fleet::{self, BackendView};
use crate::in_flight::{self, LiveVms};
use crate::outlier::{self, Transition};
use crate::policy::{Candidates, LeastTtft, Policy, PolicyKind, Pow2, PrefixAware, Reason, RoundRobin};
use crate::prefill_queue;
use crate::prefix_index::{IndexShape, PrefixIndex, PromptKeys, RUN_CHUNKS};
use crate::store::{ReadCache, SharedStore};
use std::fmt;

/// Routes requests for one plugin configuration.
pub struct Router {
    config: FilterConfig,
    index: PrefixIndex,
    policy: Box<dyn Policy>,
    /// The VM this router runs in: its in-flight counts are kept under this id.
    vm: u64,
}

/// How long a half-open backend's probe request keeps other requests away
/// when its outcome never arrives: long enough for a non-streaming completion.
pub const PROBE_WINDOW_MS: u64 = 30_000;

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
    /// Where a retry goes, in order: up to `upstream_fallbacks` other
    /// available backends, least loaded first.
    pub fallbacks: Vec<String>,
    /// The prompt's chunk keys, kept to credit the index to the backend that
    /// actually served when a retry went elsewhere ([`Router::credit`]).
    pub keys: Option<PromptKeys>,
}

impl Decision {
    /// The `upstream_header` value: the chosen backend, then the fallbacks,
    /// comma-separated.
    pub fn upstream_value(&self) -> String {
        let mut value = self.backend.clone();
        for fallback in &self.fallbacks {
            value.push(',');
            value.push_str(fallback);
        }
        value
    }

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

/// Why a request could not be routed; the host answers it locally.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// No eligible backend is healthy: 503.
    #[error("no healthy backend among {eligible} eligible of {configured} configured")]
    NoHealthyBackend {
        /// Backends in the configuration.
        configured: usize,
        /// Configured backends the request may go to: all of them, or those
        /// of its subset hint.
        eligible: usize,
    },
    /// Every available backend carries its `max_ongoing_requests`: 429, so
    /// that the client backs off instead of piling onto a full replica.
    #[error("all {available} available backends are at their max_ongoing_requests cap")]
    AtCapacity {
        /// Healthy backends the request could have gone to.
        available: usize,
    },
}

impl RouteError {
    /// The HTTP status of the local reply.
    pub fn status(&self) -> u16 {
        match self {
            Self::NoHealthyBackend { .. } => 503,
            Self::AtCapacity { .. } => 429,
        }
    }
}

impl Router {
    /// A router for a validated configuration, running in VM 0; see
    /// [`Router::in_vm`].
    pub fn new(config: FilterConfig) -> Self {
        let index = PrefixIndex::new(IndexShape {
            chunk_chars: config.chunk_chars,
            chunk_growth: config.chunk_growth,
            slots: config.index_slots,
            ttl_ms: config.ttl_ms(),
            max_backends_per_slot: config.backends.len(),
            run_chunks: RUN_CHUNKS,
        });
        let policy: Box<dyn Policy> = match config.policy {
            PolicyKind::RoundRobin => Box::new(RoundRobin),
            PolicyKind::Pow2 => Box::new(Pow2),
            PolicyKind::PrefixAware => Box::new(PrefixAware {
                imbalanced_threshold: config.imbalanced_threshold,
                match_rate_threshold: config.match_rate_threshold,
                miss_policy: config.miss_policy,
            }),
            PolicyKind::LeastTtft => Box::new(LeastTtft {
                queue_tokens: config.queue_tokens,
                load_slack: config.load_slack,
                kv_pressure_threshold: config.kv_pressure_threshold,
                chars_per_token: config.chars_per_token,
                rendezvous_chars: config.rendezvous_chars,
                tolerance_tokens: config.tolerance_tokens,
            }),
        };
        Self { config, index, policy, vm: 0 }
    }

    /// The same router for the VM named `vm`: every VM (wasm instance) sharing
    /// the store needs its own id, so that the requests it has in flight are
    /// dropped from the counts when it goes away.
    pub fn in_vm(self, vm: u64) -> Self {
        Self { vm, ..self }
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
        fleet::snapshot(store, &self.config, &self.live_vms(store, now_ms), now_ms)
    }

    /// Records that this router's VM is alive; call on every tick.
    pub fn heartbeat(&self, store: &dyn SharedStore, now_ms: u64) {
        in_flight::heartbeat(store, self.vm, now_ms, self.config.vm_expiry_ms());
    }

    fn live_vms(&self, store: &dyn SharedStore, now_ms: u64) -> LiveVms {
        LiveVms::read(store, self.vm, now_ms, self.config.vm_expiry_ms())
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
    ) -> Result<Decision, RouteError> {
        self.route_within(store, prompt, None, now_ms, rng)
    }

    /// As [`Router::route`], choosing only among the backends of `subset`
    /// (`ip:port` strings, as a gateway's endpoint-subset hint lists them)
    /// when it is given: addresses not configured are ignored, and a subset
    /// with no healthy configured member is a [`RouteError::NoHealthyBackend`], never a
    /// pick outside it.
    pub fn route_within(
        &self,
        store: &dyn SharedStore,
        prompt: Option<&str>,
        subset: Option<&[&str]>,
        now_ms: u64,
        rng: &mut fastrand::Rng,
    ) -> Result<Decision, RouteError> {
        let cache = ReadCache::new(store);
        let store: &dyn SharedStore = &cache;
        let live = self.live_vms(store, now_ms);
        in_flight::heartbeat_if_due(store, &live, self.vm, now_ms, self.config.vm_expiry_ms());
        let mut snapshot = fleet::snapshot(store, &self.config, &live, now_ms);
        if let Some(subset) = subset {
            snapshot.retain(|b| subset.contains(&b.address.as_str()));
        }
        let eligible = snapshot.len();
        if snapshot.iter().any(BackendView::available) {
            snapshot.retain(BackendView::available);
        } else {
            // Every backend that answers its scrapes is ejected: ejection
            // protects a fleet with healthy members, it must not take the
            // whole fleet down, so route among them as if none were.
            snapshot.retain(|b| b.healthy);
        }
        let mut healthy = snapshot;
        if healthy.is_empty() {
            return Err(RouteError::NoHealthyBackend { configured: self.config.backends.len(), eligible });
        }
        let available = healthy.len();
        healthy.retain(|b| !b.at_capacity());
        if healthy.is_empty() {
            return Err(RouteError::AtCapacity { available });
        }
        let keys = prompt.map(|p| self.index.prompt_keys(head(p, self.config.max_prompt_chars)));
        // The policy picks; the pick is counted in flight only if the backend
        // still has room (another worker may have taken its last place since
        // the snapshot), else the policy picks again among the rest.
        let (chosen, pick) = loop {
            let candidates =
                Candidates { backends: &healthy, prompt: keys.as_ref(), store, index: &self.index, now_ms };
            let pick = self.policy.pick(&candidates, rng);
            let at = if pick.backend < healthy.len() { pick.backend } else { 0 };
            let candidate = healthy.swap_remove(at);
            if in_flight::begin(store, &candidate.address, self.vm, &live, candidate.max_ongoing) {
                break (candidate, pick);
            }
            if healthy.is_empty() {
                return Err(RouteError::AtCapacity { available });
            }
        };
        if let Some(keys) = &keys {
            self.index.insert(store, keys, chosen.indexed(), now_ms);
        }
        // Policies that predict no prefill report 0, which adds nothing.
        let rate = self.config.prefill_tokens_per_s;
        prefill_queue::add(store, &chosen.address, pick.prefill_tokens, rate, now_ms);
        if chosen.passive.is_half_open() {
            outlier::claim_probe(store, &chosen.address, now_ms, PROBE_WINDOW_MS);
        }
        let fallbacks = fallbacks(&healthy, &chosen.address, self.config.upstream_fallbacks, rng);
        Ok(Decision {
            load: chosen.load(),
            backend: chosen.address,
            policy: self.policy.kind(),
            reason: pick.reason,
            match_ratio: pick.match_ratio,
            fallbacks,
            keys,
        })
    }

    /// Records `decision`'s prompt in the index for `served`, the backend
    /// that served the request after a retry moved it from the chosen one:
    /// that replica's cache now holds the prefix.
    pub fn credit(&self, store: &dyn SharedStore, decision: &Decision, served: &str, now_ms: u64) {
        let Some(keys) = &decision.keys else {
            return;
        };
        let live = self.live_vms(store, now_ms);
        let snapshot = fleet::snapshot(store, &self.config, &live, now_ms);
        if let Some(backend) = snapshot.iter().find(|b| b.address == served) {
            self.index.insert(store, keys, backend.indexed(), now_ms);
        }
    }

    /// Marks a request routed to `backend` as finished.
    pub fn finish(&self, store: &dyn SharedStore, backend: &str) {
        in_flight::end(store, backend, self.vm);
    }

    /// Records the HTTP status a request to `backend` ended with, for passive
    /// health. Every success resets the backend's failure count, so only
    /// failures in a row eject; the record is written only when it changes.
    pub fn record_outcome(
        &self,
        store: &dyn SharedStore,
        backend: &str,
        status: u16,
        now_ms: u64,
    ) -> Transition {
        let success = !outlier::is_failure_status(status);
        outlier::record_outcome(store, backend, success, now_ms, &self.config.outlier())
    }
}

/// Up to `count` backends of `candidates` other than `chosen`, least
/// (weighted) loaded first; ties in random order, so that retries after one
/// replica fails spread over the rest instead of piling onto one.
fn fallbacks(candidates: &[BackendView], chosen: &str, count: u32, rng: &mut fastrand::Rng) -> Vec<String> {
    if count == 0 {
        return Vec::new();
    }
    let mut others: Vec<&BackendView> = candidates.iter().filter(|b| b.address != chosen).collect();
    rng.shuffle(&mut others);
    others.sort_by(|a, b| a.weighted_load().total_cmp(&b.weighted_load()));
    others.into_iter().take(count as usize).map(|b| b.address.clone()).collect()
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

#[cfg(test)]
mod least_ttft_tests;
