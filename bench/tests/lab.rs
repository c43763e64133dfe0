//! `prefixgate-bench lab`: a hand-computed scenario, the scorecard's bound, several
//! routers, determinism, and the grid.

#![allow(clippy::unwrap_used, reason = "test helpers too: a failed unwrap is a failed test")]

use clap::Parser;
use prefixgate_bench::lab::simulate::{simulate, LabSpec};
use prefixgate_bench::lab::{lab, LabArgs};
use prefixgate_bench::load::client::BenchRequest;
use prefixgate_bench::load::run::RunArgs;
use prefixgate_bench::sweep::results_csv::SERVE_CSV;
use std::path::{Path, PathBuf};
use vllm_sim::tokenizer::SimTokenizer;
use vllm_sim::{Profile, SimConfig};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
}

fn lab_args(flags: &str) -> LabArgs {
    Cli::try_parse_from(std::iter::once("lab").chain(flags.split_whitespace())).unwrap().lab
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prefixgate-lab-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small seed-like workload: synthetic multi-turn, 4 replicas, shortened.
const SMALL: &str = "--num-prompts 150 --max-conversations 600 --request-rate 100 --max-concurrency 40 \
                     --replicas 4";

/// A profile whose step time is 1 ms + 1 ms per computed token (memory traffic is
/// negligible: it never exceeds the compute time), with a front end of 2 ms CPU per
/// request (serial) and 10 ms latency, and nothing else.
fn toy_profile() -> Profile {
    Profile {
        name: "toy".into(),
        weight_bytes: 1.0,
        kv_bytes_per_token: 1.0,
        mem_bandwidth: 1e15,
        flops: 1e6,
        flops_per_token: 1_000.0,
        lm_head_flops: 0.0,
        attention_flops_per_pair: 0.0,
        step_overhead_seconds: 0.001,
        seq_overhead_seconds: 0.0,
        frontend_latency_seconds: 0.010,
        frontend_cpu_seconds: 0.002,
        tokenize_seconds_per_token: 0.0,
        detokenize_seconds_per_token: 0.0,
        num_gpu_blocks: 1_000,
        max_model_len: 4_096,
        sources: Vec::new(),
        references: Vec::new(),
        fleet_references: Vec::new(),
    }
}

#[test]
fn two_replicas_three_requests_have_the_hand_computed_ttfts() {
    let texts = ["alpha beta gamma ".repeat(20), "delta epsilon ".repeat(30), "zeta eta theta ".repeat(25)];
    let tokens: Vec<f64> =
        texts.iter().map(|t| SimTokenizer::Approximate.encode(t, true).unwrap().len() as f64).collect();
    let requests: Vec<BenchRequest> = texts
        .iter()
        .zip(&tokens)
        .map(|(t, n)| BenchRequest {
            prompt: t.as_str().into(),
            messages: vec![("user".to_owned(), t.clone())].into(),
            prompt_len: *n as u64,
            output_len: 3,
        })
        .collect();
    // All three at once, no concurrency limit: round robin sends 0 and 2 to the first
    // replica, 1 to the second.
    let mut args = lab_args("").run;
    args.request_rate = f64::INFINITY;
    let sim = SimConfig { profile: toy_profile(), ..SimConfig::default() };
    let spec = LabSpec {
        args: &args,
        requests: &requests,
        sim: &sim,
        replicas: 2,
        plugin_config: &serde_json::json!({"policy": "round_robin"}),
        routers: 1,
    };
    let result = simulate(&spec).unwrap();
    let o = &result.outcomes;
    let backends: Vec<_> = o.iter().map(|x| x.backend.clone().unwrap()).collect();
    assert_eq!(backends[0], backends[2]);
    assert_ne!(backends[0], backends[1]);
    // Request 1, alone on its replica: front end (2 ms CPU + 10 ms), one prefill step.
    let ttft1 = 0.012 + 0.001 + tokens[1] * 0.001;
    // Request 0 reaches the engine at 12 ms, request 2 (admitted 2 ms later on the same
    // serial front end) at 14 ms, while request 0's prefill runs; request 2's prefill
    // runs in the next step, beside request 0's first decode.
    let ttft0 = 0.012 + 0.001 + tokens[0] * 0.001;
    let ttft2 = ttft0 + 0.001 + (tokens[2] + 1.0) * 0.001;
    for (got, want) in [(o[0].ttft_s, ttft0), (o[1].ttft_s, ttft1), (o[2].ttft_s, ttft2)] {
        assert!((got - want).abs() < 1e-9, "TTFT {got} s, want {want} s");
    }
    assert!(o.iter().all(|x| x.success && x.itl_s.len() == 2));
}

#[test]
fn the_reuse_bound_is_at_least_every_policys_delivered_hit_rate() {
    // A small KV cache (1,500 blocks of 16 tokens per replica) so that eviction bites.
    let runs =
        lab(&lab_args(&format!("{SMALL} --num-gpu-blocks 1500 --policy round_robin,pow2,prefix_aware")))
            .unwrap();
    assert_eq!(runs.len(), 3);
    for run in &runs {
        let c = run.report.scorecard.clone().unwrap();
        assert!(c.reuse_bound >= c.delivered, "{}: {c:?}", run.label);
        assert!(c.reuse_bound >= c.captured, "{}: {c:?}", run.label);
        assert_eq!(run.report.metrics.completed, 150, "{}", run.label);
    }
    let prefix_aware = runs[2].report.scorecard.clone().unwrap();
    let round_robin = runs[0].report.scorecard.clone().unwrap();
    assert!(prefix_aware.reuse_bound > 0.3, "the multi-turn workload reuses prefixes: {prefix_aware:?}");
    assert!(prefix_aware.delivered > 0.0, "{prefix_aware:?}");
    assert!(prefix_aware.captured > round_robin.captured, "{prefix_aware:?} vs {round_robin:?}");
}

#[test]
fn one_router_is_the_single_router_run_and_four_routers_capture_less() {
    let single = lab(&lab_args(&format!("{SMALL} --policy prefix_aware"))).unwrap();
    let one = lab(&lab_args(&format!("{SMALL} --policy prefix_aware --routers 1"))).unwrap();
    let four = lab(&lab_args(&format!("{SMALL} --policy prefix_aware --routers 4"))).unwrap();
    assert_eq!(one[0].report.outcomes, single[0].report.outcomes);
    assert_eq!(one[0].report.metrics, single[0].report.metrics);
    assert_eq!(one[0].report.scorecard, single[0].report.scorecard);
    let (c1, c4) = (one[0].report.scorecard.clone().unwrap(), four[0].report.scorecard.clone().unwrap());
    assert_eq!(c1.reuse_bound, c4.reuse_bound, "the same requests");
    assert!(c4.captured < c1.captured, "four independent indexes: {c4:?} vs {c1:?}");
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.strip_prefix(dir).unwrap().to_owned(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_same_inputs_write_byte_identical_outputs() {
    let mut outputs = Vec::new();
    for run in ["a", "b"] {
        let dir = temp_dir(&format!("determinism-{run}"));
        let file = dir.join("record.jsonl");
        let flags = format!(
            "{SMALL} --policy pow2,prefix_aware --output-dir {} --output-file {}",
            dir.join("sweep").display(),
            file.display()
        );
        lab(&lab_args(&flags)).unwrap();
        outputs.push(files(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(outputs[0].len(), 7, "{:?}", outputs[0].iter().map(|(p, _)| p).collect::<Vec<_>>());
    assert!(outputs[0] == outputs[1], "the two runs wrote different bytes");
}

#[test]
fn a_grid_of_two_points_writes_two_rows() {
    let dir = temp_dir("grid");
    let flags = format!(
        "--num-prompts 40 --max-conversations 600 --request-rate 100 --replicas 4 \
         --grid imbalanced_threshold=2,20 --output-dir {}",
        dir.display()
    );
    let runs = lab(&lab_args(&flags)).unwrap();
    assert_eq!(runs.len(), 2);
    let mut reader = csv::Reader::from_path(dir.join(SERVE_CSV)).unwrap();
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let configs: Vec<serde_json::Value> =
        rows.iter().map(|r| serde_json::from_str(&r[at("plugin_config")]).unwrap()).collect();
    // The configuration each run ran: the grid point, and the simulated fleet as backends.
    assert_eq!(configs[0]["imbalanced_threshold"], 2.0);
    assert_eq!(configs[1]["imbalanced_threshold"], 20.0);
    for c in &configs {
        assert_eq!(c["backends"].as_array().map(Vec::len), Some(4), "{c}");
    }
    assert_ne!(rows[0][at("scheduler_strategy")], rows[1][at("scheduler_strategy")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lab_and_run_send_the_same_requests() {
    let args: RunArgs = lab_args(SMALL).run;
    let a = prefixgate_bench::load::run::build_requests(&args).unwrap();
    let b = prefixgate_bench::load::run::build_requests(&args).unwrap();
    assert_eq!(a.requests, b.requests);
    let runs = lab(&lab_args(&format!("{SMALL} --policy round_robin"))).unwrap();
    let sent: Vec<u64> = runs[0].report.outcomes.iter().map(|o| o.prompt_len).collect();
    let built: Vec<u64> = a.requests.iter().map(|r| r.prompt_len).collect();
    assert_eq!(sent, built);
}

#[test]
fn least_ttft_beats_round_robin_with_roomy_and_with_cut_caches_and_keeps_hits_across_routers() {
    // 1,500 blocks per replica hold a fraction of this workload's working
    // set; 8,000 hold all of it at this size.
    for blocks in [1500, 8000] {
        let runs = lab(&lab_args(&format!(
            "{SMALL} --num-gpu-blocks {blocks} --policy round_robin,prefix_aware,least_ttft"
        )))
        .unwrap();
        let ttft = |i: usize| runs[i].report.metrics.ttft_ms.mean;
        assert!(
            ttft(2) < ttft(0),
            "{blocks} blocks: least_ttft {} ms vs round_robin {} ms",
            ttft(2),
            ttft(0)
        );
        assert!(runs.iter().all(|r| r.report.metrics.completed == 150));
    }
    // Four routers with separate indexes: rendezvous placement keeps more
    // of the hits than prefix_aware's independent choices do.
    let four = lab(&lab_args(&format!("{SMALL} --policy prefix_aware,least_ttft --routers 4"))).unwrap();
    let delivered = |i: usize| four[i].report.scorecard.clone().unwrap().delivered;
    assert!(delivered(1) > delivered(0), "least_ttft {} vs prefix_aware {}", delivered(1), delivered(0));
}

#[test]
fn the_generated_shapes_run_in_the_lab_with_the_reuse_they_promise() {
    let run = |flags: &str| {
        let runs = lab(&lab_args(&format!(
            "--request-rate 100 --max-concurrency 16 --replicas 2 --policy round_robin,prefix_aware {flags}"
        )))
        .unwrap();
        runs.into_iter().map(|r| r.report).collect::<Vec<_>>()
    };
    // Prefix-free: nothing an ideal router could reuse, through the filter and the engines.
    for flags in [
        "--dataset-name random --num-prompts 60 --random-input-len 512 --random-output-len 16",
        "--dataset-name decode-heavy --num-prompts 40 --decode-min-output-len 20 --decode-max-output-len 40",
    ] {
        for report in run(flags) {
            let c = report.scorecard.unwrap();
            assert!(c.reuse_bound < 0.02, "{flags}: {c:?}");
            assert_eq!(report.metrics.completed, report.outcomes.len() as u64);
        }
    }
    // Three system prompts of 400 tokens, 10 questions of 20 tokens each: 9 of every 10
    // requests could reuse their group's prompt; prefix_aware captures more than round robin.
    let gsp =
        run("--dataset-name gsp --gsp-num-groups 3 --gsp-prompts-per-group 10 --gsp-system-prompt-len 400 \
         --gsp-question-len 20 --gsp-output-len 8");
    assert_eq!(gsp[0].metrics.completed, 30);
    let (rr, pa) = (gsp[0].scorecard.clone().unwrap(), gsp[1].scorecard.clone().unwrap());
    assert!(rr.reuse_bound > 0.75 && rr.reuse_bound == pa.reuse_bound, "{rr:?}");
    assert!(pa.captured > rr.captured, "{pa:?} vs {rr:?}");
    let docs =
        run("--dataset-name long-document --num-prompts 24 --long-doc-num-docs 2 --long-doc-min-len 1000 \
         --long-doc-max-len 1200 --max-output-len 16");
    let c = docs[1].scorecard.clone().unwrap();
    assert!(c.reuse_bound > 0.85, "{c:?}");
}
