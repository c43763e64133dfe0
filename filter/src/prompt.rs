//! Prompt text of an OpenAI request body, extracted the way Ray's prefix-aware
//! router does it, so that routing keys match what replicas cache.
//!
//! The body is read in one pass by typed visitors that look only at the
//! fields routing needs (`prompt`, or `messages[].content` and the parts
//! inside it). Every other field is skipped with [`IgnoredAny`], which checks
//! its syntax but allocates nothing, and a prompt held in one unescaped JSON
//! string is borrowed from the body rather than copied. (Reading the body into
//! a `serde_json::Value` would allocate every string, array and map of the
//! request and copy the prompt twice; `benches/prompt.rs` compares the two.)
//!
//! Semantics follow the JSON object model of `serde_json::Value`: a duplicated
//! key counts once, with its last value, and escaped keys are compared after
//! unescaping. Skipped fields are checked for JSON syntax only, so a body that
//! a `Value` would refuse for what lies in a field routing never reads (a
//! string with a lone UTF-16 surrogate escape or invalid UTF-8, a number
//! outside `f64`, nesting deeper than 128 levels) still yields its prompt,
//! and the replica judges the body for itself.

use serde::de::{DeserializeSeed, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

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
/// Never fails: an unknown path, a body that is not JSON, or a body without a
/// usable prompt all yield `None` and the request is routed by load. An empty
/// prompt is `None` too, so no caller divides by a zero length. The text is
/// borrowed from `body` when the prompt is one JSON string without escapes.
pub fn extract_prompt<'b>(path: &str, body: &'b [u8]) -> Option<Cow<'b, str>> {
    let endpoint = Endpoint::from_path(path)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let Text(text) = de.deserialize_map(Request(endpoint)).ok()?;
    // Characters after the object make the body invalid JSON: no prompt.
    de.end().ok()?;
    (!text.is_empty()).then_some(text)
}

/// Prompt text gathered in document order. It stays borrowed from the body
/// while it is a single unescaped string; a second piece makes it owned.
#[derive(Default)]
struct Text<'de>(Cow<'de, str>);

impl<'de> Text<'de> {
    fn push(&mut self, Text(piece): Text<'de>) {
        if self.0.is_empty() {
            self.0 = piece;
        } else if !piece.is_empty() {
            self.0.to_mut().push_str(&piece);
        }
    }
}

/// Makes a visitor its own seed, reading any JSON value with it.
macro_rules! seed_reads_any_value {
    ($visitor:ident, $value:ty) => {
        impl<'de> DeserializeSeed<'de> for $visitor {
            type Value = $value;

            fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
                de.deserialize_any(self)
            }
        }
    };
}

/// Visitor methods for the JSON values a visitor does not look into: each is
/// skipped (arrays and objects unread, with [`IgnoredAny`]) and yields
/// `Default::default()`. Pass the kinds to skip: `scalars`, `strings`,
/// `arrays`, `objects`.
macro_rules! skip {
    (scalars) => {
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (strings) => {
        fn visit_str<E: Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (arrays) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_seq(seq).map(|_| Default::default())
        }
    };
    (objects) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_map(map).map(|_| Default::default())
        }
    };
    ($($kind:ident),+) => {
        $(skip!($kind);)+
    };
}

/// Visitor methods taking a JSON string as text: borrowed from the body when
/// it has no escapes, unescaped into an owned string otherwise.
macro_rules! strings_are_text {
    () => {
        fn visit_borrowed_str<E: Error>(self, s: &'de str) -> Result<Self::Value, E> {
            Ok(Text(Cow::Borrowed(s)))
        }
        fn visit_str<E: Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Text(Cow::Owned(s.to_owned())))
        }
    };
}

/// The top-level request object: reads the field the endpoint names.
struct Request(Endpoint);

impl<'de> Visitor<'de> for Request {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let field = match self.0 {
            Endpoint::Completions => "prompt",
            Endpoint::ChatCompletions => "messages",
        };
        // A repeated key counts with its last value, as in a JSON object model.
        let mut text = Text::default();
        while let Some(key) = map.next_key_seed(KeyIs(&[field]))? {
            match (key, self.0) {
                (Some(_), Endpoint::Completions) => text = map.next_value_seed(Prompt)?,
                (Some(_), Endpoint::ChatCompletions) => text = map.next_value_seed(Messages)?,
                (None, _) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(text)
    }
}

/// Reads an object key and returns its index in the given names (`None` for
/// any other key) without allocating. Escaped keys are compared unescaped.
struct KeyIs<'n>(&'n [&'static str]);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| *name == key))
    }
}

/// `prompt` of a completion: a string, or a list whose strings are joined
/// without separators. Token ids and other values carry no text.
struct Prompt;
seed_reads_any_value!(Prompt, Text<'de>);

impl<'de> Visitor<'de> for Prompt {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a prompt")
    }

    strings_are_text!();
    skip!(scalars, objects);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut text = Text::default();
        while let Some(item) = seq.next_element_seed(StringOnly)? {
            text.push(item);
        }
        Ok(text)
    }
}

/// A value that counts only when it is a string.
struct StringOnly;
seed_reads_any_value!(StringOnly, Text<'de>);

impl<'de> Visitor<'de> for StringOnly {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    strings_are_text!();
    skip!(scalars, arrays, objects);
}

/// `messages` of a chat: the content of every message, in order and without
/// separators. (A bare string counts as the text itself.)
struct Messages;
seed_reads_any_value!(Messages, Text<'de>);

impl<'de> Visitor<'de> for Messages {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of messages")
    }

    strings_are_text!();
    skip!(scalars, objects);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut text = Text::default();
        while let Some(message) = seq.next_element_seed(Message)? {
            text.push(message);
        }
        Ok(text)
    }
}

/// One chat message: its `content` (the last one, if repeated); anything
/// that is not an object has none.
struct Message;
seed_reads_any_value!(Message, Text<'de>);

impl<'de> Visitor<'de> for Message {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message")
    }

    skip!(scalars, strings, arrays);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut content = Text::default();
        while let Some(key) = map.next_key_seed(KeyIs(&["content"]))? {
            match key {
                Some(_) => content = map.next_value_seed(Content)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(content)
    }
}

/// A message's `content`: a string, or a list of parts whose text is joined.
struct Content;
seed_reads_any_value!(Content, Text<'de>);

impl<'de> Visitor<'de> for Content {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("message content")
    }

    strings_are_text!();
    skip!(scalars, objects);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut text = Text::default();
        while let Some(part) = seq.next_element_seed(Part)? {
            text.push(part);
        }
        Ok(text)
    }
}

/// One part of a list content: a string, or the string `text` of an object
/// whose `type` is `"text"` or not a string at all (images, audio and other
/// typed parts are skipped).
struct Part;
seed_reads_any_value!(Part, Text<'de>);

impl<'de> Visitor<'de> for Part {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a content part")
    }

    strings_are_text!();
    skip!(scalars, arrays);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut other_type, mut text) = (false, Text::default());
        while let Some(key) = map.next_key_seed(KeyIs(&["type", "text"]))? {
            match key {
                Some(0) => other_type = map.next_value_seed(NonTextType)?,
                Some(_) => text = map.next_value_seed(StringOnly)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(if other_type { Text::default() } else { text })
    }
}

/// A part's `type`: true for a string other than `"text"`.
struct NonTextType;
seed_reads_any_value!(NonTextType, bool);

impl<'de> Visitor<'de> for NonTextType {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a part type")
    }

    skip!(scalars, arrays, objects);

    fn visit_str<E: Error>(self, kind: &str) -> Result<Self::Value, E> {
        Ok(kind != "text")
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

    #[test]
    fn an_unescaped_string_prompt_is_borrowed_from_the_body() {
        let body = br#"{"model":"m","prompt":"Hello world"}"#;
        assert!(matches!(extract_prompt(COMPLETIONS, body), Some(Cow::Borrowed("Hello world"))));
        let chat = br#"{"messages":[{"role":"user","content":"Hi"}]}"#;
        assert!(matches!(extract_prompt(CHAT, chat), Some(Cow::Borrowed("Hi"))));
        let escaped = br#"{"prompt":"a\nb"}"#;
        assert!(matches!(extract_prompt(COMPLETIONS, escaped), Some(Cow::Owned(ref s)) if s == "a\nb"));
    }

    #[test]
    fn repeated_keys_count_with_their_last_value() {
        let body = br#"{"prompt":"first","prompt":"second"}"#;
        assert_eq!(extract_prompt(COMPLETIONS, body).as_deref(), Some("second"));
        let parts = br#"{"messages":[{"content":[{"type":"text","type":"image_url","text":"x"}]}]}"#;
        assert_eq!(extract_prompt(CHAT, parts), None);
    }

    #[test]
    fn escaped_keys_are_compared_unescaped() {
        let body = br#"{"pr\u006fmpt":"p"}"#;
        assert_eq!(extract_prompt(COMPLETIONS, body).as_deref(), Some("p"));
    }

    #[test]
    fn only_an_object_carries_a_prompt() {
        assert_eq!(extract_prompt(COMPLETIONS, br#"["a prompt"]"#), None);
        assert_eq!(extract_prompt(COMPLETIONS, br#""a prompt""#), None);
        assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":"a"} {"prompt":"b"}"#), None);
        assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":"a""#), None);
    }

    #[test]
    fn skipped_fields_are_checked_for_syntax_only() {
        // A `Value` refuses each of these for a field routing never reads.
        let deep = format!(r#"{{"x":{}1{},"prompt":"p"}}"#, "[".repeat(200), "]".repeat(200));
        assert_eq!(extract_prompt(COMPLETIONS, deep.as_bytes()).as_deref(), Some("p"));
        let surrogate = br#"{"x":"\ud800","prompt":"p"}"#;
        assert_eq!(extract_prompt(COMPLETIONS, surrogate).as_deref(), Some("p"));
        let huge_number = br#"{"x":1e400,"prompt":"p"}"#;
        assert_eq!(extract_prompt(COMPLETIONS, huge_number).as_deref(), Some("p"));
        let not_utf8 = b"{\"x\":\"\xff\",\"prompt\":\"p\"}";
        assert_eq!(extract_prompt(COMPLETIONS, not_utf8).as_deref(), Some("p"));
        // Broken syntax anywhere still means no prompt.
        assert_eq!(extract_prompt(COMPLETIONS, br#"{"x":[1,,2],"prompt":"p"}"#), None);
        assert_eq!(extract_prompt(COMPLETIONS, br#"{"x":"a\qb","prompt":"p"}"#), None);
        // And the prompt itself must be valid text.
        assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":"\ud800"}"#), None);
        assert_eq!(extract_prompt(COMPLETIONS, b"{\"prompt\":\"\xff\"}"), None);
    }

    #[test]
    fn a_two_mib_prompt_among_other_fields_is_read_whole() {
        let prompt = "token ".repeat(2 << 20 >> 3);
        let tools = r#"{"type":"function","function":{"name":"f","parameters":{"a":[1,2.5,true,null]}}}"#;
        let body = format!(
            r#"{{"model":"m","tools":[{tools},{tools}],"messages":[{{"role":"system","content":"sys"}},{{"role":"user","content":[{{"type":"text","text":"{prompt}"}}]}}],"max_tokens":8}}"#
        );
        let text = extract_prompt(CHAT, body.as_bytes());
        assert_eq!(text.as_deref().map(str::len), Some(3 + prompt.len()));
        assert!(text.is_some_and(|t| t.starts_with("systoken ") && t.ends_with("token ")));
    }
}
