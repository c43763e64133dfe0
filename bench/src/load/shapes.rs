//! Generated workload shapes, for routing-policy evaluation: each a `--dataset-name`,
//! deterministic from `--seed`, with no download, turned into the same request list for
//! `run` (over HTTP) and `lab` (in virtual time).
//!
//! - [`random`]: prefix-free prompts (bench_serving's `random`);
//! - [`shared_prefix`]: groups behind long shared system prompts (bench_serving's
//!   `generated-shared-prefix`);
//! - [`long_document`]: a few long documents, many short questions each;
//! - [`decode_heavy`]: short distinct prompts, long outputs.
//!
//! Requests of one group arrive interleaved with the others' (the list is shuffled with
//! the seed), as real traffic does, not one group after another.
//!
//! Lengths are in tokens of the simulator's approximate tokenizer (see [`text`]); a prompt's
//! `prompt_len` is what the run's tokenizer counts.

pub mod decode_heavy;
pub mod long_document;
pub mod random;
pub mod shared_prefix;
mod text;

use std::sync::Arc;

use serde::Serialize;
use vllm_sim::tokenizer::SimTokenizer;

use super::client::BenchRequest;
use super::run::DatasetName;
use super::workload::Workload;
use decode_heavy::DecodeHeavy;
use long_document::LongDocument;
use random::Random;
use shared_prefix::SharedPrefix;

/// The flags of the generated shapes; each applies to its `--dataset-name` only.
#[derive(Clone, Debug, clap::Args, Serialize)]
pub struct ShapeArgs {
    /// Largest prompt (tokens); each prompt's length is uniform in [max(1, len × ratio), len],
    /// as bench_serving draws it. The default is bench_serving's.
    #[arg(long, default_value_t = 1024, help_heading = "Dataset random")]
    pub random_input_len: usize,
    /// Largest output (tokens), drawn like the prompt's length. The default is bench_serving's.
    #[arg(long, default_value_t = 1024, help_heading = "Dataset random")]
    pub random_output_len: u64,
    /// Shortest length as a fraction of the largest: 0 spreads lengths from 1 up, 1 fixes
    /// them. The default is bench_serving's.
    #[arg(long, default_value_t = 0.0, help_heading = "Dataset random")]
    pub random_range_ratio: f64,

    /// Groups, each behind its own system prompt; the run sends groups × prompts per group
    /// requests (--num-prompts is ignored, as bench_serving does). The default is bench_serving's.
    #[arg(long, default_value_t = 64, help_heading = "Dataset generated-shared-prefix")]
    pub gsp_num_groups: usize,
    /// Requests per group. The default is bench_serving's.
    #[arg(long, default_value_t = 16, help_heading = "Dataset generated-shared-prefix")]
    pub gsp_prompts_per_group: usize,
    /// System prompt length (tokens). The default is bench_serving's: 64 of them take 8,192
    /// KV blocks of 16 tokens, so every default replica can hold all of them.
    #[arg(long, default_value_t = 2048, help_heading = "Dataset generated-shared-prefix")]
    pub gsp_system_prompt_len: usize,
    /// Question length (tokens), distinct per request. The default is bench_serving's.
    #[arg(long, default_value_t = 128, help_heading = "Dataset generated-shared-prefix")]
    pub gsp_question_len: usize,
    /// Output length of every request (tokens). The default is bench_serving's.
    #[arg(long, default_value_t = 256, help_heading = "Dataset generated-shared-prefix")]
    pub gsp_output_len: u64,

    /// Documents; the --num-prompts requests are spread evenly over them. The default is
    /// more than the lab's 4 replicas, so where each document goes matters.
    #[arg(long, default_value_t = 8, help_heading = "Dataset long-document")]
    pub long_doc_num_docs: usize,
    /// Shortest document (tokens); lengths are uniform in [min, max].
    #[arg(long, default_value_t = 6_000, help_heading = "Dataset long-document")]
    pub long_doc_min_len: usize,
    /// Longest document (tokens). With the defaults the 8 documents take about 3,500 KV
    /// blocks, which every default replica holds unless --num-gpu-blocks cuts its cache.
    #[arg(long, default_value_t = 8_000, help_heading = "Dataset long-document")]
    pub long_doc_max_len: usize,
    /// Question length (tokens), distinct per request; outputs follow --min-output-len and
    /// --max-output-len.
    #[arg(long, default_value_t = 32, help_heading = "Dataset long-document")]
    pub long_doc_question_len: usize,

    /// Shortest prompt (tokens); lengths are uniform in [min, max].
    #[arg(long, default_value_t = 100, help_heading = "Dataset decode-heavy")]
    pub decode_min_prompt_len: usize,
    /// Longest prompt (tokens).
    #[arg(long, default_value_t = 300, help_heading = "Dataset decode-heavy")]
    pub decode_max_prompt_len: usize,
    /// Shortest output (tokens); lengths are uniform in [min, max]. With the defaults a
    /// request decodes two to ten times as many tokens as its prompt holds.
    #[arg(long, default_value_t = 500, help_heading = "Dataset decode-heavy")]
    pub decode_min_output_len: u64,
    /// Longest output (tokens).
    #[arg(long, default_value_t = 1_000, help_heading = "Dataset decode-heavy")]
    pub decode_max_output_len: u64,
}

/// One generated shape with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// `random`.
    Random(Random),
    /// `generated-shared-prefix`.
    SharedPrefix(SharedPrefix),
    /// `long-document`.
    LongDocument(LongDocument),
    /// `decode-heavy`.
    DecodeHeavy(DecodeHeavy),
}

/// A generated request before tokenization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeRequest {
    /// The group of requests it shares its prefix with (system prompt, document), or its
    /// own index when it shares nothing.
    pub group: usize,
    /// Completions prompt.
    pub prompt: String,
    /// Chat messages (`role`, `content`).
    pub messages: Vec<(String, String)>,
    /// Output tokens requested.
    pub output_len: u64,
}

impl ShapeRequest {
    /// A request whose prompt is one user turn.
    fn single_user(group: usize, text: String, output_len: u64) -> Self {
        Self { group, messages: vec![("user".into(), text.clone())], prompt: text, output_len }
    }
}

impl ShapeArgs {
    /// The shape `name` names with these flags, or `None` for a dataset that is not a
    /// generated shape (`sharegpt`, `synthetic`). `long-document` takes its output lengths
    /// from `--min-output-len`/`--max-output-len`.
    pub fn shape(&self, name: DatasetName, min_output_len: u64, max_output_len: u64) -> Option<Shape> {
        Some(match name {
            DatasetName::Sharegpt | DatasetName::Synthetic => return None,
            DatasetName::Random => Shape::Random(Random {
                input_len: self.random_input_len,
                output_len: self.random_output_len,
                range_ratio: self.random_range_ratio,
            }),
            DatasetName::GeneratedSharedPrefix => Shape::SharedPrefix(SharedPrefix {
                num_groups: self.gsp_num_groups,
                prompts_per_group: self.gsp_prompts_per_group,
                system_prompt_len: self.gsp_system_prompt_len,
                question_len: self.gsp_question_len,
                output_len: self.gsp_output_len,
            }),
            DatasetName::LongDocument => Shape::LongDocument(LongDocument {
                num_documents: self.long_doc_num_docs,
                min_document_len: self.long_doc_min_len,
                max_document_len: self.long_doc_max_len,
                question_len: self.long_doc_question_len,
                min_output_len,
                max_output_len,
            }),
            DatasetName::DecodeHeavy => Shape::DecodeHeavy(DecodeHeavy {
                min_prompt_len: self.decode_min_prompt_len,
                max_prompt_len: self.decode_max_prompt_len,
                min_output_len: self.decode_min_output_len,
                max_output_len: self.decode_max_output_len,
            }),
        })
    }
}

impl Shape {
    /// Checks the parameters, naming the flag at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        match self {
            Self::Random(s) => s.validate(),
            Self::SharedPrefix(s) => s.validate(),
            Self::LongDocument(s) => s.validate(),
            Self::DecodeHeavy(s) => s.validate(),
        }
    }

    /// The requests in send order: generated from `seed`, then shuffled with it so that
    /// groups interleave. `generated-shared-prefix` ignores `num_prompts`.
    pub fn requests(&self, num_prompts: usize, seed: u64) -> Vec<ShapeRequest> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = match self {
            Self::Random(s) => s.generate(num_prompts, &mut rng),
            Self::SharedPrefix(s) => s.generate(&mut rng),
            Self::LongDocument(s) => s.generate(num_prompts, &mut rng),
            Self::DecodeHeavy(s) => s.generate(num_prompts, &mut rng),
        };
        rng.shuffle(&mut out);
        out
    }

    /// The benchmark's workload: [`Shape::requests`] with prompt lengths counted by
    /// `tokenizer`.
    pub fn workload(&self, num_prompts: usize, seed: u64, tokenizer: &SimTokenizer) -> Workload {
        let requests = self.requests(num_prompts, seed);
        let prefix_groups = requests.iter().map(|r| r.group).collect::<std::collections::HashSet<_>>().len();
        let requests = requests
            .into_iter()
            .map(|r| {
                let prompt_len =
                    tokenizer.encode(&r.prompt, true).map(|ids| ids.len()).unwrap_or(r.prompt.len() / 4);
                BenchRequest {
                    prompt: r.prompt.into(),
                    messages: Arc::from(r.messages),
                    prompt_len: prompt_len as u64,
                    output_len: r.output_len,
                }
            })
            .collect();
        Workload { requests, prefix_groups }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::scorecard::ScorecardTracker;
    use clap::Parser;
    use vllm_sim::block_hash::extend_block_hashes;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        shapes: ShapeArgs,
    }

    /// The shape of `name` with the default flags and outputs 10–200.
    fn default_shape(name: DatasetName) -> Shape {
        Flags::parse_from(["t"]).shapes.shape(name, 10, 200).unwrap()
    }

    const SHAPES: [DatasetName; 4] = [
        DatasetName::Random,
        DatasetName::GeneratedSharedPrefix,
        DatasetName::LongDocument,
        DatasetName::DecodeHeavy,
    ];

    /// The lab's reuse bound of `workload`, counted as the lab counts it (16-token blocks,
    /// the approximate tokenizer, routing to 4 replicas in turn).
    fn reuse_bound(workload: &Workload) -> f64 {
        let mut tracker = ScorecardTracker::new();
        for (i, r) in workload.requests.iter().enumerate() {
            let tokens = SimTokenizer::Approximate.encode(&r.prompt, true).unwrap();
            let mut hashes = Vec::new();
            extend_block_hashes(&mut hashes, &tokens, 16, 0);
            tracker.routed(&hashes, tokens.len(), 16, i % 4);
        }
        tracker.scorecard().reuse_bound
    }

    fn common_prefix(a: &str, b: &str) -> usize {
        a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
    }

    /// Consecutive requests of different groups.
    fn group_changes(requests: &[ShapeRequest]) -> usize {
        requests.windows(2).filter(|w| w[0].group != w[1].group).count()
    }

    #[test]
    fn every_shape_is_deterministic_per_seed() {
        for name in SHAPES {
            let shape = default_shape(name);
            let a = shape.requests(50, 7);
            assert_eq!(a, shape.requests(50, 7), "{name:?}");
            assert_ne!(a, shape.requests(50, 8), "{name:?}");
            let (wa, wb) = (
                shape.workload(50, 7, &SimTokenizer::Approximate),
                shape.workload(50, 7, &SimTokenizer::Approximate),
            );
            assert_eq!(wa.requests, wb.requests, "{name:?}");
        }
    }

    #[test]
    fn random_prompts_share_nothing_and_gsp_prompts_share_their_system_prompt() {
        let random = default_shape(DatasetName::Random).workload(500, 1, &SimTokenizer::Approximate);
        let bound = reuse_bound(&random);
        assert!(bound < 0.02, "random reuse bound {bound}");
        // The same measure sees the sharing of a shared-prefix workload: a group's first
        // request finds nothing, the 15 others its 2,048-token system prompt.
        let gsp =
            default_shape(DatasetName::GeneratedSharedPrefix).workload(0, 1, &SimTokenizer::Approximate);
        let bound = reuse_bound(&gsp);
        assert!(bound > 0.8, "gsp reuse bound {bound}");
        let decode = default_shape(DatasetName::DecodeHeavy).workload(500, 1, &SimTokenizer::Approximate);
        assert!(reuse_bound(&decode) < 0.02);
    }

    #[test]
    fn gsp_prompts_start_with_their_groups_system_prompt_and_groups_share_no_prefix() {
        let shape = Shape::SharedPrefix(SharedPrefix {
            num_groups: 6,
            prompts_per_group: 20,
            system_prompt_len: 300,
            question_len: 20,
            output_len: 64,
        });
        let requests = shape.requests(1_000, 3);
        assert_eq!(requests.len(), 120, "groups × prompts per group, --num-prompts ignored");
        let mut systems: Vec<Option<String>> = vec![None; 6];
        for r in &requests {
            let (role, system) = &r.messages[0];
            assert_eq!(role, "system");
            let known = systems[r.group].get_or_insert_with(|| system.clone());
            assert_eq!(known, system, "one system prompt per group");
            assert!(r.prompt.starts_with(&format!("{system}\n")));
            assert_eq!(r.output_len, 64);
        }
        let systems: Vec<String> = systems.into_iter().map(Option::unwrap).collect();
        for (i, a) in systems.iter().enumerate() {
            for b in &systems[i + 1..] {
                assert!(common_prefix(a, b) < 8, "{:?} / {:?}", &a[..20], &b[..20]);
            }
        }
        for a in &requests {
            for b in requests.iter().filter(|b| b.group != a.group) {
                assert!(common_prefix(&a.prompt, &b.prompt) < 8);
            }
        }
        // Questions are distinct within a group.
        let distinct: std::collections::HashSet<&str> = requests.iter().map(|r| r.prompt.as_str()).collect();
        assert_eq!(distinct.len(), requests.len());
    }

    #[test]
    fn lengths_stay_within_their_bounds() {
        let t = SimTokenizer::Approximate;
        let random = Shape::Random(Random { input_len: 1_000, output_len: 400, range_ratio: 0.5 });
        let w = random.workload(300, 2, &t);
        assert!(w.requests.iter().all(|r| (500..=1_000).contains(&r.prompt_len)));
        assert!(w.requests.iter().all(|r| (200..=400).contains(&r.output_len)));
        assert!(
            w.requests.iter().any(|r| r.prompt_len < 700) && w.requests.iter().any(|r| r.prompt_len > 800)
        );
        let fixed = Shape::Random(Random { input_len: 256, output_len: 128, range_ratio: 1.0 });
        let w = fixed.workload(50, 2, &t);
        assert!(w.requests.iter().all(|r| r.prompt_len == 256 && r.output_len == 128));
        let spread = Shape::Random(Random { input_len: 64, output_len: 64, range_ratio: 0.0 });
        assert!(spread.workload(300, 2, &t).requests.iter().all(|r| (1..=64).contains(&r.prompt_len)));

        let gsp = default_shape(DatasetName::GeneratedSharedPrefix).workload(0, 2, &t);
        assert_eq!(gsp.requests.len(), 64 * 16);
        assert_eq!(gsp.prefix_groups, 64);
        // System prompt, the newline, the question.
        assert!(gsp.requests.iter().all(|r| r.prompt_len == 2_048 + 1 + 128 && r.output_len == 256));

        let doc = default_shape(DatasetName::LongDocument).workload(200, 2, &t);
        assert_eq!(doc.requests.len(), 200);
        assert_eq!(doc.prefix_groups, 8);
        assert!(doc.requests.iter().all(|r| (6_000 + 33..=8_000 + 33).contains(&r.prompt_len)));
        assert!(doc.requests.iter().all(|r| (10..=200).contains(&r.output_len)));

        let decode = default_shape(DatasetName::DecodeHeavy).workload(300, 2, &t);
        assert!(decode.requests.iter().all(|r| (100..=300).contains(&r.prompt_len)));
        assert!(decode.requests.iter().all(|r| (500..=1_000).contains(&r.output_len)));
        assert_eq!(decode.prefix_groups, 300);
    }

    #[test]
    fn groups_arrive_interleaved_not_in_blocks() {
        let gsp = Shape::SharedPrefix(SharedPrefix {
            num_groups: 4,
            prompts_per_group: 50,
            system_prompt_len: 40,
            question_len: 5,
            output_len: 8,
        });
        let doc = Shape::LongDocument(LongDocument {
            num_documents: 4,
            min_document_len: 40,
            max_document_len: 60,
            question_len: 5,
            min_output_len: 1,
            max_output_len: 8,
        });
        for shape in [gsp, doc] {
            let requests = shape.requests(200, 5);
            // In blocks there would be 3 changes; shuffled, about 150.
            assert!(group_changes(&requests) > 100, "{shape:?}: {}", group_changes(&requests));
            // Each group appears among the first twenty requests.
            let early: std::collections::HashSet<usize> = requests[..20].iter().map(|r| r.group).collect();
            assert_eq!(early.len(), 4, "{shape:?}");
        }
    }

    #[test]
    fn long_documents_spread_requests_evenly_and_ask_distinct_questions() {
        let shape = default_shape(DatasetName::LongDocument);
        let requests = shape.requests(100, 9);
        let mut per_doc = [0; 8];
        for r in &requests {
            per_doc[r.group] += 1;
        }
        assert!(per_doc.iter().all(|&n| n == 12 || n == 13), "{per_doc:?}");
        let distinct: std::collections::HashSet<&str> = requests.iter().map(|r| r.prompt.as_str()).collect();
        assert_eq!(distinct.len(), 100);
        // Requests of one document share it whole; two documents share nothing.
        let a = &requests[0];
        let b = requests[1..].iter().find(|r| r.group == a.group).unwrap();
        let doc_a = a.prompt.rsplit_once('\n').unwrap().0;
        assert!(b.prompt.starts_with(doc_a));
        let other = requests.iter().find(|r| r.group != a.group).unwrap();
        assert!(common_prefix(&a.prompt, &other.prompt) < 8);
    }

    #[test]
    fn invalid_parameters_name_their_flag() {
        let bad = Shape::Random(Random { input_len: 10, output_len: 10, range_ratio: 1.5 });
        assert!(bad.validate().unwrap_err().to_string().contains("--random-range-ratio"));
        let bad = Shape::DecodeHeavy(DecodeHeavy {
            min_prompt_len: 300,
            max_prompt_len: 100,
            min_output_len: 1,
            max_output_len: 2,
        });
        assert!(bad.validate().unwrap_err().to_string().contains("--decode-min-prompt-len"));
        for name in SHAPES {
            default_shape(name).validate().unwrap();
        }
    }
}
