//! Prompt tokenization: the built-in approximate tokenizer, or a Hugging Face
//! `tokenizer.json` loaded from disk with the `tokenizers` crate (pure Rust, no network).

use std::path::Path;

use super::approx_tokenizer;
use super::error::SimError;

/// The tokenizer of a replica.
#[derive(Debug, Clone)]
pub enum SimTokenizer {
    /// Deterministic ~4 characters per token; see [`approx_tokenizer`].
    Approximate,
    /// A real tokenizer (e.g. Qwen's), for token counts and cache keys that match vLLM's.
    HuggingFace(Box<tokenizers::Tokenizer>),
}

impl SimTokenizer {
    /// Loads a `tokenizer.json`, or returns the approximate tokenizer when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, SimError> {
        let Some(path) = path else {
            return Ok(Self::Approximate);
        };
        tokenizers::Tokenizer::from_file(path)
            .map(|t| Self::HuggingFace(Box::new(t)))
            .map_err(|e| SimError::Tokenizer { path: path.to_owned(), message: e.to_string() })
    }

    /// Token ids of `text`; `add_special_tokens` as vLLM passes it (true for completions,
    /// false for chat, whose template already holds the special tokens).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, String> {
        match self {
            Self::Approximate => Ok(approx_tokenizer::encode(text)),
            Self::HuggingFace(t) => t
                .encode(text, add_special_tokens)
                .map(|enc| enc.get_ids().to_vec())
                .map_err(|e| e.to_string()),
        }
    }

    /// The id of a short word's first token, used to give generated words their ids.
    pub fn word_id(&self, word: &str) -> u32 {
        match self.encode(word, false) {
            Ok(ids) => ids.first().copied().unwrap_or(0),
            Err(_) => approx_tokenizer::token_id(word),
        }
    }
}
