//! `vllm-sim`: serves one or more simulated vLLM replicas, or prints the calibration report.
//!
//! ```text
//! vllm-sim --port 8001 --replicas 4 --model Qwen/Qwen2.5-1.5B-Instruct \
//!          --served-model-name qwen-1.5b --profile l4-qwen2.5-1.5b --time-scale 1
//! ```
//! Prints `vllm-sim replica <i> listening on http://<ip>:<port>` per replica once all
//! listen; Ctrl-C (or SIGTERM) stops them.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use vllm_sim::calibrate::{self, CalibrateOptions};
use vllm_sim::{EngineLimits, Fleet, MetricsFormat, Profile, SimConfig};

/// A simulated vLLM replica: OpenAI API, prefix caching, batching, timing and /metrics.
#[derive(Debug, Parser)]
#[command(name = "vllm-sim", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port of the first replica (the others follow); 0 picks free ports.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Number of replicas.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Model path, reported by /v1/models.
    #[arg(long, default_value = "Qwen/Qwen2.5-1.5B-Instruct")]
    model: String,
    /// Name(s) accepted in the request's `model` field (default: --model).
    #[arg(long = "served-model-name", num_args = 1..)]
    served_model_name: Vec<String>,
    /// Cost-model profile: l4-qwen2.5-1.5b, l4-qwen2.5-0.5b, h100-llama3.1-8b, or a TOML file.
    #[arg(long, default_value = "l4-qwen2.5-1.5b")]
    profile: String,
    /// Divide simulated durations by this (metrics stay in simulated seconds).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// KV blocks per replica (default: the profile's).
    #[arg(long)]
    num_gpu_blocks: Option<usize>,
    /// Tokens per KV block.
    #[arg(long, default_value_t = 16)]
    block_size: usize,
    /// Most requests in the running batch.
    #[arg(long, default_value_t = 256)]
    max_num_seqs: usize,
    /// Token budget of one engine step (raised to at least max_model_len with
    /// --no-enable-chunked-prefill).
    #[arg(long, default_value_t = 2048)]
    max_num_batched_tokens: usize,
    /// Automatic prefix caching (the default).
    #[arg(long, overrides_with = "no_enable_prefix_caching")]
    enable_prefix_caching: bool,
    /// No prefix caching: every prompt is computed from scratch.
    #[arg(long, overrides_with = "enable_prefix_caching")]
    no_enable_prefix_caching: bool,
    /// Chunked prefill (the default): long prompts are split across steps.
    #[arg(long, overrides_with = "no_enable_chunked_prefill")]
    enable_chunked_prefill: bool,
    /// No chunked prefill: a prompt is computed in one step.
    #[arg(long, overrides_with = "enable_chunked_prefill")]
    no_enable_chunked_prefill: bool,
    /// Async scheduling (vLLM's default in later V1 releases): a request arriving while
    /// requests run joins the step after the next one.
    #[arg(long, overrides_with = "no_async_scheduling")]
    async_scheduling: bool,
    /// No async scheduling (the default, as in vLLM 0.9): a request arriving while a step
    /// runs joins the next one.
    #[arg(long, overrides_with = "async_scheduling")]
    no_async_scheduling: bool,
    /// /metrics names: v1 (vLLM ≥ 0.8 default engine) or v0.
    #[arg(long, default_value = "v1", alias = "metrics-dialect")]
    metrics_format: MetricsFormat,
    /// A Hugging Face tokenizer.json (default: built-in approximate tokenizer).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Seed for generated text and output lengths.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Report usage.prompt_tokens_details.cached_tokens.
    #[arg(long)]
    enable_prompt_tokens_details: bool,
    /// Wall-clock microseconds spent polling instead of sleeping before each step ends.
    #[arg(long, default_value_t = 50)]
    spin_micros: u64,
    /// Print the calibration report (model tables, live latency and scheduling lag) and exit.
    #[arg(long)]
    calibrate: bool,
    /// Wall-clock seconds of each live calibration run.
    #[arg(long, default_value_t = 6.0)]
    calibrate_seconds: f64,
    /// Requests each closed-loop client sends in the virtual-time calibration runs.
    #[arg(long, default_value_t = 8)]
    calibrate_rounds: usize,
    /// Calibration sections to print: model, live, lag.
    #[arg(long, value_delimiter = ',', default_value = "model,live,lag")]
    calibrate_sections: Vec<String>,
}

impl Cli {
    fn sim_config(&self) -> anyhow::Result<SimConfig> {
        let config = SimConfig {
            model: self.model.clone(),
            served_model_names: self.served_model_name.clone(),
            host: self.host,
            port: self.port,
            profile: Profile::resolve(&self.profile).context("--profile")?,
            limits: EngineLimits {
                max_num_seqs: self.max_num_seqs,
                max_num_batched_tokens: self.max_num_batched_tokens,
                block_size: self.block_size,
                enable_prefix_caching: !self.no_enable_prefix_caching,
                enable_chunked_prefill: !self.no_enable_chunked_prefill,
                async_scheduling: self.async_scheduling,
            },
            num_gpu_blocks: self.num_gpu_blocks,
            time_scale: self.time_scale,
            metrics_format: self.metrics_format,
            tokenizer: self.tokenizer.clone(),
            seed: self.seed,
            enable_prompt_tokens_details: self.enable_prompt_tokens_details,
            spin_micros: self.spin_micros,
        };
        config.validate()?;
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vllm-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.sim_config()?;
    if cli.calibrate {
        let has = |s: &str| cli.calibrate_sections.iter().any(|x| x == s);
        let options = CalibrateOptions {
            live_seconds: cli.calibrate_seconds,
            rounds: cli.calibrate_rounds,
            limits: config.limits,
            model_section: has("model"),
            live_section: has("live"),
            lag_section: has("lag"),
            ..CalibrateOptions::default()
        };
        let mut out = std::io::stdout().lock();
        return calibrate::report(&config, &options, &mut out).await.context("calibration");
    }
    // Listen for SIGTERM before announcing the replicas, so that a supervisor
    // that stops us as soon as we are up still gets a clean shutdown.
    let mut shutdown = ShutdownSignal::register()?;
    let fleet = Fleet::start(config, cli.replicas).await.context("starting the replicas")?;
    {
        let mut out = std::io::stdout().lock();
        for (i, url) in fleet.urls().iter().enumerate() {
            writeln!(out, "vllm-sim replica {i} listening on {url}")?;
        }
        out.flush()?;
    }
    shutdown.recv().await;
    fleet.shutdown().await;
    Ok(())
}

/// Ctrl-C or, on Unix, SIGTERM; registered up front.
struct ShutdownSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn register() -> anyhow::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("listening for SIGTERM")?,
        })
    }

    /// Resolves when either signal arrives.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = self.term.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(args: &[&str]) -> EngineLimits {
        let argv = std::iter::once("vllm-sim").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap().sim_config().unwrap().limits
    }

    #[test]
    fn prefix_caching_and_chunked_prefill_default_on_and_the_last_flag_wins() {
        let l = limits(&[]);
        assert!(l.enable_prefix_caching && l.enable_chunked_prefill);
        let l = limits(&["--no-enable-prefix-caching", "--no-enable-chunked-prefill"]);
        assert!(!l.enable_prefix_caching && !l.enable_chunked_prefill);
        let l = limits(&["--no-enable-prefix-caching", "--enable-prefix-caching"]);
        assert!(l.enable_prefix_caching);
        let l = limits(&["--enable-chunked-prefill", "--no-enable-chunked-prefill"]);
        assert!(!l.enable_chunked_prefill);
        assert!(!limits(&[]).async_scheduling, "off by default, as in vLLM 0.9");
        assert!(limits(&["--async-scheduling"]).async_scheduling);
        assert!(!limits(&["--async-scheduling", "--no-async-scheduling"]).async_scheduling);
    }
}
