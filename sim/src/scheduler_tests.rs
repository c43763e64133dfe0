//! Scheduler tests: budget, `max_num_seqs`, chunked prefill (on and off), prefix caching
//! off, preemption, FCFS admission.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::request::{FinishReason, NewRequest};

fn limits(max_num_seqs: usize, max_num_batched_tokens: usize) -> EngineLimits {
    EngineLimits { max_num_seqs, max_num_batched_tokens, block_size: 16, ..EngineLimits::default() }
}

fn no_chunking(max_num_batched_tokens: usize) -> EngineLimits {
    EngineLimits { enable_chunked_prefill: false, ..limits(256, max_num_batched_tokens) }
}

/// A request whose prompt is its own (no prefix shared with other ids).
fn request(id: u64, prompt_len: usize, output_len: usize) -> SimRequest {
    let prompt = (0..prompt_len as u32).map(|t| t + 100_000 * id as u32).collect();
    request_with(id, prompt, output_len)
}

fn request_with(id: u64, prompt: Vec<u32>, output_len: usize) -> SimRequest {
    SimRequest::new(
        NewRequest {
            id: RequestId(id),
            prompt,
            output_len,
            finish_reason: FinishReason::Length,
            text_seed: id,
            cache_salt: 0,
            max_tokens: output_len,
        },
        16,
        0.0,
        0.0,
    )
}

/// What the engine does after a step: sample a token for every request whose known tokens
/// are all computed, and retire finished ones.
fn finish_step(s: &mut Scheduler, out: &SchedulerOutput) {
    for c in &out.chunks {
        let done = {
            let r = s.get_mut(c.id).unwrap();
            if r.num_computed == r.num_tokens() {
                r.push_output(7, 16);
            }
            r.is_finished()
        };
        if done {
            s.remove(c.id);
        }
    }
}

fn work(out: &SchedulerOutput) -> Vec<(u64, usize)> {
    out.chunks.iter().map(|c| (c.id.0, c.num_new)).collect()
}

#[test]
fn the_token_budget_caps_a_step_and_the_last_prefill_is_chunked() {
    let mut s = Scheduler::new(limits(256, 2048), 1000);
    for id in 1..=3 {
        s.add(request(id, 1000, 10));
    }
    let out = s.schedule(0.0);
    assert_eq!(work(&out), vec![(1, 1000), (2, 1000), (3, 48)]);
    assert_eq!(out.num_tokens(), 2048);
    finish_step(&mut s, &out);
    // Requests 1 and 2 decode (one token each), request 3 continues its prefill.
    let out = s.schedule(0.1);
    assert_eq!(work(&out), vec![(1, 1), (2, 1), (3, 952)]);
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_and_samples_after_the_last() {
    let mut s = Scheduler::new(limits(256, 2048), 1000);
    s.add(request(1, 5000, 3));
    let mut chunks = Vec::new();
    for step in 0..4 {
        let out = s.schedule(step as f64);
        chunks.push(out.chunks[0].num_new);
        finish_step(&mut s, &out);
    }
    assert_eq!(chunks, vec![2048, 2048, 904, 1]);
    assert_eq!(s.get(RequestId(1)).unwrap().num_output(), 2);
}

#[test]
fn max_num_seqs_bounds_the_running_batch() {
    let mut s = Scheduler::new(limits(2, 2048), 1000);
    for id in 1..=3 {
        s.add(request(id, 10, 5));
    }
    let out = s.schedule(0.0);
    assert_eq!(out.admitted.len(), 2);
    assert_eq!(s.num_running(), 2);
    assert_eq!(s.num_waiting(), 1);
    finish_step(&mut s, &out);
    let out = s.schedule(0.1);
    assert_eq!(work(&out), vec![(1, 1), (2, 1)], "the third still waits");
}

#[test]
fn running_requests_are_served_before_waiting_ones() {
    let mut s = Scheduler::new(limits(256, 2048), 1000);
    s.add(request(1, 100, 50));
    let out = s.schedule(0.0);
    finish_step(&mut s, &out);
    s.add(request(2, 4000, 5));
    let out = s.schedule(0.1);
    assert_eq!(work(&out), vec![(1, 1), (2, 2047)]);
}

#[test]
fn a_request_is_not_admitted_before_it_reaches_the_engine() {
    let mut s = Scheduler::new(limits(256, 2048), 1000);
    let mut r = request(1, 10, 5);
    r.timing.queued = 0.5;
    s.add(r);
    assert!(s.schedule(0.4).chunks.is_empty());
    assert_eq!(s.next_queued_at(), Some(0.5));
    assert_eq!(s.schedule(0.5).chunks.len(), 1);
}

#[test]
fn block_shortage_preempts_the_newest_request_and_blocks_admission() {
    // 4 blocks of 16 tokens; two 31-token prompts take 2 blocks each.
    let mut s = Scheduler::new(limits(256, 2048), 4);
    s.add(request(1, 31, 20));
    s.add(request(2, 31, 20));
    let out = s.schedule(0.0);
    assert_eq!(out.admitted.len(), 2);
    finish_step(&mut s, &out);
    s.add(request(3, 5, 5));
    // Token 32 of each still fits in 2 blocks; request 3 finds no free block.
    let out = s.schedule(0.1);
    assert_eq!(work(&out), vec![(1, 1), (2, 1)]);
    finish_step(&mut s, &out);
    // Now both need a third block: request 2 (newest) is preempted for request 1.
    let out = s.schedule(0.2);
    assert_eq!(out.preempted, vec![RequestId(2)]);
    assert_eq!(work(&out), vec![(1, 1)]);
    assert!(out.admitted.is_empty(), "no admission in a step that preempted");
    assert_eq!(s.stats().preemptions, 1);
    let r2 = s.get(RequestId(2)).unwrap();
    assert_eq!(r2.num_computed, 0, "a preempted request is recomputed");
    assert_eq!(r2.num_output(), 2, "but keeps its output");
    assert_eq!(s.num_waiting(), 2);
}

#[test]
fn a_preempted_request_resumes_first_and_hits_its_own_blocks() {
    let mut s = Scheduler::new(limits(256, 2048), 6);
    s.add(request(1, 40, 20)); // 3 blocks, 4 at its longest (60 tokens)
    s.add(request(2, 40, 30)); // 3 blocks
    let out = s.schedule(0.0);
    finish_step(&mut s, &out);
    // Decode until request 1 needs a fourth block at 49 tokens: request 2 is preempted.
    let mut t = 0.0;
    let preempted = loop {
        t += 0.1;
        let out = s.schedule(t);
        finish_step(&mut s, &out);
        if !out.preempted.is_empty() {
            break out.preempted;
        }
        assert!(t < 100.0);
    };
    assert_eq!(preempted, vec![RequestId(2)]);
    // Request 1 takes one of request 2's freed blocks and finishes; request 2 comes back.
    let mut resumed = None;
    for _ in 0..100 {
        t += 0.1;
        let out = s.schedule(t);
        if let Some(a) = out.admitted.iter().find(|a| a.id == RequestId(2)) {
            resumed = Some(*a);
            break;
        }
        finish_step(&mut s, &out);
    }
    let a = resumed.unwrap();
    assert!(!a.first);
    assert!(a.cached_tokens >= 32, "its freed prompt blocks are still cached");
}

#[test]
fn without_chunked_prefill_a_prompt_waits_for_a_step_with_room_for_all_of_it() {
    let mut s = Scheduler::new(no_chunking(2048), 1000);
    for id in 1..=3 {
        s.add(request(id, 1000, 10));
    }
    s.add(request(4, 10, 10));
    // Request 3 does not fit in the 48 tokens left, and admission stops there: request 4
    // behind it waits too (FCFS).
    let out = s.schedule(0.0);
    assert_eq!(work(&out), vec![(1, 1000), (2, 1000)]);
    assert_eq!(s.num_waiting(), 2);
    finish_step(&mut s, &out);
    let out = s.schedule(0.1);
    assert_eq!(work(&out), vec![(1, 1), (2, 1), (3, 1000), (4, 10)]);
}

/// Runs prompts of many sizes to completion; returns how many scheduled chunks left their
/// request with prompt tokens still to compute (partial prefills).
fn partial_prefills(limits: EngineLimits) -> usize {
    let mut s = Scheduler::new(limits, 10_000);
    for id in 1..=12 {
        s.add(request(id, 150 * id as usize + 7, 4));
    }
    let mut partial = 0;
    for step in 0..200 {
        let out = s.schedule(step as f64);
        partial += out
            .chunks
            .iter()
            .filter(|c| {
                let r = s.get(c.id).unwrap();
                r.num_computed < r.num_tokens()
            })
            .count();
        finish_step(&mut s, &out);
        if s.num_running() + s.num_waiting() == 0 {
            return partial;
        }
    }
    panic!("the requests did not finish");
}

#[test]
fn without_chunked_prefill_no_step_holds_a_partial_prefill() {
    assert!(partial_prefills(limits(256, 2048)) > 0, "the same load is chunked when chunking is on");
    assert_eq!(partial_prefills(no_chunking(2048)), 0);
}

#[test]
fn without_prefix_caching_a_repeated_prompt_gets_no_cached_tokens() {
    let prompt: Vec<u32> = (0..100).collect();
    let repeat = |limits: EngineLimits| {
        let mut s = Scheduler::new(limits, 1000);
        s.add(request_with(1, prompt.clone(), 1));
        let out = s.schedule(0.0);
        finish_step(&mut s, &out);
        s.add(request_with(2, prompt.clone(), 1));
        let out = s.schedule(0.1);
        (out.admitted[0].cached_tokens, out.num_tokens(), s.stats())
    };
    let (cached, computed, stats) = repeat(limits(256, 2048));
    assert_eq!((cached, computed), (96, 4), "control: caching on hits the full blocks");
    assert_eq!((stats.query_tokens, stats.hit_tokens), (200, 96));
    let off = EngineLimits { enable_prefix_caching: false, ..limits(256, 2048) };
    let (cached, computed, stats) = repeat(off);
    assert_eq!((cached, computed), (0, 100), "every prompt is computed from scratch");
    assert_eq!((stats.query_tokens, stats.hit_tokens, stats.query_blocks, stats.hit_blocks), (0, 0, 0, 0));
}
