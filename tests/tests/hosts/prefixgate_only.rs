//! What only prefixgate has: the VM pool's memory limit, its own metric
//! families and admin status, and the binary's command line, signals and
//! restart.

use super::FAST;
use openmetrics_parser::PrometheusType;
use prefixgate_filter::{PolicyKind, Reason};
use prefixgate_launch::Locate as _;
use prefixgate_tests::client::Client;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::exposition;
use prefixgate_tests::failing_replica::Failure;
use prefixgate_tests::fleet::{sim_queued, start_fleet, start_fleet_with_failure, FleetWithFailure};
use prefixgate_tests::module_variant::variant;
use prefixgate_tests::prefixgate::Signal;
use prefixgate_tests::scenarios::{eventually, prompt, routed_to};
use prefixgate_tests::{Host, Prefixgate, PrefixgateOptions, Reply};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// prefixgate (two VMs) in front of `addrs` under `policy`.
async fn prefixgate(host: Host, addrs: &[SocketAddr], policy: &str, extra: &[(&str, &str)]) -> Prefixgate {
    assert_eq!(host, Host::Prefixgate);
    Prefixgate::start(addrs, &plugin_config(policy, addrs, 100, extra), &PrefixgateOptions::default())
        .await
        .unwrap()
}

/// A request's routing load, from its decision header (`…load=N`).
fn load(reply: &Reply) -> Option<u64> {
    reply.decision.as_deref().and_then(|d| d.rsplit("load=").next()?.parse::<u64>().ok())
}

/// A VM that traps (out of memory) while requests are in flight on it is
/// replaced, and the in-flight counts it held expire with it.
pub async fn in_flight_counts_of_a_trapped_vm_heal(host: Host) {
    assert_eq!(host, Host::Prefixgate);
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    // One VM, and too little memory for it to buffer a 3 MiB body: such a
    // body traps it (out of memory) while other requests are in flight on it.
    let options =
        PrefixgateOptions { vms: Some(1), memory_limit_mib: Some(3), ..PrefixgateOptions::default() };
    let proxy =
        Prefixgate::start(&addrs, &plugin_config("round_robin", &addrs, 100, &[]), &options).await.unwrap();
    let client = Client::new(proxy.base_url()).unwrap();
    let idle = client.completion("warm up", 1).await.unwrap();
    assert_eq!(load(&idle), Some(0), "{:?}", idle.decision);

    // Four long streams routed by the filter, two per replica.
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..4 {
        let client = client.clone();
        streams.spawn(async move { client.stream_chat(&format!("long stream {i}"), 20_000).await });
    }
    eventually(Duration::from_secs(30), "the four streams to run", || async {
        sim_queued(addrs[0]).await + sim_queued(addrs[1]).await == 4
    })
    .await;
    let padded = format!("{}{}", serde_json::json!({"prompt": "trap", "max_tokens": 1}), " ".repeat(3 << 20));
    let trapped = client.post("/v1/completions", padded, &[]).await.unwrap();
    assert_eq!(trapped.reason(), None, "the 3 MiB body did not trap the VM: {:?}", trapped.decision);
    assert!(trapped.decision.as_deref().is_some_and(|d| d.starts_with("fallback")), "{:?}", trapped.decision);
    assert_eq!(proxy.metric("prefixgate_filter_traps_total").await.unwrap(), 1.0);
    while let Some(stream) = streams.join_next().await {
        assert_eq!(stream.unwrap().unwrap().status, 200);
    }
    // The trapped VM never ran `on_log` for the streams; its counts expire
    // with its heartbeat (one scrape interval, 100 ms here).
    eventually(Duration::from_secs(10), "idle load to return to 0", || {
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

/// Scraping goes on through a module swap: the swap starts a new pool of
/// VMs and a spare, and whichever of them takes the scrape lease must be one
/// that ticks, so every backend is scraped again within a few intervals of
/// the swap (a spare holding the lease stopped scraping for a whole lease).
pub async fn scraping_goes_on_through_a_module_swap(host: Host) {
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = prefixgate(host, &addrs, "prefix_aware", &[]).await;
    let scrapes = |text: String| -> Vec<f64> {
        let parsed = exposition::parse(&text).unwrap();
        let mut series = exposition::series(&parsed, "prefixgate_backend_scrapes_total");
        series.sort_by(|a, b| a.0["backend"].cmp(&b.0["backend"]));
        series.into_iter().map(|(_, n)| n).collect()
    };
    eventually(Duration::from_secs(10), "a scrape of every backend", || async {
        let counts = scrapes(proxy.admin_get("/metrics").await.unwrap());
        counts.len() == addrs.len() && counts.iter().all(|n| *n > 0.0)
    })
    .await;
    let filter = std::fs::read(prefixgate_launch::FILTER_MODULE.locate_or_build().unwrap()).unwrap();
    for swap in 0..3 {
        let (status, answer) =
            proxy.admin_put("module", variant(&filter, &format!("swap {swap}"))).await.unwrap();
        assert_eq!(status, 200, "module swap refused: {answer}");
        let before = scrapes(proxy.admin_get("/metrics").await.unwrap());
        // Scrapes every 100 ms; the lease lasts a second.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = scrapes(proxy.admin_get("/metrics").await.unwrap());
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            assert!(a - b >= 2.0, "swap {swap}: {b} → {a} scrapes of a backend in the 500 ms after it");
        }
    }
    drop(proxy);
    fleet.shutdown().await;
}

/// prefixgate's `/metrics` (the host's families and the filter's) parse,
/// lint, and are labelled as documented; swaps are counted by kind and result.
pub async fn metrics_are_labelled_families_that_parse_and_lint(host: Host) {
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = prefixgate(host, &addrs, "prefix_aware", &[]).await;
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
    eventually(Duration::from_secs(10), "a scrape of every backend", || async {
        scraped(&proxy.admin_get("/metrics").await.unwrap())
    })
    .await;

    let text = proxy.admin_get("/metrics").await.unwrap();
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
        proxy.admin_put("config", plugin_config("pow2", &addrs, 100, &[]).into_bytes()).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let (status, _) = proxy.admin_put("config", br#"{"backends": []}"#.to_vec()).await.unwrap();
    assert_eq!(status, 400);
    let reply = client.completion("after the swap", 2).await.unwrap();
    assert_eq!(reply.reason(), Some("pow2"), "{:?}", reply.decision);
    let text = proxy.admin_get("/metrics").await.unwrap();
    let parsed = check_exposition(&text);
    assert_eq!(config_swaps(&parsed), (1.0, 1.0), "{text}");
    let decisions = exposition::series(&parsed, "prefixgate_decisions_total");
    assert!(
        decisions.iter().any(|(l, n)| l["policy"] == "pow2" && l["reason"] == "pow2" && *n >= 1.0),
        "{decisions:?}"
    );
    drop(proxy);
    fleet.shutdown().await;
}

/// Configuration swaps taken and refused, from `prefixgate_hot_swaps_total`.
fn config_swaps(parsed: &exposition::Exposition) -> (f64, f64) {
    let swaps = exposition::series(parsed, "prefixgate_hot_swaps_total");
    let swap = |result: &str| {
        swaps.iter().filter(|(l, _)| l["kind"] == "config" && l["result"] == result).map(|(_, n)| *n).sum()
    };
    (swap("ok"), swap("refused"))
}

/// One backend's entry in `/admin/status`.
async fn backend_status(proxy: &Prefixgate, backend: &str) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/admin/status").await.unwrap()).unwrap();
    let backends = status["backends"].as_array().cloned().unwrap_or_default();
    backends
        .into_iter()
        .find(|b| b["address"] == backend)
        .unwrap_or_else(|| panic!("{backend} not in {status}"))
}

/// `/admin/status` says a backend is unhealthy as soon as the filter skips
/// it: at once after a passive ejection, and once its scrapes fail.
pub async fn admin_status_says_unhealthy_as_soon_as_the_filter_skips_a_backend(host: Host) {
    let FleetWithFailure { mut fleet, failing, addrs } =
        start_fleet_with_failure(2, FAST, Failure::Error).await.unwrap();
    let extra = [("ejection_ms", "60000"), ("unhealthy_after", "2")];
    let proxy = prefixgate(host, &addrs, "round_robin", &extra).await;
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
    eventually(Duration::from_secs(5), "the stopped replica to show unhealthy", || async {
        backend_status(&proxy, &stopped).await["healthy"] == false
    })
    .await;
    let down = backend_status(&proxy, &stopped).await;
    assert_eq!((&down["proxy_healthy"], &down["filter_healthy"]), (&true.into(), &false.into()), "{down}");
    let parsed = exposition::parse(&proxy.admin_get("/metrics").await.unwrap()).unwrap();
    let failures = exposition::series(&parsed, "prefixgate_backend_scrape_failures_total");
    assert!(failures.iter().any(|(l, n)| l["backend"] == stopped && *n >= 2.0), "{failures:?}");
    fleet.restart_replica(0).await.unwrap();
    eventually(Duration::from_secs(5), "the restarted replica to show healthy", || async {
        backend_status(&proxy, &stopped).await["healthy"] == true
    })
    .await;
    drop(proxy);
    fleet.shutdown().await;
}

/// The decision header of a request through `client` names `policy`.
async fn decided_by(client: &Client, policy: &str) -> bool {
    let reply = client.completion("which policy?", 1).await.unwrap();
    reply.decision.as_deref().is_some_and(|d| d.contains(&format!("policy={policy}")))
}

/// SIGHUP makes the running binary read its configuration file again: a
/// new plugin configuration is swapped in; one the filter refuses, and a
/// file that does not parse, are refused (logged) and the running filter
/// keeps serving.
pub async fn sighup_reloads_the_config_file_and_a_bad_one_is_refused(host: Host) {
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = prefixgate(host, &addrs, "pow2", &[]).await;
    let client = Client::new(proxy.base_url()).unwrap();
    assert!(decided_by(&client, "pow2").await);
    let swaps =
        || async { config_swaps(&exposition::parse(&proxy.admin_get("/metrics").await.unwrap()).unwrap()) };

    proxy.write_plugin_config(&plugin_config("prefix_aware", &addrs, 100, &[])).unwrap();
    proxy.process().signal(Signal::Hangup).await.unwrap();
    eventually(Duration::from_secs(10), "the reloaded policy", || decided_by(&client, "prefix_aware")).await;
    assert_eq!(swaps().await, (1.0, 0.0));

    // A plugin configuration the filter refuses: counted, logged, not taken.
    let refused = serde_json::json!({"policy": "no_such_policy", "backends": addrs}).to_string();
    proxy.write_plugin_config(&refused).unwrap();
    proxy.process().signal(Signal::Hangup).await.unwrap();
    eventually(Duration::from_secs(10), "the refused reload", || async { swaps().await == (1.0, 1.0) }).await;
    let refusals = || proxy.process().stderr().count("reload refused");
    eventually(Duration::from_secs(5), "the refusal in the log", || async { refusals() == 1 }).await;
    assert!(decided_by(&client, "prefix_aware").await);

    // A file that is not TOML: refused before any swap.
    proxy.write_config_file("backends = [").unwrap();
    proxy.process().signal(Signal::Hangup).await.unwrap();
    eventually(Duration::from_secs(10), "the second refusal in the log", || async { refusals() == 2 }).await;
    assert_eq!(swaps().await, (1.0, 1.0));
    for _ in 0..4 {
        assert!(decided_by(&client, "prefix_aware").await);
    }
    drop(proxy);
    fleet.shutdown().await;
}

/// SIGTERM stops the binary with status 0; started again with the same
/// configuration it serves on the same two ports, as a new process with a
/// new (empty) prefix index. A configuration file with a bad field stops
/// it at start with status 2, naming the field.
pub async fn sigterm_stops_it_and_a_restart_serves_on_the_same_ports(host: Host) {
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let mut proxy = prefixgate(host, &addrs, "prefix_aware", &[]).await;
    let base_url = proxy.base_url().to_owned();
    let client = Client::new(&base_url).unwrap();
    let warm = prompt("warm before the restart", 2_000);
    routed_to(&client.completion(&format!("{warm} first"), 1).await.unwrap(), &addrs);
    let again = client.completion(&format!("{warm} second"), 1).await.unwrap();
    assert_eq!(again.reason(), Some("prefix_match"), "{:?}", again.decision);
    let (pid, admin) = (proxy.process().pid(), proxy.process().admin());

    let status = proxy.process_mut().restart(Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM: {status}");
    assert_ne!(proxy.process().pid(), pid, "not a new process");
    assert_eq!((proxy.base_url(), proxy.process().admin()), (base_url.as_str(), admin));
    let after = client.completion(&format!("{warm} third"), 1).await.unwrap();
    routed_to(&after, &addrs);
    assert_ne!(after.reason(), Some("prefix_match"), "the index outlived the process: {:?}", after.decision);
    let status = proxy.process_mut().stop(Signal::Terminate, Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM: {status}");
    assert!(client.completion("anyone?", 1).await.is_err(), "still served after SIGTERM");

    // A bad field in the file: exit status 2, and the field named.
    proxy.write_config_file("backends = [\"127.0.0.1:1\"]\nmax_hops = \"three\"\n").unwrap();
    let binary = prefixgate_launch::PREFIXGATE.locate_or_build().unwrap();
    let config = proxy.config_path();
    let started =
        prefixgate_tests::PrefixgateProcess::start_args(&binary, vec!["--config".into(), config.into()])
            .await;
    match started {
        Err(prefixgate_launch::LaunchError::Exited { status: Some(status), log: stderr, .. }) => {
            assert_eq!(status.code(), Some(2), "{stderr}");
            assert!(stderr.contains("max_hops"), "the field is not named: {stderr}");
        }
        other => panic!("a bad configuration file was not refused at start: {other:?}"),
    }
    drop(proxy);
    fleet.shutdown().await;
}
