//! `proxy-bench`: the same simulated fleet under the same load, reached
//! directly (the baseline), through the `prefixgate` binary (with two
//! policies, and with one worker thread), through Envoy with the prefixgate
//! filter, and through Envoy's own round robin without it. Each is measured
//! under a closed loop (as fast as the machine goes) and under an open loop
//! at a fixed rate (1,000 requests/s by default), where the latency added is
//! the proxy's own rather than queueing behind a saturated CPU. The setups take turns in short rounds, so a noisy
//! neighbour slows them all alike. Prints Markdown tables: requests/s, p50/p99
//! latency added over going to the replicas directly, the proxy's CPU use
//! (user + system, from `/proc/<pid>/stat`) in cores and per request, and
//! errors.
//!
//! Run through `cargo xtask bench proxy`, which builds the release
//! `prefixgate` and passes `--prefixgate PATH`.

use anyhow::{bail, Result};
use clap::Parser;
use prefixgate_tests::client::Client;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::fleet::start_fleet;
use prefixgate_tests::scenarios::prompt;
use prefixgate_tests::{Envoy, EnvoyMode, PrefixgateProcess};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Replicas behind the proxy.
const REPLICAS: usize = 4;
/// Simulated time runs this much faster, so the replicas answer in about a
/// millisecond and the proxy's share of the latency shows.
const TIME_SCALE: f64 = 1_000.0;
/// Distinct shared prefixes the prompts are drawn from.
const PREFIX_GROUPS: usize = 8;

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
    /// Characters per prompt (each starts with one of eight shared prefixes).
    #[arg(long, default_value_t = 8_000)]
    prompt_chars: usize,
    /// The `prefixgate` binary to benchmark (a release build).
    #[arg(long)]
    prefixgate: PathBuf,
}

/// How requests are offered.
#[derive(Clone, Copy)]
enum Load {
    /// This many clients, each sending its next request when the last returns.
    Closed(usize),
    /// Requests started at this fixed rate per second, whatever the replies do.
    Open(f64),
}

/// What one request did: its latency when it succeeded, and whether the reply
/// carried a routing decision.
type Outcome = Option<(Duration, bool)>;

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
    p50: Duration,
    p99: Duration,
    errors: usize,
    /// Successful replies that carry no routing decision header.
    undecided: usize,
    /// The proxy's CPU use: cores on average, and milliseconds per request.
    cpu: Option<(f64, f64)>,
}

impl Summary {
    fn of(sample: &Sample) -> Result<Summary> {
        let errors = sample.outcomes.iter().filter(|o| o.is_none()).count();
        let undecided = sample.outcomes.iter().flatten().filter(|(_, decided)| !decided).count();
        let mut latencies: Vec<Duration> = sample.outcomes.iter().flatten().map(|(l, _)| *l).collect();
        latencies.sort();
        if latencies.is_empty() {
            bail!("no request succeeded");
        }
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let elapsed = sample.elapsed.max(f64::EPSILON);
        let requests = sample.outcomes.len().max(1) as f64;
        Ok(Summary {
            rps: latencies.len() as f64 / elapsed,
            p50: at(0.5),
            p99: at(0.99),
            errors,
            undecided,
            cpu: sample.cpu.map(|s| (s / elapsed, s * 1_000.0 / requests)),
        })
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

/// Sends request `i` through `client` and times it.
async fn one_request(client: &Client, prefixes: &[String], i: usize) -> Outcome {
    let p = &prefixes[i % prefixes.len()];
    let sent = Instant::now();
    match client.completion(&format!("{p} request {i}"), 1).await {
        Ok(reply) if reply.status == 200 => Some((sent.elapsed(), reply.decision.is_some())),
        _ => None,
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
async fn run(setup: &Setup, prefixes: &Arc<Vec<String>>, load: Load, seconds: f64, first: usize) -> Sample {
    let cpu_before = setup.pid.and_then(cpu_seconds);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    match load {
        Load::Closed(concurrency) => {
            for c in 0..concurrency {
                let client = setup.client.clone();
                let prefixes = Arc::clone(prefixes);
                tasks.spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut i = first + c;
                    while Instant::now() < deadline {
                        outcomes.push(one_request(&client, &prefixes, i).await);
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
                let prefixes = Arc::clone(prefixes);
                tasks.spawn(async move { vec![one_request(&client, &prefixes, first + i).await] });
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        // A task that panicked lost its requests: count them as errors.
        outcomes.extend(joined.unwrap_or_else(|_| vec![None]));
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
    let envoy_filter = Envoy::start(&addrs, EnvoyMode::Filter(prefix_aware.clone())).await?;
    let envoy_rr = Envoy::start(&addrs, EnvoyMode::RoundRobin).await?;
    // The baseline spreads its requests over the replicas itself.
    let direct: Vec<Setup> = fleet
        .urls()
        .iter()
        .map(|url| Ok(Setup { label: "direct", filtered: false, client: Client::new(url)?, pid: None }))
        .collect::<Result<_>>()?;
    let setups = [
        ("prefixgate (round_robin)", true, proxies[0].base_url(), proxies[0].pid()),
        ("prefixgate (prefix_aware)", true, proxies[1].base_url(), proxies[1].pid()),
        ("prefixgate (prefix_aware), 1 worker thread", true, proxies[2].base_url(), proxies[2].pid()),
        ("Envoy + prefixgate filter (prefix_aware)", true, envoy_filter.base_url(), Some(envoy_filter.pid())),
        ("Envoy, round-robin, no filter", false, envoy_rr.base_url(), Some(envoy_rr.pid())),
    ];
    let setups: Vec<Setup> = setups
        .into_iter()
        .map(|(label, filtered, url, pid)| Ok(Setup { label, filtered, client: Client::new(url)?, pid }))
        .collect::<Result<_>>()?;

    let prefixes: Arc<Vec<String>> = Arc::new(
        (0..PREFIX_GROUPS).map(|g| prompt(&format!("bench-group-{g}"), options.prompt_chars)).collect(),
    );
    // Warm-up: connections, VMs, index.
    for setup in direct.iter().chain(&setups) {
        for (g, p) in prefixes.iter().enumerate() {
            setup.client.completion(&format!("{p} warm {g}"), 1).await?;
        }
    }

    let mut loads = vec![Load::Closed(options.concurrency)];
    if options.rate > 0.0 {
        loads.push(Load::Open(options.rate));
    }
    let slice = options.seconds / f64::from(options.rounds);
    let mut first = 0usize;
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
                direct.iter().enumerate().map(|(k, setup)| run(setup, &prefixes, share, slice, first + k));
            let mut together = Sample::default();
            for sample in futures_util::future::join_all(runs).await {
                // The replicas ran side by side: their time under load is one.
                together.elapsed = together.elapsed.max(sample.elapsed);
                together.outcomes.extend(sample.outcomes);
            }
            baseline.add(together);
            first += 1 << 20;
            for (setup, sample) in setups.iter().zip(&mut samples) {
                sample.add(run(setup, &prefixes, load, slice, first).await);
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
        print_table(&baseline, &rows);
    }
    fleet.shutdown().await;
    Ok(())
}

/// Prints one Markdown table: the baseline, then each setup against it.
fn print_table(baseline: &Summary, rows: &[(&Setup, Summary)]) {
    println!(
        "| setup | requests/s | p50 added (ms) | p99 added (ms) | proxy CPU (cores) | proxy CPU per request (ms) | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| direct to replicas (client round-robin) | {:.0} | 0 (p50 {:.3}) | 0 (p99 {:.3}) | - | - | {} |",
        baseline.rps,
        ms(baseline.p50),
        ms(baseline.p99),
        baseline.errors
    );
    for (setup, r) in rows {
        if setup.filtered && r.undecided > 0 {
            // The filter did not route these (a trap, then the host's fallback).
            eprintln!("proxy-bench: {}: {} replies without a routing decision", setup.label, r.undecided);
        }
        let (cores, per_request) = match r.cpu {
            Some((cores, per_request)) => (format!("{cores:.2}"), format!("{per_request:.3}")),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {cores} | {per_request} | {} |",
            setup.label,
            r.rps,
            ms(r.p50) - ms(baseline.p50),
            ms(r.p99) - ms(baseline.p99),
            r.errors
        );
    }
}
