//! The filter's decision metrics, as each host exports them.

use super::{start, FAST};
use prefixgate_filter::Reason;
use prefixgate_tests::client::Client;
use prefixgate_tests::exposition;
use prefixgate_tests::fleet::start_fleet;
use prefixgate_tests::scenarios::{eventually, prompt};
use prefixgate_tests::{Host, Proxy};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Envoy's `/stats/prometheus` and prefixgate's `/metrics` both show the
/// filter's decisions as one family labelled by policy and reason, a
/// healthy gauge per backend, and the match-ratio histogram counting the
/// requests that had a prompt.
pub async fn decisions_are_counted_by_policy_and_reason(host: Host) {
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = start(host, &addrs, "prefix_aware", &[]).await;
    let client = Client::new(proxy.base_url()).unwrap();
    let shared = prompt("one conversation", 1_000);
    for i in 0..4 {
        let reply = client.completion(&format!("{shared} turn {i}"), 2).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let reply = client.post("/v1/completions", "not json", &[]).await.unwrap();
    assert_eq!(reply.reason(), Some("no_prompt"), "{:?}", reply.decision);
    eventually(Duration::from_secs(10), "a scrape of every backend", || async {
        proxy.filter_metric("prefixgate_backend_scrapes_total").await.unwrap() >= 2.0
    })
    .await;

    let text = proxy.prometheus_text().await.unwrap();
    let parsed = exposition::parse(&text).unwrap();
    let reasons: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let decisions = exposition::series(&parsed, "prefixgate_decisions_total");
    assert!(!decisions.is_empty(), "no prefixgate_decisions_total family in\n{text}");
    for (labels, _) in &decisions {
        let names: Vec<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(names, ["policy", "reason"], "{labels:?}");
        assert_eq!(labels["policy"], "prefix_aware");
        assert!(reasons.contains(labels["reason"].as_str()), "{labels:?}");
    }
    let count =
        |reason: &str| decisions.iter().filter(|(l, _)| l["reason"] == reason).map(|(_, n)| n).sum::<f64>();
    assert!(count("prefix_match") >= 3.0 && count("no_prompt") >= 1.0, "{decisions:?}");
    // The per-backend gauges, labelled the same way in both hosts.
    let healthy = exposition::series(&parsed, "prefixgate_backend_healthy");
    let named: BTreeSet<String> = healthy.iter().map(|(l, _)| l["backend"].clone()).collect();
    assert_eq!(named, addrs.iter().map(SocketAddr::to_string).collect::<BTreeSet<_>>(), "{healthy:?}");
    assert!(healthy.iter().all(|(_, v)| *v == 1.0), "{healthy:?}");
    match host {
        // Envoy: the histogram's buckets are cumulative counters with an `le` tag.
        Host::Envoy => {
            let buckets = exposition::series(&parsed, "prefixgate_match_ratio_bucket");
            let by_bound = |le: &str| buckets.iter().find(|(l, _)| l["le"] == le).map(|(_, n)| *n);
            assert_eq!(by_bound("+Inf"), Some(4.0), "{buckets:?}");
            assert!(by_bound("0.5") <= by_bound("1"), "{buckets:?}");
        }
        // prefixgate: a histogram family, its count the four prompts.
        Host::Prefixgate => {
            let [(_, matched)] = exposition::series(&parsed, "prefixgate_match_ratio")[..] else {
                panic!("one unlabelled match-ratio histogram expected:\n{text}")
            };
            assert_eq!(matched, 4.0, "{text}");
        }
    }
    drop(proxy);
    fleet.shutdown().await;
}
