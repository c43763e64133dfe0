//! ABI conformance against an SDK 0.2.5 test filter: every import family,
//! pause/resume, callouts, timers, queues, shared-data CAS, metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_callbacks_see_headers_body_properties_and_route() {
    let (a, b) = (Echo::start().await, Echo::start().await);
    let p = proxy(config(&[a.addr, b.addr], "mode=route")).await;
    let url = format!("http://{}/v1/completions?x=1", p.listen);
    let r = send("POST", &url, &[("x-client", "1")], &format!("route-to={} REPLACE_ME", b.addr)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    assert_eq!(doc["port"], b.addr.port(), "routed by the header set at end of body");
    assert_eq!(doc["body"], format!("route-to={} replaced", b.addr), "set_buffer_bytes edited the body");
    assert_eq!(
        r.upstream_header("x-tf-props").unwrap(),
        "/v1/completions?x=1 POST prefixgate -",
        "empty root id reads as None"
    );
    assert!(r.upstream_header("x-tf-source").unwrap().starts_with("127.0.0.1:"));
    assert_eq!(r.upstream_header("x-tf-cas").unwrap(), "ok");
    assert_eq!(r.upstream_header("x-tf-negative").unwrap(), "refused");
    assert_eq!(r.upstream_header("x-tf-body-len").unwrap(), (9 + b.addr.to_string().len() + 11).to_string());
    assert_eq!(r.upstream_header("x-client").unwrap(), "1");
    assert!(r.upstream_header("x-envoy-original-dst-host").is_none(), "routing header is not forwarded");
    assert_eq!(r.header("x-tf-response").unwrap(), "seen");
    assert_eq!(r.header("x-tf-upstream").unwrap(), b.addr.to_string());
    assert_eq!(a.hits(), 0);
    assert!(eventually(50, || shared(&p, "tf_logs").as_deref() == Some("1")).await, "on_log ran once");
    let metrics = send("GET", &format!("http://{}/metrics", p.admin), &[], "").await.body;
    assert!(metrics.contains("tf_requests 1"), "{metrics}");
    assert!(metrics.contains("tf_hist_count 1"), "{metrics}");
    assert!(metrics.contains("prefixgate_requests_total"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_without_body_and_no_route_uses_fallback() {
    let a = Echo::start().await;
    let p = proxy(config(&[a.addr], "mode=route")).await;
    let r = send("GET", &format!("http://{}/x", p.listen), &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-tf-cas").unwrap(), "ok", "decided in on_request_headers(eos)");
    assert_eq!(a.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_response() {
    let a = Echo::start().await;
    let p = proxy(config(&[a.addr], "mode=local")).await;
    let r = send("POST", &format!("http://{}/", p.listen), &[], "body").await;
    assert_eq!(r.status, 418);
    assert_eq!(r.body, "teapot");
    assert_eq!(r.header("x-tf").unwrap(), "local");
    assert_eq!(a.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callout_pauses_then_resumes_with_effective_context() {
    let a = Echo::start().await;
    let p = proxy(config(&[a.addr], &format!("mode=callout cluster=prefixgate_backends target={}", a.addr)))
        .await;
    let r = send("POST", &format!("http://{}/", p.listen), &[], "x").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let callout = r.upstream_header("x-tf-callout").unwrap();
    assert!(callout.starts_with("200 "), "{callout}");
    assert_eq!(a.hits(), 2, "one callout, one proxied request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callout_outside_backends_is_bad_argument() {
    let a = Echo::start().await;
    let outside = Echo::start().await;
    let p = proxy(config(&[a.addr], &format!("mode=callout cluster=nope target={}", outside.addr))).await;
    let r = send("POST", &format!("http://{}/", p.listen), &[], "x").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-tf-callout").unwrap(), "BadArgument");
    assert_eq!(outside.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_queues_and_tick_callouts() {
    let a = Echo::start().await;
    let p = proxy(config(
        &[a.addr],
        &format!("mode=route tick=10 tick_cluster=prefixgate_backends target={}", a.addr),
    ))
    .await;
    assert!(
        eventually(200, || shared(&p, "tf_ticks")
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|n| n >= 6))
        .await
    );
    assert!(eventually(200, || shared(&p, "tf_queue_seen").is_some()).await, "on_queue_ready ran");
    assert!(
        eventually(200, || shared(&p, "tf_scrape").is_some_and(|s| s.starts_with("200 "))).await,
        "tick callout answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_data_cas_counts_every_request_across_vms() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], "mode=route");
    cfg.filter.vms = 3;
    let p = proxy(cfg).await;
    let url = format!("http://{}/", p.listen);
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { send("POST", &url, &[], "x").await.status }
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    // A callback that overran its deadline (wall-clock: a starved machine)
    // traps and skips its count; say so if that is why.
    assert_eq!(
        shared(&p, "tf_counter").as_deref(),
        Some("60"),
        "filter traps: {}",
        p.app.metrics.traps.get()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_refusal_and_trap_refuse_the_module() {
    let a = Echo::start().await;
    for mode in ["reject", "trap_configure"] {
        let err = prefixgate::app::start(config(&[a.addr], &format!("mode={mode}"))).await.err().unwrap();
        assert!(err.to_string().contains("proxy_on_configure"), "{err}");
    }
}
