//! The standalone `prefixgate` proxy (started in-process, with its embedded
//! filter) in front of simulated vLLM replicas on loopback: the same
//! scenarios as `envoy.rs`, so both hosts are held to one behaviour, plus
//! hot swap through the admin API.
#![allow(
    clippy::unwrap_used,
    clippy::field_reassign_with_default,
    reason = "test helpers too: a failed unwrap is a failed test; Config is built field by field"
)]

use openmetrics_parser::PrometheusType;
use prefixgate::app::{self, Running};
use prefixgate::config::Config;
use prefixgate_filter::{PolicyKind, Reason};
use prefixgate_tests::client::Client;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::exposition;
use prefixgate_tests::failing_replica::Failure;
use prefixgate_tests::fleet::{served, sim_queued, start_fleet, start_fleet_with_failure, FleetWithFailure};
use prefixgate_tests::scenarios::{self, prompt, routed_to, SwapLoad};
use prefixgate_tests::Proxy;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Scenarios share a small machine: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Simulated time runs this many times faster than real time.
const FAST: f64 = 50.0;

/// A running prefixgate and its base URL.
struct Prefixgate {
    running: Running,
    base: String,
}

impl Proxy for Prefixgate {
    fn base_url(&self) -> &str {
        &self.base
    }
}

/// Callback deadline of the proxies these tests start (the default is 20 ms).
/// The deadline counts wall-clock time, and in this debug build of the host a
/// request with a 2 MiB prompt (matching and indexing its first 131,072
/// characters: 2,048 chunks, a few shared-data calls each) takes about 15 ms
/// in one callback on an idle machine; on a busy one, even shorter callbacks
/// overrun now and then and the request falls back to round robin without a
/// decision. These tests check behaviour, not timing.
const CALLBACK_DEADLINE_MS: u64 = 500;

impl Prefixgate {
    async fn start(addrs: &[SocketAddr], plugin_config: String) -> Self {
        Self::start_with(addrs, plugin_config, |_| {}).await
    }

    /// [`Prefixgate::start`] with `adjust` applied to the configuration.
    async fn start_with(
        addrs: &[SocketAddr],
        plugin_config: String,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::default();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin = "127.0.0.1:0".parse().unwrap();
        config.backends = addrs.iter().map(SocketAddr::to_string).collect();
        config.filter.plugin_config = Some(plugin_config);
        config.filter.vms = 2;
        config.filter.callback_deadline_ms = CALLBACK_DEADLINE_MS;
        adjust(&mut config);
        let running = app::start(config).await.unwrap();
        let base = format!("http://{}", running.listen);
        Self { running, base }
    }

    /// `PUT /admin/<what>` with `body`; returns the status and the answer.
    async fn admin_put(&self, what: &str, body: Vec<u8>) -> (u16, String) {
        let url = format!("http://{}/admin/{what}", self.running.admin);
        let reply = reqwest::Client::new().put(url).body(body).send().await.unwrap();
        let status = reply.status().as_u16();
        (status, reply.text().await.unwrap_or_default())
    }
}

async fn filter_proxy(addrs: &[SocketAddr], policy: &str, extra: &[(&str, &str)]) -> Prefixgate {
    Prefixgate::start(addrs, plugin_config(policy, addrs, 100, extra)).await
}

/// Prefix-cache hit tokens a replica reports.
async fn cache_hits(addr: SocketAddr) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("vllm:prefix_cache_hits_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_groups_stay_on_one_replica_and_hit_its_cache() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(4, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = filter_proxy(&addrs, "prefix_aware", &[]).await;
    let placement = scenarios::affinity(&proxy, &addrs, 8, 5).await.unwrap();
    let distinct: std::collections::BTreeSet<_> = placement.iter().collect();
    assert!(distinct.len() >= 2, "every group went to one replica: {placement:?}");
    // The replicas confirm it: each group's later requests hit the cache
    // where the group lives.
    for &replica in &distinct {
        assert!(cache_hits(addrs[*replica]).await > 0.0, "replica {replica} saw no prefix-cache hit");
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_cycles_and_pow2_spreads() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = filter_proxy(&addrs, "round_robin", &[]).await;
    scenarios::round_robin_cycles(&proxy, &addrs, 4).await.unwrap();
    drop(proxy);
    let proxy = filter_proxy(&addrs, "pow2", &[]).await;
    scenarios::pow2_spreads(&proxy, &addrs, 48, 6).await.unwrap();
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_routed_and_a_client_cannot_pick_the_upstream() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(2, FAST).await.unwrap();
    let trap = start_fleet(1, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = filter_proxy(&addrs, "prefix_aware", &[]).await;
    scenarios::bad_input(&proxy, &addrs, trap.addrs()[0]).await.unwrap();
    assert_eq!(served(&trap, 0), 0, "the client-set upstream header was obeyed");
    drop(proxy);
    trap.shutdown().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_failing_fast_is_ejected() {
    let _serial = SERIAL.lock().await;
    let FleetWithFailure { fleet, failing, addrs } =
        start_fleet_with_failure(3, FAST, Failure::Error).await.unwrap();
    let proxy = filter_proxy(&addrs, "prefix_aware", &[("ejection_ms", "60000")]).await;
    scenarios::failing_replica_is_ejected(&proxy, &fleet.addrs(), &failing).await.unwrap();
    drop(proxy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_answers_is_retried_and_ejected() {
    let _serial = SERIAL.lock().await;
    let FleetWithFailure { fleet, failing: hung, addrs } =
        start_fleet_with_failure(2, FAST, Failure::NeverAnswers).await.unwrap();
    let config = plugin_config("round_robin", &addrs, 100, &[("ejection_ms", "60000")]);
    let proxy = Prefixgate::start_with(&addrs, config, |config| {
        config.timeouts.upstream_first_byte_ms = 1_000;
    })
    .await;
    scenarios::hung_replica_is_retried_and_ejected(&proxy, &hung).await.unwrap();
    drop(proxy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_of_a_trapped_vm_heal() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    // One VM, and too little memory for it to buffer a 3 MiB body: such a
    // body traps it (out of memory) while other requests are in flight on it.
    let proxy = Prefixgate::start_with(&addrs, plugin_config("round_robin", &addrs, 100, &[]), |config| {
        config.filter.vms = 1;
        config.filter.memory_limit_mib = 3;
    })
    .await;
    let client = Client::new(proxy.base_url()).unwrap();
    let load = |reply: &prefixgate_tests::Reply| {
        reply.decision.as_deref().and_then(|d| d.rsplit("load=").next()?.parse::<u64>().ok())
    };
    let idle = client.completion("warm up", 1).await.unwrap();
    assert_eq!(load(&idle), Some(0), "{:?}", idle.decision);

    // Four long streams routed by the filter, two per replica.
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..4 {
        let client = client.clone();
        streams.spawn(async move { client.stream_chat(&format!("long stream {i}"), 20_000).await });
    }
    scenarios::eventually(Duration::from_secs(30), "the four streams to run", || async {
        sim_queued(addrs[0]).await + sim_queued(addrs[1]).await == 4
    })
    .await;
    let padded = format!("{}{}", serde_json::json!({"prompt": "trap", "max_tokens": 1}), " ".repeat(3 << 20));
    let trapped = client.post("/v1/completions", padded, &[]).await.unwrap();
    assert_eq!(trapped.reason(), None, "the 3 MiB body did not trap the VM: {:?}", trapped.decision);
    assert!(trapped.decision.as_deref().is_some_and(|d| d.starts_with("fallback")), "{:?}", trapped.decision);
    while let Some(stream) = streams.join_next().await {
        assert_eq!(stream.unwrap().unwrap().status, 200);
    }
    // The trapped VM never ran `on_log` for the streams; its counts expire
    // with its heartbeat (one scrape interval, 100 ms here).
    scenarios::eventually(Duration::from_secs(10), "idle load to return to 0", || {
        let client = client.clone();
        async move {
            let reply = client.completion("after the trap", 1).await.unwrap();
            reply.reason() == Some("round_robin") && load(&reply) == Some(0)
        }
    })
    .await;
    drop(proxy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_is_skipped_until_it_returns() {
    let _serial = SERIAL.lock().await;
    let mut fleet = start_fleet(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = filter_proxy(&addrs, "round_robin", &[("unhealthy_after", "2")]).await;
    // A refused connection is retried on another replica: nothing fails.
    scenarios::killed_replica_is_skipped_until_it_returns(&proxy, &mut fleet).await.unwrap();
    drop(proxy);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_hot_swap_changes_policy_and_module_without_failed_requests() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = filter_proxy(&addrs, "pow2", &[]).await;
    let client = Client::new(proxy.base_url()).unwrap();

    let warm = prompt("warm-before-swap", 2_000);
    let before = client.completion(&format!("{warm} first"), 2).await.unwrap();
    assert_eq!(before.reason(), Some("pow2"));
    let warm_backend = routed_to(&before, &addrs);

    let load = SwapLoad::start(&client, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // pow2 → prefix_aware: a new plugin configuration.
    let (status, answer) =
        proxy.admin_put("config", plugin_config("prefix_aware", &addrs, 100, &[]).into_bytes()).await;
    assert_eq!(status, 200, "config swap refused: {answer}");
    // A broken configuration is refused and the current one keeps serving.
    let (status, answer) = proxy.admin_put("config", br#"{"backends": []}"#.to_vec()).await;
    assert_eq!(status, 400, "an empty backend list was accepted: {answer}");
    // A new module: the same filter with an extra custom section (new sha256).
    let mut module = std::fs::read(prefixgate_tests::wasm::filter_wasm().unwrap()).unwrap();
    // Custom section: id 0, size 9 = name length (1) + "version" (7) + payload (1).
    module.extend_from_slice(&[0, 9, 7, b'v', b'e', b'r', b's', b'i', b'o', b'n', 2]);
    let (status, answer) = proxy.admin_put("module", module).await;
    assert_eq!(status, 200, "module swap refused: {answer}");
    let (status, _) = proxy.admin_put("module", b"not wasm".to_vec()).await;
    assert_eq!(status, 400, "a broken module was accepted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (total, after_swap) = load.finish("policy=prefix_aware").await;
    assert!(total > 20 && after_swap > 0, "{total} requests, {after_swap} after the swap");
    // The index survived both swaps: the warm prompt still matches where it went.
    let again = client.completion(&format!("{warm} second"), 2).await.unwrap();
    assert_eq!(again.reason(), Some("prefix_match"), "{:?}", again.decision);
    assert_eq!(routed_to(&again, &addrs), warm_backend);
    let status = reqwest::get(format!("http://{}/admin/status", proxy.running.admin)).await.unwrap();
    let status = status.text().await.unwrap();
    assert!(status.contains("prefix_aware"), "status does not show the new config: {status}");
    drop(proxy);
    fleet.shutdown().await;
}

/// A GET on the admin listener of `proxy`.
async fn admin_get(proxy: &Prefixgate, path: &str) -> String {
    let url = format!("http://{}{path}", proxy.running.admin);
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// The label names of every series in `series`, each set sorted.
fn label_sets(series: &[exposition::Series]) -> BTreeSet<Vec<String>> {
    series.iter().map(|(labels, _)| labels.keys().cloned().collect()).collect()
}

/// `/metrics` checked as a whole: every family has HELP and TYPE, it parses,
/// histograms are cumulative, and promtool (when installed) finds no fault.
fn check_exposition(text: &str) -> exposition::Exposition {
    let problems = exposition::missing_help_or_type(text);
    assert!(problems.is_empty(), "{problems:?}\n{text}");
    let parsed = exposition::parse(text).unwrap();
    let problems = exposition::non_cumulative_histograms(&parsed);
    assert!(problems.is_empty(), "{problems:?}\n{text}");
    match exposition::promtool_check(text) {
        Some(verdict) => verdict.unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{text}")),
        None => eprintln!("promtool is not installed (cargo xtask setup installs it): lint skipped"),
    }
    parsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_labelled_families_that_parse_and_lint() {
    let _serial = SERIAL.lock().await;
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = filter_proxy(&addrs, "prefix_aware", &[]).await;
    let client = Client::new(proxy.base_url()).unwrap();
    let shared = prompt("one conversation", 1_000);
    for i in 0..6 {
        let reply = client.completion(&format!("{shared} turn {i}"), 2).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // No prompt to match: routed by load.
    let reply = client.post("/v1/completions", "not json", &[]).await.unwrap();
    assert_eq!(reply.reason(), Some("no_prompt"), "{:?}", reply.decision);
    let scraped = |text: &str| {
        let parsed = exposition::parse(text).unwrap();
        let scrapes = exposition::series(&parsed, "prefixgate_backend_scrapes_total");
        scrapes.len() == addrs.len() && scrapes.iter().all(|(_, n)| *n > 0.0)
    };
    scenarios::eventually(Duration::from_secs(10), "a scrape of every backend", || async {
        scraped(&admin_get(&proxy, "/metrics").await)
    })
    .await;

    let text = admin_get(&proxy, "/metrics").await;
    let parsed = check_exposition(&text);
    // The filter's HELP comes from its module (prometheus.help), for every family.
    assert!(!text.contains("does not describe"), "{text}");
    for family in prefixgate_filter::metrics::FAMILIES {
        let help = format!("# HELP {} {}\n", family.name, family.help);
        assert!(text.contains(&help), "missing {help:?} in\n{text}");
    }
    for family in [
        "prefixgate_match_ratio",
        "prefixgate_decision_duration_seconds",
        "prefixgate_upstream_latency_seconds",
        "prefixgate_request_phase_duration_seconds",
    ] {
        assert_eq!(exposition::family_type(&parsed, family), Some(PrometheusType::Histogram), "{family}");
    }

    // Decisions: labelled by policy and reason, the names the filter knows.
    let policies: BTreeSet<&str> = PolicyKind::ALL.iter().map(|p| p.as_str()).collect();
    let reasons: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let decisions = exposition::series(&parsed, "prefixgate_decisions_total");
    assert_eq!(label_sets(&decisions), BTreeSet::from([vec!["policy".to_owned(), "reason".to_owned()]]));
    for (labels, _) in &decisions {
        assert!(policies.contains(labels["policy"].as_str()), "{labels:?}");
        assert!(reasons.contains(labels["reason"].as_str()), "{labels:?}");
    }
    let count = |reason: &str| {
        decisions
            .iter()
            .filter(|(l, _)| l["policy"] == "prefix_aware" && l["reason"] == reason)
            .map(|(_, n)| n)
            .sum::<f64>()
    };
    assert!(count("prefix_match") >= 5.0, "{decisions:?}");
    assert!(count("no_prompt") >= 1.0, "{decisions:?}");
    let decided: f64 = decisions.iter().map(|(_, n)| n).sum();
    assert!(decided >= 7.0, "{decisions:?}");
    // The histograms count the decisions they describe.
    let [(_, timed)] = exposition::series(&parsed, "prefixgate_decision_duration_seconds")[..] else {
        panic!("one unlabelled decision-duration histogram expected:\n{text}")
    };
    assert_eq!(timed, decided, "every decision is timed");
    let [(_, matched)] = exposition::series(&parsed, "prefixgate_match_ratio")[..] else {
        panic!("one unlabelled match-ratio histogram expected:\n{text}")
    };
    assert!(matched >= 6.0 && matched < decided, "{matched} match ratios of {decided} decisions");

    // One series per backend in every per-backend family.
    let backends: BTreeSet<String> = addrs.iter().map(SocketAddr::to_string).collect();
    for family in [
        "prefixgate_backend_healthy",
        "prefixgate_backend_in_flight",
        "prefixgate_backend_load",
        "prefixgate_backend_requests_running",
        "prefixgate_backend_requests_waiting",
        "prefixgate_backend_kv_cache_usage_ratio",
        "prefixgate_backend_scrapes_total",
        "prefixgate_backend_scrape_failures_total",
        "prefixgate_backend_ejections_total",
    ] {
        let series = exposition::series(&parsed, family);
        assert_eq!(label_sets(&series), BTreeSet::from([vec!["backend".to_owned()]]), "{family}");
        let named: BTreeSet<String> = series.iter().map(|(l, _)| l["backend"].clone()).collect();
        assert_eq!(named, backends, "{family}");
        for (labels, value) in &series {
            let ok = match family {
                "prefixgate_backend_healthy" => *value == 1.0,
                "prefixgate_backend_kv_cache_usage_ratio" => (0.0..=1.0).contains(value),
                "prefixgate_backend_scrape_failures_total" | "prefixgate_backend_ejections_total" => {
                    *value == 0.0
                }
                _ => *value >= 0.0,
            };
            assert!(ok, "{family}{labels:?} = {value}");
        }
    }

    // A swap is counted by kind and result, and the filter's families stay.
    let (status, answer) =
        proxy.admin_put("config", plugin_config("pow2", &addrs, 100, &[]).into_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = proxy.admin_put("config", br#"{"backends": []}"#.to_vec()).await;
    assert_eq!(status, 400);
    let reply = client.completion("after the swap", 2).await.unwrap();
    assert_eq!(reply.reason(), Some("pow2"), "{:?}", reply.decision);
    let text = admin_get(&proxy, "/metrics").await;
    let parsed = check_exposition(&text);
    let swaps = exposition::series(&parsed, "prefixgate_hot_swaps_total");
    let swap = |result: &str| {
        swaps.iter().find(|(l, _)| l["kind"] == "config" && l["result"] == result).map(|(_, n)| *n)
    };
    assert_eq!((swap("ok"), swap("refused")), (Some(1.0), Some(1.0)), "{swaps:?}");
    let decisions = exposition::series(&parsed, "prefixgate_decisions_total");
    assert!(
        decisions.iter().any(|(l, n)| l["policy"] == "pow2" && l["reason"] == "pow2" && *n >= 1.0),
        "{decisions:?}"
    );
    drop(proxy);
    fleet.shutdown().await;
}

/// One backend's entry in `/admin/status`.
async fn backend_status(proxy: &Prefixgate, backend: &str) -> serde_json::Value {
    let status: serde_json::Value = serde_json::from_str(&admin_get(proxy, "/admin/status").await).unwrap();
    let backends = status["backends"].as_array().cloned().unwrap_or_default();
    backends
        .into_iter()
        .find(|b| b["address"] == backend)
        .unwrap_or_else(|| panic!("{backend} not in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_status_says_unhealthy_as_soon_as_the_filter_skips_a_backend() {
    let _serial = SERIAL.lock().await;
    let FleetWithFailure { mut fleet, failing, addrs } =
        start_fleet_with_failure(2, FAST, Failure::Error).await.unwrap();
    let extra = [("ejection_ms", "60000"), ("unhealthy_after", "2")];
    let proxy = filter_proxy(&addrs, "round_robin", &extra).await;
    let client = Client::new(proxy.base_url()).unwrap();
    let failing_addr = failing.addr.to_string();
    let before = backend_status(&proxy, &failing_addr).await;
    assert_eq!((&before["healthy"], &before["filter_healthy"]), (&true.into(), &true.into()), "{before}");

    // Passive ejection: the response that ejects it is answered after the
    // filter marked it, so the status says so at once.
    for i in 0..40 {
        let _ = client.completion(&format!("request {i}"), 1).await.unwrap();
        if failing.failed() == 5 {
            break;
        }
    }
    assert_eq!(failing.failed(), 5, "the failing replica was not chosen five times");
    let ejected = backend_status(&proxy, &failing_addr).await;
    assert_eq!(
        (&ejected["healthy"], &ejected["filter_healthy"]),
        (&false.into(), &false.into()),
        "{ejected}"
    );
    for i in 0..6 {
        let reply = client.completion(&format!("after the ejection {i}"), 1).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    assert_eq!(failing.failed(), 5, "the ejected replica took more requests");

    // Failed scrapes: a stopped replica that no request touched (so the
    // proxy saw no connection fail) is unhealthy once the filter skips it.
    let stopped = addrs[0].to_string();
    fleet.stop_replica(0).await.unwrap();
    scenarios::eventually(Duration::from_secs(5), "the stopped replica to show unhealthy", || async {
        backend_status(&proxy, &stopped).await["healthy"] == false
    })
    .await;
    let down = backend_status(&proxy, &stopped).await;
    assert_eq!((&down["proxy_healthy"], &down["filter_healthy"]), (&true.into(), &false.into()), "{down}");
    let parsed = exposition::parse(&admin_get(&proxy, "/metrics").await).unwrap();
    let failures = exposition::series(&parsed, "prefixgate_backend_scrape_failures_total");
    assert!(failures.iter().any(|(l, n)| l["backend"] == stopped && *n >= 2.0), "{failures:?}");
    fleet.restart_replica(0).await.unwrap();
    scenarios::eventually(Duration::from_secs(5), "the restarted replica to show healthy", || async {
        backend_status(&proxy, &stopped).await["healthy"] == true
    })
    .await;
    drop(proxy);
    fleet.shutdown().await;
}

/// With `max_ongoing_requests` set, a request that finds every replica at
/// its cap gets an OpenAI-shaped 429 instead of piling onto a full replica;
/// once the replica has room again, requests are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_at_its_cap_answers_a_json_429() {
    let _serial = SERIAL.lock().await;
    // Real time: the long request stays in flight for seconds.
    let fleet = start_fleet(1, 1.0).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = filter_proxy(&addrs, "least_ttft", &[("max_ongoing_requests", "1")]).await;
    let (a, b) = (Client::new(&proxy.base).unwrap(), Client::new(&proxy.base).unwrap());
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
    let client = a;
    // Room again once the next scrape shows the replica idle.
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let status = client.completion(&prompt("a short one", 100), 1).await.unwrap().status;
        statuses.push(status);
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    fleet.shutdown().await;
}
