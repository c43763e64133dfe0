//! Benchmark prompts: ShareGPT conversations cut into growing pieces (so that
//! prompts share long prefixes, as multi-turn chat does), or a synthetic
//! generator with the same structure that needs no download.

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::io::Read;

/// Who said a turn, after normalising ShareGPT's many role names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `human`, `user`.
    User,
    /// `gpt`, `chatgpt`, `bard`, `bing`, `assistant`, `model`.
    Assistant,
}

/// One normalised turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    /// Speaker.
    pub role: Role,
    /// Text.
    pub text: String,
}

/// One conversation, turns alternating and starting with the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// The dataset's id (or its position).
    pub id: String,
    /// Alternating turns, user first.
    pub turns: Vec<Turn>,
}

/// A benchmark prompt: a conversation prefix up to an assistant turn.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// Conversation the piece comes from (pieces of one conversation share prefixes).
    pub conversation: usize,
    /// Turns in the piece.
    pub turns: Vec<Turn>,
}

impl Piece {
    /// The completions prompt: one `User: ...` / `Assistant: ...` line per turn.
    pub fn prompt_text(&self) -> String {
        let mut s = String::new();
        for t in &self.turns {
            s.push_str(match t.role {
                Role::User => "User: ",
                Role::Assistant => "Assistant: ",
            });
            s.push_str(&t.text);
            s.push('\n');
        }
        s
    }

    /// The chat messages (`role`, `content`) of the piece.
    pub fn messages(&self) -> Vec<(&'static str, &str)> {
        self.turns
            .iter()
            .map(|t| (if t.role == Role::User { "user" } else { "assistant" }, t.text.as_str()))
            .collect()
    }
}

/// Errors reading a dataset file.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file does not start with a JSON array.
    #[error("not a ShareGPT JSON array")]
    NotAnArray(#[source] serde_json::Error),
}

#[derive(Deserialize)]
struct RawConversation {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default, alias = "conversation")]
    conversations: Vec<RawTurn>,
}

#[derive(Deserialize)]
struct RawTurn {
    #[serde(default)]
    from: String,
    #[serde(default)]
    value: String,
}

/// Reads a ShareGPT file as a stream: every complete conversation with at least
/// `min_messages` messages in the file is kept, even when the file is huge or cut off
/// mid-way (a truncated tail is dropped).
pub fn read_sharegpt(reader: impl Read, min_messages: usize) -> Result<Vec<Conversation>, DatasetError> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let result = de.deserialize_seq(Collector { out: &mut out, min_messages });
    if out.is_empty() {
        if let Err(e) = result {
            if !e.is_eof() {
                return Err(DatasetError::NotAnArray(e));
            }
        }
    }
    Ok(out)
}

struct Collector<'a> {
    out: &'a mut Vec<Conversation>,
    min_messages: usize,
}

impl<'de> Visitor<'de> for Collector<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of ShareGPT conversations")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            match seq.next_element::<RawConversation>() {
                Ok(Some(raw)) if raw.conversations.len() < self.min_messages => {}
                Ok(Some(raw)) => {
                    let position = self.out.len();
                    if let Some(c) = normalise(raw, position) {
                        self.out.push(c);
                    }
                }
                Ok(None) => return Ok(()),
                // A truncated or malformed tail: keep what was complete.
                Err(_) => return Ok(()),
            }
        }
    }
}

fn role_of(from: &str) -> Option<Role> {
    match from.to_ascii_lowercase().as_str() {
        "human" | "user" => Some(Role::User),
        "gpt" | "chatgpt" | "bard" | "bing" | "assistant" | "model" => Some(Role::Assistant),
        _ => None, // `system` and unknown roles carry no dialogue turn
    }
}

/// Drops unknown roles and leading assistant turns, merges consecutive turns
/// of one speaker, so that turns alternate starting with the user.
fn normalise(raw: RawConversation, position: usize) -> Option<Conversation> {
    let mut turns: Vec<Turn> = Vec::new();
    for t in raw.conversations {
        let Some(role) = role_of(&t.from) else { continue };
        if turns.is_empty() && role == Role::Assistant {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => {
                last.text.push('\n');
                last.text.push_str(&t.value);
            }
            _ => turns.push(Turn { role, text: t.value }),
        }
    }
    let id = match raw.id {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => position.to_string(),
    };
    (turns.len() >= 2).then_some(Conversation { id, turns })
}

/// Cuts conversations into pieces "U1 A1", "U1 A1 U2 A2", ... in order.
pub fn pieces(conversations: &[Conversation]) -> Vec<Piece> {
    let mut out = Vec::new();
    for (i, c) in conversations.iter().enumerate() {
        for end in (2..=c.turns.len()).step_by(2) {
            out.push(Piece { conversation: i, turns: c.turns[..end].to_vec() });
        }
    }
    out
}

/// Deterministic conversations with a ShareGPT-like shape: long multi-turn
/// dialogues whose pieces are roughly 1.5k–8k tokens, built from a fixed
/// vocabulary so that runs are reproducible and need no download.
pub fn synthetic(conversations: usize, seed: u64) -> Vec<Conversation> {
    const WORDS: &[&str] = &[
        "the", "model", "cache", "prefix", "token", "request", "replica", "router", "latency", "batch",
        "memory", "block", "prompt", "answer", "question", "system", "python", "function", "data", "value",
        "error", "server", "client", "stream", "metric", "queue", "policy", "index", "vector", "graph",
        "user", "time", "result", "example", "code", "list", "string", "number", "file", "table",
    ];
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..conversations)
        .map(|c| {
            let pairs = rng.usize(3..10);
            let mut turns = Vec::with_capacity(pairs * 2);
            for _ in 0..pairs {
                for role in [Role::User, Role::Assistant] {
                    // Approximate tokens per turn; a word is about 1.3 tokens.
                    let tokens = match role {
                        Role::User => rng.usize(150..900),
                        Role::Assistant => rng.usize(300..1400),
                    };
                    let words = tokens * 10 / 13;
                    let mut text = String::with_capacity(words * 7);
                    for w in 0..words {
                        if w > 0 {
                            text.push(' ');
                        }
                        text.push_str(WORDS[rng.usize(..WORDS.len())]);
                    }
                    turns.push(Turn { role, text });
                }
            }
            Conversation { id: format!("synthetic-{c}"), turns }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = r#"[
      {"id": "a", "conversations": [
        {"from": "human", "value": "U1"}, {"from": "gpt", "value": "A1"},
        {"from": "human", "value": "U2"}, {"from": "chatgpt", "value": "A2"}]},
      {"id": "b", "conversations": [
        {"from": "gpt", "value": "starts with the assistant"},
        {"from": "system", "value": "ignored"},
        {"from": "user", "value": "U1"}, {"from": "bard", "value": "A1"}, {"from": "bing", "value": "A1b"}]},
      {"id": "c", "conversations": [{"from": "human", "value": "alone"}]},
      {"id": "d", "conversations": [{"from": "human", "value": "cut off"}, {"from": "gpt", "val"#;

    #[test]
    fn truncated_file_keeps_every_complete_conversation() {
        let convs = read_sharegpt(FIXTURE.as_bytes(), 0).unwrap();
        let ids: Vec<&str> = convs.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn conversations_with_fewer_messages_in_the_file_are_left_out() {
        // "a" has 4 messages, "b" 5 (one a system message, merged into 2 turns), "c" 1.
        let ids = |min| -> Vec<String> {
            read_sharegpt(FIXTURE.as_bytes(), min).unwrap().into_iter().map(|c| c.id).collect()
        };
        assert_eq!(ids(4), ["a", "b"]);
        assert_eq!(ids(5), ["b"], "messages are counted as the file has them, before normalising");
        assert!(ids(6).is_empty());
    }

    #[test]
    fn odd_roles_are_normalised() {
        let convs = read_sharegpt(FIXTURE.as_bytes(), 0).unwrap();
        let b = &convs[1];
        assert_eq!(b.turns.len(), 2);
        assert_eq!(b.turns[0], Turn { role: Role::User, text: "U1".into() });
        assert_eq!(b.turns[1], Turn { role: Role::Assistant, text: "A1\nA1b".into() });
    }

    #[test]
    fn pieces_grow_one_exchange_at_a_time() {
        let convs = read_sharegpt(FIXTURE.as_bytes(), 0).unwrap();
        let p = pieces(&convs);
        let texts: Vec<String> = p.iter().map(Piece::prompt_text).collect();
        assert_eq!(
            texts,
            [
                "User: U1\nAssistant: A1\n",
                "User: U1\nAssistant: A1\nUser: U2\nAssistant: A2\n",
                "User: U1\nAssistant: A1\nA1b\n",
            ]
        );
        assert_eq!(p[1].messages()[2], ("user", "U2"));
        assert!(p[1].prompt_text().starts_with(&p[0].prompt_text()));
    }

    #[test]
    fn not_an_array_is_an_error() {
        assert!(read_sharegpt(&b"{\"a\": 1}"[..], 0).is_err());
        assert!(read_sharegpt(&b""[..], 0).unwrap().is_empty());
    }

    #[test]
    fn synthetic_is_deterministic_and_multi_turn() {
        let a = synthetic(5, 1);
        assert_eq!(a, synthetic(5, 1));
        assert_ne!(a, synthetic(5, 2));
        assert!(a.iter().all(|c| c.turns.len() >= 6 && c.turns[0].role == Role::User));
    }
}
