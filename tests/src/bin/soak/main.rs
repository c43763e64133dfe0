//! `soak`: a steady streaming load through a proxy hosting the prefixgate
//! filter while one fault at a time hits it, each on a fresh fleet and a
//! fresh proxy (the release `prefixgate` process, and/or Envoy with the
//! filter): one replica of four failing, adversarial bodies from other
//! clients, many hot swaps, a swap to a module that traps. The simulated
//! replicas are `vllm-sim` processes, so that kill -9 and SIGSTOP hit a real
//! process; the faults a simulator cannot play are played by the tests'
//! `FailingReplica`, the bodies and swaps are in `attack.rs` and `swaps.rs`.
//!
//! Prints one Markdown table and exits non-zero when a bound is broken.
//! Run through `cargo xtask soak`, which builds the release binaries (and
//! a short version through `cargo xtask test`).

mod attack;
mod swaps;

use anyhow::{bail, Context as _, Result};
use attack::AttackReport;
use clap::{Parser, ValueEnum};
use futures_util::StreamExt as _;
use prefixgate_launch::{check_filter, Locate as _, Signal, SimProcess};
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::envoy_config::UpstreamTimeouts;
use prefixgate_tests::failing_replica::{FailingReplica, Failure};
use prefixgate_tests::scenarios::prompt;
use prefixgate_tests::{Envoy, EnvoyMode, PrefixgateProcess};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swaps::{Modules, SwapReport};

/// Replicas behind the proxy (one of them is the faulty one).
const REPLICAS: usize = 4;
/// Distinct shared prefixes the prompts are drawn from.
const PREFIX_GROUPS: usize = 8;
/// The filter's default `unhealthy_after`: failed scrapes that mark a backend unhealthy.
const UNHEALTHY_AFTER: f64 = 3.0;
/// Load before a fault is injected (all but the failing replicas, faulty from the start).
const WARM_UP: Duration = Duration::from_secs(2);
/// After a swap to the module that traps, how long a host has to refuse it
/// or roll it back before every request must be routed by the old module.
const TRAP_GRACE: Duration = Duration::from_secs(5);
/// Longest one phase may run (every loop in it stops by then).
const PHASE_LIMIT: Duration = Duration::from_secs(900);
/// How long Envoy may take to apply or refuse one ECDS rollout.
const ROLLOUT_LIMIT: Duration = Duration::from_secs(30);
/// Most requests one load client sends in one phase.
const MAX_REQUESTS_PER_CLIENT: usize = 5_000;
/// Most bytes of one response kept for inspection.
const MAX_KEPT_BYTES: usize = 1 << 20;

/// The prefixgate timeouts of the soak (the defaults, 120 s to the first
/// byte and 300 s between chunks, would hold one request for the whole run);
/// Envoy gets the same.
const PREFIXGATE_TOML: &str = "\
[timeouts]
upstream_first_byte_ms = 5000
stream_idle_ms = 5000
";

/// A soak test: steady streaming load through prefixgate and Envoy (with the
/// prefixgate filter) while one fault at a time hits it.
///
/// Faults, each on a fresh fleet of vllm-sim processes and a fresh proxy:
/// `kill` (kill -9 a replica), `stop` (SIGSTOP one for --seconds-per-fault,
/// then SIGCONT), `fail500` (a replica answering 500 at once, /metrics
/// healthy), `hang` (a replica that accepts inference requests and never
/// answers, /metrics healthy), `big-metrics` (a working replica whose
/// /metrics is 15 MB), `adversarial` (other clients send the adversarial
/// corpus, every shape at 1-4 MiB, at least two bodies a second), `swaps`
/// (--config-swaps configuration and --module-swaps module swaps: admin API
/// or ECDS), `trap-module` (a swap to --trap-module, which traps on every
/// request).
///
/// Bounds (exit code 1 when one is broken): no request may fail before any
/// response byte reached the client (transport error, 502/503/504) while
/// healthy replicas were left (with a faulty replica, reported only for
/// Envoy, whose single retry does not yet hide every such failure under
/// SIGSTOP or a replica that never answers); at most
/// --max-failed-after-ejection-pct of the requests started after the faulty
/// replica was first skipped fail (of all requests, when no replica is
/// faulty); the idle in-flight load is 0 once the load has stopped and a
/// scrape interval passed; the proxy's peak RSS (VmHWM) stays under
/// --rss-cap-mib. And per fault: no adversarial body is dropped; every swap
/// is applied and the prefix index survives them; a swap to the trapping
/// module is refused or rolled back, so that of the requests started from
/// 5 s after it at most --max-failed-after-ejection-pct fail or are routed
/// by the host's fallback instead of the old module.
#[derive(Parser)]
#[command(name = "soak")]
struct Options {
    /// Seconds each fault lasts (SIGSTOP duration; load under the fault; the
    /// time the swaps are spread over).
    #[arg(long, default_value_t = 20.0)]
    seconds_per_fault: f64,
    /// Seconds of load after a fault ends.
    #[arg(long, default_value_t = 5.0)]
    recovery_s: f64,
    /// Which proxy to soak.
    #[arg(long, value_enum, default_value_t = HostChoice::Both)]
    host: HostChoice,
    /// Faults to inject, comma-separated (default: all, in this order).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kill,stop,fail500,hang,big-metrics,adversarial,swaps,trap-module"
    )]
    faults: Vec<Fault>,
    /// Configuration swaps of the `swaps` fault.
    #[arg(long, default_value_t = 100)]
    config_swaps: usize,
    /// Module swaps of the `swaps` fault.
    #[arg(long, default_value_t = 20)]
    module_swaps: usize,
    /// The module of the `trap-module` fault (`cargo xtask soak` builds
    /// tests/trap-filter).
    #[arg(long)]
    trap_module: Option<PathBuf>,
    /// The filter's scrape interval, ms.
    #[arg(long, default_value_t = 500)]
    scrape_ms: u64,
    /// The whole run fails when it takes longer than this, seconds.
    #[arg(long, default_value_t = 3_600)]
    time_limit_s: u64,
    /// Concurrent streaming clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    clients: u32,
    /// Tokens per streamed chat completion.
    #[arg(long, default_value_t = 48)]
    max_tokens: u32,
    /// Characters per prompt (each starts with one of eight shared prefixes).
    #[arg(long, default_value_t = 2_000)]
    prompt_chars: usize,
    /// Simulated time runs this many times faster than real time.
    #[arg(long, default_value_t = 2.0)]
    time_scale: f64,
    /// A request with no byte for this long (headers or next chunk) is given
    /// up by the client and counted as failed.
    #[arg(long, default_value_t = 30.0)]
    client_stall_s: f64,
    /// Largest share (percent) of requests started after the faulty replica
    /// was first skipped that may fail.
    #[arg(long, default_value_t = 1.0)]
    max_failed_after_ejection_pct: f64,
    /// Cap on the proxy's peak resident memory (VmHWM), MiB.
    #[arg(long, default_value_t = 512)]
    rss_cap_mib: u64,
    /// The release `prefixgate` binary.
    #[arg(long)]
    prefixgate: PathBuf,
    /// The release `vllm-sim` binary.
    #[arg(long)]
    vllm_sim: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HostChoice {
    Prefixgate,
    Envoy,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Fault {
    Kill,
    Stop,
    Fail500,
    Hang,
    BigMetrics,
    Adversarial,
    Swaps,
    TrapModule,
}

impl Fault {
    fn label(self, options: &Options) -> String {
        match self {
            Fault::Kill => "kill -9 a replica".to_owned(),
            Fault::Stop => "SIGSTOP a replica, then SIGCONT".to_owned(),
            Fault::Fail500 => "replica answers 500 at once".to_owned(),
            Fault::Hang => "replica accepts, never answers".to_owned(),
            Fault::BigMetrics => "replica with a 15 MB /metrics".to_owned(),
            Fault::Adversarial => "adversarial bodies from other clients".to_owned(),
            Fault::Swaps => {
                format!("{} config + {} module swaps", options.config_swaps, options.module_swaps)
            }
            Fault::TrapModule => "swap to a module that traps".to_owned(),
        }
    }

    /// Whether one replica is faulty (`Fleet::addrs[0]`).
    fn has_faulty_replica(self) -> bool {
        matches!(self, Fault::Kill | Fault::Stop | Fault::Fail500 | Fault::Hang | Fault::BigMetrics)
    }

    /// How the faulty replica fails, for the faults a [`FailingReplica`]
    /// plays (faulty from the start) rather than a simulator process.
    fn failure(self) -> Option<Failure> {
        match self {
            Fault::Fail500 => Some(Failure::Error),
            Fault::Hang => Some(Failure::NeverAnswers),
            Fault::BigMetrics => Some(Failure::BigMetrics),
            Fault::Kill | Fault::Stop | Fault::Adversarial | Fault::Swaps | Fault::TrapModule => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Host {
    Prefixgate,
    Envoy,
}

impl Host {
    fn label(self) -> &'static str {
        match self {
            Host::Prefixgate => "prefixgate",
            Host::Envoy => "Envoy + filter",
        }
    }
}

/// The replicas of one phase: simulator processes and at most one failing replica.
struct Fleet {
    sims: Vec<SimProcess>,
    _failing: Option<FailingReplica>,
    /// Every replica's address; the faulty one is `addrs[0]`.
    addrs: Vec<SocketAddr>,
}

impl Fleet {
    async fn start(options: &Options, fault: Fault) -> Result<Self> {
        let failure = fault.failure();
        let mut sims = Vec::new();
        for _ in 0..REPLICAS - usize::from(failure.is_some()) {
            sims.push(SimProcess::start(&options.vllm_sim, options.time_scale).await?);
        }
        let (mut failing, mut addrs) = (None, Vec::new());
        if let Some(failure) = failure {
            let f = FailingReplica::start_failing(failure).await.context("start the failing replica")?;
            addrs.push(f.addr);
            failing = Some(f);
        }
        addrs.extend(sims.iter().map(SimProcess::addr));
        Ok(Self { sims, _failing: failing, addrs })
    }
}

/// The proxy of one phase.
enum Running {
    Prefixgate(PrefixgateProcess),
    Envoy(Envoy),
}

/// The proxy of one phase and the plugin configuration it started with.
pub struct Proxy {
    running: Running,
    plugin_config: String,
    /// The `prefixgate` binary whose `check` passes a module before it is
    /// rolled out to Envoy (which applies whatever it is served).
    checker: PathBuf,
}

impl Proxy {
    async fn start(
        host: Host,
        fault: Fault,
        options: &Options,
        addrs: &[SocketAddr],
        toml: &Path,
    ) -> Result<Self> {
        let config = plugin_config("prefix_aware", addrs, options.scrape_ms, &[]);
        let running = match host {
            Host::Prefixgate => {
                let toml = toml.to_string_lossy().into_owned();
                Running::Prefixgate(
                    PrefixgateProcess::start_with_args(
                        &options.prefixgate,
                        addrs,
                        &config,
                        &["--config", &toml],
                    )
                    .await
                    .context("start prefixgate")?,
                )
            }
            Host::Envoy => {
                // Swaps go through ECDS, as `envoy/envoy-ecds.yaml` runs it.
                let mode = if matches!(fault, Fault::Swaps | Fault::TrapModule) {
                    EnvoyMode::Ecds(config.clone())
                } else {
                    EnvoyMode::Filter(config.clone())
                };
                // prefixgate's first-byte timeout. Envoy's stream idle timer
                // also runs while a try waits for its headers, so it must
                // outlast the first try and the retry's headers: a stream
                // idle timeout equal to the first-byte one ended requests a
                // hung replica held before their retry.
                let timeouts = UpstreamTimeouts::new(
                    UpstreamTimeouts::default().connect(),
                    Duration::from_secs(5),
                    Duration::from_secs(11),
                )?;
                let envoy = Envoy::start_with(addrs, mode, 2, Some(timeouts));
                Running::Envoy(envoy.await.context("start Envoy")?)
            }
        };
        Ok(Self { running, plugin_config: config, checker: options.prefixgate.clone() })
    }

    fn base_url(&self) -> &str {
        match &self.running {
            Running::Prefixgate(p) => p.base_url(),
            Running::Envoy(e) => e.base_url(),
        }
    }

    fn pid(&self) -> Option<u32> {
        match &self.running {
            Running::Prefixgate(p) => p.pid(),
            Running::Envoy(e) => e.pid(),
        }
    }

    /// The plugin configuration the proxy started with.
    pub fn plugin_config(&self) -> &str {
        &self.plugin_config
    }

    /// The URL whose text holds the filter's counters.
    fn counters_url(&self) -> String {
        match &self.running {
            Running::Prefixgate(p) => format!("{}/metrics", p.admin_url()),
            Running::Envoy(e) => format!("{}/stats?filter=prefixgate_", e.admin_url()),
        }
    }

    /// Filter traps so far (prefixgate's `prefixgate_filter_traps_total`;
    /// `None` for Envoy, which counts none).
    async fn traps(&self, http: &reqwest::Client) -> Option<f64> {
        let Running::Prefixgate(p) = &self.running else { return None };
        let text = http.get(format!("{}/metrics", p.admin_url())).send().await.ok()?.text().await.ok()?;
        Some(counter(&text, "prefixgate_filter_traps_total"))
    }

    /// The sha256 of the module prefixgate runs (`None` for Envoy).
    async fn module_sha256(&self, http: &reqwest::Client) -> Option<String> {
        let Running::Prefixgate(p) = &self.running else { return None };
        let text =
            http.get(format!("{}/admin/status", p.admin_url())).send().await.ok()?.text().await.ok()?;
        let status: serde_json::Value = serde_json::from_str(&text).ok()?;
        status["module"]["sha256"].as_str().map(str::to_owned)
    }

    /// `PUT` of `body` on prefixgate's admin `route`: the answer's status and
    /// first line.
    async fn admin_put(
        p: &PrefixgateProcess,
        http: &reqwest::Client,
        route: &str,
        body: Vec<u8>,
    ) -> Result<(u16, String)> {
        let url = format!("{}{route}", p.admin_url());
        let reply = http
            .put(&url)
            .body(body)
            .timeout(ROLLOUT_LIMIT)
            .send()
            .await
            .with_context(|| format!("PUT {url}"))?;
        let status = reply.status().as_u16();
        let text = reply.text().await.unwrap_or_default();
        Ok((status, text.lines().next().unwrap_or_default().chars().take(200).collect()))
    }

    /// Rolls out plugin configuration `config`; an error when it is not applied.
    pub async fn swap_config(&mut self, http: &reqwest::Client, config: &str) -> Result<()> {
        match &mut self.running {
            Running::Prefixgate(p) => {
                let (status, text) =
                    Self::admin_put(p, http, "/admin/config", config.as_bytes().to_vec()).await?;
                if status != 200 {
                    bail!("PUT /admin/config: {status} {text}");
                }
            }
            Running::Envoy(e) => {
                let before = e.ecds_counts().await?;
                e.ecds_swap(config)?;
                if !e.ecds_outcome(before, ROLLOUT_LIMIT).await? {
                    bail!("Envoy refused the ECDS rollout (config_fail)");
                }
            }
        }
        Ok(())
    }

    /// Rolls out the module `wasm` (with plugin configuration `config`, for
    /// ECDS); an error when it is not applied.
    pub async fn swap_module(&mut self, http: &reqwest::Client, wasm: &Path, config: &str) -> Result<()> {
        match self.try_swap_module(http, wasm, config).await? {
            Ok(()) => Ok(()),
            Err(refusal) => bail!("{refusal}"),
        }
    }

    /// Rolls out the module `wasm`: `Ok(Err(why))` when the host refused it.
    async fn try_swap_module(
        &mut self,
        http: &reqwest::Client,
        wasm: &Path,
        config: &str,
    ) -> Result<Result<(), String>> {
        match &mut self.running {
            Running::Prefixgate(p) => {
                let bytes = std::fs::read(wasm).with_context(|| format!("read {}", wasm.display()))?;
                let (status, text) = Self::admin_put(p, http, "/admin/module", bytes).await?;
                Ok(if status == 200 { Ok(()) } else { Err(format!("PUT /admin/module: {status} {text}")) })
            }
            Running::Envoy(e) => {
                // A rollout to Envoy checks the module first, as
                // `cargo xtask envoy-swap` does.
                let (checker, module, plugin) = (self.checker.clone(), wasm.to_path_buf(), config.to_owned());
                let checked = tokio::task::spawn_blocking(move || check_filter(&checker, &module, &plugin))
                    .await
                    .context("the module check panicked")?;
                if let Err(refused) = checked {
                    return Ok(Err(format!("not rolled out: {refused}")));
                }
                let before = e.ecds_counts().await?;
                e.ecds_swap_module(wasm, config)?;
                Ok(if e.ecds_outcome(before, ROLLOUT_LIMIT).await? {
                    Ok(())
                } else {
                    Err("Envoy refused the ECDS rollout (config_fail)".to_owned())
                })
            }
        }
    }
}

/// Sums every counter line naming `name`, Prometheus (`name{..} 3`) or
/// Envoy (`prefix.name: 3`) style.
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// The filter's ejection and failed-scrape counters, summed.
async fn skip_counters(http: &reqwest::Client, url: &str) -> Option<(f64, f64)> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    Some((
        counter(&text, "prefixgate_backend_ejections_total"),
        counter(&text, "prefixgate_backend_scrape_failures_total"),
    ))
}

/// What one streamed request did.
#[derive(Clone, Debug)]
struct Outcome {
    started: Instant,
    ok: bool,
    /// Failed before any response byte reached the client: a transport
    /// error, or a 502/503/504 the proxy made because it had no answer.
    failed_unanswered: bool,
    /// Longest wait for the headers or between two body chunks.
    longest_stall: Duration,
    /// The answer carried the filter's decision header (a request the host
    /// routed by its fallback, after a trap, carries none).
    by_filter: bool,
}

/// Streams one chat completion and times it.
async fn one_request(http: &reqwest::Client, url: &str, body: String, stall: Duration) -> Outcome {
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    let fail = |unanswered: bool, longest: Duration| Outcome {
        started,
        ok: false,
        failed_unanswered: unanswered,
        longest_stall: longest,
        by_filter: false,
    };
    let send = http.post(url).header("content-type", "application/json").body(body).send();
    let response = match tokio::time::timeout(stall, send).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => return fail(true, started.elapsed()),
        Err(_) => return fail(true, stall),
    };
    longest = longest.max(started.elapsed());
    let status = response.status().as_u16();
    let by_filter = response
        .headers()
        .get("x-prefixgate-decision")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|d| d.starts_with("policy="));
    let mut stream = response.bytes_stream();
    let mut text: Vec<u8> = Vec::new();
    let mut last = Instant::now();
    let mut any_byte = false;
    loop {
        match tokio::time::timeout(stall, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                longest = longest.max(last.elapsed());
                last = Instant::now();
                any_byte |= !chunk.is_empty();
                if text.len() < MAX_KEPT_BYTES {
                    text.extend_from_slice(&chunk);
                }
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return fail(!any_byte && status != 200, longest.max(last.elapsed())),
            Err(_) => return fail(!any_byte && status != 200, stall.max(longest)),
        }
    }
    let text = String::from_utf8_lossy(&text);
    let ok = status == 200 && text.contains("data: [DONE]") && !text.contains("data: {\"error\"");
    Outcome {
        started,
        ok,
        failed_unanswered: !ok && matches!(status, 502..=504),
        longest_stall: longest,
        by_filter,
    }
}

/// What a swap to the trapping module got.
#[derive(Debug)]
struct TrapSwap {
    /// The host's answer: applied, or refused and why.
    answer: Result<(), String>,
    /// When the answer came.
    at: Instant,
    /// prefixgate: whether the module it runs at the end is the one it
    /// started with (`None` for Envoy, which does not say).
    restored: Option<bool>,
    /// Of the requests started [`TRAP_GRACE`] after the answer: not served
    /// by the old module (failed, or routed by the host's fallback), and all.
    after_grace: (usize, usize),
}

/// What a fault did beyond the load's outcomes.
#[derive(Debug)]
enum Extra {
    None,
    Attack(AttackReport),
    Swaps(SwapReport),
    Trap(TrapSwap),
}

/// One row of the table.
struct Row {
    fault: Fault,
    host: Host,
    requests: usize,
    failed: usize,
    failed_unanswered: usize,
    /// Failed and requests started after the faulty replica was first
    /// skipped; `None` when it never was (or no replica is faulty).
    after_skip: Option<(usize, usize)>,
    longest_stall: Duration,
    idle_load: Option<u64>,
    rss_peak_kib: Option<u64>,
    /// Filter traps during the phase (prefixgate only).
    traps: Option<f64>,
    extra: Extra,
}

/// VmHWM of `pid`, KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `key=` field of an `x-prefixgate-decision` value.
fn decision_field<'a>(decision: &'a str, key: &str) -> Option<&'a str> {
    decision.split(';').find_map(|p| p.trim().strip_prefix(key)?.strip_prefix('='))
}

/// What the idle probes read: the highest `load=`, and how many probes
/// carried a decision and how many of those matched the prefix index.
#[derive(Debug, Default)]
struct Probes {
    load: Option<u64>,
    decided: usize,
    matched: usize,
}

/// One request per prefix group, sent one after another once the load has
/// stopped, each two scrape intervals after the one before it, so that the
/// replicas' last scrape saw none of them running and the `load=` a probe
/// reads is the router's in-flight count alone.
async fn idle_probes(http: &reqwest::Client, base_url: &str, prefixes: &[String], scrape_ms: u64) -> Probes {
    let mut probes = Probes::default();
    for (g, p) in prefixes.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(2 * scrape_ms)).await;
        let body = serde_json::json!({"prompt": format!("{p} idle probe {g}"), "max_tokens": 1});
        let reply = http
            .post(format!("{base_url}/v1/completions"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(reply) = reply else { continue };
        let Some(decision) = reply.headers().get("x-prefixgate-decision").and_then(|v| v.to_str().ok())
        else {
            continue;
        };
        probes.decided += 1;
        if decision_field(decision, "reason") == Some("prefix_match") {
            probes.matched += 1;
        }
        if let Some(load) = decision_field(decision, "load").and_then(|l| l.parse::<u64>().ok()) {
            probes.load = Some(probes.load.map_or(load, |l| l.max(load)));
        }
    }
    probes
}

async fn run_phase(
    options: &Options,
    fault: Fault,
    host: Host,
    toml: &Path,
    modules: &Modules,
) -> Result<Row> {
    let fleet = Fleet::start(options, fault).await?;
    let mut proxy = Proxy::start(host, fault, options, &fleet.addrs, toml).await?;
    let stall = Duration::from_secs_f64(options.client_stall_s);
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(stall * 3)
        .build()
        .context("build the HTTP client")?;
    let url = format!("{}/v1/chat/completions", proxy.base_url());
    let prefixes: Arc<Vec<String>> = Arc::new(
        (0..PREFIX_GROUPS).map(|g| prompt(&format!("soak-group-{g}"), options.prompt_chars)).collect(),
    );
    let fault_for = Duration::from_secs_f64(options.seconds_per_fault);
    let recovery = Duration::from_secs_f64(options.recovery_s);
    let warm_up = if fault.failure().is_some() { Duration::ZERO } else { WARM_UP };
    let start = Instant::now();
    // Every loop of the phase stops by then, whatever happens.
    let hard_stop = start + PHASE_LIMIT;
    let stop = Arc::new(AtomicBool::new(false));
    let traps_before = proxy.traps(&http).await;
    let sha_before = proxy.module_sha256(&http).await;

    // The load, until `stop`.
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..options.clients as usize {
        let (http, url, prefixes, stop) = (http.clone(), url.clone(), prefixes.clone(), stop.clone());
        let max_tokens = options.max_tokens;
        clients.spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..MAX_REQUESTS_PER_CLIENT {
                if stop.load(Ordering::Relaxed) || Instant::now() >= hard_stop {
                    break;
                }
                let group = (c * 7 + i) % prefixes.len();
                let body = serde_json::json!({
                    "messages": [{"role": "user", "content": format!("{} client {c} turn {i}", prefixes[group])}],
                    "max_tokens": max_tokens,
                    "ignore_eos": true,
                    "stream": true,
                });
                outcomes.push(one_request(&http, &url, body.to_string(), stall).await);
            }
            outcomes
        });
    }

    // The watcher: when the filter first skips the faulty replica (its
    // ejection counter moves, or enough scrapes failed to mark it unhealthy).
    let counters_url = proxy.counters_url();
    let watch_http = http.clone();
    let watch_stop = stop.clone();
    let inject_at = start + warm_up;
    let watched = fault.has_faulty_replica();
    let watcher = tokio::spawn(async move {
        if !watched {
            return None;
        }
        tokio::time::sleep_until(inject_at.into()).await;
        let base = skip_counters(&watch_http, &counters_url).await.unwrap_or((0.0, 0.0));
        // Bounded: one poll per 100 ms until the load stops.
        while !watch_stop.load(Ordering::Relaxed) && Instant::now() < hard_stop {
            if let Some((ejections, failed_scrapes)) = skip_counters(&watch_http, &counters_url).await {
                if ejections > base.0 || failed_scrapes >= base.1 + UNHEALTHY_AFTER {
                    return Some(Instant::now());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    });

    // The fault.
    tokio::time::sleep_until(inject_at.into()).await;
    let mut fleet = fleet;
    let mut extra = Extra::None;
    match fault {
        Fault::Kill => {
            let sim = fleet.sims.first_mut().context("no replica to kill")?;
            sim.kill().await.context("kill -9 the replica")?;
        }
        Fault::Stop => {
            fleet.sims.first().context("no replica to stop")?.signal(Signal::Stop).await?;
            tokio::time::sleep(fault_for).await;
            fleet.sims.first().context("no replica to continue")?.signal(Signal::Continue).await?;
        }
        Fault::Fail500 | Fault::Hang | Fault::BigMetrics => {}
        Fault::Adversarial => extra = Extra::Attack(attack::attack(&http, proxy.base_url(), fault_for).await),
        Fault::Swaps => {
            let report = swaps::run(
                &mut proxy,
                &http,
                modules,
                &fleet.addrs,
                options.scrape_ms,
                options.config_swaps,
                options.module_swaps,
                fault_for,
            )
            .await?;
            extra = Extra::Swaps(report);
        }
        Fault::TrapModule => {
            let trap = modules.trap.clone().context("the trap-module fault needs --trap-module")?;
            let config = proxy.plugin_config().to_owned();
            let answer = proxy.try_swap_module(&http, &trap, &config).await?;
            extra = Extra::Trap(TrapSwap { answer, at: Instant::now(), restored: None, after_grace: (0, 0) });
        }
    }
    let fault_end = (inject_at + fault_for).max(Instant::now());
    tokio::time::sleep_until((fault_end + recovery).into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    while let Some(joined) = clients.join_next().await {
        outcomes.extend(joined.context("a load client panicked")?);
    }
    let skipped_at = watcher.await.ok().flatten();

    // After the swaps, one more module swap with no load running: the idle
    // probes then show whether the prefix index survived it.
    if let Extra::Swaps(report) = &mut extra {
        let wasm = modules.variant(options.module_swaps + 1)?;
        let config = swaps::swap_config(&fleet.addrs, options.scrape_ms, options.config_swaps);
        if let Err(e) = proxy.swap_module(&http, &wasm, &config).await {
            report.errors.push(format!("the module swap after the load: {e:#}"));
        }
    }
    let probes = idle_probes(&http, proxy.base_url(), &prefixes, options.scrape_ms).await;
    if let Extra::Swaps(report) = &mut extra {
        report.index_probes = (probes.matched, probes.decided);
    }
    if let Extra::Trap(trap) = &mut extra {
        let from = trap.at + TRAP_GRACE;
        let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.started >= from).collect();
        trap.after_grace = (after.iter().filter(|o| !(o.ok && o.by_filter)).count(), after.len());
        if let (Some(before), Some(now)) = (&sha_before, proxy.module_sha256(&http).await) {
            trap.restored = Some(*before == now);
        }
    }
    let traps = match (traps_before, proxy.traps(&http).await) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let rss_peak_kib = proxy.pid().and_then(vm_hwm_kib);
    drop(proxy);
    drop(fleet);

    let after_skip = skipped_at.map(|at| {
        let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.started >= at).collect();
        (after.iter().filter(|o| !o.ok).count(), after.len())
    });
    Ok(Row {
        fault,
        host,
        requests: outcomes.len(),
        failed: outcomes.iter().filter(|o| !o.ok).count(),
        failed_unanswered: outcomes.iter().filter(|o| o.failed_unanswered).count(),
        after_skip,
        longest_stall: outcomes.iter().map(|o| o.longest_stall).max().unwrap_or_default(),
        idle_load: probes.load,
        rss_peak_kib,
        traps,
        extra,
    })
}

/// Percent of `part` in `whole` (0 of nothing is 0).
fn pct(part: usize, whole: usize) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

/// The bounds a row breaks, as sentences; what is reported but not
/// enforced goes to `notes`.
fn check(options: &Options, row: &Row, broken: &mut Vec<String>, notes: &mut Vec<String>) {
    let what = format!("{} / {}", row.fault.label(options), row.host.label());
    let max_pct = options.max_failed_after_ejection_pct;
    if row.failed_unanswered > 0 {
        let sentence = format!(
            "{what}: {} requests failed before any response byte while healthy replicas were left",
            row.failed_unanswered
        );
        // A retry on another replica must save these from a faulty one.
        broken.push(sentence);
    }
    match row.after_skip {
        Some((failed, total)) => {
            if pct(failed, total) > max_pct {
                broken.push(format!(
                    "{what}: {failed} of {total} requests started after the faulty replica was skipped failed ({:.1} % > {max_pct} %)",
                    pct(failed, total)
                ));
            }
        }
        None => {
            // Never skipped, or nothing to skip: every failure counts against the same bound.
            if pct(row.failed, row.requests) > max_pct {
                let why = if row.fault.has_faulty_replica() {
                    "the faulty replica was never skipped and"
                } else {
                    "no replica was faulty and"
                };
                broken.push(format!(
                    "{what}: {why} {} of {} requests failed ({:.1} % > {max_pct} %)",
                    row.failed,
                    row.requests,
                    pct(row.failed, row.requests)
                ));
            }
        }
    }
    match row.idle_load {
        Some(0) => {}
        Some(load) => {
            broken.push(format!("{what}: idle in-flight load {load} after the load stopped (must be 0)"))
        }
        None => broken.push(format!("{what}: no idle probe carried a routing decision")),
    }
    match row.rss_peak_kib {
        Some(kib) if kib <= options.rss_cap_mib * 1024 => {}
        Some(kib) => broken.push(format!(
            "{what}: RSS peak {} MiB over the cap of {} MiB",
            kib / 1024,
            options.rss_cap_mib
        )),
        None => broken.push(format!("{what}: no RSS reading for the proxy")),
    }
    if let Some(traps) = row.traps.filter(|t| *t > 0.0) {
        notes.push(format!("{what}: the filter trapped {traps} times"));
    }
    match &row.extra {
        Extra::None => {}
        Extra::Attack(attack) => {
            notes.push(format!(
                "{what}: {} adversarial bodies sent; answers {}",
                attack.sent,
                attack.statuses()
            ));
            if attack.dropped > 0 {
                broken.push(format!(
                    "{what}: {} of {} adversarial bodies dropped by the proxy (a transport error, 413 or 5xx)",
                    attack.dropped, attack.sent
                ));
            }
        }
        Extra::Swaps(swaps) => {
            let ((c_ok, c), (m_ok, m)) = (swaps.config, swaps.module);
            notes.push(format!(
                "{what}: {c_ok} of {c} configuration and {m_ok} of {m} module swaps applied in {:.1} s; after one more module swap with no load, {} of {} idle probes matched the prefix index",
                swaps.took.as_secs_f64(),
                swaps.index_probes.0,
                swaps.index_probes.1
            ));
            if c_ok < c || m_ok < m || !swaps.errors.is_empty() {
                broken.push(format!("{what}: not every swap was applied: {}", swaps.errors.join("; ")));
            }
            if swaps.index_probes.1 == 0 || swaps.index_probes.0 < swaps.index_probes.1 {
                broken.push(format!(
                    "{what}: the prefix index did not survive the swaps ({} of {} idle probes matched)",
                    swaps.index_probes.0, swaps.index_probes.1
                ));
            }
        }
        Extra::Trap(trap) => {
            let answer = match &trap.answer {
                Ok(()) => "applied".to_owned(),
                Err(why) => format!("refused ({why})"),
            };
            let (bad, total) = trap.after_grace;
            notes.push(format!(
                "{what}: the swap was {answer}; {bad} of {total} requests started {} s after it were not served by the old module{}",
                TRAP_GRACE.as_secs(),
                match trap.restored {
                    Some(true) => "; the old module runs at the end",
                    Some(false) => "; the trapping module still runs at the end",
                    None => "",
                }
            ));
            if total == 0 || pct(bad, total) > max_pct {
                broken.push(format!(
                    "{what}: the swap to a trapping module was neither refused nor rolled back: {bad} of {total} requests started {} s after it were failed or routed by the host's fallback",
                    TRAP_GRACE.as_secs()
                ));
            }
            if trap.restored == Some(false) {
                broken.push(format!("{what}: the trapping module still runs at the end"));
            }
        }
    }
}

fn print_table(options: &Options, rows: &[Row]) {
    println!("| fault | host | requests | failed | failed before any byte | failed after ejection | longest stall (ms) | idle in-flight after | RSS peak (MiB) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let after = match r.after_skip {
            Some((failed, total)) => format!("{failed} of {total}"),
            None if r.fault.has_faulty_replica() => "never skipped".to_owned(),
            None => "no faulty replica".to_owned(),
        };
        let idle = r.idle_load.map_or("-".to_owned(), |l| l.to_string());
        let rss = r.rss_peak_kib.map_or("-".to_owned(), |k| format!("{:.0}", k as f64 / 1024.0));
        println!(
            "| {} | {} | {} | {} | {} | {after} | {:.0} | {idle} | {rss} |",
            r.fault.label(options),
            r.host.label(),
            r.requests,
            r.failed,
            r.failed_unanswered,
            r.longest_stall.as_secs_f64() * 1_000.0
        );
    }
}

fn validate(options: &Options) -> Result<()> {
    for (flag, value) in
        [("--seconds-per-fault", options.seconds_per_fault), ("--client-stall-s", options.client_stall_s)]
    {
        if !(value > 0.0 && value <= 600.0) {
            bail!("{flag} must be in (0, 600], got {value}");
        }
    }
    if !(options.recovery_s >= 0.0 && options.recovery_s <= 600.0) {
        bail!("--recovery-s must be in [0, 600], got {}", options.recovery_s);
    }
    if !(options.time_scale > 0.0 && options.time_scale.is_finite()) {
        bail!("--time-scale must be a positive number, got {}", options.time_scale);
    }
    if !(10..=60_000).contains(&options.scrape_ms) {
        bail!("--scrape-ms must be in [10, 60000], got {}", options.scrape_ms);
    }
    if options.config_swaps + options.module_swaps == 0 && options.faults.contains(&Fault::Swaps) {
        bail!("the swaps fault needs --config-swaps or --module-swaps above 0");
    }
    if options.config_swaps > 10_000 || options.module_swaps > 1_000 {
        bail!("at most 10000 configuration and 1000 module swaps");
    }
    let mut files = vec![("--prefixgate", &options.prefixgate), ("--vllm-sim", &options.vllm_sim)];
    match &options.trap_module {
        Some(trap) => files.push(("--trap-module", trap)),
        None if options.faults.contains(&Fault::TrapModule) => {
            bail!("the trap-module fault needs --trap-module (`cargo xtask soak` builds it)")
        }
        None => {}
    }
    for (flag, path) in files {
        if !path.is_file() {
            bail!("{flag} {} is not a file", path.display());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = Options::parse();
    validate(&options)?;
    let hosts: &[Host] = match options.host {
        HostChoice::Prefixgate => &[Host::Prefixgate],
        HostChoice::Envoy => &[Host::Envoy],
        HostChoice::Both => &[Host::Prefixgate, Host::Envoy],
    };
    let dir = std::env::temp_dir().join(format!("prefixgate-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let toml = dir.join("prefixgate.toml");
    std::fs::write(&toml, PREFIXGATE_TOML).with_context(|| format!("write {}", toml.display()))?;
    let filter = prefixgate_launch::FILTER_MODULE
        .locate_or_build()
        .context("the filter module (for the module swaps)")?;
    let modules = Modules::new(&filter, options.trap_module.clone(), &dir)?;
    eprintln!(
        "soak: {REPLICAS} replicas, {} streaming clients, {} s per fault, {} tokens per stream, prefixgate with {}",
        options.clients,
        options.seconds_per_fault,
        options.max_tokens,
        PREFIXGATE_TOML.replace('\n', " ").trim()
    );
    let limit = Duration::from_secs(options.time_limit_s);
    let run = async {
        let mut rows = Vec::new();
        for &fault in &options.faults {
            for &host in hosts {
                let what = format!("{} through {}", fault.label(&options), host.label());
                eprintln!("soak: {what}");
                rows.push(run_phase(&options, fault, host, &toml, &modules).await.context(what)?);
            }
        }
        anyhow::Ok(rows)
    };
    let rows = tokio::time::timeout(limit, run).await;
    let _ = std::fs::remove_dir_all(&dir);
    let rows = rows.map_err(|_| anyhow::anyhow!("the soak ran over its time limit of {limit:?}"))??;
    print_table(&options, &rows);
    let (mut broken, mut notes) = (Vec::new(), Vec::new());
    for row in &rows {
        check(&options, row, &mut broken, &mut notes);
    }
    println!();
    println!("\"failed before any byte\": a transport error or a 502/503/504 the proxy answered; a replica's own 500 counts as failed, not here.");
    println!("\"failed after ejection\": requests started after the filter first skipped the faulty replica (its ejection counter moved, or {UNHEALTHY_AFTER} scrapes failed).");
    for note in &notes {
        println!("note: {note}");
    }
    for b in &broken {
        println!("BOUND BROKEN: {b}");
    }
    if !broken.is_empty() {
        std::process::exit(1);
    }
    println!("every bound held");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{decision_field, swaps};

    #[test]
    fn decision_fields_are_read_by_name() {
        let d = "policy=prefix_aware; reason=prefix_match; match=0.97; load=3";
        assert_eq!(decision_field(d, "reason"), Some("prefix_match"));
        assert_eq!(decision_field(d, "load"), Some("3"));
        assert_eq!(decision_field(d, "loa"), None);
    }

    #[test]
    fn module_swaps_are_spread_and_last() {
        let kinds = swaps::schedule(100, 20);
        assert_eq!(kinds.len(), 120);
        let modules: Vec<usize> =
            kinds.iter().enumerate().filter(|(_, k)| **k == swaps::Kind::Module).map(|(i, _)| i).collect();
        assert_eq!(modules.len(), 20);
        assert_eq!(modules.first(), Some(&5));
        assert_eq!(modules.last(), Some(&119));
        assert!(modules.windows(2).all(|w| w[1] - w[0] == 6), "{modules:?}");
        assert_eq!(swaps::schedule(3, 0), vec![swaps::Kind::Config; 3]);
    }
}
