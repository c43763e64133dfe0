//! `least_ttft`: the backend with the least predicted time to first token,
//! within a load bound, and the same backend from every router for a prompt
//! none of them has seen.
//!
//! For each available backend the policy predicts the work standing between
//! the request and its first token, in prompt tokens:
//!
//! - **prefill**: the prompt's tokens the backend does not hold (prompt
//!   length less its longest match in the index, over `chars_per_token`);
//! - **queue**: the prefill work this router sent the backend that it has
//!   not yet worked off ([`crate::prefill_queue`]), plus `queue_tokens` for
//!   each request already there (its load: this router's in-flight count or
//!   the scraped running + waiting, whichever is more), since each decodes
//!   in the same engine steps and other routers' requests show only there;
//! - **memory pressure**: past `kv_pressure_threshold` of scraped KV-cache
//!   usage, the backend's matched tokens count for less (down to nothing when
//!   full), since a replica near full evicts cached blocks and preempts.
//!
//! The least predicted cost wins, among the backends under the load bound:
//! none may take more than `(1 + load_slack) ×` the fleet's mean load (the
//! bound of consistent hashing with bounded loads), so affinity gives way
//! before a replica turns hot, and a prefix too popular for one replica
//! spreads over the fewest that carry it.
//!
//! Ties, and prompts no backend holds any of, go by rendezvous
//! (highest-random-weight) hashing of the prompt's head against each
//! backend's address: independent routers with separate indexes send a new
//! conversation to the same replica, so its later turns find their prefix
//! there whichever router they reach.

use super::{Candidates, Pick, Policy, PolicyKind, Reason};
use crate::prefix_index::IndexedBackend;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Predicted time to first token, bounded load, rendezvous for the unseen.
#[derive(Clone, Debug)]
pub struct LeastTtft {
    /// Prompt tokens one request already at a backend is worth.
    pub queue_tokens: f64,
    /// Share above the fleet's mean load a backend may carry.
    pub load_slack: f64,
    /// Scraped KV-cache usage above which matches count for less.
    pub kv_pressure_threshold: f64,
    /// Characters per token, to turn matched characters into tokens.
    pub chars_per_token: f64,
    /// Predicted costs within this many tokens of the least count as tied.
    pub tolerance_tokens: f64,
    /// Characters of the prompt's head that name it for rendezvous hashing.
    pub rendezvous_chars: usize,
}

impl Policy for LeastTtft {
    fn kind(&self) -> PolicyKind {
        PolicyKind::LeastTtft
    }

    fn pick(&self, c: &Candidates<'_>, rng: &mut fastrand::Rng) -> Pick {
        let loads: Vec<f64> = c.backends.iter().map(|b| b.weighted_load()).collect();
        let bound = load_bound(&loads, self.load_slack);
        let under: Vec<usize> = (0..c.backends.len()).filter(|&i| loads[i] + 1.0 <= bound).collect();
        // The least loaded backend is always under the bound; this guards
        // against NaN loads only.
        let under = if under.is_empty() { (0..c.backends.len()).collect() } else { under };

        let keys = c.prompt.filter(|k| k.chars() > 0);
        let head = keys.and_then(|k| k.head_key(self.rendezvous_chars));
        let rank = |i: usize| head.map_or(0, |h| rendezvous(h, &c.backends[i].address));
        let matched = match keys {
            Some(keys) => {
                let indexed: Vec<IndexedBackend<'_>> = c.backends.iter().map(|b| b.indexed()).collect();
                c.index.longest_match(c.store, keys, &indexed, c.now_ms)
            }
            None => vec![0; c.backends.len()],
        };
        let prompt_tokens = keys.map_or(0.0, |k| k.chars() as f64 / self.chars_per_token);
        let best_match = under.iter().map(|&i| matched[i]).max().unwrap_or(0);

        let uncached = |i: usize| {
            let held = matched[i] as f64 / self.chars_per_token;
            let usage = c.backends[i].scraped.as_ref().and_then(|s| s.kv_cache_usage).unwrap_or(0.0);
            (prompt_tokens - held * kv_trust(usage, self.kv_pressure_threshold)).max(0.0)
        };
        let cost =
            |i: usize| c.backends[i].queued_prefill_tokens + uncached(i) + self.queue_tokens * loads[i];
        let backend = match head {
            // The highest rendezvous rank among the backends within
            // `tolerance_tokens` of the least cost: the same choice in every
            // router wherever their predictions roughly agree.
            Some(_) => {
                let costs: Vec<f64> = (0..c.backends.len()).map(cost).collect();
                let least = under.iter().map(|&i| costs[i]).fold(f64::INFINITY, f64::min);
                let near = |i: &usize| costs[*i] <= least + self.tolerance_tokens;
                under.iter().copied().filter(near).max_by_key(|&i| rank(i)).unwrap_or(0)
            }
            // No prompt to name: the least loaded under the bound, ties at random.
            None => super::least_loaded(c.backends, &under, rng).unwrap_or(0),
        };
        let match_ratio = keys.map_or(0.0, |k| matched[backend] as f64 / k.chars() as f64);
        let reason = match head {
            None if keys.is_some() => Reason::LeastLoaded,
            None => Reason::NoPrompt,
            Some(_) if best_match == 0 => Reason::Rendezvous,
            Some(_) if matched[backend] == best_match => Reason::PrefixMatch,
            Some(_) => Reason::LeastCost,
        };
        Pick { backend, reason, match_ratio, prefill_tokens: uncached(backend) }
    }
}

/// The most load a backend may carry after taking one more request:
/// `(1 + slack)` times the fleet's mean load counting that request, as in
/// consistent hashing with bounded loads. The least loaded backend is always
/// under it.
pub fn load_bound(loads: &[f64], slack: f64) -> f64 {
    if loads.is_empty() {
        return f64::INFINITY;
    }
    let total: f64 = loads.iter().sum::<f64>() + 1.0;
    ((1.0 + slack) * total / loads.len() as f64).ceil().max(1.0)
}

/// How much of a backend's cached match to believe at KV-cache `usage`:
/// all of it up to `threshold`, falling linearly to none when full.
pub fn kv_trust(usage: f64, threshold: f64) -> f64 {
    if usage.is_nan() || usage <= threshold || threshold >= 1.0 {
        return 1.0;
    }
    ((1.0 - usage) / (1.0 - threshold)).clamp(0.0, 1.0)
}

/// Rendezvous weight of `backend` for a prompt head: the backend with the
/// highest weight is every router's first choice for it.
pub fn rendezvous(head: u64, backend: &str) -> u64 {
    xxh3_64_with_seed(backend.as_bytes(), head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_admits_the_least_loaded_and_caps_the_rest() {
        let loads = [0.0, 4.0, 4.0, 4.0];
        // Mean with the new request: 13 / 4 = 3.25; × 1.25 = 4.06 → 5.
        let bound = load_bound(&loads, 0.25);
        assert_eq!(bound, 5.0);
        assert!(loads.iter().all(|l| l + 1.0 <= bound));
        let loads = [0.0, 0.0, 0.0, 9.0];
        let bound = load_bound(&loads, 0.25);
        assert!(loads[0] + 1.0 <= bound && loads[3] + 1.0 > bound, "{bound}");
        // An idle fleet admits everyone.
        assert!(load_bound(&[0.0; 8], 0.0) >= 1.0);
    }

    #[test]
    fn trust_falls_from_the_threshold_to_full() {
        assert_eq!(kv_trust(0.5, 0.9), 1.0);
        assert_eq!(kv_trust(0.9, 0.9), 1.0);
        assert!((kv_trust(0.95, 0.9) - 0.5).abs() < 1e-9);
        assert_eq!(kv_trust(1.0, 0.9), 0.0);
        assert_eq!(kv_trust(f64::NAN, 0.9), 1.0);
        assert_eq!(kv_trust(0.99, 1.0), 1.0);
    }

    #[test]
    fn rendezvous_orders_backends_the_same_way_for_the_same_head() {
        let backends = ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.4:8000"];
        let top = |head: u64| backends.iter().max_by_key(|b| rendezvous(head, b)).copied();
        let mut counts = std::collections::HashMap::new();
        for head in 0..4000u64 {
            assert_eq!(top(head), top(head));
            *counts.entry(top(head)).or_insert(0) += 1;
        }
        // Every backend is someone's first choice, about evenly.
        assert_eq!(counts.len(), 4);
        assert!(counts.values().all(|&n| (800..1200).contains(&n)), "{counts:?}");
    }
}
