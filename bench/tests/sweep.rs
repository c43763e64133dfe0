//! `prefixgate-bench sweep` and `report` end to end: real `vllm-sim` replicas
//! and a real `prefixgate` on loopback, two strategies, both CSVs, the report.
//!
//! Needs the `prefixgate` binary: `cargo xtask test` builds it and sets
//! `PREFIXGATE_BIN`; otherwise it is looked up beside the test binaries.

#![allow(clippy::unwrap_used, reason = "test helpers too: a failed unwrap is a failed test")]

use prefixgate_bench::lab::sweep_in_lab;
use prefixgate_bench::load::run::RunReport;
use prefixgate_bench::report::write_report;
use prefixgate_bench::sweep::config::{Mode, SweepConfig};
use prefixgate_bench::sweep::results_csv::{SERVE_CSV, VLLM_CSV};
use prefixgate_bench::sweep::run::{run_sweep, SweepOptions};
use prefixgate_filter::{FilterConfig, MissPolicy};
use std::path::{Path, PathBuf};

/// The settings columns both CSVs start with, in order.
const SETTINGS: [&str; 16] = [
    "gpu_type",
    "model_name",
    "num_servers",
    "enable_prefix_caching",
    "enable_chunked_prefill",
    "benchmark_label",
    "scheduler_strategy",
    "min_output_len",
    "max_output_len",
    "max_concurrency",
    "request_rate",
    "with_warmup",
    "disable_ignore_eos",
    "disable_stream",
    "max_conversations",
    "num_prompts",
];

/// Client-side metric columns after the settings, in order.
const SERVE_METRICS: [&str; 19] = [
    "duration",
    "completed",
    "request_throughput",
    "input_throughput",
    "output_throughput",
    "mean_ttft_ms",
    "median_ttft_ms",
    "std_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "std_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "median_itl_ms",
    "std_itl_ms",
    "p99_itl_ms",
    "mean_e2e_latency_ms",
    "median_e2e_latency_ms",
];

/// The wall-clock tests of this file share two cores. The lab-against-wall
/// test times real processes, so it takes this lock for writing and runs
/// alone; the others take it for reading and may run together.
static CORES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prefixgate-sweep-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(dir: &Path) -> SweepOptions {
    SweepOptions {
        output_dir: dir.to_owned(),
        vllm_sim_bin: Some(prefixgate_launch::VLLM_SIM.locate_or_build().unwrap()),
        prefixgate_bin: None,
        envoy_bin: None,
        filter_wasm: None,
        progress: false,
        repeat: 1,
    }
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r.records().map(|x| x.unwrap().iter().map(str::to_owned).collect()).collect();
    (header, rows)
}

const SMALL_SWEEP: &str = r#"
[server]
num_servers = 2
time_scale = 50.0

[strategies]
round_robin = "round_robin"
prefix_aware = { policy = "prefix_aware", miss_policy = "least_loaded" }

[bench]
benchmark_label = "test"
num_prompts = 20
max_conversations = 300
max_concurrency = 8
request_rate = inf
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_strategy_sweep_writes_both_csvs_and_a_report() {
    let _shared = CORES.read().await;
    let dir = fresh_dir("two");
    let config = SweepConfig::parse(SMALL_SWEEP).unwrap();
    let reports = run_sweep(&config, &options(&dir)).await.unwrap();
    assert_eq!(reports.len(), 2);

    let (header, rows) = read_csv(&dir.join(SERVE_CSV));
    let expected: Vec<&str> = SETTINGS.iter().chain(SERVE_METRICS.iter()).copied().collect();
    assert_eq!(&header[..expected.len()], &expected[..], "serve CSV columns");
    assert_eq!(rows.len(), 2, "one row per strategy");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(rows[0][col("scheduler_strategy")], "round_robin");
    assert_eq!(rows[1][col("scheduler_strategy")], "prefix_aware");
    for row in &rows {
        assert_eq!(row[col("completed")], "20", "every request completed");
        assert_eq!(row[col("failed")], "0");
        assert_eq!(row[col("num_servers")], "2");
        assert_eq!(row[col("benchmark_label")], "test");
        assert_eq!(row[col("request_rate")], "inf");
        assert!(row[col("mean_ttft_ms")].parse::<f64>().unwrap() > 0.0);
    }
    // The configuration each router ran: the strategy's settings and the fleet.
    let replicas: Vec<String> =
        reports[1].1.args.replica_urls.iter().map(|u| u.replace("http://", "")).collect();
    assert_eq!(replicas.len(), 2);
    for (row, policy) in rows.iter().zip(["round_robin", "prefix_aware"]) {
        let ran: FilterConfig = serde_json::from_str(&row[col("plugin_config")]).unwrap();
        assert_eq!(ran.policy.as_str(), policy);
        assert_eq!(ran.backends.len(), 2, "the fleet it ran in front of: {ran:?}");
    }
    let ran: FilterConfig = serde_json::from_str(&rows[1][col("plugin_config")]).unwrap();
    assert_eq!(ran.miss_policy, MissPolicy::LeastLoaded, "filter settings recorded");
    let listed: Vec<&str> = ran.backends.iter().map(|b| b.address()).collect();
    assert_eq!(listed, replicas);

    let (vheader, vrows) = read_csv(&dir.join(VLLM_CSV));
    assert_eq!(&vheader[..SETTINGS.len()], &SETTINGS[..], "vllm CSV starts with the settings");
    assert_eq!(vrows.len(), 2);
    let vcol = |name: &str| vheader.iter().position(|h| h == name).unwrap();
    for row in &vrows {
        assert_eq!(row[vcol("request_success_total")], "20", "the replicas served every request");
        let shares: Vec<f64> =
            row[vcol("replica_request_shares")].split(';').map(|x| x.parse().unwrap()).collect();
        assert_eq!(shares.len(), 2);
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    // Round robin spreads over the fleet. Its turns go through one cursor
    // shared by every worker, but a run is not always exactly even (11/9 was
    // seen on a fresh clone), so the bound leaves two requests of slack.
    let rr: Vec<f64> = vrows[0][vcol("replica_requests")].split(';').map(|x| x.parse().unwrap()).collect();
    assert!(rr.iter().all(|n| *n >= 8.0), "round robin spread: {rr:?}");

    for strategy in ["round_robin", "prefix_aware"] {
        let log = std::fs::read_to_string(dir.join(format!("logs/{strategy}_stdout.log"))).unwrap();
        assert!(log.contains("prefixgate listening on"), "{strategy}: router output logged");
        assert_eq!(log.matches("vllm-sim replica").count(), 2, "{strategy}: fresh fleet logged");
        assert!(dir.join(format!("requests/{strategy}.jsonl")).is_file());
    }

    // The router's decision header is recorded per request, from real responses.
    for strategy in ["round_robin", "prefix_aware"] {
        let detail = std::fs::read_to_string(dir.join(format!("requests/{strategy}.jsonl"))).unwrap();
        let decided =
            detail.lines().filter(|l| l.contains(&format!("\"decision\":\"policy={strategy};"))).count();
        assert_eq!(decided, 20, "{strategy}: every request carries its decision");
    }

    let page = std::fs::read_to_string(write_report(&dir, None, None).unwrap()).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    for chart in [
        "Time to first token (ms)",
        "Time per output token (ms)",
        "End-to-end latency (ms)",
        "Request throughput",
        "TTFT distribution",
        "Decision reasons per strategy",
        "requests in flight per replica",
        "Prefix-cache hit rate per replica",
        "Share of requests per replica",
    ] {
        assert!(page.contains(chart), "chart `{chart}` missing");
    }
    // Latency (4) + throughput (2) + decisions (1) + distributions (3) + 3 over time per
    // strategy (6) + per replica (2).
    assert_eq!(page.matches("<svg").count(), 18);
    assert!(!page.contains("<script") && !page.contains("<link") && !page.contains("src="), "self-contained");
    if std::env::var_os("PREFIXGATE_KEEP_SWEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_fails_to_start_stops_the_sweep_with_its_log() {
    let _shared = CORES.read().await;
    let dir = fresh_dir("bad");
    // The router cannot bind its listener: the port is held here.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let config = SweepConfig::parse(&format!(
        "[server]\nnum_servers = 1\ntime_scale = 50.0\nrouter_port = {port}\n[strategies]\nbroken = \"pow2\"\n\
         [bench]\nnum_prompts = 2\n"
    ))
    .unwrap();
    let err = format!("{:#}", run_sweep(&config, &options(&dir)).await.unwrap_err());
    assert!(err.contains("strategy `broken`"), "{err}");
    assert!(err.contains("prefixgate exited during startup"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "the log tail names the address: {err}");
    assert!(!dir.join(SERVE_CSV).exists(), "no row for a run that did not happen");
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_sweep_routes_through_the_filter_in_envoy() {
    let _shared = CORES.read().await;
    // `cargo xtask test` sets ENVOY_BIN and PREFIXGATE_FILTER_WASM; without
    // them this test fails and says so rather than skipping.
    let dir = fresh_dir("envoy");
    let config = SweepConfig::parse(
        "[server]\nrouter = \"envoy\"\nnum_servers = 2\ntime_scale = 50.0\n\
         [strategies]\nprefix_aware = { policy = \"prefix_aware\", miss_policy = \"least_loaded\" }\n\
         [bench]\nnum_prompts = 12\nmax_conversations = 300\nmax_concurrency = 4\n",
    )
    .unwrap();
    let reports = run_sweep(&config, &options(&dir)).await.unwrap();
    assert_eq!(reports[0].1.metrics.completed, 12);
    let (header, rows) = read_csv(&dir.join(SERVE_CSV));
    let router = header.iter().position(|h| h == "router").unwrap();
    assert_eq!(rows[0][router], "envoy");
    let served: Vec<_> = reports[0].1.outcomes.iter().filter_map(|o| o.backend.clone()).collect();
    assert_eq!(served.len(), 12, "every response names the replica the filter chose");
    let bootstrap = std::fs::read_to_string(dir.join("logs/prefix_aware.envoy.yaml")).unwrap();
    assert!(bootstrap.contains("least_loaded"), "the strategy's settings reach the plugin config");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_router_processes_share_one_fleet_and_take_requests_in_turn() {
    let _shared = CORES.read().await;
    let dir = fresh_dir("routers");
    let config = SweepConfig::parse(
        "[server]\nnum_servers = 2\nrouters = 2\ntime_scale = 50.0\n\
         [strategies]\nleast_ttft = \"least_ttft\"\n\
         [bench]\nnum_prompts = 16\nmax_conversations = 300\nmax_concurrency = 4\n",
    )
    .unwrap();
    let reports = run_sweep(&config, &options(&dir)).await.unwrap();
    let outcomes = &reports[0].1.outcomes;
    assert_eq!(reports[0].1.metrics.completed, 16);
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.router, Some(i % 2), "request {i} goes to router {}", i % 2);
        let decision = o.decision.as_deref().unwrap_or_default();
        assert!(decision.starts_with("policy=least_ttft;"), "request {i}: {decision:?}");
    }
    // Both routers' processes wrote to the strategy's log: two listeners.
    let log = std::fs::read_to_string(dir.join("logs/least_ttft_stderr.log")).unwrap()
        + &std::fs::read_to_string(dir.join("logs/least_ttft_stdout.log")).unwrap();
    let listening: std::collections::BTreeSet<&str> =
        log.lines().filter(|l| l.starts_with("prefixgate listening on ")).collect();
    assert_eq!(listening.len(), 2, "two routers on two addresses:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

// The policy lab against the wall clock: one sweep file run in the lab and
// as processes at time scale 1 (`vllm-sim` replicas behind `prefixgate`)
// agrees, per strategy, on request throughput, mean TTFT and the replicas'
// prefix-cache hit rate, within the ±5 % the README's full comparison of
// the seed workload holds. This workload is small (48 prompts, 2 replicas,
// about 10 s); on it the two agreed within 0.6 % on both figures and to the
// token on the hit rate, so the bounds leave the wall clock's noise room and
// still fail when the lab models something else.
/// Request throughput and mean TTFT: lab and wall clock within this share of each other.
const RELATIVE: f64 = 0.05;
/// Mean TTFT may read this much higher on the wall clock on top of
/// [`RELATIVE`]: the lab does not model the driver's, the router's and
/// loopback's own time, about a millisecond a request on an idle machine and
/// more while the build or another test holds a core (CI measured 10.6 and
/// 12.4 ms with the other sweep tests running beside this one).
const WALL_OWN_TTFT_MS: f64 = 10.0;
/// Prefix-cache hit rate: within this many points.
const HIT_POINTS: f64 = 0.03;

/// (request throughput, mean TTFT ms, prefix-cache hit rate) of a run.
fn figures(report: &RunReport) -> (f64, f64, f64) {
    let hit = report.vllm.as_ref().and_then(|v| v.prefix_cache_hit_rate).unwrap_or(f64::NAN);
    (report.metrics.request_throughput, report.metrics.ttft_ms.mean, hit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_agrees_with_a_wall_clock_sweep_at_time_scale_one() {
    let _alone = CORES.write().await;
    let text = "[server]\nnum_servers = 2\ntime_scale = 1.0\n\
                [strategies]\nround_robin = \"round_robin\"\nprefix_aware = \"prefix_aware\"\n\
                [bench]\nnum_prompts = 48\nmax_conversations = 400\nmax_concurrency = 8\n\
                request_rate = 8.0\nmin_output_len = 10\nmax_output_len = 60\nseed = 3\n";
    let wall_config = SweepConfig::parse(text).unwrap();
    let mut lab_config = wall_config.clone();
    lab_config.server.mode = Mode::Lab;

    let wall_dir = fresh_dir("agreement-wall");
    let wall = run_sweep(&wall_config, &options(&wall_dir)).await.unwrap();
    let lab_dir = fresh_dir("agreement-lab");
    let lab = sweep_in_lab(&lab_config, &lab_dir, 1).unwrap();

    let mut lines = Vec::new();
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for (label, wall_report) in &wall {
        let lab_run = lab.iter().find(|r| &r.label == label).unwrap();
        let (w, l) = (figures(wall_report), figures(&lab_run.report));
        assert_eq!(wall_report.metrics.completed, lab_run.report.metrics.completed, "{label}: completed");
        let rel = |a: f64, b: f64| (a - b).abs() / b;
        worst.0 = worst.0.max(rel(w.0, l.0));
        // TTFT: below the lab by at most RELATIVE, above it by at most
        // RELATIVE plus the wall clock's own time.
        let ttft_excess = if w.1 > l.1 { (w.1 - l.1 - WALL_OWN_TTFT_MS).max(0.0) } else { l.1 - w.1 };
        worst.1 = worst.1.max(ttft_excess / l.1);
        worst.2 = worst.2.max((w.2 - l.2).abs());
        lines.push(format!(
            "{label}: req/s wall {:.3} lab {:.3}; TTFT ms wall {:.1} lab {:.1}; hit wall {:.3} lab {:.3}",
            w.0, l.0, w.1, l.1, w.2, l.2
        ));
    }
    let table = lines.join("\n");
    assert!(worst.0 <= RELATIVE, "request throughput differs by {:.1} %:\n{table}", worst.0 * 100.0);
    assert!(
        worst.1 <= RELATIVE,
        "mean TTFT differs by {:.1} % beyond the wall clock's own {WALL_OWN_TTFT_MS} ms:\n{table}",
        worst.1 * 100.0
    );
    assert!(worst.2 <= HIT_POINTS, "hit rate differs by {:.3}:\n{table}", worst.2);
    // The two strategies differ in the lab as on the wall clock: the
    // comparison is not of two runs that happen to be alike.
    let lab_hits: Vec<f64> = lab.iter().map(|r| figures(&r.report).2).collect();
    assert!(
        (lab_hits[0] - lab_hits[1]).abs() > 2.0 * HIT_POINTS,
        "round_robin and prefix_aware hit alike in the lab:\n{table}"
    );
    println!("{table}");
    let _ = std::fs::remove_dir_all(&wall_dir);
    let _ = std::fs::remove_dir_all(&lab_dir);
}
