//! One benchmark request against an OpenAI-compatible server, timed exactly
//! as bench_serving times it.

use super::stats::RequestOutcome;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// Response header naming the replica the router chose.
pub const BACKEND_HEADER: &str = "x-prefixgate-backend";
/// Response header saying why the router chose it (policy, reason, match ratio, load).
pub const DECISION_HEADER: &str = "x-prefixgate-decision";
/// Response header of `vllm-sim`: prompt tokens found in the replica's prefix cache.
pub const CACHED_TOKENS_HEADER: &str = "x-sim-cached-tokens";

/// Which endpoint the driver calls (bench_serving's `--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Api {
    /// `/v1/completions` with `prompt`.
    #[value(name = "vllm")]
    #[serde(rename = "vllm")]
    Completions,
    /// `/v1/chat/completions` with `messages`.
    #[value(name = "vllm-chat")]
    #[serde(rename = "vllm-chat")]
    Chat,
}

impl Api {
    /// The flag value (`vllm`, `vllm-chat`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completions => "vllm",
            Self::Chat => "vllm-chat",
        }
    }
}

/// What to send: the prompt as text or as chat messages.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRequest {
    /// Completions prompt (shared: a workload repeats its pieces).
    pub prompt: Arc<str>,
    /// Chat messages (`role`, `content`).
    pub messages: Arc<[(String, String)]>,
    /// Prompt tokens, as counted client-side.
    pub prompt_len: u64,
    /// Output tokens requested.
    pub output_len: u64,
}

/// Settings shared by every request of a run.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// The `model` field.
    pub model: String,
    /// Endpoint.
    pub api: Api,
    /// Stream the response (SSE).
    pub stream: bool,
    /// Ask for exactly `output_len` tokens.
    pub ignore_eos: bool,
}

pub use prefixgate_launch::http::{get, http_client, GetError, HttpClient};

/// The JSON body bench_serving sends for `request`.
pub fn request_body(settings: &ClientSettings, request: &BenchRequest) -> Value {
    let mut body = match settings.api {
        Api::Completions => json!({
            "model": settings.model,
            "prompt": &*request.prompt,
            "temperature": 0.0,
            "best_of": 1,
            "max_tokens": request.output_len,
            "stream": settings.stream,
        }),
        Api::Chat => json!({
            "model": settings.model,
            "messages": request
                .messages
                .iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect::<Vec<_>>(),
            "temperature": 0.0,
            "max_tokens": request.output_len,
            "stream": settings.stream,
        }),
    };
    if settings.ignore_eos {
        body["ignore_eos"] = json!(true);
    }
    body
}

/// Sends `request` to the server at `base_url` (`http://host:port`, no trailing slash) and
/// measures it; `run_start` dates `start_s`. Never fails: errors are recorded in the outcome.
pub async fn send(
    client: &HttpClient,
    base_url: &str,
    settings: &ClientSettings,
    request: &BenchRequest,
    run_start: Instant,
) -> RequestOutcome {
    let path = match settings.api {
        Api::Completions => "/v1/completions",
        Api::Chat => "/v1/chat/completions",
    };
    let body = request_body(settings, request).to_string();
    let mut outcome = RequestOutcome {
        prompt_len: request.prompt_len,
        output_len: request.output_len,
        ..Default::default()
    };
    let start = Instant::now();
    outcome.start_s = start.duration_since(run_start).as_secs_f64();
    let http_request = Request::post(format!("{base_url}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)));
    let http_request = match http_request {
        Ok(r) => r,
        Err(e) => return failed(outcome, format!("bad request: {e}")),
    };
    let response = match client.request(http_request).await {
        Ok(r) => r,
        Err(e) => return failed(outcome, format!("connection error: {e}")),
    };
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    outcome.backend = header(BACKEND_HEADER);
    outcome.decision = header(DECISION_HEADER);
    outcome.cached_tokens = header(CACHED_TOKENS_HEADER).and_then(|v| v.trim().parse().ok());
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        return failed(outcome, format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()));
    }
    let mut lines = LineBuffer::default();
    let mut last_token: Option<Instant> = None;
    let mut whole = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return failed(outcome, format!("stream error: {e}")),
        };
        let Some(data) = frame.data_ref() else { continue };
        if !settings.stream {
            whole.extend_from_slice(data);
            continue;
        }
        for line in lines.push(data) {
            let now = Instant::now();
            outcome.latency_s = now.duration_since(start).as_secs_f64();
            let line = line.trim();
            let payload = line.strip_prefix("data:").map(str::trim_start).unwrap_or(line);
            if payload.is_empty() || payload == "[DONE]" {
                continue;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(payload) else {
                return failed(
                    outcome,
                    format!("malformed chunk: {}", payload.chars().take(120).collect::<String>()),
                );
            };
            usage(&chunk, &mut outcome);
            if chunk.get("error").is_some() || chunk.get("object").and_then(Value::as_str) == Some("error") {
                return failed(outcome, format!("error event: {payload}"));
            }
            if chunk_text(&chunk, settings.api).is_some_and(|t| !t.is_empty()) {
                match last_token {
                    None => outcome.ttft_s = outcome.latency_s,
                    Some(prev) => outcome.itl_s.push(now.duration_since(prev).as_secs_f64()),
                }
                last_token = Some(now);
            }
        }
    }
    if !settings.stream {
        outcome.latency_s = start.elapsed().as_secs_f64();
        outcome.ttft_s = outcome.latency_s;
        match serde_json::from_slice::<Value>(&whole) {
            Ok(v) => usage(&v, &mut outcome),
            Err(e) => return failed(outcome, format!("malformed response: {e}")),
        }
    } else if last_token.is_none() {
        return failed(outcome, "stream ended without a token".to_owned());
    }
    outcome.success = true;
    outcome
}

/// Takes the output length and, when reported, the cached prompt tokens from a
/// response's (or a chunk's) `usage`.
fn usage(v: &Value, outcome: &mut RequestOutcome) {
    if let Some(n) = v.pointer("/usage/completion_tokens").and_then(Value::as_u64) {
        outcome.output_len = n;
    }
    if let Some(n) = v.pointer("/usage/prompt_tokens_details/cached_tokens").and_then(Value::as_u64) {
        outcome.cached_tokens = Some(n);
    }
}

fn chunk_text(chunk: &Value, api: Api) -> Option<&str> {
    let choice = chunk.get("choices")?.get(0)?;
    match api {
        Api::Completions => choice.get("text")?.as_str(),
        Api::Chat => choice.get("delta")?.get("content")?.as_str(),
    }
}

fn failed(mut outcome: RequestOutcome, error: String) -> RequestOutcome {
    outcome.success = false;
    outcome.output_len = 0;
    outcome.error = Some(error);
    outcome
}

/// Splits a byte stream into lines across chunk boundaries.
#[derive(Default)]
struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    fn push(&mut self, data: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            out.push(String::from_utf8_lossy(&line).into_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks() {
        let mut b = LineBuffer::default();
        assert!(b.push(b"data: {\"a\"").is_empty());
        assert_eq!(b.push(b":1}\n\ndata: [DONE]\n"), ["data: {\"a\":1}\n", "\n", "data: [DONE]\n"]);
    }

    #[test]
    fn body_matches_bench_serving() {
        let s = ClientSettings { model: "m".into(), api: Api::Completions, stream: true, ignore_eos: true };
        let r =
            BenchRequest { prompt: "p".into(), messages: Vec::new().into(), prompt_len: 1, output_len: 7 };
        let b = request_body(&s, &r);
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["ignore_eos"], true);
        assert_eq!(b["best_of"], 1);
        let chat = ClientSettings { api: Api::Chat, ignore_eos: false, ..s };
        let r = BenchRequest { messages: vec![("user".into(), "hi".into())].into(), ..r };
        let b = request_body(&chat, &r);
        assert_eq!(b["messages"][0]["content"], "hi");
        assert!(b.get("ignore_eos").is_none());
    }
}
