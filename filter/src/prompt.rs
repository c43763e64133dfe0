//! Prompt text of an OpenAI request body, extracted the way Ray's prefix-aware
//! router does it, so that routing keys match what replicas cache, and never
//! more of it than routing uses.
//!
//! # A bounded pull reader
//!
//! Any client can send a body of up to `max_body_bytes` (4 MiB), and reading
//! it runs inside a host callback with a deadline (20 ms in prefixgate). So
//! [`extract_prompt`] takes a budget of characters (`max_prompt_chars`, the
//! most the prefix index uses) and stops reading the moment the prompt text
//! reaches it, whatever the body's shape, or once it has read
//! [`MAX_PROMPT_ELEMENTS`] messages, content parts and prompt strings (a
//! body of tiny parts never fills the budget), or at a skipped value nested
//! deeper than [`MAX_NESTING`] levels. A body costs at most one linear
//! scan of its bytes (plus a second scan of a content part's `text` that
//! reaches the budget, see `read::part`), and the only memory it takes is
//! the prompt text (at most the budget) and one bit per level of nesting
//! beyond 64 inside a skipped value.
//!
//! The reader is a small purpose-built scanner over the body's bytes:
//! `read` follows the few paths routing reads (top-level object →
//! `prompt`, or `messages[].content` → a string, or a list of strings and
//! `{type, text}` parts), `text` gathers the characters up to the budget,
//! `scan` holds the cursor and the string decoder, and `skip` the
//! syntax-only skip of every other value. Nothing recurses, so deep nesting costs no stack.
//!
//! Why not a library. `serde_json` (the reader before this one, kept as the
//! baseline of `benches/prompt.rs`) unescapes a whole string before a
//! visitor sees it and cannot stop inside one: a 3 MiB prompt of escaped
//! `\n` cost more than the deadline in wasm. `struson` (0.7, a well-kept
//! streaming reader) can read a string through `next_string_reader` and stop,
//! but it reads byte by byte through an `io::Read` buffer, keeps a stack
//! entry (and by default a JSON path entry) per level of nesting, limits
//! nesting to 128 by default, panics on misuse, and validates UTF-8 and
//! surrogates in every skipped string. So it would refuse bodies that
//! routing reads today (see below), and it would add two proc-macro crates
//! (`duplicate`, `strum`) to the build and its reader to the module. The grammar needed here is small and the oracle proptest
//! (`tests/prompt_oracle.rs`) pins it down, so a scanner of a few hundred
//! lines is the smaller and faster choice.
//!
//! # Semantics
//!
//! Under the budget, reading follows the JSON object model of
//! `serde_json::Value` (and of the `serde_json` reader before this one): a
//! repeated key counts with its last value, and escaped keys are compared
//! after unescaping. Skipped fields are checked for JSON syntax only, so a
//! body that a `Value` would refuse for what lies in a field routing never
//! reads (a string with a lone UTF-16 surrogate escape or invalid UTF-8, a
//! number outside `f64`, nesting deeper than `serde_json`'s 128 levels, up
//! to [`MAX_NESTING`]) still yields its prompt, and the replica judges the
//! body for itself. Keys are skipped the same way once they cannot be a name
//! routing reads (so a key that is not valid text is no such name). The
//! prompt text must be valid text; characters after the object mean no
//! prompt.
//!
//! When the budget (of characters or of elements) is reached, reading stops
//! there, so nothing after that point is seen: the prompt is the text read
//! so far (at most the first `max_chars` characters, in document order),
//! even if the body later repeats a key that would replace it
//! (`{"prompt":"<long>","prompt":"short"}`, or a second `messages` or
//! message `content`), or is not valid JSON further on (the rest of the
//! prompt string included: it is not checked for valid text either). The
//! replica still receives and judges the whole body; routing only uses the
//! head of the prompt. A content part needs no such caveat: whatever the
//! order of its keys, its `type` decides whether its `text` counts. Under
//! the budget, the result is the unbounded one.

mod read;
mod scan;
mod skip;
mod text;

use scan::{Halt, Scanner};
use std::borrow::Cow;
use text::Text;

/// Most elements of the lists routing reads (messages, content parts and
/// prompt strings, all lists together) read from one body; past them the
/// text read so far is the prompt, as when it reaches `max_chars`.
///
/// The character budget bounds what a body's text costs, but not its
/// structure: a 4 MiB chat of 116,000 one-character parts never reaches it,
/// and scanning all of it took close to prefixgate's 20 ms callback deadline
/// in wasm. 16,384 elements is far beyond real requests (a long agent
/// conversation has hundreds of messages) and bounds that scan to about a
/// seventh of the body in that shape.
pub const MAX_PROMPT_ELEMENTS: usize = 16_384;

/// Deepest nesting of a skipped value; a deeper one ends reading, and the
/// text read before it is the prompt (see `skip`'s module doc: no replica
/// parses such a body, and skipping it was the costliest shape left).
pub const MAX_NESTING: usize = 1_024;

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

/// The first `max_chars` characters of the prompt text of `body` sent to
/// `path`, or `None` when there is none.
///
/// Never fails: an unknown path, a body that is not JSON, or a body without a
/// usable prompt all yield `None` and the request is routed by load. An empty
/// prompt is `None` too, so no caller divides by a zero length. The text is
/// borrowed from `body` when the prompt is one JSON string without escapes.
/// Reading stops once `max_chars` characters are read (see the module doc
/// for what that leaves unseen); the cost is at most one linear scan of
/// `body`.
pub fn extract_prompt<'b>(path: &str, body: &'b [u8], max_chars: usize) -> Option<Cow<'b, str>> {
    let endpoint = Endpoint::from_path(path)?;
    let mut scanner = Scanner::new(body, MAX_PROMPT_ELEMENTS);
    let mut text = Text::new(max_chars);
    match read::request(&mut scanner, &mut text, endpoint) {
        // Characters after the object make the body invalid JSON: no prompt.
        Ok(()) if !scanner.at_end() => None,
        Ok(()) | Err(Halt::Full) => text.into_prompt(),
        Err(Halt::Invalid) => None,
    }
}

#[cfg(test)]
mod tests;
