//! The bounded prompt extraction (`prefixgate_filter::prompt`) against the
//! earlier one through a whole `serde_json::Value` (`support/value_prompt.rs`),
//! on generated request bodies: OpenAI-shaped objects with the fields routing
//! reads and many it does not, repeated and escaped keys, every JSON type in
//! every position, and the same bodies truncated, corrupted or padded. With
//! a budget above any generated prompt the two agree; with a small one the
//! bounded extraction reads the head of the unbounded prompt.

#[path = "support/value_prompt.rs"]
mod value_prompt;

use prefixgate_filter::prompt::extract_prompt;
use proptest::prelude::*;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

const PATHS: &[&str] = &["/v1/completions", "/v1/chat/completions", "/v1/embeddings"];

/// A budget above any generated prompt (and `max_prompt_chars`' default).
const BUDGET: usize = 131_072;

/// A JSON document as written, not as modelled: objects keep repeated keys,
/// and a string may be written with every character `\u`-escaped.
#[derive(Clone, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String, bool),
    Array(Vec<Json>),
    Object(Vec<((String, bool), Json)>),
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => out.push_str(&i.to_string()),
            Json::Float(f) => out.push_str(&serde_json::to_string(f).unwrap_or_else(|_| "0.5".into())),
            Json::Str(s, escaped) => write_str(s, *escaped, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, ((key, escaped), value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str(key, *escaped, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(s: &str, escaped: bool, out: &mut String) {
    if escaped {
        out.push('"');
        for unit in s.encode_utf16() {
            out.push_str(&format!("\\u{unit:04x}"));
        }
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// Reads a document as written: repeated keys are kept, in order.
impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Written;
        impl<'de> Visitor<'de> for Written {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Json, E> {
                Ok(Json::Int(i))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Json, E> {
                Ok(i64::try_from(u).map_or(Json::Float(u as f64), Json::Int))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Json, E> {
                Ok(Json::Float(f))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::Str(s.to_string(), false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut fields = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Json>()? {
                    fields.push(((key, false), value));
                }
                Ok(Json::Object(fields))
            }
        }
        de.deserialize_any(Written)
    }
}

/// True when the order of keys may matter once reading stops at a budget:
/// an object routing reads in place repeats the key it reads (the budget
/// may be reached before the later key that replaces the text). `None` when
/// the body is not a document `Json` can hold.
fn order_sensitive(path: &str, body: &[u8]) -> Option<bool> {
    fn repeats(json: &Json, key: &str) -> bool {
        values(json, key).len() > 1
    }
    fn values<'j>(json: &'j Json, key: &str) -> Vec<&'j Json> {
        match json {
            Json::Object(fields) => fields.iter().filter(|((k, _), _)| k == key).map(|(_, v)| v).collect(),
            _ => Vec::new(),
        }
    }
    fn items(json: &Json) -> &[Json] {
        match json {
            Json::Array(items) => items,
            _ => &[],
        }
    }
    let doc: Json = serde_json::from_slice(body).ok()?;
    Some(match path {
        "/v1/completions" => repeats(&doc, "prompt"),
        "/v1/chat/completions" => {
            repeats(&doc, "messages")
                || values(&doc, "messages").into_iter().flat_map(items).any(|m| repeats(m, "content"))
        }
        _ => false,
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z ]{1,12}",
        "\\PC{0,8}",
        "[\"\\\\\n\t/]{1,4}",
        Just("text".to_string()),
        Just("image_url".to_string()),
    ]
}

fn key() -> impl Strategy<Value = (String, bool)> {
    let name = prop_oneof![
        3 => prop::sample::select(vec![
            "prompt", "messages", "content", "type", "text", "role", "model", "image_url", "max_tokens",
        ])
        .prop_map(str::to_string),
        1 => "[a-z]{0,6}",
    ];
    (name, prop::bool::weighted(0.1))
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        1 => Just(Json::Null),
        1 => any::<bool>().prop_map(Json::Bool),
        1 => any::<i64>().prop_map(Json::Int),
        1 => (-1e6f64..1e6).prop_map(Json::Float),
        4 => (text(), prop::bool::weighted(0.1)).prop_map(|(s, e)| Json::Str(s, e)),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(Json::Object),
        ]
    })
}

/// A chat message or content part in the shapes clients send, with noise.
fn chat_body() -> impl Strategy<Value = Json> {
    let part = prop_oneof![
        (text(), prop::sample::select(vec!["text", "image_url", "input_audio"])).prop_map(|(t, kind)| {
            Json::Object(vec![
                (("type".into(), false), Json::Str(kind.into(), false)),
                (("text".into(), false), Json::Str(t, false)),
            ])
        }),
        // Ray's reader takes a part's string `content` where it has no
        // string `text`; the keys in either order, the text maybe escaped.
        (text(), any::<bool>(), json()).prop_map(|(t, escaped, text_value)| {
            let mut fields = vec![(("content".into(), false), Json::Str(t, escaped))];
            if escaped {
                fields.insert(0, (("text".into(), false), text_value));
            }
            Json::Object(fields)
        }),
        json(),
    ];
    let content = prop_oneof![
        (text(), any::<bool>()).prop_map(|(t, e)| Json::Str(t, e)),
        prop::collection::vec(part, 0..4).prop_map(Json::Array),
        json(),
    ];
    let message = prop_oneof![
        4 => (content, prop::collection::vec((key(), json()), 0..3)).prop_map(|(c, extra)| {
            let mut fields = vec![
                (("role".into(), false), Json::Str("user".into(), false)),
                (("content".into(), false), c),
            ];
            fields.extend(extra);
            Json::Object(fields)
        }),
        1 => (text(), any::<bool>()).prop_map(|(t, e)| Json::Str(t, e)),
        1 => json(),
    ];
    (prop::collection::vec(message, 0..5), prop::collection::vec((key(), json()), 0..3)).prop_map(
        |(messages, mut extra)| {
            extra.insert(0, (("messages".into(), false), Json::Array(messages)));
            Json::Object(extra)
        },
    )
}

/// A completion body: a string or list prompt, with noise.
fn completion_body() -> impl Strategy<Value = Json> {
    let prompt = prop_oneof![
        (text(), any::<bool>()).prop_map(|(t, e)| Json::Str(t, e)),
        prop::collection::vec(json(), 0..5).prop_map(Json::Array),
        json(),
    ];
    (prompt, prop::collection::vec((key(), json()), 0..4)).prop_map(|(p, mut extra)| {
        extra.push((("prompt".into(), false), p));
        extra.reverse();
        Json::Object(extra)
    })
}

/// What may happen to a body on the way: nothing, or damage.
#[derive(Clone, Debug)]
enum Damage {
    None,
    Truncate(prop::sample::Index),
    Byte(prop::sample::Index, u8),
    Trailing(String),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        6 => Just(Damage::None),
        1 => any::<prop::sample::Index>().prop_map(Damage::Truncate),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Byte(i, b)),
        1 => prop::sample::select(vec![" ", "\n", "x", ",", "{}", "]"]).prop_map(|s| Damage::Trailing(s.into())),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    (prop_oneof![chat_body(), completion_body(), json()], damage()).prop_map(|(doc, damage)| {
        let mut text = String::new();
        doc.write(&mut text);
        let mut bytes = text.into_bytes();
        match damage {
            Damage::None => {}
            Damage::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
            Damage::Byte(i, b) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
            Damage::Byte(..) => {}
            Damage::Trailing(s) => bytes.extend_from_slice(s.as_bytes()),
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Wherever a `Value` reads the body, both extractions agree; where it
    /// refuses the body, the bounded one finds a prompt only in a syntactically
    /// valid JSON document (its skipped fields are checked for syntax only).
    #[test]
    fn bounded_extraction_matches_the_value_one(body in body(), path in prop::sample::select(PATHS)) {
        let typed = extract_prompt(path, &body, BUDGET).map(|p| p.into_owned());
        let valued = value_prompt::extract_prompt(path, &body);
        if serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
            prop_assert_eq!(typed, valued);
        } else {
            prop_assert_eq!(&valued, &None);
            if typed.is_some() {
                prop_assert!(serde_json::from_slice::<IgnoredAny>(&body).is_ok(), "{:?}", String::from_utf8_lossy(&body));
            }
        }
    }

    /// With a small budget, the prompt is at most that many characters, and
    /// it is the head of the unbounded prompt whenever there is one, unless
    /// the body's key order lets a later key replace text read before the
    /// budget was reached (then the budget was reached: the prompt is full).
    #[test]
    fn a_small_budget_reads_the_head_of_the_prompt(
        body in body(),
        path in prop::sample::select(PATHS),
        budget in 1usize..16,
    ) {
        let bounded = extract_prompt(path, &body, budget).map(|p| p.into_owned());
        let chars = bounded.as_deref().map_or(0, |b| b.chars().count());
        prop_assert!(chars <= budget);
        if let Some(whole) = extract_prompt(path, &body, BUDGET) {
            let head: String = whole.chars().take(budget).collect();
            if order_sensitive(path, &body) == Some(false) {
                prop_assert_eq!(bounded, Some(head));
            } else if bounded.as_ref() != Some(&head) {
                prop_assert_eq!(chars, budget, "{:?}", String::from_utf8_lossy(&body));
            }
        }
    }
}

/// Bodies written by hand for the corners of the object model.
#[test]
fn hand_written_corners_match_the_value_extraction() {
    let cases: &[(&str, &str)] = &[
        ("/v1/completions", r#"{"prompt":"a","prompt":"b"}"#),
        ("/v1/completions", r#"{"prompt":"a","prompt":1}"#),
        ("/v1/completions", r#"{"pr\u006fmpt":"escaped key"}"#),
        ("/v1/completions", r#"{"prompt":"tab\there \u00e9 \ud83d\ude00"}"#),
        ("/v1/completions", r#"["prompt"]"#),
        ("/v1/completions", r#""prompt""#),
        ("/v1/completions", r#"{"prompt":["a",{"text":"x"},["b"],"c",null]}"#),
        ("/v1/completions", r#"{"prompt":{"prompt":"nested"}}"#),
        ("/v1/completions", r#"  {"prompt":"ws"}  "#),
        ("/v1/completions", r#"{"prompt":"a"} {}"#),
        ("/v1/completions", r#"{"prompt":"a",}"#),
        ("/v1/chat/completions", r#"{"messages":"a bare string"}"#),
        ("/v1/chat/completions", r#"{"messages":[{"content":"a","content":"b"}]}"#),
        ("/v1/chat/completions", r#"{"messages":[{"content":"a"}],"messages":[{"content":"b"}]}"#),
        ("/v1/chat/completions", r#"{"messages":["s",[{"content":"x"}],{"content":{"text":"x"}}]}"#),
        ("/v1/chat/completions", r#"{"messages":[{"content":["s",{"text":"t"},{"type":null,"text":"n"}]}]}"#),
        ("/v1/chat/completions", r#"{"messages":[{"content":[{"type":"text","type":"image","text":"x"}]}]}"#),
        ("/v1/chat/completions", r#"{"messages":[{"content":[{"type":"image","type":"text","text":"x"}]}]}"#),
        ("/v1/chat/completions", r#"{"messages":[{"content":[{"text":"x","text":7}]}]}"#),
        ("/v1/chat/completions", r#"{"messages":[{"content":[{"type":"TEXT","text":"x"}]}]}"#),
        ("/v1/chat/completions", r#"{"messages":[{"content":[{"type":["text"],"text":"x"}]}]}"#),
    ];
    for (path, body) in cases {
        assert_eq!(
            extract_prompt(path, body.as_bytes(), BUDGET).map(|p| p.into_owned()),
            value_prompt::extract_prompt(path, body.as_bytes()),
            "{path} {body}"
        );
    }
}
