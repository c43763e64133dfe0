//! Where requests go: affinity, the baselines, load from the scrapes, the
//! single poller, input the filter cannot read, long streams.

use super::{cache_hits, start, FAST};
use prefixgate_tests::client::Client;
use prefixgate_tests::fleet::{served, sim_queued, start_fleet};
use prefixgate_tests::scenarios::{self, eventually, routed_to};
use prefixgate_tests::{Host, Proxy, RunningProxy};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Groups sharing a long prefix stay each on one replica (on Envoy, across
/// both worker threads), are spread over replicas, and the replicas confirm
/// it: each group's later requests hit the cache where the group lives.
pub async fn prefix_groups_stay_on_one_replica_and_hit_its_cache(host: Host) {
    let fleet = start_fleet(4, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = start(host, &addrs, "prefix_aware", &[]).await;
    let placement = scenarios::affinity(&proxy, &addrs, 8, 6).await.unwrap();
    if let Some(envoy) = proxy.envoy() {
        // Both workers served connections, so both VMs routed with one index.
        for worker in 0..2 {
            let accepted = envoy.stat(&format!("worker_{worker}.downstream_cx_total")).await.unwrap();
            assert!(accepted > 0, "worker {worker} accepted no connection");
        }
    }
    // The groups were spread (smallest tenant on a miss), not piled on one.
    let distinct: BTreeSet<_> = placement.iter().collect();
    assert!(distinct.len() >= 2, "every group went to one replica: {placement:?}");
    for &replica in &distinct {
        assert!(cache_hits(addrs[*replica]).await > 0.0, "replica {replica} saw no prefix-cache hit");
    }
    drop(proxy);
    fleet.shutdown().await;
}

/// `round_robin` cycles over the replicas; `pow2` spreads concurrent load.
pub async fn round_robin_cycles_and_pow2_spreads(host: Host) {
    let fleet = start_fleet(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = start(host, &addrs, "round_robin", &[]).await;
    scenarios::round_robin_cycles(&proxy, &addrs, 4).await.unwrap();
    drop(proxy);
    let proxy = start(host, &addrs, "pow2", &[]).await;
    scenarios::pow2_spreads(&proxy, &addrs, 48, 6).await.unwrap();
    drop(proxy);
    fleet.shutdown().await;
}

/// Keeps `n` long requests running on `target`, straight to the replica
/// (not through the router), until the returned flag is set.
fn load_directly(target: SocketAddr, n: usize) -> (Arc<AtomicBool>, tokio::task::JoinSet<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let stop = stop.clone();
        tasks.spawn(async move {
            let client = Client::new(&format!("http://{target}")).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let _ = client.completion(&format!("background load {i}"), 2_000).await;
            }
        });
    }
    (stop, tasks)
}

/// Load the router did not send (only the scrapes show it) steers `pow2`
/// away from the busy replica, and makes `prefix_aware` see an imbalance.
pub async fn scraped_load_steers_pow2_and_prefix_aware_away_from_a_busy_replica(host: Host) {
    // A slow fleet: the direct load stays on the busy replica while we route.
    let fleet = start_fleet(3, 2.0).await.unwrap();
    let addrs = fleet.addrs();
    let busy = addrs[0];
    let (stop, mut tasks) = load_directly(busy, 16);
    eventually(Duration::from_secs(10), "the direct load to reach the busy replica", || async {
        sim_queued(busy).await >= 16
    })
    .await;

    // pow2: the router has nothing in flight there; only the scrape shows the load.
    let proxy = start(host, &addrs, "pow2", &[]).await;
    let client = Client::new(proxy.base_url()).unwrap();
    eventually(Duration::from_secs(10), "three completed scrapes", || async {
        proxy.filter_metric("prefixgate_backend_scrapes_total").await.unwrap() >= 3.0
    })
    .await;
    for i in 0..24 {
        let reply = client.completion(&format!("pow2 under load {i}"), 1).await.unwrap();
        let to = routed_to(&reply, &addrs);
        assert_ne!(addrs[to], busy, "pow2 chose the busy replica: {:?}", reply.decision);
    }
    drop(proxy);

    // prefix_aware: a load spread of 16 > 10 is imbalanced, so pow2 decides.
    let proxy = start(host, &addrs, "prefix_aware", &[]).await;
    let client = Client::new(proxy.base_url()).unwrap();
    eventually(Duration::from_secs(10), "prefix_aware to see the imbalance", || async {
        let reply = client.completion("imbalance probe", 1).await.unwrap();
        reply.reason() == Some("imbalanced")
    })
    .await;
    for i in 0..12 {
        let reply = client.completion(&format!("prefix_aware under load {i}"), 1).await.unwrap();
        assert_eq!(reply.reason(), Some("imbalanced"), "{:?}", reply.decision);
        assert_ne!(addrs[routed_to(&reply, &addrs)], busy, "{:?}", reply.decision);
    }
    stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(proxy);
    fleet.shutdown().await;
}

/// Scrape requests sent so far: on Envoy the requests of the metrics
/// clusters (what went on the wire), on prefixgate the filter's count of
/// completed scrapes, which every VM that scraped would add to.
async fn scrapes(proxy: &RunningProxy, backends: usize) -> f64 {
    match proxy.envoy() {
        Some(envoy) => {
            let mut total = 0;
            for i in 0..backends {
                total += envoy.stat(&format!("prefixgate_metrics_{i}.upstream_rq_total")).await.unwrap();
            }
            total as f64
        }
        None => proxy.filter_metric("prefixgate_backend_scrapes_total").await.unwrap(),
    }
}

/// Every VM ticks (one per Envoy worker, two in prefixgate), but only the
/// holder of the shared lease scrapes: each replica is scraped about once
/// per interval, not once per VM.
pub async fn one_poller_at_a_time_scrapes_the_replicas(host: Host) {
    let fleet = start_fleet(2, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = start(host, &addrs, "pow2", &[]).await;
    eventually(Duration::from_secs(10), "scrapes to start", || async { scrapes(&proxy, 2).await > 0.0 })
        .await;
    let (before, started) = (scrapes(&proxy, 2).await, Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, elapsed) = (scrapes(&proxy, 2).await, started.elapsed());
    // One poller: 2 replicas every 100 ms. Two or more pollers would double it.
    let one_poller = 2.0 * elapsed.as_secs_f64() / 0.1;
    let seen = after - before;
    assert!(seen > 0.0, "no scrape in {elapsed:?}");
    assert!(seen <= one_poller * 1.5 + 2.0, "{seen} scrapes in {elapsed:?}: more than one poller");
    drop(proxy);
    fleet.shutdown().await;
}

/// Bodies without a readable prompt are routed, never dropped, and a
/// client-set upstream header is never obeyed.
pub async fn bad_input_is_routed_and_a_client_cannot_pick_the_upstream(host: Host) {
    let fleet = start_fleet(2, FAST).await.unwrap();
    let trap = start_fleet(1, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = start(host, &addrs, "prefix_aware", &[]).await;
    scenarios::bad_input(&proxy, &addrs, trap.addrs()[0]).await.unwrap();
    assert_eq!(served(&trap, 0), 0, "the client-set upstream header was obeyed");
    drop(proxy);
    trap.shutdown().await;
    fleet.shutdown().await;
}

/// A stream of 1,300 tokens at real time (14 ms a token, about 18 s) comes
/// token by token and whole, beyond Envoy's default 15 s route timeout
/// (prefixgate has no total timeout, only idle ones).
pub async fn sse_streams_token_by_token_and_outlives_the_default_route_timeout(host: Host) {
    let fleet = start_fleet(2, 1.0).await.unwrap();
    let addrs = fleet.addrs();
    let proxy = start(host, &addrs, "prefix_aware", &[]).await;
    let client = Client::new(proxy.base_url()).unwrap();
    let stream = client.stream_chat("tell me a very long story", 1_300).await.unwrap();
    assert_eq!(stream.status, 200);
    assert!(stream.backend.is_some());
    let events = stream.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "stream cut: {} events", events.len());
    assert!(events.len() > 1_300, "{} events", events.len());
    // Token by token: hundreds of separate arrivals, spread over the whole run.
    assert!(stream.chunks.len() > 300, "only {} chunks arrived", stream.chunks.len());
    let first = stream.chunks.first().unwrap().0;
    let last = stream.chunks.last().unwrap().0;
    assert!(last - first > Duration::from_secs(15), "stream took only {:?}", last - first);
    drop(proxy);
    fleet.shutdown().await;
}
