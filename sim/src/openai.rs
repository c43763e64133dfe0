//! OpenAI-compatible wire types as vLLM serves them: request parsing with field-naming
//! validation, and the response, chunk and usage shapes of completions and chat.
//!
//! Requests are parsed from a `serde_json::Value` by hand so that every error names its
//! field; unknown fields are accepted and ignored, as vLLM does.

use serde::Serialize;
use serde_json::{Map, Value};

use super::api_error::ApiError;
use super::chat_template::{self, ChatMessage};

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/chat/completions`.
    Chat,
}

/// The prompt, as text to tokenize or as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    /// Text (for chat, the rendered template).
    Text(String),
    /// Token ids given by the client.
    Tokens(Vec<u32>),
}

/// The validated fields of a generation request that the simulator honours.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Requested model name, if given.
    pub model: Option<String>,
    /// Prompt.
    pub prompt: PromptInput,
    /// Output cap; `None` = endpoint default (16 for completions, the rest of the context
    /// for chat).
    pub max_tokens: Option<usize>,
    /// Minimum output tokens before a stop may happen.
    pub min_tokens: usize,
    /// Generate exactly `max_tokens` tokens.
    pub ignore_eos: bool,
    /// Answer as server-sent events.
    pub stream: bool,
    /// Send a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Put usage in every chunk (`stream_options.continuous_usage_stats`).
    pub continuous_usage: bool,
    /// Sampling seed: changes the generated text and natural output length.
    pub seed: Option<u64>,
    /// Cache salt: requests with different salts never share cached blocks.
    pub cache_salt: Option<String>,
}

/// A field that is present and not null.
pub(super) fn get<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

/// A boolean field, `default` when absent or null.
pub(super) fn get_bool(obj: &Map<String, Value>, field: &str, default: bool) -> Result<bool, ApiError> {
    match get(obj, field) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::field(field, "must be a boolean")),
    }
}

fn get_uint(obj: &Map<String, Value>, field: &str) -> Result<Option<u64>, ApiError> {
    match get(obj, field) {
        None => Ok(None),
        Some(v) => {
            v.as_u64().map(Some).ok_or_else(|| ApiError::field(field, "must be a non-negative integer"))
        }
    }
}

fn check_number(obj: &Map<String, Value>, field: &str, min: f64) -> Result<(), ApiError> {
    match get(obj, field) {
        None => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if x >= min => Ok(()),
            _ => Err(ApiError::field(field, format!("must be a number >= {min}"))),
        },
    }
}

/// The body as a JSON object.
pub(super) fn as_object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))
}

/// The optional `model` field.
pub(super) fn parse_model(obj: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match get(obj, "model") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::field("model", "must be a string")),
    }
}

/// Fields both endpoints share.
fn parse_common(
    obj: &Map<String, Value>,
    endpoint: Endpoint,
    prompt: PromptInput,
    max_tokens_field: &str,
) -> Result<GenerateParams, ApiError> {
    let model = parse_model(obj)?;
    let max_tokens = match get_uint(obj, max_tokens_field)? {
        Some(0) => return Err(ApiError::field(max_tokens_field, "must be at least 1")),
        other => other.map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
    };
    let min_tokens = get_uint(obj, "min_tokens")?.unwrap_or(0);
    let min_tokens = usize::try_from(min_tokens).unwrap_or(usize::MAX);
    if let Some(max) = max_tokens {
        if min_tokens > max {
            return Err(ApiError::field(
                "min_tokens",
                format!("must be less than or equal to max_tokens={max}, got {min_tokens}"),
            ));
        }
    }
    match get_uint(obj, "n")? {
        None | Some(1) => {}
        Some(_) => return Err(ApiError::field("n", "only n=1 is supported")),
    }
    match get_uint(obj, "best_of")? {
        None | Some(1) => {}
        Some(_) => return Err(ApiError::field("best_of", "only best_of=1 is supported")),
    }
    check_number(obj, "temperature", 0.0)?;
    check_number(obj, "top_p", 0.0)?;
    if get_bool(obj, "use_beam_search", false)? {
        return Err(ApiError::field("use_beam_search", "beam search is not supported"));
    }
    let stream = get_bool(obj, "stream", false)?;
    let (include_usage, continuous_usage) = match get(obj, "stream_options") {
        None => (false, false),
        Some(Value::Object(opts)) => {
            if !stream {
                return Err(ApiError::field(
                    "stream_options",
                    "Stream options can only be defined when `stream=True`.",
                ));
            }
            (
                get_bool(opts, "include_usage", true)
                    .map_err(|_| ApiError::field("stream_options.include_usage", "must be a boolean"))?,
                get_bool(opts, "continuous_usage_stats", false).map_err(|_| {
                    ApiError::field("stream_options.continuous_usage_stats", "must be a boolean")
                })?,
            )
        }
        Some(_) => return Err(ApiError::field("stream_options", "must be an object")),
    };
    let seed = match get(obj, "seed") {
        None => None,
        Some(v) => {
            Some(v.as_i64().map(|s| s as u64).ok_or_else(|| ApiError::field("seed", "must be an integer"))?)
        }
    };
    let cache_salt = match get(obj, "cache_salt") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(ApiError::field("cache_salt", "must be a non-empty string")),
    };
    Ok(GenerateParams {
        endpoint,
        model,
        prompt,
        max_tokens,
        min_tokens,
        ignore_eos: get_bool(obj, "ignore_eos", false)?,
        stream,
        include_usage: stream && include_usage,
        continuous_usage: stream && continuous_usage,
        seed,
        cache_salt,
    })
}

fn token_ids(v: &[Value]) -> Option<Vec<u32>> {
    v.iter().map(|x| x.as_u64().and_then(|t| u32::try_from(t).ok())).collect()
}

/// Parses a `/v1/completions` body.
pub fn parse_completion(body: &Value) -> Result<GenerateParams, ApiError> {
    let obj = as_object(body)?;
    const PROMPT_KINDS: &str =
        "must be a string, a list of one string, a list of token ids or a list of one list of token ids";
    let prompt = match get(obj, "prompt") {
        None => return Err(ApiError::field("prompt", "field required")),
        Some(Value::String(s)) => PromptInput::Text(s.clone()),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(s)] => PromptInput::Text(s.clone()),
            [Value::Array(ids)] => {
                PromptInput::Tokens(token_ids(ids).ok_or_else(|| ApiError::field("prompt", PROMPT_KINDS))?)
            }
            [] => return Err(ApiError::field("prompt", "must not be empty")),
            [_, _, ..] if items.iter().all(Value::is_number) => {
                PromptInput::Tokens(token_ids(items).ok_or_else(|| ApiError::field("prompt", PROMPT_KINDS))?)
            }
            [Value::Number(_)] => {
                PromptInput::Tokens(token_ids(items).ok_or_else(|| ApiError::field("prompt", PROMPT_KINDS))?)
            }
            [_, _, ..] => {
                return Err(ApiError::field(
                    "prompt",
                    "batched prompts (more than one) are not supported by vllm-sim",
                ))
            }
            _ => return Err(ApiError::field("prompt", PROMPT_KINDS)),
        },
        Some(_) => return Err(ApiError::field("prompt", PROMPT_KINDS)),
    };
    if get_bool(obj, "echo", false)? {
        return Err(ApiError::field("echo", "echo is not supported by vllm-sim"));
    }
    if get(obj, "logprobs").is_some() {
        return Err(ApiError::field("logprobs", "logprobs are not supported by vllm-sim"));
    }
    parse_common(obj, Endpoint::Completions, prompt, "max_tokens")
}

/// Text of a message's `content`: a string, or the `text` of its text parts in order.
fn message_text(content: Option<&Value>, i: usize) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let field = || format!("messages[{i}].content[{j}]");
                let p = part.as_object().ok_or_else(|| ApiError::field(&field(), "must be an object"))?;
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => match p.get("text") {
                        Some(Value::String(t)) => text.push_str(t),
                        _ => return Err(ApiError::field(&format!("{}.text", field()), "must be a string")),
                    },
                    Some(other) => {
                        return Err(ApiError::field(
                            &format!("{}.type", field()),
                            format!("content part type {other:?} is not supported by vllm-sim"),
                        ))
                    }
                    None => return Err(ApiError::field(&format!("{}.type", field()), "field required")),
                }
            }
            Ok(text)
        }
        Some(_) => Err(ApiError::field(
            &format!("messages[{i}].content"),
            "must be a string or a list of content parts",
        )),
    }
}

/// The `messages` of a chat body, content flattened to text.
pub(super) fn parse_messages(obj: &Map<String, Value>) -> Result<Vec<ChatMessage>, ApiError> {
    let messages = match get(obj, "messages") {
        None => return Err(ApiError::field("messages", "field required")),
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(ApiError::field("messages", "must not be empty")),
        Some(_) => return Err(ApiError::field("messages", "must be a list")),
    };
    let mut parsed = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let m =
            m.as_object().ok_or_else(|| ApiError::field(&format!("messages[{i}]"), "must be an object"))?;
        let role = match m.get("role") {
            Some(Value::String(r)) => r.clone(),
            Some(_) => return Err(ApiError::field(&format!("messages[{i}].role"), "must be a string")),
            None => return Err(ApiError::field(&format!("messages[{i}].role"), "field required")),
        };
        let content = message_text(m.get("content").filter(|v| !v.is_null()), i)?;
        parsed.push(ChatMessage { role, content });
    }
    Ok(parsed)
}

/// Parses a `/v1/chat/completions` body; the prompt is the rendered chat template.
pub fn parse_chat(body: &Value) -> Result<GenerateParams, ApiError> {
    let obj = as_object(body)?;
    let parsed = parse_messages(obj)?;
    match get(obj, "logprobs") {
        None | Some(Value::Bool(false)) => {}
        Some(_) => return Err(ApiError::field("logprobs", "logprobs are not supported by vllm-sim")),
    }
    let add_generation_prompt = get_bool(obj, "add_generation_prompt", true)?;
    let prompt = PromptInput::Text(chat_template::render(&parsed, add_generation_prompt));
    let field =
        if get(obj, "max_completion_tokens").is_some() { "max_completion_tokens" } else { "max_tokens" };
    parse_common(obj, Endpoint::Chat, prompt, field)
}

/// Token counts of a request, vLLM's `UsageInfo`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt + completion tokens.
    pub total_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Present only with `--enable-prompt-tokens-details`.
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: usize,
}

impl Usage {
    /// Usage of `prompt` + `completion` tokens, with cache details if enabled.
    pub fn new(prompt: usize, completion: usize, cached: Option<usize>) -> Self {
        Self {
            prompt_tokens: prompt,
            total_tokens: prompt + completion,
            completion_tokens: completion,
            prompt_tokens_details: cached.map(|cached_tokens| PromptTokensDetails { cached_tokens }),
        }
    }
}

/// A choice of a non-streaming completion.
#[derive(Debug, Serialize)]
pub struct CompletionChoice<'a> {
    /// Always 0 (n = 1).
    pub index: u32,
    /// Generated text.
    pub text: &'a str,
    /// Always null.
    pub logprobs: Option<()>,
    /// `stop` or `length`.
    pub finish_reason: Option<&'static str>,
    /// Always null.
    pub stop_reason: Option<()>,
    /// Always null.
    pub prompt_logprobs: Option<()>,
}

/// A non-streaming `/v1/completions` response.
#[derive(Debug, Serialize)]
pub struct CompletionResponse<'a> {
    /// `cmpl-…`.
    pub id: &'a str,
    /// `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Served model name.
    pub model: &'a str,
    /// One choice.
    pub choices: Vec<CompletionChoice<'a>>,
    /// Token counts.
    pub usage: Usage,
}

/// A choice of a streamed completion chunk.
#[derive(Debug, Serialize)]
pub struct CompletionChunkChoice<'a> {
    /// Always 0.
    pub index: u32,
    /// Text delta.
    pub text: &'a str,
    /// Always null.
    pub logprobs: Option<()>,
    /// Set on the last content chunk.
    pub finish_reason: Option<&'static str>,
    /// Always null.
    pub stop_reason: Option<()>,
}

/// A streamed `/v1/completions` chunk; `usage` is null except in the usage chunk (or in
/// every chunk with `continuous_usage_stats`).
#[derive(Debug, Serialize)]
pub struct CompletionChunk<'a> {
    /// `cmpl-…`.
    pub id: &'a str,
    /// `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Served model name.
    pub model: &'a str,
    /// Zero (usage chunk) or one choice.
    pub choices: Vec<CompletionChunkChoice<'a>>,
    /// Token counts, or null.
    pub usage: Option<Usage>,
}

/// The assistant message of a chat response.
#[derive(Debug, Serialize)]
pub struct ChatMessageOut<'a> {
    /// `assistant`.
    pub role: &'static str,
    /// Always null.
    pub reasoning_content: Option<()>,
    /// Generated text.
    pub content: &'a str,
    /// Always empty.
    pub tool_calls: [(); 0],
}

/// A choice of a non-streaming chat response.
#[derive(Debug, Serialize)]
pub struct ChatChoice<'a> {
    /// Always 0.
    pub index: u32,
    /// The message.
    pub message: ChatMessageOut<'a>,
    /// Always null.
    pub logprobs: Option<()>,
    /// `stop` or `length`.
    pub finish_reason: Option<&'static str>,
    /// Always null.
    pub stop_reason: Option<()>,
}

/// A non-streaming `/v1/chat/completions` response.
#[derive(Debug, Serialize)]
pub struct ChatResponse<'a> {
    /// `chatcmpl-…`.
    pub id: &'a str,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Served model name.
    pub model: &'a str,
    /// One choice.
    pub choices: Vec<ChatChoice<'a>>,
    /// Token counts.
    pub usage: Usage,
    /// Always null.
    pub prompt_logprobs: Option<()>,
}

/// The delta of a chat chunk; unset fields are omitted, as vLLM does.
#[derive(Debug, Serialize)]
pub struct ChatDelta<'a> {
    /// `assistant`, on the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Text delta.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

/// A choice of a chat chunk.
#[derive(Debug, Serialize)]
pub struct ChatChunkChoice<'a> {
    /// Always 0.
    pub index: u32,
    /// The delta.
    pub delta: ChatDelta<'a>,
    /// Always null.
    pub logprobs: Option<()>,
    /// Set on the last content chunk.
    pub finish_reason: Option<&'static str>,
    /// Present (null) on the last content chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<Option<()>>,
}

/// A streamed `/v1/chat/completions` chunk.
#[derive(Debug, Serialize)]
pub struct ChatChunk<'a> {
    /// `chatcmpl-…`.
    pub id: &'a str,
    /// `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Served model name.
    pub model: &'a str,
    /// Zero (usage chunk) or one choice.
    pub choices: Vec<ChatChunkChoice<'a>>,
    /// Omitted except in the usage chunk (or every chunk with `continuous_usage_stats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn completion_defaults_and_token_prompts() {
        let p = parse_completion(&json!({"model": "m", "prompt": "hi"})).unwrap();
        assert_eq!(p.max_tokens, None);
        assert!(!p.stream && !p.include_usage);
        let p = parse_completion(&json!({"prompt": [1, 2, 3]})).unwrap();
        assert_eq!(p.prompt, PromptInput::Tokens(vec![1, 2, 3]));
        let p = parse_completion(&json!({"prompt": [[4, 5]]})).unwrap();
        assert_eq!(p.prompt, PromptInput::Tokens(vec![4, 5]));
        let p = parse_completion(&json!({"prompt": ["x"], "stream": true, "stream_options": {}})).unwrap();
        assert!(p.include_usage, "include_usage defaults to true when stream_options is given");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"prompt": "x", "max_tokens": "ten"}), "max_tokens"),
            (json!({"prompt": "x", "max_tokens": 0}), "max_tokens"),
            (json!({"prompt": "x", "n": 2}), "n"),
            (json!({"prompt": "x", "temperature": -1}), "temperature"),
            (json!({"prompt": "x", "min_tokens": 9, "max_tokens": 3}), "min_tokens"),
            (json!({"prompt": "x", "stream_options": {"include_usage": true}}), "stream_options"),
            (json!({"prompt": 5}), "prompt"),
            (json!({"prompt": ["a", "b"]}), "prompt"),
            (json!({"max_tokens": 5}), "prompt"),
            (json!({"prompt": "x", "stream": "yes"}), "stream"),
        ];
        for (body, field) in cases {
            let e = parse_completion(&body).unwrap_err();
            assert_eq!(e.status.as_u16(), 400);
            assert!(e.message.starts_with(field), "{body}: {}", e.message);
        }
        let e = parse_chat(&json!({"messages": [{"content": "x"}]})).unwrap_err();
        assert!(e.message.starts_with("messages[0].role"), "{}", e.message);
        let e = parse_chat(&json!({"messages": []})).unwrap_err();
        assert!(e.message.starts_with("messages"), "{}", e.message);
        assert!(parse_completion(&json!([1])).is_err());
    }

    #[test]
    fn chat_flattens_text_parts_and_prefers_max_completion_tokens() {
        let p = parse_chat(&json!({
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            "max_tokens": 5, "max_completion_tokens": 7, "unknown_field": 1
        }))
        .unwrap();
        assert_eq!(p.max_tokens, Some(7));
        let PromptInput::Text(t) = p.prompt else { panic!() };
        assert!(t.contains("<|im_start|>user\nab<|im_end|>"));
    }

    #[test]
    fn chat_chunks_omit_unset_fields_and_completion_chunks_keep_usage_null() {
        let chat = ChatChunk {
            id: "chatcmpl-1",
            object: "chat.completion.chunk",
            created: 1,
            model: "m",
            choices: vec![ChatChunkChoice {
                index: 0,
                delta: ChatDelta { role: None, content: Some("x") },
                logprobs: None,
                finish_reason: None,
                stop_reason: None,
            }],
            usage: None,
        };
        let v = serde_json::to_value(&chat).unwrap();
        assert_eq!(v["choices"][0]["delta"], json!({"content": "x"}));
        assert!(v.get("usage").is_none());
        let c = CompletionChunk {
            id: "cmpl-1",
            object: "text_completion",
            created: 1,
            model: "m",
            choices: vec![],
            usage: None,
        };
        assert_eq!(serde_json::to_value(&c).unwrap()["usage"], Value::Null);
    }
}
