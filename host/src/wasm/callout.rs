//! Performs one `proxy_http_call` against a backend.

use super::abi::header_map::get;
use super::host_state::{CallResponse, PendingCall};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::time::Duration;

/// Client used for callouts.
pub type CalloutClient = Client<HttpConnector, Full<Bytes>>;

/// Largest callout response body kept.
const MAX_RESPONSE: usize = 16 << 20;

/// TCP connect timeout of a callout (the data path's default,
/// `timeouts.upstream_connect_ms`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Timeout of a callout whose filter gave none (`timeout_milliseconds` 0):
/// every read from the network has one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A new pooled callout client.
pub fn client() -> CalloutClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}

/// Runs the call; `None` on any failure (connect, timeout, too large).
pub async fn run(client: &CalloutClient, call: PendingCall) -> Option<CallResponse> {
    let timeout = call.timeout.unwrap_or(DEFAULT_TIMEOUT);
    tokio::time::timeout(timeout, perform(client, call)).await.ok().flatten()
}

async fn perform(client: &CalloutClient, call: PendingCall) -> Option<CallResponse> {
    let method = get(&call.headers, b":method")?;
    let path = String::from_utf8_lossy(get(&call.headers, b":path")?).into_owned();
    let authority = get(&call.headers, b":authority")?.to_vec();
    let uri = format!("http://{}{}", call.target, path);
    let mut req = http::Request::builder().method(method).uri(uri);
    req = req.header(http::header::HOST, authority);
    for (k, v) in &call.headers {
        if !k.starts_with(b":") && !k.eq_ignore_ascii_case(b"host") {
            req = req.header(k.as_slice(), v.as_slice());
        }
    }
    let req = req.body(Full::new(Bytes::from(call.body))).ok()?;
    let resp = client.request(req).await.ok()?;
    let (parts, body) = resp.into_parts();
    let collected = Limited::new(body, MAX_RESPONSE).collect().await.ok()?;
    let trailers = collected
        .trailers()
        .map(|t| t.iter().map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec())).collect())
        .unwrap_or_default();
    let mut headers = vec![(b":status".to_vec(), parts.status.as_str().as_bytes().to_vec())];
    headers
        .extend(parts.headers.iter().map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec())));
    Some(CallResponse { headers, body: collected.to_bytes().to_vec(), trailers })
}
