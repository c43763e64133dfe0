//! Test fixtures: the test filter module (built for wasm32-wasip1 on first
//! use), echo/SSE backends on loopback, and an in-process proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::field_reassign_with_default, dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prefixgate::app::{self, Running};
use prefixgate::config::Config;
use prefixgate_filter_module::{build_module, Crate};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;

pub mod raw_module;

/// Path of the test filter module, built once per test binary.
pub fn test_filter() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build_test_module("test-filters", "prefixgate_test_filters.wasm")).clone()
}

/// Builds the test module crate in `host/<dir>` for wasm32-wasip1 (release,
/// in its own target directory; the same nested build as the routing
/// filter's) and returns the path of `artifact`.
pub fn build_test_module(dir: &str, artifact: &str) -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir).join("Cargo.toml");
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
    build_module(Crate::Manifest(&manifest), artifact, &target)
        .unwrap_or_else(|e| panic!("building {dir}: {e}"))
}

/// An echo backend: answers every request with a JSON description of it;
/// `/sse` streams five events 100 ms apart.
pub struct Echo {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests received.
    pub hits: Arc<AtomicUsize>,
}

impl Echo {
    /// Starts an echo backend on a loopback port.
    pub async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        echo(req, addr)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Echo { addr, hits }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

type EchoBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn echo(
    req: http::Request<Incoming>,
    addr: SocketAddr,
) -> Result<http::Response<EchoBody>, Infallible> {
    if req.uri().path() == "/sse" {
        let stream = futures_util::stream::unfold(0u32, |i| async move {
            if i == 5 {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(format!("data: tok{i}\n\n")))), i + 1))
        });
        let mut r = http::Response::new(StreamBody::new(stream).boxed());
        r.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
        return Ok(r);
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned().into()))
        .collect();
    let doc = serde_json::json!({
        "port": addr.port(),
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut r = http::Response::new(Full::new(Bytes::from(doc.to_string())).boxed());
    r.headers_mut().insert("x-echo-port", addr.port().to_string().parse().unwrap());
    Ok(r)
}

/// A loopback address nothing listens on.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A proxy configuration running the test filter with `plugin_config`.
pub fn config(backends: &[SocketAddr], plugin_config: &str) -> Config {
    let mut c = Config::default();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.admin = "127.0.0.1:0".parse().unwrap();
    c.backends = backends.iter().map(|a| a.to_string()).collect();
    c.filter.module = Some(test_filter());
    c.filter.plugin_config = Some(plugin_config.to_string());
    c.filter.vms = 2;
    c
}

/// Starts an in-process proxy.
pub async fn proxy(config: Config) -> Running {
    app::start(config).await.unwrap()
}

/// A simple response.
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A response header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }

    /// A header the echo backend received.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_string)
    }
}

/// Sends a request and reads the whole response.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Resp { status, headers, body }
}

/// Reads a shared-data value of the proxy's namespace as a string.
pub fn shared(running: &Running, key: &str) -> Option<String> {
    running
        .app
        .builder
        .shared
        .data
        .namespace("prefixgate")
        .get(key.as_bytes())
        .map(|(v, _)| String::from_utf8_lossy(&v).into_owned())
}

/// Whether `f` comes to hold within `tries` × 20 ms, polled by
/// [`prefixgate_launch::poll_until`] (the one bounded poll of the tests and
/// launchers).
pub async fn eventually(tries: u64, mut f: impl FnMut() -> bool) -> bool {
    let limit = Duration::from_millis(20 * tries);
    prefixgate_launch::poll_until(limit, "a test condition", || {
        let held = f();
        async move { held.then_some(()) }
    })
    .await
    .is_ok()
}

/// Longest [`read_until_closed`] waits for the peer to close.
pub const READ_BOUND: Duration = Duration::from_secs(10);

/// Reads until the peer closes (or `READ_BOUND` passes); returns what came and
/// whether the peer closed.
pub async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let until = std::time::Instant::now() + READ_BOUND;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, tokio::io::AsyncReadExt::read(stream, &mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}
