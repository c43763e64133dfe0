//! The scorecard of a lab run: for every request the engines admit, how much of its
//! prompt an ideal router could have found cached (the reuse bound), how much the real
//! router sent where it had been sent before (captured), and how much the engine found
//! (delivered). Counted in whole KV blocks with the engines' own block keys and lookup
//! rule (at most `prompt_len − 1` tokens), so delivered ≤ reuse bound holds exactly.

use crate::load::stats::Scorecard;
use vllm_sim::block_hash::BlockHash;
use vllm_sim::fast_hash::FastMap;

/// Accumulates the scorecard over a run, request by request in routing order.
#[derive(Debug, Default)]
pub struct ScorecardTracker {
    /// Every block key seen so far → bit set of the replicas it was sent to.
    seen: FastMap<u64, u64>,
    prompt_tokens: u64,
    bound_tokens: u64,
    captured_tokens: u64,
    delivered_tokens: u64,
}

impl ScorecardTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a request of `prompt_len` tokens whose full prompt blocks have keys
    /// `hashes`, routed to `replica` (below 64).
    pub fn routed(&mut self, hashes: &[BlockHash], prompt_len: usize, block_size: usize, replica: usize) {
        let block_size = block_size.max(1);
        let lookup = (prompt_len.saturating_sub(1) / block_size).min(hashes.len());
        let bit = 1_u64 << (replica % 64);
        let mut bound = 0;
        let mut captured = 0;
        let mut still_captured = true;
        for h in &hashes[..lookup] {
            let Some(replicas) = self.seen.get(&h.0) else {
                break;
            };
            bound += 1;
            still_captured &= replicas & bit != 0;
            if still_captured {
                captured += 1;
            }
        }
        for h in hashes {
            *self.seen.entry(h.0).or_insert(0) |= bit;
        }
        self.prompt_tokens += prompt_len as u64;
        self.bound_tokens += (bound * block_size) as u64;
        self.captured_tokens += (captured * block_size) as u64;
    }

    /// Records the tokens an engine found cached when it first admitted a request.
    pub fn delivered(&mut self, cached_tokens: usize) {
        self.delivered_tokens += cached_tokens as u64;
    }

    /// The three shares so far (0 before any request).
    pub fn scorecard(&self) -> Scorecard {
        let share = |x: u64| if self.prompt_tokens == 0 { 0.0 } else { x as f64 / self.prompt_tokens as f64 };
        Scorecard {
            reuse_bound: share(self.bound_tokens),
            captured: share(self.captured_tokens),
            delivered: share(self.delivered_tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vllm_sim::block_hash::extend_block_hashes;

    fn hashes(tokens: &[u32]) -> Vec<BlockHash> {
        let mut h = Vec::new();
        extend_block_hashes(&mut h, tokens, 4, 0);
        h
    }

    #[test]
    fn the_bound_counts_earlier_prefixes_anywhere_and_captured_only_on_the_same_replica() {
        let mut t = ScorecardTracker::new();
        let a: Vec<u32> = (0..12).collect(); // 3 blocks of 4
        let mut b = a.clone();
        b.extend(100..108); // 5 blocks, the first 3 shared with `a`
        t.routed(&hashes(&a), a.len(), 4, 0);
        t.routed(&hashes(&b), b.len(), 4, 1); // elsewhere: bound 12, captured 0
        t.routed(&hashes(&b), b.len(), 4, 1); // same again: at most (20 − 1) / 4 = 4 blocks
        let c = t.scorecard();
        assert_eq!(c.reuse_bound, (12.0 + 16.0) / 52.0);
        assert_eq!(c.captured, 16.0 / 52.0);
        t.delivered(16);
        assert_eq!(t.scorecard().delivered, 16.0 / 52.0);
    }
}
