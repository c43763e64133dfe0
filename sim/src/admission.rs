//! From a parsed OpenAI request body to the engine's [`NewRequest`]: validation, model
//! name, tokenization, context limits, output length and finish reason, seeds. No I/O, so
//! the HTTP server ([`super::server`]) and callers driving engines in virtual time admit
//! requests the same way.

use serde_json::Value;

use super::api_error::ApiError;
use super::openai::{self, Endpoint, GenerateParams, PromptInput};
use super::request::{FinishReason, NewRequest, RequestId};
use super::text_gen::splitmix64;
use super::tokenizer::SimTokenizer;

/// Without `ignore_eos`, a request "stops" after a pseudo-random natural length drawn
/// uniformly from 1..=this (mean ≈ 256, about a ShareGPT answer), clamped to
/// `[min_tokens, max_tokens]`; reaching `max_tokens` reports `length`, else `stop`.
pub const NATURAL_MAX_TOKENS: u64 = 512;

/// What a replica's front end knows when it admits a request.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// Names accepted in `model`; the first one when the field is absent.
    pub served_names: &'a [String],
    /// Prompt tokenizer.
    pub tokenizer: &'a SimTokenizer,
    /// Context limit of a request (prompt + output).
    pub max_model_len: usize,
    /// The replica's seed, mixed into generated text and output lengths.
    pub seed: u64,
}

/// A validated request ready for the engine.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The parsed fields.
    pub params: GenerateParams,
    /// The served name the request named.
    pub model: String,
    /// Prompt token ids (chat template applied).
    pub prompt: Vec<u32>,
    /// Output cap after the endpoint's default.
    pub max_tokens: usize,
}

/// FNV-1a over bytes: a stable hash for seeds and cache salts.
fn fnv64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The hash of a prompt's token ids that seeds its output length and text (FNV-1a over
/// their little-endian bytes).
pub fn prompt_hash(prompt: &[u32]) -> u64 {
    fnv64(prompt.iter().flat_map(|t| t.to_le_bytes()))
}

/// Output length and finish reason of a request; see [`NATURAL_MAX_TOKENS`].
pub fn choose_output(
    ignore_eos: bool,
    min_tokens: usize,
    max_tokens: usize,
    seed: u64,
) -> (usize, FinishReason) {
    if ignore_eos {
        return (max_tokens, FinishReason::Length);
    }
    let mut s = seed ^ 0x5851_f42d_4c95_7f2d;
    let natural = 1 + (splitmix64(&mut s) % NATURAL_MAX_TOKENS) as usize;
    let n = natural.max(min_tokens).max(1);
    if n >= max_tokens {
        (max_tokens, FinishReason::Length)
    } else {
        (n, FinishReason::Stop)
    }
}

impl Admission<'_> {
    /// The served name a request's `model` field names (the first one when absent); 404
    /// for a name not served here.
    pub fn resolve_model(&self, model: Option<&String>) -> Result<String, ApiError> {
        match model {
            None => Ok(self.served_names.first().cloned().unwrap_or_default()),
            Some(m) if self.served_names.iter().any(|n| n == m) => Ok(m.clone()),
            Some(m) => Err(ApiError::model_not_found(m)),
        }
    }

    /// Validates a generation request body sent to `endpoint`, answering as vLLM does
    /// (404 for an unknown model, 400 for a bad field or a context overflow).
    pub fn prepare(&self, value: &Value, endpoint: Endpoint) -> Result<Prepared, ApiError> {
        self.prepare_with(value, endpoint, |text, add_special_tokens| {
            self.tokenizer.encode(text, add_special_tokens)
        })
    }

    /// [`Self::prepare`] with the prompt text tokenized by `encode` (text,
    /// `add_special_tokens`), which must return what [`Self::tokenizer`] would: for a caller
    /// that admits the same prompt many times and keeps its token ids (the policy lab).
    pub fn prepare_with(
        &self,
        value: &Value,
        endpoint: Endpoint,
        encode: impl FnOnce(&str, bool) -> Result<Vec<u32>, String>,
    ) -> Result<Prepared, ApiError> {
        let params = match endpoint {
            Endpoint::Completions => openai::parse_completion(value)?,
            Endpoint::Chat => openai::parse_chat(value)?,
        };
        let model = self.resolve_model(params.model.as_ref())?;
        let prompt = match &params.prompt {
            PromptInput::Tokens(ids) => ids.clone(),
            PromptInput::Text(text) => encode(text, endpoint == Endpoint::Completions)
                .map_err(|e| ApiError::bad_request(format!("prompt: cannot be tokenized: {e}")))?,
        };
        if prompt.is_empty() {
            return Err(ApiError::field("prompt", "must not be empty"));
        }
        let max_len = self.max_model_len;
        let what = match endpoint {
            Endpoint::Completions => "prompt",
            Endpoint::Chat => "messages",
        };
        if prompt.len() >= max_len {
            return Err(ApiError::bad_request(format!(
                "This model's maximum context length is {max_len} tokens. However, your request has {} input tokens. Please reduce the length of the input {what}.",
                prompt.len()
            )));
        }
        let max_tokens = params.max_tokens.unwrap_or(match endpoint {
            Endpoint::Completions => 16,
            Endpoint::Chat => max_len - prompt.len(),
        });
        if prompt.len().saturating_add(max_tokens) > max_len {
            return Err(ApiError::bad_request(format!(
                "This model's maximum context length is {max_len} tokens. However, you requested {} tokens ({} in the {what}, {max_tokens} in the completion). Please reduce the length of the {what} or completion.",
                prompt.len().saturating_add(max_tokens),
                prompt.len()
            )));
        }
        Ok(Prepared { params, model, prompt, max_tokens })
    }

    /// The engine request for `prepared` under `id`: output length and finish reason
    /// from the prompt, the replica's seed and the request's, and its cache salt.
    pub fn new_request(&self, prepared: &Prepared, id: RequestId) -> NewRequest {
        self.request(prepared, prepared.prompt.clone(), id, prompt_hash(&prepared.prompt))
    }

    /// [`Self::new_request`] given `prompt_hash`, which must be [`prompt_hash`] of the
    /// prepared prompt (kept by a caller that admits the same prompt many times); takes
    /// `prepared` whole, so its prompt moves into the request instead of being copied.
    pub fn new_request_hashed(&self, mut prepared: Prepared, id: RequestId, prompt_hash: u64) -> NewRequest {
        debug_assert_eq!(prompt_hash, self::prompt_hash(&prepared.prompt), "a stale prompt hash");
        let prompt = std::mem::take(&mut prepared.prompt);
        self.request(&prepared, prompt, id, prompt_hash)
    }

    /// The engine request for `p` with its prompt ids `prompt` and their hash.
    fn request(&self, p: &Prepared, prompt: Vec<u32>, id: RequestId, prompt_hash: u64) -> NewRequest {
        let seed = prompt_hash
            ^ self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ p.params.seed.unwrap_or(0).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        let (output_len, finish_reason) =
            choose_output(p.params.ignore_eos, p.params.min_tokens, p.max_tokens, seed);
        NewRequest {
            id,
            prompt,
            output_len,
            finish_reason,
            text_seed: seed,
            cache_salt: p.params.cache_salt.as_ref().map_or(0, |s| fnv64(s.bytes())),
            max_tokens: p.max_tokens,
        }
    }
}
