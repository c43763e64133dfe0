//! `prefixgate-bench run`: drive an OpenAI-compatible server with a dataset
//! at a request rate and concurrency, and report bench_serving's metrics.

use super::client::{get, http_client, send, Api, BenchRequest, ClientSettings, HttpClient};
use super::dataset::{read_sharegpt, synthetic};
use super::shapes::ShapeArgs;
use super::stats::{BenchMetrics, RequestOutcome, Scorecard};
use super::vllm_side::{compare, scrape, VllmSide};
use super::workload::{build_workload, Workload, WorkloadSpec};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vllm_sim::tokenizer::SimTokenizer;

/// Which dataset prompts come from. Every one but `sharegpt` is generated from `--seed`,
/// with no download.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// A ShareGPT JSON file (`--dataset-path`), conversations cut into growing pieces.
    Sharegpt,
    /// Generated multi-turn conversations with ShareGPT's shape, cut the same way.
    Synthetic,
    /// Prefix-free random prompts (bench_serving's `random`): `--random-*` flags.
    Random,
    /// Groups behind long shared system prompts, a distinct question each (bench_serving's
    /// gsp): `--gsp-*` flags; one group is one hot system prompt shared by all users.
    #[value(alias = "gsp")]
    GeneratedSharedPrefix,
    /// A few long documents, many short questions each; prefill-heavy shared prefixes:
    /// `--long-doc-*` flags.
    LongDocument,
    /// Short distinct prompts with long outputs, where cache-aware routing cannot help:
    /// `--decode-*` flags.
    DecodeHeavy,
}

impl DatasetName {
    /// The flag value (`sharegpt`, `generated-shared-prefix`, ...).
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).map(|v| v.get_name().to_owned()).unwrap_or_default()
    }
}

/// Flags of `run`, named as bench_serving names them.
#[derive(Clone, Debug, clap::Args, Serialize)]
pub struct RunArgs {
    /// API flavour: `vllm` (completions) or `vllm-chat` (chat completions).
    #[arg(long, value_enum, default_value = "vllm")]
    pub backend: Api,
    /// Server base URL; overrides --host/--port.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Several routers in front of the same replicas (comma-separated base URLs): request
    /// `i` goes to the `(i mod K)`-th, as the lab's `--routers K` does; overrides
    /// --base-url.
    #[arg(long, value_delimiter = ',')]
    pub base_urls: Vec<String>,
    /// Server host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Model name; default: the first model the server lists.
    #[arg(long)]
    pub model: Option<String>,
    /// Dataset; default `sharegpt` with --dataset-path, else `synthetic`. Requests of one
    /// group (conversation, system prompt, document) arrive interleaved with others'.
    #[arg(long, value_enum)]
    pub dataset_name: Option<DatasetName>,
    /// ShareGPT JSON file (read as a stream; a truncated file is fine).
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    /// ShareGPT conversations with fewer messages in the file are left out (Ray's
    /// `sharegpt_16_messages_or_more.json` is ShareGPT at 16); 0 keeps them all.
    #[arg(long, default_value_t = 0)]
    pub min_messages: usize,
    /// Conversation pieces considered, in dataset order.
    #[arg(long, default_value_t = 10_000)]
    pub max_conversations: usize,
    /// Requests to send (`generated-shared-prefix` sends groups × prompts per group).
    #[arg(long, default_value_t = 1_000)]
    pub num_prompts: usize,
    /// Smallest output length (tokens); each request's is uniform in [min, max]. For
    /// `sharegpt`, `synthetic` and `long-document`; the other shapes have their own.
    #[arg(long, default_value_t = 10)]
    pub min_output_len: u64,
    /// Largest output length (tokens).
    #[arg(long, default_value_t = 200)]
    pub max_output_len: u64,
    /// Prompts shorter than this (tokens) are skipped (`sharegpt` and `synthetic` only).
    #[arg(long, default_value_t = 1_500)]
    pub min_prompt_len: usize,
    /// Prompts longer than this (tokens) are skipped (`sharegpt` and `synthetic` only).
    #[arg(long, default_value_t = 8_192)]
    pub max_prompt_len: usize,
    /// Requests per second (Poisson arrivals); `inf` sends all at once.
    #[arg(long, default_value = "inf")]
    pub request_rate: f64,
    /// bench_serving's burstiness: gaps between arrivals are gamma-distributed
    /// with this shape and mean 1 / `--request-rate`. 1 is Poisson; below 1
    /// arrivals come in bursts, above 1 more evenly spaced.
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    pub burstiness: f64,
    /// Requests in flight at most.
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Send one request first and start once it succeeds.
    #[arg(long)]
    pub with_warmup: bool,
    /// Non-streaming requests (TTFT = latency).
    #[arg(long)]
    pub disable_stream: bool,
    /// Do not set `ignore_eos` (outputs may end early).
    #[arg(long)]
    pub disable_ignore_eos: bool,
    /// Seed of sampling and arrivals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// JSONL file one record per run is appended to.
    #[arg(long)]
    pub output_file: Option<PathBuf>,
    /// `tokenizer.json` for token counts (default: the simulator's ~4 chars/token).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Label stored with the record.
    #[arg(long)]
    pub label: Option<String>,
    /// Replica base URLs whose `/metrics` are compared before and after (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub replica_urls: Vec<String>,
    /// Time scale of a simulated fleet (`vllm-sim --time-scale`): client-side
    /// times are multiplied by it so that they read in simulated seconds.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// The generated shapes' flags.
    #[command(flatten)]
    pub shapes: ShapeArgs,
}

/// Everything one run produced.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The flags the run used.
    pub args: RunArgs,
    /// Client-side metrics.
    pub metrics: BenchMetrics,
    /// Distinct conversations among the prompts.
    pub prefix_groups: usize,
    /// Replica-side metrics, when replica URLs were given.
    pub vllm: Option<VllmSide>,
    /// Reuse bound, captured and delivered shares, when the run knows them (the lab).
    pub scorecard: Option<Scorecard>,
    /// Per-request detail.
    #[serde(skip)]
    pub outcomes: Vec<RequestOutcome>,
}

impl RunArgs {
    /// The servers requests go to, in turn: `--base-urls`, else `--base-url`, else
    /// `--host`/`--port`; without trailing slashes.
    pub fn base_urls(&self) -> Vec<String> {
        let urls = match (&self.base_urls[..], &self.base_url) {
            ([], Some(url)) => vec![url.clone()],
            ([], None) => vec![format!("http://{}:{}", self.host, self.port)],
            (urls, _) => urls.to_vec(),
        };
        urls.into_iter().map(|u| u.trim().trim_end_matches('/').to_owned()).collect()
    }
}

/// The requests `args` describe, in send order: the dataset read, pieces filtered by
/// prompt length and sampled with the seed, output lengths drawn; or a generated shape
/// ([`super::shapes`]). `run` and `lab` both call it, so the same flags send the same
/// requests.
pub fn build_requests(args: &RunArgs) -> Result<Workload> {
    let tokenizer = SimTokenizer::load(args.tokenizer.as_deref()).context("loading --tokenizer")?;
    let dataset = args.dataset_name.unwrap_or(if args.dataset_path.is_some() {
        DatasetName::Sharegpt
    } else {
        DatasetName::Synthetic
    });
    if let Some(shape) = args.shapes.shape(dataset, args.min_output_len, args.max_output_len) {
        shape.validate()?;
        let workload = shape.workload(args.num_prompts, args.seed, &tokenizer);
        if workload.requests.is_empty() {
            bail!("--dataset-name {} generated no request; raise --num-prompts", dataset.name());
        }
        return Ok(workload);
    }
    let conversations = match dataset {
        // About ten pieces per conversation, of which three to five fall in the
        // prompt-length window: ~330 prefix groups for 10,000 pieces, as the
        // long ShareGPT conversations give.
        DatasetName::Synthetic => synthetic((args.max_conversations / 30).max(8), args.seed),
        DatasetName::Sharegpt => {
            let path = args.dataset_path.as_ref().context("--dataset-name sharegpt needs --dataset-path")?;
            let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            read_sharegpt(file, args.min_messages).with_context(|| format!("reading {}", path.display()))?
        }
        shape => bail!("--dataset-name {}: not a conversation dataset", shape.name()),
    };
    let spec = WorkloadSpec {
        max_conversations: args.max_conversations,
        num_prompts: args.num_prompts,
        min_prompt_len: args.min_prompt_len,
        max_prompt_len: args.max_prompt_len,
        min_output_len: args.min_output_len,
        max_output_len: args.max_output_len,
        seed: args.seed,
    };
    let workload = build_workload(&conversations, &spec, &tokenizer);
    if workload.requests.is_empty() {
        bail!(
            "no prompt of the dataset is between {} and {} tokens; widen --min-prompt-len/--max-prompt-len",
            args.min_prompt_len,
            args.max_prompt_len
        );
    }
    Ok(workload)
}

/// The arrival process of `run` and `lab`: Poisson at `--request-rate` (gaps drawn from
/// a generator seeded with `--seed`), or all at once with an infinite rate.
#[derive(Debug)]
pub struct Arrivals {
    rng: fastrand::Rng,
    rate: f64,
    /// Gamma-distributed gaps, when the burstiness is not 1 (bench_serving's
    /// `np.random.gamma(shape=burstiness, scale=1 / (rate * burstiness))`).
    bursts: Option<(rand::rngs::StdRng, rand_distr::Gamma<f64>)>,
}

impl Arrivals {
    /// The arrivals of a run with these flags.
    pub fn new(args: &RunArgs) -> Self {
        let rate = args.request_rate;
        let bursts = (args.burstiness != 1.0 && rate.is_finite() && rate > 0.0)
            .then(|| rand_distr::Gamma::new(args.burstiness, 1.0 / (rate * args.burstiness)).ok())
            .flatten()
            .map(|gamma| (rand::SeedableRng::seed_from_u64(args.seed), gamma));
        Self { rng: fastrand::Rng::with_seed(args.seed), rate, bursts }
    }

    /// Simulated seconds between one request and the next (0 with an infinite rate).
    pub fn next_gap(&mut self) -> f64 {
        if let Some((rng, gamma)) = &mut self.bursts {
            return rand_distr::Distribution::sample(gamma, rng);
        }
        if self.rate.is_finite() && self.rate > 0.0 {
            -(1.0 - self.rng.f64()).ln() / self.rate
        } else {
            0.0
        }
    }
}

/// A finite number above 0, for clap.
fn positive_f64(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{text}` is not a number above 0")),
    }
}

/// Runs the benchmark described by `args`.
pub async fn run(args: RunArgs, progress: bool) -> Result<RunReport> {
    let workload = build_requests(&args)?;
    let client = http_client();
    let base_urls: Arc<[String]> = args.base_urls().into();
    let model = match &args.model {
        Some(m) => m.clone(),
        None => first_model(&client, &base_urls[0]).await?,
    };
    let settings = Arc::new(ClientSettings {
        model,
        api: args.backend,
        stream: !args.disable_stream,
        ignore_eos: !args.disable_ignore_eos,
    });
    let before = scrape_all(&client, &args.replica_urls).await?;
    if args.with_warmup {
        let first = BenchRequest {
            output_len: workload.requests[0].output_len.min(32),
            ..workload.requests[0].clone()
        };
        let warm = send(&client, &base_urls[0], &settings, &first, Instant::now()).await;
        if !warm.success {
            bail!("warm-up request failed: {}", warm.error.unwrap_or_default());
        }
    }
    let (mut outcomes, duration) =
        drive(&client, &base_urls, &settings, &workload.requests, &args, progress).await;
    let scale = if args.time_scale.is_finite() && args.time_scale > 0.0 { args.time_scale } else { 1.0 };
    for o in &mut outcomes {
        o.start_s *= scale;
        o.ttft_s *= scale;
        o.latency_s *= scale;
        o.itl_s.iter_mut().for_each(|x| *x *= scale);
    }
    let duration = duration * scale;
    let metrics = BenchMetrics::compute(&outcomes, duration);
    let vllm = if args.replica_urls.is_empty() {
        None
    } else {
        let after = scrape_all(&client, &args.replica_urls).await?;
        Some(compare(&args.replica_urls, &before, &after))
    };
    Ok(RunReport { args, metrics, prefix_groups: workload.prefix_groups, vllm, scorecard: None, outcomes })
}

/// Sends every request with Poisson arrivals under the concurrency limit, request `i` to
/// `base_urls[i mod K]`.
async fn drive(
    client: &HttpClient,
    base_urls: &Arc<[String]>,
    settings: &Arc<ClientSettings>,
    requests: &[BenchRequest],
    args: &RunArgs,
    progress: bool,
) -> (Vec<RequestOutcome>, f64) {
    let bar = if progress {
        indicatif::ProgressBar::new(requests.len() as u64).with_style(progress_style())
    } else {
        indicatif::ProgressBar::hidden()
    };
    // Off a terminal indicatif draws nothing: log a line every few seconds
    // instead, so CI logs and sweeps show progress.
    let lines = (progress && bar.is_hidden()).then(|| tokio::spawn(progress_lines(bar.clone())));
    let permits = Arc::new(tokio::sync::Semaphore::new(
        args.max_concurrency.unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let mut arrivals = Arrivals::new(args);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        let (client, base_urls, settings, permits, bar) =
            (client.clone(), base_urls.clone(), settings.clone(), permits.clone(), bar.clone());
        let request = request.clone();
        let router = i % base_urls.len();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.ok();
            let mut outcome = send(&client, &base_urls[router], &settings, &request, start).await;
            outcome.router = (base_urls.len() > 1).then_some(router);
            bar.inc(1);
            outcome
        }));
        if args.request_rate.is_finite() && args.request_rate > 0.0 {
            let scale = if args.time_scale > 0.0 { args.time_scale } else { 1.0 };
            let gap = arrivals.next_gap() / scale;
            tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        }
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| RequestOutcome {
            error: Some(format!("request task failed: {e}")),
            ..Default::default()
        }));
    }
    if let Some(lines) = lines {
        lines.abort();
    }
    bar.finish_and_clear();
    (outcomes, start.elapsed().as_secs_f64())
}

/// Seconds between two progress lines off a terminal.
const PROGRESS_LINE_SECS: u64 = 5;

/// A bar as wide as the terminal, with the rate and the time left.
fn progress_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{wide_bar} {pos}/{len} {per_sec} ETA {eta}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// Writes `done/total, rate, ETA` of `bar` to stderr every
/// [`PROGRESS_LINE_SECS`] until aborted.
async fn progress_lines(bar: indicatif::ProgressBar) {
    let mut every = tokio::time::interval(Duration::from_secs(PROGRESS_LINE_SECS));
    every.tick().await;
    loop {
        every.tick().await;
        eprintln!("{}", progress_line(bar.position(), bar.length().unwrap_or(0), bar.elapsed()));
    }
}

/// One progress line: requests done of the total, the rate so far and the
/// time left at that rate.
fn progress_line(done: u64, total: u64, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let eta = if rate > 0.0 {
        format!("{:.0} s", total.saturating_sub(done) as f64 / rate)
    } else {
        "unknown".to_owned()
    };
    format!("prefixgate-bench: {done}/{total} requests, {rate:.1} req/s, ETA {eta}")
}

async fn scrape_all(client: &HttpClient, urls: &[String]) -> Result<Vec<super::vllm_side::MetricsSnapshot>> {
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        out.push(scrape(client, url.trim_end_matches('/')).await.context("scraping a replica")?);
    }
    Ok(out)
}

/// The first model `GET /v1/models` lists.
async fn first_model(client: &HttpClient, base_url: &str) -> Result<String> {
    let uri = format!("{base_url}/v1/models");
    let body = get(client, &uri, Duration::from_secs(30)).await.with_context(|| format!("GET {uri}"))?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {uri}: not JSON"))?;
    json.pointer("/data/0/id")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .with_context(|| format!("GET {uri} lists no model; pass --model"))
}

/// bench_serving's summary table.
pub fn summary_table(report: &RunReport) -> String {
    let m = &report.metrics;
    let mut s = String::new();
    let line = |s: &mut String, k: &str, v: String| s.push_str(&format!("{k:<40}{v:>12}\n"));
    s.push_str(&format!("{:=^52}\n", " Serving Benchmark Result "));
    line(&mut s, "Backend:", report.args.backend.as_str().to_owned());
    line(&mut s, "Traffic request rate:", format!("{}", report.args.request_rate));
    line(
        &mut s,
        "Max request concurrency:",
        report.args.max_concurrency.map_or("not set".into(), |c| c.to_string()),
    );
    line(&mut s, "Successful requests:", m.completed.to_string());
    line(&mut s, "Failed requests:", m.failed.to_string());
    line(&mut s, "Benchmark duration (s):", format!("{:.2}", m.duration));
    line(&mut s, "Total input tokens:", m.total_input_tokens.to_string());
    line(&mut s, "Total generated tokens:", m.total_output_tokens.to_string());
    line(&mut s, "Request throughput (req/s):", format!("{:.2}", m.request_throughput));
    line(&mut s, "Input token throughput (tok/s):", format!("{:.2}", m.input_throughput));
    line(&mut s, "Output token throughput (tok/s):", format!("{:.2}", m.output_throughput));
    line(&mut s, "Concurrency:", format!("{:.2}", m.concurrency));
    for (title, x) in [
        ("End-to-End Latency", &m.e2e_ms),
        ("Time to First Token", &m.ttft_ms),
        ("Time per Output Token (excl. 1st token)", &m.tpot_ms),
        ("Inter-token Latency", &m.itl_ms),
    ] {
        s.push_str(&format!("{:-^52}\n", format!(" {title} ")));
        line(&mut s, "Mean (ms):", format!("{:.2}", x.mean));
        line(&mut s, "Median (ms):", format!("{:.2}", x.median));
        line(&mut s, "P99 (ms):", format!("{:.2}", x.p99));
    }
    if let Some(v) = &report.vllm {
        s.push_str(&format!("{:-^52}\n", " Replicas "));
        line(
            &mut s,
            "Prefix cache hit rate:",
            v.prefix_cache_hit_rate.map_or("n/a".into(), |r| format!("{:.1}%", r * 100.0)),
        );
        for r in &v.replicas {
            let hit = r.prefix_cache_hit_rate.map_or("n/a".into(), |h| format!("{:.1}%", h * 100.0));
            line(&mut s, &format!("  {}:", r.url), format!("{:.0}% req, hit {hit}", r.request_share * 100.0));
        }
    }
    if let Some(c) = &report.scorecard {
        s.push_str(&format!("{:-^52}\n", " Scorecard (share of prompt tokens) "));
        line(&mut s, "Reuse bound:", format!("{:.1}%", c.reuse_bound * 100.0));
        line(&mut s, "Captured by the router:", format!("{:.1}%", c.captured * 100.0));
        line(&mut s, "Delivered by the engines:", format!("{:.1}%", c.delivered * 100.0));
    }
    s.push_str(&"=".repeat(52));
    s.push('\n');
    s
}

/// Appends the run's JSONL record (bench_serving's field names) to `path`, and
/// its per-request detail to `<path>.requests.jsonl`.
pub fn write_record(report: &RunReport, path: &std::path::Path) -> Result<()> {
    append_record(report, path)?;
    write_outcomes(&report.outcomes, &detail_path(path))
}

/// Appends the run's JSONL record (bench_serving's field names) to `path`.
pub fn append_record(report: &RunReport, path: &std::path::Path) -> Result<()> {
    let m = &report.metrics;
    let record = serde_json::json!({
        "backend": report.args.backend,
        "label": report.args.label,
        "dataset_name": report.args.dataset_name,
        "request_rate": report.args.request_rate,
        "burstiness": report.args.burstiness,
        "max_concurrency": report.args.max_concurrency,
        "num_prompts": report.args.num_prompts,
        "max_conversations": report.args.max_conversations,
        "min_output_len": report.args.min_output_len,
        "max_output_len": report.args.max_output_len,
        "duration": m.duration,
        "completed": m.completed,
        "failed": m.failed,
        "total_input_tokens": m.total_input_tokens,
        "total_output_tokens": m.total_output_tokens,
        "request_throughput": m.request_throughput,
        "input_throughput": m.input_throughput,
        "output_throughput": m.output_throughput,
        "mean_e2e_latency_ms": m.e2e_ms.mean, "median_e2e_latency_ms": m.e2e_ms.median,
        "std_e2e_latency_ms": m.e2e_ms.std, "p99_e2e_latency_ms": m.e2e_ms.p99,
        "mean_ttft_ms": m.ttft_ms.mean, "median_ttft_ms": m.ttft_ms.median,
        "std_ttft_ms": m.ttft_ms.std, "p99_ttft_ms": m.ttft_ms.p99,
        "mean_tpot_ms": m.tpot_ms.mean, "median_tpot_ms": m.tpot_ms.median,
        "std_tpot_ms": m.tpot_ms.std, "p99_tpot_ms": m.tpot_ms.p99,
        "mean_itl_ms": m.itl_ms.mean, "median_itl_ms": m.itl_ms.median, "std_itl_ms": m.itl_ms.std,
        "p95_itl_ms": m.itl_ms.p95, "p99_itl_ms": m.itl_ms.p99,
        "concurrency": m.concurrency,
        "prefix_groups": report.prefix_groups,
        "vllm": report.vllm,
        "scorecard": report.scorecard,
    });
    append_line(path, &record.to_string())
}

/// Writes per-request detail, one JSON object per line (replacing `path`).
pub fn write_outcomes(outcomes: &[RequestOutcome], path: &std::path::Path) -> Result<()> {
    let mut lines = String::new();
    for o in outcomes {
        lines.push_str(&serde_json::to_string(o)?);
        lines.push('\n');
    }
    std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))
}

/// Reads per-request detail written by [`write_outcomes`].
pub fn read_outcomes(path: &std::path::Path) -> Result<Vec<RequestOutcome>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}: line {}", path.display(), i + 1)))
        .collect()
}

/// Where the per-request detail of a JSONL record file goes.
pub fn detail_path(path: &std::path::Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".requests.jsonl");
    path.with_file_name(name)
}

fn append_line(path: &std::path::Path, line: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn a_progress_line_says_done_of_total_rate_and_time_left() {
        let line = progress_line(50, 200, Duration::from_secs(10));
        assert_eq!(line, "prefixgate-bench: 50/200 requests, 5.0 req/s, ETA 30 s");
        assert!(progress_line(0, 200, Duration::from_secs(10)).ends_with("ETA unknown"));
    }
}

#[cfg(test)]
mod arrival_tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RunArgs,
    }

    fn parse(flags: &[&str]) -> Result<RunArgs, clap::Error> {
        Cli::try_parse_from(["run"].iter().chain(flags)).map(|cli| cli.args)
    }

    fn arrivals(flags: &[&str]) -> Arrivals {
        Arrivals::new(&parse(flags).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Mean and coefficient of variation of `n` gaps.
    fn shape(a: &mut Arrivals, n: usize) -> (f64, f64) {
        let gaps: Vec<f64> = (0..n).map(|_| a.next_gap()).collect();
        let mean = gaps.iter().sum::<f64>() / n as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn burstiness_one_is_the_poisson_process_it_always_was() {
        let mut a = arrivals(&["--request-rate", "10", "--seed", "7"]);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100 {
            assert_eq!(a.next_gap(), -(1.0 - rng.f64()).ln() / 10.0);
        }
    }

    #[test]
    fn burstiness_keeps_the_rate_and_changes_the_spread() {
        // Gamma gaps: mean 1 / rate whatever the shape; CV = 1 / sqrt(shape).
        for (burstiness, cv) in [("0.25", 2.0), ("1", 1.0), ("4", 0.5)] {
            let mut a = arrivals(&["--request-rate", "10", "--burstiness", burstiness]);
            let (mean, measured_cv) = shape(&mut a, 200_000);
            assert!((mean - 0.1).abs() < 0.005, "burstiness {burstiness}: mean gap {mean}");
            assert!(
                (measured_cv - cv).abs() < 0.1 * cv,
                "burstiness {burstiness}: CV {measured_cv}, expected {cv}"
            );
        }
        assert!(parse(&["--burstiness", "0"]).is_err());
        assert!(parse(&["--burstiness", "nan"]).is_err());
    }
}
