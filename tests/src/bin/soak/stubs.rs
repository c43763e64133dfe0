//! Replicas for the faults a simulator process cannot play: one that accepts
//! inference requests and never answers them (while its `/metrics` looks
//! healthy and idle), and one that streams chat completions normally but
//! whose `/metrics` page is 15 MB. Both stop when dropped; every connection
//! task lives in a `JoinSet` owned by the accept task, so it stops with it.

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// An idle vLLM V1 `/metrics` page.
const METRICS: &str = "# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{model_name=\"m\"} 0\n\
# TYPE vllm:num_requests_waiting gauge\n\
vllm:num_requests_waiting{model_name=\"m\"} 0\n";

/// Size of the oversized `/metrics` page.
const BIG_METRICS_BYTES: usize = 15 * 1024 * 1024;
/// Chunks of a stub chat completion stream, and the gap between them.
const STREAM_CHUNKS: usize = 24;
const STREAM_GAP: Duration = Duration::from_millis(20);

type Body = BoxBody<Bytes, Infallible>;

/// What a stub does with requests other than `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads the request and never answers it.
    Hang,
    /// Streams a short chat completion; `/metrics` is 15 MB.
    BigMetrics,
}

/// A running stub replica.
#[derive(Debug)]
pub struct Stub {
    /// Its loopback address.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    /// Starts one on a system-picked loopback port.
    pub async fn start(behaviour: Behaviour) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("bind a stub replica")?;
        let addr = listener.local_addr().context("stub replica address")?;
        let metrics: Arc<Bytes> = Arc::new(match behaviour {
            Behaviour::Hang => Bytes::from_static(METRICS.as_bytes()),
            Behaviour::BigMetrics => big_metrics(),
        });
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                // Reap the finished ones so that the set stays small.
                while connections.try_join_next().is_some() {}
                let metrics = metrics.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let metrics = metrics.clone();
                        async move { Ok::<_, Infallible>(answer(req, behaviour, &metrics).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }
}

/// The real gauges first, then comment lines up to 15 MB.
fn big_metrics() -> Bytes {
    let mut page = String::with_capacity(BIG_METRICS_BYTES + 128);
    page.push_str(METRICS);
    let line = "# padding padding padding padding padding padding padding padding padding\n";
    while page.len() < BIG_METRICS_BYTES {
        page.push_str(line);
    }
    Bytes::from(page)
}

fn response(status: u16, content_type: &str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    behaviour: Behaviour,
    metrics: &Bytes,
) -> Response<Body> {
    match req.uri().path() {
        "/metrics" => response(200, "text/plain; version=0.0.4", Full::new(metrics.clone()).boxed()),
        "/health" => response(200, "text/plain", Full::new(Bytes::new()).boxed()),
        _ => {
            // Read the whole request (bounded by the proxy's own limits).
            let _ = req.into_body().collect().await;
            match behaviour {
                Behaviour::Hang => std::future::pending().await,
                Behaviour::BigMetrics => response(200, "text/event-stream", sse_stream()),
            }
        }
    }
}

/// An OpenAI chat completion stream: `STREAM_CHUNKS` deltas, then `[DONE]`.
fn sse_stream() -> Body {
    let events = futures_util::stream::unfold(0usize, |i| async move {
        if i > STREAM_CHUNKS {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(STREAM_GAP).await;
        }
        let event = if i == STREAM_CHUNKS {
            "data: [DONE]\n\n".to_owned()
        } else {
            format!(
                "data: {{\"id\":\"stub\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}]}}\n\n"
            )
        };
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), i + 1))
    });
    StreamBody::new(events).boxed()
}
