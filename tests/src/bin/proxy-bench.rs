//! `proxy-bench`: the same simulated fleet under the same closed-loop load,
//! reached four ways: directly (the baseline), through the `prefixgate`
//! binary, through Envoy with the prefixgate filter, and through Envoy's own
//! round robin without it. Prints a Markdown table: requests/s, p50/p99
//! latency added over going to the replicas directly, the proxy's CPU use
//! (user + system, from `/proc/<pid>/stat`) in cores and per request, and
//! errors.
//!
//! Run through `cargo xtask bench proxy [--seconds S] [--concurrency C]`,
//! which builds the release `prefixgate` and passes `--prefixgate PATH`.

use anyhow::{bail, Context, Result};
use prefixgate_tests::client::Client;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::fleet::start_fleet;
use prefixgate_tests::scenarios::prompt;
use prefixgate_tests::{Envoy, EnvoyMode, PrefixgateProcess};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Replicas behind the proxy.
const REPLICAS: usize = 4;
/// Simulated time runs this much faster, so the replicas answer in about a
/// millisecond and the proxy's share of the latency shows.
const TIME_SCALE: f64 = 1_000.0;

struct Options {
    seconds: f64,
    concurrency: usize,
    /// Characters per prompt (each shares a group prefix).
    prompt_chars: usize,
    /// The `prefixgate` binary to benchmark (a release build).
    prefixgate: PathBuf,
}

fn options() -> Result<Options> {
    let (mut seconds, mut concurrency, mut prompt_chars, mut prefixgate) = (10.0, 16, 8_000, None);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => seconds = value.parse().context("--seconds")?,
            "--concurrency" => concurrency = value.parse().context("--concurrency")?,
            "--prompt-chars" => prompt_chars = value.parse().context("--prompt-chars")?,
            "--prefixgate" => prefixgate = Some(PathBuf::from(value)),
            other => bail!(
                "unknown option {other} (expected --seconds, --concurrency, --prompt-chars, --prefixgate)"
            ),
        }
    }
    let prefixgate = prefixgate.context(
        "--prefixgate PATH is required: the release binary (`cargo xtask bench proxy` builds and passes it)",
    )?;
    Ok(Options { seconds, concurrency, prompt_chars, prefixgate })
}

/// Latencies and throughput of one closed-loop run.
struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
    /// Successful replies that carry no routing decision header.
    undecided: usize,
    /// The proxy's CPU use: cores on average, and milliseconds per request.
    cpu: Option<(f64, f64)>,
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

async fn run(targets: &[String], options: &Options, pid: Option<u32>) -> Result<Run> {
    let clients: Vec<Client> = targets.iter().map(|t| Client::new(t)).collect::<Result<_, _>>()?;
    let prefixes: Vec<String> =
        (0..8).map(|g| prompt(&format!("bench-group-{g}"), options.prompt_chars)).collect();
    // Warm-up: connections, VMs, index.
    for (i, p) in prefixes.iter().enumerate() {
        let client = &clients[i % clients.len()];
        client.completion(&format!("{p} warm"), 1).await?;
    }
    let cpu_before = pid.and_then(cpu_seconds);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(options.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..options.concurrency {
        let client = clients[c % clients.len()].clone();
        let prefixes = prefixes.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let (mut errors, mut undecided) = (0, 0);
            let mut i = 0usize;
            while Instant::now() < deadline {
                let p = &prefixes[(c + i) % prefixes.len()];
                let sent = Instant::now();
                match client.completion(&format!("{p} request {c}.{i}"), 1).await {
                    Ok(reply) if reply.status == 200 => {
                        latencies.push(sent.elapsed());
                        undecided += usize::from(reply.decision.is_none());
                    }
                    _ => errors += 1,
                }
                i += 1;
            }
            (latencies, errors, undecided)
        });
    }
    let mut latencies = Vec::new();
    let (mut errors, mut undecided) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (l, e, u) = joined?;
        latencies.extend(l);
        errors += e;
        undecided += u;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let requests = (latencies.len() + errors).max(1) as f64;
    let cpu = match (cpu_before, pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(((b - a) / elapsed, (b - a) * 1_000.0 / requests)),
        _ => None,
    };
    latencies.sort();
    if latencies.is_empty() {
        bail!("no request succeeded");
    }
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(Run { rps: latencies.len() as f64 / elapsed, p50: at(0.5), p99: at(0.99), errors, undecided, cpu })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// One row of the table: what the load went through, and how it did.
struct Row {
    label: &'static str,
    /// Whether the filter routes here, so every reply must carry a decision.
    filtered: bool,
    run: Run,
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = options()?;
    let fleet = start_fleet(REPLICAS, TIME_SCALE).await?;
    let addrs: Vec<SocketAddr> = fleet.addrs();
    let direct: Vec<String> = fleet.urls();
    eprintln!(
        "proxy-bench: {REPLICAS} replicas, concurrency {}, {} s per run, {}-character prompts",
        options.concurrency, options.seconds, options.prompt_chars
    );
    let filter_config = plugin_config("prefix_aware", &addrs, 500, &[]);

    let round_robin = plugin_config("round_robin", &addrs, 500, &[]);

    let baseline = run(&direct, &options, None).await?;
    let mut rows = Vec::new();
    for (label, config) in
        [("prefixgate (round_robin)", &round_robin), ("prefixgate (prefix_aware)", &filter_config)]
    {
        let proxy = PrefixgateProcess::start(&options.prefixgate, &addrs, config).await?;
        let run = run(&[proxy.base_url().to_owned()], &options, proxy.pid()).await?;
        rows.push(Row { label, filtered: true, run });
    }
    for (label, filtered, mode) in [
        ("Envoy + prefixgate filter (prefix_aware)", true, EnvoyMode::Filter(filter_config.clone())),
        ("Envoy, round-robin, no filter", false, EnvoyMode::RoundRobin),
    ] {
        let envoy = Envoy::start(&addrs, mode).await?;
        let run = run(&[envoy.base_url().to_owned()], &options, Some(envoy.pid())).await?;
        rows.push(Row { label, filtered, run });
    }
    println!(
        "| setup | requests/s | p50 added (ms) | p99 added (ms) | proxy CPU (cores) | proxy CPU per request (ms) | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| direct to replicas (client round-robin) | {:.0} | 0 (p50 {:.2}) | 0 (p99 {:.2}) | - | - | {} |",
        baseline.rps,
        ms(baseline.p50),
        ms(baseline.p99),
        baseline.errors
    );
    for Row { label, filtered, run: r } in rows {
        if filtered && r.undecided > 0 {
            // The filter did not route these (a trap, then the host's fallback).
            eprintln!("proxy-bench: {label}: {} replies without a routing decision", r.undecided);
        }
        let (cores, per_request) = match r.cpu {
            Some((cores, per_request)) => (format!("{cores:.2}"), format!("{per_request:.3}")),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} | {cores} | {per_request} | {} |",
            r.rps,
            ms(r.p50) - ms(baseline.p50),
            ms(r.p99) - ms(baseline.p99),
            r.errors
        );
    }
    fleet.shutdown().await;
    Ok(())
}
