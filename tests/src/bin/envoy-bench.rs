//! `envoy-bench`: Envoy with the prefixgate filter against Envoy's own
//! round-robin without it, same simulated fleet, same closed-loop load.
//! Prints a Markdown table: requests/s, p50/p99 latency added over going to
//! the replicas directly, and Envoy's CPU use.
//!
//! Run through `cargo xtask bench envoy [--seconds S] [--concurrency C]`.

use anyhow::{bail, Context, Result};
use prefixgate_tests::client::Client;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::fleet::start_fleet;
use prefixgate_tests::scenarios::prompt;
use prefixgate_tests::{Envoy, EnvoyMode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Replicas behind the proxy.
const REPLICAS: usize = 4;
/// Simulated time runs this much faster, so the replicas answer in about a
/// millisecond and the proxy's share of the latency shows.
const TIME_SCALE: f64 = 1_000.0;

struct Options {
    seconds: f64,
    concurrency: usize,
}

fn options() -> Result<Options> {
    let mut options = Options { seconds: 10.0, concurrency: 16 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => options.seconds = value.parse().context("--seconds")?,
            "--concurrency" => options.concurrency = value.parse().context("--concurrency")?,
            other => bail!("unknown option {other} (expected --seconds, --concurrency)"),
        }
    }
    Ok(options)
}

/// Latencies and throughput of one closed-loop run.
struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
    cpu: Option<f64>,
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
    let prefixes: Vec<String> = (0..8).map(|g| prompt(&format!("bench-group-{g}"), 1_000)).collect();
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
            let mut errors = 0;
            let mut i = 0usize;
            while Instant::now() < deadline {
                let p = &prefixes[(c + i) % prefixes.len()];
                let sent = Instant::now();
                match client.completion(&format!("{p} request {c}.{i}"), 1).await {
                    Ok(reply) if reply.status == 200 => latencies.push(sent.elapsed()),
                    _ => errors += 1,
                }
                i += 1;
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (l, e) = joined?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = match (cpu_before, pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some((b - a) / elapsed),
        _ => None,
    };
    latencies.sort();
    if latencies.is_empty() {
        bail!("no request succeeded");
    }
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(Run { rps: latencies.len() as f64 / elapsed, p50: at(0.5), p99: at(0.99), errors, cpu })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = options()?;
    let fleet = start_fleet(REPLICAS, TIME_SCALE).await?;
    let addrs: Vec<SocketAddr> = fleet.addrs();
    let direct: Vec<String> = fleet.urls();
    eprintln!(
        "envoy-bench: {REPLICAS} replicas, concurrency {}, {} s per run",
        options.concurrency, options.seconds
    );

    let baseline = run(&direct, &options, None).await?;
    let mut rows = Vec::new();
    for (label, mode) in [
        ("Envoy, round-robin, no filter", EnvoyMode::RoundRobin),
        (
            "Envoy + prefixgate filter (prefix_aware)",
            EnvoyMode::Filter(plugin_config("prefix_aware", &addrs, 500, &[])),
        ),
    ] {
        let envoy = Envoy::start(&addrs, mode).await?;
        let result = run(&[envoy.base_url().to_owned()], &options, Some(envoy.pid())).await?;
        rows.push((label, result));
    }
    println!("| setup | requests/s | p50 added (ms) | p99 added (ms) | Envoy CPU (cores) | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| direct to replicas (client round-robin) | {:.0} | 0 (p50 {:.2}) | 0 (p99 {:.2}) | - | {} |",
        baseline.rps,
        ms(baseline.p50),
        ms(baseline.p99),
        baseline.errors
    );
    for (label, r) in rows {
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} | {} | {} |",
            r.rps,
            ms(r.p50) - ms(baseline.p50),
            ms(r.p99) - ms(baseline.p99),
            r.cpu.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".to_owned()),
            r.errors
        );
    }
    fleet.shutdown().await;
    Ok(())
}
