//! Step time of one engine iteration: `t_fixed + n_seqs × t_seq + max(t_mem, t_cmp)`.
//!
//! - `t_fixed` is paid once per step (scheduling, kernel launches), `t_seq` once per sequence
//!   in the batch (its share of input preparation, sampling and output processing): the
//!   CPU-side cost that grows with batch size even when the GPU does not;
//! - `t_mem` = (weights + KV bytes read) / bandwidth: every step reads all weights once, so a
//!   step is never shorter than that floor, and small prefills are almost free under it;
//!   each sequence also reads its whole context's KV, so decode time grows with batch size
//!   × context;
//! - `t_cmp` = (body FLOPs of every computed token + LM-head FLOPs of every sampled
//!   position + attention FLOPs) / effective FLOP/s: large prefills are compute-bound.
//!
//! A decode step of `b` sequences with context `c` therefore costs
//! `t_fixed + b·t_seq + (W + b·(c+1)·kv) / BW` while memory-bound: a floor set by the weight
//! read, and a slope in `b` set by the per-sequence overhead and the KV read.

use super::profile::Profile;
use super::scheduler::ScheduledChunk;

/// What a step computes, the inputs of the cost model.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepShape {
    /// Sequences in the batch (decodes and prefill chunks).
    pub seqs: u64,
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
            seqs: batch,
            computed_tokens: batch,
            sampled_seqs: batch,
            context_tokens: batch * (context + 1),
            attention_pairs: (batch * (context + 1)) as f64,
        }
    }

    /// Adds one request's chunk: `num_new` tokens after `computed_before`, sampling or not.
    pub fn add_chunk(&mut self, chunk: &ScheduledChunk, samples: bool) {
        let (c, n) = (chunk.computed_before as u64, chunk.num_new as u64);
        self.seqs += 1;
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
    profile.step_overhead_seconds + shape.seqs as f64 * profile.seq_overhead_seconds + t_mem.max(t_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestId;

    fn ms(profile: &Profile, shape: &StepShape) -> f64 {
        step_seconds(profile, shape) * 1e3
    }

    #[test]
    fn a_decode_step_grows_with_batch_size_and_with_context() {
        for p in Profile::builtin() {
            for ctx in [0, 256, 1000, 4000] {
                let times: Vec<f64> = (1..=64).map(|b| ms(&p, &StepShape::decode(b, ctx))).collect();
                assert!(times.windows(2).all(|w| w[1] > w[0]), "{} ctx {ctx}: {times:?}", p.name);
            }
            for b in [1, 8, 32] {
                let times: Vec<f64> =
                    [0, 256, 1000, 4000, 16000].iter().map(|&c| ms(&p, &StepShape::decode(b, c))).collect();
                assert!(times.windows(2).all(|w| w[1] > w[0]), "{} batch {b}: {times:?}", p.name);
            }
        }
    }

    #[test]
    fn a_memory_bound_decode_slope_is_the_per_sequence_overhead_plus_its_kv_read() {
        let p = Profile::l4_qwen25_0_5b();
        let ctx = 320;
        let (t1, t32) =
            (step_seconds(&p, &StepShape::decode(1, ctx)), step_seconds(&p, &StepShape::decode(32, ctx)));
        let per_seq = p.seq_overhead_seconds + (ctx + 1) as f64 * p.kv_bytes_per_token / p.mem_bandwidth;
        assert!(((t32 - t1) - 31.0 * per_seq).abs() < 1e-12, "{t1} {t32} {per_seq}");
        // The floor at batch 1 is the weight read plus the fixed and one sequence's overhead.
        let floor = p.step_overhead_seconds + p.seq_overhead_seconds + p.weight_bytes / p.mem_bandwidth;
        assert!(t1 > floor && t1 - floor < 1e-4, "{t1} vs {floor}");
    }

    #[test]
    fn the_l4_decode_step_matches_the_cited_qwen_0_5b_itl_at_every_batch_size() {
        // The ai.wmx.dev sweep: 256-token prompts, 128 outputs, so a decode step's context is
        // 256 to 384 tokens (320 on average); its ITL p50 is the plain decode step.
        let p = Profile::l4_qwen25_0_5b();
        let cited = &p.references[0];
        for point in &cited.points {
            let Some(want) = point.itl_p50_ms else { continue };
            let got = ms(&p, &StepShape::decode(point.concurrency as u64, 320));
            assert!(
                (got / want - 1.0).abs() < 0.15,
                "batch {}: {got:.2} ms vs cited {want}",
                point.concurrency
            );
        }
        // And the slope is the measured one: from batch 1 to 32 it grows by 2.0 ms (39 %).
        let growth = ms(&p, &StepShape::decode(32, 320)) - ms(&p, &StepShape::decode(1, 320));
        assert!((1.6..2.4).contains(&growth), "{growth}");
    }

    #[test]
    fn a_full_prefill_chunk_is_compute_bound() {
        let p = Profile::l4_qwen25_1_5b();
        let mut shape = StepShape::default();
        let chunk = ScheduledChunk { id: RequestId(1), num_new: 2048, computed_before: 0 };
        shape.add_chunk(&chunk, true);
        let t = ms(&p, &shape);
        // ≈115 ms at 50 TFLOPS effective (≈18 k tokens/s), plus the fixed overheads.
        assert!((110.0..122.0).contains(&t), "{t}");
        // Compute-bound: past the fixed per-step and per-sequence costs, twice the FLOP/s
        // takes half the time.
        let overheads = (p.step_overhead_seconds + p.seq_overhead_seconds) * 1e3;
        let twice = Profile { flops: 2.0 * p.flops, ..p.clone() };
        let ratio = (t - overheads) / (ms(&twice, &shape) - overheads);
        assert!((ratio - 2.0).abs() < 0.01, "{ratio}");
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
