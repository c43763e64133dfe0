//! Prefill work queued at each backend, as this router predicts it: every
//! routed request adds the prompt tokens the backend does not hold, and the
//! backend works them off at `prefill_tokens_per_s`.
//!
//! A request count hides what a time to first token waits for: one replica
//! with ten requests decoding starts a new prompt at once, another with two
//! long prompts still prefilling makes it wait behind both. The queue is a
//! leaky bucket in shared data (`pg/prefill/<address>`: tokens as f64 bits,
//! then the time they were counted), so it needs no completion event: a
//! request lost with its VM, or served by another router, drains away by
//! itself.

use crate::store::{update, SharedStore};
use crate::wire::u64_at;

/// Tokens queued at `address` at `now_ms`, after draining at `tokens_per_s`.
pub fn queued<S: SharedStore + ?Sized>(store: &S, address: &str, tokens_per_s: f64, now_ms: u64) -> f64 {
    let bytes = store.get(&key(address)).map(|(bytes, _)| bytes);
    drained(bytes.as_ref().map(|b| b.as_slice()), tokens_per_s, now_ms)
}

/// Adds `tokens` of prefill to `address`'s queue at `now_ms`.
pub fn add<S: SharedStore + ?Sized>(store: &S, address: &str, tokens: f64, tokens_per_s: f64, now_ms: u64) {
    if !(tokens.is_finite() && tokens > 0.0) {
        return;
    }
    update(store, &key(address), |bytes| {
        let total = drained(bytes, tokens_per_s, now_ms) + tokens;
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&total.to_bits().to_le_bytes());
        out.extend_from_slice(&now_ms.to_le_bytes());
        Some(out)
    });
}

/// The queue in `bytes` at `now_ms`: what was counted, less what the backend
/// worked off since (never below zero; a clock that went back drains nothing).
fn drained(bytes: Option<&[u8]>, tokens_per_s: f64, now_ms: u64) -> f64 {
    let Some(bytes) = bytes else {
        return 0.0;
    };
    let tokens = u64_at(bytes, 0).map(f64::from_bits).filter(|t| t.is_finite()).unwrap_or(0.0);
    let at = u64_at(bytes, 8).unwrap_or(now_ms);
    let elapsed_s = now_ms.saturating_sub(at) as f64 / 1000.0;
    (tokens - tokens_per_s * elapsed_s).max(0.0)
}

fn key(address: &str) -> String {
    format!("pg/prefill/{address}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn work_adds_up_and_drains_at_the_rate() {
        let store = MemoryStore::new();
        assert_eq!(queued(&store, "a", 1000.0, 0), 0.0);
        add(&store, "a", 3000.0, 1000.0, 0);
        add(&store, "a", 1000.0, 1000.0, 0);
        assert_eq!(queued(&store, "a", 1000.0, 0), 4000.0);
        assert_eq!(queued(&store, "a", 1000.0, 1500), 2500.0);
        // Adding drains first: 4000 − 2000 + 500.
        add(&store, "a", 500.0, 1000.0, 2000);
        assert_eq!(queued(&store, "a", 1000.0, 2000), 2500.0);
        assert_eq!(queued(&store, "a", 1000.0, 60_000), 0.0);
        assert_eq!(queued(&store, "b", 1000.0, 2000), 0.0);
    }

    #[test]
    fn bad_amounts_and_a_clock_going_back_change_nothing() {
        let store = MemoryStore::new();
        add(&store, "a", 100.0, 10.0, 5000);
        add(&store, "a", f64::NAN, 10.0, 5000);
        add(&store, "a", -5.0, 10.0, 5000);
        assert_eq!(queued(&store, "a", 10.0, 5000), 100.0);
        assert_eq!(queued(&store, "a", 10.0, 1000), 100.0);
    }
}
