//! The backends as every worker sees them: health and scraped load written by
//! the poller, passive health from response outcomes, in-flight counts kept
//! by the router, all in shared data.

use crate::config::FilterConfig;
use crate::in_flight::{self, LiveVms};
use crate::outlier::Health;
use crate::policy::PolicyKind;
use crate::prefill_queue;
use crate::prefix_index::{IndexedBackend, PrefixIndex};
use crate::record_table;
use crate::store::{update, SharedStore};
use crate::vllm_metrics::VllmLoad;

/// Shared-data key of the list of configured backends (to notice removals).
const BACKENDS_KEY: &str = "pg/backends";
/// Shared-data key of the scrape lease.
const LEASE_KEY: &str = "pg/lease";
/// Shared-data key of every backend's [`ScrapeState`], one record per address.
const SCRAPES_KEY: &str = "pg/scrape";

/// A backend as a policy sees it for one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendView {
    /// `ip:port`.
    pub address: String,
    /// Relative capacity; load is divided by it.
    pub weight: f64,
    /// Whether the backend's `/metrics` answers (or scraping is off).
    pub healthy: bool,
    /// Passive health from response outcomes: ejected backends are skipped.
    pub passive: Health,
    /// Requests this router has sent and not yet finished.
    pub in_flight: u64,
    /// The latest fresh scrape, if any.
    pub scraped: Option<VllmLoad>,
    /// Characters of prompt the backend's KV cache holds.
    pub capacity_chars: u64,
    /// Prompt tokens this router predicts are still waiting for prefill
    /// there ([`crate::prefill_queue`]); kept only for `least_ttft`, else 0.
    pub queued_prefill_tokens: f64,
    /// Most requests the backend takes at once (`max_ongoing_requests`).
    pub max_ongoing: Option<u64>,
}

impl BackendView {
    /// Load = max(router in-flight, scraped running + waiting): in-flight is
    /// exact and fresh for this router; the scrape also sees other routers'
    /// traffic but lags by up to a scrape interval.
    pub fn load(&self) -> u64 {
        let scraped = self.scraped.as_ref().map_or(0, VllmLoad::queued);
        self.in_flight.max(scraped)
    }

    /// Load divided by weight, the figure policies compare.
    pub fn weighted_load(&self) -> f64 {
        self.load() as f64 / self.weight
    }

    /// Whether a policy may pick the backend: its scrapes succeed and passive
    /// health admits it (not ejected, no half-open probe outstanding).
    pub fn available(&self) -> bool {
        self.healthy && self.passive.admits_requests()
    }

    /// Whether the backend carries its `max_ongoing_requests` already.
    pub fn at_capacity(&self) -> bool {
        self.max_ongoing.is_some_and(|cap| self.load() >= cap)
    }

    /// The backend as the prefix index knows it.
    pub fn indexed(&self) -> IndexedBackend<'_> {
        IndexedBackend { name: &self.address, capacity_chars: self.capacity_chars }
    }
}

/// What the poller knows about one backend (its record under `pg/scrape`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScrapeState {
    /// Failed scrapes since the last success.
    pub consecutive_failures: u32,
    /// Host time of the last successful scrape.
    pub last_success_ms: Option<u64>,
    /// Load read by the last successful scrape.
    pub load: Option<VllmLoad>,
}

/// Scraped load older than this many scrape intervals is ignored.
const STALE_AFTER_INTERVALS: u64 = 10;

/// Reads every configured backend's state for one decision; `live` says
/// whose in-flight counts to believe.
pub fn snapshot<S: SharedStore + ?Sized>(
    store: &S,
    config: &FilterConfig,
    live: &LiveVms,
    now_ms: u64,
) -> Vec<BackendView> {
    config
        .backends
        .iter()
        .map(|b| {
            let address = b.address().to_owned();
            let state = scrape_state(store, &address);
            let healthy =
                config.scrape_interval_ms == 0 || state.consecutive_failures < config.unhealthy_after;
            let fresh_for = config.scrape_interval_ms.saturating_mul(STALE_AFTER_INTERVALS).max(5_000);
            let capacity_chars = b
                .capacity_chunks()
                .or(config.capacity_chunks)
                .map(|chunks| chunks.saturating_mul(config.chunk_chars as u64))
                .or_else(|| capacity_from_cache_config(state.load.as_ref(), config))
                .unwrap_or(u64::MAX);
            let scraped = state
                .load
                .filter(|_| state.last_success_ms.is_some_and(|t| now_ms.saturating_sub(t) <= fresh_for));
            let queued_prefill_tokens = match config.policy {
                PolicyKind::LeastTtft => {
                    prefill_queue::queued(store, &address, config.prefill_tokens_per_s, now_ms)
                }
                _ => 0.0,
            };
            BackendView {
                max_ongoing: b.max_ongoing_requests().or(config.max_ongoing_requests),
                queued_prefill_tokens,
                in_flight: in_flight::count(store, &address, live),
                passive: Health::read(store, &address, now_ms),
                address,
                weight: b.weight(),
                healthy,
                scraped,
                capacity_chars,
            }
        })
        .collect()
}

/// Characters a replica's KV cache holds, from `vllm:cache_config_info` (the
/// last scraped value, however old: cache size does not go stale).
fn capacity_from_cache_config(load: Option<&VllmLoad>, config: &FilterConfig) -> Option<u64> {
    let load = load?;
    let tokens = load.num_gpu_blocks? as f64 * load.block_size.unwrap_or(16) as f64;
    let chars = tokens * config.chars_per_token;
    (chars.is_finite() && chars >= 1.0).then_some(chars as u64)
}

/// The poller's record for `address` (default when never scraped).
pub fn scrape_state<S: SharedStore + ?Sized>(store: &S, address: &str) -> ScrapeState {
    record_table::read(store, SCRAPES_KEY, address)
        .map(|bytes| ScrapeState::decode(&bytes))
        .unwrap_or_default()
}

/// Records a successful scrape: the backend is healthy again.
pub fn record_scrape_success<S: SharedStore + ?Sized>(store: &S, address: &str, load: VllmLoad, now_ms: u64) {
    let state = ScrapeState { consecutive_failures: 0, last_success_ms: Some(now_ms), load: Some(load) };
    write_scrape_state(store, address, &state);
}

/// Records a failed scrape; returns the number of consecutive failures.
pub fn record_scrape_failure<S: SharedStore + ?Sized>(store: &S, address: &str) -> u32 {
    let mut failures = 0;
    record_table::update(store, SCRAPES_KEY, address, |bytes| {
        let mut state = bytes.map(ScrapeState::decode).unwrap_or_default();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        failures = state.consecutive_failures;
        Some(state.encode())
    });
    failures
}

impl ScrapeState {
    /// Fixed layout (read on every decision, so no JSON): failures u32,
    /// last success u64, running f64, waiting f64, KV usage f64
    /// (NaN = unknown), GPU blocks u64 and block size u64 (0 = unknown), and a
    /// flag byte telling whether a scrape ever succeeded (then the last
    /// success time and the load are meaningful).
    const BYTES: usize = 4 + 8 * 6 + 1;

    fn encode(&self) -> Vec<u8> {
        let load = self.load.clone().unwrap_or_default();
        let mut out = Vec::with_capacity(Self::BYTES);
        out.extend_from_slice(&self.consecutive_failures.to_le_bytes());
        out.extend_from_slice(&self.last_success_ms.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&load.running.to_le_bytes());
        out.extend_from_slice(&load.waiting.to_le_bytes());
        out.extend_from_slice(&load.kv_cache_usage.unwrap_or(f64::NAN).to_le_bytes());
        out.extend_from_slice(&load.num_gpu_blocks.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&load.block_size.unwrap_or(0).to_le_bytes());
        out.push(u8::from(self.load.is_some()));
        out
    }

    fn decode(bytes: &[u8]) -> Self {
        use crate::wire::{u32_at, u64_at};
        let f = |at| u64_at(bytes, at).map(f64::from_bits).unwrap_or(0.0);
        let nonzero = |at| u64_at(bytes, at).filter(|v| *v != 0);
        let has_load = bytes.get(Self::BYTES - 1) == Some(&1);
        let kv = f(28);
        Self {
            consecutive_failures: u32_at(bytes, 0).unwrap_or(0),
            last_success_ms: if has_load { u64_at(bytes, 4) } else { None },
            load: has_load.then(|| VllmLoad {
                running: f(12),
                waiting: f(20),
                kv_cache_usage: (!kv.is_nan()).then_some(kv),
                num_gpu_blocks: nonzero(36),
                block_size: nonzero(44),
            }),
        }
    }
}

fn write_scrape_state<S: SharedStore + ?Sized>(store: &S, address: &str, state: &ScrapeState) {
    let bytes = state.encode();
    record_table::update(store, SCRAPES_KEY, address, |_| Some(bytes.clone()));
}

/// Tries to become (or stay) the single poller for `lease_ms`.
///
/// Every worker's root context ticks; only the holder of the lease scrapes,
/// so the fleet is polled once per interval whatever the number of workers.
/// A holder that dies is replaced once its lease expires.
pub fn try_acquire_lease<S: SharedStore + ?Sized>(store: &S, owner: u64, now_ms: u64, lease_ms: u64) -> bool {
    update(store, LEASE_KEY, |bytes| {
        let holder = bytes.and_then(|b| crate::wire::u64_at(b, 0));
        let expires = bytes.and_then(|b| crate::wire::u64_at(b, 8)).unwrap_or(0);
        let free = holder.is_none() || holder == Some(owner) || expires <= now_ms;
        free.then(|| {
            let mut next = owner.to_le_bytes().to_vec();
            next.extend_from_slice(&now_ms.saturating_add(lease_ms).to_le_bytes());
            next
        })
    })
}

/// Takes the scrape lease for `owner` whoever holds it. A freshly configured
/// root context calls it at its first tick, so that after a hot swap the new configuration's
/// poller scrapes at once instead of waiting for the old VM's lease to run
/// out (the old poller sees the new holder on its next tick and stops).
pub fn take_lease<S: SharedStore + ?Sized>(store: &S, owner: u64, now_ms: u64, lease_ms: u64) {
    update(store, LEASE_KEY, |_| {
        let mut next = owner.to_le_bytes().to_vec();
        next.extend_from_slice(&now_ms.saturating_add(lease_ms).to_le_bytes());
        Some(next)
    });
}

/// Makes the stored backend list match `config`; backends no longer listed
/// are forgotten by the index (a backend added back later starts empty).
/// Returns the removed addresses.
pub fn sync_backends<S: SharedStore + ?Sized>(
    store: &S,
    config: &FilterConfig,
    index: &PrefixIndex,
) -> Vec<String> {
    let current: Vec<String> = config.backends.iter().map(|b| b.address().to_owned()).collect();
    let mut removed = Vec::new();
    update(store, BACKENDS_KEY, |bytes| {
        let previous: Vec<String> = bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
        removed = previous.into_iter().filter(|p| !current.contains(p)).collect();
        serde_json::to_vec(&current).ok()
    });
    for address in &current {
        in_flight::ensure_record(store, address);
    }
    for address in &removed {
        index.remove_backend(store, address);
    }
    // A removed backend's scrape record goes (one added back is scraped
    // afresh), and so does any left by an older configuration.
    record_table::retain(store, SCRAPES_KEY, |address| current.iter().any(|c| c == address));
    removed
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// A healthy backend view with the given load, for policy tests.
    pub(crate) fn view(address: &str, in_flight: u64) -> BackendView {
        BackendView {
            address: address.to_owned(),
            weight: 1.0,
            healthy: true,
            passive: Health::default(),
            in_flight,
            scraped: None,
            capacity_chars: u64::MAX,
            queued_prefill_tokens: 0.0,
            max_ongoing: None,
        }
    }

    fn config(json: &str) -> FilterConfig {
        FilterConfig::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn load_is_the_max_of_in_flight_and_scraped_queue() {
        let mut v = view("a", 3);
        assert_eq!(v.load(), 3);
        v.scraped = Some(VllmLoad { running: 4.0, waiting: 2.0, ..Default::default() });
        assert_eq!(v.load(), 6);
        v.in_flight = 9;
        assert_eq!(v.load(), 9);
        v.weight = 3.0;
        assert_eq!(v.weighted_load(), 3.0);
    }

    #[test]
    fn failed_scrapes_mark_unhealthy_until_a_success() {
        let store = MemoryStore::new();
        let c = config(r#"{"backends":["127.0.0.1:1"],"unhealthy_after":2}"#);
        assert!(snapshot(&store, &c, &LiveVms::default(), 0)[0].healthy);
        assert_eq!(record_scrape_failure(&store, "127.0.0.1:1"), 1);
        assert!(snapshot(&store, &c, &LiveVms::default(), 0)[0].healthy);
        assert_eq!(record_scrape_failure(&store, "127.0.0.1:1"), 2);
        assert!(!snapshot(&store, &c, &LiveVms::default(), 0)[0].healthy);
        record_scrape_success(&store, "127.0.0.1:1", VllmLoad::default(), 10);
        assert!(snapshot(&store, &c, &LiveVms::default(), 10)[0].healthy);
    }

    #[test]
    fn stale_scrapes_are_ignored_but_cache_size_is_kept() {
        let store = MemoryStore::new();
        let c = config(r#"{"backends":["127.0.0.1:1"],"scrape_interval_ms":100}"#);
        let load =
            VllmLoad { running: 7.0, num_gpu_blocks: Some(100), block_size: Some(16), ..Default::default() };
        record_scrape_success(&store, "127.0.0.1:1", load, 1_000);
        let fresh = &snapshot(&store, &c, &LiveVms::default(), 2_000)[0];
        assert_eq!(fresh.load(), 7);
        // 100 blocks × 16 tokens × 4 chars.
        assert_eq!(fresh.capacity_chars, 6_400);
        let stale = &snapshot(&store, &c, &LiveVms::default(), 60_000)[0];
        assert_eq!(stale.load(), 0);
        assert_eq!(stale.capacity_chars, 6_400);
    }

    #[test]
    fn scrape_state_round_trips() {
        let state = ScrapeState {
            consecutive_failures: 2,
            last_success_ms: Some(1_234),
            load: Some(VllmLoad {
                running: 3.0,
                waiting: 4.5,
                kv_cache_usage: Some(0.25),
                num_gpu_blocks: Some(36_000),
                block_size: Some(16),
            }),
        };
        assert_eq!(ScrapeState::decode(&state.encode()), state);
        let empty = ScrapeState::default();
        assert_eq!(ScrapeState::decode(&empty.encode()), empty);
        assert_eq!(ScrapeState::decode(b""), empty);
    }

    #[test]
    fn one_lease_holder_at_a_time() {
        let store = MemoryStore::new();
        assert!(try_acquire_lease(&store, 1, 0, 100));
        assert!(!try_acquire_lease(&store, 2, 50, 100));
        assert!(try_acquire_lease(&store, 1, 60, 100)); // renewal
        assert!(!try_acquire_lease(&store, 2, 150, 100));
        assert!(try_acquire_lease(&store, 2, 160, 100)); // expired
        assert!(!try_acquire_lease(&store, 1, 170, 100));
        // A newly configured poller takes over at once; the old one stops.
        take_lease(&store, 3, 180, 100);
        assert!(!try_acquire_lease(&store, 2, 190, 100));
        assert!(try_acquire_lease(&store, 3, 190, 100));
    }
}
