//! Step time of one engine iteration: `t_fixed + max(t_mem, t_cmp)`.
//!
//! - `t_mem` = (weights + KV bytes read) / bandwidth: every step reads all weights once, so a
//!   step is never shorter than that floor, and small prefills are almost free under it;
//! - `t_cmp` = (body FLOPs of every computed token + LM-head FLOPs of every sampled
//!   position + attention FLOPs) / effective FLOP/s: large prefills are compute-bound.

use super::profile::Profile;
use super::scheduler::ScheduledChunk;

/// What a step computes, the inputs of the cost model.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepShape {
    /// Tokens computed in the step (prefill chunks + one per decoding sequence).
    pub computed_tokens: u64,
    /// Sequences that sample a token at the end of the step.
    pub sampled_seqs: u64,
    /// KV tokens read by attention (each request's context including its new tokens).
    pub context_tokens: u64,
    /// Σ over new tokens of the context each attends to (for the attention FLOPs).
    pub attention_pairs: f64,
}

impl StepShape {
    /// The shape of `batch` sequences decoding one token each with `context` tokens of KV.
    pub fn decode(batch: u64, context: u64) -> Self {
        Self {
            computed_tokens: batch,
            sampled_seqs: batch,
            context_tokens: batch * (context + 1),
            attention_pairs: (batch * (context + 1)) as f64,
        }
    }

    /// Adds one request's chunk: `num_new` tokens after `computed_before`, sampling or not.
    pub fn add_chunk(&mut self, chunk: &ScheduledChunk, samples: bool) {
        let (c, n) = (chunk.computed_before as u64, chunk.num_new as u64);
        self.computed_tokens += n;
        self.sampled_seqs += u64::from(samples);
        self.context_tokens += c + n;
        // Token j of the chunk attends to c + j + 1 positions.
        self.attention_pairs += (n * c) as f64 + (n * (n + 1) / 2) as f64;
    }
}

/// Seconds of model time one step of this shape takes on this profile.
pub fn step_seconds(profile: &Profile, shape: &StepShape) -> f64 {
    let mem_bytes = profile.weight_bytes + shape.context_tokens as f64 * profile.kv_bytes_per_token;
    let t_mem = mem_bytes / profile.mem_bandwidth;
    let flops = shape.computed_tokens as f64 * profile.flops_per_token
        + shape.sampled_seqs as f64 * profile.lm_head_flops
        + shape.attention_pairs * profile.attention_flops_per_pair;
    let t_cmp = flops / profile.flops;
    profile.step_overhead_seconds + t_mem.max(t_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::request::RequestId;

    fn ms(profile: &Profile, shape: &StepShape) -> f64 {
        step_seconds(profile, shape) * 1e3
    }

    #[test]
    fn decode_steps_match_the_reference_table_for_the_l4() {
        let p15 = Profile::l4_qwen25_1_5b();
        let p05 = Profile::l4_qwen25_0_5b();
        // (batch, context 1k, expected ms) from the reference's decode table, ±0.15 ms.
        for (b, want) in [(1, 14.2), (8, 15.0), (32, 17.7), (64, 21.3)] {
            let got = ms(&p15, &StepShape::decode(b, 1000));
            assert!((got - want).abs() < 0.15, "1.5B b={b}: {got:.2} vs {want}");
        }
        for (b, want) in [(1, 5.9), (16, 6.6), (64, 9.0)] {
            let got = ms(&p05, &StepShape::decode(b, 1000));
            assert!((got - want).abs() < 0.15, "0.5B b={b}: {got:.2} vs {want}");
        }
    }

    #[test]
    fn a_full_prefill_chunk_is_compute_bound() {
        let p = Profile::l4_qwen25_1_5b();
        let mut shape = StepShape::default();
        let chunk = ScheduledChunk { id: RequestId(1), num_new: 2048, computed_before: 0 };
        shape.add_chunk(&chunk, true);
        let t = ms(&p, &shape);
        // Reference: ≈143 ms at 40 TFLOPS effective (≈14 k tokens/s), plus the fixed 2 ms.
        assert!((140.0..150.0).contains(&t), "{t}");
    }

    #[test]
    fn a_small_prefill_costs_little_more_than_the_weight_read_floor() {
        let p = Profile::l4_qwen25_1_5b();
        let mut shape = StepShape::decode(8, 500);
        let floor = ms(&p, &shape);
        shape.add_chunk(&ScheduledChunk { id: RequestId(9), num_new: 16, computed_before: 0 }, true);
        assert!(ms(&p, &shape) - floor < 0.1);
    }
}
