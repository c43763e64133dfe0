//! `prefixgate-bench calibrate`: a profile's published fleet run replayed in the lab on a
//! ShareGPT-shaped file, with each published figure beside the replay's and their ratio.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prefixgate_bench::lab::calibrate::{calibrate, CalibrateArgs};
use prefixgate_bench::load::dataset::{synthetic, Role};
use serde_json::json;

/// Writes `conversations` synthetic conversations as a ShareGPT file; returns its path.
fn sharegpt_file(dir: &std::path::Path, conversations: usize) -> std::path::PathBuf {
    let convs: Vec<serde_json::Value> = synthetic(conversations, 7)
        .into_iter()
        .map(|c| {
            let turns: Vec<serde_json::Value> = c
                .turns
                .iter()
                .map(|t| json!({"from": if t.role == Role::User { "human" } else { "gpt" }, "value": t.text}))
                .collect();
            json!({"id": c.id, "conversations": turns})
        })
        .collect();
    let path = dir.join("sharegpt.json");
    std::fs::write(&path, serde_json::to_vec(&convs).unwrap()).unwrap();
    path
}

/// A fresh directory of this test process.
fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("prefixgate-calibrate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn args(dataset_path: std::path::PathBuf, profile: &str) -> CalibrateArgs {
    CalibrateArgs { profile: profile.into(), dataset_path, tokenizer: None, num_prompts: Some(60) }
}

#[test]
fn the_default_profile_replays_its_fleet_run_and_prints_every_figure_with_its_ratio() {
    let dir = temp_dir("replay");
    let file = sharegpt_file(&dir, 80);
    let replays = calibrate(&args(file, "l4-qwen2.5-1.5b")).unwrap();
    assert_eq!(replays.len(), 1, "the default profile cites one fleet run");
    let replay = &replays[0];
    assert_eq!(replay.metrics.completed, 60);
    assert_eq!(replay.metrics.failed, 0);
    let flags = replay.flags.join(" ");
    assert!(flags.contains("--replicas 4") && flags.contains("--min-messages 16"), "{flags}");
    let ratios = replay.ratios();
    assert_eq!(ratios.len(), 6);
    assert_eq!(ratios[0].simulated, replay.metrics.request_throughput);
    assert_eq!(ratios[3].simulated, replay.metrics.ttft_ms.mean);
    let table = replay.table();
    for r in &ratios {
        let cited = r.cited.unwrap();
        let ratio = r.simulated / cited;
        let row = table.lines().find(|l| l.starts_with(&format!("| {} |", r.name))).expect(r.name);
        assert!(row.contains(&format!("{ratio:.2}")), "{row} should hold {ratio:.2}");
        let tolerance = if r.throughput { 0.10 } else { 0.15 };
        assert_eq!(row.ends_with("* |"), (ratio - 1.0).abs() > tolerance, "{row}");
    }
    assert!(table.contains("prefixgate-bench lab --profile l4-qwen2.5-1.5b"), "{table}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_profile_without_a_fleet_run_or_a_missing_file_is_refused_by_name() {
    let dir = temp_dir("refused");
    let file = sharegpt_file(&dir, 4);
    let err = format!("{:#}", calibrate(&args(file, "l4-qwen2.5-0.5b")).unwrap_err());
    assert!(err.contains("l4-qwen2.5-0.5b") && err.contains("l4-qwen2.5-1.5b"), "{err}");
    let err = format!("{:#}", calibrate(&args(dir.join("absent.json"), "l4-qwen2.5-1.5b")).unwrap_err());
    assert!(err.contains("absent.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
