//! `prefixgate-bench calibrate`: a profile's published fleet runs ([`FleetReference`]: several
//! replicas behind a prefix-aware router, loaded from a conversation dataset) replayed in the
//! lab, with the simulated figures beside the published ones and their ratios.
//!
//! `vllm-sim --calibrate` checks one replica against single-GPU sweeps; it cannot check a
//! fleet, which needs the router and the dataset. The replay is an ordinary `lab` run whose
//! flags come from the reference ([`replay_flags`]), so the same command can be run by hand.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use vllm_sim::calibrate::{ratio_cell, trim_float, LATENCY_TOLERANCE, THROUGHPUT_TOLERANCE};
use vllm_sim::profile::DEFAULT_PROFILE;
use vllm_sim::reference::FleetReference;
use vllm_sim::Profile;

use super::{lab, LabArgs};
use crate::load::stats::BenchMetrics;

/// Flags of `calibrate`.
#[derive(Clone, Debug, clap::Args)]
pub struct CalibrateArgs {
    /// Profile whose fleet runs are replayed: a built-in name or a TOML file.
    #[arg(long, default_value = DEFAULT_PROFILE)]
    pub profile: String,
    /// ShareGPT JSON file; the reference's message-count filter is applied to it
    /// (`cargo xtask bench fleet` fetches one).
    #[arg(long)]
    pub dataset_path: PathBuf,
    /// `tokenizer.json` of the reference's model (default: the simulator's ~4 chars/token,
    /// which makes ShareGPT's prompts about 16 % longer than Qwen's tokenizer does).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Requests per replay (default: the reference's).
    #[arg(long)]
    pub num_prompts: Option<usize>,
}

/// One published figure beside the replay's.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureRatio {
    /// The figure's name, as [`vllm_sim::reference::FleetFigures::named`] gives it.
    pub name: &'static str,
    /// The replay's value.
    pub simulated: f64,
    /// The published value, when the source gives one.
    pub cited: Option<f64>,
    /// Whether it is a throughput (goal ±10 %) rather than a latency (±15 %).
    pub throughput: bool,
}

/// A fleet reference and its replay.
#[derive(Clone, Debug)]
pub struct FleetReplay {
    /// What was replayed.
    pub reference: FleetReference,
    /// The `prefixgate-bench` arguments of the replay, from `lab` on.
    pub flags: Vec<String>,
    /// The replay's figures, as `run` computes them.
    pub metrics: BenchMetrics,
    /// The replay's prefix-cache hit rate, when the replicas report it.
    pub hit_rate: Option<f64>,
}

/// The `prefixgate-bench` arguments (from `lab` on) that replay `reference` on `profile`.
pub fn replay_flags(reference: &FleetReference, profile: &str, args: &CalibrateArgs) -> Vec<String> {
    let mut flags: Vec<String> = vec!["lab".into(), "--profile".into(), profile.into()];
    let mut set = |flag: &str, value: String| {
        flags.push(format!("--{flag}"));
        flags.push(value);
    };
    set("replicas", reference.replicas.to_string());
    set("policy", reference.policy.clone());
    set("dataset-name", "sharegpt".into());
    set("dataset-path", args.dataset_path.display().to_string());
    set("min-messages", reference.min_messages.to_string());
    set("min-prompt-len", reference.prompt_tokens.0.to_string());
    set("max-prompt-len", reference.prompt_tokens.1.to_string());
    set("min-output-len", reference.output_tokens.0.to_string());
    set("max-output-len", reference.output_tokens.1.to_string());
    set("max-concurrency", reference.max_concurrency.to_string());
    set("num-prompts", args.num_prompts.unwrap_or(reference.num_prompts).to_string());
    if let Some(t) = &args.tokenizer {
        set("tokenizer", t.display().to_string());
    }
    flags
}

/// Parses `lab` flags as the command line would.
#[derive(Debug, Parser)]
#[command(name = "prefixgate-bench")]
struct LabCommandLine {
    #[command(subcommand)]
    lab: LabSubcommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabSubcommand {
    Lab(LabArgs),
}

/// Replays every fleet run `args.profile` cites; the lab prints each run's summary as it goes.
pub fn calibrate(args: &CalibrateArgs) -> Result<Vec<FleetReplay>> {
    let profile = Profile::resolve(&args.profile).context("--profile")?;
    if profile.fleet_references.is_empty() {
        let citing: Vec<String> = Profile::builtin()
            .into_iter()
            .filter(|p| !p.fleet_references.is_empty())
            .map(|p| p.name)
            .collect();
        bail!(
            "--profile {}: cites no fleet run to replay (built-in profiles that do: {})",
            profile.name,
            citing.join(", ")
        );
    }
    if !args.dataset_path.is_file() {
        bail!("--dataset-path {}: no such file", args.dataset_path.display());
    }
    let mut replays = Vec::new();
    for reference in &profile.fleet_references {
        let flags = replay_flags(reference, &args.profile, args);
        let parsed = LabCommandLine::try_parse_from(
            std::iter::once("prefixgate-bench".to_owned()).chain(flags.clone()),
        )
        .with_context(|| format!("the replay of {}: policy `{}`", reference.url, reference.policy))?;
        let LabSubcommand::Lab(lab_args) = parsed.lab;
        let runs = lab(&lab_args).with_context(|| format!("replaying {}", reference.url))?;
        let Some(run) = runs.into_iter().next() else {
            bail!("replaying {}: the lab ran nothing", reference.url)
        };
        replays.push(FleetReplay {
            reference: reference.clone(),
            flags,
            metrics: run.report.metrics,
            hit_rate: run.report.vllm.as_ref().and_then(|v| v.prefix_cache_hit_rate),
        });
    }
    Ok(replays)
}

impl FleetReplay {
    /// Every published figure beside the replay's, in the reference's order.
    pub fn ratios(&self) -> Vec<FigureRatio> {
        let m = &self.metrics;
        let simulated = [
            m.request_throughput,
            m.input_throughput,
            m.output_throughput,
            m.ttft_ms.mean,
            m.ttft_ms.median,
            m.tpot_ms.mean,
        ];
        self.reference
            .figures
            .named()
            .into_iter()
            .zip(simulated)
            .map(|(figure, simulated)| FigureRatio {
                name: figure.name,
                simulated,
                cited: figure.value,
                throughput: figure.throughput,
            })
            .collect()
    }

    /// The comparison as Markdown: setup, the command, one row per figure, what misses the
    /// goal and the reference's caveats.
    pub fn table(&self) -> String {
        let r = &self.reference;
        let mut out = format!("## {} vs {}\n\n", r.model, r.url);
        out.push_str(&format!("- measured: {}, vLLM {}\n", r.what, r.vllm_version));
        out.push_str(&format!("- replayed: prefixgate-bench {}\n", self.flags.join(" ")));
        if let Some(h) = self.hit_rate {
            out.push_str(&format!("- simulated prefix-cache hit rate: {:.1} %\n", h * 100.0));
        }
        out.push_str(&format!(
            "- ratio = simulated / cited; goal: throughputs within ±{:.0} %, latencies within ±{:.0} % (`*` marks a miss)\n\n",
            THROUGHPUT_TOLERANCE * 100.0,
            LATENCY_TOLERANCE * 100.0
        ));
        out.push_str("| figure | simulated | cited | ratio |\n|---|---|---|---|\n");
        let mut misses = Vec::new();
        for f in self.ratios() {
            let tolerance = if f.throughput { THROUGHPUT_TOLERANCE } else { LATENCY_TOLERANCE };
            let cells = ratio_cell(f.simulated, f.cited, tolerance, &mut misses, f.name.to_owned());
            out.push_str(&format!("| {} | {} | {cells} |\n", f.name, trim_float(f.simulated)));
        }
        if misses.is_empty() {
            out.push_str("\nevery ratio within the goal\n");
        } else {
            out.push_str(&format!("\noutside the goal: {}\n", misses.join(", ")));
        }
        for c in &r.caveats {
            out.push_str(&format!("- caveat: {c}\n"));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_flags_are_the_reference_workload_and_parse_as_lab_flags() {
        let reference = vllm_sim::reference::ray_4xl4_qwen25_1_5b();
        let args = CalibrateArgs {
            profile: DEFAULT_PROFILE.into(),
            dataset_path: "d.json".into(),
            tokenizer: Some("t.json".into()),
            num_prompts: Some(50),
        };
        let flags = replay_flags(&reference, DEFAULT_PROFILE, &args);
        let parsed =
            LabCommandLine::try_parse_from(std::iter::once("prefixgate-bench".to_owned()).chain(flags))
                .unwrap();
        let LabSubcommand::Lab(lab) = parsed.lab;
        assert_eq!(lab.replicas, 4);
        assert_eq!(lab.policy, [prefixgate_filter::PolicyKind::PrefixAware]);
        assert_eq!(
            (lab.run.min_messages, lab.run.min_prompt_len, lab.run.max_prompt_len),
            (16, 1_500, 8_192)
        );
        assert_eq!((lab.run.min_output_len, lab.run.max_output_len), (10, 200));
        assert_eq!((lab.run.max_concurrency, lab.run.num_prompts), (Some(40), 50));
        assert_eq!(lab.run.tokenizer.as_deref(), Some(std::path::Path::new("t.json")));
        assert!(lab.run.request_rate.is_infinite(), "a closed loop, as the source ran");
    }
}
