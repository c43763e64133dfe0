//! The replicas' own view of a run: `/metrics` scraped before and after, and
//! the deltas bench reports beside the client-side metrics.

use super::client::{get, GetError, HttpClient};
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::PrometheusValue;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Longest wait for one replica's `/metrics`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Histograms whose mean (sum / count of the deltas) is reported, in seconds.
pub const HISTOGRAMS: [&str; 7] = [
    "time_to_first_token",
    "time_per_output_token",
    "e2e_request_latency",
    "request_queue_time",
    "request_inference_time",
    "request_prefill_time",
    "request_decode_time",
];

/// One replica's `/metrics`, each sample name (`_sum` and `_count` of a
/// histogram or summary) summed over its label sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    values: HashMap<String, f64>,
}

/// A `/metrics` page that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The request did not complete.
    #[error("GET {uri}")]
    Get {
        /// What was asked for.
        uri: String,
        /// Why it failed.
        #[source]
        source: GetError,
    },
    /// The page is not the Prometheus text format.
    #[error("GET {uri}")]
    Parse {
        /// Where the page came from.
        uri: String,
        /// What the parser found.
        #[source]
        source: NotAnExposition,
    },
}

/// A page that is not a Prometheus text exposition, with the parser's reason.
/// (The parser's own error implements `Display` but not `std::error::Error`,
/// so it is wrapped rather than named as a source.)
#[derive(Debug, thiserror::Error)]
#[error("not a Prometheus exposition: {0}")]
pub struct NotAnExposition(openmetrics_parser::ParseError);

impl MetricsSnapshot {
    /// Parses a Prometheus text exposition as vLLM (and the simulator)
    /// writes it: `# TYPE` before the samples of each family. A page that
    /// does not parse is refused whole, with the parser's reason.
    pub fn parse(page: &str) -> Result<Self, NotAnExposition> {
        let exposition = parse_prometheus(page).map_err(NotAnExposition)?;
        let mut values: HashMap<String, f64> = HashMap::new();
        let mut add = |name: String, value: f64| {
            if value.is_finite() {
                *values.entry(name).or_insert(0.0) += value;
            }
        };
        for (name, family) in &exposition.families {
            for sample in family.iter_samples() {
                match &sample.value {
                    PrometheusValue::Unknown(n) | PrometheusValue::Gauge(n) => add(name.clone(), n.as_f64()),
                    PrometheusValue::Counter(c) => add(name.clone(), c.value.as_f64()),
                    PrometheusValue::Histogram(h) => {
                        add(format!("{name}_sum"), h.sum.as_ref().map_or(0.0, |n| n.as_f64()));
                        add(format!("{name}_count"), h.count.unwrap_or(0) as f64);
                    }
                    PrometheusValue::Summary(m) => {
                        add(format!("{name}_sum"), m.sum.as_ref().map_or(0.0, |n| n.as_f64()));
                        add(format!("{name}_count"), m.count.unwrap_or(0) as f64);
                    }
                }
            }
        }
        Ok(Self { values })
    }

    /// The summed value of a family, trying each name in order (V1 then V0 names).
    pub fn get(&self, names: &[&str]) -> Option<f64> {
        names.iter().find_map(|n| self.values.get(*n).copied())
    }
}

/// `page` without the histogram bucket samples other than `le="+Inf"`, for a caller
/// that parses many pages it rendered itself (the policy lab): [`MetricsSnapshot`] reads
/// only a histogram's `_sum` and `_count`, the parser wants one bucket per histogram, and
/// the buckets are three quarters of the simulator's page and of the time parsing it.
/// The snapshot of the result equals the whole page's (tested on the simulator's pages).
pub fn without_buckets(page: &str) -> String {
    let mut out = String::with_capacity(page.len() / 3);
    for line in page.lines() {
        let bucket = line.split_once('{').is_some_and(|(name, _)| name.ends_with("_bucket"));
        if !bucket || line.contains("le=\"+Inf\"") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Fetches and parses `url/metrics`.
pub async fn scrape(client: &HttpClient, base_url: &str) -> Result<MetricsSnapshot, ScrapeError> {
    let uri = format!("{base_url}/metrics");
    let body = get(client, &uri, SCRAPE_TIMEOUT)
        .await
        .map_err(|source| ScrapeError::Get { uri: uri.clone(), source })?;
    MetricsSnapshot::parse(&String::from_utf8_lossy(&body))
        .map_err(|source| ScrapeError::Parse { uri, source })
}

/// What one replica did during the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReplicaDelta {
    /// Replica base URL.
    pub url: String,
    /// Prompt tokens processed.
    pub prompt_tokens: f64,
    /// Tokens generated.
    pub generation_tokens: f64,
    /// Requests finished.
    pub requests: f64,
    /// Share of all requests the replica finished.
    pub request_share: f64,
    /// Prefix cache hits / queries (tokens), when the replica reports them.
    pub prefix_cache_hit_rate: Option<f64>,
    /// Prefix-cache hit tokens.
    pub prefix_cache_hits: f64,
    /// Prefix-cache queried tokens.
    pub prefix_cache_queries: f64,
    /// Mean of each histogram in [`HISTOGRAMS`], seconds (sorted by name, so records
    /// serialize the same way every time).
    pub means_s: BTreeMap<String, f64>,
}

/// The fleet's view of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VllmSide {
    /// Per replica.
    pub replicas: Vec<ReplicaDelta>,
    /// Σ prompt tokens.
    pub prompt_tokens_total: f64,
    /// Σ generated tokens.
    pub generation_tokens_total: f64,
    /// Σ finished requests.
    pub request_success_total: f64,
    /// Hits / queries over all replicas.
    pub prefix_cache_hit_rate: Option<f64>,
    /// Each histogram's mean averaged across the replicas that observed it, seconds.
    pub means_s: BTreeMap<String, f64>,
}

fn delta(before: &MetricsSnapshot, after: &MetricsSnapshot, names: &[&str]) -> f64 {
    (after.get(names).unwrap_or(0.0) - before.get(names).unwrap_or(0.0)).max(0.0)
}

/// Deltas between `before` and `after` for replicas `urls` (same order).
pub fn compare(urls: &[String], before: &[MetricsSnapshot], after: &[MetricsSnapshot]) -> VllmSide {
    let mut side = VllmSide::default();
    let (mut hits, mut queries) = (0.0, 0.0);
    let mut mean_sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for ((url, b), a) in urls.iter().zip(before).zip(after) {
        let mut r = ReplicaDelta {
            url: url.clone(),
            prompt_tokens: delta(b, a, &["vllm:prompt_tokens_total"]),
            generation_tokens: delta(b, a, &["vllm:generation_tokens_total"]),
            requests: delta(b, a, &["vllm:request_success_total"]),
            prefix_cache_hits: delta(
                b,
                a,
                &["vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"],
            ),
            prefix_cache_queries: delta(
                b,
                a,
                &["vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"],
            ),
            ..Default::default()
        };
        r.prefix_cache_hit_rate =
            (r.prefix_cache_queries > 0.0).then(|| r.prefix_cache_hits / r.prefix_cache_queries);
        for h in HISTOGRAMS {
            let sum = delta(b, a, &[&format!("vllm:{h}_seconds_sum")]);
            let count = delta(b, a, &[&format!("vllm:{h}_seconds_count")]);
            if count > 0.0 {
                r.means_s.insert(h.to_owned(), sum / count);
                let e = mean_sums.entry(h.to_owned()).or_insert((0.0, 0));
                e.0 += sum / count;
                e.1 += 1;
            }
        }
        hits += r.prefix_cache_hits;
        queries += r.prefix_cache_queries;
        side.prompt_tokens_total += r.prompt_tokens;
        side.generation_tokens_total += r.generation_tokens;
        side.request_success_total += r.requests;
        side.replicas.push(r);
    }
    for r in &mut side.replicas {
        r.request_share =
            if side.request_success_total > 0.0 { r.requests / side.request_success_total } else { 0.0 };
    }
    side.prefix_cache_hit_rate = (queries > 0.0).then(|| hits / queries);
    side.means_s = mean_sums.into_iter().map(|(k, (s, n))| (k, s / n as f64)).collect();
    side
}

#[cfg(test)]
mod tests {
    use super::*;
    use vllm_sim::config::MetricsFormat;
    use vllm_sim::exposition::{render, ExpositionInfo};
    use vllm_sim::metrics::EngineMetrics;

    fn snapshot(page: &str) -> MetricsSnapshot {
        MetricsSnapshot::parse(page).unwrap()
    }

    /// A page as vLLM writes it: `# TYPE` before each family's samples.
    fn page(hits: u32, queries: u32, length: u32, ttft_sum: f64, ttft_count: u32) -> String {
        format!(
            "# HELP vllm:prefix_cache_hits_total Hit tokens.\n\
             # TYPE vllm:prefix_cache_hits_total counter\n\
             vllm:prefix_cache_hits_total{{engine=\"0\"}} {hits}\n\
             # TYPE vllm:prefix_cache_queries_total counter\n\
             vllm:prefix_cache_queries_total{{engine=\"0\"}} {queries}\n\
             # TYPE vllm:request_success_total counter\n\
             vllm:request_success_total{{finished_reason=\"length\"}} {length}\n\
             vllm:request_success_total{{finished_reason=\"stop\"}} 1\n\
             # TYPE vllm:time_to_first_token_seconds histogram\n\
             vllm:time_to_first_token_seconds_bucket{{le=\"1.0\"}} {ttft_count}\n\
             vllm:time_to_first_token_seconds_bucket{{le=\"+Inf\"}} {ttft_count}\n\
             vllm:time_to_first_token_seconds_sum {ttft_sum}\n\
             vllm:time_to_first_token_seconds_count {ttft_count}\n"
        )
    }

    #[test]
    fn deltas_rates_and_shares() {
        let before = snapshot(&page(10, 100, 1, 1.0, 2));
        let after = snapshot(&page(70, 200, 4, 2.5, 5));
        let other = snapshot(&page(0, 0, 0, 0.0, 0));
        let other_after = snapshot(&page(0, 100, 0, 0.0, 0));
        let side = compare(&["a".into(), "b".into()], &[before, other], &[after, other_after]);
        assert_eq!(side.replicas[0].requests, 3.0);
        assert_eq!(side.replicas[0].prefix_cache_hit_rate, Some(0.6));
        assert_eq!(side.replicas[1].prefix_cache_hit_rate, Some(0.0));
        assert_eq!(side.prefix_cache_hit_rate, Some(60.0 / 200.0));
        assert_eq!(side.replicas[0].request_share, 1.0);
        assert_eq!(side.means_s["time_to_first_token"], 0.5);
        assert_eq!(side.request_success_total, 3.0);
    }

    #[test]
    fn a_label_value_holding_a_brace_keeps_its_sample() {
        let s = snapshot(
            "# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{note=\"} 9 {\"} 1\n\
             # TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"a}b\"} 3\n",
        );
        assert_eq!(s.get(&["vllm:num_requests_running"]), Some(3.0));
        assert_eq!(s.get(&["vllm:cache_config_info"]), Some(1.0));
    }

    #[test]
    fn an_exemplar_after_the_value_is_not_read_as_the_value() {
        let s = snapshot(
            "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{engine=\"0\"} 5 # {trace_id=\"a\"} 1\n",
        );
        assert_eq!(s.get(&["vllm:prompt_tokens_total"]), Some(5.0));
    }

    #[test]
    fn the_simulators_page_parses_in_both_formats() {
        for format in [MetricsFormat::V1, MetricsFormat::V0] {
            let info = ExpositionInfo {
                format,
                model_name: "m",
                block_size: 16,
                num_gpu_blocks: 100,
                enable_prefix_caching: true,
            };
            let mut metrics = EngineMetrics::new(format, 4096);
            metrics.prompt_tokens = 7;
            let page = render(&metrics, &info);
            let s = MetricsSnapshot::parse(&page).unwrap_or_else(|e| panic!("{format:?}: {e}\n{page}"));
            assert_eq!(s.get(&["vllm:prompt_tokens_total"]), Some(7.0), "{format:?}");
            assert_eq!(s.get(&["vllm:time_to_first_token_seconds_count"]), Some(0.0), "{format:?}");
        }
    }

    #[test]
    fn a_simulator_page_without_its_buckets_reads_the_same() {
        for format in [MetricsFormat::V1, MetricsFormat::V0] {
            let info = ExpositionInfo {
                format,
                model_name: "m_bucket{",
                block_size: 16,
                num_gpu_blocks: 100,
                enable_prefix_caching: true,
            };
            let mut metrics = EngineMetrics::new(format, 4096);
            metrics.prompt_tokens = 7;
            for v in [0.01, 0.3, 2.5, 1e6] {
                metrics.ttft.observe(v);
                metrics.e2e.observe(v);
            }
            let page = render(&metrics, &info);
            let short = without_buckets(&page);
            assert!(short.len() < page.len() / 2, "{format:?}: {} of {} bytes", short.len(), page.len());
            assert_eq!(
                MetricsSnapshot::parse(&short).unwrap(),
                MetricsSnapshot::parse(&page).unwrap(),
                "{format:?}"
            );
        }
    }

    #[test]
    fn a_page_that_is_not_an_exposition_is_refused() {
        assert!(MetricsSnapshot::parse("<html>not metrics</html>\n").is_err());
    }
}
