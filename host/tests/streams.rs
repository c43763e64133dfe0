//! Response streams cut mid-way: an SSE stream whose backend dies (or goes
//! silent) ends with an OpenAI-style error event and the terminator, and is
//! counted; other bodies end with an error as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend that answers every request with `head`, then `chunks` (each
/// sent as one HTTP/1.1 chunk), then closes the connection without the
/// last chunk, or, with `hang`, keeps it open and silent.
async fn cut_backend(content_type: &'static str, chunks: &'static [&'static str], hang: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                // Read the request head (the test requests have no body).
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    buf.push(byte[0]);
                }
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                for c in chunks {
                    out.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
                }
                let _ = s.write_all(out.as_bytes()).await;
                if hang {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            });
        }
    });
    addr
}

async fn get(url: String) -> (u16, Result<String, String>) {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
        .await
        .expect("the stream ended");
    (status, body.map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned()).map_err(|e| e.to_string()))
}

fn error_event(text: &str) -> serde_json::Value {
    let line = text.lines().find(|l| l.starts_with("data: {\"error\"")).unwrap_or_else(|| panic!("{text:?}"));
    serde_json::from_str(&line["data: ".len()..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_sse_stream_ends_with_an_error_event_and_done() {
    let backend = cut_backend("text/event-stream", &["data: tok0\n\n", "data: tok1\n\n"], false).await;
    let p = proxy(config(&[backend], "mode=route")).await;
    let (status, body) = get(format!("http://{}/v1/completions", p.listen)).await;
    assert_eq!(status, 200);
    let text = body.expect("a clean end of the body, not a broken one");
    assert!(text.starts_with("data: tok0\n\ndata: tok1\n\ndata: {\"error\":"), "{text:?}");
    assert!(text.ends_with("\n\ndata: [DONE]\n\n"), "{text:?}");
    let err = &error_event(&text)["error"];
    assert_eq!(err["type"], "BadGatewayError");
    assert_eq!(err["code"], 502);
    assert!(err["param"].is_null());
    assert!(err["message"].as_str().unwrap().contains("ended before completion"), "{err}");
    let cut = p.app.metrics.streams_cut.with_label_values(&["upstream_broken"]);
    assert!(eventually(100, || cut.get() == 1).await, "counted: {}", cut.get());
    let metrics = send("GET", &format!("http://{}/metrics", p.admin), &[], "").await.body;
    assert!(metrics.contains("prefixgate_streams_cut_total{reason=\"upstream_broken\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_cut_mid_event_starts_the_error_on_a_new_event() {
    let backend = cut_backend("text/event-stream; charset=utf-8", &["data: tok0\n\ndata: to"], false).await;
    let p = proxy(config(&[backend], "mode=route")).await;
    let (_, body) = get(format!("http://{}/", p.listen)).await;
    let text = body.unwrap();
    assert!(text.starts_with("data: tok0\n\ndata: to\n\ndata: {\"error\":"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sse_stream_is_cut_after_stream_idle_with_an_error_event() {
    let backend = cut_backend("text/event-stream", &["data: tok0\n\n"], true).await;
    let mut cfg = config(&[backend], "mode=route");
    cfg.timeouts.stream_idle_ms = 300;
    let p = proxy(cfg).await;
    let (_, body) = get(format!("http://{}/", p.listen)).await;
    let text = body.unwrap();
    assert!(text.starts_with("data: tok0\n\ndata: {\"error\":"), "{text:?}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text:?}");
    assert_eq!(error_event(&text)["error"]["type"], "GatewayTimeoutError");
    assert_eq!(p.app.metrics.streams_cut.with_label_values(&["stream_idle"]).get(), 1);
    assert_eq!(p.app.metrics.timeouts.with_label_values(&["stream_idle"]).get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_json_body_still_ends_broken() {
    let backend = cut_backend("application/json", &["{\"partial\":"], false).await;
    let p = proxy(config(&[backend], "mode=route")).await;
    let (_, body) = get(format!("http://{}/", p.listen)).await;
    assert!(body.is_err(), "a non-SSE body must not look complete: {body:?}");
    assert_eq!(p.app.metrics.streams_cut.with_label_values(&["upstream_broken"]).get(), 1);
}
