//! What the lab computes once per distinct prompt rather than once per request: the
//! request body (kept, with `max_tokens` rewritten), the prompt the filter extracts from
//! it, the replica's token ids, the hash that seeds the output, and the block keys.
//!
//! A workload repeats its prompts (the pieces of a conversation dataset are sampled with
//! replacement once `--num-prompts` exceeds them, a warm-up request repeats the first one,
//! and every strategy of an invocation sends the same requests), and each of these is a
//! pure function of the prompt: the request body differs between two requests with the
//! same prompt only in `max_tokens`, a number the filter's reader skips and the
//! tokenizer never sees. They are most of a request's cost in the lab (a prompt is 1.5k
//! to 8k tokens), so remembering them is what makes the lab fast, and the results are
//! the same bit for bit. In debug builds every value taken from the memo is checked
//! against a fresh computation (here, in `Admission::new_request_hashed` and in
//! `EngineCore::add_request_keyed`), so the tests check the claim on every request.
//!
//! A prompt is named by the address of its shared text (`BenchRequest::prompt` for
//! completions, `messages` for chat), which the entry keeps alive so that the address
//! cannot be reused. One memo serves one workload on one fleet with one set of run flags
//! (the body's other fields, the tokenizer, the block size); the filter's
//! `max_prompt_chars`, which a grid may vary, is part of the key.

use std::borrow::Cow;
use std::sync::Arc;

use vllm_sim::block_hash::BlockHash;
use vllm_sim::fast_hash::FastMap;

use crate::load::client::BenchRequest;

/// The per-prompt results of one lab invocation (see the module doc).
#[derive(Debug, Default)]
pub struct PromptMemo {
    entries: FastMap<Key, Entry>,
}

/// A prompt's address and whether the chat messages (not the completions text) are meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    address: usize,
    chat: bool,
}

/// The remembered results for one prompt.
#[derive(Debug)]
pub struct Entry {
    /// Keeps the prompt's allocation, and so its address, alive.
    _text: Option<Arc<str>>,
    /// The same for chat messages.
    _messages: Option<Arc<[(String, String)]>>,
    /// The last request body sent with this prompt, taken out while a request uses it.
    body: Option<serde_json::Value>,
    /// The filter's extracted prompt, per `max_prompt_chars`.
    extracted: Vec<(usize, Option<Box<str>>)>,
    /// The replica's token ids of the prompt.
    ids: Option<Vec<u32>>,
    /// `vllm_sim::admission::prompt_hash` of the ids.
    hash: Option<u64>,
    /// The block keys of the ids, with the block size and cache salt they were made for.
    block_keys: Option<(usize, u64, Vec<BlockHash>)>,
}

impl PromptMemo {
    /// An empty memo.
    pub fn new() -> Self {
        Self::default()
    }

    /// Distinct prompts seen.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no prompt was seen yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `request`'s prompt as the chat endpoint (`chat`) or the completions
    /// endpoint reads it.
    pub fn entry(&mut self, request: &BenchRequest, chat: bool) -> &mut Entry {
        let address =
            if chat { request.messages.as_ptr() as usize } else { request.prompt.as_ptr() as usize };
        self.entries.entry(Key { address, chat }).or_insert_with(|| Entry {
            _text: (!chat).then(|| Arc::clone(&request.prompt)),
            _messages: chat.then(|| Arc::clone(&request.messages)),
            body: None,
            extracted: Vec::new(),
            ids: None,
            hash: None,
            block_keys: None,
        })
    }
}

impl Entry {
    /// A request body for this prompt asking for `max_tokens`: the last one with its
    /// `max_tokens` replaced (the only field in which two bodies for one prompt differ),
    /// else what `build` makes. Give it back with [`Self::keep_body`].
    pub fn body(&mut self, max_tokens: u64, build: impl FnOnce() -> serde_json::Value) -> serde_json::Value {
        match self.body.take() {
            Some(mut body) => {
                body["max_tokens"] = max_tokens.into();
                debug_assert_eq!(body, build(), "a reused body differs");
                body
            }
            None => build(),
        }
    }

    /// Keeps `body` for the next request with this prompt.
    pub fn keep_body(&mut self, body: serde_json::Value) {
        self.body = Some(body);
    }

    /// The prompt the filter extracts with a budget of `max_chars` characters; `extract`
    /// computes it the first time.
    pub fn extracted(&mut self, max_chars: usize, extract: impl FnOnce() -> Option<String>) -> Option<&str> {
        let i = match self.extracted.iter().position(|(m, _)| *m == max_chars) {
            Some(i) => {
                debug_assert_eq!(self.extracted[i].1.as_deref(), extract().as_deref(), "stale prompt");
                i
            }
            None => {
                self.extracted.push((max_chars, extract().map(String::into_boxed_str)));
                self.extracted.len() - 1
            }
        };
        self.extracted[i].1.as_deref()
    }

    /// The prompt's token ids, in a vector with room for `spare` more (the output the
    /// engine appends, so that it never copies the prompt to grow); `encode` computes them
    /// the first time (an error is not remembered).
    pub fn ids(
        &mut self,
        spare: usize,
        encode: impl FnOnce() -> Result<Vec<u32>, String>,
    ) -> Result<Vec<u32>, String> {
        if self.ids.is_none() {
            self.ids = Some(encode()?);
        } else {
            debug_assert_eq!(self.ids.as_ref(), encode().as_ref().ok(), "stale token ids");
        }
        let ids = self.ids.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len() + spare);
        out.extend_from_slice(ids);
        Ok(out)
    }

    /// The prompt's hash; `hash` computes it the first time.
    pub fn hash(&mut self, hash: impl FnOnce() -> u64) -> u64 {
        *self.hash.get_or_insert_with(hash)
    }

    /// The prompt's block keys for `block_size` and cache salt `salt`; `keys` computes
    /// them the first time (and again for another block size or salt).
    pub fn block_keys(
        &mut self,
        block_size: usize,
        salt: u64,
        keys: impl FnOnce() -> Vec<BlockHash>,
    ) -> Vec<BlockHash> {
        match &self.block_keys {
            Some((b, s, k)) if *b == block_size && *s == salt => k.clone(),
            _ => {
                let k = keys();
                self.block_keys = Some((block_size, salt, k.clone()));
                k
            }
        }
    }
}

/// An extracted prompt as the memo keeps it.
pub fn owned(prompt: Option<Cow<'_, str>>) -> Option<String> {
    prompt.map(Cow::into_owned)
}
