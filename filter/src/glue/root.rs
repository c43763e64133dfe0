//! The root context: configuration, and the `/metrics` poller of the backends.

use super::host_store::HostStore;
use super::http::HttpFilter;
use super::metrics::FilterMetrics;
use super::{log, now_ms};
use crate::config::FilterConfig;
use crate::fleet;
use crate::router::Router;
use crate::vllm_metrics::parse_vllm_metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Largest `/metrics` page read from a backend: vLLM's is tens of KiB; a
/// bigger one is read up to here and parsed as far as it goes, so a replica
/// cannot make the scraping VM run out of time or memory.
const MAX_SCRAPE_BYTES: usize = 1 << 20;

/// This VM's id in the shared in-flight counts: random, drawn once per wasm
/// instance, so every VM (worker, or VM slot) has its own.
fn vm_id() -> u64 {
    static VM_ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *VM_ID.get_or_init(|| fastrand::Rng::new().u64(..))
}

/// How long the scrape lease lasts: three intervals (at least a second), so
/// a poller that dies is replaced that much later.
fn lease_ms(config: &FilterConfig) -> u64 {
    config.scrape_interval_ms.saturating_mul(3).max(1_000)
}

/// One plugin instance in one VM.
pub struct FilterRoot {
    router: Option<Rc<Router>>,
    metrics: Option<Rc<FilterMetrics>>,
    /// Seeds each request's random choices.
    rng: RefCell<fastrand::Rng>,
    /// Identity of this VM's poller in the shared lease.
    poller_id: u64,
    /// Scrapes under way: call token → (backend address, dispatch time).
    pending: HashMap<u32, (String, u64)>,
    /// Host time of the next scrape round.
    next_scrape_ms: u64,
    /// Configured but not yet ticked: the first tick takes the scrape lease.
    take_lease_on_tick: bool,
}

impl FilterRoot {
    /// A root context before `on_configure`.
    pub fn new(context_id: u32) -> Self {
        let mut rng = fastrand::Rng::new();
        let poller_id = (rng.u64(..) & !0xffff_ffff) | u64::from(context_id);
        Self {
            router: None,
            metrics: None,
            rng: RefCell::new(rng),
            poller_id,
            pending: HashMap::new(),
            next_scrape_ms: 0,
            take_lease_on_tick: false,
        }
    }

    fn scrape_all(&mut self, router: &Router, now: u64) {
        let config = router.config();
        if !fleet::try_acquire_lease(&HostStore, self.poller_id, now, lease_ms(config)) {
            return;
        }
        let stuck_after = config.scrape_timeout_ms.saturating_mul(2);
        self.pending.retain(|_, (_, sent)| now.saturating_sub(*sent) < stuck_after);
        for backend in &config.backends {
            let address = backend.address();
            if self.pending.values().any(|(a, _)| a == address) {
                continue;
            }
            let cluster = backend.cluster().unwrap_or(&config.cluster);
            let headers = vec![
                (":method", "GET"),
                (":path", config.metrics_path.as_str()),
                (":authority", address),
                (config.upstream_header.as_str(), address),
            ];
            let timeout = Duration::from_millis(config.scrape_timeout_ms);
            match self.dispatch_http_call(cluster, headers, None, vec![], timeout) {
                Ok(token) => {
                    self.pending.insert(token, (address.to_owned(), now));
                }
                // A call the host refuses is a configuration problem (unknown
                // cluster), not a sign of the backend's health.
                Err(status) => log(
                    LogLevel::Warn,
                    &format!("prefixgate: cannot scrape {address} through cluster `{cluster}`: {status:?}"),
                ),
            }
        }
    }
}

impl Context for FilterRoot {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _: usize) {
        let Some((address, _)) = self.pending.remove(&token) else {
            return;
        };
        let ok_status = num_headers > 0
            && self.get_http_call_response_header_bytes(":status").is_some_and(|s| s.as_slice() == b"200");
        let body = if ok_status {
            self.get_http_call_response_body(0, body_size.min(MAX_SCRAPE_BYTES))
        } else {
            None
        };
        let now = now_ms(self.get_current_time());
        let ok = match (ok_status, body) {
            (true, Some(body)) => {
                // A page without vLLM metrics still proves the backend is up;
                // its load is then the router's in-flight count alone.
                let load = parse_vllm_metrics(&String::from_utf8_lossy(&body)).unwrap_or_default();
                fleet::record_scrape_success(&HostStore, &address, load, now);
                true
            }
            (true, None) => {
                fleet::record_scrape_success(&HostStore, &address, Default::default(), now);
                true
            }
            _ => {
                let failures = fleet::record_scrape_failure(&HostStore, &address);
                log(
                    LogLevel::Debug,
                    &format!("prefixgate: scrape of {address} failed ({failures} in a row)"),
                );
                false
            }
        };
        if let Some(metrics) = &self.metrics {
            metrics.scrape(&address, ok);
            if !ok {
                // The backend may be skipped from now on: the gauges say so
                // now rather than at the next tick.
                if let Some(router) = &self.router {
                    metrics.backends(&router.snapshot(&HostStore, now));
                }
            }
        }
    }
}

impl RootContext for FilterRoot {
    fn on_vm_start(&mut self, _: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match FilterConfig::from_json(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log(LogLevel::Error, &format!("prefixgate: {e}"));
                return false;
            }
        };
        if let Some(seed) = config.seed {
            self.rng = RefCell::new(fastrand::Rng::with_seed(seed));
        }
        let tick = config.tick_ms();
        let router = Router::new(config).in_vm(vm_id());
        let removed = router.on_configure(&HostStore);
        if !removed.is_empty() {
            log(LogLevel::Info, &format!("prefixgate: backends removed from the index: {removed:?}"));
            FilterMetrics::forget(&removed);
        }
        log(
            LogLevel::Info,
            &format!(
                "prefixgate: policy {} over {} backends",
                router.config().policy,
                router.config().backends.len()
            ),
        );
        let now = now_ms(self.get_current_time());
        router.heartbeat(&HostStore, now);
        // The lease is taken at this VM's first tick, not here: a VM
        // configured ahead of use (prefixgate's spare) never ticks until it
        // replaces one that trapped, and holding the lease meanwhile would
        // stop every scrape until the lease ran out.
        self.take_lease_on_tick = router.config().scrape_interval_ms > 0;
        let metrics = FilterMetrics::define(
            router.config().policy,
            router.config().backends.iter().map(|b| b.address()),
        );
        metrics.backends(&router.snapshot(&HostStore, now));
        self.metrics = Some(Rc::new(metrics));
        self.router = Some(Rc::new(router));
        // Ticks beat this VM's heartbeat (its in-flight counts stay believed)
        // and, every scrape interval, poll the backends.
        self.next_scrape_ms = 0;
        self.set_tick_period(Duration::from_millis(tick));
        true
    }

    fn on_tick(&mut self) {
        if let Some(router) = self.router.clone() {
            let now = now_ms(self.get_current_time());
            router.heartbeat(&HostStore, now);
            if let Some(metrics) = &self.metrics {
                metrics.backends(&router.snapshot(&HostStore, now));
            }
            let interval = router.config().scrape_interval_ms;
            if std::mem::take(&mut self.take_lease_on_tick) {
                // A freshly configured poller scrapes at once instead of
                // waiting for the previous holder's lease to run out.
                fleet::take_lease(&HostStore, self.poller_id, now, lease_ms(router.config()));
            }
            if interval > 0 && now >= self.next_scrape_ms {
                // Due again one interval on, less half a tick of jitter.
                self.next_scrape_ms = now.saturating_add(interval - router.config().tick_ms() / 2);
                self.scrape_all(&router, now);
            }
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        let router = self.router.clone()?;
        let metrics = self.metrics.clone()?;
        let seed = self.rng.borrow_mut().u64(..);
        Some(Box::new(HttpFilter::new(router, metrics, seed)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
