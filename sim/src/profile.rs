//! Hardware + model profiles for the step-time cost model and the front end.
//!
//! A profile holds two kinds of numbers. The model's geometry (weight bytes, KV bytes per
//! token, FLOPs per token) comes from its `config.json`. The hardware and serving-stack
//! numbers (effective bandwidth and FLOP/s, per-step and per-sequence overheads, the front
//! end's costs) are fitted to the published measurements in [`Profile::references`] (one
//! replica) and [`Profile::fleet_references`] (a fleet behind a router), or, where no
//! measurement exists, carried over from a measured profile on the same GPU; each
//! profile's [`Profile::sources`] says which. A profile can also be a TOML file with the same
//! fields (see [`Profile`]).

use std::path::Path;

use serde::Deserialize;

use super::error::SimError;
use super::reference::{self, FleetReference, Reference};

/// Where one profile number comes from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSource {
    /// The profile field.
    pub field: String,
    /// Its origin: a datasheet, the model's config, a fit to a cited measurement, or an
    /// estimate, said as such.
    pub source: String,
}

/// Numbers of one GPU + model pair. Every number is required in a TOML profile file except
/// the four added with the front-end model (`seq_overhead_seconds`, `frontend_cpu_seconds`,
/// `tokenize_seconds_per_token`, `detokenize_seconds_per_token`), which default to 0, and
/// `sources`, `references` and `fleet_references`, which default to empty.
/// `frontend_overhead_seconds`, the old name of `frontend_latency_seconds`, is still accepted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Profile name, shown by `--calibrate`.
    pub name: String,
    /// Bytes of weights read by every step (BF16: 2 × parameters, tied embedding once).
    pub weight_bytes: f64,
    /// KV bytes per token: 2 (K,V) × layers × kv_heads × head_dim × 2 bytes.
    pub kv_bytes_per_token: f64,
    /// Effective memory bandwidth, bytes/s: what a decode step achieves reading weights and
    /// KV, below the datasheet figure.
    pub mem_bandwidth: f64,
    /// Effective compute, FLOP/s (what prefill achieves, far below the datasheet peak).
    pub flops: f64,
    /// FLOPs per token through the transformer body: 2 × non-embedding parameters.
    pub flops_per_token: f64,
    /// FLOPs of the LM head per sampled position: 2 × vocab × hidden.
    pub lm_head_flops: f64,
    /// Attention FLOPs per (new token, context token) pair: 4 × layers × heads × head_dim.
    pub attention_flops_per_pair: f64,
    /// Fixed per-step overhead (scheduling, kernel launches), seconds.
    pub step_overhead_seconds: f64,
    /// Per-step overhead for each sequence in the batch (its share of scheduling, input
    /// preparation, sampling and output processing in the engine core), seconds.
    #[serde(default)]
    pub seq_overhead_seconds: f64,
    /// Latency of the front end that does not occupy it (HTTP and IPC hops, the first
    /// token's way back to the client): every request pays it, concurrently, before it can
    /// join a step. Seconds.
    #[serde(alias = "frontend_overhead_seconds")]
    pub frontend_latency_seconds: f64,
    /// CPU time of the front end per request (request parsing, validation, hand-off to the
    /// engine), on one serial server per replica (vLLM's API server is one event loop):
    /// requests that arrive together are admitted one after the other. Seconds.
    #[serde(default)]
    pub frontend_cpu_seconds: f64,
    /// Front-end CPU time per prompt token (tokenization), on the same serial server.
    #[serde(default)]
    pub tokenize_seconds_per_token: f64,
    /// Front-end CPU time per output token (detokenization and streaming), on the same
    /// serial server: a busy batch delays the admission of new requests.
    #[serde(default)]
    pub detokenize_seconds_per_token: f64,
    /// KV blocks of 16 tokens that fit beside the weights at `gpu_memory_utilization` 0.9.
    pub num_gpu_blocks: usize,
    /// The model's context length.
    pub max_model_len: usize,
    /// Where each number comes from.
    #[serde(default)]
    pub sources: Vec<ParameterSource>,
    /// Published measurements this profile is checked against by `--calibrate`.
    #[serde(default)]
    pub references: Vec<Reference>,
    /// Published runs of a fleet of this GPU and model behind a router, which
    /// `prefixgate-bench calibrate` replays in its policy lab.
    #[serde(default)]
    pub fleet_references: Vec<FleetReference>,
}

/// Name of the default profile.
pub const DEFAULT_PROFILE: &str = "l4-qwen2.5-1.5b";

impl Default for Profile {
    fn default() -> Self {
        Self::l4_qwen25_1_5b()
    }
}

fn sources(pairs: &[(&str, &str)]) -> Vec<ParameterSource> {
    pairs.iter().map(|(f, s)| ParameterSource { field: (*f).to_owned(), source: (*s).to_owned() }).collect()
}

/// The L4 numbers fitted to the ai.wmx.dev sweep of Qwen2.5-0.5B
/// ([`reference::wmx_l4_qwen25_0_5b`]), shared by both L4 profiles: (mem_bandwidth,
/// step_overhead, seq_overhead, front-end latency, front-end CPU, tokenize per token,
/// detokenize per token).
const L4_FIT: (f64, f64, f64, f64, f64, f64, f64) = (255e9, 0.0012, 50e-6, 0.0165, 0.002, 1e-6, 20e-6);

fn l4_sources(carried: bool) -> Vec<ParameterSource> {
    let fit = if carried {
        "carried over from l4-qwen2.5-0.5b, where it is fitted to the ai.wmx.dev L4 sweep \
         (no published single-L4 measurement of this model was found)"
    } else {
        "fitted to the ai.wmx.dev L4 sweep (see references)"
    };
    let mut v = sources(&[
        ("weight_bytes", "model config.json: 2 bytes x parameters (tied embedding once)"),
        ("kv_bytes_per_token", "model config.json: 2 x layers x kv_heads x head_dim x 2 bytes"),
        ("flops_per_token", "model config.json: 2 x non-embedding parameters"),
        ("lm_head_flops", "model config.json: 2 x vocab x hidden"),
        ("attention_flops_per_pair", "model config.json: 4 x layers x heads x head_dim"),
        ("num_gpu_blocks", "estimate: KV cache beside the weights at gpu_memory_utilization 0.9 of 24 GB"),
        ("tokenize_seconds_per_token", "estimate: a fast (Rust) tokenizer at about 1 M tokens/s on one core"),
    ]);
    v.push(ParameterSource {
        field: "flops".to_owned(),
        source: if carried {
            "fitted to Ray's 4xL4 run of this model (see fleet_references): 50 TFLOPS, the upper end \
             of the 40-50 estimated for this model's prefill (41 % of the L4's 121 TFLOPS dense BF16); \
             40 gave 0.94x the run's throughput and 1.10x its mean TTFT, 50 puts all six published \
             figures within 8 %. The 0.5B fit gives 27 TFLOPS for that model's smaller matrices"
                .to_owned()
        } else {
            "fitted to the ai.wmx.dev L4 sweep: TTFT at concurrency 16 and 32, where prefills queue"
                .to_owned()
        },
    });
    v.push(ParameterSource {
        field: "mem_bandwidth".to_owned(),
        source: format!("85 % of the L4 datasheet's 300 GB/s; {fit}"),
    });
    for f in
        ["step_overhead_seconds", "seq_overhead_seconds", "frontend_latency_seconds", "frontend_cpu_seconds"]
    {
        v.push(ParameterSource { field: f.to_owned(), source: fit.to_owned() });
    }
    v.push(ParameterSource {
        field: "detokenize_seconds_per_token".to_owned(),
        source: format!(
            "estimate, consistent with the ai.wmx.dev L4 sweep (20 and 40 µs fit it equally, it does \
             not pin the value down); {}",
            if carried { "carried over from l4-qwen2.5-0.5b" } else { "the lower one" }
        ),
    });
    v
}

impl Profile {
    /// Qwen2.5-1.5B-Instruct on one L4: 1,543.7 M parameters (1,310.3 M non-embedding),
    /// 28 layers, 12 query / 2 KV heads of 128, vocab 151,936 × hidden 1,536, tied embedding.
    /// No published single-L4 measurement of it was found: the hardware and front-end
    /// numbers are those fitted for Qwen2.5-0.5B on the same GPU, and the prefill FLOP/s is
    /// fitted to Ray's run of four of them behind a prefix-aware router.
    pub fn l4_qwen25_1_5b() -> Self {
        let (bw, step, seq, lat, cpu, tok, detok) = L4_FIT;
        Self {
            name: DEFAULT_PROFILE.to_owned(),
            weight_bytes: 3_087_428_608.0,
            kv_bytes_per_token: 28_672.0,
            mem_bandwidth: bw,
            flops: 50e12,
            flops_per_token: 2.0 * 1_310_340_608.0,
            lm_head_flops: 2.0 * 151_936.0 * 1_536.0,
            attention_flops_per_pair: 4.0 * 28.0 * 12.0 * 128.0,
            step_overhead_seconds: step,
            seq_overhead_seconds: seq,
            frontend_latency_seconds: lat,
            frontend_cpu_seconds: cpu,
            tokenize_seconds_per_token: tok,
            detokenize_seconds_per_token: detok,
            num_gpu_blocks: 36_000,
            max_model_len: 32_768,
            sources: l4_sources(true),
            references: Vec::new(),
            fleet_references: vec![reference::ray_4xl4_qwen25_1_5b()],
        }
    }

    /// Qwen2.5-0.5B-Instruct on one L4: 494.0 M parameters (357.9 M non-embedding),
    /// 24 layers, 14 query / 2 KV heads of 64, vocab 151,936 × hidden 896, tied embedding.
    /// Fitted to the ai.wmx.dev concurrency sweep (vLLM 0.23.0, 256 in / 128 out).
    pub fn l4_qwen25_0_5b() -> Self {
        let (bw, step, seq, lat, cpu, tok, detok) = L4_FIT;
        Self {
            name: "l4-qwen2.5-0.5b".to_owned(),
            weight_bytes: 988_065_536.0,
            kv_bytes_per_token: 12_288.0,
            mem_bandwidth: bw,
            flops: 27e12,
            flops_per_token: 2.0 * 357_898_112.0,
            lm_head_flops: 2.0 * 151_936.0 * 896.0,
            attention_flops_per_pair: 4.0 * 24.0 * 14.0 * 64.0,
            step_overhead_seconds: step,
            seq_overhead_seconds: seq,
            frontend_latency_seconds: lat,
            frontend_cpu_seconds: cpu,
            tokenize_seconds_per_token: tok,
            detokenize_seconds_per_token: detok,
            num_gpu_blocks: 96_000,
            max_model_len: 32_768,
            sources: l4_sources(false),
            references: vec![reference::wmx_l4_qwen25_0_5b()],
            fleet_references: Vec::new(),
        }
    }

    /// Llama-3.1-8B-Instruct on one H100 SXM 80 GB: 8,030.3 M parameters (6,979.6 M
    /// non-embedding), 32 layers, 32 query / 8 KV heads of 128, vocab 128,256 × hidden
    /// 4,096, untied embedding (the input embedding is gathered, not read, each step).
    /// Fitted to the InferenceBench H100 sweep at concurrency 1 and 4.
    pub fn h100_llama31_8b() -> Self {
        Self {
            name: "h100-llama3.1-8b".to_owned(),
            weight_bytes: 15_009_849_344.0,
            kv_bytes_per_token: 131_072.0,
            mem_bandwidth: 2.85e12,
            flops: 400e12,
            flops_per_token: 2.0 * 6_979_588_096.0,
            lm_head_flops: 2.0 * 128_256.0 * 4_096.0,
            attention_flops_per_pair: 4.0 * 32.0 * 32.0 * 128.0,
            step_overhead_seconds: 0.0011,
            seq_overhead_seconds: 30e-6,
            frontend_latency_seconds: 0.004,
            frontend_cpu_seconds: 0.002,
            tokenize_seconds_per_token: 1e-6,
            detokenize_seconds_per_token: 10e-6,
            num_gpu_blocks: 25_000,
            max_model_len: 131_072,
            sources: sources(&[
                ("weight_bytes", "model config.json: 2 bytes x (parameters - input embedding)"),
                ("kv_bytes_per_token", "model config.json: 2 x 32 layers x 8 kv_heads x 128 x 2 bytes"),
                ("flops_per_token", "model config.json: 2 x non-embedding parameters"),
                ("lm_head_flops", "model config.json: 2 x vocab x hidden"),
                ("attention_flops_per_pair", "model config.json: 4 x layers x heads x head_dim"),
                ("mem_bandwidth", "85 % of the datasheet 3.35 TB/s (H100 SXM), checked by the fit at concurrency 1 and 4"),
                ("flops", "estimate: about 40 % of the 989 TFLOPS dense BF16 peak for prefill"),
                ("step_overhead_seconds", "fitted to the InferenceBench H100 sweep, concurrency 1 and 4"),
                ("seq_overhead_seconds", "fitted to the InferenceBench H100 sweep, concurrency 1 and 4"),
                ("frontend_latency_seconds", "fitted to the InferenceBench H100 TTFT at concurrency 1, for an assumed 128-token prompt"),
                ("frontend_cpu_seconds", "fitted to the InferenceBench H100 TTFT at concurrency 4, for an assumed 128-token prompt"),
                ("tokenize_seconds_per_token", "estimate: a fast (Rust) tokenizer at about 1 M tokens/s on one core"),
                ("detokenize_seconds_per_token", "estimate: half the L4 host's figure, for a faster host CPU; no source separates it"),
                ("num_gpu_blocks", "estimate: (0.9 x 80 GB - 16 GB weights - activations) / 2 MiB per 16-token block"),
            ]),
            references: vec![reference::inferencebench_h100_llama31_8b()],
            fleet_references: Vec::new(),
        }
    }

    /// All built-in profiles.
    pub fn builtin() -> Vec<Profile> {
        vec![Self::l4_qwen25_1_5b(), Self::l4_qwen25_0_5b(), Self::h100_llama31_8b()]
    }

    /// A built-in profile by name, or else a TOML profile file at that path.
    pub fn resolve(name_or_path: &str) -> Result<Self, SimError> {
        if let Some(p) = Self::builtin().into_iter().find(|p| p.name == name_or_path) {
            return Ok(p);
        }
        let path = Path::new(name_or_path);
        if path.extension().is_some_and(|e| e == "toml") || path.exists() {
            return Self::from_file(path);
        }
        Err(SimError::UnknownProfile(name_or_path.to_owned()))
    }

    /// Reads a profile from a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SimError::ProfileRead { path: path.to_owned(), source })?;
        let profile: Profile = toml::from_str(&text)
            .map_err(|source| SimError::ProfileParse { path: path.to_owned(), source })?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks that every number is usable, naming the first bad field.
    pub fn validate(&self) -> Result<(), SimError> {
        let positive = [
            ("weight_bytes", self.weight_bytes),
            ("kv_bytes_per_token", self.kv_bytes_per_token),
            ("mem_bandwidth", self.mem_bandwidth),
            ("flops", self.flops),
            ("flops_per_token", self.flops_per_token),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(self.bad(field, "must be positive"));
            }
        }
        let non_negative = [
            ("lm_head_flops", self.lm_head_flops),
            ("attention_flops_per_pair", self.attention_flops_per_pair),
            ("step_overhead_seconds", self.step_overhead_seconds),
            ("seq_overhead_seconds", self.seq_overhead_seconds),
            ("frontend_latency_seconds", self.frontend_latency_seconds),
            ("frontend_cpu_seconds", self.frontend_cpu_seconds),
            ("tokenize_seconds_per_token", self.tokenize_seconds_per_token),
            ("detokenize_seconds_per_token", self.detokenize_seconds_per_token),
        ];
        for (field, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(self.bad(field, "must not be negative"));
            }
        }
        if self.references.iter().any(|r| r.points.iter().any(|p| p.concurrency == 0)) {
            return Err(self.bad("references.points.concurrency", "must be at least 1"));
        }
        for f in &self.fleet_references {
            let counts = [
                ("fleet_references.replicas", f.replicas),
                ("fleet_references.max_concurrency", f.max_concurrency),
                ("fleet_references.num_prompts", f.num_prompts),
            ];
            if let Some((field, _)) = counts.iter().find(|(_, n)| *n == 0) {
                return Err(self.bad(field, "must be at least 1"));
            }
            if f.prompt_tokens.0 > f.prompt_tokens.1 {
                return Err(self.bad("fleet_references.prompt_tokens", "must be [least, most]"));
            }
            if f.output_tokens.0 > f.output_tokens.1 {
                return Err(self.bad("fleet_references.output_tokens", "must be [least, most]"));
            }
        }
        if self.num_gpu_blocks == 0 {
            return Err(self.bad("num_gpu_blocks", "must be at least 1"));
        }
        if self.max_model_len == 0 {
            return Err(self.bad("max_model_len", "must be at least 1"));
        }
        Ok(())
    }

    fn bad(&self, field: &'static str, why: &'static str) -> SimError {
        SimError::ProfileValue { profile: self.name.clone(), field, why }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_resolve_by_name_and_validate() {
        for p in Profile::builtin() {
            assert_eq!(Profile::resolve(&p.name).unwrap(), p);
            p.validate().unwrap();
        }
        assert!(matches!(Profile::resolve("a10g-llama"), Err(SimError::UnknownProfile(_))));
    }

    #[test]
    fn a_profile_file_is_read_and_unknown_fields_are_refused() {
        let dir = std::env::temp_dir().join(format!("vllm-sim-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        let text = r#"
name = "tiny"
weight_bytes = 1e9
kv_bytes_per_token = 1000
mem_bandwidth = 1e11
flops = 1e13
flops_per_token = 1e9
lm_head_flops = 1e8
attention_flops_per_pair = 1000
step_overhead_seconds = 0.001
frontend_overhead_seconds = 0.0
num_gpu_blocks = 64
max_model_len = 1024
"#;
        std::fs::write(&good, text).unwrap();
        let p = Profile::resolve(good.to_str().unwrap()).unwrap();
        assert_eq!(p.name, "tiny");
        assert_eq!(p.num_gpu_blocks, 64);
        // A file written before the front-end model: the old name still sets the latency,
        // the new numbers default to 0 and it cites nothing.
        assert_eq!(p.frontend_latency_seconds, 0.0);
        assert_eq!((p.seq_overhead_seconds, p.frontend_cpu_seconds), (0.0, 0.0));
        assert_eq!((p.tokenize_seconds_per_token, p.detokenize_seconds_per_token), (0.0, 0.0));
        assert!(p.references.is_empty() && p.sources.is_empty());
        let cited = dir.join("cited.toml");
        let with_ref = format!(
            "{}\nseq_overhead_seconds = 5e-5\n[[references]]\nurl = \"u\"\nwhat = \"w\"\nmodel = \"m\"\nvllm_version = \"v\"\nprompt_tokens = 256\noutput_tokens = 128\n[[references.points]]\nconcurrency = 4\nttft_p50_ms = 50.0\n",
            text.replace("frontend_overhead_seconds = 0.0", "frontend_latency_seconds = 0.02")
        );
        std::fs::write(&cited, with_ref).unwrap();
        let p = Profile::from_file(&cited).unwrap();
        assert_eq!((p.frontend_latency_seconds, p.seq_overhead_seconds), (0.02, 5e-5));
        assert_eq!(p.references[0].replay_shape(), Some((256, 128)));
        assert_eq!(p.references[0].points[0].itl_p50_ms, None, "a figure not given stays absent");
        let fleet = dir.join("fleet.toml");
        let fleet_ref = "[[fleet_references]]\nurl = \"u\"\nwhat = \"w\"\nmodel = \"m\"\nvllm_version = \"v\"\nreplicas = 4\npolicy = \"prefix_aware\"\ndataset = \"d\"\nprompt_tokens = [1500, 8192]\noutput_tokens = [10, 200]\nmax_concurrency = 40\nnum_prompts = 1000\n[fleet_references.figures]\nrequest_throughput = 17.7\n";
        std::fs::write(&fleet, format!("{text}\n{fleet_ref}")).unwrap();
        let p = Profile::from_file(&fleet).unwrap();
        assert_eq!(p.fleet_references[0].figures.request_throughput, Some(17.7));
        assert_eq!(p.fleet_references[0].figures.ttft_mean_ms, None, "a figure not given stays absent");
        assert_eq!(p.fleet_references[0].min_messages, 0);
        std::fs::write(&fleet, format!("{text}\n{}", fleet_ref.replace("replicas = 4", "replicas = 0")))
            .unwrap();
        let err = Profile::from_file(&fleet).unwrap_err();
        assert!(err.to_string().contains("fleet_references.replicas"), "{err}");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, format!("{text}\nflop = 3\n")).unwrap();
        let err = Profile::from_file(&bad).unwrap_err();
        assert!(format!("{:#}", anyhow_chain(&err)).contains("flop"));
    }

    fn anyhow_chain(e: &SimError) -> String {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(c) = src {
            s.push_str(": ");
            s.push_str(&c.to_string());
            src = c.source();
        }
        s
    }
}
