//! The chat template: Qwen2.5's ChatML framing, applied the way vLLM's chat endpoint does
//! before tokenizing, so that multi-turn conversations share their history as a prefix.
//!
//! ```text
//! <|im_start|>system\n{system}<|im_end|>\n
//! <|im_start|>{role}\n{content}<|im_end|>\n   (each message)
//! <|im_start|>assistant\n                      (generation prompt)
//! ```
//! Without a system message, Qwen2.5's default system prompt is inserted.

/// Qwen2.5's default system prompt.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// One chat message after content parts are flattened to text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, …
    pub role: String,
    /// The text content.
    pub content: String,
}

/// Renders messages to the prompt text the model sees.
pub fn render(messages: &[ChatMessage], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    if messages.first().is_none_or(|m| m.role != "system") {
        push_turn(&mut out, "system", DEFAULT_SYSTEM_PROMPT);
    }
    for m in messages {
        push_turn(&mut out, &m.role, &m.content);
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

fn push_turn(out: &mut String, role: &str, content: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(content);
    out.push_str("<|im_end|>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.to_owned(), content: content.to_owned() }
    }

    #[test]
    fn a_default_system_prompt_is_inserted() {
        let text = render(&[msg("user", "hi")], true);
        assert_eq!(
            text,
            format!(
                "<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n\
                 <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
            )
        );
    }

    #[test]
    fn a_follow_up_turn_extends_the_previous_prompt() {
        let first = render(&[msg("system", "S"), msg("user", "Q1")], false);
        let second = render(
            &[msg("system", "S"), msg("user", "Q1"), msg("assistant", "A1"), msg("user", "Q2")],
            false,
        );
        assert!(second.starts_with(&first));
    }
}
