//! The engine model: scheduler + KV cache + cost model + token generation, stepped on a model
//! clock given by the caller. No I/O and no clock of its own, so it runs the same under the
//! real-time driver ([`super::engine_thread`]) and in virtual time ([`super::calibrate`]).

use std::sync::Arc;

use super::block_hash::{extend_block_hashes, BlockHash};
use super::config::{EngineLimits, MetricsFormat};
use super::cost_model::{step_seconds, StepShape};
use super::metrics::EngineMetrics;
use super::profile::Profile;
use super::request::{FinishReason, NewRequest, RequestId, SimRequest};
use super::scheduler::{Scheduler, SchedulerOutput};
use super::text_gen::GenVocabulary;

/// What the engine needs to know.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Scheduler limits.
    pub limits: EngineLimits,
    /// KV blocks.
    pub num_gpu_blocks: usize,
    /// Cost model numbers.
    pub profile: Profile,
    /// Words for generated tokens.
    pub vocab: Arc<GenVocabulary>,
    /// Histogram buckets to keep.
    pub metrics_format: MetricsFormat,
    /// Upper bound of the token-count histograms.
    pub max_model_len: usize,
}

/// How a finished request ended, with its usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Finish reason.
    pub reason: FinishReason,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Prompt tokens found in the prefix cache at first admission.
    pub cached_tokens: usize,
}

/// Something that happened to one request, for its HTTP handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestEvent {
    /// First admitted to the running batch, with its prefix-cache hit.
    Admitted {
        /// Prompt tokens found in the prefix cache.
        cached_tokens: usize,
        /// Prompt tokens.
        prompt_tokens: usize,
    },
    /// One generated token; the last one carries how the request finished.
    Token {
        /// Text of the token.
        text: &'static str,
        /// Set on the final token.
        finish: Option<Finished>,
    },
}

/// A planned step, between `plan_step` and `complete_step`.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// Model time the step starts.
    pub start: f64,
    /// Its duration from the cost model.
    pub duration: f64,
    /// What it computes.
    pub output: SchedulerOutput,
}

impl StepPlan {
    /// Model time the step ends and its tokens appear.
    pub fn end(&self) -> f64 {
        self.start + self.duration
    }
}

/// One replica's engine.
#[derive(Debug)]
pub struct EngineCore {
    scheduler: Scheduler,
    profile: Profile,
    vocab: Arc<GenVocabulary>,
    metrics: EngineMetrics,
    block_size: usize,
    /// Model time at which the front end's serial server has worked off everything given to
    /// it so far (admissions and detokenization).
    frontend_free_at: f64,
    /// Total CPU work ever given to the front end, seconds.
    frontend_busy: f64,
    /// Start and end of the last step, for async scheduling's admission cut-off.
    last_step: Option<(f64, f64)>,
    async_scheduling: bool,
    /// Model time the gauges were last sampled at.
    gauges_sampled_at: f64,
}

impl EngineCore {
    /// An idle engine with an empty cache. Its scheduler's step budget is
    /// [`EngineLimits::step_token_budget`]: raised to `max_model_len` when chunked prefill
    /// is off, so that any prompt the server accepts fits in one step.
    pub fn new(config: EngineConfig) -> Self {
        let limits = EngineLimits {
            max_num_batched_tokens: config.limits.step_token_budget(config.max_model_len),
            ..config.limits
        };
        Self {
            scheduler: Scheduler::new(limits, config.num_gpu_blocks),
            profile: config.profile,
            vocab: config.vocab,
            metrics: EngineMetrics::new(config.metrics_format, config.max_model_len),
            block_size: config.limits.block_size,
            frontend_free_at: 0.0,
            frontend_busy: 0.0,
            last_step: None,
            async_scheduling: config.limits.async_scheduling,
            gauges_sampled_at: 0.0,
        }
    }

    /// Accepts a request that arrived at model time `arrival`. It reaches the scheduler
    /// after the front end: its CPU work (the profile's per-request cost plus tokenization
    /// per prompt token) on the front end's one serial server, behind whatever that server
    /// already has to do, then the front end's latency. Meanwhile it is not yet counted
    /// as waiting, as in vLLM V1, whose gauge counts only the engine's queue.
    /// Returns the model time it becomes schedulable.
    pub fn add_request(&mut self, req: NewRequest, arrival: f64) -> f64 {
        let mut block_hashes = Vec::new();
        extend_block_hashes(&mut block_hashes, &req.prompt, self.block_size, req.cache_salt);
        self.add_request_keyed(req, block_hashes, arrival)
    }

    /// [`Self::add_request`] given the keys of the prompt's full blocks, which must be
    /// what [`extend_block_hashes`] gives for the prompt, [`Self::block_size`] and the
    /// request's cache salt (kept by a caller that admits the same prompt many times).
    pub fn add_request_keyed(&mut self, req: NewRequest, block_hashes: Vec<BlockHash>, arrival: f64) -> f64 {
        debug_assert!(
            {
                let mut want = Vec::new();
                extend_block_hashes(&mut want, &req.prompt, self.block_size, req.cache_salt);
                want == block_hashes
            },
            "stale block keys"
        );
        let p = &self.profile;
        let cpu = p.frontend_cpu_seconds + p.tokenize_seconds_per_token * req.prompt.len() as f64;
        self.frontend_free_at = arrival.max(self.frontend_free_at) + cpu;
        self.frontend_busy += cpu;
        let queued = self.frontend_free_at + p.frontend_latency_seconds;
        self.scheduler.add(SimRequest::with_block_hashes(req, block_hashes, arrival, queued));
        self.refresh_gauges(arrival);
        queued
    }

    /// Tokens per KV block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Model time at which the front end's serial server is free again.
    pub fn frontend_free_at(&self) -> f64 {
        self.frontend_free_at
    }

    /// Seconds of work ever given to the front end (admissions and detokenization).
    pub fn frontend_busy_seconds(&self) -> f64 {
        self.frontend_busy
    }

    /// Drops a request (client gone), freeing its blocks; `false` if it was not there.
    pub fn abort(&mut self, id: RequestId) -> bool {
        if self.scheduler.remove(id).is_none() {
            return false;
        }
        self.metrics.request_success[2] += 1;
        self.refresh_gauges(self.gauges_sampled_at);
        true
    }

    /// When the next step can start, given the previous one ended at `prev_end`: at once
    /// while requests run, else when the first waiting request reaches the engine; `None`
    /// when there is nothing to do.
    pub fn next_step_start(&self, prev_end: f64) -> Option<f64> {
        if self.scheduler.num_running() > 0 {
            return Some(prev_end);
        }
        self.scheduler.next_queued_at().map(|q| q.max(prev_end))
    }

    /// Plans the step starting at `start`; `None` when nothing can be scheduled. Returns
    /// the admission events of requests admitted for the first time.
    pub fn plan_step(&mut self, start: f64, events: &mut Vec<(RequestId, RequestEvent)>) -> Option<StepPlan> {
        // With async scheduling, a step that follows another without a gap, while requests
        // run, was planned when that one started: only requests that had reached the
        // engine by then join. An idle engine plans at once.
        let busy = self.scheduler.num_running() > 0;
        let admit_by = match self.last_step {
            Some((prev_start, prev_end)) if self.async_scheduling && busy && start <= prev_end => prev_start,
            _ => start,
        };
        let output = self.scheduler.schedule_admitting(start, admit_by);
        if output.chunks.is_empty() {
            self.refresh_gauges(start);
            return None;
        }
        let mut shape = StepShape::default();
        for chunk in &output.chunks {
            let samples = self.scheduler.get(chunk.id).is_some_and(|r| r.num_computed == r.num_tokens());
            shape.add_chunk(chunk, samples);
        }
        for a in output.admitted.iter().filter(|a| a.first) {
            let prompt_tokens = self.scheduler.get(a.id).map_or(0, |r| r.prompt_len);
            events.push((a.id, RequestEvent::Admitted { cached_tokens: a.cached_tokens, prompt_tokens }));
        }
        let duration = step_seconds(&self.profile, &shape);
        Some(StepPlan { start, duration, output })
    }

    /// Ends a step: samples one token for every request whose known tokens are all
    /// computed, retires finished requests, and updates the metrics.
    pub fn complete_step(&mut self, plan: &StepPlan, events: &mut Vec<(RequestId, RequestEvent)>) {
        let end = plan.end();
        self.last_step = Some((plan.start, end));
        let mut sampled = 0_usize;
        for chunk in &plan.output.chunks {
            let Some(req) = self.scheduler.get_mut(chunk.id) else {
                continue; // aborted during the step
            };
            if req.num_computed < req.num_tokens() {
                continue; // a prefill chunk that does not finish the prompt
            }
            let token = self.vocab.next_token(&mut req.text_state);
            sampled += 1;
            let first = req.num_output() == 0;
            req.push_output(token.id, self.block_size);
            if first {
                req.timing.first_token = Some(end);
                self.metrics.prompt_tokens += req.prompt_len as u64;
                self.metrics.ttft.observe(end - req.timing.arrival);
            } else if let Some(prev) = req.timing.last_token {
                self.metrics.inter_token.observe(end - prev);
            }
            req.timing.last_token = Some(end);
            self.metrics.generation_tokens += 1;
            let finish = req.is_finished().then(|| Finished {
                reason: req.finish_reason,
                prompt_tokens: req.prompt_len,
                completion_tokens: req.num_output(),
                cached_tokens: req.cached_tokens.unwrap_or(0),
            });
            if let Some(f) = finish {
                if let Some(done) = self.scheduler.remove(chunk.id) {
                    self.metrics.observe_finished(&done, f.reason, end);
                }
            }
            events.push((chunk.id, RequestEvent::Token { text: token.text, finish }));
        }
        // Detokenizing and streaming this step's tokens occupies the front end from the
        // step's end on, ahead of admissions that arrive later.
        let detok = sampled as f64 * self.profile.detokenize_seconds_per_token;
        self.frontend_free_at = self.frontend_free_at.max(end) + detok;
        self.frontend_busy += detok;
        self.metrics.iteration_tokens.observe(plan.output.num_tokens() as f64);
        self.metrics.steps += 1;
        self.metrics.step_seconds += plan.duration;
        self.refresh_gauges(end);
    }

    /// Records how late (model seconds) the step of `duration` ended versus the model.
    pub fn record_lag(&mut self, lag: f64, duration: f64) {
        self.metrics.lag.observe(lag);
        if duration > 0.0 {
            self.metrics.lag_ratio.observe(lag / duration);
        }
    }

    /// Current metrics.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// The scheduler (queues, KV cache), read-only.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Samples the gauges at model time `now` (a step's end or an arrival; an abort
    /// samples again at the last such time).
    fn refresh_gauges(&mut self, now: f64) {
        self.gauges_sampled_at = now;
        let s = self.scheduler.stats();
        let m = &mut self.metrics;
        m.num_running = self.scheduler.num_running();
        m.num_waiting = self.scheduler.num_waiting_in_engine(now);
        m.kv_usage = self.scheduler.kv().pool().usage();
        m.prefix_query_tokens = s.query_tokens;
        m.prefix_hit_tokens = s.hit_tokens;
        m.prefix_query_blocks = s.query_blocks;
        m.prefix_hit_blocks = s.hit_blocks;
        m.num_preemptions = s.preemptions;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn engine(num_blocks: usize) -> EngineCore {
        engine_with(EngineLimits::default(), num_blocks)
    }

    fn engine_with(limits: EngineLimits, num_blocks: usize) -> EngineCore {
        EngineCore::new(EngineConfig {
            limits,
            num_gpu_blocks: num_blocks,
            profile: Profile::default(),
            vocab: Arc::new(GenVocabulary::new(|w| w.len() as u32)),
            metrics_format: MetricsFormat::V1,
            max_model_len: 32_768,
        })
    }

    fn new_request(id: u64, prompt: Vec<u32>, output_len: usize) -> NewRequest {
        NewRequest {
            id: RequestId(id),
            prompt,
            output_len,
            finish_reason: FinishReason::Length,
            text_seed: id,
            cache_salt: 0,
            max_tokens: output_len,
        }
    }

    /// Runs the engine in virtual time until idle; returns events with their model times.
    fn run(e: &mut EngineCore, mut t: f64) -> Vec<(f64, RequestId, RequestEvent)> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let Some(start) = e.next_step_start(t) else {
                return out;
            };
            let mut ev = Vec::new();
            let plan = e.plan_step(start, &mut ev).unwrap();
            out.extend(ev.drain(..).map(|(id, x)| (start, id, x)));
            e.complete_step(&plan, &mut ev);
            t = plan.end();
            out.extend(ev.into_iter().map(|(id, x)| (t, id, x)));
        }
        panic!("engine did not go idle");
    }

    #[test]
    fn a_request_gets_admitted_then_exactly_its_output_tokens() {
        let mut e = engine(1000);
        e.add_request(new_request(1, (0..300).collect(), 5), 0.0);
        let events = run(&mut e, 0.0);
        assert!(matches!(events[0].2, RequestEvent::Admitted { cached_tokens: 0, prompt_tokens: 300 }));
        let tokens: Vec<_> = events
            .iter()
            .filter_map(|(_, _, ev)| match ev {
                RequestEvent::Token { finish, .. } => Some(*finish),
                _ => None,
            })
            .collect();
        assert_eq!(tokens.len(), 5);
        assert!(tokens[..4].iter().all(Option::is_none));
        assert_eq!(tokens[4].unwrap().completion_tokens, 5);
        let m = e.metrics();
        assert_eq!(m.prompt_tokens, 300);
        assert_eq!(m.generation_tokens, 5);
        assert_eq!(m.request_success, [0, 1, 0]);
        assert_eq!(m.ttft.count(), 1);
        assert_eq!(m.inter_token.count(), 4);
        assert_eq!(m.num_running, 0);
    }

    #[test]
    fn ttft_is_the_front_end_then_the_prefill_step() {
        let mut e = engine(1000);
        let queued = e.add_request(new_request(1, (0..256).collect(), 2), 1.0);
        let p = Profile::default();
        let front_end =
            p.frontend_cpu_seconds + 256.0 * p.tokenize_seconds_per_token + p.frontend_latency_seconds;
        assert!((queued - 1.0 - front_end).abs() < 1e-12, "{queued}");
        let events = run(&mut e, 0.0);
        let first_token_at =
            events.iter().find(|(_, _, ev)| matches!(ev, RequestEvent::Token { .. })).unwrap().0;
        let ttft = first_token_at - 1.0;
        let mut shape = StepShape::default();
        shape.add_chunk(
            &super::super::scheduler::ScheduledChunk { id: RequestId(1), num_new: 256, computed_before: 0 },
            true,
        );
        let want = front_end + step_seconds(&p, &shape);
        assert!((ttft - want).abs() < 1e-9, "{ttft} vs {want}");
        assert!((e.metrics().ttft.sum() - want).abs() < 1e-9);
    }

    #[test]
    fn the_front_end_is_paid_once_per_request_even_when_it_is_preempted_and_per_output_token() {
        // 8 blocks of 16 tokens: two requests of 40 + 60 tokens cannot both keep their
        // blocks, so one is preempted and recomputed; that must not pay the front end again.
        let mut e = engine(8);
        e.add_request(new_request(1, (0..40).collect(), 60), 0.0);
        e.add_request(new_request(2, (100..140).collect(), 60), 0.0);
        let events = run(&mut e, 0.0);
        assert!(e.metrics().num_preemptions > 0, "the scenario must preempt");
        let tokens = events.iter().filter(|(_, _, ev)| matches!(ev, RequestEvent::Token { .. })).count();
        assert_eq!(tokens, 120);
        let p = Profile::default();
        let want = 2.0 * p.frontend_cpu_seconds
            + 80.0 * p.tokenize_seconds_per_token
            + 120.0 * p.detokenize_seconds_per_token;
        assert!((e.frontend_busy_seconds() - want).abs() < 1e-12, "{} vs {want}", e.frontend_busy_seconds());
    }

    #[test]
    fn requests_in_the_front_end_do_not_count_as_waiting_until_they_reach_the_engine() {
        let mut e = engine(1000);
        let p = Profile::default();
        let q: Vec<f64> = (0..3).map(|i| e.add_request(new_request(i, (0..200).collect(), 4), 0.0)).collect();
        // Before any step, all three are in the front end: vLLM V1 counts none as waiting.
        assert_eq!((e.metrics().num_waiting, e.metrics().num_running), (0, 0));
        let cpu = p.frontend_cpu_seconds + 200.0 * p.tokenize_seconds_per_token;
        assert!(((q[1] - q[0]) - cpu).abs() < 1e-12 && ((q[2] - q[1]) - cpu).abs() < 1e-12, "{q:?}");
        // The first step starts when the first is through and admits it alone.
        let start = e.next_step_start(0.0).unwrap();
        assert!((start - q[0]).abs() < 1e-12);
        let mut ev = Vec::new();
        let plan = e.plan_step(start, &mut ev).unwrap();
        assert_eq!(plan.output.admitted.len(), 1);
        e.complete_step(&plan, &mut ev);
        // Gauges are sampled after the step, as vLLM's are: of the other two, those
        // through the front end by the step's end are waiting.
        let reached = q[1..].iter().filter(|&&t| t <= plan.end()).count();
        assert_eq!((e.metrics().num_waiting, e.metrics().num_running), (reached, 1));
        // Steps go on until all three have reached the engine; then the two still
        // queued or running show in the gauges, and none is lost.
        let mut t = plan.end();
        while t < q[2] {
            let start = e.next_step_start(t).unwrap();
            let plan = e.plan_step(start, &mut ev).unwrap();
            e.complete_step(&plan, &mut ev);
            t = plan.end();
        }
        let m = e.metrics();
        assert_eq!(m.num_waiting + m.num_running + m.request_success.iter().sum::<u64>() as usize, 3);
        assert!(m.num_waiting + m.num_running > 0);
    }

    #[test]
    fn detokenizing_a_batch_delays_the_admission_of_a_later_request() {
        let mut e = engine(1000);
        let p = Profile::default();
        for i in 0..8 {
            e.add_request(new_request(i, (i as u32 * 1000..i as u32 * 1000 + 50).collect(), 100), 0.0);
        }
        let mut t = 0.0;
        let mut ev = Vec::new();
        // Run until all eight decode, then one more step.
        for _ in 0..20 {
            let start = e.next_step_start(t).unwrap();
            let plan = e.plan_step(start, &mut ev).unwrap();
            e.complete_step(&plan, &mut ev);
            t = plan.end();
        }
        assert_eq!(e.scheduler().num_running(), 8);
        let free = e.frontend_free_at();
        assert!((free - (t + 8.0 * p.detokenize_seconds_per_token)).abs() < 1e-12, "{free} vs {t}");
        let queued = e.add_request(new_request(99, (0..10).collect(), 2), t);
        let cpu = p.frontend_cpu_seconds + 10.0 * p.tokenize_seconds_per_token;
        assert!((queued - (free + cpu + p.frontend_latency_seconds)).abs() < 1e-12);
    }

    #[test]
    fn with_async_scheduling_a_request_reaching_a_busy_engine_joins_the_step_after_next() {
        for async_scheduling in [false, true] {
            let mut e = engine_with(EngineLimits { async_scheduling, ..EngineLimits::default() }, 1000);
            e.add_request(new_request(1, (0..64).collect(), 50), 0.0);
            let mut ev = Vec::new();
            let mut t = e.next_step_start(0.0).unwrap();
            // A few decode steps, then a second request reaches the engine mid-step.
            let mut plans = Vec::new();
            for _ in 0..3 {
                let plan = e.plan_step(t, &mut ev).unwrap();
                e.complete_step(&plan, &mut ev);
                t = plan.end();
                plans.push(plan);
            }
            let step = plans[2].duration;
            let queued = e.add_request(new_request(2, (100..116).collect(), 5), t - step / 2.0);
            assert!(queued > t, "the front end takes longer than half a step");
            let mut joined_after = 0;
            loop {
                let plan = e.plan_step(t, &mut ev).unwrap();
                let admitted = plan.output.admitted.iter().any(|a| a.id == RequestId(2));
                e.complete_step(&plan, &mut ev);
                if admitted {
                    // The step that admits it starts after it reached the engine, and with
                    // async scheduling so did the step before (that one was planned then).
                    assert!(plan.start >= queued);
                    break;
                }
                if plan.start >= queued {
                    joined_after += 1;
                }
                t = plan.end();
            }
            assert_eq!(joined_after, usize::from(async_scheduling), "async {async_scheduling}");
        }
        // An idle engine admits at once, with or without it.
        let mut e = engine_with(EngineLimits { async_scheduling: true, ..EngineLimits::default() }, 1000);
        let queued = e.add_request(new_request(1, (0..64).collect(), 2), 5.0);
        let start = e.next_step_start(0.0).unwrap();
        let mut ev = Vec::new();
        assert_eq!(start, queued);
        assert_eq!(e.plan_step(start, &mut ev).unwrap().output.admitted.len(), 1);
    }

    #[test]
    fn a_repeated_prompt_reports_its_full_block_hit() {
        let mut e = engine(1000);
        e.add_request(new_request(1, (0..100).collect(), 3), 0.0);
        let t = run(&mut e, 0.0).last().unwrap().0;
        e.add_request(new_request(2, (0..100).collect(), 3), t);
        let events = run(&mut e, t);
        assert!(matches!(events[0].2, RequestEvent::Admitted { cached_tokens: 96, .. }));
        assert_eq!(e.metrics().prefix_hit_tokens, 96);
        assert_eq!(e.metrics().prefix_query_tokens, 200);
    }

    #[test]
    fn without_prefix_caching_a_repeated_prompt_is_computed_again_and_nothing_is_counted() {
        let mut e =
            engine_with(EngineLimits { enable_prefix_caching: false, ..EngineLimits::default() }, 1000);
        e.add_request(new_request(1, (0..100).collect(), 3), 0.0);
        let t = run(&mut e, 0.0).last().unwrap().0;
        e.add_request(new_request(2, (0..100).collect(), 3), t);
        let events = run(&mut e, t);
        assert!(matches!(events[0].2, RequestEvent::Admitted { cached_tokens: 0, .. }));
        let m = e.metrics();
        assert_eq!((m.prefix_query_tokens, m.prefix_hit_tokens), (0, 0));
        assert_eq!((m.prefix_query_blocks, m.prefix_hit_blocks), (0, 0));
        assert_eq!(m.prompt_tokens, 200);
    }

    #[test]
    fn without_chunked_prefill_the_budget_is_raised_so_a_long_prompt_runs_in_one_step() {
        let limits = EngineLimits { enable_chunked_prefill: false, ..EngineLimits::default() };
        assert_eq!(limits.step_token_budget(32_768), 32_768);
        assert_eq!(EngineLimits::default().step_token_budget(32_768), 2048);
        let mut e = engine_with(limits, 1000);
        assert_eq!(e.scheduler().limits().max_num_batched_tokens, 32_768);
        e.add_request(new_request(1, (0..5000).collect(), 2), 0.0);
        let mut ev = Vec::new();
        let start = e.next_step_start(0.0).unwrap();
        let plan = e.plan_step(start, &mut ev).unwrap();
        assert_eq!(plan.output.num_tokens(), 5000, "the whole prompt in the first step");
        e.complete_step(&plan, &mut ev);
        assert!(ev.iter().any(|(_, x)| matches!(x, RequestEvent::Token { .. })), "and its first token");
    }

    #[test]
    fn an_aborted_request_frees_its_blocks_and_counts_as_abort() {
        let mut e = engine(1000);
        e.add_request(new_request(1, (0..100).collect(), 50), 0.0);
        let mut ev = Vec::new();
        let start = e.next_step_start(0.0).unwrap();
        let plan = e.plan_step(start, &mut ev).unwrap();
        e.complete_step(&plan, &mut ev);
        assert!(e.scheduler().kv().pool().usage() > 0.0);
        assert!(e.abort(RequestId(1)));
        assert!(!e.abort(RequestId(1)));
        assert_eq!(e.scheduler().kv().pool().usage(), 0.0);
        assert_eq!(e.metrics().request_success, [0, 0, 1]);
        assert_eq!(e.next_step_start(1.0), None);
    }
}
