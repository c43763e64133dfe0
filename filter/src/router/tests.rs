use super::*;
use crate::fleet::{record_scrape_failure, record_scrape_success};
use crate::in_flight::{self, LiveVms};
use crate::prefix_index::IndexedBackend;
use crate::store::MemoryStore;
use crate::vllm_metrics::VllmLoad;

const A: &str = "127.0.0.1:8001";
const B: &str = "127.0.0.1:8002";
const C: &str = "127.0.0.1:8003";

fn router(extra: &str) -> Router {
    let json = format!(r#"{{"backends":["{A}","{B}","{C}"],"chunk_chars":8,"chunk_growth":0{extra}}}"#);
    Router::new(FilterConfig::from_json(json.as_bytes()).unwrap())
}

fn rng() -> fastrand::Rng {
    fastrand::Rng::with_seed(42)
}

fn set_load(store: &MemoryStore, address: &str, queued: u64) {
    let load = VllmLoad { running: queued as f64, ..Default::default() };
    record_scrape_success(store, address, load, 0);
}

/// A prompt of `n` chunks, unique to `tag`.
fn prompt(tag: &str, n: usize) -> String {
    (0..n).map(|i| format!("{tag:>4}{i:04}")).collect()
}

fn route(r: &Router, store: &MemoryStore, prompt: Option<&str>, rng: &mut fastrand::Rng) -> Decision {
    let d = r.route(store, prompt, 0, rng).unwrap();
    r.finish(store, &d.backend);
    d
}

#[test]
fn balanced_load_and_a_matching_prefix_follow_the_prefix() {
    let (r, store, mut rng) = (router(""), MemoryStore::new(), rng());
    let p = prompt("conv", 10);
    let first = route(&r, &store, Some(&p), &mut rng);
    assert_eq!(first.reason, Reason::SmallestTenant);
    for turn in 0..5 {
        let longer = format!("{p}{}", prompt(&format!("t{turn}"), 3));
        let d = route(&r, &store, Some(&longer), &mut rng);
        assert_eq!(d.backend, first.backend);
        assert_eq!(d.reason, Reason::PrefixMatch);
        assert!(d.match_ratio >= 10.0 / 13.0 - 1e-9, "{d:?}");
    }
}

#[test]
fn a_match_below_threshold_goes_to_the_smallest_tenant() {
    let (r, store, mut rng) = (router(r#","match_rate_threshold":0.5"#), MemoryStore::new(), rng());
    // A holds a lot of text, B a little, C nothing.
    r.index().insert(
        &store,
        &r.index().prompt_keys(&prompt("big", 20)),
        IndexedBackend { name: A, capacity_chars: u64::MAX },
        0,
    );
    r.index().insert(
        &store,
        &r.index().prompt_keys(&prompt("small", 2)),
        IndexedBackend { name: B, capacity_chars: u64::MAX },
        0,
    );
    // 4 of 10 chunks match on A: 40% < 50%.
    let q = format!("{}{}", prompt("big", 4), prompt("new", 6));
    let d = route(&r, &store, Some(&q), &mut rng);
    assert_eq!(d.reason, Reason::SmallestTenant);
    assert_eq!(d.backend, C);
    assert!((d.match_ratio - 0.4).abs() < 1e-9, "{d:?}");
}

#[test]
fn least_loaded_miss_policy_ignores_tenant_size() {
    let (r, store, mut rng) = (router(r#","miss_policy":"least_loaded""#), MemoryStore::new(), rng());
    r.index().insert(
        &store,
        &r.index().prompt_keys(&prompt("big", 20)),
        IndexedBackend { name: A, capacity_chars: u64::MAX },
        0,
    );
    set_load(&store, B, 3);
    set_load(&store, C, 2);
    let d = route(&r, &store, Some(&prompt("fresh", 5)), &mut rng);
    assert_eq!((d.reason, d.backend.as_str()), (Reason::LeastLoaded, A));
}

#[test]
fn imbalance_above_threshold_falls_back_to_pow2() {
    let (r, store, mut rng) = (router(r#","imbalanced_threshold":5"#), MemoryStore::new(), rng());
    let p = prompt("conv", 10);
    let home = route(&r, &store, Some(&p), &mut rng).backend;
    set_load(&store, &home, 20);
    for _ in 0..50 {
        let d = route(&r, &store, Some(&p), &mut rng);
        assert_eq!(d.reason, Reason::Imbalanced);
        // pow2 over a pair containing the overloaded home never picks it.
        assert_ne!(d.backend, home);
    }
    // At exactly the threshold the load counts as balanced (strictly greater).
    set_load(&store, &home, 5);
    assert_eq!(route(&r, &store, Some(&p), &mut rng).reason, Reason::PrefixMatch);
}

#[test]
fn backends_tied_on_the_match_go_to_the_least_loaded() {
    let (r, store, mut rng) = (router(""), MemoryStore::new(), rng());
    let p = prompt("shared", 6);
    for b in [A, B, C] {
        r.index().insert(
            &store,
            &r.index().prompt_keys(&p),
            IndexedBackend { name: b, capacity_chars: u64::MAX },
            0,
        );
    }
    set_load(&store, A, 4);
    set_load(&store, B, 1);
    set_load(&store, C, 3);
    let d = route(&r, &store, Some(&p), &mut rng);
    assert_eq!((d.reason, d.backend.as_str()), (Reason::PrefixMatch, B));
    assert_eq!(d.load, 1);
}

#[test]
fn unhealthy_backends_are_never_chosen() {
    for policy in ["round_robin", "pow2", "prefix_aware"] {
        let (r, store, mut rng) = (router(&format!(r#","policy":"{policy}""#)), MemoryStore::new(), rng());
        for _ in 0..3 {
            record_scrape_failure(&store, B);
        }
        for i in 0..60 {
            let d = route(&r, &store, Some(&prompt(&format!("p{i}"), 3)), &mut rng);
            assert_ne!(d.backend, B, "{policy}");
        }
    }
}

#[test]
fn no_healthy_backend_is_an_error() {
    let (r, store, mut rng) = (router(""), MemoryStore::new(), rng());
    for b in [A, B, C] {
        for _ in 0..3 {
            record_scrape_failure(&store, b);
        }
    }
    assert_eq!(
        r.route(&store, Some("x"), 0, &mut rng),
        Err(RouteError::NoHealthyBackend { configured: 3, eligible: 3 })
    );
}

#[test]
fn no_prompt_goes_to_pow2() {
    let (r, store, mut rng) = (router(""), MemoryStore::new(), rng());
    set_load(&store, A, 9);
    set_load(&store, B, 9);
    let d = route(&r, &store, None, &mut rng);
    assert_eq!((d.reason, d.backend.as_str()), (Reason::NoPrompt, C));
    assert_eq!(route(&r, &store, Some(""), &mut rng).reason, Reason::NoPrompt);
}

#[test]
fn a_backend_added_later_starts_empty_and_attracts_misses() {
    let store = MemoryStore::new();
    let mut rng = rng();
    let two = Router::new(
        FilterConfig::from_json(format!(r#"{{"backends":["{A}","{B}"],"chunk_chars":8}}"#).as_bytes())
            .unwrap(),
    );
    for i in 0..10 {
        route(&two, &store, Some(&prompt(&format!("old{i}"), 4)), &mut rng);
    }
    let three = router("");
    three.on_configure(&store);
    for i in 0..3 {
        let d = route(&three, &store, Some(&prompt(&format!("new{i}"), 4)), &mut rng);
        assert_eq!((d.reason, d.backend.as_str()), (Reason::SmallestTenant, C), "miss {i}");
    }
}

#[test]
fn a_removed_backend_stops_matching() {
    let store = MemoryStore::new();
    let mut rng = rng();
    let three = router("");
    three.on_configure(&store);
    let p = prompt("conv", 8);
    let home = route(&three, &store, Some(&p), &mut rng).backend;
    let rest: Vec<&str> = [A, B, C].into_iter().filter(|b| *b != home).collect();
    for (i, b) in rest.iter().enumerate() {
        let other = three.index().prompt_keys(&prompt(&format!("other{i}"), 2));
        three.index().insert(&store, &other, IndexedBackend { name: b, capacity_chars: u64::MAX }, 0);
    }
    let without = Router::new(
        FilterConfig::from_json(
            format!(r#"{{"backends":["{}","{}"],"chunk_chars":8}}"#, rest[0], rest[1]).as_bytes(),
        )
        .unwrap(),
    );
    assert_eq!(without.on_configure(&store), vec![home.clone()]);
    let back = router("");
    back.on_configure(&store);
    let d = route(&back, &store, Some(&p), &mut rng);
    assert_eq!(d.reason, Reason::SmallestTenant, "{d:?}");
    assert_eq!(d.backend, home, "the re-added backend is empty again, hence the smallest tenant");
}

#[test]
fn round_robin_cycles_through_healthy_backends() {
    let (r, store, mut rng) = (router(r#","policy":"round_robin""#), MemoryStore::new(), rng());
    let picks: Vec<String> = (0..6).map(|_| route(&r, &store, None, &mut rng).backend).collect();
    assert_eq!(picks, [A, B, C, A, B, C]);
}

#[test]
fn in_flight_requests_count_as_load() {
    let (r, store, mut rng) = (router(r#","policy":"pow2""#), MemoryStore::new(), rng());
    // Another VM has a request in flight on A and on B.
    in_flight::heartbeat(&store, 9, 0, 500);
    in_flight::begin(&store, A, 9, &LiveVms::default(), None);
    in_flight::begin(&store, B, 9, &LiveVms::default(), None);
    let d = r.route(&store, None, 0, &mut rng).unwrap();
    assert_eq!(d.backend, C);
    let in_flight =
        |address: &str| r.snapshot(&store, 0).into_iter().find(|b| b.address == address).unwrap().in_flight;
    assert_eq!((in_flight(A), in_flight(C)), (1, 1));
    r.finish(&store, C);
    assert_eq!(in_flight(C), 0);
}

#[test]
fn requests_in_flight_on_a_vm_that_died_stop_counting_within_one_scrape_interval() {
    let store = MemoryStore::new();
    let (dying, survivor) = (router(r#","policy":"round_robin""#).in_vm(1), router("").in_vm(2));
    let mut rng = rng();
    for _ in 0..6 {
        dying.route(&store, None, 0, &mut rng).unwrap();
    }
    survivor.heartbeat(&store, 0);
    let loads = |now| survivor.snapshot(&store, now).iter().map(|b| b.in_flight).collect::<Vec<_>>();
    assert_eq!(loads(100), [2, 2, 2]);
    // VM 1 traps: no on_log, no more ticks. The survivor keeps ticking.
    survivor.heartbeat(&store, 250);
    let expiry = survivor.config().vm_expiry_ms();
    assert_eq!(expiry, survivor.config().scrape_interval_ms);
    assert_eq!(loads(expiry), [0, 0, 0]);
}

#[test]
fn a_failing_backend_is_ejected_then_probed_then_readmitted() {
    let (r, store, mut rng) = (router(r#","policy":"round_robin""#), MemoryStore::new(), rng());
    for _ in 0..5 {
        r.record_outcome(&store, B, 500, 0);
    }
    let picks = |now, rng: &mut fastrand::Rng| {
        (0..6).map(|_| r.route(&store, None, now, rng).unwrap().backend).collect::<Vec<_>>()
    };
    assert!(!picks(10, &mut rng).contains(&B.to_owned()), "ejected for ejection_ms");
    // After 5 s, B takes exactly one probe until its outcome is known.
    let probing = picks(5_000, &mut rng);
    assert_eq!(probing.iter().filter(|b| *b == B).count(), 1, "{probing:?}");
    // The probe succeeds: B is back in the rotation.
    r.record_outcome(&store, B, 200, 5_001);
    assert_eq!(picks(5_002, &mut rng).iter().filter(|b| *b == B).count(), 2);
}

#[test]
fn a_failed_probe_ejects_for_longer() {
    let (r, store, mut rng) = (router(r#","policy":"round_robin""#), MemoryStore::new(), rng());
    for _ in 0..5 {
        r.record_outcome(&store, B, 503, 0);
    }
    r.record_outcome(&store, B, 502, 5_000);
    let picks = |now, rng: &mut fastrand::Rng| {
        (0..6).map(|_| r.route(&store, None, now, rng).unwrap().backend).collect::<Vec<_>>()
    };
    assert!(!picks(14_999, &mut rng).contains(&B.to_owned()), "second ejection lasts 10 s");
    assert!(picks(15_000, &mut rng).contains(&B.to_owned()));
}

#[test]
fn successes_on_a_clean_backend_write_nothing_and_4xx_is_no_failure() {
    let (r, store) = (router(""), crate::store::CountingStore::default());
    for _ in 0..10 {
        r.record_outcome(&store, A, 200, 0);
        r.record_outcome(&store, A, 429, 0);
    }
    assert_eq!(store.sets.get(), 0);
}

#[test]
fn a_success_between_failures_resets_the_count() {
    let (r, store, mut rng) = (router(r#","policy":"round_robin""#), MemoryStore::new(), rng());
    // Four failures, a success (of a request routed before the first failure),
    // four more failures: never five in a row, so never ejected.
    for status in [500, 500, 500, 500, 200, 500, 500, 500, 500] {
        r.record_outcome(&store, B, status, 0);
    }
    let picks: Vec<String> = (0..6).map(|_| r.route(&store, None, 1, &mut rng).unwrap().backend).collect();
    assert_eq!(picks.iter().filter(|b| *b == B).count(), 2, "{picks:?}");
}

#[test]
fn when_every_backend_is_ejected_requests_still_flow() {
    let (r, store, mut rng) = (router(""), MemoryStore::new(), rng());
    for backend in [A, B, C] {
        for _ in 0..5 {
            r.record_outcome(&store, backend, 500, 0);
        }
    }
    assert!(r.route(&store, Some(&prompt("p", 3)), 10, &mut rng).is_ok());
}

#[test]
fn decision_header_names_policy_reason_and_ratio() {
    let d = Decision {
        backend: A.to_owned(),
        policy: PolicyKind::PrefixAware,
        reason: Reason::PrefixMatch,
        match_ratio: 0.8333,
        load: 2,
        fallbacks: vec![B.to_owned(), C.to_owned()],
        keys: None,
    };
    assert_eq!(d.header_value(), "policy=prefix_aware; reason=prefix_match; match=0.83; load=2");
    assert_eq!(d.upstream_value(), format!("{A},{B},{C}"));
}

#[test]
fn all_workers_see_one_index() {
    // Two workers: two routers (two VMs) over the same shared data.
    let store = MemoryStore::new();
    let (worker_a, worker_b) = (router(""), router(""));
    let (mut rng_a, mut rng_b) = (fastrand::Rng::with_seed(1), fastrand::Rng::with_seed(2));
    let p = prompt("conv", 12);
    let home = route(&worker_a, &store, Some(&p), &mut rng_a).backend;
    for _ in 0..10 {
        let d = route(&worker_b, &store, Some(&p), &mut rng_b);
        assert_eq!((d.reason, d.backend.as_str()), (Reason::PrefixMatch, home.as_str()));
    }
}

#[test]
fn a_configuration_swap_keeps_the_index() {
    let store = MemoryStore::new();
    let mut rng = rng();
    let before = router(r#","policy":"pow2""#);
    before.on_configure(&store);
    let p = prompt("conv", 12);
    let home = route(&before, &store, Some(&p), &mut rng).backend;
    // New policy and thresholds, same backends: the index is untouched.
    let after = router(r#","match_rate_threshold":0.2,"version":"v2""#);
    assert!(after.on_configure(&store).is_empty());
    let d = route(&after, &store, Some(&p), &mut rng);
    assert_eq!((d.reason, d.backend.as_str()), (Reason::PrefixMatch, home.as_str()));
}

#[test]
fn only_the_head_of_a_huge_prompt_is_matched() {
    let (r, store, mut rng) = (router(r#","max_prompt_chars":80"#), MemoryStore::new(), rng());
    let head = prompt("head", 10); // exactly 80 characters
    let first = route(&r, &store, Some(&format!("{head}{}", prompt("tail-a", 500))), &mut rng);
    let second = route(&r, &store, Some(&format!("{head}{}", prompt("tail-b", 500))), &mut rng);
    assert_eq!((second.reason, second.backend.as_str()), (Reason::PrefixMatch, first.backend.as_str()));
    assert_eq!(second.match_ratio, 1.0);
    assert_eq!(super::head("héllo", 2), "hé");
    assert_eq!(super::head("abc", 10), "abc");
}

#[test]
fn no_fallbacks_unless_configured() {
    let (r, store, mut rng) = (router(""), MemoryStore::new(), rng());
    let d = route(&r, &store, None, &mut rng);
    assert!(d.fallbacks.is_empty());
    assert_eq!(d.upstream_value(), d.backend);
}

#[test]
fn fallbacks_are_the_least_loaded_other_available_backends() {
    let (r, store, mut rng) =
        (router(r#","upstream_fallbacks":2,"policy":"round_robin""#), MemoryStore::new(), rng());
    set_load(&store, A, 9);
    set_load(&store, B, 1);
    set_load(&store, C, 4);
    for _ in 0..6 {
        let d = route(&r, &store, None, &mut rng);
        let expected: Vec<&str> = [B, C, A].into_iter().filter(|b| *b != d.backend).collect();
        assert_eq!(d.fallbacks, expected, "{d:?}");
    }
    // An ejected backend is never a fallback.
    for _ in 0..5 {
        r.record_outcome(&store, B, 503, 0);
    }
    for _ in 0..6 {
        let d = route(&r, &store, None, &mut rng);
        assert!(!d.fallbacks.iter().any(|f| f == B) && d.backend != B, "{d:?}");
        assert_eq!(d.fallbacks.len(), 1, "{d:?}");
    }
}

#[test]
fn a_subset_hint_confines_the_pick() {
    let (r, store, mut rng) = (router(r#","policy":"round_robin""#), MemoryStore::new(), rng());
    for _ in 0..6 {
        let d = r.route_within(&store, None, Some(&[C, "10.9.9.9:1"]), 0, &mut rng).unwrap();
        r.finish(&store, &d.backend);
        assert_eq!(d.backend, C);
    }
    // Nothing eligible: an error, not a pick outside the subset.
    let none = r.route_within(&store, None, Some(&["10.9.9.9:1"]), 0, &mut rng).unwrap_err();
    assert_eq!(none, RouteError::NoHealthyBackend { configured: 3, eligible: 0 });
    assert!(r.route_within(&store, None, Some(&[]), 0, &mut rng).is_err());
    // An unhealthy member leaves nothing either.
    for _ in 0..3 {
        record_scrape_failure(&store, C);
    }
    let unhealthy = r.route_within(&store, None, Some(&[C]), 1, &mut rng).unwrap_err();
    assert!(matches!(unhealthy, RouteError::NoHealthyBackend { eligible: 1, .. }), "{unhealthy:?}");
}

#[test]
fn credit_moves_a_prompt_to_the_backend_that_served() {
    let (r, store, mut rng) = (router(""), MemoryStore::new(), rng());
    let p = prompt("retried", 8);
    let d = route(&r, &store, Some(&p), &mut rng);
    let served = [A, B, C].into_iter().find(|b| *b != d.backend).unwrap();
    r.credit(&store, &d, served, 1);
    let holders: Vec<String> = (0..12)
        .map(|_| {
            let again = route(&r, &store, Some(&p), &mut rng);
            assert_eq!(again.reason, Reason::PrefixMatch, "{again:?}");
            again.backend
        })
        .collect();
    assert!(holders.iter().all(|h| h == &d.backend || h == served), "{holders:?}");
    assert!(holders.iter().any(|h| h == served), "the served backend never matched: {holders:?}");
}

#[test]
fn prompts_shorter_than_a_chunk_spread_over_the_smallest_tenants() {
    // Ray's tree counts every character a replica received, so distinct
    // short prompts spread; a count of whole chunks only would see every
    // backend empty forever and send them all to the first tie.
    let json = format!(r#"{{"backends":["{A}","{B}","{C}"],"chunk_chars":64,"scrape_interval_ms":0}}"#);
    let r = Router::new(FilterConfig::from_json(json.as_bytes()).unwrap());
    let (store, mut rng) = (MemoryStore::new(), rng());
    let mut counts = std::collections::HashMap::new();
    for i in 0..30 {
        let d = route(&r, &store, Some(&format!("a distinct short prompt #{i:04}")), &mut rng);
        assert_eq!(d.reason, Reason::SmallestTenant);
        *counts.entry(d.backend).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| (8..=12).contains(&n)), "{counts:?}");
}

#[test]
fn no_policy_picks_a_backend_at_its_cap_and_a_full_fleet_gets_429() {
    for policy in PolicyKind::ALL {
        let extra = format!(
            r#","policy":"{policy}","max_ongoing_requests":2,"scrape_interval_ms":0,"backends":["{A}",{{"address":"{B}","max_ongoing_requests":1}},"{C}"]"#
        );
        let json = format!(r#"{{"chunk_chars":8{extra}}}"#);
        let r = Router::new(FilterConfig::from_json(json.as_bytes()).unwrap());
        let (store, mut rng) = (MemoryStore::new(), rng());
        // The same prompt every time, never finished: affinity would pile
        // it onto one backend.
        let p = prompt("hot", 10);
        let picks: Vec<Decision> = (0..5).map(|_| r.route(&store, Some(&p), 0, &mut rng).unwrap()).collect();
        let on = |b: &str| picks.iter().filter(|d| d.backend == b).count();
        assert_eq!((on(A), on(B), on(C)), (2, 1, 2), "{policy}");
        assert_eq!(
            r.route(&store, Some(&p), 0, &mut rng),
            Err(RouteError::AtCapacity { available: 3 }),
            "{policy}"
        );
        assert_eq!(RouteError::AtCapacity { available: 3 }.status(), 429);
        // One finishes: there is room again, on that backend.
        r.finish(&store, B);
        assert_eq!(r.route(&store, Some(&p), 0, &mut rng).map(|d| d.backend), Ok(B.to_owned()), "{policy}");
    }
}
