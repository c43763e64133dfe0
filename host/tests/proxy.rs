//! The proxy path: failure handling, upstream checks, retries, streaming
//! and hot swap, with the test filter and echo backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use http_body_util::BodyExt;
use prefixgate::config::FailureMode;
use std::time::Instant;

fn traps(p: &prefixgate::app::Running) -> u64 {
    p.app.metrics.traps.get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_and_looping_filters_fail_open() {
    let a = Echo::start().await;
    for mode in ["trap", "loop"] {
        let p = proxy(config(&[a.addr], &format!("mode={mode}"))).await;
        let r = send("POST", &format!("http://{}/", p.listen), &[], "x").await;
        assert_eq!(r.status, 200, "{mode}: {}", r.body);
        assert_eq!(traps(&p), 1, "{mode}: counted");
        assert_eq!(r.headers["x-prefixgate-decision"], "fallback_filter_failed", "{mode}: labelled");
        assert_eq!(r.headers["x-prefixgate-backend"], a.addr.to_string().as_str(), "{mode}");
        // Every request traps (the spare that replaces a trapped VM runs
        // the same module); each is routed by the fallback.
        for _ in 0..3 {
            let r = send("POST", &format!("http://{}/", p.listen), &[], "x").await;
            assert_eq!(r.status, 200, "{mode}: {}", r.body);
        }
        let n = traps(&p);
        assert!(n >= 1, "{mode}");
        let metrics = send("GET", &format!("http://{}/metrics", p.admin), &[], "").await.body;
        assert!(metrics.contains(&format!("prefixgate_filter_traps_total {n}")), "{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_503() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], "mode=trap");
    cfg.failure_mode = FailureMode::Closed;
    let p = proxy(cfg).await;
    let r = send("POST", &format!("http://{}/", p.listen), &[], "x").await;
    assert_eq!(r.status, 503);
    assert_eq!(a.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_supplied_upstream_outside_backends_never_reached() {
    let a = Echo::start().await;
    let outside = Echo::start().await;
    let p = proxy(config(&[a.addr], "mode=route")).await;
    let hdr = outside.addr.to_string();
    let r = send("POST", &format!("http://{}/", p.listen), &[("x-envoy-original-dst-host", &hdr)], "x").await;
    assert_eq!(r.status, 502);
    let r = send("GET", &format!("http://{}/", p.listen), &[("x-envoy-original-dst-host", &hdr)], "").await;
    assert_eq!(r.status, 502);
    assert_eq!(outside.hits(), 0);
    assert_eq!(a.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_retried_on_another_backend() {
    let a = Echo::start().await;
    let dead = dead_addr().await;
    let p = proxy(config(&[dead, a.addr], &format!("mode=route route={dead}"))).await;
    let r = send("POST", &format!("http://{}/", p.listen), &[], "x").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["port"], a.addr.port());
    assert_eq!(p.app.metrics.retries.with_label_values(&["upstream_error"]).get(), 1);
    assert_eq!(r.headers["x-prefixgate-decision"], "retry");
    assert_eq!(r.headers["x-prefixgate-backend"], a.addr.to_string().as_str(), "names where it went");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_chunk_by_chunk_through_body_callbacks() {
    let a = Echo::start().await;
    let p = proxy(config(&[a.addr], "mode=route upper=1")).await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let resp = client.get(format!("http://{}/sse", p.listen).parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            if !data.is_empty() {
                arrivals.push(Instant::now());
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
    assert_eq!(text, "DATA: TOK0\n\nDATA: TOK1\n\nDATA: TOK2\n\nDATA: TOK3\n\nDATA: TOK4\n\n");
    assert!(arrivals.len() >= 5, "one frame per event, got {}", arrivals.len());
    let spread = arrivals[arrivals.len() - 1] - arrivals[0];
    // The sim-side spread is 400 ms; buffering would collapse it to ~0.
    assert!(spread.as_millis() >= 300, "chunks arrived together ({spread:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_config_and_module_keeps_shared_data_and_refuses_bad_ones() {
    let (a, b) = (Echo::start().await, Echo::start().await);
    let p = proxy(config(&[a.addr, b.addr], &format!("mode=route route={}", a.addr))).await;
    let url = format!("http://{}/", p.listen);
    let admin = format!("http://{}", p.admin);
    assert_eq!(send("POST", &url, &[], "x").await.json()["port"], a.addr.port());
    let before = send("GET", &format!("{admin}/admin/status"), &[], "").await.json();

    let r = send("PUT", &format!("{admin}/admin/config"), &[], &format!("mode=route route={}", b.addr)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["swaps"], 1);
    assert_eq!(send("POST", &url, &[], "x").await.json()["port"], b.addr.port());

    let r = send("PUT", &format!("{admin}/admin/config"), &[], "mode=reject").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("proxy_on_configure"), "{}", r.body);
    let r = send("PUT", &format!("{admin}/admin/module"), &[], "not wasm").await;
    assert_eq!(r.status, 400);
    assert_eq!(send("POST", &url, &[], "x").await.json()["port"], b.addr.port(), "old filter still serves");

    let module = std::fs::read(test_filter()).unwrap();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::put(format!("{admin}/admin/module"))
        .body(http_body_util::Full::new(bytes::Bytes::from(module)))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 200);
    let r = send("POST", &url, &[], "x").await;
    assert_eq!(r.json()["port"], b.addr.port());
    // Four requests, and the canary request each of the two swaps sent
    // through the new filter before it committed.
    assert_eq!(shared(&p, "tf_counter").as_deref(), Some("6"), "shared data survived both swaps");
    let after = send("GET", &format!("{admin}/admin/status"), &[], "").await.json();
    assert_eq!(after["swaps"], 2);
    assert_eq!(after["module"]["sha256"], before["module"]["sha256"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_enforced() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], "mode=route");
    cfg.admin_token = Some("s3cret".into());
    let p = proxy(cfg).await;
    let url = format!("http://{}/admin/status", p.admin);
    assert_eq!(send("GET", &url, &[], "").await.status, 401);
    assert_eq!(send("GET", &url, &[("authorization", "Bearer s3cret")], "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_vm_is_replaced_at_once_and_the_next_request_is_filtered() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], &format!("mode=route route={}", a.addr));
    cfg.filter.vms = 1;
    let p = proxy(cfg).await;
    let url = format!("http://{}/", p.listen);
    for round in 1..=3u64 {
        let r = send("POST", &url, &[("x-tf-trap", "1")], "x").await;
        assert_eq!(r.status, 200, "{round}: {}", r.body);
        assert_eq!(r.headers["x-prefixgate-decision"], "fallback_filter_failed", "{round}");
        assert_eq!(traps(&p), round);
        // The very next request finds a VM in the slot: the filter serves it.
        let r = send("POST", &url, &[], "x").await;
        assert_eq!(r.status, 200, "{round}: {}", r.body);
        assert_eq!(r.header("x-tf-response").as_deref(), Some("seen"), "{round}: response callbacks ran");
        assert!(r.header("x-prefixgate-decision").is_none(), "{round}: not a fallback");
        assert_eq!(r.upstream_header("x-tf-cas").as_deref(), Some("ok"), "{round}: request callbacks ran");
        // A new spare is started off the request path.
        assert!(eventually(250, || p.app.current.get().pool.spare_ready()).await, "{round}: spare rebuilt");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bearer_scheme_is_case_insensitive() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], "mode=route");
    cfg.admin_token = Some("s3cret".into());
    assert!(prefixgate::app::admin_token_warning(&cfg).is_none());
    let p = proxy(cfg).await;
    let url = format!("http://{}/admin/status", p.admin);
    assert_eq!(send("GET", &url, &[("authorization", "bearer s3cret")], "").await.status, 200);
    let r = send("GET", &url, &[("authorization", "Bearer s3cre")], "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "UnauthorizedError", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_token_is_warned_about() {
    let a = Echo::start().await;
    let cfg = config(&[a.addr], "mode=route");
    let warning = prefixgate::app::admin_token_warning(&cfg).expect("a warning");
    assert!(warning.contains("no token") && warning.contains("admin_token"), "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_uploads_past_their_cap_get_413() {
    let a = Echo::start().await;
    let p = proxy(config(&[a.addr], "mode=route")).await;
    let admin = format!("http://{}", p.admin);
    // A declared length past the cap is refused before any of the body is
    // read: only the head is sent, so no write can race the early answer.
    {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(p.admin).await.unwrap();
        let head = format!(
            "PUT /admin/config HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            prefixgate::admin::MAX_CONFIG_UPLOAD + 1
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (answer, _) = read_until_closed(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], 413, "{answer}");
    }
    // Chunked, with no declared length: cut off while reading.
    let client: hyper_util::client::legacy::Client<_, http_body_util::StreamBody<_>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let chunk = bytes::Bytes::from(vec![0u8; 1 << 20]);
    let chunks = (0..(prefixgate::admin::MAX_MODULE_UPLOAD >> 20) + 2)
        .map(move |_| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk.clone())));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
    let req = http::Request::put(format!("{admin}/admin/module")).body(body).unwrap();
    let resp = client.request(req).await;
    match resp {
        Ok(resp) => assert_eq!(resp.status(), 413),
        // The proxy may answer and close before the client has sent it all.
        Err(e) => assert!(!e.is_connect(), "{e}"),
    }
    let r = send("GET", &format!("{admin}/admin/status"), &[], "").await;
    assert_eq!(r.json()["swaps"], 0, "nothing was swapped");
    assert_eq!(send("POST", &format!("http://{}/", p.listen), &[], "x").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hop_header_is_counted_and_too_many_hops_get_508() {
    let a = Echo::start().await;
    let p = proxy(config(&[a.addr], "mode=route")).await;
    let url = format!("http://{}/", p.listen);
    let r = send("POST", &url, &[], "x").await;
    assert_eq!(r.upstream_header("x-prefixgate-hops").as_deref(), Some("1"));
    let r = send("POST", &url, &[("x-prefixgate-hops", "3")], "x").await;
    assert_eq!(r.upstream_header("x-prefixgate-hops").as_deref(), Some("4"));
    let r = send("POST", &url, &[("x-prefixgate-hops", "4")], "x").await;
    assert_eq!(r.status, 508, "{}", r.body);
    assert_eq!(r.json()["error"]["type"], "LoopDetectedError");
    assert_eq!(a.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_pointing_at_each_other_stop_the_loop_with_508() {
    // Take a free port for the first proxy, so the second can name it.
    let first = dead_addr().await;
    let second = proxy(config(&[first], "mode=route")).await;
    let mut cfg = config(&[second.listen], "mode=route");
    cfg.listen = first;
    let first = proxy(cfg).await;
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        send("POST", &format!("http://{}/", first.listen), &[], "x"),
    )
    .await
    .expect("the loop ends");
    assert_eq!(r.status, 508, "{}", r.body);
    assert_eq!(first.app.metrics.loops.get() + second.app.metrics.loops.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_swap_naming_the_proxy_itself_is_refused() {
    let a = Echo::start().await;
    let p = proxy(config(&[a.addr], "mode=route")).await;
    let admin = format!("http://{}", p.admin);
    for own in [p.listen, p.admin] {
        let cfg = format!(r#"{{"backends":["{}","{own}"]}}"#, a.addr);
        let r = send("PUT", &format!("{admin}/admin/config"), &[], &cfg).await;
        assert_eq!(r.status, 400, "{own}: {}", r.body);
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("own listen or admin"), "{}", r.body);
    }
    let r = send("PUT", &format!("{admin}/admin/config"), &[], &format!(r#"{{"backends":["{}"]}}"#, a.addr))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}
