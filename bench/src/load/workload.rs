//! Turning a dataset into the benchmark's request list: filter pieces by
//! prompt length, sample them with a seed, draw each output length.

use super::client::BenchRequest;
use super::dataset::{pieces, Conversation};
use std::sync::Arc;
use vllm_sim::tokenizer::SimTokenizer;

/// How requests are drawn from a dataset.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// Pieces considered, in dataset order (bench_serving's `--max-conversations`).
    pub max_conversations: usize,
    /// Requests to produce.
    pub num_prompts: usize,
    /// Prompts shorter than this many tokens are skipped.
    pub min_prompt_len: usize,
    /// Prompts longer than this many tokens are skipped.
    pub max_prompt_len: usize,
    /// Smallest output length (tokens).
    pub min_output_len: u64,
    /// Largest output length (tokens).
    pub max_output_len: u64,
    /// Seed of the shuffle and of the output lengths.
    pub seed: u64,
}

/// A sampled workload and how much prefix sharing it carries.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The requests, in send order.
    pub requests: Vec<BenchRequest>,
    /// Distinct conversations among them (groups of requests sharing a prefix).
    pub prefix_groups: usize,
}

/// A piece that passed the length filter.
struct Candidate {
    conversation: usize,
    prompt: Arc<str>,
    messages: Arc<[(String, String)]>,
    prompt_len: u64,
}

/// Samples `spec.num_prompts` requests from `conversations`. Pieces are
/// shuffled and taken in order, looping when fewer pieces pass the length
/// filter than prompts are asked for.
pub fn build_workload(
    conversations: &[Conversation],
    spec: &WorkloadSpec,
    tokenizer: &SimTokenizer,
) -> Workload {
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let mut candidates: Vec<Candidate> = pieces(conversations)
        .into_iter()
        .take(spec.max_conversations)
        .filter_map(|p| {
            let text = p.prompt_text();
            let tokens = tokenizer.encode(&text, true).map(|ids| ids.len()).unwrap_or(text.len() / 4);
            let fits = (spec.min_prompt_len..=spec.max_prompt_len).contains(&tokens);
            let messages = p.messages().into_iter().map(|(r, c)| (r.to_owned(), c.to_owned())).collect();
            fits.then_some(Candidate {
                conversation: p.conversation,
                prompt: text.into(),
                messages,
                prompt_len: tokens as u64,
            })
        })
        .collect();
    rng.shuffle(&mut candidates);
    let mut requests = Vec::with_capacity(spec.num_prompts);
    let mut groups = std::collections::HashSet::new();
    if candidates.is_empty() {
        return Workload { requests, prefix_groups: 0 };
    }
    let (lo, hi) =
        (spec.min_output_len.min(spec.max_output_len), spec.max_output_len.max(spec.min_output_len));
    for i in 0..spec.num_prompts {
        let c = &candidates[i % candidates.len()];
        groups.insert(c.conversation);
        requests.push(BenchRequest {
            prompt: c.prompt.clone(),
            messages: c.messages.clone(),
            prompt_len: c.prompt_len,
            output_len: rng.u64(lo..=hi).max(1),
        });
    }
    Workload { requests, prefix_groups: groups.len() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::dataset::synthetic;

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            max_conversations: 10_000,
            num_prompts: 300,
            min_prompt_len: 1_500,
            max_prompt_len: 8_192,
            min_output_len: 10,
            max_output_len: 200,
            seed: 1,
        }
    }

    #[test]
    fn synthetic_workload_has_shared_prefixes_and_bounded_lengths() {
        let convs = synthetic(200, 7);
        let w = build_workload(&convs, &spec(), &SimTokenizer::Approximate);
        assert_eq!(w.requests.len(), 300);
        assert!(w.prefix_groups < 200, "{} groups", w.prefix_groups);
        assert!(w.requests.iter().all(|r| (1_500..=8_192).contains(&r.prompt_len)));
        assert!(w.requests.iter().all(|r| (10..=200).contains(&r.output_len)));
        // Same seed, same workload.
        let again = build_workload(&convs, &spec(), &SimTokenizer::Approximate);
        assert_eq!(again.requests, w.requests);
    }

    #[test]
    fn nothing_fits_gives_an_empty_workload() {
        let convs = synthetic(3, 7);
        let tight = WorkloadSpec { min_prompt_len: 1_000_000, max_prompt_len: 2_000_000, ..spec() };
        assert!(build_workload(&convs, &tight, &SimTokenizer::Approximate).requests.is_empty());
    }
}
