//! `cargo xtask demo`: the sweep in `bench/sweeps/demo.toml` (round robin,
//! pow2 and prefix-aware routing over a simulated 4-replica L4 fleet, the
//! same synthetic multi-turn workload) run first in the policy lab (virtual
//! time: seconds, deterministic, with the scorecard and the HTML report),
//! then the lab's winner confirmed by one wall-clock run behind `prefixgate`
//! at the file's time scale, with the distortion that scale brings stated.
//!
//! Figures are in simulated seconds, as on the L4 GPUs the simulator models.
//! On the wall clock at time scale T, the proxy's and the driver's own costs
//! count T times in simulated time: the demo prints the winner's lab and
//! wall-clock figures side by side so that the difference is seen, not assumed.

use crate::paths::{target_dir, workspace_root};
use crate::run::{cargo, status};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Simulated seconds per wall-clock second of the confirming run: 4 keeps it
/// to about half a minute, and its distortion is measured and printed.
const WALL_TIME_SCALE: &str = "4";

/// What the demo compares of the lab and the wall-clock run.
const FIGURES: [(&str, &str); 3] = [
    ("mean TTFT (ms)", "mean_ttft_ms"),
    ("request throughput (req/s)", "request_throughput"),
    ("mean TPOT (ms)", "mean_tpot_ms"),
];

/// Builds the release binaries, runs the demo in the lab and confirms its
/// winner on the wall clock.
pub fn demo() -> Result<()> {
    let (pg, sim) = (prefixgate_launch::PREFIXGATE, prefixgate_launch::VLLM_SIM);
    cargo(&[
        "build",
        "--release",
        "--package",
        pg.package,
        "--package",
        sim.package,
        "--package",
        "prefixgate-bench",
        "--bins",
    ])?;
    let bench =
        target_dir().join("release").join(format!("prefixgate-bench{}", std::env::consts::EXE_SUFFIX));
    let out = target_dir().join("demo");
    // A fresh directory: the CSVs append, and the demo shows one run.
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    let config = workspace_root().join("bench").join("sweeps").join("demo.toml");
    let (lab_dir, wall_dir) = (out.join("lab"), out.join("wall"));

    eprintln!("xtask: the demo sweep in the policy lab (virtual time)");
    let sweep = |dir: &Path, extra: &[&str], what: &str| {
        status(
            Command::new(&bench)
                .arg("sweep")
                .arg("--config")
                .arg(&config)
                .arg("--output-dir")
                .arg(dir)
                .args(extra)
                .current_dir(workspace_root()),
            what,
        )
    };
    sweep(&lab_dir, &["--mode", "lab", "--report"], "prefixgate-bench sweep --mode lab")?;
    let lab = read_results(&lab_dir)?;
    let winner = lab
        .iter()
        .filter_map(|r| Some((r["label"].as_str()?, r["mean_ttft_ms"].as_f64()?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(label, _)| label.to_owned())
        .context("the lab's results name no strategy with a mean TTFT")?;

    eprintln!("xtask: the lab's winner on mean TTFT, `{winner}`, on the wall clock behind prefixgate");
    let wall_args = ["--mode", "wall", "--time-scale", WALL_TIME_SCALE, "--strategies", &winner];
    sweep(&wall_dir, &wall_args, "prefixgate-bench sweep (wall clock)")?;
    let wall = read_results(&wall_dir)?;
    let of = |runs: &[serde_json::Value]| runs.iter().find(|r| r["label"] == winner.as_str()).cloned();
    let (Some(lab_run), Some(wall_run)) = (of(&lab), of(&wall)) else {
        bail!("`{winner}` is missing from {} or {}", lab_dir.display(), wall_dir.display());
    };
    let scale = WALL_TIME_SCALE;
    println!("\n`{winner}`: the lab against one wall-clock run at time scale {scale}\n");
    println!("| figure | lab | wall clock | wall / lab |");
    println!("|---|---:|---:|---:|");
    for (name, key) in FIGURES {
        let (l, w) = (lab_run[key].as_f64().unwrap_or(f64::NAN), wall_run[key].as_f64().unwrap_or(f64::NAN));
        println!("| {name} | {l:.2} | {w:.2} | {:.3} |", w / l);
    }
    println!(
        "\nOn the wall clock every millisecond the proxy and the driver spend counts {scale} simulated \
         milliseconds; the ratios above are that distortion plus the machine's noise."
    );
    println!("report: {}", lab_dir.join("report").join("index.html").display());
    eprintln!("xtask: demo logs in {}", wall_dir.join("logs").display());
    Ok(())
}

/// The records of a sweep's `results.jsonl`.
fn read_results(dir: &Path) -> Result<Vec<serde_json::Value>> {
    let path = dir.join("results.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("a record of {}", path.display())))
        .collect()
}
