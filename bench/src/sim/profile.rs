//! Hardware + model profiles for the step-time cost model.
//!
//! Built-in profiles carry the estimates for one NVIDIA L4 (300 GB/s GDDR6, 121 TFLOPS dense
//! BF16, 72 W) serving Qwen2.5 in BF16, derived from the models' `config.json`. A profile can
//! also be a TOML file with the same fields (see [`Profile`]).

use std::path::Path;

use serde::Deserialize;

use super::error::SimError;

/// Numbers of one GPU + model pair. Every field is required in a TOML profile file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Profile name, shown by `--calibrate`.
    pub name: String,
    /// Bytes of weights read by every step (BF16: 2 × parameters, tied embedding once).
    pub weight_bytes: f64,
    /// KV bytes per token: 2 (K,V) × layers × kv_heads × head_dim × 2 bytes.
    pub kv_bytes_per_token: f64,
    /// Effective memory bandwidth, bytes/s (≈85 % of the datasheet figure).
    pub mem_bandwidth: f64,
    /// Effective compute, FLOP/s (what prefill achieves, far below the datasheet peak).
    pub flops: f64,
    /// FLOPs per token through the transformer body: 2 × non-embedding parameters.
    pub flops_per_token: f64,
    /// FLOPs of the LM head per sampled position: 2 × vocab × hidden.
    pub lm_head_flops: f64,
    /// Attention FLOPs per (new token, context token) pair: 4 × layers × heads × head_dim.
    pub attention_flops_per_pair: f64,
    /// Fixed per-step overhead (scheduling, kernel launches, sampling), seconds.
    pub step_overhead_seconds: f64,
    /// Front-end overhead before a request reaches the engine (HTTP, tokenization), seconds.
    pub frontend_overhead_seconds: f64,
    /// KV blocks of 16 tokens that fit beside the weights at `gpu_memory_utilization` 0.9.
    pub num_gpu_blocks: usize,
    /// The model's context length.
    pub max_model_len: usize,
}

/// Name of the default profile.
pub const DEFAULT_PROFILE: &str = "l4-qwen2.5-1.5b";

impl Default for Profile {
    fn default() -> Self {
        Self::l4_qwen25_1_5b()
    }
}

impl Profile {
    /// Qwen2.5-1.5B-Instruct on one L4: 1,543.7 M parameters (1,310.3 M non-embedding),
    /// 28 layers, 12 query / 2 KV heads of 128, vocab 151,936 × hidden 1,536, tied embedding.
    /// Decode at batch 1 ≈ 14.2 ms; prefill ≈ 14 k tokens/s at 40 TFLOPS effective.
    pub fn l4_qwen25_1_5b() -> Self {
        Self {
            name: DEFAULT_PROFILE.to_owned(),
            weight_bytes: 3_087_428_608.0,
            kv_bytes_per_token: 28_672.0,
            mem_bandwidth: 255e9,
            flops: 40e12,
            flops_per_token: 2.0 * 1_310_340_608.0,
            lm_head_flops: 2.0 * 151_936.0 * 1_536.0,
            attention_flops_per_pair: 4.0 * 28.0 * 12.0 * 128.0,
            step_overhead_seconds: 0.002,
            frontend_overhead_seconds: 0.005,
            num_gpu_blocks: 36_000,
            max_model_len: 32_768,
        }
    }

    /// Qwen2.5-0.5B-Instruct on one L4: 494.0 M parameters (357.9 M non-embedding),
    /// 24 layers, 14 query / 2 KV heads of 64, vocab 151,936 × hidden 896, tied embedding.
    /// Decode at batch 1 ≈ 5.9 ms; prefill ≈ 40 k tokens/s at 33 TFLOPS effective.
    pub fn l4_qwen25_0_5b() -> Self {
        Self {
            name: "l4-qwen2.5-0.5b".to_owned(),
            weight_bytes: 988_065_536.0,
            kv_bytes_per_token: 12_288.0,
            mem_bandwidth: 255e9,
            flops: 33e12,
            flops_per_token: 2.0 * 357_898_112.0,
            lm_head_flops: 2.0 * 151_936.0 * 896.0,
            attention_flops_per_pair: 4.0 * 24.0 * 14.0 * 64.0,
            step_overhead_seconds: 0.002,
            frontend_overhead_seconds: 0.005,
            num_gpu_blocks: 96_000,
            max_model_len: 32_768,
        }
    }

    /// All built-in profiles.
    pub fn builtin() -> Vec<Profile> {
        vec![Self::l4_qwen25_1_5b(), Self::l4_qwen25_0_5b()]
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
                return Err(SimError::Config(format!("profile {}: {field} must be positive", self.name)));
            }
        }
        let non_negative = [
            ("lm_head_flops", self.lm_head_flops),
            ("attention_flops_per_pair", self.attention_flops_per_pair),
            ("step_overhead_seconds", self.step_overhead_seconds),
            ("frontend_overhead_seconds", self.frontend_overhead_seconds),
        ];
        for (field, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(SimError::Config(format!("profile {}: {field} must not be negative", self.name)));
            }
        }
        if self.num_gpu_blocks == 0 || self.max_model_len == 0 {
            return Err(SimError::Config(format!(
                "profile {}: num_gpu_blocks and max_model_len must be at least 1",
                self.name
            )));
        }
        Ok(())
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
        assert!(matches!(Profile::resolve("h100-llama"), Err(SimError::UnknownProfile(_))));
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
