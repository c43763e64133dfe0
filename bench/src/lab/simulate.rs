//! One lab run as a discrete-event simulation: client arrivals, routing decisions,
//! scrapes, engine steps and token streams are events on one simulated clock, taken in
//! time order (ties in the order they were scheduled), so a run is deterministic and
//! takes no longer than its computation.
//!
//! What each side sees is what it sees in production:
//! - the client sends the same requests as `prefixgate-bench run` (the same bodies, the
//!   same arrivals and concurrency limit) and times them as the driver does;
//! - each router is the filter's own [`Router`] over its own in-memory store, fed the
//!   prompt that the filter extracts from the request body; its in-flight counts are
//!   exact, its scraped load is refreshed every `scrape_interval_ms` of simulated time;
//! - each replica is a `vllm-sim` engine that admits requests as the `vllm-sim` server
//!   does ([`Admission`]) and steps on the simulated clock.
//!
//! The proxy and the network cost nothing here: a request reaches its replica the
//! instant it is sent, and tokens reach the client the instant a step ends.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use prefixgate_filter::config::ConfigError;
use prefixgate_filter::prompt::extract_prompt;
use prefixgate_filter::store::MemoryStore;
use prefixgate_filter::vllm_metrics::VllmLoad;
use prefixgate_filter::{fleet, FilterConfig, Router};
use vllm_sim::admission::{prompt_hash, Admission};
use vllm_sim::block_hash::extend_block_hashes;
use vllm_sim::engine::{EngineConfig, EngineCore, RequestEvent, StepPlan};
use vllm_sim::exposition::{self, ExpositionInfo};
use vllm_sim::openai::Endpoint;
use vllm_sim::replica::SharedResources;
use vllm_sim::request::RequestId;
use vllm_sim::{SimConfig, SimError};

use super::prompt_memo::{owned, PromptMemo};
use super::scorecard::ScorecardTracker;
use crate::load::client::{request_body, Api, BenchRequest, ClientSettings};
use crate::load::run::{Arrivals, RunArgs};
use crate::load::stats::{RequestOutcome, Scorecard};
use crate::load::vllm_side::{compare, without_buckets, MetricsSnapshot, NotAnExposition, VllmSide};

/// Why a lab run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The plugin configuration (with the simulated backends) is not valid.
    #[error("plugin configuration")]
    PluginConfig(#[source] ConfigError),
    /// The plugin configuration is not a JSON object.
    #[error("plugin configuration: not a JSON object")]
    NotAnObject,
    /// The fleet's configuration is not valid.
    #[error("simulated fleet")]
    Fleet(#[source] SimError),
    /// More replicas than the filter routes to.
    #[error("{replicas} replicas: the filter routes to at most {max}")]
    TooManyReplicas {
        /// Replicas asked for.
        replicas: usize,
        /// The filter's limit.
        max: usize,
    },
    /// The warm-up request failed (as `run`, the lab then stops).
    #[error("warm-up request failed: {0:?}")]
    WarmUp(Option<String>),
    /// No request was given.
    #[error("no request to send")]
    NoRequests,
    /// A simulated replica's `/metrics` page did not parse (a simulator bug).
    #[error("a simulated replica's /metrics does not parse")]
    Metrics(#[source] NotAnExposition),
}

/// Everything one lab run needs.
#[derive(Debug, Clone)]
pub struct LabSpec<'a> {
    /// The workload flags: API, streaming, `ignore_eos`, rate, concurrency, seed, warm-up.
    pub args: &'a RunArgs,
    /// The requests, in send order (from [`crate::load::run::build_requests`]).
    pub requests: &'a [BenchRequest],
    /// Every replica's configuration.
    pub sim: &'a SimConfig,
    /// Number of replicas.
    pub replicas: usize,
    /// The plugin configuration JSON; its `backends` are replaced by the simulated
    /// replicas, and a missing `seed` is set from the run's seed.
    pub plugin_config: &'a serde_json::Value,
    /// Independent routers in front of the fleet; request `i` goes to router `i mod K`.
    pub routers: usize,
}

/// What a lab run measured, in the shapes `run` reports.
#[derive(Debug, Clone)]
pub struct LabResult {
    /// Per request, in send order, times in simulated seconds.
    pub outcomes: Vec<RequestOutcome>,
    /// Simulated seconds from the first request to the last response.
    pub duration: f64,
    /// The replicas' `/metrics` deltas over the run.
    pub vllm: VllmSide,
    /// Reuse bound, captured and delivered shares.
    pub scorecard: Scorecard,
    /// Engine steps simulated.
    pub steps: u64,
    /// The filter configuration the routers ran (the simulated replicas as
    /// backends, the seed filled in).
    pub config: FilterConfig,
}

/// The address of simulated replica `i` as the filter's configuration lists it.
pub fn replica_address(i: usize) -> String {
    format!("10.0.{}.{}:8000", i / 250, i % 250 + 1)
}

/// An event time: simulated seconds, totally ordered.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Time(f64);

impl Eq for Time {}

impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Time {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The next request of the arrival process.
    Arrival,
    /// A replica may start a step.
    StepStart(usize),
    /// A replica's step ends and its tokens appear.
    StepEnd(usize),
    /// A router scrapes every replica.
    Scrape(usize),
}

/// The event queue: earliest first, then in scheduling order.
#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<std::cmp::Reverse<(Time, u64, Event)>>,
    seq: u64,
    /// Queued events other than scrapes: with none left, nothing can happen any more.
    work: usize,
}

impl Queue {
    fn push(&mut self, at: f64, event: Event) {
        self.seq += 1;
        self.work += usize::from(!matches!(event, Event::Scrape(_)));
        self.heap.push(std::cmp::Reverse((Time(at), self.seq, event)));
    }

    /// The next event, or `None` when only scrapes are left.
    fn pop(&mut self) -> Option<(f64, Event)> {
        if self.work == 0 {
            return None;
        }
        let (t, event) = self.heap.pop().map(|std::cmp::Reverse((t, _, e))| (t.0, e))?;
        self.work -= usize::from(!matches!(event, Event::Scrape(_)));
        Some((t, event))
    }
}

/// One simulated replica.
struct Replica {
    core: EngineCore,
    /// End of the last step (or the start of a step that found nothing to do).
    prev_end: f64,
    /// The pending `StepStart` event's time; other `StepStart`s are stale.
    wake_at: Option<f64>,
    /// The step in progress.
    step: Option<StepPlan>,
    address: String,
}

/// One router and its shared data.
struct RouterInstance {
    router: Router,
    store: MemoryStore,
    /// The root context's generator, which seeds each request's.
    rng: fastrand::Rng,
}

/// A request between its start and its last token.
struct Live {
    replica: usize,
    router: usize,
    start: f64,
    last_token: Option<f64>,
    outcome: RequestOutcome,
}

struct Lab<'a> {
    spec: &'a LabSpec<'a>,
    /// Per-prompt results, shared with the invocation's other runs.
    memo: &'a mut PromptMemo,
    settings: ClientSettings,
    path: &'static str,
    endpoint: Endpoint,
    shared: SharedResources,
    served_names: Vec<String>,
    max_prompt_chars: usize,
    scrape_interval_ms: u64,
    queue: Queue,
    replicas: Vec<Replica>,
    routers: Vec<RouterInstance>,
    live: Vec<Option<Live>>,
    /// Requests: the run's, then the warm-up if any.
    requests: Vec<BenchRequest>,
    outcomes: Vec<Option<RequestOutcome>>,
    waiting: VecDeque<usize>,
    in_flight: usize,
    max_concurrency: usize,
    arrivals: Arrivals,
    next_arrival: usize,
    /// Simulated time the measured run starts (after the warm-up).
    t0: f64,
    warm_up: Option<usize>,
    done: usize,
    last_finish: f64,
    scorecard: ScorecardTracker,
    events: Vec<(RequestId, RequestEvent)>,
    steps: u64,
    warm_up_error: Option<Option<String>>,
}

/// Runs one lab run.
pub fn simulate(spec: &LabSpec<'_>) -> Result<LabResult, LabError> {
    simulate_with(spec, &mut PromptMemo::new())
}

/// Runs one lab run, taking per-prompt results from `memo` and adding to it; the runs
/// sharing a memo must share the workload, the fleet and the run flags (see
/// [`PromptMemo`]).
pub fn simulate_with(spec: &LabSpec<'_>, memo: &mut PromptMemo) -> Result<LabResult, LabError> {
    if spec.requests.is_empty() {
        return Err(LabError::NoRequests);
    }
    let max = prefixgate_filter::config::MAX_BACKENDS;
    if spec.replicas == 0 || spec.replicas > max {
        return Err(LabError::TooManyReplicas { replicas: spec.replicas, max });
    }
    let config = filter_config(spec)?;
    let shared = SharedResources::load(spec.sim.clone()).map_err(LabError::Fleet)?;
    let sim = &shared.config;
    let replicas = (0..spec.replicas)
        .map(|i| Replica {
            core: EngineCore::new(EngineConfig {
                limits: sim.limits,
                num_gpu_blocks: sim.num_gpu_blocks(),
                profile: sim.profile.clone(),
                vocab: Arc::clone(&shared.vocab),
                metrics_format: sim.metrics_format,
                max_model_len: sim.max_model_len(),
            }),
            prev_end: 0.0,
            wake_at: None,
            step: None,
            address: replica_address(i),
        })
        .collect();
    let seed = config.seed.unwrap_or(spec.args.seed);
    let routers = (0..spec.routers.max(1))
        .map(|r| {
            let store = MemoryStore::new();
            let router = Router::new(config.clone());
            router.on_configure(&store);
            RouterInstance { router, store, rng: fastrand::Rng::with_seed(seed.wrapping_add(r as u64)) }
        })
        .collect();
    let model =
        spec.args.model.clone().unwrap_or_else(|| sim.served_names().into_iter().next().unwrap_or_default());
    let (path, endpoint) = match spec.args.backend {
        Api::Completions => ("/v1/completions", Endpoint::Completions),
        Api::Chat => ("/v1/chat/completions", Endpoint::Chat),
    };
    let mut requests = spec.requests.to_vec();
    let warm_up = spec.args.with_warmup.then(|| {
        let first = &spec.requests[0];
        requests.push(BenchRequest { output_len: first.output_len.min(32), ..first.clone() });
        requests.len() - 1
    });
    let n = requests.len();
    let lab = Lab {
        settings: ClientSettings {
            model,
            api: spec.args.backend,
            stream: !spec.args.disable_stream,
            ignore_eos: !spec.args.disable_ignore_eos,
        },
        path,
        endpoint,
        max_prompt_chars: config.max_prompt_chars,
        scrape_interval_ms: config.scrape_interval_ms,
        queue: Queue::default(),
        replicas,
        routers,
        live: (0..n).map(|_| None).collect(),
        requests,
        outcomes: vec![None; spec.requests.len()],
        waiting: VecDeque::new(),
        in_flight: 0,
        max_concurrency: spec.args.max_concurrency.unwrap_or(usize::MAX).max(1),
        arrivals: Arrivals::new(spec.args),
        next_arrival: 0,
        t0: 0.0,
        warm_up,
        done: 0,
        last_finish: 0.0,
        scorecard: ScorecardTracker::new(),
        events: Vec::new(),
        steps: 0,
        warm_up_error: None,
        served_names: shared.config.served_names(),
        spec,
        memo,
        shared,
    };
    lab.run(config)
}

/// The filter's configuration: the given JSON with the simulated replicas as backends.
fn filter_config(spec: &LabSpec<'_>) -> Result<FilterConfig, LabError> {
    let mut json = spec.plugin_config.clone();
    let obj = json.as_object_mut().ok_or(LabError::NotAnObject)?;
    let backends: Vec<String> = (0..spec.replicas).map(replica_address).collect();
    obj.insert("backends".into(), backends.into());
    if obj.get("seed").is_none_or(serde_json::Value::is_null) {
        obj.insert("seed".into(), spec.args.seed.into());
    }
    let bytes = json.to_string();
    FilterConfig::from_json(bytes.as_bytes()).map_err(LabError::PluginConfig)
}

fn now_ms(t: f64) -> u64 {
    (t * 1000.0).max(0.0) as u64
}

impl Lab<'_> {
    /// Runs every event; `config` is the filter configuration the routers run.
    fn run(mut self, config: FilterConfig) -> Result<LabResult, LabError> {
        if self.scrape_interval_ms > 0 {
            let interval = self.scrape_interval_ms as f64 / 1000.0;
            let k = self.routers.len() as f64;
            for r in 0..self.routers.len() {
                // Independent routers tick out of phase.
                self.queue.push(interval * r as f64 / k, Event::Scrape(r));
            }
        }
        match self.warm_up {
            Some(w) => self.start(w, 0.0),
            None => self.queue.push(0.0, Event::Arrival),
        }
        while self.done < self.spec.requests.len() {
            let Some((t, event)) = self.queue.pop() else {
                break; // nothing left to happen (requests still open never end)
            };
            match event {
                Event::Arrival => self.arrival(t),
                Event::StepStart(i) => self.step_start(i, t),
                Event::StepEnd(i) => self.step_end(i, t),
                Event::Scrape(r) => self.scrape(r, t),
            }
            if let Some(error) = self.warm_up_error.take() {
                return Err(LabError::WarmUp(error));
            }
        }
        let vllm = self.vllm_side()?;
        let outcomes: Vec<RequestOutcome> =
            self.outcomes.into_iter().map(Option::unwrap_or_default).collect();
        Ok(LabResult {
            outcomes,
            duration: (self.last_finish - self.t0).max(0.0),
            vllm,
            scorecard: self.scorecard.scorecard(),
            steps: self.steps,
            config,
        })
    }

    fn arrival(&mut self, t: f64) {
        let i = self.next_arrival;
        self.next_arrival += 1;
        if self.in_flight < self.max_concurrency {
            self.start(i, t);
        } else {
            self.waiting.push_back(i);
        }
        if self.next_arrival < self.spec.requests.len() {
            let gap = self.arrivals.next_gap();
            self.queue.push(t + gap, Event::Arrival);
        }
    }

    /// The client sends request `i` at `t`: the router picks a replica, which admits it.
    fn start(&mut self, i: usize, t: f64) {
        self.in_flight += 1;
        let request = &self.requests[i];
        let mut outcome = RequestOutcome {
            prompt_len: request.prompt_len,
            output_len: request.output_len,
            start_s: t - self.t0,
            ..Default::default()
        };
        let memo = self.memo.entry(request, self.endpoint == Endpoint::Chat);
        let body = memo.body(request.output_len, || request_body(&self.settings, request));
        let path = self.path;
        let prompt = memo.extracted(self.max_prompt_chars, || {
            owned(extract_prompt(path, body.to_string().as_bytes(), self.max_prompt_chars))
        });
        let r = i % self.routers.len();
        outcome.router = (self.routers.len() > 1).then_some(r);
        let now = now_ms(t);
        let router = &mut self.routers[r];
        let mut rng = fastrand::Rng::with_seed(router.rng.u64(..));
        let decision = match router.router.route(&router.store, prompt, now, &mut rng) {
            Ok(d) => d,
            Err(e) => {
                outcome.error = Some(format!("HTTP {}: {e}", e.status()));
                self.end(i, t, outcome);
                return;
            }
        };
        let Some(replica) = self.replicas.iter().position(|x| x.address == decision.backend) else {
            outcome.error = Some(format!("the router chose `{}`, not a replica", decision.backend));
            self.end(i, t, outcome);
            return;
        };
        outcome.backend = Some(decision.backend.clone());
        outcome.decision = Some(decision.header_value());
        let sim = Arc::clone(&self.shared.config);
        let tokenizer = Arc::clone(&self.shared.tokenizer);
        let admission = Admission {
            served_names: &self.served_names,
            tokenizer: &tokenizer,
            max_model_len: sim.max_model_len(),
            seed: sim.seed,
        };
        let id = RequestId(i as u64);
        let memo = self.memo.entry(&self.requests[i], self.endpoint == Endpoint::Chat);
        let admitted = admission
            .prepare_with(&body, self.endpoint, |text, special| {
                // The engine appends at most `max_tokens` = `output_len` tokens.
                memo.ids(request.output_len as usize, || tokenizer.encode(text, special))
            })
            .map(|p| {
                let hash = memo.hash(|| prompt_hash(&p.prompt));
                admission.new_request_hashed(p, id, hash)
            });
        let new_request = match admitted {
            Ok(r) => r,
            Err(e) => {
                let router = &self.routers[r];
                router.router.record_outcome(&router.store, &decision.backend, e.status.as_u16(), now);
                router.router.finish(&router.store, &decision.backend);
                let text: String = e.to_json().chars().take(200).collect();
                outcome.error = Some(format!("HTTP {}: {text}", e.status));
                self.end(i, t, outcome);
                return;
            }
        };
        let block_size = sim.limits.block_size;
        let engine = &mut self.replicas[replica];
        let keys = memo.block_keys(engine.core.block_size(), new_request.cache_salt, || {
            let mut keys = Vec::new();
            extend_block_hashes(
                &mut keys,
                &new_request.prompt,
                engine.core.block_size(),
                new_request.cache_salt,
            );
            keys
        });
        engine.core.add_request_keyed(new_request, keys, t);
        memo.keep_body(body);
        if let Some(admitted) = engine.core.scheduler().get(id) {
            self.scorecard.routed(&admitted.block_hashes, admitted.prompt_len, block_size, replica);
        }
        self.live[i] = Some(Live { replica, router: r, start: t, last_token: None, outcome });
        self.wake(replica, t);
    }

    /// Schedules replica `i`'s next step, no earlier than `now`, if it is idle and has
    /// work sooner than planned.
    fn wake(&mut self, i: usize, now: f64) {
        let replica = &mut self.replicas[i];
        if replica.step.is_some() {
            return; // the step's end schedules the next one
        }
        let Some(start) = replica.core.next_step_start(replica.prev_end) else {
            return;
        };
        let start = start.max(now);
        if replica.wake_at.is_none_or(|w| start < w) {
            replica.wake_at = Some(start);
            self.queue.push(start, Event::StepStart(i));
        }
    }

    fn step_start(&mut self, i: usize, t: f64) {
        let replica = &mut self.replicas[i];
        if replica.wake_at != Some(t) || replica.step.is_some() {
            return; // superseded by an earlier wake-up
        }
        replica.wake_at = None;
        let mut events = std::mem::take(&mut self.events);
        let plan = replica.core.plan_step(t, &mut events);
        let idle = match plan {
            Some(plan) => {
                self.queue.push(plan.end(), Event::StepEnd(i));
                replica.step = Some(plan);
                false
            }
            None => {
                // Nothing runnable now: the next step waits for a request to reach the
                // engine (a later one, or one added meanwhile).
                replica.prev_end = t;
                replica.core.next_step_start(t).is_some_and(|s| s > t)
            }
        };
        self.dispatch(&mut events, t);
        self.events = events;
        if idle {
            self.wake(i, t);
        }
    }

    fn step_end(&mut self, i: usize, t: f64) {
        let replica = &mut self.replicas[i];
        let Some(plan) = replica.step.take() else {
            return;
        };
        let mut events = std::mem::take(&mut self.events);
        replica.core.complete_step(&plan, &mut events);
        replica.prev_end = plan.end();
        self.steps += 1;
        self.dispatch(&mut events, t);
        self.events = events;
        self.wake(i, t);
    }

    /// Delivers engine events at `t` to their clients (and routers).
    fn dispatch(&mut self, events: &mut Vec<(RequestId, RequestEvent)>, t: f64) {
        for (id, event) in events.drain(..) {
            let i = id.0 as usize;
            let Some(live) = self.live.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            match event {
                RequestEvent::Admitted { cached_tokens, .. } => {
                    // The replica's response headers: passive health sees a 200.
                    self.scorecard.delivered(cached_tokens);
                    live.outcome.cached_tokens = Some(cached_tokens as u64);
                    let router = &self.routers[live.router];
                    let backend = &self.replicas[live.replica].address;
                    router.router.record_outcome(&router.store, backend, 200, now_ms(t));
                }
                RequestEvent::Token { finish, .. } => {
                    match live.last_token {
                        None => live.outcome.ttft_s = t - live.start,
                        Some(prev) => live.outcome.itl_s.push(t - prev),
                    }
                    live.last_token = Some(t);
                    let Some(finished) = finish else {
                        continue;
                    };
                    let Some(mut live) = self.live[i].take() else {
                        continue;
                    };
                    let o = &mut live.outcome;
                    o.latency_s = t - live.start;
                    o.success = true;
                    if !self.settings.stream {
                        // One JSON body: no token is seen before the last; usage is reported.
                        o.ttft_s = o.latency_s;
                        o.itl_s.clear();
                        o.output_len = finished.completion_tokens as u64;
                    }
                    let router = &self.routers[live.router];
                    router.router.finish(&router.store, &self.replicas[live.replica].address);
                    self.end(i, t, live.outcome);
                }
            }
        }
    }

    /// Request `i` ended at `t`: its permit goes to the next waiting request.
    fn end(&mut self, i: usize, t: f64, outcome: RequestOutcome) {
        self.in_flight -= 1;
        if Some(i) == self.warm_up {
            if !outcome.success {
                self.warm_up_error = Some(outcome.error);
                return;
            }
            self.t0 = t;
            self.queue.push(t, Event::Arrival);
            return;
        }
        if let Some(slot) = self.outcomes.get_mut(i) {
            *slot = Some(outcome);
        }
        self.done += 1;
        self.last_finish = self.last_finish.max(t);
        if self.in_flight < self.max_concurrency {
            if let Some(next) = self.waiting.pop_front() {
                self.start(next, t);
            }
        }
    }

    /// Router `r` scrapes every replica's load, as its poller writes it to shared data.
    fn scrape(&mut self, r: usize, t: f64) {
        let sim = &self.shared.config;
        let router = &self.routers[r];
        for replica in &self.replicas {
            let m = replica.core.metrics();
            let load = VllmLoad {
                running: m.num_running as f64,
                waiting: m.num_waiting as f64,
                kv_cache_usage: Some(m.kv_usage),
                num_gpu_blocks: Some(sim.num_gpu_blocks() as u64),
                block_size: Some(sim.limits.block_size as u64),
            };
            fleet::record_scrape_success(&router.store, &replica.address, load, now_ms(t));
        }
        self.queue.push(t + self.scrape_interval_ms as f64 / 1000.0, Event::Scrape(r));
    }

    /// The replicas' `/metrics` at the end, read as `run` reads them (every counter
    /// started at zero, so the page is the delta).
    fn vllm_side(&self) -> Result<VllmSide, LabError> {
        let sim = &self.shared.config;
        let served = sim.served_names();
        let info = ExpositionInfo {
            format: sim.metrics_format,
            model_name: served.first().map_or("", String::as_str),
            block_size: sim.limits.block_size,
            num_gpu_blocks: sim.num_gpu_blocks(),
            enable_prefix_caching: sim.limits.enable_prefix_caching,
        };
        let urls: Vec<String> = self.replicas.iter().map(|r| format!("http://{}", r.address)).collect();
        let before = vec![MetricsSnapshot::default(); urls.len()];
        let after: Vec<MetricsSnapshot> = self
            .replicas
            .iter()
            .map(|r| {
                let page = exposition::render(r.core.metrics(), &info);
                let snapshot = MetricsSnapshot::parse(&without_buckets(&page));
                debug_assert_eq!(
                    snapshot.as_ref().ok(),
                    MetricsSnapshot::parse(&page).ok().as_ref(),
                    "the buckets mattered"
                );
                snapshot
            })
            .collect::<Result<_, _>>()
            .map_err(LabError::Metrics)?;
        Ok(compare(&urls, &before, &after))
    }
}
