//! `cargo xtask demo`: a 4-replica simulated fleet, each policy in turn
//! behind `prefixgate`, the same synthetic multi-turn workload, and a
//! comparison table.
//!
//! Each policy gets a fresh fleet (empty caches). The fleet runs at a time
//! scale, and the driver reports in simulated seconds, so figures read as
//! they would on the L4 GPUs the simulator models.

use crate::paths::{target_dir, workspace_root};
use crate::run::cargo;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Policies compared, in order.
const POLICIES: [&str; 3] = ["round_robin", "pow2", "prefix_aware"];
/// Simulated seconds per real second.
const TIME_SCALE: &str = "4";

/// Runs the demo and prints where the results are.
pub fn demo() -> Result<()> {
    cargo(&["build", "--release", "--package", "prefixgate", "--package", "prefixgate-bench", "--bins"])?;
    let bin = target_dir().join("release");
    let out = target_dir().join("demo");
    std::fs::create_dir_all(out.join("logs")).with_context(|| format!("creating {}", out.display()))?;
    let results = out.join("results.jsonl");
    let _ = std::fs::remove_file(&results);
    for policy in POLICIES {
        eprintln!("xtask: demo: {policy}");
        run_policy(&bin, &out, policy, &results).with_context(|| format!("policy {policy}"))?;
    }
    print_table(&results)?;
    eprintln!("xtask: demo results in {} (per-request detail beside it)", results.display());
    Ok(())
}

fn run_policy(bin: &Path, out: &Path, policy: &str, results: &Path) -> Result<()> {
    let mut fleet = Guard(spawn(
        Command::new(bin.join("vllm-sim")).args([
            "--port",
            "0",
            "--replicas",
            "4",
            "--profile",
            "l4-qwen2.5-1.5b",
            "--time-scale",
            TIME_SCALE,
        ]),
        &out.join(format!("logs/{policy}_sim_stderr.log")),
    )?);
    let urls = read_lines(&mut fleet.0, 4, "listening on ")?;
    let backends: Vec<String> = urls.iter().map(|u| u.trim_start_matches("http://").to_owned()).collect();
    let mut proxy = Guard(spawn(
        Command::new(bin.join("prefixgate")).args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--backends",
            &backends.join(","),
            "--policy",
            policy,
        ]),
        &out.join(format!("logs/{policy}_stderr.log")),
    )?);
    let listen = read_lines(&mut proxy.0, 1, "listening on ")?;
    let base = listen[0].split_whitespace().next().unwrap_or_default().to_owned();
    let status = Command::new(bin.join("prefixgate-bench"))
        .args(["run", "--base-url", &base, "--replica-urls", &urls.join(",")])
        .args(["--num-prompts", "1000", "--max-conversations", "10000", "--max-concurrency", "40"])
        .args(["--request-rate", "100", "--min-output-len", "10", "--max-output-len", "200"])
        .args(["--time-scale", TIME_SCALE, "--label", policy, "--model", "Qwen/Qwen2.5-1.5B-Instruct"])
        .arg("--output-file")
        .arg(results)
        .current_dir(workspace_root())
        .status()
        .context("starting prefixgate-bench")?;
    if !status.success() {
        bail!("prefixgate-bench failed ({status}); logs in {}", out.join("logs").display());
    }
    drop(proxy);
    drop(fleet);
    Ok(())
}

/// Kills the child when dropped, so that nothing outlives the demo.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, stderr: &Path) -> Result<Child> {
    let log = std::fs::File::create(stderr).with_context(|| format!("creating {}", stderr.display()))?;
    cmd.stdout(Stdio::piped()).stderr(log).spawn().with_context(|| format!("starting {cmd:?}"))
}

/// Reads `n` stdout lines containing `marker` and returns what follows it.
fn read_lines(child: &mut Child, n: usize, marker: &str) -> Result<Vec<String>> {
    let stdout = child.stdout.take().context("child has no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(i) = line.find(&wanted) {
                let _ = tx.send(line[i + wanted.len()..].to_owned());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut found = Vec::with_capacity(n);
    while found.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => found.push(line),
            Err(_) => bail!("a component did not report `{marker}` within 60 s (see its log)"),
        }
    }
    Ok(found)
}

fn print_table(results: &PathBuf) -> Result<()> {
    let text = std::fs::read_to_string(results).with_context(|| format!("reading {}", results.display()))?;
    println!(
        "\n| policy | req/s | out tok/s | TTFT mean ms | TTFT p99 ms | TPOT mean ms | E2E mean ms | cache hit | busiest replica |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).context("reading a result record")?;
        let f = |k: &str| r.get(k).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
        let hit =
            r.pointer("/vllm/prefix_cache_hit_rate").and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
        let busiest = r
            .pointer("/vllm/replicas")
            .and_then(serde_json::Value::as_array)
            .map(|rs| {
                rs.iter()
                    .filter_map(|x| x.get("request_share").and_then(serde_json::Value::as_f64))
                    .fold(0.0, f64::max)
            })
            .unwrap_or(f64::NAN);
        println!(
            "| {} | {:.2} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1}% | {:.0}% |",
            r.get("label").and_then(serde_json::Value::as_str).unwrap_or("?"),
            f("request_throughput"),
            f("output_throughput"),
            f("mean_ttft_ms"),
            f("p99_ttft_ms"),
            f("mean_tpot_ms"),
            f("mean_e2e_latency_ms"),
            hit * 100.0,
            busiest * 100.0
        );
    }
    Ok(())
}
