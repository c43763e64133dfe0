//! The Gateway API inference extension's endpoint-picker protocol, checked
//! rule by rule without Kubernetes: a real Envoy 1.40 with the filter and the
//! `override_host` load balancer (the bootstrap `cargo xtask envoy` renders)
//! in front of simulated vLLM replicas on loopback.
//!
//! Rules (docs/proposals/004-endpoint-picker-protocol in
//! kubernetes-sigs/gateway-api-inference-extension):
//! - the picker chooses only among the endpoints of the subset hint
//!   (`x-gateway-destination-endpoint-subset`), and answers 503 when none of
//!   them is eligible or the list is empty;
//! - it names the chosen endpoint, then fallbacks, in
//!   `x-gateway-destination-endpoint`, and the proxy retries down that list;
//! - it answers 503 when no endpoint is ready.
#![allow(clippy::unwrap_used, reason = "test helpers too: a failed unwrap is a failed test")]

use prefixgate_tests::client::Client;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::fleet::{served, start_fleet};
use prefixgate_tests::{Envoy, EnvoyMode};
use std::net::SocketAddr;

/// Each scenario runs a fleet and an Envoy: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Simulated time runs this many times faster than real time.
const FAST: f64 = 50.0;

/// The subset hint's header, as the protocol names it.
const SUBSET: &str = "x-gateway-destination-endpoint-subset";

/// Envoy with the filter honouring the subset hint, under `policy`, scraping
/// every `scrape_ms` (0: never, every replica taken for healthy).
async fn picker(addrs: &[SocketAddr], policy: &str, scrape_ms: u64) -> Envoy {
    let subset = format!("\"{SUBSET}\"");
    let config = plugin_config(policy, addrs, scrape_ms, &[("subset_header", &subset)]);
    Envoy::start(addrs, EnvoyMode::Filter(config)).await.unwrap()
}

async fn completion_within(client: &Client, subset: &str, i: usize) -> prefixgate_tests::Reply {
    let body = serde_json::json!({"prompt": format!("subset request {i}"), "max_tokens": 1});
    client.post("/v1/completions", body.to_string(), &[(SUBSET, subset)]).await.unwrap()
}

fn assert_openai_503(reply: &prefixgate_tests::Reply) {
    assert_eq!(reply.status, 503, "{}", reply.text());
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"]["code"], 503, "{json}");
    assert!(json["error"]["message"].is_string(), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pick_stays_within_the_subset_hint() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let envoy = picker(&addrs, "round_robin", 100).await;
    let client = Client::new(envoy.base_url()).unwrap();

    // One member: every request goes there, and is served there.
    let only = addrs[2].to_string();
    for i in 0..6 {
        let reply = completion_within(&client, &only, i).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.backend.as_deref(), Some(only.as_str()));
    }
    assert_eq!(served(&fleet, 2), 6);

    // Two members (and an address outside the pool, ignored): round robin
    // over those two only.
    let two = format!("{},{}, 10.255.0.1:8000", addrs[0], addrs[1]);
    let mut picked = std::collections::BTreeSet::new();
    for i in 0..6 {
        let reply = completion_within(&client, &two, 10 + i).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        picked.insert(reply.backend.unwrap());
    }
    let expected: std::collections::BTreeSet<String> = [addrs[0].to_string(), addrs[1].to_string()].into();
    assert_eq!(picked, expected);
    assert_eq!(served(&fleet, 2), 6, "a request left the subset");

    // Without the hint, the whole pool.
    for i in 0..3 {
        let reply = client.completion(&format!("no hint {i}"), 1).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    assert_eq!(served(&fleet, 2), 7);
    drop(envoy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subset_with_no_eligible_endpoint_gets_a_json_503() {
    let _serial = SERIAL.lock().await;
    let mut fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let envoy = picker(&addrs, "prefix_aware", 100).await;
    let client = Client::new(envoy.base_url()).unwrap();

    // Outside the pool.
    assert_openai_503(&completion_within(&client, "10.255.0.1:8000", 0).await);
    // Not an address at all.
    assert_openai_503(&completion_within(&client, "not-an-endpoint", 1).await);
    // A member that is down: eligible no longer once its scrapes fail.
    fleet.stop_replica(1).await.unwrap();
    let down = addrs[1].to_string();
    prefixgate_tests::scenarios::eventually(
        std::time::Duration::from_secs(10),
        "the stopped replica to be ineligible",
        || {
            let client = client.clone();
            let down = down.clone();
            async move { completion_within(&client, &down, 2).await.status == 503 }
        },
    )
    .await;
    assert_openai_503(&completion_within(&client, &down, 3).await);
    // The healthy member of the same subset still serves.
    let both = format!("{},{}", addrs[0], addrs[1]);
    let reply = completion_within(&client, &both, 4).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.backend.as_deref(), Some(addrs[0].to_string().as_str()));
    drop(envoy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_retries_down_the_destination_list() {
    let _serial = SERIAL.lock().await;
    let mut fleet = start_fleet(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    // Scraping off: the filter cannot know replica 0 is gone, so it keeps
    // choosing it, and only the fallback it names saves those requests.
    let envoy = picker(&addrs, "round_robin", 0).await;
    fleet.stop_replica(0).await.unwrap();
    let client = Client::new(envoy.base_url()).unwrap();
    let mut chose_dead = 0;
    for i in 0..4 {
        let reply = client.completion(&format!("retried {i}"), 1).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        if reply.backend.as_deref() == Some(addrs[0].to_string().as_str()) {
            chose_dead += 1;
        }
    }
    assert!(chose_dead >= 1, "round robin never chose the stopped replica");
    assert_eq!(served(&fleet, 1) + served(&fleet, 2), 4);
    assert!(envoy.stat("upstream_rq_retry_success").await.unwrap() >= chose_dead);
    drop(envoy);
    fleet.shutdown().await;
}
