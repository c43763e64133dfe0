//! Hot swap under faults: a filter that traps or loops on the canary
//! request or tick is refused while the old one keeps serving; one that
//! starts trapping once it serves is rolled back; and a response whose VM
//! was replaced while it was in flight still says where it went.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::raw_module::{raw_module, Callback};
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

fn status(p: &prefixgate::app::Running) -> serde_json::Value {
    prefixgate::admin::status(&p.app)
}

async fn put(p: &prefixgate::app::Running, route: &str, body: Vec<u8>) -> (u16, String) {
    let admin = format!("http://{}", p.admin);
    let (status, text) =
        prefixgate::swap::upload(&admin, route, None, body, Duration::from_secs(60)).await.unwrap();
    (status.as_u16(), text)
}

/// `prefixgate swap` against an admin address that accepts the connection
/// and never answers ends with an error naming the URL and the limit.
#[tokio::test]
async fn an_upload_that_gets_no_answer_ends_at_its_timeout() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        // Accept and hold the connection, reading nothing back.
        let (stream, _) = silent.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let dir = std::env::temp_dir().join(format!("prefixgate-swap-timeout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("plugin.json");
    std::fs::write(&config, br#"{"backends":["127.0.0.1:1"]}"#).unwrap();
    let args = prefixgate::cli::SwapArgs {
        admin: format!("http://{addr}"),
        config: Some(config),
        module: None,
        token: None,
        timeout_secs: 1,
    };
    let err = tokio::time::timeout(Duration::from_secs(20), prefixgate::swap::run(args))
        .await
        .unwrap()
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains(&format!("http://{addr}/admin/config")) && message.contains("no answer within 1 s"),
        "{message}"
    );
    held.abort();
    std::fs::remove_dir_all(&dir).ok();
}

/// The old filter (`mode=route route=a`) still routes to `a` itself.
async fn old_filter_serves(p: &prefixgate::app::Running, a: SocketAddr, what: &str) {
    let r = send("POST", &format!("http://{}/", p.listen), &[], "x").await;
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    assert_eq!(r.json()["port"], a.port(), "{what}: the old filter routes");
    assert_eq!(r.upstream_header("x-tf-cas").as_deref(), Some("ok"), "{what}: its callbacks ran");
    assert!(r.header("x-prefixgate-decision").is_none(), "{what}: not a fallback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_traps_or_loops_on_the_canary_request_or_tick_is_refused() {
    let (a, b) = (Echo::start().await, Echo::start().await);
    let p = proxy(config(&[a.addr, b.addr], &format!("mode=route route={}", a.addr))).await;
    let cases = [
        ("mode=trap", "on_request_headers"),
        ("mode=loop", "on_request_headers"),
        ("mode=route trap_tick=1", "on_tick"),
        ("mode=route loop_tick=1", "on_tick"),
    ];
    for (i, (cfg, callback)) in cases.into_iter().enumerate() {
        let cfg = format!("{cfg} route={}", b.addr);
        let (code, body) = put(&p, "/admin/config", cfg.clone().into_bytes()).await;
        assert_eq!(code, 400, "{cfg}: {body}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(message.contains("canary") && message.contains(callback), "{cfg}: {message}");
        assert!(message.contains("previous filter keeps serving"), "{message}");
        assert_eq!(doc["error"]["code"], 400);
        let failed = p.app.metrics.hot_swaps.with_label_values(&["config", "canary_failed"]).get();
        assert_eq!(failed, i as u64 + 1, "{cfg}: counted");
        assert_eq!(status(&p)["swaps"], 0, "{cfg}: nothing swapped");
        old_filter_serves(&p, a.addr, &cfg).await;
    }
    assert_eq!(b.hits(), 0, "the refused filters never routed a request");
    // A good configuration still swaps in, through the same canary.
    let (code, body) = put(&p, "/admin/config", format!("mode=route route={}", b.addr).into_bytes()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(send("POST", &format!("http://{}/", p.listen), &[], "x").await.json()["port"], b.addr.port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_traps_on_the_canary_is_refused_and_a_sound_one_swaps_in() {
    let a = Echo::start().await;
    let p = proxy(config(&[a.addr], &format!("mode=route route={}", a.addr))).await;
    let before = status(&p)["module"]["sha256"].clone();
    for (module, callback) in [
        (raw_module(Callback::Trap, Callback::Ok), "on_request_headers"),
        (raw_module(Callback::Ok, Callback::Trap), "on_tick"),
    ] {
        let (code, body) = put(&p, "/admin/module", module).await;
        assert_eq!(code, 400, "{callback}: {body}");
        assert!(body.contains(callback) && body.contains("canary"), "{body}");
        assert_eq!(status(&p)["module"]["sha256"], before, "{callback}: the old module serves");
        old_filter_serves(&p, a.addr, callback).await;
    }
    // The raw module itself is sound when it does not trap: it swaps in and
    // leaves routing to the host (it names no upstream).
    let (code, body) = put(&p, "/admin/module", raw_module(Callback::Ok, Callback::Ok)).await;
    assert_eq!(code, 200, "{body}");
    let r = send("POST", &format!("http://{}/", p.listen), &[], "x").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-prefixgate-decision").as_deref(), Some("fallback_no_upstream"));
}

/// Sends requests until `done` holds (at most `n`); returns how many went.
async fn drive(p: &prefixgate::app::Running, n: usize, done: impl Fn() -> bool) -> usize {
    for i in 0..n {
        if done() {
            return i;
        }
        let r = send("POST", &format!("http://{}/", p.listen), &[], "x").await;
        assert_eq!(r.status, 200, "fail-open while the filter traps: {}", r.body);
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_in_config_whose_trap_rate_spikes_is_rolled_back() {
    let (a, b) = (Echo::start().await, Echo::start().await);
    let old = format!("mode=route route={}", a.addr);
    let mut cfg = config(&[a.addr, b.addr], &old);
    cfg.filter.rollback.traps = 3;
    let p = proxy(cfg).await;
    // The canary is the first request on its VM: it passes.
    let bad = format!("mode=route route={} trap_after=1", b.addr);
    let (code, body) = put(&p, "/admin/config", bad.into_bytes()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(&p)["swaps"], 1);
    let sent = drive(&p, 60, || p.app.current.rollbacks() > 0).await;
    assert!(eventually(250, || p.app.current.rollbacks() == 1).await, "rolled back after {sent} requests");
    assert!(p.app.metrics.traps.get() >= 3);
    let doc = status(&p);
    assert_eq!(doc["plugin_config"], old.as_str(), "the previous configuration is back");
    assert_eq!(doc["rollbacks"], 1);
    assert!(doc["last_rollback"].as_str().unwrap().contains("trapped 3 times"), "{doc}");
    let metrics = send("GET", &format!("http://{}/metrics", p.admin), &[], "").await.body;
    let rolled_back = r#"prefixgate_hot_swaps_total{kind="config",result="rolled_back"} 1"#;
    assert!(metrics.contains(rolled_back), "{metrics}");
    for i in 0..4 {
        old_filter_serves(&p, a.addr, &format!("after the rollback, request {i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_in_module_whose_trap_rate_spikes_is_rolled_back_and_a_quiet_one_is_kept() {
    let a = Echo::start().await;
    let mut cfg = config(&[a.addr], &format!("mode=route route={}", a.addr));
    cfg.filter.rollback.traps = 3;
    let p = proxy(cfg).await;
    let before = status(&p)["module"]["sha256"].clone();
    let (code, body) = put(&p, "/admin/module", raw_module(Callback::TrapAfter(1), Callback::Ok)).await;
    assert_eq!(code, 200, "{body}");
    assert_ne!(status(&p)["module"]["sha256"], before);
    let sent = drive(&p, 60, || p.app.current.rollbacks() > 0).await;
    assert!(eventually(250, || p.app.current.rollbacks() == 1).await, "rolled back after {sent} requests");
    assert_eq!(status(&p)["module"]["sha256"], before, "the previous module is back");
    old_filter_serves(&p, a.addr, "after the rollback").await;
    // A module that never traps stays through as many requests.
    let (code, body) = put(&p, "/admin/module", raw_module(Callback::Ok, Callback::Ok)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(drive(&p, 20, || false).await, 20);
    assert_eq!(p.app.current.rollbacks(), 1, "no second rollback");
}

/// A backend that holds every request until the gate opens, and says
/// when a request has arrived.
struct Gated {
    addr: SocketAddr,
    arrived: tokio::sync::mpsc::UnboundedReceiver<()>,
    open: tokio::sync::watch::Sender<bool>,
}

async fn gated() -> Gated {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel();
    let (open, gate) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (arrived, gate) = (arrived_tx.clone(), gate.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    let (arrived, mut gate) = (arrived.clone(), gate.clone());
                    async move {
                        let _ = arrived.send(());
                        let _ = gate.wait_for(|open| *open).await;
                        Ok::<_, Infallible>(http::Response::new(Full::new(bytes::Bytes::from_static(b"{}"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Gated { addr, arrived, open }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_whose_vm_was_replaced_in_flight_is_labelled_by_the_host() {
    let mut g = gated().await;
    let other = Echo::start().await;
    let mut cfg = config(&[g.addr, other.addr], &format!("mode=route route={}", g.addr));
    cfg.filter.vms = 1;
    let p = proxy(cfg).await;
    let url = format!("http://{}/", p.listen);
    let held = tokio::spawn({
        let url = url.clone();
        async move { send("POST", &url, &[], "x").await }
    });
    tokio::time::timeout(Duration::from_secs(10), g.arrived.recv()).await.expect("the request arrives");
    // Another request traps the only VM: it is replaced while the first is
    // waiting for its response headers. (Its fallback may pick the gated
    // backend too, so it is awaited only once the gate is open.)
    let trapping = tokio::spawn({
        let url = url.clone();
        async move { send("POST", &url, &[("x-tf-trap", "1")], "x").await }
    });
    assert!(eventually(250, || p.app.metrics.traps.get() == 1).await, "the VM trapped");
    g.open.send(true).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), trapping).await.expect("answered").unwrap();
    assert_eq!(r.header("x-prefixgate-decision").as_deref(), Some("fallback_filter_failed"));
    let r = tokio::time::timeout(Duration::from_secs(10), held).await.expect("answered").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-tf-response").is_none(), "the filter's response callbacks could not run");
    assert_eq!(r.header("x-prefixgate-backend"), Some(g.addr.to_string()), "where it went");
    assert_eq!(r.header("x-prefixgate-decision").as_deref(), Some("filter_vm_replaced"));
    assert_eq!(p.app.metrics.labels_lost.get(), 1);
    // The next request is the new VM's, labelled by the filter as usual.
    let r = send("POST", &url, &[], "x").await;
    assert_eq!(r.header("x-tf-response").as_deref(), Some("seen"));
    assert!(r.header("x-prefixgate-decision").is_none());
}
