//! A replica whose engine is dead behind a live HTTP server: `/metrics` and
//! `/health` look healthy and idle, and every other request gets an
//! immediate 500 ([`Failure::Error`]) or is accepted and never answered
//! ([`Failure::NeverAnswers`]). It looks least loaded to every policy, so it
//! is what passive health must eject.

use crate::error::HarnessError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The `/metrics` page: vLLM V1 names, nothing running or waiting.
const METRICS: &str = "# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{model_name=\"m\"} 0\n\
# TYPE vllm:num_requests_waiting gauge\n\
vllm:num_requests_waiting{model_name=\"m\"} 0\n";

/// The error body of every inference request.
const ERROR: &str =
    r#"{"error":{"message":"engine is dead","type":"InternalServerError","param":null,"code":500}}"#;

/// How a failing replica fails its inference requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// An immediate 500 with an OpenAI-shaped error.
    Error,
    /// The request is read and never answered; the connection stays open.
    NeverAnswers,
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
        let failed = Arc::new(AtomicU64::new(0));
        let counter = failed.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            let response = answer(&req, &counter);
                            if failure == Failure::NeverAnswers && response.status() != 200 {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, failed, task })
    }

    /// Inference requests it has failed (or taken and not answered) so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl Drop for FailingReplica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(req: &Request<hyper::body::Incoming>, failed: &AtomicU64) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (200, "text/plain; version=0.0.4", METRICS),
        "/health" => (200, "text/plain", ""),
        _ => {
            failed.fetch_add(1, Ordering::Relaxed);
            (500, "application/json", ERROR)
        }
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
