//! vLLM's `POST /tokenize` and `POST /detokenize`: request parsing with field-naming
//! errors, the response shapes, and both directions for both tokenizers.
//!
//! `/tokenize` takes `{"prompt": "…"}` (`add_special_tokens` default true) or
//! `{"messages": […]}` (rendered with the chat template as `/v1/chat/completions` does,
//! `add_generation_prompt` default true, `add_special_tokens` default false), and answers
//! `{"count", "max_model_len", "tokens", "token_strs"}` (`token_strs` only with
//! `return_token_strs`, else null). `/detokenize` takes `{"tokens": […]}` and answers
//! `{"prompt": "…"}`, special tokens kept, as vLLM's `tokenizer.decode`.
//!
//! A Hugging Face tokenizer decodes any id of its vocabulary. The built-in approximate
//! tokenizer's ids are hashes of the token text, so they cannot be inverted; it decodes
//! through a [`DecodeTable`] of the texts that `/tokenize` produced. Those are the only
//! built-in ids a client can see: the simulator returns no prompt or output ids elsewhere.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde_json::Value;

use super::api_error::ApiError;
use super::approx_tokenizer;
use super::chat_template;
use super::openai::{as_object, get, get_bool, parse_messages, parse_model};
use super::tokenizer::SimTokenizer;

/// A validated `/tokenize` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizeParams {
    /// Requested model name, if given.
    pub model: Option<String>,
    /// The text to tokenize: the prompt, or the rendered chat template.
    pub text: String,
    /// Add the tokenizer's special tokens (e.g. BOS); no effect on the built-in tokenizer.
    pub add_special_tokens: bool,
    /// Also return each token's string.
    pub return_token_strs: bool,
}

/// A validated `/detokenize` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetokenizeParams {
    /// Requested model name, if given.
    pub model: Option<String>,
    /// Token ids to decode.
    pub tokens: Vec<u32>,
}

/// vLLM's `TokenizeResponse`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenizeResponse {
    /// Number of tokens.
    pub count: usize,
    /// The replica's context limit.
    pub max_model_len: usize,
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Token strings, when `return_token_strs` was set.
    pub token_strs: Option<Vec<String>>,
}

/// vLLM's `DetokenizeResponse`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DetokenizeResponse {
    /// The decoded text.
    pub prompt: String,
}

/// Parses a `/tokenize` body: the completion form (`prompt`) if it has one, else the chat
/// form (`messages`).
pub fn parse_tokenize(body: &Value) -> Result<TokenizeParams, ApiError> {
    let obj = as_object(body)?;
    let model = parse_model(obj)?;
    let return_token_strs = get_bool(obj, "return_token_strs", false)?;
    let (text, add_special_tokens) = match get(obj, "prompt") {
        Some(Value::String(prompt)) => (prompt.clone(), get_bool(obj, "add_special_tokens", true)?),
        Some(_) => return Err(ApiError::field("prompt", "must be a string")),
        None if get(obj, "messages").is_some() => {
            let messages = parse_messages(obj)?;
            let add_generation_prompt = get_bool(obj, "add_generation_prompt", true)?;
            (
                chat_template::render(&messages, add_generation_prompt),
                get_bool(obj, "add_special_tokens", false)?,
            )
        }
        None => return Err(ApiError::field("prompt", "field required (or messages)")),
    };
    Ok(TokenizeParams { model, text, add_special_tokens, return_token_strs })
}

/// Parses a `/detokenize` body.
pub fn parse_detokenize(body: &Value) -> Result<DetokenizeParams, ApiError> {
    let obj = as_object(body)?;
    let model = parse_model(obj)?;
    let tokens = match get(obj, "tokens") {
        None => return Err(ApiError::field("tokens", "field required")),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_u64().and_then(|t| u32::try_from(t).ok()).ok_or_else(|| {
                    ApiError::field(
                        &format!("tokens[{i}]"),
                        "must be a token id (an integer from 0 to 2^32-1)",
                    )
                })
            })
            .collect::<Result<Vec<u32>, ApiError>>()?,
        Some(_) => return Err(ApiError::field("tokens", "must be a list of token ids")),
    };
    Ok(DetokenizeParams { model, tokens })
}

/// Longest token text the [`DecodeTable`] keeps. Regular built-in tokens are at most 6
/// characters; only special tokens (`<|…|>`) can be longer, and a huge one is not worth
/// keeping.
const MAX_TABLE_PIECE_BYTES: usize = 64;

/// The texts of the built-in tokenizer's ids that `/tokenize` has returned, shared by the
/// replicas of a fleet so that any of them decodes what another tokenized.
///
/// Memory is bounded by the id space: at most one text (of at most
/// `MAX_TABLE_PIECE_BYTES`) per id, about 152,700 ids. Two texts that hash to one id
/// keep the later one (the built-in tokenizer is approximate anyway).
#[derive(Debug, Default)]
pub struct DecodeTable {
    texts: Mutex<HashMap<u32, Box<str>>>,
}

impl DecodeTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Box<str>>> {
        self.texts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of ids it can decode.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it decodes nothing yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Token ids of `text` (and their strings when `with_strs`), as `/tokenize` answers them.
/// With the built-in tokenizer, remembers each token's text in `table` for `/detokenize`.
pub fn tokenize(
    tokenizer: &SimTokenizer,
    table: &DecodeTable,
    text: &str,
    add_special_tokens: bool,
    with_strs: bool,
) -> Result<(Vec<u32>, Option<Vec<String>>), ApiError> {
    match tokenizer {
        SimTokenizer::Approximate => {
            let mut ids = Vec::new();
            let mut strs = with_strs.then(Vec::new);
            let mut texts = table.lock();
            approx_tokenizer::for_each_token(text, |piece, id| {
                ids.push(id);
                if let Some(strs) = strs.as_mut() {
                    strs.push(piece.to_owned());
                }
                if piece.len() <= MAX_TABLE_PIECE_BYTES && texts.get(&id).map(|t| &**t) != Some(piece) {
                    texts.insert(id, piece.into());
                }
            });
            Ok((ids, strs))
        }
        SimTokenizer::HuggingFace(t) => {
            let enc = t
                .encode(text, add_special_tokens)
                .map_err(|e| ApiError::bad_request(format!("prompt: cannot be tokenized: {e}")))?;
            Ok((enc.get_ids().to_vec(), with_strs.then(|| enc.get_tokens().to_vec())))
        }
    }
}

/// The text of token ids, special tokens kept. An id the tokenizer cannot decode (out of
/// the vocabulary, or never returned by `/tokenize` for the built-in tokenizer) is a 400
/// naming its position.
pub fn detokenize(tokenizer: &SimTokenizer, table: &DecodeTable, ids: &[u32]) -> Result<String, ApiError> {
    match tokenizer {
        SimTokenizer::Approximate => {
            let texts = table.lock();
            let mut out = String::new();
            for (i, id) in ids.iter().enumerate() {
                let Some(text) = texts.get(id) else {
                    return Err(ApiError::field(
                        &format!("tokens[{i}]"),
                        format!(
                            "token id {id} is unknown to the built-in approximate tokenizer, which \
                             decodes only ids that /tokenize returned"
                        ),
                    ));
                };
                out.push_str(text);
            }
            Ok(out)
        }
        SimTokenizer::HuggingFace(t) => {
            if let Some((i, id)) = ids.iter().enumerate().find(|(_, &id)| t.id_to_token(id).is_none()) {
                return Err(ApiError::field(
                    &format!("tokens[{i}]"),
                    format!("token id {id} is out of the vocabulary"),
                ));
            }
            t.decode(ids, false).map_err(|e| ApiError::field("tokens", format!("cannot be decoded: {e}")))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_built_in_tokenizer_decodes_what_it_tokenized_and_nothing_else() {
        let table = DecodeTable::new();
        let t = SimTokenizer::Approximate;
        let text = "<|im_start|>user\nHello, internationalization!  Tabs\tand 日本語.";
        let (ids, strs) = tokenize(&t, &table, text, true, true).unwrap();
        assert_eq!(ids, approx_tokenizer::encode(text), "the same ids as the generation endpoints");
        assert_eq!(strs.unwrap().concat(), text);
        assert_eq!(detokenize(&t, &table, &ids).unwrap(), text);
        let unknown = (0..u32::MAX).find(|id| !ids.contains(id)).unwrap();
        let err = detokenize(&t, &table, &[ids[0], unknown]).unwrap_err();
        assert!(err.message.starts_with("tokens[1]: "), "{}", err.message);
        assert!(detokenize(&t, &table, &[]).unwrap().is_empty());
    }

    #[test]
    fn a_hugging_face_tokenizer_decodes_its_vocabulary_and_refuses_other_ids() {
        let json = r#"{
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2}, "unk_token": "[UNK]"}
        }"#;
        let t = SimTokenizer::HuggingFace(Box::new(json.parse().unwrap()));
        let table = DecodeTable::new();
        let (ids, strs) = tokenize(&t, &table, "hello world zebra", true, true).unwrap();
        assert_eq!(ids, vec![1, 2, 0]);
        assert_eq!(strs.unwrap(), vec!["hello", "world", "[UNK]"]);
        assert!(table.is_empty(), "a real tokenizer needs no table");
        assert_eq!(detokenize(&t, &table, &[1, 2]).unwrap(), "hello world");
        let err = detokenize(&t, &table, &[1, 3]).unwrap_err();
        assert!(err.message.starts_with("tokens[1]: token id 3"), "{}", err.message);
    }

    #[test]
    fn the_decode_table_is_bounded_by_distinct_tokens() {
        let table = DecodeTable::new();
        let t = SimTokenizer::Approximate;
        for _ in 0..3 {
            tokenize(&t, &table, " the cat the cat the cat", true, false).unwrap();
        }
        assert_eq!(table.len(), 2);
        let long_special = format!("<|{}|>", "x".repeat(200));
        let (ids, _) = tokenize(&t, &table, &long_special, true, false).unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(table.len(), 2, "a text over the size cap is not kept");
    }

    #[test]
    fn tokenize_requests_take_a_prompt_or_messages_with_vllm_defaults() {
        let p = parse_tokenize(&json!({"prompt": "hi"})).unwrap();
        assert_eq!((p.text.as_str(), p.add_special_tokens, p.return_token_strs), ("hi", true, false));
        let c =
            parse_tokenize(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).unwrap();
        assert_eq!(c.model.as_deref(), Some("m"));
        assert!(!c.add_special_tokens);
        assert!(c.text.ends_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"));
        let c = parse_tokenize(
            &json!({"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": false}),
        )
        .unwrap();
        assert!(c.text.ends_with("hi<|im_end|>\n"));
    }

    #[test]
    fn bad_tokenize_and_detokenize_requests_name_the_field() {
        for (body, field) in [
            (json!({}), "prompt"),
            (json!({"prompt": 5}), "prompt"),
            (json!({"prompt": "x", "add_special_tokens": "yes"}), "add_special_tokens"),
            (json!({"prompt": "x", "model": 1}), "model"),
            (json!({"messages": "x"}), "messages"),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (json!([1]), "the request body"),
        ] {
            let err = parse_tokenize(&body).unwrap_err();
            assert!(err.message.starts_with(field), "{body}: {}", err.message);
        }
        for (body, field) in [
            (json!({}), "tokens"),
            (json!({"tokens": "1 2"}), "tokens"),
            (json!({"tokens": [1, -2]}), "tokens[1]"),
            (json!({"tokens": [1.5]}), "tokens[0]"),
            (json!({"tokens": [4_294_967_296_u64]}), "tokens[0]"),
        ] {
            let err = parse_detokenize(&body).unwrap_err();
            assert!(err.message.starts_with(field), "{body}: {}", err.message);
        }
        assert_eq!(parse_detokenize(&json!({"tokens": [0, 7]})).unwrap().tokens, vec![0, 7]);
    }
}
