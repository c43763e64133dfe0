//! The filter's proxy-wasm metrics, named by the convention of
//! [`crate::metrics`]: decisions by policy and reason, the match-ratio and
//! decision-duration histograms, per-backend gauges and counters.

use crate::fleet::BackendView;
use crate::metrics::{
    self as names, backend_name, decision_name, first_bucket, histogram_names, micro, Family, AT_CAPACITY,
    BACKEND_EJECTIONS, BACKEND_HEALTHY, BACKEND_IN_FLIGHT, BACKEND_KV_CACHE, BACKEND_LOAD,
    BACKEND_READMISSIONS, BACKEND_RUNNING, BACKEND_SCRAPES, BACKEND_SCRAPE_FAILURES, BACKEND_WAITING,
    DECISION_DURATION, DECISION_DURATION_BOUNDS, MATCH_RATIO, MATCH_RATIO_BOUNDS, NO_HEALTHY_BACKEND,
};
use crate::outlier::Transition;
use crate::policy::{PolicyKind, Reason};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};
use std::cell::RefCell;

/// The families' descriptions, for hosts that read them (see
/// [`crate::metrics`]); Envoy ignores the section.
#[link_section = "prometheus.help"]
#[used]
static HELP_SECTION: [u8; names::HELP_TEXT_LEN] = names::HELP_TEXT;

fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

fn set(id: Option<u32>, value: i64) {
    if let Some(id) = id {
        let _ = hostcalls::record_metric(id, value as u64);
    }
}

/// A histogram as counters: cumulative buckets, sum in millionths, count.
struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<Option<u32>>,
    sum: Option<u32>,
    count: Option<u32>,
}

impl Histogram {
    fn define(family: &Family, bounds: &'static [f64]) -> Self {
        let names = histogram_names(family, bounds);
        Self {
            bounds,
            buckets: names.buckets.iter().map(|n| define(MetricType::Counter, n)).collect(),
            sum: define(MetricType::Counter, &names.sum),
            count: define(MetricType::Counter, &names.count),
        }
    }

    fn observe(&self, value: f64) {
        for id in self.buckets.iter().skip(first_bucket(self.bounds, value)) {
            bump(*id);
        }
        if let Some(id) = self.sum {
            let _ = hostcalls::increment_metric(id, micro(value));
        }
        bump(self.count);
    }
}

/// The metric ids of one backend.
struct BackendIds {
    address: String,
    healthy: Option<u32>,
    in_flight: Option<u32>,
    load: Option<u32>,
    running: Option<u32>,
    waiting: Option<u32>,
    kv_cache: Option<u32>,
    scrapes: Option<u32>,
    scrape_failures: Option<u32>,
    ejections: Option<u32>,
    readmissions: Option<u32>,
}

impl BackendIds {
    fn define(address: &str) -> Self {
        let gauge = |f: &Family| define(MetricType::Gauge, &backend_name(f, address, false));
        let counter = |f: &Family| define(MetricType::Counter, &backend_name(f, address, false));
        Self {
            address: address.to_owned(),
            healthy: gauge(&BACKEND_HEALTHY),
            in_flight: gauge(&BACKEND_IN_FLIGHT),
            load: gauge(&BACKEND_LOAD),
            running: gauge(&BACKEND_RUNNING),
            waiting: gauge(&BACKEND_WAITING),
            kv_cache: define(MetricType::Gauge, &backend_name(&BACKEND_KV_CACHE, address, true)),
            scrapes: counter(&BACKEND_SCRAPES),
            scrape_failures: counter(&BACKEND_SCRAPE_FAILURES),
            ejections: counter(&BACKEND_EJECTIONS),
            readmissions: counter(&BACKEND_READMISSIONS),
        }
    }
}

/// Metric ids, defined once per plugin configuration; a host without
/// metrics gets none and every update is a no-op.
pub struct FilterMetrics {
    policy: PolicyKind,
    /// Decision counters of `policy`, one per [`Reason::ALL`] entry; a
    /// reason missing here (none today) is defined on first use.
    decisions: RefCell<Vec<(Reason, Option<u32>)>>,
    match_ratio: Histogram,
    duration: Histogram,
    no_healthy_backend: Option<u32>,
    at_capacity: Option<u32>,
    backends: Vec<BackendIds>,
}

impl FilterMetrics {
    /// Defines every metric of a configuration with `policy` over `backends`.
    pub fn define<'a>(policy: PolicyKind, backends: impl IntoIterator<Item = &'a str>) -> Self {
        let decisions = Reason::ALL
            .iter()
            .map(|r| (*r, define(MetricType::Counter, &decision_name(policy, *r))))
            .collect();
        Self {
            policy,
            decisions: RefCell::new(decisions),
            match_ratio: Histogram::define(&MATCH_RATIO, MATCH_RATIO_BOUNDS),
            duration: Histogram::define(&DECISION_DURATION, DECISION_DURATION_BOUNDS),
            no_healthy_backend: define(MetricType::Counter, NO_HEALTHY_BACKEND.name),
            at_capacity: define(MetricType::Counter, AT_CAPACITY.name),
            backends: backends.into_iter().map(BackendIds::define).collect(),
        }
    }

    fn backend(&self, address: &str) -> Option<&BackendIds> {
        self.backends.iter().find(|b| b.address == address)
    }

    /// Counts one decision, its match ratio and how long it took.
    pub fn decision(&self, reason: Reason, match_ratio: f64, seconds: Option<f64>) {
        let known = self.decisions.borrow().iter().find(|(r, _)| *r == reason).map(|(_, id)| *id);
        let id = match known {
            Some(id) => id,
            None => {
                let id = define(MetricType::Counter, &decision_name(self.policy, reason));
                self.decisions.borrow_mut().push((reason, id));
                id
            }
        };
        bump(id);
        if names::records_match_ratio(reason) {
            self.match_ratio.observe(match_ratio);
        }
        if let Some(seconds) = seconds {
            self.duration.observe(seconds);
        }
    }

    /// Counts a request answered 503 for lack of a healthy backend.
    pub fn no_healthy_backend(&self) {
        bump(self.no_healthy_backend);
    }

    /// Counts a request answered 429: every backend at its cap.
    pub fn at_capacity(&self) {
        bump(self.at_capacity);
    }

    /// Counts what passive health did with a response outcome, and logs it.
    pub fn outcome(&self, backend: &str, transition: Transition) {
        let ids = self.backend(backend);
        match transition {
            Transition::None => {}
            Transition::Ejected { until_ms } => {
                bump(ids.and_then(|b| b.ejections));
                // Skipped from now on: say so before the next tick does.
                set(ids.and_then(|b| b.healthy), 0);
                super::log(
                    LogLevel::Warn,
                    &format!("prefixgate: backend {backend} ejected after failures, until {until_ms} ms"),
                );
            }
            Transition::Readmitted => {
                bump(ids.and_then(|b| b.readmissions));
                super::log(LogLevel::Info, &format!("prefixgate: backend {backend} readmitted"));
            }
        }
    }

    /// Counts a scrape outcome of `backend`.
    pub fn scrape(&self, backend: &str, ok: bool) {
        let ids = self.backend(backend);
        bump(ids.and_then(|b| b.scrapes));
        if !ok {
            bump(ids.and_then(|b| b.scrape_failures));
        }
    }

    /// Sets the per-backend gauges from a snapshot of the fleet.
    pub fn backends(&self, snapshot: &[BackendView]) {
        for view in snapshot {
            let Some(ids) = self.backend(&view.address) else { continue };
            set(ids.healthy, i64::from(view.available()));
            set(ids.in_flight, view.in_flight as i64);
            set(ids.load, view.load() as i64);
            let scraped = view.scraped.as_ref();
            let count = |v: f64| if v.is_finite() && v > 0.0 { v.round() as i64 } else { 0 };
            set(ids.running, scraped.map_or(0, |s| count(s.running)));
            set(ids.waiting, scraped.map_or(0, |s| count(s.waiting)));
            set(ids.kv_cache, scraped.and_then(|s| s.kv_cache_usage).map_or(0, micro));
        }
    }

    /// Zeroes the gauges of backends a new configuration removed (their
    /// series stay, as proxy-wasm metrics cannot be deleted).
    pub fn forget(removed: &[String]) {
        for address in removed {
            for family in
                [&BACKEND_HEALTHY, &BACKEND_IN_FLIGHT, &BACKEND_LOAD, &BACKEND_RUNNING, &BACKEND_WAITING]
            {
                set(define(MetricType::Gauge, &backend_name(family, address, false)), 0);
            }
            set(define(MetricType::Gauge, &backend_name(&BACKEND_KV_CACHE, address, true)), 0);
        }
    }
}
