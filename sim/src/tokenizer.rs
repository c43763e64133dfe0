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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A minimal word-level `tokenizer.json`, enough to exercise the Hugging Face path.
    const TINY_TOKENIZER: &str = r#"{
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2, "the": 3}, "unk_token": "[UNK]"}
    }"#;

    #[test]
    fn a_tokenizer_json_is_loaded_from_disk() {
        let path = std::env::temp_dir().join(format!("vllm-sim-tokenizer-{}.json", std::process::id()));
        std::fs::write(&path, TINY_TOKENIZER).unwrap();
        let t = SimTokenizer::load(Some(&path)).unwrap();
        assert!(matches!(t, SimTokenizer::HuggingFace(_)));
        assert_eq!(t.encode("hello world zebra", true).unwrap(), vec![1, 2, 0]);
        assert_eq!(t.word_id(" the"), 3);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_missing_tokenizer_file_is_an_error_naming_it() {
        let err = SimTokenizer::load(Some(Path::new("/nonexistent/tokenizer.json"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tokenizer.json"));
    }

    #[test]
    fn no_path_means_the_approximate_tokenizer() {
        let t = SimTokenizer::load(None).unwrap();
        assert_eq!(t.encode(" hello world", true).unwrap().len(), 2);
    }
}
