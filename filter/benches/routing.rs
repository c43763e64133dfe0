//! One routing decision (snapshot, match, insert, in-flight count) over 8
//! backends, for 1k, 8k and 32k-character prompts whose first half is a
//! prefix the index already holds, in the cases users meet:
//!
//! - `decision_repeated/*`: 64 prompts taken in turn on an index holding 100k
//!   prefixes, the clock frozen. After the first pass every prompt matches
//!   whole and its insert writes nothing: the cheapest case, a hot prefix
//!   asked again within a second.
//! - `decision_novel_suffix/*`: every prompt has a tail never seen before,
//!   so the decision writes a new branch of the index (one slot per new
//!   chunk), as a new turn of a conversation does.
//! - `decision_advancing_clock/*`: the 64 prompts again, but 20 ms pass
//!   between requests, so each prompt comes back 1.28 s after its last
//!   insert and its entries are rewritten (they are refreshed once a second).
//! - `decision_cold_index/*`: a fresh, empty index for every request (after
//!   a restart, or a fleet just configured): nothing matches and every chunk
//!   is written.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use prefixgate_filter::config::BackendConfig;
use prefixgate_filter::store::MemoryStore;
use prefixgate_filter::{FilterConfig, Router};
use std::hint::black_box;

const BACKENDS: usize = 8;
/// Prefixes (index chunks) held before measuring.
const PREFIXES: usize = 100_000;
/// Prompt lengths measured, in characters.
const SIZES: [usize; 3] = [1_000, 8_000, 32_000];
/// Prompts taken in turn by the cases that repeat them.
const REPEATED: u64 = 64;
/// Milliseconds between two requests when the clock advances.
const STEP_MS: u64 = 20;

fn prompt(seed: u64, chars: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let words = ["the ", "cache ", "prefix ", "router ", "token ", "replica ", "block ", "load "];
    let mut s = String::with_capacity(chars + 8);
    while s.len() < chars {
        s.push_str(words[rng.usize(..words.len())]);
    }
    s.truncate(chars);
    s
}

fn router() -> Router {
    let backends = (0..BACKENDS).map(|i| BackendConfig::Address(format!("10.0.0.{}:8000", i + 1))).collect();
    let config = FilterConfig::new(backends);
    if let Err(e) = config.validate() {
        panic!("bench config: {e}");
    }
    Router::new(config)
}

/// One decision and the end of its request, as a host makes them.
fn decide(router: &Router, store: &MemoryStore, prompt: &str, now_ms: u64, rng: &mut fastrand::Rng) {
    if let Ok(d) = router.route(store, Some(black_box(prompt)), now_ms, rng) {
        router.finish(store, &d.backend);
    }
}

/// A configured store whose index holds [`PREFIXES`] chunks of 8k-character
/// prompts (31 chunks each: 64 characters up to 512, then each an eighth of
/// the text before it).
fn filled_store(router: &Router, rng: &mut fastrand::Rng) -> MemoryStore {
    let store = MemoryStore::new();
    router.on_configure(&store);
    let (mut seeded, mut seed) = (0, 0);
    while seeded < PREFIXES {
        let p = prompt(seed, 8_000);
        seeded += router.index().prompt_keys(&p).chunks();
        decide(router, &store, &p, 1, rng);
        seed += 1;
    }
    store
}

/// A prompt of `chars` characters: the shared first half, then tail `tail`.
fn query(known: &str, chars: usize, tail: u64) -> String {
    format!("{known}{}", prompt(1_000_000 + tail, chars - known.len()))
}

/// The [`REPEATED`] prompts in turn, the clock advancing `step_ms` before
/// each request (0: frozen).
fn repeated(c: &mut Criterion, name: &str, step_ms: u64, router: &Router, store: &MemoryStore) {
    let mut rng = fastrand::Rng::with_seed(2);
    let mut group = c.benchmark_group(name);
    let mut now = 1;
    for chars in SIZES {
        let known = prompt(7, chars / 2);
        let queries: Vec<String> = (0..REPEATED).map(|i| query(&known, chars, i)).collect();
        group.throughput(Throughput::Bytes(chars as u64));
        group.bench_with_input(BenchmarkId::from_parameter(chars), &queries, |b, queries| {
            let mut i = 0;
            b.iter(|| {
                now += step_ms;
                decide(router, store, &queries[i % queries.len()], now, &mut rng);
                i += 1;
            })
        });
    }
    group.finish();
}

/// Prompts whose tails no earlier request had, on `store`, or with `None` on
/// a fresh, configured and empty store for every request. `tail` numbers the
/// tails, so no two requests of the run share one.
fn novel(c: &mut Criterion, name: &str, router: &Router, store: Option<&MemoryStore>, tail: &mut u64) {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut group = c.benchmark_group(name);
    for chars in SIZES {
        let known = prompt(7, chars / 2);
        group.throughput(Throughput::Bytes(chars as u64));
        group.bench_function(BenchmarkId::from_parameter(chars), |b| {
            b.iter_batched_ref(
                || {
                    *tail += 1;
                    let empty = store.is_none().then(|| {
                        let empty = MemoryStore::new();
                        router.on_configure(&empty);
                        empty
                    });
                    (empty, query(&known, chars, *tail))
                },
                |(empty, q)| {
                    if let Some(store) = empty.as_ref().or(store) {
                        decide(router, store, q, 1, &mut rng);
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn decision(c: &mut Criterion) {
    let router = router();
    let store = filled_store(&router, &mut fastrand::Rng::with_seed(1));
    let mut tail = REPEATED;
    repeated(c, "decision_repeated", 0, &router, &store);
    novel(c, "decision_novel_suffix", &router, Some(&store), &mut tail);
    repeated(c, "decision_advancing_clock", STEP_MS, &router, &store);
    novel(c, "decision_cold_index", &router, None, &mut tail);
}

criterion_group!(benches, decision);
criterion_main!(benches);
