//! Retry before the first response byte: once, on another backend, when
//! the backend answered 502/503 or its connect timed out, and only when the
//! body was buffered (so it can be replayed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use bytes::Bytes;
use common::*;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A backend answering every request with `status`; counts requests.
async fn failing(status: u16) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let mut r =
                            http::Response::new(http_body_util::Full::new(Bytes::from("unavailable")));
                        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    (addr, hits)
}

/// Retries counted under every reason.
fn all_retries(p: &prefixgate::app::Running) -> u64 {
    ["upstream_error", "upstream_timeout", "upstream_unavailable"]
        .iter()
        .map(|reason| p.app.metrics.retries.with_label_values(&[reason]).get())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_or_503_before_the_first_byte_is_retried_on_another_backend() {
    for status in [502, 503] {
        let (bad, hits) = failing(status).await;
        let good = Echo::start().await;
        let p = proxy(config(&[bad, good.addr], &format!("mode=route route={bad}"))).await;
        let r = send("POST", &format!("http://{}/v1/completions", p.listen), &[], "x").await;
        assert_eq!(r.status, 200, "{status}: {}", r.body);
        assert_eq!(r.json()["port"], good.addr.port(), "{status}");
        assert_eq!(r.headers["x-prefixgate-decision"], "retry", "{status}");
        assert_eq!(r.headers["x-prefixgate-backend"], good.addr.to_string().as_str());
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{status}");
        assert_eq!(p.app.metrics.retries.with_label_values(&["upstream_unavailable"]).get(), 1, "{status}");
        let failed = p.app.current.get().backends.all()[0].failures.load(Ordering::Relaxed);
        assert_eq!(failed, 1, "{status}: counted as a failure of the backend");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_5xx_and_streamed_bodies_are_not_retried() {
    let (bad500, hits500) = failing(500).await;
    let good = Echo::start().await;
    let p = proxy(config(&[bad500, good.addr], &format!("mode=route route={bad500}"))).await;
    let r = send("POST", &format!("http://{}/", p.listen), &[], "x").await;
    assert_eq!((r.status, hits500.load(Ordering::SeqCst)), (500, 1), "500 passed through");
    assert_eq!(all_retries(&p), 0);

    // A body over max_body_bytes is streamed: it cannot be replayed.
    let (bad503, hits503) = failing(503).await;
    let mut cfg = config(&[bad503, good.addr], &format!("mode=route route={bad503}"));
    cfg.max_body_bytes = 16;
    cfg.max_buffered_bytes = 1 << 20;
    let p = proxy(cfg).await;
    let big = "y".repeat(64);
    let r = send(
        "POST",
        &format!("http://{}/", p.listen),
        &[("x-envoy-original-dst-host", &bad503.to_string())],
        &big,
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(hits503.load(Ordering::SeqCst), 1);
    assert_eq!(all_retries(&p), 0);
    assert_eq!(good.hits(), 0);
}

/// A listener whose accept queue is full and never drained: the kernel
/// drops further SYNs, so a connect to it hangs until it times out.
async fn unreachable() -> Option<(SocketAddr, tokio::net::TcpListener, Vec<TcpStream>)> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(_)) => return None,
            // A connect hangs: the queue is full.
            Err(_) => return Some((addr, listener, held)),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_is_retried_on_another_backend() {
    let Some((hole, _listener, _held)) = unreachable().await else {
        panic!("this kernel does not drop SYNs to a full accept queue; the test cannot make a connect hang");
    };
    let good = Echo::start().await;
    let mut cfg = config(&[hole, good.addr], &format!("mode=route route={hole}"));
    cfg.timeouts.upstream_connect_ms = 200;
    let p = proxy(cfg).await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        send("POST", &format!("http://{}/v1/completions", p.listen), &[], "x"),
    )
    .await
    .expect("answered well within the bound");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["port"], good.addr.port());
    assert_eq!(r.headers["x-prefixgate-decision"], "retry");
    assert_eq!(p.app.metrics.retries.with_label_values(&["upstream_error"]).get(), 1);
    let hole_backend = p.app.current.get().backends.all()[0].clone();
    assert_eq!(hole_backend.failures.load(Ordering::Relaxed), 1);
}
