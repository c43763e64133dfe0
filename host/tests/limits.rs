//! Timeouts and caps on the data path: slow headers, stalled bodies, idle
//! keep-alive connections, hung backends, the connection cap and the
//! request-body buffer budget. Loopback only; every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Generous upper bound on any cut-off that is configured far shorter.
const BOUND: Duration = Duration::from_secs(10);

fn counter(p: &prefixgate::app::Running, kind: &str) -> u64 {
    p.app.metrics.timeouts.with_label_values(&[kind]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_headers_are_cut_off() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], "mode=route");
    cfg.timeouts.header_read_ms = 300;
    let p = proxy(cfg).await;
    let mut s = TcpStream::connect(p.listen).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    // One header line every 100 ms, never the blank line that ends them.
    for i in 0..100 {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            // hyper closes without an answer.
            Ok(Ok(n)) => panic!("unexpected answer: {}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
        if s.write_all(format!("x-slow-{i}: 1\r\n").as_bytes()).await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "a client dripping headers was never cut off");
    assert!(started.elapsed() < BOUND, "cut off late: {:?}", started.elapsed());
    assert_eq!(a.hits(), 0);
    assert!(eventually(100, || counter(&p, "header_read") >= 1).await, "counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_cut_off_buffered_or_streamed() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], "mode=route");
    cfg.timeouts.request_body_idle_ms = 300;
    cfg.max_body_bytes = 1024;
    cfg.max_buffered_bytes = 1 << 20;
    let p = proxy(cfg).await;
    // 100 bytes announced (buffered for the filter), then 2000 (over
    // max_body_bytes: streamed to the backend); 10 sent in each case.
    for (announced, kind) in [(100, "buffered"), (2000, "streamed")] {
        let mut s = TcpStream::connect(p.listen).await.unwrap();
        let head = format!("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {announced}\r\n\r\n0123456789");
        s.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (text, _) = read_until_closed(&mut s).await;
        assert!(text.starts_with("HTTP/1.1 408"), "{kind}: {text}");
        assert!(text.contains(r#""type":"RequestTimeoutError""#), "{kind}: OpenAI-shaped: {text}");
        assert!(started.elapsed() < BOUND, "{kind}");
    }
    assert_eq!(counter(&p, "request_body_idle"), 2);
    let status = send("GET", &format!("http://{}/admin/status", p.admin), &[], "").await.json();
    assert_eq!(status["backends"][0]["connect_failures"], 0, "the client's fault, not the backend's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], "mode=route");
    cfg.timeouts.keep_alive_idle_ms = 300;
    cfg.timeouts.header_read_ms = 60_000;
    let p = proxy(cfg).await;
    let mut s = TcpStream::connect(p.listen).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let (text, closed) = read_until_closed(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed, "the idle connection was kept open");
    assert!(eventually(100, || counter(&p, "keep_alive_idle") >= 1).await);
    assert!(eventually(100, || p.app.metrics.connections.get() == 0).await, "gauge back to 0");
}

/// A backend that accepts connections and never answers.
async fn black_hole() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_gives_504_and_counts_as_failed() {
    let hole = black_hole().await;
    let mut cfg = config(&[hole], "mode=route");
    cfg.timeouts.upstream_first_byte_ms = 500;
    let p = proxy(cfg).await;
    let started = Instant::now();
    let r =
        tokio::time::timeout(BOUND, send("POST", &format!("http://{}/v1/completions", p.listen), &[], "x"))
            .await
            .expect("a hung backend held the request");
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
    let err = &r.json()["error"];
    assert_eq!(err["type"], "GatewayTimeoutError", "{}", r.body);
    assert_eq!(err["code"], 504);
    assert!(err["param"].is_null());
    assert!(err["message"].as_str().unwrap().contains("500 ms"), "{}", r.body);
    let backend = p.app.current.get().backends.all()[0].clone();
    assert_eq!(backend.failures.load(std::sync::atomic::Ordering::Relaxed), 1, "counted like a refusal");
    assert!(!backend.healthy(), "skipped by the fallback for a while");
    assert_eq!(counter(&p, "upstream_first_byte"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_by_a_hung_backend_is_retried_on_another() {
    let (hole, echo) = (black_hole().await, Echo::start().await);
    let mut cfg = config(&[hole, echo.addr], "mode=route");
    cfg.timeouts.upstream_first_byte_ms = 500;
    let p = proxy(cfg).await;
    let url = format!("http://{}/v1/completions", p.listen);
    let r = tokio::time::timeout(BOUND, send("POST", &url, &[], &format!("route-to={hole}")))
        .await
        .expect("a hung backend held the request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["port"], echo.addr.port(), "served by the other backend");
    assert_eq!(r.header("x-prefixgate-decision").as_deref(), Some("retry"));
    assert_eq!(counter(&p, "upstream_first_byte"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_new_connections_wait() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], "mode=route");
    cfg.max_connections = 2;
    cfg.timeouts.header_read_ms = 60_000;
    let p = proxy(cfg).await;
    let held = [TcpStream::connect(p.listen).await.unwrap(), TcpStream::connect(p.listen).await.unwrap()];
    assert!(eventually(100, || p.app.metrics.connections.get() == 2).await);
    let url = format!("http://{}/", p.listen);
    let mut third = tokio::spawn(async move { send("POST", &url, &[], "x").await.status });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut third).await.is_err(),
        "a third connection was served past the cap"
    );
    assert_eq!(p.app.metrics.connections.get(), 2);
    drop(held);
    let status = tokio::time::timeout(BOUND, third).await.expect("served once a slot freed").unwrap();
    assert_eq!(status, 200);
    let metrics = send("GET", &format!("http://{}/metrics", p.admin), &[], "").await.body;
    assert!(metrics.contains("prefixgate_client_connections"), "{metrics}");
    assert!(metrics.contains("prefixgate_buffered_request_bytes 0"), "{metrics}");
}

/// A backend that reads every request body to its end and discards it,
/// then answers 200.
async fn drain() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let mut body = req.into_body();
                    let mut n = 0usize;
                    while let Some(Ok(frame)) = body.frame().await {
                        n += frame.data_ref().map_or(0, Bytes::len);
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                        Bytes::from(format!("drained {n}")),
                    )))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stalled_4_mib_bodies_stay_under_the_buffer_cap_while_others_are_served() {
    const CLIENTS: usize = 100;
    const BODY: usize = 4 << 20;
    const CAP: usize = 32 << 20;
    let backend = drain().await;
    let mut cfg = config(&[backend], "mode=route");
    cfg.max_body_bytes = BODY;
    cfg.max_buffered_bytes = CAP;
    let p = proxy(cfg).await;
    let payload = Bytes::from(vec![b'a'; BODY - 1]);
    let mut writers = Vec::new();
    for _ in 0..CLIENTS {
        let (listen, payload) = (p.listen, payload.clone());
        writers.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(listen).await.unwrap();
            let head = format!("POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {BODY}\r\n\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            // All but the last byte, then stall with the connection open.
            let _ = s.write_all(&payload).await;
            s
        }));
    }
    let mut stalled = Vec::new();
    for w in writers {
        stalled
            .push(tokio::time::timeout(Duration::from_secs(120), w).await.expect("writes finish").unwrap());
    }
    let budget = &p.app.buffered;
    assert!(budget.peak() <= CAP, "peak {} over the cap {CAP}", budget.peak());
    assert!(budget.used() <= CAP);
    assert_eq!(p.app.metrics.buffered_bytes.get() as usize, budget.used(), "the gauge is the budget");
    let streamed = p.app.metrics.buffer_full.with_label_values(&["streamed"]).get();
    let refused = p.app.metrics.buffer_full.with_label_values(&["refused"]).get();
    assert!(streamed + refused > 0, "the cap was never reached: the test proves nothing");
    // Once every sent byte is read, only whole stalled bodies are held
    // (twice each: the proxy's copy and the filter's).
    let whole = 2 * (BODY - 1);
    assert!(
        eventually(500, || budget.used() % whole == 0).await,
        "still reading: {} bytes held",
        budget.used()
    );
    assert!(budget.used() <= CAP);
    // Another client is still served.
    let r = send("POST", &format!("http://{}/v1/completions", p.listen), &[], "hello").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "drained 5");
    assert!(budget.peak() <= CAP);
    drop(stalled);
    assert!(eventually(250, || budget.used() == 0).await, "bytes given back: {}", budget.used());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_keeps_flowing_outlives_the_idle_timeouts() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], "mode=route");
    // The echo backend's /sse sends five events 100 ms apart.
    cfg.timeouts.keep_alive_idle_ms = 50;
    cfg.timeouts.stream_idle_ms = 300;
    let p = proxy(cfg).await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let resp = client.get(format!("http://{}/sse", p.listen).parse().unwrap()).await.unwrap();
    let mut body = resp.into_body();
    let mut text = String::new();
    let until = Instant::now() + BOUND;
    while let Some(frame) = tokio::time::timeout_at(until.into(), body.frame()).await.expect("in time") {
        if let Ok(data) = frame.unwrap().into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        if text.contains("tok3") {
            // 300 ms into the stream, six keep-alive idle periods.
            assert_eq!(counter(&p, "keep_alive_idle"), 0, "a connection with a response in flight is idle");
        }
    }
    assert_eq!(text, "data: tok0\n\ndata: tok1\n\ndata: tok2\n\ndata: tok3\n\ndata: tok4\n\n");
    assert_eq!(p.app.metrics.streams_cut.with_label_values(&["stream_idle"]).get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_filter_buffers_is_capped_and_still_delivered_whole() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], "mode=route pause_response=1");
    cfg.max_body_bytes = 1024;
    cfg.max_buffered_bytes = 1 << 20;
    let p = proxy(cfg).await;
    let url = format!("http://{}/", p.listen);
    let streamed = p.app.metrics.buffer_full.with_label_values(&["response_streamed"]);
    let r = send("POST", &url, &[], "small").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["body"], "small", "buffered whole for the filter");
    assert_eq!(streamed.get(), 0);
    // The echoed body passes max_body_bytes: buffering stops, nothing is lost.
    let big = "z".repeat(10_000);
    let r = send("POST", &url, &[], &big).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["body"].as_str().map(str::len), Some(10_000));
    assert_eq!(r.header("x-tf-response").as_deref(), Some("seen"));
    assert_eq!(streamed.get(), 1);
    let budget = &p.app.buffered;
    assert!(budget.peak() <= budget.cap());
    assert!(eventually(100, || budget.used() == 0).await, "given back: {}", budget.used());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_traps_while_holding_a_response_loses_no_byte() {
    let a = Echo::start().await;
    let p = proxy(config(&[a.addr], "mode=route pause_response=1 trap_response_body=1")).await;
    let r = send("POST", &format!("http://{}/", p.listen), &[], "every byte").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "every byte", "the host's copy was forwarded");
    assert_eq!(p.app.metrics.traps.get(), 1);
}
