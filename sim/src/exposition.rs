//! Prometheus text exposition (format 0.0.4) of [`EngineMetrics`], written by hand to match
//! what vLLM's Python `prometheus_client` prints: `# HELP`/`# TYPE` per family, labels sorted
//! by name, Python float reprs (`8.0`, `0.25`, `1.75e+06`), `_bucket`/`_count`/`_sum` lines.

use std::fmt::Write as _;

use super::config::MetricsFormat;
use super::metrics::{EngineMetrics, Histogram};
use super::request::FinishReason;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Replica facts the exposition labels carry.
#[derive(Debug, Clone, Copy)]
pub struct ExpositionInfo<'a> {
    /// Dialect.
    pub format: MetricsFormat,
    /// `model_name` label (the first served model name).
    pub model_name: &'a str,
    /// KV block size, for `cache_config_info`.
    pub block_size: usize,
    /// KV blocks, for `cache_config_info`.
    pub num_gpu_blocks: usize,
    /// Whether prefix caching is on, for `cache_config_info` (and V0's hit-rate gauge,
    /// which reads -1 when it is off).
    pub enable_prefix_caching: bool,
}

/// Formats a float as Python's `repr` would (shortest round trip, `.0` on integers,
/// exponent below 1e-4 and from 1e16).
pub fn python_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust: "1.5e-5"; Python: "1.5e-05".
        let s = format!("{v:e}");
        let Some((mantissa, exp)) = s.split_once('e') else {
            return s;
        };
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    let s = format!("{v}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// `prometheus_client`'s `floatToGoString`: Python repr, but large values switch to an
/// exponent after 6 integer digits, as Go does (`1750000.0` → `1.75e+06`).
pub fn go_float(v: f64) -> String {
    if v == f64::INFINITY {
        return "+Inf".to_owned();
    }
    if v == f64::NEG_INFINITY {
        return "-Inf".to_owned();
    }
    if v.is_nan() {
        return "NaN".to_owned();
    }
    let s = python_repr(v);
    match s.find('.') {
        Some(dot) if v > 0.0 && dot > 6 => {
            let raw = format!("{}.{}{}", &s[..1], &s[1..dot], &s[dot + 1..]);
            let mantissa = raw.trim_end_matches(['0', '.']);
            format!("{mantissa}e+0{}", dot - 1)
        }
        _ => s,
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Writer<'a> {
    out: String,
    base: Vec<(&'static str, &'a str)>,
}

impl<'a> Writer<'a> {
    fn labels(&self, extra: &[(&'static str, &str)]) -> String {
        let mut all: Vec<(&str, &str)> = self.base.iter().map(|&(k, v)| (k, v)).collect();
        all.extend(extra.iter().map(|&(k, v)| (k, v)));
        all.sort_by(|a, b| a.0.cmp(b.0));
        let inner: Vec<String> = all.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        format!("{{{}}}", inner.join(","))
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, extra: &[(&'static str, &str)], value: f64) {
        let labels = self.labels(extra);
        let _ = writeln!(self.out, "{name}{labels} {}", go_float(value));
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A counter family; `name` carries the exposed `_total` suffix.
    fn counter(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, cum) in h.bounds().iter().zip(h.cumulative()) {
            let le = go_float(*bound);
            self.sample(&bucket, &[("le", &le)], cum as f64);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count() as f64);
        self.sample(&format!("{name}_count"), &[], h.count() as f64);
        self.sample(&format!("{name}_sum"), &[], h.sum());
    }
}

/// Renders the whole `/metrics` page.
pub fn render(m: &EngineMetrics, info: &ExpositionInfo<'_>) -> String {
    let v1 = info.format == MetricsFormat::V1;
    let mut w = Writer {
        out: String::with_capacity(16 * 1024),
        base: if v1 {
            vec![("engine", "0"), ("model_name", info.model_name)]
        } else {
            vec![("model_name", info.model_name)]
        },
    };

    // Load gauges.
    w.gauge(
        "vllm:num_requests_running",
        if v1 {
            "Number of requests in model execution batches."
        } else {
            "Number of requests currently running on GPU."
        },
        m.num_running as f64,
    );
    w.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", m.num_waiting as f64);
    if v1 {
        w.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", m.kv_usage);
        w.gauge(
            "vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage. DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
            m.kv_usage,
        );
    } else {
        w.gauge("vllm:num_requests_swapped", "Number of requests swapped to CPU.", 0.0);
        w.gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", m.kv_usage);
        w.gauge("vllm:cpu_cache_usage_perc", "CPU KV-cache usage. 1 means 100 percent usage.", 0.0);
        // V0's allocator without prefix caching reports -1 ("not supported or disabled").
        let rate = if !info.enable_prefix_caching {
            -1.0
        } else if m.prefix_query_blocks == 0 {
            0.0
        } else {
            m.prefix_hit_blocks as f64 / m.prefix_query_blocks as f64
        };
        w.gauge("vllm:gpu_prefix_cache_hit_rate", "GPU prefix cache block hit rate.", rate);
    }

    // Prefix cache counters (tokens), under the 0.8 and the 0.9.2+ names.
    if v1 {
        for (prefix, what) in
            [("vllm:gpu_prefix_cache", "GPU prefix cache"), ("vllm:prefix_cache", "Prefix cache")]
        {
            w.counter(
                &format!("{prefix}_queries_total"),
                &format!("{what} queries, in terms of number of queried tokens."),
                m.prefix_query_tokens as f64,
            );
            w.counter(
                &format!("{prefix}_hits_total"),
                &format!("{what} hits, in terms of number of cached tokens."),
                m.prefix_hit_tokens as f64,
            );
        }
    }

    w.counter(
        "vllm:num_preemptions_total",
        "Cumulative number of preemption from the engine.",
        m.num_preemptions as f64,
    );
    w.counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", m.prompt_tokens as f64);
    w.counter(
        "vllm:generation_tokens_total",
        "Number of generation tokens processed.",
        m.generation_tokens as f64,
    );
    w.header("vllm:request_success_total", "counter", "Count of successfully processed requests.");
    for (reason, count) in FinishReason::ALL.iter().zip(m.request_success) {
        // V1 creates every series at start; V0 only once a request finishes that way.
        if v1 || count > 0 {
            w.sample("vllm:request_success_total", &[("finished_reason", reason.as_str())], count as f64);
        }
    }

    // Latency histograms.
    w.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", &m.ttft);
    w.histogram(
        "vllm:time_per_output_token_seconds",
        "Histogram of time per output token in seconds.",
        &m.inter_token,
    );
    if v1 {
        w.histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            &m.inter_token,
        );
        w.histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            &m.request_tpot,
        );
    }
    w.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", &m.e2e);
    w.histogram(
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        &m.queue,
    );
    w.histogram(
        "vllm:request_inference_time_seconds",
        "Histogram of time spent in RUNNING phase for request.",
        &m.inference,
    );
    w.histogram(
        "vllm:request_prefill_time_seconds",
        "Histogram of time spent in PREFILL phase for request.",
        &m.prefill,
    );
    w.histogram(
        "vllm:request_decode_time_seconds",
        "Histogram of time spent in DECODE phase for request.",
        &m.decode,
    );
    w.histogram(
        "vllm:request_prompt_tokens",
        "Number of prefill tokens processed.",
        &m.request_prompt_tokens,
    );
    w.histogram(
        "vllm:request_generation_tokens",
        "Number of generation tokens processed.",
        &m.request_generation_tokens,
    );
    w.histogram(
        "vllm:request_params_max_tokens",
        "Histogram of the max_tokens request parameter.",
        &m.request_max_tokens,
    );
    if v1 {
        w.histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            &m.iteration_tokens,
        );
    }

    // cache_config_info: labels carry the config, no model_name.
    w.header("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig");
    let block_size = info.block_size.to_string();
    let blocks = info.num_gpu_blocks.to_string();
    let mut labels: Vec<(&str, &str)> = vec![
        ("block_size", &block_size),
        ("cache_dtype", "auto"),
        ("enable_prefix_caching", if info.enable_prefix_caching { "True" } else { "False" }),
        ("gpu_memory_utilization", "0.9"),
        ("num_cpu_blocks", "0"),
        ("num_gpu_blocks", &blocks),
        ("num_gpu_blocks_override", "None"),
        ("swap_space", "4"),
    ];
    if v1 {
        labels.push(("engine", "0"));
    }
    labels.sort_by(|a, b| a.0.cmp(b.0));
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    let _ = writeln!(w.out, "vllm:cache_config_info{{{}}} 1.0", inner.join(","));

    // The simulator's own timing health (not in vLLM).
    w.counter("vllm_sim:engine_steps_total", "Engine steps run by the simulator.", m.steps as f64);
    w.counter("vllm_sim:engine_step_seconds_total", "Simulated seconds of all engine steps.", m.step_seconds);
    w.histogram(
        "vllm_sim:scheduling_lag_seconds",
        "How late steps ended versus the model, in simulated seconds.",
        &m.lag,
    );
    w.histogram(
        "vllm_sim:scheduling_lag_ratio",
        "Scheduling lag divided by the step's simulated duration.",
        &m.lag_ratio,
    );
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_prometheus_client() {
        assert_eq!(go_float(8.0), "8.0");
        assert_eq!(go_float(0.25), "0.25");
        assert_eq!(go_float(0.0), "0.0");
        assert_eq!(go_float(27453.0), "27453.0");
        assert_eq!(go_float(1_750_000.0), "1.75e+06");
        assert_eq!(go_float(1_000_000.0), "1e+06");
        assert_eq!(go_float(2560.0), "2560.0");
        assert_eq!(go_float(0.001), "0.001");
        assert_eq!(go_float(1.5e-5), "1.5e-05");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }
}
