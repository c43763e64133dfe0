//! vLLM V1's scheduler: one call plans one engine step under a token budget.
//!
//! Running requests are served first, in order, each with the tokens it still needs (1 for
//! a decode, the rest of its prompt for a chunked prefill), capped by the budget. When KV
//! blocks run out, the newest running request is preempted (its blocks freed, its progress
//! reset for recompute) and put back at the front of the waiting queue. Waiting requests
//! are then admitted first-come first-served, after a prefix-cache lookup, while budget,
//! `max_num_seqs` and blocks allow, but not in a step that preempted.
//!
//! Two switches of [`EngineLimits`] change this as in vLLM V1: with prefix caching off the
//! lookup finds nothing and is not counted; with chunked prefill off a waiting request is
//! admitted only if its whole uncached remainder fits in the budget left in the step, and
//! admission stops at the first one that does not (vLLM's `break`, strict FCFS). The budget
//! itself is [`EngineLimits::max_num_batched_tokens`] as given; raising it for chunked
//! prefill off ([`EngineLimits::step_token_budget`]) is the engine's job.

use std::collections::VecDeque;

use super::config::EngineLimits;
use super::fast_hash::FastMap;
use super::kv_cache::KvCacheManager;
use super::request::{RequestId, SimRequest};

/// Tokens of one request computed in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledChunk {
    /// The request.
    pub id: RequestId,
    /// Tokens computed for it in this step.
    pub num_new: usize,
    /// Tokens whose KV it already had (read by attention).
    pub computed_before: usize,
}

/// A waiting request moved to running in this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The request.
    pub id: RequestId,
    /// Tokens found in the prefix cache.
    pub cached_tokens: usize,
    /// Whether this is its first admission (not a resume after preemption).
    pub first: bool,
}

/// The plan of one step.
#[derive(Debug, Clone, Default)]
pub struct SchedulerOutput {
    /// Work per request, in batch order.
    pub chunks: Vec<ScheduledChunk>,
    /// Requests admitted from the waiting queue.
    pub admitted: Vec<Admission>,
    /// Requests preempted to free blocks.
    pub preempted: Vec<RequestId>,
}

impl SchedulerOutput {
    /// Total tokens computed in the step.
    pub fn num_tokens(&self) -> usize {
        self.chunks.iter().map(|c| c.num_new).sum()
    }
}

/// Lifetime prefix-cache and preemption counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedulerStats {
    /// Tokens looked up in the prefix cache (V1 `prefix_cache_queries`).
    pub query_tokens: u64,
    /// Tokens found (V1 `prefix_cache_hits`).
    pub hit_tokens: u64,
    /// Full blocks looked up (for V0's block hit rate).
    pub query_blocks: u64,
    /// Full blocks found.
    pub hit_blocks: u64,
    /// Preemptions.
    pub preemptions: u64,
}

/// Waiting and running queues, the requests and their KV blocks.
#[derive(Debug)]
pub struct Scheduler {
    limits: EngineLimits,
    kv: KvCacheManager,
    requests: FastMap<RequestId, SimRequest>,
    waiting: VecDeque<RequestId>,
    running: Vec<RequestId>,
    stats: SchedulerStats,
}

impl Scheduler {
    /// An empty scheduler over `num_blocks` KV blocks.
    pub fn new(limits: EngineLimits, num_blocks: usize) -> Self {
        Self {
            kv: KvCacheManager::new(num_blocks, limits.block_size)
                .with_prefix_caching(limits.enable_prefix_caching),
            limits,
            requests: FastMap::default(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            stats: SchedulerStats::default(),
        }
    }

    /// The limits it schedules under.
    pub fn limits(&self) -> &EngineLimits {
        &self.limits
    }

    /// Queues a new request at the back of the waiting queue.
    pub fn add(&mut self, req: SimRequest) {
        self.waiting.push_back(req.id);
        self.requests.insert(req.id, req);
    }

    /// Removes a request wherever it is and frees its blocks.
    pub fn remove(&mut self, id: RequestId) -> Option<SimRequest> {
        let req = self.requests.remove(&id)?;
        self.running.retain(|&r| r != id);
        self.waiting.retain(|&r| r != id);
        self.kv.free(id);
        Some(req)
    }

    /// A request's state.
    pub fn get(&self, id: RequestId) -> Option<&SimRequest> {
        self.requests.get(&id)
    }

    /// A request's state, mutably.
    pub fn get_mut(&mut self, id: RequestId) -> Option<&mut SimRequest> {
        self.requests.get_mut(&id)
    }

    /// KV blocks and cache.
    pub fn kv(&self) -> &KvCacheManager {
        &self.kv
    }

    /// Requests in the running batch (including partly prefilled ones).
    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    /// Requests waiting for admission (including preempted ones and those still in the
    /// front end).
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Requests waiting for admission that had reached the engine by model time `now`:
    /// what vLLM V1's `vllm:num_requests_waiting` counts, which leaves out requests still
    /// being tokenized in the front end.
    pub fn num_waiting_in_engine(&self, now: f64) -> usize {
        self.waiting.iter().filter_map(|id| self.requests.get(id)).filter(|r| r.timing.queued <= now).count()
    }

    /// Running request ids, in batch order.
    pub fn running(&self) -> &[RequestId] {
        &self.running
    }

    /// Lifetime counters.
    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }

    /// Earliest time at which a waiting request becomes schedulable, when nothing runs.
    pub fn next_queued_at(&self) -> Option<f64> {
        if !self.running.is_empty() {
            return None;
        }
        self.waiting.iter().filter_map(|id| self.requests.get(id)).map(|r| r.timing.queued).reduce(f64::min)
    }

    /// Plans the step starting at `now` (model seconds) and reserves its KV slots.
    pub fn schedule(&mut self, now: f64) -> SchedulerOutput {
        self.schedule_admitting(now, now)
    }

    /// Plans the step starting at `now`, admitting only waiting requests that reached the
    /// engine by `admit_by` (with async scheduling, when the step was planned: the start of
    /// the step before it).
    pub fn schedule_admitting(&mut self, now: f64, admit_by: f64) -> SchedulerOutput {
        let mut out = SchedulerOutput::default();
        let mut budget = self.limits.max_num_batched_tokens;
        let block_size = self.limits.block_size;

        // 1. Running requests, in order.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let Some(req) = self.requests.get(&id) else {
                self.running.remove(i);
                continue;
            };
            let num_new = req.num_tokens().saturating_sub(req.num_computed).min(budget);
            if num_new == 0 {
                i += 1;
                continue;
            }
            let computed_before = req.num_computed;
            let scheduled = loop {
                let Some(req) = self.requests.get(&id) else {
                    break false;
                };
                if self.kv.allocate_slots(id, &req.block_hashes, req.num_computed, num_new, &[]) {
                    break true;
                }
                // Out of blocks: preempt the newest running request and retry.
                let Some(victim) = self.running.pop() else {
                    break false;
                };
                self.preempt(victim);
                out.preempted.push(victim);
                if victim == id {
                    break false;
                }
            };
            if !scheduled {
                break;
            }
            if let Some(req) = self.requests.get_mut(&id) {
                req.num_computed += num_new;
            }
            out.chunks.push(ScheduledChunk { id, num_new, computed_before });
            budget -= num_new;
            i += 1;
        }

        // 2. Waiting requests, FCFS, only if nothing was preempted in this step.
        if out.preempted.is_empty() {
            while budget > 0 && self.running.len() < self.limits.max_num_seqs {
                let Some(&id) = self.waiting.front() else {
                    break;
                };
                let Some(req) = self.requests.get(&id) else {
                    self.waiting.pop_front();
                    continue;
                };
                if req.timing.queued > admit_by {
                    break;
                }
                // Empty with prefix caching off.
                let hit = self.kv.find_cached_prefix(&req.block_hashes, req.num_tokens());
                let cached = hit.len() * block_size;
                let remaining = req.num_tokens() - cached;
                if !self.limits.enable_chunked_prefill && remaining > budget {
                    // A prompt is never split: wait for a step with room for all of it.
                    break;
                }
                let num_new = remaining.min(budget);
                if !self.kv.allocate_slots(id, &req.block_hashes, cached, num_new, &hit) {
                    break;
                }
                if self.kv.prefix_caching() {
                    // vLLM V1 counts nothing when caching is off (no lookup happens).
                    self.stats.query_tokens += req.num_tokens() as u64;
                    self.stats.hit_tokens += cached as u64;
                    self.stats.query_blocks += (req.num_tokens() / block_size) as u64;
                    self.stats.hit_blocks += hit.len() as u64;
                }
                self.waiting.pop_front();
                self.running.push(id);
                if let Some(req) = self.requests.get_mut(&id) {
                    let first = req.cached_tokens.is_none();
                    if first {
                        req.cached_tokens = Some(cached);
                    }
                    req.num_computed = cached + num_new;
                    req.timing.scheduled = Some(now);
                    out.admitted.push(Admission { id, cached_tokens: cached, first });
                }
                out.chunks.push(ScheduledChunk { id, num_new, computed_before: cached });
                budget -= num_new;
            }
        }
        out
    }

    /// Frees a running request's blocks and puts it back at the front of the waiting queue,
    /// to be recomputed from scratch (vLLM's recompute preemption).
    fn preempt(&mut self, id: RequestId) {
        self.kv.free(id);
        if let Some(req) = self.requests.get_mut(&id) {
            req.num_computed = 0;
            req.num_preemptions += 1;
        }
        self.waiting.push_front(id);
        self.stats.preemptions += 1;
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
