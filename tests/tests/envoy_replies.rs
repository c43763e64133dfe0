//! Envoy's own error replies through the shipped configuration are
//! OpenAI-shaped JSON, as prefixgate's are, while the filter's own JSON
//! replies pass through untouched. Real Envoy 1.40 and `vllm-sim` on loopback.
#![allow(clippy::unwrap_used, reason = "test helpers too: a failed unwrap is a failed test")]

use prefixgate_tests::client::Client;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::fleet::start_fleet;
use prefixgate_tests::scenarios::eventually;
use prefixgate_tests::{Envoy, EnvoyMode, Reply};
use std::time::Duration;

/// One scenario at a time: each runs a fleet and an Envoy with two workers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn json_error(reply: &Reply) -> serde_json::Value {
    let content_type = reply.headers.get("content-type").and_then(|v| v.to_str().ok());
    assert_eq!(content_type, Some("application/json"), "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text()))
}

/// With scraping off the filter takes both (stopped) replicas for healthy
/// and routes to one; Envoy's connect failure, after its retry on the
/// other, is its own 503, which the template's local_reply_config turns
/// into `{"error":{"message","type","param","code"}}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_own_503_is_openai_shaped_json() {
    let _serial = SERIAL.lock().await;
    let mut fleet = start_fleet(2, 50.0).await.unwrap();
    let addrs = fleet.addrs();
    let envoy =
        Envoy::start(&addrs, EnvoyMode::Filter(plugin_config("round_robin", &addrs, 0, &[]))).await.unwrap();
    fleet.stop_replica(0).await.unwrap();
    fleet.stop_replica(1).await.unwrap();
    let client = Client::new(envoy.base_url()).unwrap();
    let reply = client.completion("anyone there?", 1).await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());
    let body = json_error(&reply);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("upstream connect error"), "Envoy's own text: {body}");
    assert_eq!(body["error"]["type"], "ServiceUnavailableError", "{body}");
    assert_eq!(body["error"]["code"], 503, "{body}");
    assert!(body["error"]["param"].is_null(), "{body}");
    drop(envoy);
    fleet.shutdown().await;
}

/// The filter's own 503 (no healthy replica) keeps its body: the template
/// rewrites only replies on which Envoy set a response flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filters_own_reply_passes_untouched() {
    let _serial = SERIAL.lock().await;
    let mut fleet = start_fleet(2, 50.0).await.unwrap();
    let addrs = fleet.addrs();
    let config = plugin_config("prefix_aware", &addrs, 100, &[("unhealthy_after", "2")]);
    let envoy = Envoy::start(&addrs, EnvoyMode::Filter(config)).await.unwrap();
    fleet.stop_replica(0).await.unwrap();
    fleet.stop_replica(1).await.unwrap();
    let client = Client::new(envoy.base_url()).unwrap();
    eventually(Duration::from_secs(10), "the filter's 503", || async {
        client.completion("anyone there?", 1).await.unwrap().decision.as_deref() == Some("no_healthy_backend")
    })
    .await;
    let reply = client.completion("anyone there?", 1).await.unwrap();
    assert_eq!(reply.status, 503);
    let body = json_error(&reply);
    assert_eq!(body["error"]["message"], "no healthy backend is available", "rewritten by Envoy: {body}");
    assert_eq!(body["error"]["type"], "ServiceUnavailableError", "{body}");
    drop(envoy);
    fleet.shutdown().await;
}
