//! The proxy's Prometheus metrics, registered in one place.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric of the proxy.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `prefixgate_requests_total{backend,status}`.
    pub requests: IntCounterVec,
    /// `prefixgate_upstream_latency_seconds{backend}`: until the last byte.
    pub latency: HistogramVec,
    /// `prefixgate_upstream_ttfb_seconds{backend}`: until response headers.
    pub ttfb: HistogramVec,
    /// `prefixgate_request_phase_duration_seconds`: from request headers
    /// until the upstream is chosen (body read, filter request callbacks).
    pub decision: Histogram,
    /// `prefixgate_in_flight{backend}`.
    pub in_flight: IntGaugeVec,
    /// `prefixgate_filter_traps_total`.
    pub traps: IntCounter,
    /// `prefixgate_hot_swaps_total{kind,result}`: `kind` is `module`,
    /// `config` or `module_and_config`; `result` is `ok`, `refused` (did not
    /// compile, configure or name valid backends), `canary_failed` (trapped
    /// or hung on the canary request or tick) or `rolled_back` (swapped in,
    /// then rolled back after its trap rate spiked).
    pub hot_swaps: IntCounterVec,
    /// `prefixgate_filter_labels_lost_total`: responses to requests the
    /// filter routed whose VM was replaced before their response headers,
    /// so the host labelled them (`filter_vm_replaced`).
    pub labels_lost: IntCounter,
    /// `prefixgate_retries_total{reason}`: requests retried on another
    /// backend before any response byte reached the client, by what failed:
    /// `upstream_error` (refused or reset), `upstream_timeout` (no response
    /// headers in time), `upstream_unavailable` (502 or 503).
    pub retries: IntCounterVec,
    /// `prefixgate_fallbacks_total{reason}`: requests routed by the host
    /// instead of the filter: `filter_failed`, `no_upstream`.
    pub fallback: IntCounterVec,
    /// `prefixgate_buffered_request_bytes`: request-body bytes held now,
    /// across all requests (capped by `max_buffered_bytes`).
    pub buffered_bytes: IntGauge,
    /// `prefixgate_client_connections`: client connections open now
    /// (capped by `max_connections`).
    pub connections: IntGauge,
    /// `prefixgate_timeouts_total{kind}`: `header_read`, `request_body_idle`,
    /// `keep_alive_idle`, `upstream_first_byte`, `stream_idle`.
    pub timeouts: IntCounterVec,
    /// `prefixgate_buffer_full_total{action}`: requests that found the
    /// request-body budget full: `streamed` (unseen by the filter) or
    /// `refused` (503); and responses the filter paused that passed
    /// `max_body_bytes` or the budget: `response_streamed`.
    pub buffer_full: IntCounterVec,
    /// `prefixgate_streams_cut_total{reason}`: response streams cut mid-way
    /// (`upstream_broken`, `stream_idle`).
    pub streams_cut: IntCounterVec,
    /// `prefixgate_loops_refused_total`: requests answered 508 because
    /// they had gone through more than `max_hops` proxies.
    pub loops: IntCounter,
}

const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const DECISION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
    10.0,
];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("prefixgate_requests_total", "Requests by backend and status"),
            &["backend", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "prefixgate_upstream_latency_seconds",
                "Upstream time until the last response byte",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["backend"],
        )?;
        let ttfb = HistogramVec::new(
            HistogramOpts::new("prefixgate_upstream_ttfb_seconds", "Upstream time until response headers")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["backend"],
        )?;
        let decision = Histogram::with_opts(
            HistogramOpts::new(
                "prefixgate_request_phase_duration_seconds",
                "Time from the request headers until the upstream is chosen: reading the body and the filter's request callbacks",
            )
            .buckets(DECISION_BUCKETS.to_vec()),
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new("prefixgate_in_flight", "Requests in flight per backend"),
            &["backend"],
        )?;
        let traps = IntCounter::new(
            "prefixgate_filter_traps_total",
            "Filter callbacks that trapped or ran out of time or memory",
        )?;
        let hot_swaps = IntCounterVec::new(
            Opts::new(
                "prefixgate_hot_swaps_total",
                "Module or plugin configuration swaps, by what was swapped and how it ended",
            ),
            &["kind", "result"],
        )?;
        let labels_lost = IntCounter::new(
            "prefixgate_filter_labels_lost_total",
            "Responses to requests the filter routed whose VM was replaced before their response headers",
        )?;
        registry.register(Box::new(labels_lost.clone()))?;
        let retries = IntCounterVec::new(
            Opts::new(
                "prefixgate_retries_total",
                "Requests retried on another backend before any response byte reached the client, by what failed",
            ),
            &["reason"],
        )?;
        let fallback = IntCounterVec::new(
            Opts::new(
                "prefixgate_fallbacks_total",
                "Requests routed by the host instead of the filter, by why",
            ),
            &["reason"],
        )?;
        let buffered_bytes = IntGauge::new(
            "prefixgate_buffered_request_bytes",
            "Request-body bytes buffered now, across all requests",
        )?;
        let connections = IntGauge::new("prefixgate_client_connections", "Client connections open now")?;
        let timeouts = IntCounterVec::new(
            Opts::new("prefixgate_timeouts_total", "Reads cut off by a timeout, by kind"),
            &["kind"],
        )?;
        let buffer_full = IntCounterVec::new(
            Opts::new(
                "prefixgate_buffer_full_total",
                "Requests that found the request-body buffer budget full, by what was done",
            ),
            &["action"],
        )?;
        let streams_cut = IntCounterVec::new(
            Opts::new("prefixgate_streams_cut_total", "Response streams cut mid-way, by reason"),
            &["reason"],
        )?;
        registry.register(Box::new(streams_cut.clone()))?;
        let loops = IntCounter::new(
            "prefixgate_loops_refused_total",
            "Requests refused with 508: they went through more than max_hops proxies",
        )?;
        registry.register(Box::new(loops.clone()))?;
        registry.register(Box::new(buffered_bytes.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(timeouts.clone()))?;
        registry.register(Box::new(buffer_full.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(ttfb.clone()))?;
        registry.register(Box::new(decision.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(traps.clone()))?;
        registry.register(Box::new(hot_swaps.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(fallback.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            ttfb,
            decision,
            in_flight,
            traps,
            hot_swaps,
            labels_lost,
            retries,
            fallback,
            buffered_bytes,
            connections,
            timeouts,
            buffer_full,
            streams_cut,
            loops,
        })
    }

    /// Text exposition of the proxy's metrics.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
