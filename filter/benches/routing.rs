//! One routing decision (snapshot, match, insert, in-flight count) on an
//! index holding 100k prefixes over 8 backends, for 1k, 8k and 32k-character
//! prompts that share half their text with an earlier prompt.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prefixgate_filter::store::MemoryStore;
use prefixgate_filter::{FilterConfig, Router};
use std::hint::black_box;

const BACKENDS: usize = 8;
/// Prefixes (index chunks) held before measuring.
const PREFIXES: usize = 100_000;

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
    let backends: Vec<String> = (0..BACKENDS).map(|i| format!("\"10.0.0.{}:8000\"", i + 1)).collect();
    let json = format!(r#"{{"backends":[{}],"index_slots":262144}}"#, backends.join(","));
    match FilterConfig::from_json(json.as_bytes()) {
        Ok(config) => Router::new(config),
        Err(e) => panic!("bench config: {e}"),
    }
}

fn decision(c: &mut Criterion) {
    let router = router();
    let store = MemoryStore::new();
    let mut rng = fastrand::Rng::with_seed(1);
    // Fill: 8k-character prompts are 125 chunks each.
    let mut seeded = 0;
    let mut seed = 0;
    while seeded < PREFIXES {
        let p = prompt(seed, 8_000);
        seeded += router.index().prompt_keys(&p).chunks();
        if let Ok(d) = router.route(&store, Some(&p), seed, &mut rng) {
            router.finish(&store, &d.backend);
        }
        seed += 1;
    }
    let mut group = c.benchmark_group("decision");
    for chars in [1_000usize, 8_000, 32_000] {
        let known = prompt(7, chars / 2);
        let queries: Vec<String> =
            (0..64).map(|i| format!("{known}{}", prompt(1_000_000 + i, chars - known.len()))).collect();
        group.throughput(Throughput::Bytes(chars as u64));
        group.bench_with_input(BenchmarkId::from_parameter(chars), &queries, |b, queries| {
            let mut i = 0;
            b.iter(|| {
                let q = &queries[i % queries.len()];
                i += 1;
                if let Ok(d) = router.route(&store, Some(black_box(q)), 1, &mut rng) {
                    router.finish(&store, &d.backend);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
