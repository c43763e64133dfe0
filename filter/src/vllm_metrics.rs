//! Load and cache size of a vLLM replica, read from its Prometheus `/metrics`.
//!
//! A small line parser rather than a general Prometheus crate: the module must
//! stay small, and only a handful of vLLM families matter. It never panics and
//! ignores whatever it does not understand (comments, unknown families, `_created`
//! lines, histograms), reading both the V0 and V1 metric names.

use serde::{Deserialize, Serialize};

/// What the router needs from one scrape of a vLLM replica.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VllmLoad {
    /// `vllm:num_requests_running`, summed over engines.
    pub running: f64,
    /// `vllm:num_requests_waiting`, summed over engines.
    pub waiting: f64,
    /// KV cache usage, 0..1 (`vllm:kv_cache_usage_perc` or `vllm:gpu_cache_usage_perc`).
    pub kv_cache_usage: Option<f64>,
    /// `num_gpu_blocks` label of `vllm:cache_config_info`: KV cache size in blocks.
    pub num_gpu_blocks: Option<u64>,
    /// `block_size` label of `vllm:cache_config_info`: tokens per block.
    pub block_size: Option<u64>,
}

impl VllmLoad {
    /// Requests the replica holds: running plus waiting, rounded, never negative.
    pub fn queued(&self) -> u64 {
        let total = self.running + self.waiting;
        if total.is_finite() && total > 0.0 {
            total.round() as u64
        } else {
            0
        }
    }
}

/// Error for a page that carries none of the vLLM load metrics.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no vLLM load metrics (vllm:num_requests_running / vllm:num_requests_waiting) in the page")]
pub struct NotVllmMetrics;

/// Parses a `/metrics` page as vLLM serves it (V0 or V1 names).
pub fn parse_vllm_metrics(page: &str) -> Result<VllmLoad, NotVllmMetrics> {
    let mut load = VllmLoad::default();
    let mut seen_load = false;
    for line in page.lines() {
        let Some(sample) = Sample::parse(line) else {
            continue;
        };
        match sample.name {
            "vllm:num_requests_running" => {
                seen_load = true;
                load.running += finite(sample.value);
            }
            "vllm:num_requests_waiting" => {
                seen_load = true;
                load.waiting += finite(sample.value);
            }
            "vllm:kv_cache_usage_perc" | "vllm:gpu_cache_usage_perc" if sample.value.is_finite() => {
                let prev = load.kv_cache_usage.unwrap_or(0.0);
                load.kv_cache_usage = Some(prev.max(sample.value));
            }
            "vllm:cache_config_info" => {
                load.num_gpu_blocks = sample.label_u64("num_gpu_blocks").or(load.num_gpu_blocks);
                load.block_size = sample.label_u64("block_size").or(load.block_size);
            }
            _ => {}
        }
    }
    if seen_load {
        Ok(load)
    } else {
        Err(NotVllmMetrics)
    }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// One sample line: `name{label="value",...} value [timestamp]`.
struct Sample<'a> {
    name: &'a str,
    labels: &'a str,
    value: f64,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
        let name = &line[..name_end];
        let rest = &line[name_end..];
        let (labels, rest) = if rest.starts_with('{') {
            let close = closing_brace(rest)?;
            (&rest[1..close], &rest[close + 1..])
        } else {
            ("", rest)
        };
        let value = rest.split_whitespace().next()?;
        Some(Self { name, labels, value: parse_value(value)? })
    }

    /// The value of label `key`, unescaped, if present.
    fn label(&self, key: &str) -> Option<String> {
        let mut rest = self.labels;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if rest.is_empty() {
                return None;
            }
            let eq = rest.find('=')?;
            let name = rest[..eq].trim();
            let after = rest[eq + 1..].trim_start();
            let body = after.strip_prefix('"')?;
            let (value, consumed) = unquote(body)?;
            if name == key {
                return Some(value);
            }
            rest = &body[consumed..];
        }
    }

    fn label_u64(&self, key: &str) -> Option<u64> {
        let raw = self.label(key)?;
        raw.parse::<u64>().ok().or_else(|| {
            let f: f64 = raw.parse().ok()?;
            (f.is_finite() && f >= 0.0).then_some(f as u64)
        })
    }
}

/// Index of the `}` closing a label set, skipping quoted values.
fn closing_brace(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match (in_quotes, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_quotes = !in_quotes,
            (false, _, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

/// A quoted label value up to its closing quote: (unescaped text, bytes consumed
/// including the quote).
fn unquote(body: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            other => out.push(other),
        }
    }
    None
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V1_PAGE: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 8.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 0.031
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",engine="0",gpu_memory_utilization="0.9",num_gpu_blocks="36000"} 1.0
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 1.75e+06
vllm:request_success_total{engine="0",finished_reason="stop",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 3.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 1000.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} NaN
"#;

    const V0_PAGE: &str = r#"# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="qwen"} 2.0
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="qwen"} 0.0
vllm:num_requests_waiting{model_name="qwen"} 0.0
vllm:gpu_cache_usage_perc{model_name="qwen"} 0.5
vllm:gpu_prefix_cache_hit_rate{model_name="qwen"} 0.42
python_gc_objects_collected_total{generation="0"} 1234.0
vllm:cache_config_info{block_size="16",num_gpu_blocks="1024"} 1.0
"#;

    #[test]
    fn reads_a_v1_page() {
        let load = parse_vllm_metrics(V1_PAGE).unwrap();
        assert_eq!(load.running, 8.0);
        assert_eq!(load.waiting, 3.0);
        assert_eq!(load.queued(), 11);
        assert_eq!(load.kv_cache_usage, Some(0.031));
        assert_eq!(load.num_gpu_blocks, Some(36_000));
        assert_eq!(load.block_size, Some(16));
    }

    #[test]
    fn reads_a_v0_page() {
        let load = parse_vllm_metrics(V0_PAGE).unwrap();
        assert_eq!(load.queued(), 2);
        assert_eq!(load.kv_cache_usage, Some(0.5));
        assert_eq!(load.num_gpu_blocks, Some(1024));
    }

    #[test]
    fn sums_engines_and_ignores_non_finite_values() {
        let page = "vllm:num_requests_running{engine=\"0\"} 2\n\
                    vllm:num_requests_running{engine=\"1\"} 3\n\
                    vllm:num_requests_waiting{engine=\"0\"} NaN\n\
                    vllm:num_requests_waiting{engine=\"1\"} +Inf\n";
        let load = parse_vllm_metrics(page).unwrap();
        assert_eq!(load.running, 5.0);
        assert_eq!(load.waiting, 0.0);
    }

    #[test]
    fn labels_with_escapes_and_braces() {
        let page = "vllm:cache_config_info{odd=\"a\\\"}b,c\",num_gpu_blocks=\"77\"} 1\n\
                    vllm:num_requests_running 1 1712345678000\n";
        let load = parse_vllm_metrics(page).unwrap();
        assert_eq!(load.num_gpu_blocks, Some(77));
        assert_eq!(load.running, 1.0);
    }

    #[test]
    fn a_page_without_vllm_load_is_an_error() {
        assert_eq!(parse_vllm_metrics("up 1\n"), Err(NotVllmMetrics));
        assert_eq!(parse_vllm_metrics("<html>502 Bad Gateway</html>"), Err(NotVllmMetrics));
        assert_eq!(parse_vllm_metrics(""), Err(NotVllmMetrics));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_vllm_metrics(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn never_panics_on_metric_like_text(
            lines in prop::collection::vec("[a-z:_]{0,30}(\\{[a-z_]{0,5}=?\"?[^\n]{0,12}\"?,?\\}?)? ?[-+0-9.eEInfNa]{0,8}", 0..20)
        ) {
            let _ = parse_vllm_metrics(&lines.join("\n"));
        }
    }
}
