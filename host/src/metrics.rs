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
    /// `prefixgate_decision_seconds`: request phase (filter callbacks, body).
    pub decision: Histogram,
    /// `prefixgate_in_flight{backend}`.
    pub in_flight: IntGaugeVec,
    /// `prefixgate_filter_traps_total`.
    pub traps: IntCounter,
    /// `prefixgate_swaps_total`.
    pub swaps: IntCounter,
    /// `prefixgate_swap_canary_failures_total`: swaps refused because the
    /// new filter trapped (or hung) on the canary request or tick.
    pub canary_failures: IntCounter,
    /// `prefixgate_rollbacks_total`: swapped-in filters rolled back after
    /// their trap rate spiked.
    pub rollbacks: IntCounter,
    /// `prefixgate_filter_labels_lost_total`: responses to requests the
    /// filter routed whose VM was replaced before their response headers,
    /// so the host labelled them (`filter_vm_replaced`).
    pub labels_lost: IntCounter,
    /// `prefixgate_retries_total`.
    pub retries: IntCounter,
    /// `prefixgate_fallback_total{reason}`: requests routed by the host.
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
const DECISION_BUCKETS: &[f64] =
    &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025];

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
            HistogramOpts::new("prefixgate_decision_seconds", "Time spent in request-phase filter callbacks")
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
        let swaps = IntCounter::new("prefixgate_swaps_total", "Module or configuration swaps")?;
        let canary_failures = IntCounter::new(
            "prefixgate_swap_canary_failures_total",
            "Swaps refused because the new filter trapped or hung on the canary request or tick",
        )?;
        let rollbacks = IntCounter::new(
            "prefixgate_rollbacks_total",
            "Swapped-in filters rolled back to the previous one after their trap rate spiked",
        )?;
        let labels_lost = IntCounter::new(
            "prefixgate_filter_labels_lost_total",
            "Responses to requests the filter routed whose VM was replaced before their response headers",
        )?;
        registry.register(Box::new(canary_failures.clone()))?;
        registry.register(Box::new(rollbacks.clone()))?;
        registry.register(Box::new(labels_lost.clone()))?;
        let retries = IntCounter::new("prefixgate_retries_total", "Requests retried on another backend")?;
        let fallback = IntCounterVec::new(
            Opts::new("prefixgate_fallback_total", "Requests routed by the host's fallback"),
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
        registry.register(Box::new(swaps.clone()))?;
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
            swaps,
            canary_failures,
            rollbacks,
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
