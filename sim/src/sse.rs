//! Streaming responses: engine events → vLLM's server-sent events (`data: {…}\n\n` chunks,
//! an optional usage chunk, then `data: [DONE]\n\n`), as an HTTP body polled by hyper.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use super::api_error::ApiError;
use super::engine::{Finished, RequestEvent};
use super::engine_thread::AbortOnDrop;
use super::openai::{
    ChatChunk, ChatChunkChoice, ChatDelta, CompletionChunk, CompletionChunkChoice, Endpoint, Usage,
};

/// Identity and options of one streamed response.
#[derive(Debug, Clone)]
pub struct StreamEncoder {
    /// Endpoint (chunk shape).
    pub endpoint: Endpoint,
    /// Response id (`cmpl-…` / `chatcmpl-…`).
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// Served model name.
    pub model: String,
    /// Send a usage chunk before `[DONE]`.
    pub include_usage: bool,
    /// Put usage in every chunk.
    pub continuous_usage: bool,
    /// Add `prompt_tokens_details.cached_tokens` to usage.
    pub prompt_tokens_details: bool,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens served from cache.
    pub cached_tokens: usize,
    /// Tokens streamed so far.
    pub completion_tokens: usize,
    /// Whether the chat role chunk went out.
    pub sent_role: bool,
}

fn push_event(out: &mut Vec<u8>, json: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, json).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

impl StreamEncoder {
    fn usage(&self) -> Usage {
        Usage::new(
            self.prompt_tokens,
            self.completion_tokens,
            self.prompt_tokens_details.then_some(self.cached_tokens),
        )
    }

    fn running_usage(&self) -> Option<Usage> {
        self.continuous_usage.then(|| self.usage())
    }

    /// Appends the event(s) for one generated token.
    pub fn token(&mut self, text: &str, finish: Option<Finished>, out: &mut Vec<u8>) {
        self.completion_tokens += 1;
        let finish_reason = finish.map(|f| f.reason.as_str());
        match self.endpoint {
            Endpoint::Completions => push_event(
                out,
                &CompletionChunk {
                    id: &self.id,
                    object: "text_completion",
                    created: self.created,
                    model: &self.model,
                    choices: vec![CompletionChunkChoice {
                        index: 0,
                        text,
                        logprobs: None,
                        finish_reason,
                        stop_reason: None,
                    }],
                    usage: self.running_usage(),
                },
            ),
            Endpoint::Chat => {
                if !self.sent_role {
                    self.sent_role = true;
                    let usage = self.continuous_usage.then(|| Usage::new(self.prompt_tokens, 0, None));
                    push_event(out, &self.chat_chunk(Some("assistant"), "", None, usage));
                }
                let usage = self.running_usage();
                push_event(out, &self.chat_chunk(None, text, finish_reason, usage));
            }
        }
    }

    fn chat_chunk<'a>(
        &'a self,
        role: Option<&'static str>,
        content: &'a str,
        finish_reason: Option<&'static str>,
        usage: Option<Usage>,
    ) -> ChatChunk<'a> {
        ChatChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![ChatChunkChoice {
                index: 0,
                delta: ChatDelta { role, content: Some(content) },
                logprobs: None,
                finish_reason,
                stop_reason: finish_reason.map(|_| None),
            }],
            usage,
        }
    }

    /// Appends the usage chunk (if requested) and `[DONE]`.
    pub fn finish(&self, out: &mut Vec<u8>) {
        if self.include_usage {
            match self.endpoint {
                Endpoint::Completions => push_event(
                    out,
                    &CompletionChunk {
                        id: &self.id,
                        object: "text_completion",
                        created: self.created,
                        model: &self.model,
                        choices: Vec::new(),
                        usage: Some(self.usage()),
                    },
                ),
                Endpoint::Chat => push_event(
                    out,
                    &ChatChunk {
                        id: &self.id,
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: &self.model,
                        choices: Vec::new(),
                        usage: Some(self.usage()),
                    },
                ),
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// Appends an error event and `[DONE]` (the engine went away mid-stream).
    pub fn error(&self, err: &ApiError, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(err.to_stream_json().as_bytes());
        out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
    }
}

/// The body of a streamed response: pulls engine events and encodes them as they come.
/// Dropping it before the end (client gone) aborts the request in the engine.
#[derive(Debug)]
pub struct SseBody {
    events: UnboundedReceiver<RequestEvent>,
    encoder: StreamEncoder,
    guard: AbortOnDrop,
    /// Events received before the response started (already encoded).
    pending: VecDeque<Bytes>,
    done: bool,
}

impl SseBody {
    /// A body streaming `events` through `encoder`; `guard` aborts the request if dropped.
    /// `early` holds events the handler already took from the channel.
    pub fn new(
        events: UnboundedReceiver<RequestEvent>,
        encoder: StreamEncoder,
        guard: AbortOnDrop,
        early: Vec<RequestEvent>,
    ) -> Self {
        let mut body = Self { events, encoder, guard, pending: VecDeque::new(), done: false };
        for event in early {
            let mut out = Vec::new();
            body.done = body.encode(event, &mut out);
            if !out.is_empty() {
                body.pending.push_back(Bytes::from(out));
            }
            if body.done {
                break;
            }
        }
        body
    }

    /// Encodes one event into `out`; returns true when the stream is complete.
    fn encode(&mut self, event: RequestEvent, out: &mut Vec<u8>) -> bool {
        match event {
            RequestEvent::Admitted { .. } => false,
            RequestEvent::Token { text, finish } => {
                self.encoder.token(text, finish, out);
                if finish.is_some() {
                    self.encoder.finish(out);
                    self.guard.disarm();
                    true
                } else {
                    false
                }
            }
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(b) = this.pending.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        // Coalesce every event already available into one frame.
        let mut out = Vec::new();
        loop {
            match this.events.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    if this.encode(event, &mut out) {
                        this.done = true;
                        break;
                    }
                }
                Poll::Ready(None) => {
                    let err = ApiError::internal("the engine stopped before the request finished");
                    this.encoder.error(&err, &mut out);
                    this.done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if out.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}
