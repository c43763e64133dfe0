//! Engine metrics state: the counters, gauges and histograms vLLM exposes, observed exactly
//! where vLLM observes them, in simulated seconds. Rendering is in [`super::exposition`].

use super::config::MetricsFormat;
use super::request::{FinishReason, SimRequest};

/// TTFT buckets of V0 0.8; V1 appends [`TTFT_V1_EXTRA`].
pub const TTFT_V0: &[f64] =
    &[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
/// TTFT buckets V1 adds.
pub const TTFT_V1_EXTRA: &[f64] = &[20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
/// Inter-token latency (TPOT) buckets of V0 0.8; V1 appends [`ITL_V1_EXTRA`].
pub const ITL_V0: &[f64] = &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];
/// Inter-token latency buckets V1 adds.
pub const ITL_V1_EXTRA: &[f64] = &[5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
/// Request-latency buckets (e2e, queue, inference, prefill, decode) of V0 0.8.
pub const REQUEST_V0: &[f64] =
    &[0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0];
/// Request-latency buckets V1 adds.
pub const REQUEST_V1_EXTRA: &[f64] = &[120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];
/// V1 `iteration_tokens_total` buckets.
pub const ITERATION_TOKENS_V1: &[f64] =
    &[1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0];
/// Buckets of the simulator's own scheduling-lag histogram, in simulated seconds.
pub const LAG_SECONDS: &[f64] =
    &[1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1];
/// Buckets of the simulator's lag-to-step-time ratio histogram.
pub const LAG_RATIO: &[f64] = &[0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

/// The 1-2-5 series up to `max` (vLLM's token-count histogram buckets).
pub fn one_two_five(max: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut scale = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            let v = m * scale;
            if v > max as f64 {
                return out;
            }
            out.push(v);
        }
        scale *= 10.0;
    }
}

/// A cumulative histogram with fixed upper bounds (`+Inf` implied).
#[derive(Debug, PartialEq)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Clone for Histogram {
    fn clone(&self) -> Self {
        Self { bounds: self.bounds.clone(), counts: self.counts.clone(), sum: self.sum, count: self.count }
    }

    /// Reuses `self`'s buffers: the engine copies its metrics out after busy steps.
    fn clone_from(&mut self, source: &Self) {
        self.bounds.clone_from(&source.bounds);
        self.counts.clone_from(&source.counts);
        self.sum = source.sum;
        self.count = source.count;
    }
}

impl Histogram {
    /// An empty histogram over these upper bounds (sorted ascending).
    pub fn new(bounds: Vec<f64>) -> Self {
        let counts = vec![0; bounds.len()];
        Self { bounds, counts, sum: 0.0, count: 0 }
    }

    /// Records one value.
    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// Upper bounds.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Cumulative count of values ≤ each bound.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0;
        self.counts
            .iter()
            .map(|c| {
                acc += c;
                acc
            })
            .collect()
    }

    /// Sum of observed values.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observed values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Upper bound of the bucket holding quantile `q` (0..=1); `+Inf` past the last bound,
    /// `None` when empty.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let target = (q * self.count as f64).ceil().max(1.0) as u64;
        let cum = self.cumulative();
        Some(cum.iter().position(|&c| c >= target).map_or(f64::INFINITY, |i| self.bounds[i]))
    }
}

fn with_extra(base: &[f64], extra: &[f64], format: MetricsFormat) -> Vec<f64> {
    let mut v = base.to_vec();
    if format == MetricsFormat::V1 {
        v.extend_from_slice(extra);
    }
    v
}

/// Everything a replica's `/metrics` shows, plus the simulator's own timing health.
#[derive(Debug, PartialEq)]
pub struct EngineMetrics {
    /// Requests in the running batch after the last step.
    pub num_running: usize,
    /// Requests waiting after the last step.
    pub num_waiting: usize,
    /// KV usage (0..1) after the last step.
    pub kv_usage: f64,
    /// Prefix-cache queried tokens.
    pub prefix_query_tokens: u64,
    /// Prefix-cache hit tokens.
    pub prefix_hit_tokens: u64,
    /// Prefix-cache queried full blocks (V0 hit rate).
    pub prefix_query_blocks: u64,
    /// Prefix-cache hit blocks.
    pub prefix_hit_blocks: u64,
    /// Preemptions.
    pub num_preemptions: u64,
    /// Prompt tokens of requests whose prefill completed.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub generation_tokens: u64,
    /// Finished requests by reason, indexed like [`FinishReason::ALL`].
    pub request_success: [u64; 3],
    /// Time to first token.
    pub ttft: Histogram,
    /// Time between consecutive tokens of a request (TPOT / inter-token latency).
    pub inter_token: Histogram,
    /// Arrival to last token.
    pub e2e: Histogram,
    /// Queued to (latest) scheduled.
    pub queue: Histogram,
    /// Scheduled to last token.
    pub inference: Histogram,
    /// Scheduled to first token.
    pub prefill: Histogram,
    /// First to last token.
    pub decode: Histogram,
    /// Per request: decode time / (output tokens − 1).
    pub request_tpot: Histogram,
    /// Prompt length per finished request.
    pub request_prompt_tokens: Histogram,
    /// Output length per finished request.
    pub request_generation_tokens: Histogram,
    /// `max_tokens` per finished request.
    pub request_max_tokens: Histogram,
    /// Tokens computed per step.
    pub iteration_tokens: Histogram,
    /// Engine steps run.
    pub steps: u64,
    /// Simulated seconds of all steps.
    pub step_seconds: f64,
    /// How late steps started versus the model, in simulated seconds.
    pub lag: Histogram,
    /// Lag divided by the step's duration.
    pub lag_ratio: Histogram,
}

impl Clone for EngineMetrics {
    fn clone(&self) -> Self {
        let mut out = Self::new(MetricsFormat::V1, 1);
        out.clone_from(self);
        out
    }

    /// Copies without allocating once `self` has the same buckets as `source`.
    fn clone_from(&mut self, source: &Self) {
        // Exhaustive destructuring: a new field fails to compile until it is copied here.
        let Self {
            num_running,
            num_waiting,
            kv_usage,
            prefix_query_tokens,
            prefix_hit_tokens,
            prefix_query_blocks,
            prefix_hit_blocks,
            num_preemptions,
            prompt_tokens,
            generation_tokens,
            request_success,
            ttft,
            inter_token,
            e2e,
            queue,
            inference,
            prefill,
            decode,
            request_tpot,
            request_prompt_tokens,
            request_generation_tokens,
            request_max_tokens,
            iteration_tokens,
            steps,
            step_seconds,
            lag,
            lag_ratio,
        } = source;
        self.num_running = *num_running;
        self.num_waiting = *num_waiting;
        self.kv_usage = *kv_usage;
        self.prefix_query_tokens = *prefix_query_tokens;
        self.prefix_hit_tokens = *prefix_hit_tokens;
        self.prefix_query_blocks = *prefix_query_blocks;
        self.prefix_hit_blocks = *prefix_hit_blocks;
        self.num_preemptions = *num_preemptions;
        self.prompt_tokens = *prompt_tokens;
        self.generation_tokens = *generation_tokens;
        self.request_success = *request_success;
        self.ttft.clone_from(ttft);
        self.inter_token.clone_from(inter_token);
        self.e2e.clone_from(e2e);
        self.queue.clone_from(queue);
        self.inference.clone_from(inference);
        self.prefill.clone_from(prefill);
        self.decode.clone_from(decode);
        self.request_tpot.clone_from(request_tpot);
        self.request_prompt_tokens.clone_from(request_prompt_tokens);
        self.request_generation_tokens.clone_from(request_generation_tokens);
        self.request_max_tokens.clone_from(request_max_tokens);
        self.iteration_tokens.clone_from(iteration_tokens);
        self.steps = *steps;
        self.step_seconds = *step_seconds;
        self.lag.clone_from(lag);
        self.lag_ratio.clone_from(lag_ratio);
    }
}

impl EngineMetrics {
    /// Empty metrics with the buckets of `format`; token histograms go up to `max_model_len`.
    pub fn new(format: MetricsFormat, max_model_len: usize) -> Self {
        let req = || Histogram::new(with_extra(REQUEST_V0, REQUEST_V1_EXTRA, format));
        let tok = || Histogram::new(one_two_five(max_model_len));
        Self {
            num_running: 0,
            num_waiting: 0,
            kv_usage: 0.0,
            prefix_query_tokens: 0,
            prefix_hit_tokens: 0,
            prefix_query_blocks: 0,
            prefix_hit_blocks: 0,
            num_preemptions: 0,
            prompt_tokens: 0,
            generation_tokens: 0,
            request_success: [0; 3],
            ttft: Histogram::new(with_extra(TTFT_V0, TTFT_V1_EXTRA, format)),
            inter_token: Histogram::new(with_extra(ITL_V0, ITL_V1_EXTRA, format)),
            e2e: req(),
            queue: req(),
            inference: req(),
            prefill: req(),
            decode: req(),
            request_tpot: Histogram::new(with_extra(ITL_V0, ITL_V1_EXTRA, format)),
            request_prompt_tokens: tok(),
            request_generation_tokens: tok(),
            request_max_tokens: tok(),
            iteration_tokens: Histogram::new(ITERATION_TOKENS_V1.to_vec()),
            steps: 0,
            step_seconds: 0.0,
            lag: Histogram::new(LAG_SECONDS.to_vec()),
            lag_ratio: Histogram::new(LAG_RATIO.to_vec()),
        }
    }

    /// Records a finished request (any reason) at model time `now`.
    pub fn observe_finished(&mut self, req: &SimRequest, reason: FinishReason, now: f64) {
        let idx = FinishReason::ALL.iter().position(|&r| r == reason).unwrap_or(0);
        self.request_success[idx] += 1;
        let t = req.timing;
        self.e2e.observe(now - t.arrival);
        if let Some(s) = t.scheduled {
            self.queue.observe((s - t.queued).max(0.0));
            self.inference.observe(now - s);
            if let Some(f) = t.first_token {
                self.prefill.observe((f - s).max(0.0));
            }
        }
        if let Some(f) = t.first_token {
            self.decode.observe(now - f);
            let n = req.num_output();
            if n > 1 {
                self.request_tpot.observe((now - f) / (n - 1) as f64);
            }
        }
        self.request_prompt_tokens.observe(req.prompt_len as f64);
        self.request_generation_tokens.observe(req.num_output() as f64);
        self.request_max_tokens.observe(req.max_tokens as f64);
    }

    /// Fraction of simulated step time lost to late starts (mean lag / mean step).
    pub fn lag_fraction(&self) -> f64 {
        if self.step_seconds > 0.0 {
            self.lag.sum() / self.step_seconds
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_two_five_stops_at_the_context_length() {
        assert_eq!(
            one_two_five(32_768),
            vec![
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
                20000.0
            ]
        );
    }

    #[test]
    fn histograms_are_cumulative_and_bounds_are_inclusive() {
        let mut h = Histogram::new(vec![1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.cumulative(), vec![2, 3]);
        assert_eq!(h.count(), 4);
        assert!((h.sum() - 6.0).abs() < 1e-12);
        assert_eq!(h.quantile_bound(0.5), Some(1.0));
        assert_eq!(h.quantile_bound(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn v1_buckets_extend_v0() {
        let v0 = EngineMetrics::new(MetricsFormat::V0, 32_768);
        let v1 = EngineMetrics::new(MetricsFormat::V1, 32_768);
        assert_eq!(v0.ttft.bounds().len(), 16);
        assert_eq!(v1.ttft.bounds().len(), 22);
        assert_eq!(v1.e2e.bounds().last(), Some(&7680.0));
    }
}
