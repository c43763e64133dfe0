//! A generated corpus of adversarial request bodies: shapes that cost a
//! whole-string JSON reader far more than their size suggests (escapes,
//! many tiny values, deep nesting, huge skipped values), each built at any
//! size. No dependencies, so that every user can take it as a library: the
//! filter's `tests/adversarial_bodies.rs` (natively) and `benches/prompt.rs`,
//! the host's `tests/adversarial_bodies.rs` (through the proxy) and the soak
//! (`prefixgate-tests`' `soak`, bodies from other clients under load).

/// One adversarial body and the prompt an unbounded reader finds in it.
#[derive(Clone, Debug)]
pub struct Shape {
    /// What the body is made of.
    pub name: &'static str,
    /// The request path it is sent to.
    pub path: &'static str,
    /// The body, at most the size asked for.
    pub body: Vec<u8>,
    /// The whole prompt text of the body.
    pub prompt: String,
    /// For each element of the lists routing reads (messages, content
    /// parts, prompt strings), in document order, the characters of prompt
    /// text read once it is read (a message counts before its content); empty
    /// for a shape with only a few elements.
    pub element_chars: Vec<usize>,
    /// The most deeply nested value routing skips.
    pub deepest: DeepestSkip,
}

/// Where a body's most deeply nested skipped value is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeepestSkip {
    /// Its nesting depth (0: nothing nested is skipped).
    pub depth: usize,
    /// Characters of prompt text that come before it.
    pub chars_before: usize,
}

impl Shape {
    /// The prompt a reader takes from this body when it stops at
    /// `max_chars` characters, after `max_elements` list elements, or at a
    /// skipped value nested deeper than `max_nesting`; `None` when no text
    /// comes before it stops.
    pub fn expected_prompt(
        &self,
        max_chars: usize,
        max_elements: usize,
        max_nesting: usize,
    ) -> Option<String> {
        let by_elements = match max_elements.checked_sub(1) {
            Some(last) if self.element_chars.len() > max_elements => self.element_chars[last],
            Some(_) => usize::MAX,
            None => 0,
        };
        let by_nesting =
            if self.deepest.depth > max_nesting { self.deepest.chars_before } else { usize::MAX };
        let prompt: String = self.prompt.chars().take(max_chars.min(by_elements).min(by_nesting)).collect();
        (!prompt.is_empty()).then_some(prompt)
    }
}

/// Sizes of the corpus: 1, 2, 3 and 4 MiB (4 MiB is `max_body_bytes`' default).
pub const SIZES: [usize; 4] = [1 << 20, 2 << 20, 3 << 20, 4 << 20];

const COMPLETIONS: &str = "/v1/completions";
const CHAT: &str = "/v1/chat/completions";

/// Room left at the end of a body for what closes it.
const TAIL: usize = 128;

/// Every shape at `size` bytes (or just under).
///
/// # Panics
///
/// When `size` is too small for a shape's fixed text (under 1 KiB): the
/// corpus is built from constants, never from input.
pub fn corpus(size: usize) -> Vec<Shape> {
    vec![
        escaped_newlines(size),
        unicode_escapes(size),
        plain_prompt(size),
        many_prompt_strings(size),
        tiny_messages(size),
        many_parts(size),
        deep_skipped_field(size),
        deep_messages(size),
        huge_skipped_field(size),
        huge_number(size),
        huge_escaped_key(size),
    ]
}

/// Every shape at every size of [`SIZES`].
pub fn full_corpus() -> Vec<(usize, Shape)> {
    SIZES.iter().flat_map(|&size| corpus(size).into_iter().map(move |shape| (size, shape))).collect()
}

/// Repeats `unit` (JSON text standing for `text`) until `body` nearly fills
/// `size`, adding `text` to `prompt` for each.
fn fill(body: &mut String, prompt: &mut String, size: usize, unit: &str, text: &str) {
    while body.len() + unit.len() + TAIL <= size {
        body.push_str(unit);
        prompt.push_str(text);
    }
}

fn shape(name: &'static str, path: &'static str, body: String, prompt: String, size: usize) -> Shape {
    assert!(body.len() <= size, "{name}: {} bytes over {size}", body.len());
    Shape {
        name,
        path,
        body: body.into_bytes(),
        prompt,
        element_chars: Vec::new(),
        deepest: DeepestSkip::default(),
    }
}

/// Records each element's prompt characters for [`Shape::element_chars`].
fn count_elements(chars: &mut Vec<usize>, added: &[usize]) {
    for a in added {
        let before = chars.last().copied().unwrap_or(0);
        chars.push(before + a);
    }
}

/// A completion whose prompt is one string of escaped newlines.
pub fn escaped_newlines(size: usize) -> Shape {
    let (mut body, mut prompt) = (String::from(r#"{"model":"m","prompt":""#), String::new());
    fill(&mut body, &mut prompt, size, r"\n", "\n");
    body.push_str(r#"","max_tokens":1}"#);
    shape("escaped_newlines", COMPLETIONS, body, prompt, size)
}

/// A completion whose prompt is one string of `\u` escapes: a BMP character
/// and a surrogate pair, over and over.
pub fn unicode_escapes(size: usize) -> Shape {
    let (mut body, mut prompt) = (String::from(r#"{"model":"m","prompt":""#), String::new());
    fill(&mut body, &mut prompt, size, r"\u00e9\ud83d\ude00", "é😀");
    body.push_str(r#"","max_tokens":1}"#);
    shape("unicode_escapes", COMPLETIONS, body, prompt, size)
}

/// A completion whose prompt is one plain string (no escapes).
pub fn plain_prompt(size: usize) -> Shape {
    let (mut body, mut prompt) = (String::from(r#"{"model":"m","prompt":""#), String::new());
    fill(&mut body, &mut prompt, size, "token ", "token ");
    body.push_str(r#"","max_tokens":1}"#);
    shape("plain_prompt", COMPLETIONS, body, prompt, size)
}

/// A completion whose prompt is a list of many one-character strings.
pub fn many_prompt_strings(size: usize) -> Shape {
    let (mut body, mut prompt) = (String::from(r#"{"model":"m","prompt":["s""#), String::from("s"));
    fill(&mut body, &mut prompt, size, r#","a",7,"b""#, "ab");
    body.push_str(r#"],"max_tokens":1}"#);
    let mut elements = Vec::new();
    count_elements(&mut elements, &[1]);
    for _ in 0..(prompt.len() - 1) / 2 {
        count_elements(&mut elements, &[1, 0, 1]);
    }
    Shape { element_chars: elements, ..shape("many_prompt_strings", COMPLETIONS, body, prompt, size) }
}

/// A chat of tens of thousands of tiny messages.
pub fn tiny_messages(size: usize) -> Shape {
    let (mut body, mut prompt) =
        (String::from(r#"{"model":"m","messages":[{"role":"system","content":"s"}"#), String::from("s"));
    let mut elements = Vec::new();
    count_elements(&mut elements, &[1]);
    let mut i = 0u64;
    while body.len() + 40 + TAIL <= size {
        let text = format!("{} ", i % 10_000);
        body.push_str(&format!(r#",{{"role":"user","content":"{text}"}}"#));
        prompt.push_str(&text);
        count_elements(&mut elements, &[text.len()]);
        i += 1;
    }
    body.push_str(r#"],"max_tokens":1}"#);
    Shape { element_chars: elements, ..shape("tiny_messages", CHAT, body, prompt, size) }
}

/// One chat message whose list content has many parts, text and image.
pub fn many_parts(size: usize) -> Shape {
    let (mut body, mut prompt) =
        (String::from(r#"{"model":"m","messages":[{"role":"user","content":["s""#), String::from("s"));
    fill(
        &mut body,
        &mut prompt,
        size,
        r#",{"type":"text","text":"t"},{"type":"image_url","image_url":{"url":"u"}}"#,
        "t",
    );
    body.push_str(r#"]}],"max_tokens":1}"#);
    // The message, its first string, then a text and an image part each time.
    let mut elements = Vec::new();
    count_elements(&mut elements, &[0, 1]);
    for _ in 1..prompt.len() {
        count_elements(&mut elements, &[1, 0]);
    }
    Shape { element_chars: elements, ..shape("many_parts", CHAT, body, prompt, size) }
}

/// Nesting as deep as the body allows inside a skipped field, then the prompt.
pub fn deep_skipped_field(size: usize) -> Shape {
    let depth = size.saturating_sub(TAIL) / 2;
    let body =
        format!(r#"{{"x":{}{},"prompt":"after the deep field"}}"#, "[".repeat(depth), "]".repeat(depth));
    Shape {
        deepest: DeepestSkip { depth, chars_before: 0 },
        ..shape("deep_skipped_field", COMPLETIONS, body, "after the deep field".into(), size)
    }
}

/// A chat whose first message is nested as deep as the body allows (half
/// arrays, half objects), then a message with content.
pub fn deep_messages(size: usize) -> Shape {
    let depth = size.saturating_sub(TAIL) / 8;
    let body = format!(
        r#"{{"messages":[{}{}1{}{},{{"content":"after the deep message"}}]}}"#,
        "[".repeat(depth),
        r#"{"a":"#.repeat(depth),
        "}".repeat(depth),
        "]".repeat(depth)
    );
    Shape {
        deepest: DeepestSkip { depth: 2 * depth, chars_before: 0 },
        ..shape("deep_messages", CHAT, body, "after the deep message".into(), size)
    }
}

/// A huge skipped string full of escapes before the prompt.
pub fn huge_skipped_field(size: usize) -> Shape {
    let (mut body, mut ignored) = (String::from(r#"{"model":"m","tools":""#), String::new());
    fill(&mut body, &mut ignored, size, r"\n\u00e9\ud83d\ude00", "");
    body.push_str(r#"","prompt":"after the huge field"}"#);
    shape("huge_skipped_field", COMPLETIONS, body, "after the huge field".into(), size)
}

/// A number of millions of digits before the prompt.
pub fn huge_number(size: usize) -> Shape {
    let digits = size.saturating_sub(TAIL) / 2;
    let body = format!(
        r#"{{"seed":-1{}.5e+{},"prompt":"after the number"}}"#,
        "0".repeat(digits),
        "9".repeat(digits)
    );
    shape("huge_number", COMPLETIONS, body, "after the number".into(), size)
}

/// A top-level key of millions of `\u` escapes (compared with `prompt`
/// unescaped), before the prompt.
pub fn huge_escaped_key(size: usize) -> Shape {
    let (mut body, mut ignored) = (String::from(r#"{"prompt"#), String::new());
    fill(&mut body, &mut ignored, size, r"\u0070", "");
    body.push_str(r#"":1,"prompt":"after the key"}"#);
    shape("huge_escaped_key", COMPLETIONS, body, "after the key".into(), size)
}
