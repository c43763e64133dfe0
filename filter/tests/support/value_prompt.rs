//! The earlier prompt extraction, through a whole `serde_json::Value`: the
//! oracle the typed extraction is checked against (`tests/prompt_oracle.rs`)
//! and the baseline it is measured against (`benches/prompt.rs`).

use prefixgate_filter::prompt::Endpoint;
use serde_json::Value;

/// The prompt text of `body` sent to `path`, read through a `Value`.
pub fn extract_prompt(path: &str, body: &[u8]) -> Option<String> {
    let endpoint = Endpoint::from_path(path)?;
    let json: Value = serde_json::from_slice(body).ok()?;
    let text = match endpoint {
        Endpoint::Completions => completion_prompt(json.get("prompt")?),
        Endpoint::ChatCompletions => chat_prompt(json.get("messages")?),
    };
    (!text.is_empty()).then_some(text)
}

fn completion_prompt(prompt: &Value) -> String {
    match prompt {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

fn chat_prompt(messages: &Value) -> String {
    let mut text = String::new();
    match messages {
        Value::Array(list) => {
            for message in list {
                match message {
                    Value::String(s) => text.push_str(s),
                    _ => {
                        if let Some(content) = message.get("content") {
                            push_content(content, &mut text);
                        }
                    }
                }
            }
        }
        Value::String(s) => text.push_str(s),
        _ => {}
    }
    text
}

fn push_content(content: &Value, out: &mut String) {
    match content {
        Value::String(s) => out.push_str(s),
        Value::Array(parts) => {
            for part in parts {
                match part {
                    Value::String(s) => out.push_str(s),
                    Value::Object(fields) => {
                        let is_text = fields.get("type").and_then(Value::as_str).is_none_or(|t| t == "text");
                        let string = |key| fields.get(key).and_then(Value::as_str);
                        if let (true, Some(s)) = (is_text, string("text").or_else(|| string("content"))) {
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
