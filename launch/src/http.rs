//! The one HTTP GET the launch waits, the scrapes and the benchmark's
//! readiness checks use: a pooled hyper client, and a GET that succeeds only
//! with a 200 answered in full within its timeout.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A pooled HTTP/1.1 client (keep-alive, no Nagle delay).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Idle connections kept per host: enough for a benchmark's concurrency.
const POOL_IDLE_PER_HOST: usize = 1024;

/// A pooled HTTP/1.1 client.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(POOL_IDLE_PER_HOST).build(connector)
}

/// A GET that did not bring back a 200 and its body.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The URI is not one hyper can request.
    #[error("bad request")]
    Request(#[source] hyper::http::Error),
    /// No connection, or it broke before the response headers.
    #[error("connection error")]
    Connect(#[source] hyper_util::client::legacy::Error),
    /// The answer was not a 200.
    #[error("HTTP {0}")]
    Status(hyper::StatusCode),
    /// The body broke off.
    #[error("reading the body")]
    Body(#[source] hyper::Error),
    /// No complete answer within the time allowed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// GET `uri` with `client`: the body of a 200 answered in full within `timeout`.
pub async fn get(client: &HttpClient, uri: &str, timeout: Duration) -> Result<Bytes, GetError> {
    let request = Request::get(uri).body(Full::default()).map_err(GetError::Request)?;
    let answer = async {
        let response = client.request(request).await.map_err(GetError::Connect)?;
        if response.status() != hyper::StatusCode::OK {
            return Err(GetError::Status(response.status()));
        }
        Ok(response.into_body().collect().await.map_err(GetError::Body)?.to_bytes())
    };
    tokio::time::timeout(timeout, answer).await.map_err(|_| GetError::Timeout(timeout))?
}
