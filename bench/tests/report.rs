//! `prefixgate-bench report` over lab results (virtual time, a few seconds):
//! what the page says about the run, the repetitions and their spread, the
//! decision mix against the per-request records, one name per replica, the
//! baseline, and an older results directory without the newer columns.

#![allow(clippy::unwrap_used, reason = "test helpers too: a failed unwrap is a failed test")]

use prefixgate_bench::lab::sweep_in_lab;
use prefixgate_bench::report::data::{load, read_outcomes};
use prefixgate_bench::report::decisions::{reason, Mix};
use prefixgate_bench::report::{render, write_report, ReportError};
use prefixgate_bench::sweep::config::SweepConfig;
use prefixgate_bench::sweep::results_csv::{SERVE_CSV, VLLM_CSV};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LAB_SWEEP: &str = r#"
[server]
mode = "lab"
num_servers = 3

[strategies]
round_robin = "round_robin"
pow2 = "pow2"
prefix_aware = "prefix_aware"

[bench]
benchmark_label = "report-test"
num_prompts = 40
max_conversations = 300
max_concurrency = 8
request_rate = 50.0
seed = 3
"#;

fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prefixgate-report-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    r.records().map(|x| header.iter().cloned().zip(x.unwrap().iter().map(str::to_owned)).collect()).collect()
}

/// A lab sweep with `--repeat 2`, run once for every test that reads it.
fn repeated_lab() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = fresh_dir("repeat");
        let config = SweepConfig::parse(LAB_SWEEP).unwrap();
        let runs = sweep_in_lab(&config, &dir, 2).unwrap();
        assert_eq!(runs.len(), 6);
        dir
    })
}

#[test]
fn repeat_2_writes_two_rows_per_strategy_and_the_report_shows_their_spread() {
    let dir = repeated_lab();
    for csv in [SERVE_CSV, VLLM_CSV] {
        let rows = csv_rows(&dir.join(csv));
        for strategy in ["round_robin", "pow2", "prefix_aware"] {
            let repeats: Vec<&str> = rows
                .iter()
                .filter(|r| r["scheduler_strategy"] == strategy)
                .map(|r| r["repeat"].as_str())
                .collect();
            assert_eq!(repeats, ["1", "2"], "{csv}: {strategy}");
        }
    }
    let serve = csv_rows(&dir.join(SERVE_CSV));
    let files: Vec<&str> = serve.iter().map(|r| r["requests_file"].as_str()).collect();
    assert!(
        files.contains(&"requests/pow2.jsonl") && files.contains(&"requests/pow2.repeat-2.jsonl"),
        "{files:?}"
    );
    // pow2's repetitions use different router seeds, so they differ.
    let pow2: Vec<&str> = serve
        .iter()
        .filter(|r| r["scheduler_strategy"] == "pow2")
        .map(|r| r["mean_ttft_ms"].as_str())
        .collect();
    assert_ne!(pow2[0], pow2[1], "pow2's repetitions differ in the router's random choices");

    let results = load(dir).unwrap();
    assert_eq!(results.strategies.len(), 3);
    assert!(results.strategies.iter().all(|s| s.runs.len() == 2));
    let page = render(&results, None).unwrap();
    assert!(page.contains("2 runs per strategy"), "the repetitions are described");
    // pow2's TTFT cell: mean ± sd, then min–max of its two runs.
    let ttft: Vec<f64> = pow2.iter().map(|x| x.parse().unwrap()).collect();
    let (lo, hi) = (ttft[0].min(ttft[1]), ttft[0].max(ttft[1]));
    let mean = (ttft[0] + ttft[1]) / 2.0;
    let sd = (hi - lo) / 2f64.sqrt();
    assert!(page.contains(&format!("{mean:.1} ± {sd:.1}<br><small>{lo:.1}–{hi:.1}</small>")), "pow2 spread");
}

#[test]
fn the_report_describes_the_run() {
    let dir = repeated_lab();
    let page = std::fs::read_to_string(write_report(dir, None, None).unwrap()).unwrap();
    for text in [
        "3 replicas × l4-qwen2.5-1.5b",
        "virtual time (lab)",
        "synthetic, 40 prompts",
        "50 req/s, at most 8 in flight",
        "lab: the filter&#x27;s code in process",
        "<td>prefix_aware</td><td>2</td><td>prefix_aware</td>",
        "&quot;imbalanced_threshold&quot;",
        "results file last written",
    ] {
        let text = text.replace("&#x27;", "'");
        assert!(page.contains(&text), "`{text}` missing from the description");
    }
    assert!(
        !page.contains("<script")
            && !page.contains("<link")
            && !page.contains("src=")
            && !page.contains("@import")
    );
    assert!(page.contains("<b>round_robin</b>"), "round_robin is the default baseline");
}

#[test]
fn the_decision_mix_counts_the_per_request_records() {
    let dir = repeated_lab();
    let results = load(dir).unwrap();
    let mix = Mix::of(&results.strategies);
    for row in &mix.rows {
        // Count the reasons in the strategy's request files directly.
        let mut counted: BTreeMap<String, usize> = BTreeMap::new();
        let mut requests = 0;
        for r in csv_rows(&dir.join(SERVE_CSV)).iter().filter(|r| r["scheduler_strategy"] == row.label) {
            for o in read_outcomes(&dir.join(&r["requests_file"])).unwrap() {
                requests += 1;
                *counted.entry(reason(o.decision.as_deref().unwrap()).to_owned()).or_default() += 1;
            }
        }
        assert_eq!(row.counts, counted, "{}", row.label);
        assert_eq!((row.requests, row.without, row.runs), (requests, 0, 2));
    }
    let policy_reasons = |label: &str| {
        mix.rows.iter().find(|r| r.label == label).unwrap().counts.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(policy_reasons("round_robin"), ["round_robin"]);
    assert!(policy_reasons("prefix_aware").iter().all(|r| r != "round_robin"));
    let page = render(&results, None).unwrap();
    let rr = &mix.rows[0];
    assert!(page.contains(&format!("<td>round_robin</td><td>2</td><td>{}</td>", rr.requests)));
    assert!(page.contains("Decision reasons per strategy"));
}

#[test]
fn every_chart_names_replicas_the_same_way() {
    let dir = repeated_lab();
    let page = render(&load(dir).unwrap(), None).unwrap();
    // Legend names are `replica 0..2`; the addresses appear only as tooltips and in the table.
    for i in 0..3 {
        assert!(page.contains(&format!(">replica {i}</text>")), "replica {i} in a legend");
    }
    assert!(!page.contains(">replica 3<"), "three replicas, three names");
    let addresses: Vec<String> = csv_rows(&dir.join(VLLM_CSV))[0]["replica_urls"]
        .split(';')
        .map(|u| u.trim_start_matches("http://").to_owned())
        .collect();
    for (i, a) in addresses.iter().enumerate() {
        assert!(
            page.contains(&format!("<title>replica {i}: {a}</title>")),
            "in-flight legend tooltip of {a}"
        );
        assert!(page.contains(&format!("<td>{a}</td>")), "{a} in the replica table");
        assert!(!page.contains(&format!(">{a}</text>")), "{a} is not a series name");
    }
}

#[test]
fn the_baseline_can_be_chosen() {
    let dir = repeated_lab();
    let results = load(dir).unwrap();
    let page = render(&results, Some("pow2")).unwrap();
    assert!(page.contains("Changes are against <b>pow2</b>"));
    assert!(page.contains("pow2 <span class=\"base\">baseline</span>"));
    match render(&results, Some("least_ttft")) {
        Err(ReportError::UnknownBaseline { known, .. }) => {
            assert_eq!(known, ["round_robin", "pow2", "prefix_aware"])
        }
        other => panic!("expected an unknown baseline, got {:?}", other.map(|p| p.len())),
    }
}

/// A results directory as older sweeps wrote it: no `repeat`, `dataset_name`,
/// `profile` or `time_scale` column, no replica-side CSV, per-request records
/// without decisions or cached tokens.
#[test]
fn an_old_results_directory_still_renders_with_notes() {
    let dir = fresh_dir("old");
    std::fs::create_dir_all(dir.join("requests")).unwrap();
    let header = "gpu_type,model_name,num_servers,benchmark_label,scheduler_strategy,completed,failed,request_throughput,mean_ttft_ms,p99_ttft_ms,router,requests_file";
    let rows = [
        "L4,m,2,old,round_robin,2,0,1.0,100,150,prefixgate,requests/round_robin.jsonl",
        "L4,m,2,old,pow2,2,0,1.2,80,120,prefixgate,requests/pow2.jsonl",
    ];
    std::fs::write(dir.join(SERVE_CSV), format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let record = |backend: &str, start: f64| {
        format!(
            "{{\"success\":true,\"start_s\":{start},\"ttft_s\":0.1,\"itl_s\":[0.01],\"latency_s\":0.5,\"prompt_len\":10,\"output_len\":2,\"backend\":\"{backend}\"}}\n"
        )
    };
    for s in ["round_robin", "pow2"] {
        let lines = record("127.0.0.1:9001", 0.0) + &record("127.0.0.1:9002", 0.2);
        std::fs::write(dir.join(format!("requests/{s}.jsonl")), lines).unwrap();
    }
    let page = std::fs::read_to_string(write_report(&dir, None, None).unwrap()).unwrap();
    assert!(page.contains("the decision mix is left out"));
    assert!(page.contains("the cache hit rate over time is left out"));
    assert!(page.contains("the per-replica charts are left out"));
    assert!(page.contains("dataset not recorded") && page.contains("time scale not recorded"));
    assert!(page.contains("<span class=\"good\">\u{2212}20.0 %</span>"), "pow2's TTFT 80 against 100");
    assert!(page.contains("<title>replica 1: 127.0.0.1:9002</title>"), "replicas named from the requests");
    assert!(
        page.contains("TTFT distribution") && page.contains("round_robin: requests in flight per replica")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
