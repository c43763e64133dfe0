//! The index on a replayed chat trace: 100k prompts indexed over 8 backends,
//! then 30k decisions (snapshot, match, insert, in-flight count) timed one by
//! one, per prompt-size bucket, with the store's size, its operations per
//! decision and the picks' accuracy against an exact reference (the longest
//! common prefix with the prompts each backend received).
//!
//! The trace (`prefixgate-replay`): multi-turn conversations over 300 shared
//! system prompts, every prompt a new user message after the conversation so
//! far (a novel tail), a request every 2 ms on average. The router is the
//! default configuration (`prefix_aware`, the default index shape) on 8
//! backends; no scrape runs, so each backend's capacity is unbounded and the
//! index forgets only through its memory bound.
//!
//! `cargo bench -p prefixgate-filter --bench replay [-- --warm N --measured N --slots N --no-accuracy]`.

use prefixgate_filter::config::BackendConfig;
use prefixgate_filter::prefix_index::IndexedBackend;
use prefixgate_filter::store::CountingStore;
use prefixgate_filter::{FilterConfig, Router};
use prefixgate_replay::{Accuracy, BenchArgs, ExactIndex, Timings, Trace, TraceShape};
use std::hint::black_box;
use std::time::Instant;

const BACKENDS: usize = 8;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects benches by
    // name, and this one runs only when it names "replay" or nothing.
    let Some(args) = BenchArgs::selected("replay", &["--warm", "--measured", "--slots"]) else {
        return;
    };
    let warm = args.count("--warm", 100_000);
    let measured = args.count("--measured", 30_000);
    let slots = args.count("--slots", 0);
    println!("replay: {warm} prompts indexed, then {measured} decisions over {BACKENDS} backends");
    // Timed and scored in two passes over the same trace (the router's
    // choices are deterministic): scoring reads the index before each
    // decision, which would warm the very memory the decision then reads.
    let timed = replay(warm, measured, slots, false);
    print!("{}", timed.timings);
    println!(
        "store: {:.1} MiB held ({} keys), bound {:.1} MiB; per decision {:.1} reads, {:.1} writes",
        timed.bytes as f64 / (1 << 20) as f64,
        timed.keys,
        timed.bound as f64 / (1 << 20) as f64,
        timed.gets as f64 / measured as f64,
        timed.sets as f64 / measured as f64,
    );
    if !args.has("--no-accuracy") {
        let scored = replay(warm, measured, slots, true);
        println!("accuracy: {}", scored.accuracy);
    }
}

/// What one pass over the trace measured.
struct Pass {
    timings: Timings,
    accuracy: Accuracy,
    /// Store operations during the measured decisions.
    gets: usize,
    sets: usize,
    /// The store's footprint and key count at the end, and the index's bound.
    bytes: usize,
    keys: usize,
    bound: usize,
}

/// Indexes `warm` prompts, then decides `measured` more, timing each
/// decision, or scoring it against the exact reference when `score`; with
/// `slots` index slots, or the default for 0.
fn replay(warm: usize, measured: usize, slots: usize, score: bool) -> Pass {
    let names: Vec<String> = (0..BACKENDS).map(|i| format!("10.0.0.{}:8000", i + 1)).collect();
    let mut config = FilterConfig::new(names.iter().cloned().map(BackendConfig::Address).collect());
    if slots > 0 {
        config.index_slots = u32::try_from(slots).unwrap_or(u32::MAX);
    }
    if let Err(e) = config.validate() {
        panic!("replay config: {e}");
    }
    let router = Router::new(config);
    let store = CountingStore::default();
    router.on_configure(&store);
    let backends: Vec<IndexedBackend<'_>> =
        names.iter().map(|n| IndexedBackend { name: n, capacity_chars: u64::MAX }).collect();
    let shape = router.index().shape().clone();
    let chunk_at =
        |offset: usize| shape.chunk_chars.max((offset as f64 * shape.chunk_growth) as usize).max(1);
    let mut exact = ExactIndex::new(BACKENDS);
    let mut rng = fastrand::Rng::with_seed(1);
    let mut timings = Timings::default();
    let mut accuracy = Accuracy::default();
    let (mut gets, mut sets) = (0, 0);
    for (i, turn) in Trace::new(TraceShape::default()).take(warm + measured).enumerate() {
        let measuring = i >= warm;
        if measuring && score {
            let keys = router.index().prompt_keys(&turn.prompt);
            let reported = router.index().longest_match(store.inner(), &keys, &backends, turn.time_ms);
            let exact: Vec<usize> = (0..BACKENDS).map(|b| exact.longest_match(b, &turn.prompt)).collect();
            accuracy.record(&reported, &exact, chunk_at);
        }
        let ops = (store.gets.get(), store.sets.get());
        let t = Instant::now();
        let decision = router.route(&store, Some(black_box(&turn.prompt)), turn.time_ms, &mut rng);
        if let Ok(d) = &decision {
            router.finish(&store, &d.backend);
        }
        let took = t.elapsed();
        if measuring {
            timings.record(turn.prompt.len(), took);
            gets += store.gets.get() - ops.0;
            sets += store.sets.get() - ops.1;
        }
        if let (true, Ok(d)) = (score, decision) {
            let b = names.iter().position(|n| *n == d.backend).unwrap_or(0);
            exact.insert(b, turn.conversation, &turn.prompt);
        }
    }
    Pass {
        timings,
        accuracy,
        gets,
        sets,
        bytes: store.inner().byte_size(),
        keys: store.inner().len(),
        bound: router.index().max_bytes(),
    }
}
