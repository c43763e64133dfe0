//! One HTTP request: hold the headers until the body is complete, read the
//! prompt, route, and report the decision on the response.

use super::host_store::HostStore;
use super::metrics::FilterMetrics;
use super::{log, now_ms};
use crate::prompt::extract_prompt;
use crate::router::{Decision, Router};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;

/// Response header naming the chosen backend.
const BACKEND_HEADER: &str = "x-prefixgate-backend";
/// Response header with policy, reason and match ratio.
const DECISION_HEADER: &str = "x-prefixgate-decision";
/// OpenAI-style error body of the local 503.
const NO_BACKEND_BODY: &str = r#"{"error":{"message":"no healthy backend is available","type":"ServiceUnavailableError","param":null,"code":503}}"#;

/// Routing state of one request.
pub struct HttpFilter {
    router: Rc<Router>,
    metrics: Rc<FilterMetrics>,
    rng: fastrand::Rng,
    path: String,
    /// Set once routed; finished in `on_log`.
    decision: Option<Decision>,
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
            decision: None,
            done: false,
        }
    }

    /// Routes with `prompt`: sets the upstream header, or answers 503.
    fn route(&mut self, prompt: Option<&str>) -> Action {
        self.done = true;
        let upstream_header = self.router.config().upstream_header.clone();
        let now = now_ms(self.get_current_time());
        match self.router.route(&HostStore, prompt, now, &mut self.rng) {
            Ok(decision) => {
                self.set_http_request_header(&upstream_header, Some(&decision.backend));
                self.metrics.decision(decision.reason, decision.match_ratio);
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
                self.metrics.no_healthy_backend();
                log(LogLevel::Warn, &format!("prefixgate: {e}; answering 503"));
                self.send_http_response(
                    503,
                    vec![
                        ("content-type", "application/json"),
                        ("x-prefixgate-decision", "no_healthy_backend"),
                    ],
                    Some(NO_BACKEND_BODY.as_bytes()),
                );
                Action::Pause
            }
        }
    }
}

impl Context for HttpFilter {}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        self.path = self
            .get_http_request_header_bytes(":path")
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default();
        if end_of_stream {
            return self.route(None);
        }
        // Hold the headers (and so the choice of upstream) until the body is in.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.done {
            return Action::Continue;
        }
        if body_size > self.router.config().max_body_bytes {
            log(
                LogLevel::Debug,
                &format!("prefixgate: body over {} bytes, routing without prompt", body_size),
            );
            return self.route(None);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let prompt = extract_prompt(&self.path, &body, self.router.config().max_prompt_chars);
        self.route(prompt.as_deref())
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        if self.done {
            return Action::Continue;
        }
        // The body ended without an end-of-stream body callback: no prompt seen.
        self.route(None)
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let (Some(decision), true) = (&self.decision, self.router.config().decision_headers) {
            self.set_http_response_header(BACKEND_HEADER, Some(&decision.backend));
            self.set_http_response_header(DECISION_HEADER, Some(&decision.header_value()));
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(decision) = self.decision.take() {
            self.router.finish(&HostStore, &decision.backend);
        }
    }
}
