//! The filter's proxy-wasm metrics: decisions by reason, match ratios, scrapes,
//! ejections.

use crate::outlier::Transition;
use crate::policy::Reason;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};

/// Upper bounds of the match-ratio buckets (the first counts exact zeros).
const RATIO_BUCKETS: [(f64, &str); 5] =
    [(0.0, "0"), (0.25, "0_25"), (0.5, "0_5"), (0.75, "0_75"), (1.0, "1")];

/// Counter ids, defined once per VM; a host without metrics gets none.
pub struct FilterMetrics {
    decisions: Vec<(Reason, u32)>,
    ratios: Vec<u32>,
    no_healthy_backend: Option<u32>,
    at_capacity: Option<u32>,
    scrapes_ok: Option<u32>,
    scrapes_failed: Option<u32>,
    ejections: Option<u32>,
    readmissions: Option<u32>,
}

impl FilterMetrics {
    /// Defines every counter with the host.
    pub fn define() -> Self {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Self {
            decisions: Reason::ALL
                .iter()
                .filter_map(|r| Some((*r, counter(&format!("prefixgate_decisions_{}_total", r.as_str()))?)))
                .collect(),
            ratios: RATIO_BUCKETS
                .iter()
                .filter_map(|(_, name)| counter(&format!("prefixgate_match_ratio_le_{name}_total")))
                .collect(),
            no_healthy_backend: counter("prefixgate_no_healthy_backend_total"),
            at_capacity: counter("prefixgate_at_capacity_total"),
            scrapes_ok: counter("prefixgate_scrapes_ok_total"),
            scrapes_failed: counter("prefixgate_scrapes_failed_total"),
            ejections: counter("prefixgate_backend_ejections_total"),
            readmissions: counter("prefixgate_backend_readmissions_total"),
        }
    }

    /// Counts one decision and its match ratio.
    pub fn decision(&self, reason: Reason, match_ratio: f64) {
        if let Some((_, id)) = self.decisions.iter().find(|(r, _)| *r == reason) {
            bump(Some(*id));
        }
        if reason == Reason::PrefixMatch || reason == Reason::SmallestTenant || reason == Reason::LeastLoaded
        {
            let bucket = RATIO_BUCKETS.iter().position(|(le, _)| match_ratio <= *le).unwrap_or(4);
            bump(self.ratios.get(bucket).copied());
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
        match transition {
            Transition::None => {}
            Transition::Ejected { until_ms } => {
                bump(self.ejections);
                super::log(
                    LogLevel::Warn,
                    &format!("prefixgate: backend {backend} ejected after failures, until {until_ms} ms"),
                );
            }
            Transition::Readmitted => {
                bump(self.readmissions);
                super::log(LogLevel::Info, &format!("prefixgate: backend {backend} readmitted"));
            }
        }
    }

    /// Counts a scrape outcome.
    pub fn scrape(&self, ok: bool) {
        bump(if ok { self.scrapes_ok } else { self.scrapes_failed });
    }
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}
