//! The prompt extraction before `max_prompt_chars` bounded it: typed
//! `serde_json` visitors over the whole body (every string a visitor sees is
//! unescaped whole first). Kept as the baseline that `benches/prompt.rs`
//! measures the bounded scanner against.
#![allow(dead_code)]

use prefixgate_filter::prompt::Endpoint;
use serde::de::{DeserializeSeed, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

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
            text.push(item.unwrap_or_default());
        }
        Ok(text)
    }
}

/// A value that is text only when it is a string: `None` for any other.
struct StringOnly;
seed_reads_any_value!(StringOnly, Option<Text<'de>>);

impl<'de> Visitor<'de> for StringOnly {
    type Value = Option<Text<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Text(Cow::Borrowed(s))))
    }
    fn visit_str<E: Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(Text(Cow::Owned(s.to_owned()))))
    }
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

/// One chat message: its `content` (the last one, if repeated); a bare
/// string is its own text; anything else has none.
struct Message;
seed_reads_any_value!(Message, Text<'de>);

impl<'de> Visitor<'de> for Message {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message")
    }

    strings_are_text!();
    skip!(scalars, arrays);

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

/// One part of a list content: a string, or the string `text` (else the
/// string `content`) of an object whose `type` is `"text"` or not a string
/// at all (images, audio and other typed parts are skipped).
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
        let (mut other_type, mut text, mut content) = (false, None, None);
        while let Some(key) = map.next_key_seed(KeyIs(&["type", "text", "content"]))? {
            match key {
                Some(0) => other_type = map.next_value_seed(NonTextType)?,
                Some(1) => text = map.next_value_seed(StringOnly)?,
                Some(_) => content = map.next_value_seed(StringOnly)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(if other_type { Text::default() } else { text.or(content).unwrap_or_default() })
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
