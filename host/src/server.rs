//! The proxy: runs the filter's request callbacks (buffering the body only
//! while the filter pauses), forwards to the backend the filter named in
//! the upstream header (only configured backends), retries once on a
//! connection failure or a 502/503 answer, and streams the response back chunk by chunk through
//! the response callbacks.

use crate::body::{full, BodyFailure, FilteredRequestBody, FilteredResponseBody, Finish, RequestBodyLimits};
use crate::config::FailureMode;
use crate::limits::{error_json, BufferBudget, Reservation};
use crate::metrics::Metrics;
use crate::reload::{Current, Runtime};
use crate::upstream::{Backend, InFlight, ProxyBody, UpstreamClient};
use crate::wasm::abi::header_map::{get, remove, replace};
use crate::wasm::session::SessionHandle;
use crate::wasm::{CtxEvent, HeaderList, LocalResponse, Session, Step};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Timeouts of the proxy path (the listener arms the connection ones).
#[derive(Debug, Clone)]
pub struct ProxyTimeouts {
    /// Longest gap between two chunks of a request body.
    pub request_body_idle: Duration,
    /// From sending the request until the response headers.
    pub upstream_first_byte: Duration,
    /// Longest gap between two chunks of a response body.
    pub stream_idle: Duration,
}

/// Settings of the proxy path.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Header the filter routes with.
    pub upstream_header: String,
    /// Response header naming the backend, when the host chose it.
    pub backend_header: http::HeaderName,
    /// Response header saying why the host chose the backend.
    pub decision_header: http::HeaderName,
    /// Largest body buffered for the filter.
    pub max_body_bytes: usize,
    /// What to do when the filter fails.
    pub failure_mode: FailureMode,
    /// Timeouts.
    pub timeouts: ProxyTimeouts,
    /// Header counting the prefixgate proxies a request went through
    /// (lowercase).
    pub hops_header: String,
    /// More hops than this: 508.
    pub max_hops: u32,
}

/// Everything the proxy path needs.
pub struct Proxy {
    /// The published filter runtime.
    pub current: Arc<Current>,
    /// Backend client.
    pub client: UpstreamClient,
    /// Metrics.
    pub metrics: Metrics,
    /// Request-body bytes buffered across all requests.
    pub buffered: Arc<BufferBudget>,
    /// Settings.
    pub settings: ProxySettings,
}

const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"];

/// The request as a header list with pseudo-headers first.
fn request_list(parts: &http::request::Parts) -> HeaderList {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let authority = parts
        .headers
        .get(http::header::HOST)
        .map(|v| v.as_bytes().to_vec())
        .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes().to_vec()))
        .unwrap_or_default();
    let mut list = vec![
        (b":method".to_vec(), parts.method.as_str().as_bytes().to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), authority),
        (b":scheme".to_vec(), b"http".to_vec()),
    ];
    list.extend(
        parts
            .headers
            .iter()
            .filter(|(k, _)| *k != http::header::HOST)
            .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec())),
    );
    list
}

fn header_map(list: &HeaderList) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in list {
        if k.starts_with(b":") || HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h.as_bytes())) {
            continue;
        }
        if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k), HeaderValue::from_bytes(v)) {
            map.append(k, v);
        }
    }
    map
}

/// A response from the proxy itself: an OpenAI-shaped JSON error,
/// `{"error":{"message","type","param":null,"code"}}`.
pub fn simple(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = format!("{}\n", error_json(status, message));
    let mut r = Response::new(full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn local_response(l: LocalResponse) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from(l.body)));
    *r.status_mut() = StatusCode::from_u16(l.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *r.headers_mut() = header_map(&l.headers);
    r
}

/// Applies a deferred action of the filter (`None`: the session is gone)
/// to the request phase: the answer when the filter answered the request
/// itself or closed the stream.
fn verdict(ev: Option<CtxEvent>, step: &mut Step) -> Option<Response<ProxyBody>> {
    match ev {
        Some(CtxEvent::LocalResponse(l)) => Some(local_response(l)),
        Some(CtxEvent::Close) => Some(simple(StatusCode::BAD_GATEWAY, "request closed by the filter")),
        Some(CtxEvent::ContinueRequest) if *step == Step::Pause => {
            *step = Step::Continue;
            None
        }
        Some(_) => None,
        None => {
            *step = Step::Failed;
            None
        }
    }
}

/// The request body as forwarded.
enum Forward {
    /// Fully read (replayable for a retry), and its share of the budget.
    Full(Bytes, Reservation),
    /// A prefix already read, then the rest of the client body.
    Stream { prefix: Bytes, rest: Incoming, callbacks: bool, reservation: Reservation },
}

/// How the request phase ended.
enum Decision {
    /// Answer without an upstream.
    Respond(Response<ProxyBody>),
    /// Forward with these headers and body.
    Forward { headers: HeaderList, body: Forward, failed: bool },
}

impl Proxy {
    /// Handles one client request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, remote: SocketAddr) -> Response<ProxyBody> {
        let rt = self.current.get();
        let (parts, body) = req.into_parts();
        let hops = parts
            .headers
            .get(self.settings.hops_header.as_str())
            .and_then(|v| v.to_str().ok()?.trim().parse::<u32>().ok())
            .unwrap_or(0);
        if hops > self.settings.max_hops {
            self.metrics.loops.inc();
            tracing::warn!(hops, "request refused: it looped through prefixgate (is a backend this proxy?)");
            return simple(
                StatusCode::LOOP_DETECTED,
                &format!(
                    "request went through {hops} prefixgate proxies (more than {}): a routing loop",
                    self.settings.max_hops
                ),
            );
        }
        let headers = request_list(&parts);
        let too_big = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .is_some_and(|n| n > self.settings.max_body_bytes);
        let mut props = HashMap::new();
        props.insert("source.address".to_string(), remote.to_string().into_bytes());
        props.insert("source.port".to_string(), (remote.port() as i64).to_le_bytes().to_vec());
        props.insert("request.protocol".to_string(), format!("{:?}", parts.version).into_bytes());
        let started = Instant::now();
        let session = Session::open(&rt.pool, props);
        let handle = session.as_ref().map(|s| s.handle.clone());
        let decision = match session {
            Some(s) => self.request_phase(s, headers, body, too_big).await,
            None => Decision::Forward {
                headers,
                body: Forward::Stream {
                    prefix: Bytes::new(),
                    rest: body,
                    callbacks: false,
                    reservation: self.buffered.reservation(),
                },
                failed: true,
            },
        };
        self.metrics.decision.observe(started.elapsed().as_secs_f64());
        match decision {
            Decision::Respond(r) => r,
            Decision::Forward { mut headers, body, failed } => {
                let hops = hops.saturating_add(1).to_string();
                replace(&mut headers, self.settings.hops_header.as_bytes(), hops.as_bytes());
                let handle = handle.filter(|_| !failed);
                self.forward(&rt, headers, body, failed, handle).await
            }
        }
    }

    /// Runs request callbacks until the filter lets the request go (or
    /// answers it, or fails).
    async fn request_phase(
        &self,
        mut session: Session,
        headers: HeaderList,
        mut body: Incoming,
        too_big: bool,
    ) -> Decision {
        let h = session.handle.clone();
        let mut done = body.is_end_stream();
        let original = headers.clone();
        let mut raw = BytesMut::new();
        // The request as the filter left it, once it lets it go.
        let (mut step, mut released) = h.request_headers(headers, done);
        let mut overflow = too_big;
        let mut reservation = self.buffered.reservation();
        let idle = self.settings.timeouts.request_body_idle;
        let mut deadline = tokio::time::Instant::now() + idle;
        loop {
            while let Some(ev) = session.try_event() {
                if let Some(answer) = verdict(Some(ev), &mut step) {
                    return Decision::Respond(answer);
                }
            }
            match step {
                Step::Continue | Step::Failed => break,
                Step::Pause if overflow => break,
                Step::Pause if done => {
                    if let Some(answer) = verdict(session.next_event().await, &mut step) {
                        return Decision::Respond(answer);
                    }
                }
                Step::Pause => {
                    tokio::select! {
                        frame = body.frame() => match frame {
                            None => {
                                done = true;
                                (step, released) = h.request_body_buffered(&[], true);
                            }
                            Some(Err(e)) => return Decision::Respond(simple(StatusCode::BAD_REQUEST, &format!("reading request body: {e}"))),
                            Some(Ok(frame)) => {
                                deadline = tokio::time::Instant::now() + idle;
                                let data = frame.into_data().unwrap_or_default();
                                let n = data.len();
                                let under_limit = raw.len() + n <= self.settings.max_body_bytes;
                                // Buffered for the filter, a chunk is held twice:
                                // here and in the filter's body buffer.
                                if under_limit && reservation.grow(2 * n) {
                                    raw.extend_from_slice(&data);
                                    done = body.is_end_stream();
                                    (step, released) = h.request_body_buffered(&data, done);
                                } else {
                                    // Stop buffering: the filter's copy is not
                                    // forwarded, only this one.
                                    reservation.shrink_to(raw.len());
                                    if !reservation.grow(n) {
                                        self.metrics.buffer_full.with_label_values(&["refused"]).inc();
                                        return Decision::Respond(simple(
                                            StatusCode::SERVICE_UNAVAILABLE,
                                            "the proxy's request buffer is full; retry later",
                                        ));
                                    }
                                    if under_limit {
                                        self.metrics.buffer_full.with_label_values(&["streamed"]).inc();
                                    }
                                    raw.extend_from_slice(&data);
                                    done = body.is_end_stream();
                                    overflow = true;
                                    if !under_limit {
                                        // The chunk that passes `max_body_bytes` still
                                        // reaches the filter, so that it sees the body is
                                        // too big and routes by load (with its in-flight
                                        // accounting) rather than leaving the request to
                                        // the host's fallback.
                                        (step, released) = h.request_body_buffered(&data, done);
                                    }
                                }
                            }
                        },
                        _ = tokio::time::sleep_until(deadline) => {
                            self.metrics.timeouts.with_label_values(&["request_body_idle"]).inc();
                            return Decision::Respond(simple(
                                StatusCode::REQUEST_TIMEOUT,
                                &format!("request body idle for more than {} ms", idle.as_millis()),
                            ));
                        }
                        ev = session.next_event() => if let Some(answer) = verdict(ev, &mut step) {
                            return Decision::Respond(answer);
                        },
                    }
                }
            }
        }
        // A filter that let the request go through `proxy_continue_stream`
        // (or paused past the body limit) has not handed it over yet.
        if released.is_none() && step != Step::Failed {
            released = h.take_request();
        }
        let failed = step == Step::Failed || h.failed();
        let (headers, filtered) = match (failed, released) {
            (false, Some(taken)) => taken,
            _ => (original, Vec::new()),
        };
        // Before overflow the filter's buffer is the body (possibly edited);
        // after it, or on failure, the raw bytes are.
        let prefix = if failed || overflow { raw.freeze() } else { Bytes::from(filtered) };
        // One copy is held from here on (a body the filter grew is counted
        // when it fits).
        reservation.shrink_to(prefix.len());
        if prefix.len() > reservation.bytes() && !reservation.grow(prefix.len() - reservation.bytes()) {
            tracing::debug!("an edited request body is held beyond the buffer budget");
        }
        let body = if done {
            Forward::Full(prefix, reservation)
        } else {
            Forward::Stream { prefix, rest: body, callbacks: !overflow && !failed, reservation }
        };
        Decision::Forward { headers, body, failed }
    }

    /// Picks the backend, sends (retrying once on another backend after a
    /// connection failure or timeout, or a 502/503, when the body can be
    /// replayed) and wraps the response.
    ///
    /// The filter learns the final status through the `response.code`
    /// property, as in Envoy: for an answer the proxy made itself (no
    /// connection, timeout) it is the only way the filter's `on_log` sees
    /// the outcome, which passive health counts.
    async fn forward(
        &self,
        rt: &Arc<Runtime>,
        headers: HeaderList,
        body: Forward,
        failed: bool,
        session: Option<Arc<SessionHandle>>,
    ) -> Response<ProxyBody> {
        let reporter = session.clone();
        let response = self.forward_to_backend(rt, headers, body, failed, session).await;
        if let Some(s) = reporter {
            s.set_property("response.code", &i64::from(response.status().as_u16()).to_le_bytes());
        }
        response
    }

    async fn forward_to_backend(
        &self,
        rt: &Arc<Runtime>,
        mut headers: HeaderList,
        body: Forward,
        failed: bool,
        session: Option<Arc<SessionHandle>>,
    ) -> Response<ProxyBody> {
        let key = self.settings.upstream_header.as_bytes();
        // The chosen backend, then the fallbacks a retry should try first
        // (the filter's `upstream_fallbacks`): `ip:port,ip:port,...`.
        let mut listed = get(&headers, key).into_iter().flat_map(|v| v.split(|b| *b == b','));
        let named = listed.next().map(<[u8]>::to_vec);
        let named_fallbacks: Vec<Arc<Backend>> = listed.filter_map(|v| rt.backends.find(v)).collect();
        remove(&mut headers, key);
        // Set when the host, not the filter, chose the backend.
        let mut routed_by_host: Option<&'static str> = None;
        let backend = match (failed, named) {
            (true, _) if self.settings.failure_mode == FailureMode::Closed => {
                return simple(StatusCode::SERVICE_UNAVAILABLE, "routing filter failed");
            }
            (true, _) => {
                self.metrics.fallback.with_label_values(&["filter_failed"]).inc();
                routed_by_host = Some("fallback_filter_failed");
                rt.backends.fallback(None)
            }
            (false, Some(v)) => match rt.backends.find(&v) {
                Some(b) => Some(b),
                None => {
                    tracing::warn!(upstream = %String::from_utf8_lossy(&v), "upstream not in the backend list; refused");
                    return simple(StatusCode::BAD_GATEWAY, "upstream is not a configured backend");
                }
            },
            (false, None) => {
                self.metrics.fallback.with_label_values(&["no_upstream"]).inc();
                routed_by_host = Some("fallback_no_upstream");
                rt.backends.fallback(None)
            }
        };
        let Some(mut backend) = backend else {
            return simple(StatusCode::SERVICE_UNAVAILABLE, "no backend available");
        };
        let client_body: Arc<OnceLock<BodyFailure>> = Arc::new(OnceLock::new());
        // Held until the response headers are in (a retry resends the body).
        let (full_body, mut stream, _held) = match body {
            Forward::Full(b, reservation) => (Some(b), None, Some(reservation)),
            Forward::Stream { prefix, rest, callbacks, reservation } => {
                let s = if callbacks { session.clone() } else { None };
                let limits = RequestBodyLimits {
                    idle: self.settings.timeouts.request_body_idle,
                    reservation: Some(reservation),
                    failure: client_body.clone(),
                    timeouts: self.metrics.timeouts.clone(),
                };
                (None, Some(FilteredRequestBody::new(prefix, rest, s, limits)), None)
            }
        };
        let first_byte = self.settings.timeouts.upstream_first_byte;
        let mut retried = false;
        loop {
            let body: ProxyBody = match (&full_body, stream.take()) {
                (Some(b), _) => full(b.clone()),
                (None, Some(s)) => BodyExt::boxed_unsync(s),
                (None, None) => full(Bytes::new()),
            };
            let req = match build_request(&headers, backend.addr, body, full_body.as_ref().map(Bytes::len)) {
                Ok(r) => r,
                Err(e) => return simple(StatusCode::BAD_REQUEST, &format!("invalid request: {e}")),
            };
            if let Some(s) = &session {
                s.set_property("upstream.address", backend.name.as_bytes());
            }
            let label = backend.name.clone();
            let guard = InFlight::new(&self.metrics, backend.clone());
            let sent = Instant::now();
            let answer = match tokio::time::timeout(first_byte, self.client.request(req)).await {
                Ok(answer) => answer,
                Err(_) => {
                    drop(guard);
                    if let Some(failure) = client_body.get() {
                        return simple(failure.status, &failure.message);
                    }
                    // A hung backend fails like one that refuses.
                    backend.failed();
                    self.metrics.timeouts.with_label_values(&["upstream_first_byte"]).inc();
                    self.metrics.requests.with_label_values(&[label.as_str(), "timeout"]).inc();
                    tracing::warn!(backend = %label, "upstream sent no response headers in time");
                    // Nothing reached the client yet: a replayable request
                    // gets one more chance on another backend.
                    if !retried && full_body.is_some() {
                        if let Some(next) = rt.backends.retry_target(backend.addr, &named_fallbacks) {
                            retried = true;
                            self.metrics.retries.with_label_values(&["upstream_timeout"]).inc();
                            backend = next;
                            routed_by_host = Some("retry");
                            continue;
                        }
                    }
                    return simple(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!("upstream sent no response headers within {} ms", first_byte.as_millis()),
                    );
                }
            };
            match answer {
                Ok(resp) => {
                    self.metrics
                        .ttfb
                        .with_label_values(&[label.as_str()])
                        .observe(sent.elapsed().as_secs_f64());
                    let status = resp.status();
                    if status.is_server_error() {
                        backend.failed();
                    } else {
                        backend.succeeded();
                    }
                    // 502/503 before any body byte went to the client: the
                    // backend did not take the request; try another once.
                    let unavailable =
                        matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE);
                    if unavailable && !retried && full_body.is_some() {
                        if let Some(next) = rt.backends.retry_target(backend.addr, &named_fallbacks) {
                            tracing::warn!(backend = %label, %status, "upstream unavailable; retrying on another backend");
                            self.metrics.requests.with_label_values(&[label.as_str(), status.as_str()]).inc();
                            drop(resp);
                            drop(guard);
                            retried = true;
                            self.metrics.retries.with_label_values(&["upstream_unavailable"]).inc();
                            backend = next;
                            routed_by_host = Some("retry");
                            continue;
                        }
                    }
                    let (mut response, labels) = self.response_phase(resp, session, guard, sent).await;
                    let reason = match (routed_by_host, labels) {
                        (Some(reason), _) => Some(reason),
                        // The filter routed it, but its VM went (a trap of
                        // this request's or another's) before it could
                        // label the response: the host says so instead.
                        (None, FilterLabels::Lost) => {
                            self.metrics.labels_lost.inc();
                            Some("filter_vm_replaced")
                        }
                        (None, FilterLabels::Ran) => None,
                    };
                    if let Some(reason) = reason {
                        self.label_host_route(response.headers_mut(), &backend.name, reason);
                    }
                    return response;
                }
                Err(e) => {
                    drop(guard);
                    if let Some(failure) = client_body.get() {
                        // The client's body failed, not the backend.
                        return simple(failure.status, &failure.message);
                    }
                    backend.failed();
                    let replayable = full_body.is_some();
                    tracing::warn!(backend = %label, error = %e, retried, "upstream request failed");
                    self.metrics.requests.with_label_values(&[label.as_str(), "error"]).inc();
                    if retried || !replayable {
                        return simple(StatusCode::BAD_GATEWAY, "upstream request failed");
                    }
                    retried = true;
                    match rt.backends.retry_target(backend.addr, &named_fallbacks) {
                        Some(b) => {
                            self.metrics.retries.with_label_values(&["upstream_error"]).inc();
                            backend = b;
                            routed_by_host = Some("retry");
                        }
                        _ => return simple(StatusCode::BAD_GATEWAY, "upstream request failed"),
                    }
                }
            }
        }
    }

    /// Runs response-header callbacks (buffering the body only while the
    /// filter pauses) and streams the rest. Says whether the filter's
    /// response-header callback ran, when there was a session.
    async fn response_phase(
        &self,
        resp: Response<Incoming>,
        session: Option<Arc<SessionHandle>>,
        guard: InFlight,
        sent: Instant,
    ) -> (Response<ProxyBody>, FilterLabels) {
        let (parts, mut body) = resp.into_parts();
        let mut list: HeaderList = vec![(b":status".to_vec(), parts.status.as_str().as_bytes().to_vec())];
        list.extend(
            parts.headers.iter().map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec())),
        );
        let mut prefix = Bytes::new();
        let mut session = session;
        let mut reservation = self.buffered.reservation();
        let mut labels = FilterLabels::Ran;
        if let Some(h) = session.clone() {
            let (mut step, headers_left) = h.response_headers(list.clone(), body.is_end_stream());
            // The response as the filter left it, once it lets it go.
            let mut released = headers_left.map(|l| (l, Vec::new()));
            if step == Step::Failed {
                labels = FilterLabels::Lost;
            }
            // While the filter pauses, the body is buffered twice, as a
            // request body is: the filter's copy and this one, forwarded
            // should the filter fail.
            let mut raw = BytesMut::new();
            let mut overflow: Option<Bytes> = None;
            while step == Step::Pause && !body.is_end_stream() {
                match tokio::time::timeout(self.settings.timeouts.stream_idle, body.frame())
                    .await
                    .ok()
                    .flatten()
                {
                    Some(Ok(frame)) => {
                        let data = frame.into_data().unwrap_or_default();
                        let n = data.len();
                        if raw.len() + n > self.settings.max_body_bytes || !reservation.grow(2 * n) {
                            // Stop buffering: this chunk follows what the
                            // filter holds, the rest streams through it.
                            self.metrics.buffer_full.with_label_values(&["response_streamed"]).inc();
                            overflow = Some(data);
                            break;
                        }
                        raw.extend_from_slice(&data);
                        (step, released) = h.response_body_buffered(&data, body.is_end_stream());
                    }
                    _ => break,
                }
            }
            // Still paused (the body ended, went idle or passed the limit):
            // take what the filter holds.
            if released.is_none() && !h.failed() {
                released = h.take_response();
            }
            if h.failed() {
                // What the filter set on the headers went with its VM.
                labels = FilterLabels::Lost;
                session = None;
                let mut all = raw;
                if let Some(chunk) = overflow {
                    all.extend_from_slice(&chunk);
                }
                prefix = all.freeze();
            } else if let Some((left, held)) = released {
                let mut held = BytesMut::from(&held[..]);
                if let Some(chunk) = overflow {
                    held.extend_from_slice(&chunk);
                }
                prefix = held.freeze();
                list = left;
            }
            reservation.shrink_to(prefix.len());
        }
        let status = get(&list, b":status")
            .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(parts.status);
        let finish = Finish { metrics: self.metrics.clone(), guard, sent, status: status.as_u16() };
        let sse = get(&list, b"content-type")
            .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"));
        let body =
            FilteredResponseBody::new(prefix, body, session, finish, self.settings.timeouts.stream_idle)
                .sse(sse)
                .holding(reservation);
        let mut r = Response::new(BodyExt::boxed_unsync(body));
        *r.status_mut() = status;
        *r.headers_mut() = header_map(&list);
        (r, labels)
    }

    /// Names on the response the backend the host chose when the filter
    /// did not (fallback) or its choice failed (retry), or the backend the
    /// filter chose when the filter could not say so itself (its VM was
    /// replaced), so clients and benchmarks that account per backend see
    /// where every request went.
    fn label_host_route(&self, headers: &mut HeaderMap, backend: &str, reason: &'static str) {
        if let Ok(v) = HeaderValue::from_str(backend) {
            headers.insert(self.settings.backend_header.clone(), v);
        }
        headers.insert(self.settings.decision_header.clone(), HeaderValue::from_static(reason));
    }
}

/// Whether the filter's response-header callback ran (so the filter could
/// label the response itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterLabels {
    /// It ran, or there was no session to run it (the host routed).
    Ran,
    /// It did not: the session failed (trap, or its VM was replaced).
    Lost,
}

fn build_request(
    headers: &HeaderList,
    addr: SocketAddr,
    body: ProxyBody,
    len: Option<usize>,
) -> Result<Request<ProxyBody>, http::Error> {
    let method = get(headers, b":method").unwrap_or(b"GET");
    let path =
        get(headers, b":path").map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_else(|| "/".into());
    let mut req = Request::builder().method(method).uri(format!("http://{addr}{path}")).body(body)?;
    let mut map = header_map(headers);
    if let Some(authority) = get(headers, b":authority").and_then(|a| HeaderValue::from_bytes(a).ok()) {
        map.insert(http::header::HOST, authority);
    }
    if let Some(n) = len {
        map.remove(http::header::CONTENT_LENGTH);
        if n > 0 || map.contains_key(http::header::CONTENT_TYPE) {
            map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    *req.headers_mut() = map;
    Ok(req)
}
