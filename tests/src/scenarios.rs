//! Scenarios that hold any proxy hosting the prefixgate filter to one
//! behaviour. Each takes the proxy (anything with a base URL) and the fleet
//! behind it, and panics with a description when the behaviour is wrong.
//! The fleet must be configured with the filter as the scenario states.

use crate::client::{Client, Reply};
use crate::error::HarnessError;
use crate::fleet::{index_of, ProcessFleet};
use crate::{Proxy, RunningProxy};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// A prompt of about `chars` characters, unique to `seed`.
pub fn prompt(seed: &str, chars: usize) -> String {
    let mut out = String::with_capacity(chars + 64);
    let mut i = 0u64;
    while out.len() < chars {
        out.push_str(&format!("{seed} sentence {i} about topic {} and more. ", i * 7919 % 1000));
        i += 1;
    }
    out
}

/// The backend a reply names, as an index into `addrs`; panics if the reply
/// failed or names a backend outside the fleet.
pub fn routed_to(reply: &Reply, addrs: &[SocketAddr]) -> usize {
    assert_eq!(reply.status, 200, "request failed: {} {}", reply.status, reply.text());
    let backend =
        reply.backend.as_deref().unwrap_or_else(|| panic!("no backend header: {:?}", reply.headers));
    index_of(addrs, backend).unwrap_or_else(|| panic!("backend {backend} is not one of {addrs:?}"))
}

/// Groups of requests sharing a long prefix, sent concurrently on fresh
/// connections: each group must land on a single replica (filter policy
/// `prefix_aware`). Returns the replica of each group.
pub async fn affinity(
    proxy: &dyn Proxy,
    addrs: &[SocketAddr],
    groups: usize,
    per_group: usize,
) -> Result<Vec<usize>, HarnessError> {
    let client = Client::fresh_connections(proxy.base_url())?;
    let mut tasks = tokio::task::JoinSet::new();
    for g in 0..groups {
        let client = client.clone();
        let addrs = addrs.to_vec();
        tasks.spawn(async move {
            let shared = prompt(&format!("group-{g}-system"), 2_000);
            let mut seen = Vec::new();
            for r in 0..per_group {
                let reply = client.completion(&format!("{shared} question {r}?"), 4).await?;
                if r > 0 {
                    assert_eq!(
                        reply.reason(),
                        Some("prefix_match"),
                        "group {g} request {r}: {:?}",
                        reply.decision
                    );
                }
                seen.push(routed_to(&reply, &addrs));
            }
            Ok::<_, HarnessError>((g, seen))
        });
    }
    let mut placement = vec![usize::MAX; groups];
    while let Some(joined) = tasks.join_next().await {
        let (g, seen) = joined??;
        let distinct: BTreeSet<_> = seen.iter().collect();
        assert_eq!(distinct.len(), 1, "group {g} was spread over replicas {seen:?}");
        placement[g] = seen[0];
    }
    Ok(placement)
}

/// Sequential requests under `round_robin` visit the replicas in a fixed
/// cycle: every window of `addrs.len()` consecutive requests covers them all.
pub async fn round_robin_cycles(
    proxy: &dyn Proxy,
    addrs: &[SocketAddr],
    rounds: usize,
) -> Result<(), HarnessError> {
    let client = Client::fresh_connections(proxy.base_url())?;
    let mut order = Vec::new();
    for i in 0..rounds * addrs.len() {
        let reply = client.completion(&format!("round robin request {i}"), 2).await?;
        assert_eq!(reply.reason(), Some("round_robin"), "{:?}", reply.decision);
        order.push(routed_to(&reply, addrs));
    }
    for window in order.windows(addrs.len()) {
        let distinct: BTreeSet<_> = window.iter().collect();
        assert_eq!(distinct.len(), addrs.len(), "not a cycle: {order:?}");
    }
    Ok(())
}

/// Concurrent requests under `pow2` reach every replica, and none takes more
/// than half of them. Returns the count per replica.
pub async fn pow2_spreads(
    proxy: &dyn Proxy,
    addrs: &[SocketAddr],
    requests: usize,
    concurrency: usize,
) -> Result<BTreeMap<usize, usize>, HarnessError> {
    let client = Client::fresh_connections(proxy.base_url())?;
    let mut counts = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..concurrency {
        let client = client.clone();
        let addrs = addrs.to_vec();
        let n = requests / concurrency;
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for i in 0..n {
                let reply = client.completion(&format!("pow2 worker {c} request {i}"), 8).await?;
                assert_eq!(reply.reason(), Some("pow2"), "{:?}", reply.decision);
                seen.push(routed_to(&reply, &addrs));
            }
            Ok::<_, HarnessError>(seen)
        });
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        for i in joined?? {
            *counts.entry(i).or_insert(0) += 1;
            total += 1;
        }
    }
    assert_eq!(counts.len(), addrs.len(), "some replica got nothing: {counts:?}");
    assert!(counts.values().all(|&c| c * 2 <= total), "pow2 concentrated the load: {counts:?}");
    Ok(counts)
}

/// Inputs the filter cannot read a prompt from are still routed and
/// forwarded (never dropped, never 413/5xx from the proxy), and a
/// client-set upstream header never chooses the upstream.
/// `trap` is a replica outside the fleet; returns nothing, panics on failure.
pub async fn bad_input(
    proxy: &dyn Proxy,
    addrs: &[SocketAddr],
    trap: SocketAddr,
) -> Result<(), HarnessError> {
    let client = Client::new(proxy.base_url())?;
    // Not JSON: routed without a prompt; the replica answers its own 400.
    let reply = client.post("/v1/completions", "this is { not json", &[]).await?;
    assert!(reply.backend.is_some(), "non-JSON body not routed: {} {}", reply.status, reply.text());
    assert_eq!(reply.reason(), Some("no_prompt"), "{:?}", reply.decision);
    assert_eq!(reply.status, 400, "the replica's own answer is expected: {}", reply.text());

    // A 2 MiB prompt: buffered whole and routed (no 413 from the proxy).
    let big = prompt("big", 2 * 1024 * 1024);
    let body = serde_json::json!({"prompt": big, "max_tokens": 1});
    let reply = client.post("/v1/completions", body.to_string(), &[]).await?;
    assert_ne!(reply.status, 413, "2 MiB prompt rejected by the proxy");
    assert!(reply.backend.is_some(), "2 MiB prompt not routed: {} {}", reply.status, reply.text());
    assert!(reply.status == 200 || reply.status == 400, "{} {}", reply.status, reply.text());

    // An empty chat: no prompt, routed by load.
    let body = serde_json::json!({"messages": [], "max_tokens": 1});
    let reply = client.post("/v1/chat/completions", body.to_string(), &[]).await?;
    assert!(reply.backend.is_some(), "empty chat not routed: {} {}", reply.status, reply.text());
    assert_eq!(reply.reason(), Some("no_prompt"), "{:?}", reply.decision);

    // A body over `max_body_bytes` (4 MiB: a short prompt padded with JSON
    // whitespace) aimed elsewhere: routed by load by the filter, never
    // where the client asked, and not buffered for the filter.
    let padded =
        format!("{}{}", serde_json::json!({"prompt": "trap big", "max_tokens": 1}), " ".repeat(5 << 20));
    let reply = client.post("/v1/completions", padded, &aimed_at(&trap.to_string())).await?;
    let backend = reply.backend.as_deref().unwrap_or_default();
    assert!(
        index_of(addrs, backend).is_some(),
        "oversized body went to {backend:?}: {} {}",
        reply.status,
        reply.text()
    );
    assert_eq!(
        reply.reason(),
        Some("no_prompt"),
        "oversized body not routed by the filter: {:?}",
        reply.decision
    );
    // The same without `content-length` (chunked): routed once the body passes the limit.
    let head = serde_json::json!({"prompt": "trap chunked", "max_tokens": 1}).to_string();
    let chunks = std::iter::once(head).chain(std::iter::repeat_n(" ".repeat(64 << 10), 80));
    let chunked = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks.map(Ok::<_, std::io::Error>)));
    let reply = client.post("/v1/completions", chunked, &aimed_at(&trap.to_string())).await?;
    let backend = reply.backend.as_deref().unwrap_or_default();
    assert!(
        index_of(addrs, backend).is_some(),
        "chunked oversized body went to {backend:?}: {}",
        reply.status
    );
    assert_eq!(reply.reason(), Some("no_prompt"), "chunked oversized body: {:?}", reply.decision);

    // A client aiming the upstream header elsewhere: overwritten.
    let trap = trap.to_string();
    for i in 0..6 {
        let body = serde_json::json!({"prompt": format!("trap {i}"), "max_tokens": 1});
        let reply = client.post("/v1/completions", body.to_string(), &aimed_at(&trap)).await?;
        routed_to(&reply, addrs);
    }
    Ok(())
}

/// A replica answering 500 at once while its `/metrics` looks idle (the
/// filter configured with `eject_after_failures` 5 and an ejection longer
/// than the scenario): after five failures it is ejected, and every later
/// request succeeds on the healthy replicas in `addrs`.
pub async fn failing_replica_is_ejected(
    proxy: &dyn Proxy,
    addrs: &[SocketAddr],
    failing: &crate::failing_replica::FailingReplica,
) -> Result<(), HarnessError> {
    let client = Client::new(proxy.base_url())?;
    let mut statuses = Vec::new();
    for i in 0..40 {
        // A few conversations, so affinity would keep whole groups there.
        let reply = client.completion(&prompt(&format!("conversation {}", i % 8), 300), 2).await?;
        statuses.push(reply.status);
        if reply.status == 200 {
            routed_to(&reply, addrs);
        }
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(failing.failed(), 5, "the failing replica took {} requests: {statuses:?}", failing.failed());
    assert_eq!(failed, 5, "{statuses:?}");
    let last_failure = statuses.iter().rposition(|s| *s != 200).unwrap_or(0);
    assert!(last_failure < 30, "failures went on after the ejection: {statuses:?}");
    Ok(())
}

/// The headers a client would set to pick `target` itself: the upstream
/// header of each layout (ORIGINAL_DST, and the override_host one of the
/// shipped Envoy templates). The filter overwrites the one its configuration
/// names; the other means nothing to that host.
fn aimed_at(target: &str) -> [(&'static str, &str); 2] {
    [("x-envoy-original-dst-host", target), (crate::envoy_config::UPSTREAM_HEADER, target)]
}

/// A replica that accepts requests and never answers them, under
/// `round_robin` beside healthy ones, with a short first-byte timeout: every
/// request routed to it is retried on another replica after the timeout
/// (nothing has reached the client yet), so none fails, and after
/// `eject_after_failures` (5) such timeouts it is ejected and takes no more.
pub async fn hung_replica_is_retried_and_ejected(
    proxy: &dyn Proxy,
    hung: &crate::failing_replica::FailingReplica,
) -> Result<(), HarnessError> {
    let client = Client::new(proxy.base_url())?;
    let mut statuses = Vec::new();
    let mut chosen_hung = 0;
    for i in 0..30 {
        let reply = client.completion(&format!("request {i} while a replica hangs"), 2).await?;
        statuses.push(reply.status);
        // Envoy keeps the filter's headers (naming the hung replica it
        // chose); prefixgate labels a retried request with the replica that
        // served it and the decision `retry`.
        let named_hung = reply.backend.as_deref() == Some(hung.addr.to_string().as_str());
        if named_hung || reply.decision.as_deref() == Some("retry") {
            chosen_hung += 1;
        }
    }
    assert!(statuses.iter().all(|s| *s == 200), "a request failed: {statuses:?}");
    assert_eq!(hung.failed(), 5, "the hung replica took {} requests", hung.failed());
    assert_eq!(chosen_hung, 5, "requests chosen for the hung replica and retried");
    Ok(())
}

/// Replica 1 of `fleet` is killed (`SIGKILL`) under `round_robin` (with a
/// low `unhealthy_after`): no request fails meanwhile (a refused connection
/// is retried on another replica), once its scrapes fail it is skipped
/// entirely, and once its process is started again it is used again.
pub async fn killed_replica_is_skipped_until_it_returns(
    proxy: &RunningProxy,
    fleet: &mut ProcessFleet,
) -> Result<(), HarnessError> {
    let addrs = fleet.addrs();
    let client = Client::new(proxy.base_url())?;
    round_robin_cycles(proxy, &addrs, 1).await?;

    fleet.kill_replica(1).await?;
    // Skipped means a full window of requests succeeds without touching it.
    let mut i = 0;
    eventually(std::time::Duration::from_secs(10), "the killed replica to be skipped", || {
        i += 1;
        let client = client.clone();
        let addrs = addrs.clone();
        async move {
            for j in 0..6 {
                let reply = match client.completion(&format!("after kill {i}.{j}"), 1).await {
                    Ok(reply) if reply.status == 200 => reply,
                    other => {
                        let failure = match other {
                            Ok(reply) => format!("{} {}", reply.status, reply.text()),
                            Err(e) => e.to_string(),
                        };
                        // A refused connection is retried on another replica.
                        panic!("a request failed while a replica was down: {failure}");
                    }
                };
                // Envoy names the replica the filter chose even when the
                // request was retried elsewhere; prefixgate names the one
                // that served it and says `retry`.
                let chosen_dead = index_of(&addrs, reply.backend.as_deref().unwrap_or("")) == Some(1);
                if chosen_dead || reply.decision.as_deref() == Some("retry") {
                    return false;
                }
            }
            true
        }
    })
    .await;
    // prefixgate stops choosing it as soon as connections are refused; the
    // skip that lasts comes from the failed scrapes (`unhealthy_after`).
    eventually(std::time::Duration::from_secs(10), "two failed scrapes", || async {
        proxy.filter_metric("prefixgate_backend_scrape_failures_total").await.is_ok_and(|n| n >= 2.0)
    })
    .await;
    for j in 0..9 {
        let reply = client.completion(&format!("while down {j}"), 1).await?;
        assert_ne!(routed_to(&reply, &addrs), 1, "routed to the dead replica");
        assert_ne!(reply.decision.as_deref(), Some("retry"), "routed to the dead replica and retried");
    }

    fleet.restart_replica(1).await?;
    let mut k = 0;
    eventually(std::time::Duration::from_secs(10), "the replica to be used again", || {
        k += 1;
        let client = client.clone();
        let addrs = addrs.clone();
        async move {
            match client.completion(&format!("after restart {k}"), 1).await {
                Ok(reply) => routed_to(&reply, &addrs) == 1,
                Err(_) => false,
            }
        }
    })
    .await;
    Ok(())
}

/// Polls `check` (every [`prefixgate_launch::wait::POLL_INTERVAL`]) until it
/// holds; panics naming `what` after `limit`. The one polling loop of the
/// tests: it is [`prefixgate_launch::poll_until`], which the launchers use.
pub async fn eventually<F, Fut>(limit: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = prefixgate_launch::poll_until(limit, what, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await;
    if let Err(timed_out) = waited {
        panic!("{timed_out}");
    }
}

/// Replies of one load connection: status and decision, or the error.
type LoadReplies = Vec<Result<(u16, Option<String>), String>>;

/// Bounded load (at most 2,000 requests a connection) kept up while a
/// configuration or module swap happens.
pub struct SwapLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: tokio::task::JoinSet<LoadReplies>,
}

impl SwapLoad {
    /// Starts `connections` clients sending small completions through `client`.
    pub fn start(client: &Client, connections: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..connections {
            let client = client.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let mut replies = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 2_000 {
                    let reply = client.completion(&format!("load {c} {i}"), 2).await;
                    replies.push(reply.map(|r| (r.status, r.decision)).map_err(|e| e.to_string()));
                    i += 1;
                }
                replies
            });
        }
        Self { stop, tasks }
    }

    /// Stops the load; panics if any request failed. Returns the number of
    /// requests and of those whose decision header contains `decided_by`.
    pub async fn finish(mut self, decided_by: &str) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut total, mut matching) = (0, 0);
        while let Some(replies) = self.tasks.join_next().await {
            let replies = replies.unwrap_or_else(|e| panic!("a load connection failed: {e}"));
            for reply in replies {
                let (status, decision) =
                    reply.unwrap_or_else(|e| panic!("request failed during the swap: {e}"));
                assert_eq!(status, 200, "request failed during the swap: {decision:?}");
                total += 1;
                if decision.is_some_and(|d| d.contains(decided_by)) {
                    matching += 1;
                }
            }
        }
        (total, matching)
    }
}
