//! The embedded routing filter (`prefixgate-filter`) on this host, against
//! echo backends: it routes, labels its decisions, and keeps prefix
//! affinity.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::field_reassign_with_default)]

mod common;
use common::*;
use prefixgate::app::EMBEDDED_FILTER;

fn real(backends: &[std::net::SocketAddr], policy: &str) -> prefixgate::config::Config {
    assert!(
        !EMBEDDED_FILTER.is_empty(),
        "the routing filter was not embedded: {}",
        option_env!("PREFIXGATE_EMBEDDED_FILTER_NOTE").unwrap_or("?")
    );
    let mut c = config(backends, "");
    c.filter.module = None;
    c.filter.plugin_config = None;
    c.filter.policy = Some(policy.parse().unwrap());
    c
}

fn completion(prompt: &str) -> String {
    serde_json::json!({"model": "m", "prompt": prompt, "max_tokens": 1}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_and_labels_decisions() {
    let (a, b) = (Echo::start().await, Echo::start().await);
    let p = proxy(real(&[a.addr, b.addr], "round_robin")).await;
    let url = format!("http://{}/v1/completions", p.listen);
    for i in 0..6 {
        let r = send("POST", &url, &[("content-type", "application/json")], &completion(&format!("hi {i}")))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let backend = r.header("x-prefixgate-backend").expect("decision header");
        assert_eq!(backend, format!("127.0.0.1:{}", r.json()["port"]), "routed where it says");
        assert!(r.header("x-prefixgate-decision").is_some());
    }
    assert_eq!((a.hits() >= 2, b.hits() >= 2), (true, true), "both used: {} {}", a.hits(), b.hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_aware_keeps_a_long_prefix_on_one_backend() {
    let (a, b) = (Echo::start().await, Echo::start().await);
    let p = proxy(real(&[a.addr, b.addr], "prefix_aware")).await;
    let url = format!("http://{}/v1/completions", p.listen);
    let shared: String = "You are a helpful assistant. ".repeat(80);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..8 {
        let r = send(
            "POST",
            &url,
            &[("content-type", "application/json")],
            &completion(&format!("{shared} question {i}")),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.insert(r.header("x-prefixgate-backend").unwrap());
    }
    assert_eq!(seen.len(), 1, "one backend for one prefix: {seen:?}");
}

/// A plugin configuration the filter refuses is answered 400 with the
/// field the filter named, and the running filter keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_plugin_configuration_is_answered_with_the_field() {
    let (a, b) = (Echo::start().await, Echo::start().await);
    let p = proxy(real(&[a.addr, b.addr], "round_robin")).await;
    let admin = format!("http://{}", p.admin);
    let bad = format!(r#"{{"backends":["{}"],"miss_policy":"sideways"}}"#, a.addr).into_bytes();
    let (status, body) =
        prefixgate::swap::upload(&admin, "/admin/config", None, bad, std::time::Duration::from_secs(60))
            .await
            .unwrap();
    assert_eq!(status, 400, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("`miss_policy`") && message.contains("sideways"), "{message}");
    let url = format!("http://{}/v1/completions", p.listen);
    let r = send("POST", &url, &[("content-type", "application/json")], &completion("still here")).await;
    assert_eq!(r.status, 200, "the previous filter serves: {}", r.body);
}
