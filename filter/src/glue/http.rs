//! One HTTP request: hold the headers until the body is complete, read the
//! prompt, route, and report the decision on the response.

use super::host_store::HostStore;
use super::metrics::FilterMetrics;
use super::{log, now_ms};
use crate::prompt::extract_prompt;
use crate::router::{Decision, RouteError, Router};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;
use std::time::SystemTime;

/// Response header naming the chosen backend.
const BACKEND_HEADER: &str = "x-prefixgate-backend";
/// Response header with policy, reason and match ratio.
const DECISION_HEADER: &str = "x-prefixgate-decision";
/// OpenAI-style error body of the local 503.
const NO_BACKEND_BODY: &str = r#"{"error":{"message":"no healthy backend is available","type":"ServiceUnavailableError","param":null,"code":503}}"#;
/// OpenAI-style error body of the local 429 (every backend at its cap).
const AT_CAPACITY_BODY: &str = r#"{"error":{"message":"every backend is at its max_ongoing_requests cap; retry later","type":"RateLimitError","param":null,"code":429}}"#;

/// Routing state of one request.
pub struct HttpFilter {
    router: Rc<Router>,
    metrics: Rc<FilterMetrics>,
    rng: fastrand::Rng,
    path: String,
    /// The endpoints a gateway's subset hint allows, when the configuration
    /// names a `subset_header` and the request carries it.
    subset: Option<Vec<String>>,
    /// Set once routed; finished in `on_log`.
    decision: Option<Decision>,
    /// The response's outcome was recorded for passive health.
    outcome_recorded: bool,
    /// Routing is over for this request (routed or answered locally).
    done: bool,
}

impl HttpFilter {
    /// A request context using `router`; `seed` drives its random choices.
    pub fn new(router: Rc<Router>, metrics: Rc<FilterMetrics>, seed: u64) -> Self {
        Self {
            router,
            metrics,
            rng: fastrand::Rng::with_seed(seed),
            path: String::new(),
            subset: None,
            decision: None,
            outcome_recorded: false,
            done: false,
        }
    }

    /// Records the response status for passive health, once per request.
    ///
    /// When the host reports that another backend served the request (it
    /// retried after a failure before the first byte), the chosen backend
    /// failed and the status belongs to the one that served.
    fn record_outcome(&mut self, status: u16) {
        let Some(decision) = &self.decision else {
            return;
        };
        if std::mem::replace(&mut self.outcome_recorded, true) {
            return;
        }
        let now = now_ms(self.get_current_time());
        let served =
            self.get_property(vec!["upstream", "address"]).and_then(|a| String::from_utf8(a).ok()).filter(
                |a| *a != decision.backend && self.router.config().backends.iter().any(|b| b.address() == a),
            );
        let outcomes = match &served {
            Some(served) => vec![(decision.backend.as_str(), 502), (served.as_str(), status)],
            None => vec![(decision.backend.as_str(), status)],
        };
        for (backend, status) in outcomes {
            let transition = self.router.record_outcome(&HostStore, backend, status, now);
            self.metrics.outcome(backend, transition);
        }
        if let Some(served) = &served {
            // The retry's replica, not the chosen one, now caches the prompt.
            self.router.credit(&HostStore, decision, served, now);
        }
    }

    /// Routes with `prompt`: sets the upstream header, or answers 503.
    ///
    /// `started` is when the filter began on the decision (before reading the
    /// prompt), for `prefixgate_decision_duration_seconds`.
    fn route(&mut self, prompt: Option<&str>, started: SystemTime) -> Action {
        self.done = true;
        let upstream_header = self.router.config().upstream_header.clone();
        let now = now_ms(self.get_current_time());
        let subset: Option<Vec<&str>> = self.subset.as_ref().map(|s| s.iter().map(String::as_str).collect());
        match self.router.route_within(&HostStore, prompt, subset.as_deref(), now, &mut self.rng) {
            Ok(decision) => {
                self.set_http_request_header(&upstream_header, Some(&decision.upstream_value()));
                let took = self.get_current_time().duration_since(started).ok().map(|d| d.as_secs_f64());
                self.metrics.decision(decision.reason, decision.match_ratio, took);
                log(
                    LogLevel::Debug,
                    &format!(
                        "prefixgate: route {} -> {} ({})",
                        self.path,
                        decision.backend,
                        decision.header_value()
                    ),
                );
                self.decision = Some(decision);
                Action::Continue
            }
            Err(e) => {
                self.set_http_request_header(&upstream_header, None);
                let (decision, body) = match e {
                    RouteError::NoHealthyBackend { .. } => {
                        self.metrics.no_healthy_backend();
                        ("no_healthy_backend", NO_BACKEND_BODY)
                    }
                    RouteError::AtCapacity { .. } => {
                        self.metrics.at_capacity();
                        ("at_capacity", AT_CAPACITY_BODY)
                    }
                };
                log(LogLevel::Warn, &format!("prefixgate: {e}; answering {}", e.status()));
                self.send_http_response(
                    u32::from(e.status()),
                    vec![("content-type", "application/json"), ("x-prefixgate-decision", decision)],
                    Some(body.as_bytes()),
                );
                Action::Pause
            }
        }
    }
}

impl Context for HttpFilter {}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        // A client never chooses the upstream, whatever happens to the body.
        let upstream_header = self.router.config().upstream_header.clone();
        self.set_http_request_header(&upstream_header, None);
        self.subset = self.router.config().subset_header.as_deref().and_then(|name| {
            let list = self.get_http_request_header(name)?;
            Some(list.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect())
        });
        self.path = self
            .get_http_request_header_bytes(":path")
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default();
        let declared_too_big = self
            .get_http_request_header("content-length")
            .and_then(|n| n.trim().parse::<usize>().ok())
            .is_some_and(|n| n > self.router.config().max_body_bytes);
        if end_of_stream || declared_too_big {
            // Routed by load now: a body over the limit is never buffered.
            return self.route(None, self.get_current_time());
        }
        // Hold the headers (and so the choice of upstream) until the body is in.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.done {
            return Action::Continue;
        }
        let started = self.get_current_time();
        if body_size > self.router.config().max_body_bytes {
            log(
                LogLevel::Debug,
                &format!("prefixgate: body over {} bytes, routing without prompt", body_size),
            );
            return self.route(None, started);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let prompt = extract_prompt(&self.path, &body, self.router.config().max_prompt_chars);
        self.route(prompt.as_deref(), started)
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        if self.done {
            return Action::Continue;
        }
        // The body ended without an end-of-stream body callback: no prompt seen.
        self.route(None, self.get_current_time())
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(status) = self.get_http_response_header(":status").and_then(|s| s.parse::<u16>().ok()) {
            self.record_outcome(status);
        }
        if let (Some(decision), true) = (&self.decision, self.router.config().decision_headers) {
            self.set_http_response_header(BACKEND_HEADER, Some(&decision.backend));
            self.set_http_response_header(DECISION_HEADER, Some(&decision.header_value()));
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if !self.outcome_recorded {
            // No response headers passed this filter: the host answered
            // itself (no connection, timeout); `response.code` says how.
            if let Some(status) = self
                .get_property(vec!["response", "code"])
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map(i64::from_le_bytes)
                .and_then(|code| u16::try_from(code).ok())
                .filter(|code| *code != 0)
            {
                self.record_outcome(status);
            }
        }
        if let Some(decision) = self.decision.take() {
            self.router.finish(&HostStore, &decision.backend);
        }
    }
}
