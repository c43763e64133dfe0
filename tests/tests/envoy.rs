//! The prefixgate filter in a real Envoy 1.40 (`--concurrency 2`) in front of
//! simulated vLLM replicas on loopback. Envoy missing is a failure, not a skip.
#![allow(clippy::unwrap_used, reason = "test helpers too: a failed unwrap is a failed test")]

use prefixgate_filter::Reason;
use prefixgate_tests::client::Client;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::envoy_config::UpstreamTimeouts;
use prefixgate_tests::exposition;
use prefixgate_tests::failing_replica::Failure;
use prefixgate_tests::fleet::{served, sim_queued, start_fleet, start_fleet_with_failure, FleetWithFailure};
use prefixgate_tests::scenarios::{self, eventually, prompt, routed_to, SwapLoad};
use prefixgate_tests::{Envoy, EnvoyMode};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Each scenario runs a fleet and an Envoy with two workers; on a small
/// machine they run one at a time so that no scenario starves another.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Simulated time runs this many times faster than real time.
const FAST: f64 = 50.0;

async fn filter_envoy(addrs: &[SocketAddr], policy: &str, extra: &[(&str, &str)]) -> Envoy {
    Envoy::start(addrs, EnvoyMode::Filter(plugin_config(policy, addrs, 100, extra))).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_holds_across_worker_threads() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(4, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let envoy = filter_envoy(&addrs, "prefix_aware", &[]).await;
    let placement = scenarios::affinity(&envoy, &addrs, 8, 6).await.unwrap();
    // Both workers served connections, so both VMs routed with one index.
    for worker in 0..2 {
        let accepted = envoy.stat(&format!("worker_{worker}.downstream_cx_total")).await.unwrap();
        assert!(accepted > 0, "worker {worker} accepted no connection");
    }
    // The groups were spread (smallest tenant on a miss), not piled on one.
    let distinct: std::collections::BTreeSet<_> = placement.iter().collect();
    assert!(distinct.len() >= 2, "every group went to one replica: {placement:?}");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_cycles_and_pow2_spreads() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let envoy = filter_envoy(&addrs, "round_robin", &[]).await;
    scenarios::round_robin_cycles(&envoy, &addrs, 4).await.unwrap();
    drop(envoy);
    let envoy = filter_envoy(&addrs, "pow2", &[]).await;
    scenarios::pow2_spreads(&envoy, &addrs, 48, 6).await.unwrap();
    fleet.shutdown().await;
}

/// Keeps `n` long requests running on `target`, straight to the replica
/// (not through the router), until the returned flag is set.
fn load_directly(target: SocketAddr, n: usize) -> (Arc<AtomicBool>, tokio::task::JoinSet<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let stop = stop.clone();
        tasks.spawn(async move {
            let client = Client::new(&format!("http://{target}")).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let _ = client.completion(&format!("background load {i}"), 2_000).await;
            }
        });
    }
    (stop, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_load_steers_pow2_and_prefix_aware_away_from_a_busy_replica() {
    let _serial = SERIAL.lock().await;
    // A slow fleet: the direct load stays on the busy replica while we route.
    let fleet = start_fleet(3, 2.0).await.unwrap();
    let addrs = fleet.addrs();
    let busy = addrs[0];
    let (stop, mut tasks) = load_directly(busy, 16);
    eventually(Duration::from_secs(10), "the direct load to reach the busy replica", || async {
        sim_queued(busy).await >= 16
    })
    .await;

    // pow2: the router has nothing in flight there; only the scrape shows the load.
    let envoy = filter_envoy(&addrs, "pow2", &[]).await;
    let client = Client::new(envoy.base_url()).unwrap();
    eventually(Duration::from_secs(10), "three completed scrapes", || async {
        envoy.stat("prefixgate_backend_scrapes_total").await.unwrap() >= 3
    })
    .await;
    for i in 0..24 {
        let reply = client.completion(&format!("pow2 under load {i}"), 1).await.unwrap();
        let to = routed_to(&reply, &addrs);
        assert_ne!(addrs[to], busy, "pow2 chose the busy replica: {:?}", reply.decision);
    }
    drop(envoy);

    // prefix_aware: a load spread of 16 > 10 is imbalanced, so pow2 decides.
    let envoy = filter_envoy(&addrs, "prefix_aware", &[]).await;
    let client = Client::new(envoy.base_url()).unwrap();
    eventually(Duration::from_secs(10), "prefix_aware to see the imbalance", || async {
        let reply = client.completion("imbalance probe", 1).await.unwrap();
        reply.reason() == Some("imbalanced")
    })
    .await;
    for i in 0..12 {
        let reply = client.completion(&format!("prefix_aware under load {i}"), 1).await.unwrap();
        assert_eq!(reply.reason(), Some("imbalanced"), "{:?}", reply.decision);
        assert_ne!(addrs[routed_to(&reply, &addrs)], busy, "{:?}", reply.decision);
    }
    stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(envoy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_failing_fast_is_ejected() {
    let _serial = SERIAL.lock().await;
    let FleetWithFailure { fleet, failing, addrs } =
        start_fleet_with_failure(3, FAST, Failure::Error).await.unwrap();
    let envoy = filter_envoy(&addrs, "prefix_aware", &[("ejection_ms", "60000")]).await;
    scenarios::failing_replica_is_ejected(&envoy, &fleet.addrs(), &failing).await.unwrap();
    assert_eq!(envoy.stat("prefixgate_backend_ejections_total").await.unwrap(), 1);
    drop(envoy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_answers_is_retried_and_ejected() {
    let _serial = SERIAL.lock().await;
    let FleetWithFailure { fleet, failing: hung, addrs } =
        start_fleet_with_failure(2, FAST, Failure::NeverAnswers).await.unwrap();
    let config = plugin_config("round_robin", &addrs, 100, &[("ejection_ms", "60000")]);
    let timeouts = UpstreamTimeouts { first_byte: Duration::from_secs(1), ..Default::default() };
    let envoy = Envoy::start_with(&addrs, EnvoyMode::Filter(config), 2, Some(timeouts)).await.unwrap();
    scenarios::hung_replica_is_retried_and_ejected(&envoy, &hung).await.unwrap();
    assert_eq!(envoy.stat("prefixgate_backend_ejections_total").await.unwrap(), 1);
    assert!(envoy.stat("upstream_rq_retry_success").await.unwrap() >= 5);
    drop(envoy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_is_skipped_until_it_returns() {
    let _serial = SERIAL.lock().await;
    let mut fleet = start_fleet(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let envoy = filter_envoy(&addrs, "round_robin", &[("unhealthy_after", "2")]).await;
    // A refused connection is retried on the fallback the filter named: nothing fails.
    scenarios::killed_replica_is_skipped_until_it_returns(&envoy, &mut fleet).await.unwrap();
    assert!(envoy.stat("prefixgate_backend_scrape_failures_total").await.unwrap() >= 2);
    drop(envoy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_token_by_token_and_outlives_the_default_route_timeout() {
    let _serial = SERIAL.lock().await;
    // Real time: 14 ms per token, so 1,300 tokens take about 18 s, beyond
    // Envoy's default 15 s route timeout.
    let fleet = start_fleet(2, 1.0).await.unwrap();
    let addrs = fleet.addrs();
    let envoy = filter_envoy(&addrs, "prefix_aware", &[]).await;
    let client = Client::new(envoy.base_url()).unwrap();
    let stream = client.stream_chat("tell me a very long story", 1_300).await.unwrap();
    assert_eq!(stream.status, 200);
    assert!(stream.backend.is_some());
    let events = stream.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "stream cut: {} events", events.len());
    assert!(events.len() > 1_300, "{} events", events.len());
    // Token by token: hundreds of separate arrivals, spread over the whole run.
    assert!(stream.chunks.len() > 300, "only {} chunks arrived", stream.chunks.len());
    let first = stream.chunks.first().unwrap().0;
    let last = stream.chunks.last().unwrap().0;
    assert!(last - first > Duration::from_secs(15), "stream took only {:?}", last - first);
    drop(envoy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecds_hot_swap_changes_policy_without_failed_requests() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let mut envoy =
        Envoy::start(&addrs, EnvoyMode::Ecds(plugin_config("pow2", &addrs, 100, &[]))).await.unwrap();
    let client = Client::new(envoy.base_url()).unwrap();

    // A prompt routed by pow2 is recorded in the shared index.
    let warm = prompt("warm-before-swap", 2_000);
    let before = client.completion(&format!("{warm} first"), 2).await.unwrap();
    assert_eq!(before.reason(), Some("pow2"));
    let warm_backend = routed_to(&before, &addrs);

    // Bounded load on four connections while the rollout happens.
    let load = SwapLoad::start(&client, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _version = envoy.ecds_swap(&plugin_config("prefix_aware", &addrs, 100, &[])).unwrap();
    eventually(Duration::from_secs(20), "the prefix_aware rollout", || async {
        let reply = client.completion("which policy?", 1).await.unwrap();
        reply.decision.as_deref().is_some_and(|d| d.contains("policy=prefix_aware"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (total, after_swap) = load.finish("policy=prefix_aware").await;
    assert!(total > 20 && after_swap > 0, "{total} requests, {after_swap} after the swap");

    // The index survived the swap: the warm prompt still matches where it went.
    let again = client.completion(&format!("{warm} second"), 2).await.unwrap();
    assert_eq!(again.reason(), Some("prefix_match"), "{:?}", again.decision);
    assert_eq!(routed_to(&again, &addrs), warm_backend);
    drop(envoy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_routed_and_a_client_cannot_pick_the_upstream() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(2, FAST).await.unwrap();
    let trap = start_fleet(1, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let envoy = filter_envoy(&addrs, "prefix_aware", &[]).await;
    scenarios::bad_input(&envoy, &addrs, trap.addrs()[0]).await.unwrap();
    assert_eq!(served(&trap, 0), 0, "the client-set upstream header was obeyed");
    drop(envoy);
    trap.shutdown().await;
    fleet.shutdown().await;
}

/// The annotated templates in `envoy/` are valid Envoy 1.40 configuration
/// (with the module path pointed at the built module).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_templates_validate() {
    let root = prefixgate_tests::wasm::workspace_root();
    let envoy = prefixgate_tests::wasm::envoy_bin().unwrap();
    let wasm = prefixgate_tests::wasm::filter_wasm().unwrap();
    let dir = std::env::temp_dir().join(format!("prefixgate-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ecds = dir.join("prefixgate.yaml");
    let resource = std::fs::read_to_string(root.join("envoy/ecds/prefixgate.yaml")).unwrap();
    std::fs::write(&ecds, resource.replace("/etc/envoy/ecds/prefixgate-v2.wasm", &wasm.to_string_lossy()))
        .unwrap();
    for name in ["envoy.yaml", "envoy-ecds.yaml"] {
        let text = std::fs::read_to_string(root.join("envoy").join(name)).unwrap();
        let text = text
            .replace("/etc/envoy/prefixgate.wasm", &wasm.to_string_lossy())
            .replace("/etc/envoy/ecds/prefixgate.yaml", &ecds.to_string_lossy());
        let config = dir.join(name);
        std::fs::write(&config, text).unwrap();
        let out = std::process::Command::new(&envoy)
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} does not validate:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every worker's VM ticks, but only the holder of the shared lease scrapes:
/// each replica is scraped about once per interval, not once per worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vm_at_a_time_scrapes_the_replicas() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let envoy = filter_envoy(&addrs, "pow2", &[]).await;
    let scrapes = || async {
        envoy.stat("prefixgate_metrics_0.upstream_rq_total").await.unwrap()
            + envoy.stat("prefixgate_metrics_1.upstream_rq_total").await.unwrap()
    };
    eventually(Duration::from_secs(10), "scrapes to start", || async { scrapes().await > 0 }).await;
    let (before, started) = (scrapes().await, Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, elapsed) = (scrapes().await, started.elapsed());
    // One poller: 2 replicas every 100 ms. Two or more pollers would double it.
    let one_poller = 2.0 * elapsed.as_secs_f64() / 0.1;
    let seen = (after - before) as f64;
    assert!(seen > 0.0, "no scrape in {elapsed:?}");
    assert!(seen <= one_poller * 1.5 + 2.0, "{seen} scrapes in {elapsed:?}: more than one poller");
    drop(envoy);
    fleet.shutdown().await;
}

/// With every replica down, the filter answers a local 503 with an
/// OpenAI-style JSON error instead of letting Envoy try a dead address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_replica_gets_a_json_503() {
    let _serial = SERIAL.lock().await;
    let mut fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let envoy = filter_envoy(&addrs, "prefix_aware", &[("unhealthy_after", "2")]).await;
    let client = Client::new(envoy.base_url()).unwrap();
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
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], 503, "{body}");
    fleet.restart_replica(0).await.unwrap();
    eventually(Duration::from_secs(10), "a replica back", || async {
        client.completion("back?", 1).await.unwrap().status == 200
    })
    .await;
    drop(envoy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_prometheus_shows_the_labelled_decision_family() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let envoy = filter_envoy(&addrs, "prefix_aware", &[]).await;
    let client = Client::new(envoy.base_url()).unwrap();
    let shared = prompt("one conversation", 1_000);
    for i in 0..4 {
        let reply = client.completion(&format!("{shared} turn {i}"), 2).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let reply = client.post("/v1/completions", "not json", &[]).await.unwrap();
    assert_eq!(reply.reason(), Some("no_prompt"), "{:?}", reply.decision);
    eventually(Duration::from_secs(10), "a scrape of every backend", || async {
        envoy.stat("prefixgate_backend_scrapes_total").await.unwrap() >= 2
    })
    .await;

    let text = envoy.admin_get("/stats/prometheus").await.unwrap();
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
    // The per-backend gauges, labelled the same way as in prefixgate.
    let healthy = exposition::series(&parsed, "prefixgate_backend_healthy");
    let named: BTreeSet<String> = healthy.iter().map(|(l, _)| l["backend"].clone()).collect();
    assert_eq!(named, addrs.iter().map(SocketAddr::to_string).collect::<BTreeSet<_>>(), "{healthy:?}");
    assert!(healthy.iter().all(|(_, v)| *v == 1.0), "{healthy:?}");
    // The histogram's buckets are cumulative counters with an `le` tag.
    let buckets = exposition::series(&parsed, "prefixgate_match_ratio_bucket");
    let by_bound = |le: &str| buckets.iter().find(|(l, _)| l["le"] == le).map(|(_, n)| *n);
    assert_eq!(by_bound("+Inf"), Some(4.0), "{buckets:?}");
    assert!(by_bound("0.5") <= by_bound("1"), "{buckets:?}");
    drop(envoy);
    fleet.shutdown().await;
}
