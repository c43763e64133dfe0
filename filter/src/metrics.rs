//! The filter's metrics as Prometheus families, and how their labels travel
//! through proxy-wasm, whose metrics have a name and an integer value only.
//!
//! # The naming convention
//!
//! A proxy-wasm metric name is a Prometheus sample name followed by its
//! labels, each as `;label=value`:
//!
//! ```text
//! prefixgate_decisions_total;policy=prefix_aware;reason=prefix_match
//! prefixgate_backend_in_flight;backend=10.0.0.7:8000
//! prefixgate_match_ratio_bucket;le=0.25
//! ```
//!
//! Label names are `[a-z_]+`; values never hold `;` or `=` (they are policy
//! and reason names from [`PolicyKind::as_str`] and [`Reason::as_str`],
//! backend addresses and bucket bounds). Three more rules:
//!
//! - **Fixed point.** proxy-wasm values are integers. A sample name ending in
//!   `_micro` holds millionths: `prefixgate_backend_kv_cache_usage_ratio_micro`
//!   = 421000 means a ratio of 0.421.
//! - **Histograms** are built from counters, cumulatively: a sample `v` adds
//!   one to every `<family>_bucket;le=<bound>` with `v <= bound` (`+Inf`
//!   included), one to `<family>_count` and `v` (in millionths) to
//!   `<family>_sum_micro`.
//! - **Descriptions** travel in the module's custom section
//!   [`HELP_SECTION`] (`prometheus.help`): one line per family,
//!   `<family> <counter|gauge|histogram> <help text>` ([`FAMILIES`]).
//!
//! The prefixgate host turns this into labelled families with HELP and TYPE:
//! it splits the labels off, divides `_micro` samples by 10^6 and drops the
//! suffix, and groups a histogram family's `_bucket`, `_sum` and `_count`.
//! In Envoy the metric is the stat `wasmcustom.<name>`; the `stats_tags`
//! rules shipped in `envoy/` cut each `;label=value` out of the name into a
//! tag, so `/stats/prometheus` shows the same families and labels. Envoy
//! cannot rescale a value nor type a group of counters as one histogram:
//! there the fixed-point samples keep their `_micro` suffix and the
//! histogram series are typed `counter` (their `le` buckets are still
//! cumulative, so `histogram_quantile` works on them).
//!
//! [`PolicyKind::as_str`]: crate::policy::PolicyKind::as_str
//! [`Reason::as_str`]: crate::policy::Reason::as_str

use crate::policy::{PolicyKind, Reason};

/// The Prometheus type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter (proxy-wasm counter).
    Counter,
    /// Gauge (proxy-wasm gauge, set with `record`).
    Gauge,
    /// Histogram built from counters, as the module doc says.
    Histogram,
}

impl Kind {
    /// The name in a `# TYPE` line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric family the filter defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    /// The family name (a histogram's, without `_bucket`).
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its labels, in the order they appear in metric names.
    pub labels: &'static [&'static str],
    /// The HELP text (one line).
    pub help: &'static str,
}

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family { name, kind, labels, help }
}

/// `prefixgate_decisions_total{policy,reason}`.
pub const DECISIONS: Family = family(
    "prefixgate_decisions_total",
    Kind::Counter,
    &["policy", "reason"],
    "Routing decisions, by the policy that decided and why it chose the backend",
);
/// `prefixgate_no_healthy_backend_total`.
pub const NO_HEALTHY_BACKEND: Family = family(
    "prefixgate_no_healthy_backend_total",
    Kind::Counter,
    &[],
    "Requests answered 503 by the filter because no eligible backend was healthy",
);
/// `prefixgate_at_capacity_total`.
pub const AT_CAPACITY: Family = family(
    "prefixgate_at_capacity_total",
    Kind::Counter,
    &[],
    "Requests answered 429 by the filter because every available backend was at its max_ongoing_requests cap",
);
/// `prefixgate_match_ratio`.
pub const MATCH_RATIO: Family = family(
    "prefixgate_match_ratio",
    Kind::Histogram,
    &[],
    "Longest cached prefix over prompt length at the chosen backend, of decisions that matched the prompt (prefix_aware, least_ttft)",
);
/// `prefixgate_decision_duration_seconds`.
pub const DECISION_DURATION: Family = family(
    "prefixgate_decision_duration_seconds",
    Kind::Histogram,
    &[],
    "Time the filter took to read the prompt and choose a backend, by the host's clock",
);
/// `prefixgate_backend_healthy{backend}`.
pub const BACKEND_HEALTHY: Family = family(
    "prefixgate_backend_healthy",
    Kind::Gauge,
    &["backend"],
    "1 while the filter routes to the backend, 0 while it skips it (failed scrapes or passive ejection)",
);
/// `prefixgate_backend_in_flight{backend}`.
pub const BACKEND_IN_FLIGHT: Family = family(
    "prefixgate_backend_in_flight",
    Kind::Gauge,
    &["backend"],
    "Requests the filter routed to the backend that have not finished, across all VMs",
);
/// `prefixgate_backend_load{backend}`.
pub const BACKEND_LOAD: Family = family(
    "prefixgate_backend_load",
    Kind::Gauge,
    &["backend"],
    "Load the policies compare: the larger of in-flight and scraped running plus waiting requests",
);
/// `prefixgate_backend_requests_running{backend}`.
pub const BACKEND_RUNNING: Family = family(
    "prefixgate_backend_requests_running",
    Kind::Gauge,
    &["backend"],
    "vllm:num_requests_running at the backend's last fresh scrape (0 without one)",
);
/// `prefixgate_backend_requests_waiting{backend}`.
pub const BACKEND_WAITING: Family = family(
    "prefixgate_backend_requests_waiting",
    Kind::Gauge,
    &["backend"],
    "vllm:num_requests_waiting at the backend's last fresh scrape (0 without one)",
);
/// `prefixgate_backend_kv_cache_usage_ratio{backend}` (sent as `_micro`).
pub const BACKEND_KV_CACHE: Family = family(
    "prefixgate_backend_kv_cache_usage_ratio",
    Kind::Gauge,
    &["backend"],
    "KV cache usage (0 to 1) at the backend's last fresh scrape (0 without one)",
);
/// `prefixgate_backend_scrapes_total{backend}`.
pub const BACKEND_SCRAPES: Family = family(
    "prefixgate_backend_scrapes_total",
    Kind::Counter,
    &["backend"],
    "Scrapes of the backend's /metrics that completed, successfully or not",
);
/// `prefixgate_backend_scrape_failures_total{backend}`.
pub const BACKEND_SCRAPE_FAILURES: Family = family(
    "prefixgate_backend_scrape_failures_total",
    Kind::Counter,
    &["backend"],
    "Scrapes of the backend's /metrics that failed (no answer, not 200, or timed out)",
);
/// `prefixgate_backend_ejections_total{backend}`.
pub const BACKEND_EJECTIONS: Family = family(
    "prefixgate_backend_ejections_total",
    Kind::Counter,
    &["backend"],
    "Times passive health ejected the backend after failed responses",
);
/// `prefixgate_backend_readmissions_total{backend}`.
pub const BACKEND_READMISSIONS: Family = family(
    "prefixgate_backend_readmissions_total",
    Kind::Counter,
    &["backend"],
    "Times passive health readmitted the backend after a successful probe",
);

/// Every family the filter defines, in the order a host lists them.
pub const FAMILIES: &[Family] = &[
    DECISIONS,
    NO_HEALTHY_BACKEND,
    AT_CAPACITY,
    MATCH_RATIO,
    DECISION_DURATION,
    BACKEND_HEALTHY,
    BACKEND_IN_FLIGHT,
    BACKEND_LOAD,
    BACKEND_RUNNING,
    BACKEND_WAITING,
    BACKEND_KV_CACHE,
    BACKEND_SCRAPES,
    BACKEND_SCRAPE_FAILURES,
    BACKEND_EJECTIONS,
    BACKEND_READMISSIONS,
];

/// Upper bounds of the match-ratio buckets; 0.1 is the default
/// `match_rate_threshold`.
pub const MATCH_RATIO_BOUNDS: &[f64] = &[0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0];
/// Upper bounds of the decision-duration buckets, in seconds (10 µs to 50 ms).
pub const DECISION_DURATION_BOUNDS: &[f64] =
    &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05];

/// Suffix of a sample holding millionths.
pub const MICRO_SUFFIX: &str = "_micro";

/// The name of the custom section holding [`FAMILIES`]' descriptions.
pub const HELP_SECTION: &str = "prometheus.help";

/// Every label name the filter's metric names carry ([`FAMILIES`]' labels,
/// and `le` for histogram buckets), in first-use order: what a host's
/// tag-extraction rules must cut out of the names.
pub fn label_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for family in FAMILIES {
        let le: &[&'static str] = if family.kind == Kind::Histogram { &["le"] } else { &[] };
        for label in family.labels.iter().chain(le) {
            if !names.contains(label) {
                names.push(label);
            }
        }
    }
    names
}

/// The proxy-wasm metric name of `sample` with `labels`.
pub fn metric_name(sample: &str, labels: &[(&str, &str)]) -> String {
    let mut name = sample.to_owned();
    for (label, value) in labels {
        name.push(';');
        name.push_str(label);
        name.push('=');
        name.push_str(value);
    }
    name
}

/// `prefixgate_decisions_total` of `policy` and `reason`.
pub fn decision_name(policy: PolicyKind, reason: Reason) -> String {
    metric_name(DECISIONS.name, &[("policy", policy.as_str()), ("reason", reason.as_str())])
}

/// A per-backend family's metric name for `backend` (a gauge's in
/// millionths gets the `_micro` suffix, see the module doc).
pub fn backend_name(family: &Family, backend: &str, micro: bool) -> String {
    let sample = if micro { format!("{}{MICRO_SUFFIX}", family.name) } else { family.name.to_owned() };
    metric_name(&sample, &[("backend", backend)])
}

/// The counters a histogram family is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramNames {
    /// `<family>_bucket;le=<bound>`, one per bound and `+Inf` last.
    pub buckets: Vec<String>,
    /// `<family>_sum_micro`.
    pub sum: String,
    /// `<family>_count`.
    pub count: String,
}

/// The metric names of histogram `family` with buckets `bounds`.
pub fn histogram_names(family: &Family, bounds: &[f64]) -> HistogramNames {
    let bucket = format!("{}_bucket", family.name);
    let mut buckets: Vec<String> =
        bounds.iter().map(|b| metric_name(&bucket, &[("le", &format!("{b}"))])).collect();
    buckets.push(metric_name(&bucket, &[("le", "+Inf")]));
    HistogramNames {
        buckets,
        sum: format!("{}_sum{MICRO_SUFFIX}", family.name),
        count: format!("{}_count", family.name),
    }
}

/// Index of the first bucket a sample `value` counts in: it counts in that
/// one and every later one (the last, `+Inf`, has index `bounds.len()`).
pub fn first_bucket(bounds: &[f64], value: f64) -> usize {
    bounds.iter().position(|b| value <= *b).unwrap_or(bounds.len())
}

/// `value` in millionths, rounded, for a `_micro` metric (never negative).
pub fn micro(value: f64) -> i64 {
    if value.is_finite() && value > 0.0 {
        (value * 1e6).round().min(i64::MAX as f64) as i64
    } else {
        0
    }
}

/// Whether a decision's match ratio goes into [`MATCH_RATIO`]: the
/// Reasons reached after matching the prompt (prefix_aware's and least_ttft's).
pub fn records_match_ratio(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::PrefixMatch
            | Reason::SmallestTenant
            | Reason::LeastLoaded
            | Reason::Rendezvous
            | Reason::LeastCost
    )
}

const fn section_len(families: &[Family]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < families.len() {
        let f = &families[i];
        n += f.name.len() + 1 + f.kind.as_str().len() + 1 + f.help.len() + 1;
        i += 1;
    }
    n
}

const fn copy_into<const N: usize>(mut out: [u8; N], at: usize, s: &str) -> ([u8; N], usize) {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
    (out, at + bytes.len())
}

const fn section<const N: usize>(families: &[Family]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < families.len() {
        let f = &families[i];
        (out, at) = copy_into(out, at, f.name);
        (out, at) = copy_into(out, at, " ");
        (out, at) = copy_into(out, at, f.kind.as_str());
        (out, at) = copy_into(out, at, " ");
        (out, at) = copy_into(out, at, f.help);
        (out, at) = copy_into(out, at, "\n");
        i += 1;
    }
    out
}

/// Length of [`HELP_TEXT`].
pub const HELP_TEXT_LEN: usize = section_len(FAMILIES);

/// The `prometheus.help` section's content: `<family> <type> <help>` lines.
pub const HELP_TEXT: [u8; HELP_TEXT_LEN] = section::<HELP_TEXT_LEN>(FAMILIES);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_names_cover_every_policy_and_reason() {
        for policy in PolicyKind::ALL {
            for reason in Reason::ALL {
                let name = decision_name(policy, reason);
                assert_eq!(
                    name,
                    format!(
                        "prefixgate_decisions_total;policy={};reason={}",
                        policy.as_str(),
                        reason.as_str()
                    )
                );
            }
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inf_last() {
        let names = histogram_names(&MATCH_RATIO, MATCH_RATIO_BOUNDS);
        assert_eq!(names.buckets.len(), MATCH_RATIO_BOUNDS.len() + 1);
        assert_eq!(names.buckets[0], "prefixgate_match_ratio_bucket;le=0");
        assert_eq!(names.buckets[2], "prefixgate_match_ratio_bucket;le=0.25");
        assert_eq!(names.buckets.last().map(String::as_str), Some("prefixgate_match_ratio_bucket;le=+Inf"));
        assert_eq!(names.sum, "prefixgate_match_ratio_sum_micro");
        assert_eq!(names.count, "prefixgate_match_ratio_count");
        assert_eq!(first_bucket(MATCH_RATIO_BOUNDS, 0.0), 0);
        assert_eq!(first_bucket(MATCH_RATIO_BOUNDS, 0.3), 3);
        assert_eq!(first_bucket(MATCH_RATIO_BOUNDS, 1.0), 6);
        assert_eq!(first_bucket(MATCH_RATIO_BOUNDS, 7.0), 7);
        let duration = histogram_names(&DECISION_DURATION, DECISION_DURATION_BOUNDS);
        assert_eq!(duration.buckets[0], "prefixgate_decision_duration_seconds_bucket;le=0.00001");
    }

    #[test]
    fn the_help_section_has_one_line_per_family() {
        let text = std::str::from_utf8(&HELP_TEXT).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), FAMILIES.len());
        for (line, family) in lines.iter().zip(FAMILIES) {
            let mut parts = line.splitn(3, ' ');
            assert_eq!(parts.next(), Some(family.name));
            assert_eq!(parts.next(), Some(family.kind.as_str()));
            assert_eq!(parts.next(), Some(family.help));
            assert!(!family.help.contains('\n'));
        }
        for family in FAMILIES {
            let suffix_ok = match family.kind {
                Kind::Counter => family.name.ends_with("_total"),
                _ => !family.name.ends_with("_total"),
            };
            assert!(suffix_ok, "{}", family.name);
        }
    }

    #[test]
    fn label_names_come_from_the_families() {
        assert_eq!(label_names(), ["policy", "reason", "le", "backend"]);
    }

    #[test]
    fn micro_rounds_and_clamps() {
        assert_eq!(micro(0.4215), 421_500);
        assert_eq!(micro(-1.0), 0);
        assert_eq!(micro(f64::NAN), 0);
        assert_eq!(
            backend_name(&BACKEND_KV_CACHE, "10.0.0.1:8000", true),
            "prefixgate_backend_kv_cache_usage_ratio_micro;backend=10.0.0.1:8000"
        );
    }
}
