//! Configuration of a simulated replica: engine limits, model names, timing and dialect.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::error::SimError;
use super::profile::Profile;

/// Scheduler limits and cache switches, vLLM V1's defaults for GPUs under 70 GiB such as
/// the L4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineLimits {
    /// Most requests in the running batch; default 256 (`--max-num-seqs`).
    pub max_num_seqs: usize,
    /// Token budget of one step, prefill chunks and decodes together; default 2048
    /// (`--max-num-batched-tokens`). With chunked prefill off the engine raises it to at
    /// least `max_model_len`; see [`EngineLimits::step_token_budget`].
    pub max_num_batched_tokens: usize,
    /// Tokens per KV block; default 16 (`--block-size`).
    pub block_size: usize,
    /// Automatic prefix caching; default true, as in vLLM V1 (`--enable-prefix-caching` /
    /// `--no-enable-prefix-caching`). Off: no prefix-cache lookup, no block is registered
    /// for reuse, every prompt is computed from scratch, and the prefix-cache counters of
    /// `/metrics` stay 0.
    pub enable_prefix_caching: bool,
    /// Chunked prefill; default true, as in vLLM V1 (`--enable-chunked-prefill` /
    /// `--no-enable-chunked-prefill`). Off: a prompt is never split across steps; a waiting
    /// request is admitted only when its whole uncached prompt fits in what is left of the
    /// step's token budget, and admission stops at the first one that does not fit (FCFS).
    pub enable_chunked_prefill: bool,
    /// Async scheduling (`--async-scheduling` / `--no-async-scheduling`); default false, as
    /// in the vLLM 0.9 the simulator reports (`/version`); later vLLM V1 releases turned it
    /// on by default (vLLM PR #27614), and the calibration replays cited measurements of those with it on.
    /// The scheduler plans step N+1 while step N runs, so a request that reaches the engine
    /// while requests run can join, at the earliest, the step after the next one; an idle
    /// engine takes it at once.
    pub async_scheduling: bool,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            max_num_seqs: 256,
            max_num_batched_tokens: 2048,
            block_size: 16,
            enable_prefix_caching: true,
            enable_chunked_prefill: true,
            async_scheduling: false,
        }
    }
}

impl EngineLimits {
    /// The token budget of one step for a model whose requests hold at most
    /// `max_model_len` tokens.
    ///
    /// With chunked prefill on, `max_num_batched_tokens`. With it off, every prompt must fit
    /// in one step, so the budget is at least `max_model_len`: vLLM's `SchedulerConfig`
    /// defaults it to `max(max_model_len, 2048)` in that case and refuses to start when an
    /// explicit value is smaller than `max_model_len`. The simulator cannot tell the default
    /// 2048 from an explicit value, so it raises any smaller value instead of refusing;
    /// a long prompt is then never stuck in the waiting queue.
    pub fn step_token_budget(&self, max_model_len: usize) -> usize {
        if self.enable_chunked_prefill {
            self.max_num_batched_tokens
        } else {
            self.max_num_batched_tokens.max(max_model_len)
        }
    }
}

/// Which generation of vLLM's `/metrics` names to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsFormat {
    /// vLLM V0 (0.8 and before): no `engine` label, `gpu_cache_usage_perc`, block hit rate.
    V0,
    /// vLLM V1 (0.8+ default engine): `engine` label, token prefix-cache counters.
    #[default]
    V1,
}

impl FromStr for MetricsFormat {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v0" | "V0" => Ok(Self::V0),
            "v1" | "V1" => Ok(Self::V1),
            other => Err(SimError::MetricsFormat(other.to_owned())),
        }
    }
}

/// Everything a fleet of simulated replicas needs; every replica gets the same config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Model path reported in `/v1/models` (`root`); default `Qwen/Qwen2.5-1.5B-Instruct`.
    pub model: String,
    /// Names accepted in a request's `model` field, the first one used as the metrics
    /// `model_name`; default: empty, meaning `[model]`.
    pub served_model_names: Vec<String>,
    /// Address to listen on; default 127.0.0.1.
    pub host: IpAddr,
    /// Port of the first replica, the others on the following ports; 0 (the default) lets
    /// the system pick a free port for each.
    pub port: u16,
    /// Hardware and model numbers for the cost model; default `l4-qwen2.5-1.5b`.
    pub profile: Profile,
    /// Scheduler limits.
    pub limits: EngineLimits,
    /// KV blocks per replica; default: the profile's `num_gpu_blocks`.
    pub num_gpu_blocks: Option<usize>,
    /// Simulated durations are divided by this; default 1.0 (real time). Metrics and
    /// reported times stay in simulated seconds.
    pub time_scale: f64,
    /// `/metrics` dialect; default V1.
    pub metrics_format: MetricsFormat,
    /// A Hugging Face `tokenizer.json`; default none, the built-in approximate tokenizer.
    pub tokenizer: Option<PathBuf>,
    /// Seed mixed into generated text and output lengths; default 0.
    pub seed: u64,
    /// Report `usage.prompt_tokens_details.cached_tokens`, as vLLM's
    /// `--enable-prompt-tokens-details`; default false.
    pub enable_prompt_tokens_details: bool,
    /// Spin instead of sleeping for the last microseconds before a step ends, so that steps
    /// start on time; default 50 µs of wall time. 0 disables spinning.
    pub spin_micros: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            model: "Qwen/Qwen2.5-1.5B-Instruct".to_owned(),
            served_model_names: Vec::new(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            profile: Profile::default(),
            limits: EngineLimits::default(),
            num_gpu_blocks: None,
            time_scale: 1.0,
            metrics_format: MetricsFormat::V1,
            tokenizer: None,
            seed: 0,
            enable_prompt_tokens_details: false,
            spin_micros: 50,
        }
    }
}

impl SimConfig {
    /// Names the replica answers to; the first is the metrics `model_name`.
    pub fn served_names(&self) -> Vec<String> {
        if self.served_model_names.is_empty() {
            vec![self.model.clone()]
        } else {
            self.served_model_names.clone()
        }
    }

    /// KV blocks per replica, after the `num_gpu_blocks` override.
    pub fn num_gpu_blocks(&self) -> usize {
        self.num_gpu_blocks.unwrap_or(self.profile.num_gpu_blocks)
    }

    /// Longest prompt + output a request may have: the profile's `max_model_len`, lowered
    /// when the KV cache cannot hold that many tokens (vLLM refuses to start instead; the
    /// simulator allows tiny caches for eviction tests).
    pub fn max_model_len(&self) -> usize {
        let cache_tokens = self.num_gpu_blocks() * self.limits.block_size;
        self.profile.max_model_len.min(cache_tokens)
    }

    /// Checks values that would make the simulation meaningless, naming the field.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |field: &'static str, why: &'static str| Err(SimError::Config { field, why });
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return bad("time_scale", "must be a positive number");
        }
        if self.limits.block_size == 0 {
            return bad("block_size", "must be at least 1");
        }
        if self.limits.max_num_seqs == 0 {
            return bad("max_num_seqs", "must be at least 1");
        }
        if self.limits.max_num_batched_tokens == 0 {
            return bad("max_num_batched_tokens", "must be at least 1");
        }
        if self.num_gpu_blocks() == 0 {
            return bad("num_gpu_blocks", "must be at least 1");
        }
        if self.served_names().iter().any(|n| n.is_empty()) {
            return bad("served_model_name", "must not be empty");
        }
        self.profile.validate()
    }
}
