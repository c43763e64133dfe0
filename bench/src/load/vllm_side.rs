//! The replicas' own view of a run: `/metrics` scraped before and after, and
//! the deltas bench reports beside the client-side metrics.

use super::client::HttpClient;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

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

/// One replica's `/metrics`, each family summed over its label sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    values: HashMap<String, f64>,
}

impl MetricsSnapshot {
    /// Parses a Prometheus text page (comments and malformed lines skipped).
    pub fn parse(page: &str) -> Self {
        let mut values = HashMap::new();
        for line in page.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..name_end];
            let after_labels = match line[name_end..].starts_with('{') {
                true => line.rfind('}').map(|i| &line[i + 1..]).unwrap_or(""),
                false => &line[name_end..],
            };
            let Some(value) = after_labels.split_whitespace().next().and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            if value.is_finite() {
                *values.entry(name.to_owned()).or_insert(0.0) += value;
            }
        }
        Self { values }
    }

    /// The summed value of a family, trying each name in order (V1 then V0 names).
    pub fn get(&self, names: &[&str]) -> Option<f64> {
        names.iter().find_map(|n| self.values.get(*n).copied())
    }
}

/// Fetches and parses `url/metrics`.
pub async fn scrape(client: &HttpClient, base_url: &str) -> Result<MetricsSnapshot, String> {
    let uri = format!("{base_url}/metrics");
    let request = hyper::Request::get(&uri).body(Full::default()).map_err(|e| format!("{uri}: {e}"))?;
    let response = client.request(request).await.map_err(|e| format!("{uri}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{uri}: HTTP {}", response.status()));
    }
    let body = response.into_body().collect().await.map_err(|e| format!("{uri}: {e}"))?.to_bytes();
    Ok(MetricsSnapshot::parse(&String::from_utf8_lossy(&body)))
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

    #[test]
    fn deltas_rates_and_shares() {
        let before = MetricsSnapshot::parse(
            "vllm:prefix_cache_hits_total{engine=\"0\"} 10\nvllm:prefix_cache_queries_total 100\n\
             vllm:request_success_total{finished_reason=\"length\"} 1\nvllm:request_success_total{finished_reason=\"stop\"} 1\n\
             vllm:time_to_first_token_seconds_sum 1\nvllm:time_to_first_token_seconds_count 2\n",
        );
        let after = MetricsSnapshot::parse(
            "# HELP x\nvllm:prefix_cache_hits_total{engine=\"0\"} 70\nvllm:prefix_cache_queries_total 200\n\
             vllm:request_success_total{finished_reason=\"length\"} 4\nvllm:request_success_total{finished_reason=\"stop\"} 1\n\
             vllm:time_to_first_token_seconds_sum 2.5\nvllm:time_to_first_token_seconds_count 5\n",
        );
        let other = MetricsSnapshot::parse("vllm:request_success_total 0\n");
        let other_after =
            MetricsSnapshot::parse("vllm:request_success_total 1\nvllm:prefix_cache_queries_total 100\n");
        let side = compare(&["a".into(), "b".into()], &[before, other], &[after, other_after]);
        assert_eq!(side.replicas[0].requests, 3.0);
        assert_eq!(side.replicas[0].prefix_cache_hit_rate, Some(0.6));
        assert_eq!(side.replicas[1].prefix_cache_hit_rate, Some(0.0));
        assert_eq!(side.prefix_cache_hit_rate, Some(60.0 / 200.0));
        assert_eq!(side.replicas[0].request_share, 0.75);
        assert_eq!(side.means_s["time_to_first_token"], 0.5);
        assert_eq!(side.request_success_total, 4.0);
    }
}
