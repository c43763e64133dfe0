//! The policy lab against the wall clock: one sweep file run in the lab and
//! as processes at time scale 1 (`vllm-sim` replicas behind `prefixgate`)
//! agrees, per strategy, on request throughput, mean TTFT and the replicas'
//! prefix-cache hit rate, within the ±5 % the README's full comparison of
//! the seed workload holds. This workload is small (48 prompts, 2 replicas,
//! about 10 s); on it the two agreed within 0.6 % on both figures and to the
//! token on the hit rate, so the bounds leave the wall clock's noise room and
//! still fail when the lab models something else.

#![allow(clippy::unwrap_used)]

use prefixgate_bench::lab::sweep_in_lab;
use prefixgate_bench::load::run::RunReport;
use prefixgate_bench::sweep::config::{Mode, SweepConfig};
use prefixgate_bench::sweep::run::{run_sweep, SweepOptions};
use std::path::PathBuf;

/// Request throughput and mean TTFT: lab and wall clock within this share of each other.
const RELATIVE: f64 = 0.05;
/// Prefix-cache hit rate: within this many points.
const HIT_POINTS: f64 = 0.03;

fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prefixgate-agreement-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// (request throughput, mean TTFT ms, prefix-cache hit rate) of a run.
fn figures(report: &RunReport) -> (f64, f64, f64) {
    let hit = report.vllm.as_ref().and_then(|v| v.prefix_cache_hit_rate).unwrap_or(f64::NAN);
    (report.metrics.request_throughput, report.metrics.ttft_ms.mean, hit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_agrees_with_a_wall_clock_sweep_at_time_scale_one() {
    let text = "[server]\nnum_servers = 2\ntime_scale = 1.0\n\
                [strategies]\nround_robin = \"round_robin\"\nprefix_aware = \"prefix_aware\"\n\
                [bench]\nnum_prompts = 48\nmax_conversations = 400\nmax_concurrency = 8\n\
                request_rate = 8.0\nmin_output_len = 10\nmax_output_len = 60\nseed = 3\n";
    let wall_config = SweepConfig::parse(text).unwrap();
    let mut lab_config = wall_config.clone();
    lab_config.server.mode = Mode::Lab;

    let wall_dir = fresh_dir("wall");
    let options = SweepOptions {
        output_dir: wall_dir.clone(),
        vllm_sim_bin: Some(prefixgate_launch::VLLM_SIM.locate_or_build().unwrap()),
        prefixgate_bin: None,
        envoy_bin: None,
        filter_wasm: None,
        progress: false,
        repeat: 1,
    };
    let wall = run_sweep(&wall_config, &options).await.unwrap();
    let lab_dir = fresh_dir("lab");
    let lab = sweep_in_lab(&lab_config, &lab_dir, 1).unwrap();

    let mut lines = Vec::new();
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for (label, wall_report) in &wall {
        let lab_run = lab.iter().find(|r| &r.label == label).unwrap();
        let (w, l) = (figures(wall_report), figures(&lab_run.report));
        assert_eq!(wall_report.metrics.completed, lab_run.report.metrics.completed, "{label}: completed");
        let rel = |a: f64, b: f64| (a - b).abs() / b;
        worst.0 = worst.0.max(rel(w.0, l.0));
        worst.1 = worst.1.max(rel(w.1, l.1));
        worst.2 = worst.2.max((w.2 - l.2).abs());
        lines.push(format!(
            "{label}: req/s wall {:.3} lab {:.3}; TTFT ms wall {:.1} lab {:.1}; hit wall {:.3} lab {:.3}",
            w.0, l.0, w.1, l.1, w.2, l.2
        ));
    }
    let table = lines.join("\n");
    assert!(worst.0 <= RELATIVE, "request throughput differs by {:.1} %:\n{table}", worst.0 * 100.0);
    assert!(worst.1 <= RELATIVE, "mean TTFT differs by {:.1} %:\n{table}", worst.1 * 100.0);
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
