//! `prefix_aware`: Ray's PrefixAwareReplicaScheduler over the shared prefix index.
//!
//! 1. If load across healthy backends is imbalanced (max − min above
//!    `imbalanced_threshold`), pow2 decides.
//! 2. No prompt: pow2.
//! 3. Otherwise match the prompt: if the longest match covers at least
//!    `match_rate_threshold` of it, the least loaded of the backends holding
//!    that longest match wins; else the miss policy decides (the least loaded
//!    of the backends caching the least text, or simply the least loaded).
//!
//! The router inserts the prompt for the chosen backend afterwards.

use super::{least_loaded, pow2_pick, Candidates, Pick, Policy, PolicyKind, Reason};
use crate::config::MissPolicy;
use crate::prefix_index::IndexedBackend;

/// Prefix-aware routing with Ray's thresholds.
#[derive(Clone, Debug)]
pub struct PrefixAware {
    /// Load spread (requests) above which pow2 is used; `None` never.
    pub imbalanced_threshold: Option<f64>,
    /// Share of the prompt a match must cover to be followed.
    pub match_rate_threshold: f64,
    /// Where a request without a good match goes.
    pub miss_policy: MissPolicy,
}

impl Policy for PrefixAware {
    fn kind(&self) -> PolicyKind {
        PolicyKind::PrefixAware
    }

    fn pick(&self, c: &Candidates<'_>, rng: &mut fastrand::Rng) -> Pick {
        let loads = c.backends.iter().map(|b| b.weighted_load());
        let (min, max) = loads.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| (lo.min(l), hi.max(l)));
        if self.imbalanced_threshold.is_some_and(|t| max - min > t) {
            return Pick {
                backend: pow2_pick(c.backends, rng),
                reason: Reason::Imbalanced,
                match_ratio: 0.0,
                prefill_tokens: 0.0,
            };
        }
        let Some(keys) = c.prompt.filter(|k| k.chars() > 0) else {
            return Pick {
                backend: pow2_pick(c.backends, rng),
                reason: Reason::NoPrompt,
                match_ratio: 0.0,
                prefill_tokens: 0.0,
            };
        };
        let indexed: Vec<IndexedBackend<'_>> = c.backends.iter().map(|b| b.indexed()).collect();
        let matched = c.index.longest_match(c.store, keys, &indexed, c.now_ms);
        let best = matched.iter().copied().max().unwrap_or(0);
        let match_ratio = best as f64 / keys.chars() as f64;
        let all: Vec<usize> = (0..c.backends.len()).collect();
        if best > 0 && match_ratio >= self.match_rate_threshold {
            let holders: Vec<usize> = all.iter().copied().filter(|&i| matched[i] == best).collect();
            if let Some(backend) = least_loaded(c.backends, &holders, rng) {
                return Pick { backend, reason: Reason::PrefixMatch, match_ratio, prefill_tokens: 0.0 };
            }
        }
        let (among, reason) = match self.miss_policy {
            MissPolicy::LeastLoaded => (all, Reason::LeastLoaded),
            MissPolicy::SmallestTenant => {
                let sizes: Vec<u64> = indexed.iter().map(|b| c.index.cached_chars(c.store, *b)).collect();
                let smallest = sizes.iter().copied().min().unwrap_or(0);
                let tenants = all.into_iter().filter(|&i| sizes[i] == smallest).collect();
                (tenants, Reason::SmallestTenant)
            }
        };
        let backend = least_loaded(c.backends, &among, rng).unwrap_or(0);
        Pick { backend, reason, match_ratio, prefill_tokens: 0.0 }
    }
}
