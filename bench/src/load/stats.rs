//! bench_serving's metrics, computed exactly as SGLang's `calculate_metrics`
//! does: over successful requests, in milliseconds, numpy-style percentiles.

use serde::{Deserialize, Serialize};
use vllm_sim::calibrate::percentile_of_sorted as percentile;

/// What one request measured, as the driver records it (times in seconds).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestOutcome {
    /// Whether the request completed with HTTP 200 and a well-formed stream.
    pub success: bool,
    /// Start, seconds since the run began (after the concurrency permit).
    pub start_s: f64,
    /// Time to the first non-empty token chunk.
    pub ttft_s: f64,
    /// Gaps between later non-empty chunks.
    pub itl_s: Vec<f64>,
    /// Start to the last line of the response.
    pub latency_s: f64,
    /// Prompt length in tokens (client-side count).
    pub prompt_len: u64,
    /// Output tokens (server usage when reported, else the requested length).
    pub output_len: u64,
    /// Which router it was sent to (an index into `--base-urls`), when there were several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<usize>,
    /// Replica that served it (`x-prefixgate-backend`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The router's decision (`x-prefixgate-decision`, e.g. `policy=prefix_aware;
    /// reason=prefix_match; match=0.83; load=2`), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Prompt tokens the replica found in its prefix cache, when it said
    /// (`x-sim-cached-tokens`, or `usage.prompt_tokens_details.cached_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Mean, median, population standard deviation and percentiles of a series (ms).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Arithmetic mean.
    pub mean: f64,
    /// 50th percentile.
    pub median: f64,
    /// Population standard deviation (numpy's default).
    pub std: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Summarises `values`; an empty series is all zeros, as bench_serving does.
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mean = sorted.iter().sum::<f64>() / n;
        let var = sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Self {
            mean,
            median: percentile(&sorted, 50.0),
            std: var.sqrt(),
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// The benchmark's results, named as bench_serving's JSON record names them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchMetrics {
    /// Wall time of the run, seconds.
    pub duration: f64,
    /// Successful requests.
    pub completed: u64,
    /// Failed requests (never dropped silently).
    pub failed: u64,
    /// Σ prompt tokens of successful requests.
    pub total_input_tokens: u64,
    /// Σ output tokens of successful requests.
    pub total_output_tokens: u64,
    /// completed / duration.
    pub request_throughput: f64,
    /// input tokens / duration.
    pub input_throughput: f64,
    /// output tokens / duration.
    pub output_throughput: f64,
    /// (input + output) / duration.
    pub total_throughput: f64,
    /// Σ e2e latency / duration: the mean number of requests in flight.
    pub concurrency: f64,
    /// Time to first token, ms.
    pub ttft_ms: Summary,
    /// Time per output token excluding the first, ms (requests with > 1 token).
    pub tpot_ms: Summary,
    /// Inter-token latency over all gaps of all requests, ms.
    pub itl_ms: Summary,
    /// End-to-end latency, ms.
    pub e2e_ms: Summary,
}

impl BenchMetrics {
    /// Computes every metric from the outcomes of a run lasting `duration_s`.
    pub fn compute(outcomes: &[RequestOutcome], duration_s: f64) -> Self {
        let ok: Vec<&RequestOutcome> = outcomes.iter().filter(|o| o.success).collect();
        let per_s = |x: f64| if duration_s > 0.0 { x / duration_s } else { 0.0 };
        let ms = |s: f64| s * 1_000.0;
        let total_input: u64 = ok.iter().map(|o| o.prompt_len).sum();
        let total_output: u64 = ok.iter().map(|o| o.output_len).sum();
        let ttft: Vec<f64> = ok.iter().map(|o| ms(o.ttft_s)).collect();
        let tpot: Vec<f64> = ok
            .iter()
            .filter(|o| o.output_len > 1)
            .map(|o| ms((o.latency_s - o.ttft_s) / (o.output_len - 1) as f64))
            .collect();
        let itl: Vec<f64> = ok.iter().flat_map(|o| o.itl_s.iter().map(|s| ms(*s))).collect();
        let e2e: Vec<f64> = ok.iter().map(|o| ms(o.latency_s)).collect();
        Self {
            duration: duration_s,
            completed: ok.len() as u64,
            failed: (outcomes.len() - ok.len()) as u64,
            total_input_tokens: total_input,
            total_output_tokens: total_output,
            request_throughput: per_s(ok.len() as f64),
            input_throughput: per_s(total_input as f64),
            output_throughput: per_s(total_output as f64),
            total_throughput: per_s((total_input + total_output) as f64),
            concurrency: per_s(ok.iter().map(|o| o.latency_s).sum()),
            ttft_ms: Summary::of(&ttft),
            tpot_ms: Summary::of(&tpot),
            itl_ms: Summary::of(&itl),
            e2e_ms: Summary::of(&e2e),
        }
    }
}

/// How far a run's routing is from the best possible, as shares of all prompt tokens
/// (successful and failed requests alike), counted in whole KV blocks the way the
/// engines look their caches up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// Tokens that are a prefix of some earlier request's prompt in the same run: what a
    /// perfect router in front of unbounded caches could hit.
    pub reuse_bound: f64,
    /// Tokens that the router sent to a replica that had received that prefix before.
    pub captured: f64,
    /// Tokens the engines actually found in their caches (after eviction).
    pub delivered: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn outcome(ttft: f64, itl: &[f64], latency: f64, prompt: u64, output: u64) -> RequestOutcome {
        RequestOutcome {
            success: true,
            ttft_s: ttft,
            itl_s: itl.to_vec(),
            latency_s: latency,
            prompt_len: prompt,
            output_len: output,
            ..Default::default()
        }
    }

    #[test]
    fn summary_percentiles_interpolate_like_numpy() {
        // numpy.percentile([1,2,3,4], 99) = 3.97; median 2.5; in any order.
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]);
        assert!(close(s.p99, 3.97) && close(s.median, 2.5) && close(s.max, 4.0), "{s:?}");
        assert!(close(Summary::of(&[5.0]).p99, 5.0));
    }

    #[test]
    fn hand_computed_trace() {
        let outcomes = vec![
            // 4 tokens: TPOT = (0.5 − 0.2) / 3 = 0.1 s.
            outcome(0.2, &[0.1, 0.1, 0.1], 0.5, 100, 4),
            // 1 token: no TPOT, no ITL.
            outcome(0.4, &[], 0.4, 50, 1),
            RequestOutcome {
                success: false,
                error: Some("HTTP 500".into()),
                prompt_len: 999,
                ..Default::default()
            },
        ];
        let m = BenchMetrics::compute(&outcomes, 2.0);
        assert_eq!((m.completed, m.failed), (2, 1));
        assert_eq!((m.total_input_tokens, m.total_output_tokens), (150, 5));
        assert!(close(m.request_throughput, 1.0));
        assert!(close(m.input_throughput, 75.0));
        assert!(close(m.output_throughput, 2.5));
        assert!(close(m.total_throughput, 77.5));
        assert!(close(m.concurrency, 0.45));
        assert!(close(m.ttft_ms.mean, 300.0));
        assert!(close(m.ttft_ms.median, 300.0));
        assert!(close(m.ttft_ms.std, 100.0));
        assert!(close(m.ttft_ms.p99, 398.0));
        assert!(close(m.tpot_ms.mean, 100.0));
        assert!(close(m.tpot_ms.std, 0.0));
        assert!(close(m.itl_ms.mean, 100.0));
        assert!(close(m.e2e_ms.mean, 450.0));
        assert!(close(m.e2e_ms.max, 500.0));
    }

    #[test]
    fn empty_series_are_zero() {
        let m = BenchMetrics::compute(&[], 0.0);
        assert_eq!(m.ttft_ms, Summary::default());
        assert_eq!(m.request_throughput, 0.0);
    }
}
