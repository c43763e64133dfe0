//! Prompt text of an OpenAI request body, extracted the way Ray's prefix-aware
//! router does it, so that routing keys match what replicas cache.

use serde_json::Value;

/// Which OpenAI endpoint a request targets; the path decides how the body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`: the prompt is the `prompt` field.
    Completions,
    /// `/v1/chat/completions`: the prompt is the text of every message.
    ChatCompletions,
}

impl Endpoint {
    /// The endpoint for a request path (query string ignored), if it carries a prompt.
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        match path.trim_end_matches('/') {
            "/v1/completions" => Some(Self::Completions),
            "/v1/chat/completions" => Some(Self::ChatCompletions),
            _ => None,
        }
    }
}

/// The prompt text of `body` sent to `path`, or `None` when there is none.
///
/// Never fails: an unknown path, a body that is not UTF-8 JSON, or a body
/// without a usable prompt all yield `None` and the request is routed by load.
/// An empty prompt is `None` too, so no caller divides by a zero length.
pub fn extract_prompt(path: &str, body: &[u8]) -> Option<String> {
    let endpoint = Endpoint::from_path(path)?;
    let json: Value = serde_json::from_slice(body).ok()?;
    let text = match endpoint {
        Endpoint::Completions => completion_prompt(json.get("prompt")?),
        Endpoint::ChatCompletions => chat_prompt(json.get("messages")?),
    };
    (!text.is_empty()).then_some(text)
}

/// `prompt` as a string, or a list of strings joined without separators.
/// Token-id prompts carry no text and yield an empty string.
fn completion_prompt(prompt: &Value) -> String {
    match prompt {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

/// The text of every message in order, concatenated without separators.
fn chat_prompt(messages: &Value) -> String {
    let mut text = String::new();
    match messages {
        Value::Array(list) => {
            for message in list {
                if let Some(content) = message.get("content") {
                    push_content(content, &mut text);
                }
            }
        }
        Value::String(s) => text.push_str(s),
        _ => {}
    }
    text
}

/// Appends the text of one message's `content`: a string, or the `text` of
/// each `{"type": "text"}` part of a list (images, audio and the rest skipped).
fn push_content(content: &Value, out: &mut String) {
    match content {
        Value::String(s) => out.push_str(s),
        Value::Array(parts) => {
            for part in parts {
                match part {
                    Value::String(s) => out.push_str(s),
                    Value::Object(fields) => {
                        let is_text = fields.get("type").and_then(Value::as_str).is_none_or(|t| t == "text");
                        if let (true, Some(Value::String(s))) = (is_text, fields.get("text")) {
                            out.push_str(s);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETIONS: &str = "/v1/completions";
    const CHAT: &str = "/v1/chat/completions";

    #[test]
    fn completion_string_prompt() {
        let body = br#"{"model":"m","prompt":"Hello world","max_tokens":5}"#;
        assert_eq!(extract_prompt(COMPLETIONS, body).as_deref(), Some("Hello world"));
    }

    #[test]
    fn completion_list_prompt_is_joined() {
        let body = br#"{"prompt":["Hello ","world", 7]}"#;
        assert_eq!(extract_prompt(COMPLETIONS, body).as_deref(), Some("Hello world"));
    }

    #[test]
    fn token_id_prompt_has_no_text() {
        assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":[1,2,3]}"#), None);
    }

    #[test]
    fn chat_concatenates_string_and_text_parts_in_order() {
        let body = br#"{"messages":[
            {"role":"system","content":"You are terse."},
            {"role":"user","content":[
                {"type":"text","text":"Look at "},
                {"type":"image_url","image_url":{"url":"http://x"}},
                {"type":"text","text":"this."}]},
            {"role":"assistant","content":null},
            {"role":"user","content":"Thanks"}]}"#;
        assert_eq!(extract_prompt(CHAT, body).as_deref(), Some("You are terse.Look at this.Thanks"));
    }

    #[test]
    fn image_only_chat_has_no_prompt() {
        let body =
            br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]}"#;
        assert_eq!(extract_prompt(CHAT, body), None);
    }

    #[test]
    fn empty_chat_has_no_prompt() {
        assert_eq!(extract_prompt(CHAT, br#"{"messages":[]}"#), None);
    }

    #[test]
    fn path_decides_the_field() {
        let body = br#"{"prompt":"p","messages":[{"role":"user","content":"m"}]}"#;
        assert_eq!(extract_prompt(COMPLETIONS, body).as_deref(), Some("p"));
        assert_eq!(extract_prompt(CHAT, body).as_deref(), Some("m"));
        assert_eq!(extract_prompt("/v1/embeddings", body), None);
        assert_eq!(extract_prompt("/v1/completions?x=1", body).as_deref(), Some("p"));
    }

    #[test]
    fn malformed_bodies_have_no_prompt() {
        assert_eq!(extract_prompt(COMPLETIONS, b"not json"), None);
        assert_eq!(extract_prompt(COMPLETIONS, &[0xff, 0xfe, 0x00]), None);
        assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt": 42}"#), None);
        assert_eq!(extract_prompt(COMPLETIONS, b""), None);
        assert_eq!(extract_prompt(CHAT, br#"{"messages": {"a": 1}}"#), None);
    }

    #[test]
    fn unicode_prompt_survives() {
        let body = r#"{"prompt":"héllo wörld ✓"}"#.as_bytes();
        assert_eq!(extract_prompt(COMPLETIONS, body).as_deref(), Some("héllo wörld ✓"));
    }
}
