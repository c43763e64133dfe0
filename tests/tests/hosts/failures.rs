//! Replicas that fail, hang, die or fill up.

use super::{json_error, start, start_with, FAST};
use prefixgate_tests::client::Client;
use prefixgate_tests::failing_replica::Failure;
use prefixgate_tests::fleet::{start_fleet, start_fleet_with_failure, FleetWithFailure, ProcessFleet};
use prefixgate_tests::scenarios::{self, eventually, prompt, routed_to};
use prefixgate_tests::{Host, Proxy, ProxyOptions};
use std::time::Duration;

/// A replica answering 500 at once is ejected after five failures, once.
pub async fn a_replica_failing_fast_is_ejected(host: Host) {
    let FleetWithFailure { fleet, failing, addrs } =
        start_fleet_with_failure(3, FAST, Failure::Error).await.unwrap();
    let proxy = start(host, &addrs, "prefix_aware", &[("ejection_ms", "60000")]).await;
    scenarios::failing_replica_is_ejected(&proxy, &fleet.addrs(), &failing).await.unwrap();
    assert_eq!(proxy.filter_metric("prefixgate_backend_ejections_total").await.unwrap(), 1.0);
    drop(proxy);
    fleet.shutdown().await;
}

/// A replica that never answers is left after the first-byte timeout (1 s),
/// the request retried elsewhere; five such timeouts eject it.
pub async fn a_replica_that_never_answers_is_retried_and_ejected(host: Host) {
    let FleetWithFailure { fleet, failing: hung, addrs } =
        start_fleet_with_failure(2, FAST, Failure::NeverAnswers).await.unwrap();
    let options =
        ProxyOptions { first_byte_timeout: Some(Duration::from_secs(1)), ..ProxyOptions::default() };
    let proxy = start_with(host, &addrs, "round_robin", &[("ejection_ms", "60000")], &options).await;
    scenarios::hung_replica_is_retried_and_ejected(&proxy, &hung).await.unwrap();
    assert_eq!(proxy.filter_metric("prefixgate_backend_ejections_total").await.unwrap(), 1.0);
    let retried = match proxy.envoy() {
        Some(envoy) => envoy.stat("upstream_rq_retry_success").await.unwrap() as f64,
        None => proxy.filter_metric("prefixgate_retries_total").await.unwrap(),
    };
    assert!(retried >= 5.0, "{retried} retries");
    drop(proxy);
    fleet.shutdown().await;
}

/// A `vllm-sim` process killed with SIGKILL is skipped without a failed
/// request, and used again once its process is started again.
pub async fn killed_replica_is_skipped_until_it_returns(host: Host) {
    let mut fleet = ProcessFleet::start(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = start(host, &addrs, "round_robin", &[("unhealthy_after", "2")]).await;
    // A refused connection is retried on another replica: nothing fails.
    scenarios::killed_replica_is_skipped_until_it_returns(&proxy, &mut fleet).await.unwrap();
    let failures = proxy.filter_metric("prefixgate_backend_scrape_failures_total").await.unwrap();
    assert!(failures >= 2.0, "{failures} failed scrapes:\n{}", proxy.prometheus_text().await.unwrap());
}

/// With every replica down, the filter answers a local 503 with an
/// OpenAI-style JSON error instead of letting the host try a dead address,
/// and the host passes it untouched (Envoy's template rewrites only the
/// replies on which Envoy itself set a response flag).
pub async fn no_healthy_replica_gets_a_json_503(host: Host) {
    let mut fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = start(host, &addrs, "prefix_aware", &[("unhealthy_after", "2")]).await;
    let client = Client::new(proxy.base_url()).unwrap();
    routed_to(&client.completion("before", 1).await.unwrap(), &addrs);
    fleet.stop_replica(0).await.unwrap();
    fleet.stop_replica(1).await.unwrap();
    eventually(Duration::from_secs(10), "the local 503", || async {
        client.completion("anyone there?", 1).await.unwrap().decision.as_deref() == Some("no_healthy_backend")
    })
    .await;
    let reply = client.completion("anyone there?", 1).await.unwrap();
    assert_eq!(reply.status, 503);
    assert!(reply.backend.is_none());
    let body = json_error(&reply);
    assert_eq!(body["error"]["code"], 503, "{body}");
    assert_eq!(body["error"]["message"], "no healthy backend is available", "rewritten by the host: {body}");
    assert_eq!(body["error"]["type"], "ServiceUnavailableError", "{body}");
    fleet.restart_replica(0).await.unwrap();
    eventually(Duration::from_secs(10), "a replica back", || async {
        client.completion("back?", 1).await.unwrap().status == 200
    })
    .await;
    drop(proxy);
    fleet.shutdown().await;
}

/// With `max_ongoing_requests` set, a request that finds every replica at
/// its cap gets an OpenAI-shaped 429 instead of piling onto a full replica;
/// once the replica has room again, requests are served.
pub async fn a_fleet_at_its_cap_answers_a_json_429(host: Host) {
    // Real time: the long request stays in flight for seconds.
    let fleet = start_fleet(1, 1.0).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = start(host, &addrs, "least_ttft", &[("max_ongoing_requests", "1")]).await;
    let (a, b) = (Client::new(proxy.base_url()).unwrap(), Client::new(proxy.base_url()).unwrap());
    // Two requests at once, each taking seconds: one is served, the other
    // finds the only replica at its cap.
    let (first, second) = (prompt("a long answer", 400), prompt("another long answer", 400));
    let (one, two) = tokio::join!(a.completion(&first, 300), b.completion(&second, 300));
    let (one, two) = (one.unwrap(), two.unwrap());
    let mut statuses = [one.status, two.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 429], "{} / {}", one.text(), two.text());
    let refused = if one.status == 429 { one } else { two };
    assert_eq!(refused.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["error"]["type"], "RateLimitError", "{body}");
    assert_eq!(body["error"]["code"], 429, "{body}");
    // Room again once the next scrape shows the replica idle.
    eventually(Duration::from_secs(3), "a request served once the replica has room", || async {
        a.completion(&prompt("a short one", 100), 1).await.unwrap().status == 200
    })
    .await;
    drop(proxy);
    fleet.shutdown().await;
}
