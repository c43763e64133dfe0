//! A replica for the faults a simulator process cannot play: an engine dead
//! behind a live HTTP server, whose `/metrics` and `/health` look healthy
//! and idle while every inference request gets an immediate 500
//! ([`Failure::Error`]) or is read and never answered
//! ([`Failure::NeverAnswers`]), and an exporter gone wrong, whose `/metrics`
//! page is 15 MB while inference streams normally ([`Failure::BigMetrics`]).
//! The first two look least loaded to every policy, so they are what passive
//! health must eject. The end-to-end tests and the soak both use it.
//!
//! Every connection task lives in a `JoinSet` owned by the accept task, so a
//! dropped replica stops them all.

use crate::error::HarnessError;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `/metrics` page: vLLM V1 names, nothing running or waiting.
const METRICS: &str = "# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{model_name=\"m\"} 0\n\
# TYPE vllm:num_requests_waiting gauge\n\
vllm:num_requests_waiting{model_name=\"m\"} 0\n";

/// The error body of every inference request of [`Failure::Error`].
const ERROR: &str =
    r#"{"error":{"message":"engine is dead","type":"InternalServerError","param":null,"code":500}}"#;

/// Size of [`Failure::BigMetrics`]'s `/metrics` page.
const BIG_METRICS_BYTES: usize = 15 * 1024 * 1024;
/// Chunks of [`Failure::BigMetrics`]'s chat completion stream, and the gap between them.
const STREAM_CHUNKS: usize = 24;
const STREAM_GAP: Duration = Duration::from_millis(20);

type Body = BoxBody<Bytes, Infallible>;

/// How a failing replica fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Inference requests get an immediate 500 with an OpenAI-shaped error.
    Error,
    /// Inference requests are read and never answered; the connection stays open.
    NeverAnswers,
    /// `/metrics` is 15 MB (the real gauges, then comment lines); inference
    /// requests get a short streamed chat completion.
    BigMetrics,
}

/// A running failing replica; stops when dropped.
#[derive(Debug)]
pub struct FailingReplica {
    /// Its loopback address.
    pub addr: SocketAddr,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FailingReplica {
    /// Starts one answering 500 on a system-picked loopback port.
    pub async fn start() -> Result<Self, HarnessError> {
        Self::start_failing(Failure::Error).await
    }

    /// Starts one failing as `failure` says on a system-picked loopback port.
    pub async fn start_failing(failure: Failure) -> Result<Self, HarnessError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| HarnessError::io("bind the failing replica", "127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::io("read the failing replica's address", "", e))?;
        let metrics = match failure {
            Failure::BigMetrics => big_metrics(),
            Failure::Error | Failure::NeverAnswers => Bytes::from_static(METRICS.as_bytes()),
        };
        let failed = Arc::new(AtomicU64::new(0));
        let counter = failed.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                // Reap the finished ones so that the set stays small.
                while connections.try_join_next().is_some() {}
                let (counter, metrics) = (counter.clone(), metrics.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (counter, metrics) = (counter.clone(), metrics.clone());
                        async move { Ok::<_, Infallible>(answer(req, failure, &counter, metrics).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, failed, task })
    }

    /// Inference requests it has failed (or taken and not answered) so far;
    /// [`Failure::BigMetrics`] counts the ones it streamed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl Drop for FailingReplica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    failure: Failure,
    failed: &AtomicU64,
    metrics: Bytes,
) -> Response<Body> {
    match req.uri().path() {
        "/metrics" => response(200, "text/plain; version=0.0.4", Full::new(metrics).boxed()),
        "/health" => response(200, "text/plain", Full::new(Bytes::new()).boxed()),
        _ => {
            failed.fetch_add(1, Ordering::Relaxed);
            // Read the whole request (bounded by the proxy's own limits).
            let _ = req.into_body().collect().await;
            match failure {
                Failure::Error => {
                    response(500, "application/json", Full::new(Bytes::from_static(ERROR.as_bytes())).boxed())
                }
                Failure::NeverAnswers => std::future::pending().await,
                Failure::BigMetrics => response(200, "text/event-stream", sse_stream()),
            }
        }
    }
}

fn response(status: u16, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
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
