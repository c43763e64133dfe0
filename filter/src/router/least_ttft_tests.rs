//! `least_ttft` through the router: the cost model, the load bound, and
//! coherence between routers that share nothing.

use super::*;
use crate::store::MemoryStore;

const BACKENDS: [&str; 4] = ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8004"];

/// A least_ttft router over four backends, chunks of 64 characters, no
/// scraping (load = in-flight), with `extra` JSON fields.
fn router(extra: &str) -> Router {
    let backends: Vec<String> = BACKENDS.iter().map(|b| format!("\"{b}\"")).collect();
    let json = format!(
        r#"{{"policy":"least_ttft","backends":[{}],"chunk_chars":64,"chunk_growth":0,"scrape_interval_ms":0{extra}}}"#,
        backends.join(",")
    );
    Router::new(FilterConfig::from_json(json.as_bytes()).unwrap())
}

/// A prompt of about `chars` characters, unique to `tag`.
fn prompt(tag: &str, chars: usize) -> String {
    let unit = format!("{tag} says something new; ");
    unit.repeat(chars / unit.len() + 1)
}

fn count(decisions: &[Decision], backend: &str) -> usize {
    decisions.iter().filter(|d| d.backend == backend).count()
}

#[test]
fn a_held_prefix_wins_while_queues_are_even() {
    let (r, store, mut rng) = (router(""), MemoryStore::new(), fastrand::Rng::with_seed(1));
    let conversation = prompt("conv", 8_000);
    let first = r.route(&store, Some(&conversation), 0, &mut rng).unwrap();
    r.finish(&store, &first.backend);
    assert_eq!(first.reason, Reason::Rendezvous);
    // Ten seconds later the first turn's prefill has drained: the next turn
    // goes where its first 8,000 characters are.
    let next = format!("{conversation}{}", prompt("turn", 400));
    let d = r.route(&store, Some(&next), 10_000, &mut rng).unwrap();
    assert_eq!(d.backend, first.backend);
    assert_eq!(d.reason, Reason::PrefixMatch);
    assert!(d.match_ratio > 0.9, "{d:?}");
}

#[test]
fn a_long_prefill_queue_outweighs_a_held_prefix() {
    let (r, store, mut rng) = (router(""), MemoryStore::new(), fastrand::Rng::with_seed(2));
    let conversation = prompt("conv", 4_000);
    let first = r.route(&store, Some(&conversation), 0, &mut rng).unwrap();
    r.finish(&store, &first.backend);
    // 60,000 tokens of prefill land on that backend at 10 s (4 s of work at
    // the default 15,000 tokens/s): holding 1,000 tokens of the next turn
    // does not make up for waiting behind them.
    prefill_queue::add(&store, &first.backend, 60_000.0, r.config().prefill_tokens_per_s, 10_000);
    let next = format!("{conversation}{}", prompt("turn", 400));
    let d = r.route(&store, Some(&next), 10_000, &mut rng).unwrap();
    assert_ne!(d.backend, first.backend);
    assert_eq!(d.reason, Reason::LeastCost);
    // Once the queue drained, the prefix wins again.
    let d = r.route(&store, Some(&next), 20_000, &mut rng).unwrap();
    assert_eq!(d.backend, first.backend, "{d:?}");
}

#[test]
fn the_chosen_backend_is_charged_the_prefill_it_will_do() {
    let (r, store, mut rng) = (router(""), MemoryStore::new(), fastrand::Rng::with_seed(3));
    let text = prompt("charge", 4_000);
    let d = r.route(&store, Some(&text), 0, &mut rng).unwrap();
    let rate = r.config().prefill_tokens_per_s;
    let queued = prefill_queue::queued(&store, &d.backend, rate, 0);
    // Every character is uncached: about 4,000 / chars_per_token tokens.
    let expected = text.chars().count() as f64 / r.config().chars_per_token;
    assert!((queued - expected).abs() < 1.0, "{queued} vs {expected}");
    // Once that drained, the same prompt is matched whole there: nothing
    // more to prefill.
    r.finish(&store, &d.backend);
    let again = r.route(&store, Some(&text), 10_000, &mut rng).unwrap();
    assert_eq!(again.backend, d.backend);
    assert!(prefill_queue::queued(&store, &d.backend, rate, 10_000) < 64.0);
}

#[test]
fn a_hot_prefix_gives_way_at_the_load_bound() {
    // No prefill queue to spread by (an unbounded rate drains it at once)
    // and no tolerance: only the bound moves a request off the prefix.
    let (r, store, mut rng) = (
        router(r#","prefill_tokens_per_s":1e300,"tolerance_tokens":0,"queue_tokens":0"#),
        MemoryStore::new(),
        fastrand::Rng::with_seed(4),
    );
    let system = prompt("one system prompt for all users", 6_000);
    let decisions: Vec<Decision> = (0..20)
        .map(|i| r.route(&store, Some(&format!("{system}question {i}")), 1_000 + i, &mut rng).unwrap())
        .collect();
    // At most ceil(1.25 × 20 / 4) = 7 each while all are in flight, and the
    // backend holding the prefix carries the most of it.
    let counts: Vec<usize> = BACKENDS.iter().map(|b| count(&decisions, b)).collect();
    assert!(counts.iter().all(|&n| n <= 7), "{counts:?}");
    assert_eq!(count(&decisions, &decisions[0].backend), 7, "{counts:?}");
    // Without the bound (a huge slack) affinity keeps all of it on one.
    let (r, store) = (
        router(r#","prefill_tokens_per_s":1e300,"tolerance_tokens":0,"queue_tokens":0,"load_slack":1000"#),
        MemoryStore::new(),
    );
    let decisions: Vec<Decision> = (0..20)
        .map(|i| r.route(&store, Some(&format!("{system}question {i}")), 1_000 + i, &mut rng).unwrap())
        .collect();
    assert_eq!(count(&decisions, &decisions[0].backend), 20);
}

#[test]
fn routers_sharing_nothing_place_new_conversations_alike() {
    let (a, b) = (router(""), router(""));
    let (store_a, store_b) = (MemoryStore::new(), MemoryStore::new());
    let (mut rng_a, mut rng_b) = (fastrand::Rng::with_seed(5), fastrand::Rng::with_seed(6));
    // Different histories: each router has routed other traffic.
    for i in 0..30 {
        for (r, store, rng, tag) in [(&a, &store_a, &mut rng_a, "a"), (&b, &store_b, &mut rng_b, "b")] {
            let d = r.route(store, Some(&prompt(&format!("{tag} history {i}"), 3_000)), i, rng).unwrap();
            r.finish(store, &d.backend);
        }
    }
    // Later, once those prefills drained, new conversations reach either one.
    let mut agree = 0;
    let mut spread = [0usize; 4];
    for i in 0..40u64 {
        let text = prompt(&format!("new conversation {i}"), 3_000);
        let now = 60_000 + i * 1_000;
        let da = a.route(&store_a, Some(&text), now, &mut rng_a).unwrap();
        let db = b.route(&store_b, Some(&text), now, &mut rng_b).unwrap();
        a.finish(&store_a, &da.backend);
        b.finish(&store_b, &db.backend);
        agree += usize::from(da.backend == db.backend);
        if let Some(k) = BACKENDS.iter().position(|x| *x == da.backend) {
            spread[k] += 1;
        }
    }
    assert_eq!(agree, 40);
    // And the hash spreads them: every backend gets some.
    assert!(spread.iter().all(|&n| n >= 4), "{spread:?}");
}
