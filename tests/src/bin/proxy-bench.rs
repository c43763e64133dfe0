//! `proxy-bench`: the same simulated fleet under the same load, reached
//! directly (the baseline), through the `prefixgate` binary (with two
//! policies, and with one worker thread), through Envoy with the prefixgate
//! filter, and through Envoy's own round robin without it. Each is measured
//! under a closed loop (as fast as the machine goes) and under an open loop
//! at a fixed rate (1,000 requests/s by default), where the latency added is
//! the proxy's own rather than queueing behind a saturated CPU. The setups take turns in short rounds, so a noisy
//! neighbour slows them all alike. Prints Markdown tables: requests/s, p50/p99
//! latency added over going to the replicas directly, the proxy's CPU use
//! (user + system, from `/proc/<pid>/stat`) in cores and per request,
//! errors, and the routing decisions by reason (`x-prefixgate-decision`).
//!
//! Every prompt is one of eight shared prefixes (`--prefix-groups`) followed
//! by a tail no other request has, longer than the index chunk it falls in
//! (`--tail-chars` sets it), so each decision matches the prefix and writes a
//! new branch, as a new turn of a conversation does. `--prefix-groups 300
//! --tail-chars 1000` is chat traffic over many system prompts: a novel
//! tail after a shared 7,000-character prefix.
//!
//! The run fails (exit 1, after the tables) when any request fails, or when
//! a setup the filter routes has a reply the filter did not route: no
//! decision header, or one the host wrote (`fallback_*`, `retry`,
//! `filter_vm_replaced`).
//!
//! Run through `cargo xtask bench proxy`, which builds the release
//! `prefixgate` and passes `--prefixgate PATH`.

use anyhow::{bail, Context, Result};
use clap::Parser;
use prefixgate_bench::report::table::Table;
use prefixgate_filter::{FilterConfig, Reason, Router};
use prefixgate_launch::{Locate as _, FILTER_MODULE};
use prefixgate_tests::client::{Client, Reply};
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::fleet::start_fleet;
use prefixgate_tests::scenarios::prompt;
use prefixgate_tests::{Envoy, EnvoyMode, PrefixgateProcess};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vllm_sim::calibrate::percentile_of_sorted;

/// Replicas behind the proxy.
const REPLICAS: usize = 4;
/// Simulated time runs this much faster, so the replicas answer in about a
/// millisecond and the proxy's share of the latency shows.
const TIME_SCALE: f64 = 1_000.0;
/// Request numbers of the warm-up, above any a measured run reaches.
const WARM_UP_FIRST: usize = 1 << 40;

/// Latency and CPU cost of prefixgate and Envoy against direct access to a
/// simulated fleet.
#[derive(Parser)]
struct Options {
    /// Seconds of load per setup and per load shape, split over the rounds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Rounds the setups take turns in.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Clients of the closed loop.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Requests per second of the open loop; 0 skips it.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Characters per prompt: one of eight shared prefixes, then a tail of
    /// its own longer than an index chunk.
    #[arg(long, default_value_t = 8_000)]
    prompt_chars: usize,
    /// Distinct shared prefixes the prompts are drawn from, in turn.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    prefix_groups: u64,
    /// Characters of each prompt's novel tail (at least one whole index
    /// chunk past the prefix); default: the shortest of `chunk_chars` times a
    /// power of two that spans two whole chunks.
    #[arg(long)]
    tail_chars: Option<usize>,
    /// The `prefixgate` binary to benchmark (a release build).
    #[arg(long)]
    prefixgate: PathBuf,
    /// Another `prefixgate` build (e.g. of an earlier commit) to run beside
    /// it, with `prefix_aware` and this tree's filter module (`--filter`), so
    /// that the two hosts are compared in one run on the same filter.
    #[arg(long)]
    compare_prefixgate: Option<PathBuf>,
}

/// How requests are offered.
#[derive(Clone, Copy)]
enum Load {
    /// This many clients, each sending its next request when the last returns.
    Closed(usize),
    /// Requests started at this fixed rate per second, whatever the replies do.
    Open(f64),
}

/// What one request did.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// HTTP 200 after `latency`; `decision` is the reason its
    /// `x-prefixgate-decision` header gave, if it carried one.
    Ok { latency: Duration, decision: Option<String> },
    /// Anything else: an error status, a broken connection, a lost task.
    Failed,
}

impl Outcome {
    fn of(reply: &Reply, latency: Duration) -> Self {
        if reply.status != 200 {
            return Outcome::Failed;
        }
        // The filter writes `policy=…; reason=…; …`, the host a bare reason.
        let decision = reply.reason().or(reply.decision.as_deref()).map(|r| r.trim().to_owned());
        Outcome::Ok { latency, decision }
    }
}

/// Whether the filter gave `reason` (rather than the host routing on its own).
fn is_filter_reason(reason: &str) -> bool {
    Reason::ALL.iter().any(|r| r.as_str() == reason)
}

/// The outcomes of a setup under one load, over all rounds.
#[derive(Default)]
struct Sample {
    outcomes: Vec<Outcome>,
    /// Seconds under load.
    elapsed: f64,
    /// CPU seconds the proxy used meanwhile, when it is a process.
    cpu: Option<f64>,
}

impl Sample {
    fn add(&mut self, other: Sample) {
        self.outcomes.extend(other.outcomes);
        self.elapsed += other.elapsed;
        self.cpu = match (self.cpu, other.cpu) {
            (Some(a), Some(b)) => Some(a + b),
            (None, b) => b,
            (a, None) => a,
        };
    }
}

/// A sample summarised for the table.
struct Summary {
    rps: f64,
    /// Latency percentiles of the successful requests, ms.
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    /// Successful replies by decision reason; `None`: no decision header.
    decisions: BTreeMap<Option<String>, usize>,
    /// The proxy's CPU use: cores on average, and milliseconds per request.
    cpu: Option<(f64, f64)>,
}

impl Summary {
    fn of(sample: &Sample) -> Result<Summary> {
        let mut latencies_ms = Vec::with_capacity(sample.outcomes.len());
        let mut decisions: BTreeMap<Option<String>, usize> = BTreeMap::new();
        let mut errors = 0;
        for outcome in &sample.outcomes {
            match outcome {
                Outcome::Ok { latency, decision } => {
                    latencies_ms.push(ms(*latency));
                    *decisions.entry(decision.clone()).or_default() += 1;
                }
                Outcome::Failed => errors += 1,
            }
        }
        if latencies_ms.is_empty() {
            bail!("no request succeeded");
        }
        latencies_ms.sort_by(f64::total_cmp);
        let elapsed = sample.elapsed.max(f64::EPSILON);
        let requests = sample.outcomes.len().max(1) as f64;
        Ok(Summary {
            rps: latencies_ms.len() as f64 / elapsed,
            p50_ms: percentile_of_sorted(&latencies_ms, 50.0),
            p99_ms: percentile_of_sorted(&latencies_ms, 99.0),
            errors,
            decisions,
            cpu: sample.cpu.map(|s| (s / elapsed, s * 1_000.0 / requests)),
        })
    }

    /// Successful replies the filter did not route: no decision header, or
    /// one the host wrote when it routed on its own.
    fn not_routed_by_filter(&self) -> usize {
        self.decisions
            .iter()
            .filter(|(reason, _)| !reason.as_deref().is_some_and(is_filter_reason))
            .map(|(_, n)| n)
            .sum()
    }

    /// The decisions, e.g. `prefix_match 9800, fallback_filter_failed 2`.
    fn decisions_cell(&self) -> String {
        let cells: Vec<String> = self
            .decisions
            .iter()
            .map(|(reason, n)| format!("{} {n}", reason.as_deref().unwrap_or("no header")))
            .collect();
        cells.join(", ")
    }
}

/// CPU seconds (user + system) used so far by process `pid`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The prompts: shared prefixes, and for request `i` a tail of its own.
struct Prompts {
    prefixes: Vec<String>,
    tail_chars: usize,
}

impl Prompts {
    /// Prompts of `chars` characters over `groups` prefixes whose tails are
    /// `tail` characters, or when `None` at least two whole index chunks of
    /// `config` past the shared prefix (the first new chunk may straddle it),
    /// so every request writes a new branch.
    fn new(chars: usize, groups: usize, tail: Option<usize>, config: &FilterConfig) -> Result<Self> {
        let router = Router::new(config.clone());
        let index = router.index();
        let new_chunks = |tail: usize| {
            let prefix = text(&prompt("bench-group-0", chars), chars.saturating_sub(tail));
            let whole = format!("{prefix}{}", Prompts::tail(0, tail));
            index.prompt_keys(&whole).chunks().saturating_sub(index.prompt_keys(&prefix).chunks())
        };
        let tail_chars = match tail {
            Some(tail) if tail >= chars => {
                bail!("--tail-chars {tail} leaves no shared prefix in {chars} characters")
            }
            Some(tail) if new_chunks(tail) == 0 => {
                bail!("a {tail}-character tail after {} characters spans no whole index chunk", chars - tail)
            }
            Some(tail) => tail,
            None => {
                let mut tail_chars = config.chunk_chars.max(1);
                while new_chunks(tail_chars) < 2 {
                    if tail_chars >= chars {
                        bail!("{chars}-character prompts are too short for a novel tail of two index chunks");
                    }
                    tail_chars = (tail_chars * 2).min(chars);
                }
                tail_chars
            }
        };
        let prefixes = (0..groups.max(1))
            .map(|g| text(&prompt(&format!("bench-group-{g}"), chars), chars - tail_chars))
            .collect();
        Ok(Self { prefixes, tail_chars })
    }

    /// Text no other request's tail starts with.
    fn tail(i: usize, chars: usize) -> String {
        text(&prompt(&format!("request-{i}"), chars), chars)
    }

    /// The prompt of request `i`.
    fn get(&self, i: usize) -> String {
        format!("{}{}", self.prefixes[i % self.prefixes.len()], Prompts::tail(i, self.tail_chars))
    }
}

/// The first `chars` characters of `s`.
fn text(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// Sends request `i` through `client` and times it.
async fn one_request(client: &Client, prompts: &Prompts, i: usize) -> Outcome {
    let prompt = prompts.get(i);
    let sent = Instant::now();
    match client.completion(&prompt, 1).await {
        Ok(reply) => Outcome::of(&reply, sent.elapsed()),
        Err(_) => Outcome::Failed,
    }
}

/// One setup: where its clients send, and the proxy process to watch.
struct Setup {
    label: &'static str,
    /// Whether the filter routes here, so every reply must carry a decision.
    filtered: bool,
    client: Client,
    pid: Option<u32>,
}

/// Offers `load` to `setup` for `seconds`; request numbers start at `first`
/// so that every request of the benchmark has its own suffix.
async fn run(setup: &Setup, prompts: &Arc<Prompts>, load: Load, seconds: f64, first: usize) -> Sample {
    let cpu_before = setup.pid.and_then(cpu_seconds);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    match load {
        Load::Closed(concurrency) => {
            for c in 0..concurrency {
                let client = setup.client.clone();
                let prompts = Arc::clone(prompts);
                tasks.spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut i = first + c;
                    while Instant::now() < deadline {
                        outcomes.push(one_request(&client, &prompts, i).await);
                        i += concurrency;
                    }
                    outcomes
                });
            }
        }
        Load::Open(rate) => {
            let total = (seconds * rate).round() as usize;
            for i in 0..total {
                tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
                let client = setup.client.clone();
                let prompts = Arc::clone(prompts);
                tasks.spawn(async move { vec![one_request(&client, &prompts, first + i).await] });
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        // A task that panicked lost its requests: count them as errors.
        outcomes.extend(joined.unwrap_or_else(|_| vec![Outcome::Failed]));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = match (cpu_before, setup.pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Sample { outcomes, elapsed, cpu }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = Options::parse();
    if !(options.rate >= 0.0 && options.rate.is_finite()) {
        bail!("--rate must be a non-negative number of requests per second, got {}", options.rate);
    }
    let fleet = start_fleet(REPLICAS, TIME_SCALE).await?;
    let addrs: Vec<SocketAddr> = fleet.addrs();
    eprintln!(
        "proxy-bench: {REPLICAS} replicas, {} s per setup and load in {} rounds, closed loop of {} clients and open loop at {} requests/s, {}-character prompts",
        options.seconds, options.rounds, options.concurrency, options.rate, options.prompt_chars
    );
    let prefix_aware = plugin_config("prefix_aware", &addrs, 500, &[]);
    let round_robin = plugin_config("round_robin", &addrs, 500, &[]);

    // Every setup runs from the start; they take turns under load.
    let mut proxies = Vec::new();
    for (config, args) in
        [(&round_robin, &[][..]), (&prefix_aware, &[]), (&prefix_aware, &["--workers", "1"])]
    {
        proxies.push(PrefixgateProcess::start_with_args(&options.prefixgate, &addrs, config, args).await?);
    }
    let compared = match &options.compare_prefixgate {
        Some(binary) => {
            let module = FILTER_MODULE.locate_or_build()?;
            let args = ["--filter", &*module.to_string_lossy()];
            Some(PrefixgateProcess::start_with_args(binary, &addrs, &prefix_aware, &args).await?)
        }
        None => None,
    };
    let envoy_filter = Envoy::start(&addrs, EnvoyMode::Filter(prefix_aware.clone())).await?;
    let envoy_rr = Envoy::start(&addrs, EnvoyMode::RoundRobin).await?;
    // The baseline spreads its requests over the replicas itself.
    let direct: Vec<Setup> = fleet
        .urls()
        .iter()
        .map(|url| Ok(Setup { label: "direct", filtered: false, client: Client::new(url)?, pid: None }))
        .collect::<Result<_>>()?;
    let mut setups = vec![
        ("prefixgate (round_robin)", true, proxies[0].base_url(), proxies[0].pid()),
        ("prefixgate (prefix_aware)", true, proxies[1].base_url(), proxies[1].pid()),
        ("prefixgate (prefix_aware), 1 worker thread", true, proxies[2].base_url(), proxies[2].pid()),
    ];
    if let Some(compared) = &compared {
        setups.push(("compared prefixgate (prefix_aware)", true, compared.base_url(), compared.pid()));
    }
    setups.extend([
        ("Envoy + prefixgate filter (prefix_aware)", true, envoy_filter.base_url(), envoy_filter.pid()),
        ("Envoy, round-robin, no filter", false, envoy_rr.base_url(), envoy_rr.pid()),
    ]);
    let setups: Vec<Setup> = setups
        .into_iter()
        .map(|(label, filtered, url, pid)| Ok(Setup { label, filtered, client: Client::new(url)?, pid }))
        .collect::<Result<_>>()?;

    let filter_config =
        FilterConfig::from_json(prefix_aware.as_bytes()).context("the benchmark's plugin config")?;
    let groups = usize::try_from(options.prefix_groups).unwrap_or(usize::MAX);
    let prompts = Arc::new(Prompts::new(options.prompt_chars, groups, options.tail_chars, &filter_config)?);
    eprintln!(
        "proxy-bench: each prompt is a shared prefix of {} characters and a tail of {} no other request has",
        options.prompt_chars - prompts.tail_chars,
        prompts.tail_chars
    );
    // Warm-up: connections, VMs, the shared prefixes in the index; request
    // numbers far above the measured ones.
    for (s, setup) in direct.iter().chain(&setups).enumerate() {
        for g in 0..groups {
            setup.client.completion(&prompts.get(WARM_UP_FIRST + s * groups + g), 1).await?;
        }
    }

    let mut loads = vec![Load::Closed(options.concurrency)];
    if options.rate > 0.0 {
        loads.push(Load::Open(options.rate));
    }
    let slice = options.seconds / f64::from(options.rounds);
    let mut first = 0usize;
    let mut problems: Vec<String> = Vec::new();
    for load in loads {
        let mut baseline = Sample::default();
        let mut samples: Vec<Sample> = setups.iter().map(|_| Sample::default()).collect();
        // Direct: the load split over the replicas, as a client-side round
        // robin would send it.
        let share = match load {
            Load::Closed(c) => Load::Closed(c.div_ceil(direct.len()).max(1)),
            Load::Open(r) => Load::Open(r / direct.len() as f64),
        };
        for _ in 0..options.rounds {
            let runs =
                direct.iter().enumerate().map(|(k, setup)| run(setup, &prompts, share, slice, first + k));
            let mut together = Sample::default();
            for sample in futures_util::future::join_all(runs).await {
                // The replicas ran side by side: their time under load is one.
                together.elapsed = together.elapsed.max(sample.elapsed);
                together.outcomes.extend(sample.outcomes);
            }
            baseline.add(together);
            first += 1 << 20;
            for (setup, sample) in setups.iter().zip(&mut samples) {
                sample.add(run(setup, &prompts, load, slice, first).await);
                first += 1 << 20;
            }
        }
        match load {
            Load::Closed(c) => println!("\nClosed loop, {c} clients (the machine saturated):\n"),
            Load::Open(r) => println!("\nOpen loop, {r:.0} requests/s offered:\n"),
        }
        let baseline = Summary::of(&baseline)?;
        let rows: Vec<(&Setup, Summary)> = setups
            .iter()
            .zip(&samples)
            .map(|(s, sample)| Ok((s, Summary::of(sample)?)))
            .collect::<Result<_>>()?;
        print!("{}", table(&baseline, &rows).markdown());
        problems.extend(problems_of(&baseline, &rows));
    }
    fleet.shutdown().await;
    if !problems.is_empty() {
        bail!("the figures above are not all the proxies' own:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// The baseline, then each setup against it.
fn table(baseline: &Summary, rows: &[(&Setup, Summary)]) -> Table {
    let mut t = Table::new([
        "setup",
        "requests/s",
        "p50 added (ms)",
        "p99 added (ms)",
        "proxy CPU (cores)",
        "proxy CPU per request (ms)",
        "errors",
        "decisions",
    ]);
    t.push([
        "direct to replicas (client round-robin)".to_owned(),
        format!("{:.0}", baseline.rps),
        format!("0 (p50 {:.3})", baseline.p50_ms),
        format!("0 (p99 {:.3})", baseline.p99_ms),
        "-".to_owned(),
        "-".to_owned(),
        baseline.errors.to_string(),
        "-".to_owned(),
    ]);
    for (setup, r) in rows {
        let (cores, per_request) = match r.cpu {
            Some((cores, per_request)) => (format!("{cores:.2}"), format!("{per_request:.3}")),
            None => ("-".to_owned(), "-".to_owned()),
        };
        t.push([
            setup.label.to_owned(),
            format!("{:.0}", r.rps),
            format!("{:.3}", r.p50_ms - baseline.p50_ms),
            format!("{:.3}", r.p99_ms - baseline.p99_ms),
            cores,
            per_request,
            r.errors.to_string(),
            if setup.filtered { r.decisions_cell() } else { "-".to_owned() },
        ]);
    }
    t
}

/// What makes a run fail: errors anywhere, and replies the filter did not
/// route where it should have.
fn problems_of(baseline: &Summary, rows: &[(&Setup, Summary)]) -> Vec<String> {
    let mut problems = Vec::new();
    if baseline.errors > 0 {
        problems.push(format!("direct to replicas: {} errors", baseline.errors));
    }
    for (setup, r) in rows {
        if r.errors > 0 {
            problems.push(format!("{}: {} errors", setup.label, r.errors));
        }
        let fallbacks = r.not_routed_by_filter();
        if setup.filtered && fallbacks > 0 {
            problems.push(format!(
                "{}: {fallbacks} replies the filter did not route ({})",
                setup.label,
                r.decisions_cell()
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, decision: Option<&str>) -> Reply {
        Reply {
            status,
            backend: None,
            decision: decision.map(str::to_owned),
            headers: Default::default(),
            body: Default::default(),
        }
    }

    fn summary(outcomes: Vec<Outcome>) -> Summary {
        Summary::of(&Sample { outcomes, elapsed: 1.0, cpu: None }).unwrap()
    }

    #[test]
    fn host_decisions_and_missing_headers_count_as_not_routed_by_the_filter() {
        let ms = Duration::from_millis(1);
        let s = summary(vec![
            Outcome::of(
                &reply(200, Some("policy=prefix_aware; reason=prefix_match; match=0.75; load=1")),
                ms,
            ),
            Outcome::of(
                &reply(200, Some("policy=prefix_aware; reason=prefix_match; match=0.50; load=0")),
                ms,
            ),
            Outcome::of(&reply(200, Some("fallback_filter_failed")), ms),
            Outcome::of(&reply(200, Some("retry")), ms),
            Outcome::of(&reply(200, None), ms),
            Outcome::of(&reply(503, Some("no_healthy_backend")), ms),
        ]);
        assert_eq!(s.errors, 1);
        assert_eq!(s.not_routed_by_filter(), 3);
        assert_eq!(s.decisions_cell(), "no header 1, fallback_filter_failed 1, prefix_match 2, retry 1");
        let setup = Setup {
            label: "p",
            filtered: true,
            client: Client::new("http://127.0.0.1:9").unwrap(),
            pid: None,
        };
        let clean = summary(vec![Outcome::of(&reply(200, Some("policy=pow2; reason=pow2")), ms)]);
        assert!(problems_of(
            &clean,
            &[(&setup, summary(vec![Outcome::Ok { latency: ms, decision: Some("pow2".into()) }]))]
        )
        .is_empty());
        let problems = problems_of(&clean, &[(&setup, s)]);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn every_tail_writes_new_index_chunks() {
        let config =
            FilterConfig::new(vec![prefixgate_filter::config::BackendConfig::Address("127.0.0.1:1".into())]);
        let router = Router::new(config.clone());
        for chars in [1_000, 8_000, 32_000] {
            let prompts = Prompts::new(chars, 8, None, &config).unwrap();
            assert!(prompts.tail_chars > config.chunk_chars, "{chars}: {}", prompts.tail_chars);
            let (a, b) = (prompts.get(0), prompts.get(8));
            assert_eq!(a.chars().count(), chars);
            assert!(a.starts_with(&prompts.prefixes[0]) && b.starts_with(&prompts.prefixes[0]));
            assert_ne!(a, b, "each request has its own tail");
            let shared = router.index().prompt_keys(&prompts.prefixes[0]).chunks();
            assert!(router.index().prompt_keys(&a).chunks() >= shared + 2, "{chars}");
        }
        assert!(Prompts::new(10, 8, None, &config).is_err(), "shorter than two chunks");
        // Chat over many system prompts: 300 prefixes of 7,000 characters.
        let chat = Prompts::new(8_000, 300, Some(1_000), &config).unwrap();
        assert_eq!((chat.prefixes.len(), chat.prefixes[0].chars().count()), (300, 7_000));
        let (a, b) = (chat.get(0), chat.get(300));
        assert!(b.starts_with(&chat.prefixes[0]) && a != b);
        let shared = router.index().prompt_keys(&chat.prefixes[0]).chunks();
        assert!(router.index().prompt_keys(&a).chunks() > shared);
        assert!(Prompts::new(8_000, 300, Some(8_000), &config).is_err(), "no prefix left");
        assert!(Prompts::new(8_000, 300, Some(3), &config).is_err(), "no whole chunk");
    }

    #[test]
    fn percentiles_interpolate() {
        let ms = |m| Outcome::Ok { latency: Duration::from_millis(m), decision: None };
        let s = summary(vec![ms(4), ms(1), ms(3), ms(2)]);
        assert!((s.p50_ms - 2.5).abs() < 1e-9 && (s.p99_ms - 3.97).abs() < 1e-9);
    }
}
