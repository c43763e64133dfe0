//! HTTP client for the scenarios: OpenAI-style requests, routing headers read back.

use crate::error::HarnessError;
use bytes::Bytes;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

/// Response header naming the backend the filter chose.
pub const BACKEND_HEADER: &str = "x-prefixgate-backend";
/// Response header describing the decision.
pub const DECISION_HEADER: &str = "x-prefixgate-decision";

/// One complete response.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `x-prefixgate-backend`, if present.
    pub backend: Option<String>,
    /// `x-prefixgate-decision`, if present.
    pub decision: Option<String>,
    /// All response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The decision's `reason=` field, if any.
    pub fn reason(&self) -> Option<&str> {
        self.decision.as_deref()?.split(';').find_map(|part| part.trim().strip_prefix("reason="))
    }
}

/// A streamed response: headers first, then each body chunk with its arrival time.
#[derive(Debug)]
pub struct Stream {
    /// HTTP status.
    pub status: u16,
    /// `x-prefixgate-backend`, if present.
    pub backend: Option<String>,
    /// Body chunks and when each arrived.
    pub chunks: Vec<(Instant, Bytes)>,
}

impl Stream {
    /// The SSE `data:` payloads, in order.
    pub fn events(&self) -> Vec<String> {
        let mut text = String::new();
        for (_, chunk) in &self.chunks {
            text.push_str(&String::from_utf8_lossy(chunk));
        }
        text.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_owned).collect()
    }
}

/// A client bound to one proxy.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

impl Client {
    /// A client reusing connections.
    pub fn new(base_url: &str) -> Result<Self, HarnessError> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        Ok(Self { http, base: base_url.to_owned() })
    }

    /// A client opening a new connection for every request, so that the
    /// proxy's worker threads all get some of them.
    pub fn fresh_connections(base_url: &str) -> Result<Self, HarnessError> {
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(0).build()?;
        Ok(Self { http, base: base_url.to_owned() })
    }

    /// POSTs `body` to `path` with extra `headers`.
    pub async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, HarnessError> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Reply {
            status,
            backend: header(&headers, BACKEND_HEADER),
            decision: header(&headers, DECISION_HEADER),
            headers,
            body,
        })
    }

    /// A non-streaming `/v1/completions` request generating `max_tokens` tokens.
    pub async fn completion(&self, prompt: &str, max_tokens: u32) -> Result<Reply, HarnessError> {
        let body = serde_json::json!({
            "prompt": prompt,
            "max_tokens": max_tokens,
            "ignore_eos": true,
        });
        self.post("/v1/completions", body.to_string(), &[]).await
    }

    /// A streaming `/v1/chat/completions` request generating `max_tokens` tokens.
    pub async fn stream_chat(&self, content: &str, max_tokens: u32) -> Result<Stream, HarnessError> {
        let body = serde_json::json!({
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "ignore_eos": true,
            "stream": true,
        });
        let response = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(600))
            .send()
            .await?;
        let status = response.status().as_u16();
        let backend = header(response.headers(), BACKEND_HEADER);
        let mut chunks = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            chunks.push((Instant::now(), chunk?));
        }
        Ok(Stream { status, backend, chunks })
    }
}
