//! Streaming bodies that pass each chunk through the filter's body
//! callbacks on its way, without buffering, each cut off when the other
//! side goes idle for too long.

use crate::limits::Reservation;
use crate::metrics::Metrics;
use crate::upstream::{BoxError, InFlight, ProxyBody};
use crate::wasm::session::SessionHandle;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use prometheus::IntCounterVec;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// A body of known bytes.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

/// Why a streamed client body failed: what to answer the client (the
/// backend is not to blame).
#[derive(Debug, Clone)]
pub struct BodyFailure {
    /// Status of the answer.
    pub status: StatusCode,
    /// Message of the answer.
    pub message: String,
}

/// Limits of a streamed request body.
pub struct RequestBodyLimits {
    /// Longest gap between two chunks.
    pub idle: Duration,
    /// The buffered prefix's share of the budget, given back once sent.
    pub reservation: Option<Reservation>,
    /// Set when the client's body fails (idle or broken).
    pub failure: Arc<OnceLock<BodyFailure>>,
    /// `prefixgate_timeouts_total{kind}`.
    pub timeouts: IntCounterVec,
}

/// The client body went idle for too long.
#[derive(Debug, thiserror::Error)]
#[error("request body idle for more than {0} ms")]
pub struct IdleTimeout(pub u128);

/// The rest of a client request body, after what was buffered.
pub struct FilteredRequestBody {
    prefix: Option<Bytes>,
    rest: Incoming,
    session: Option<Arc<SessionHandle>>,
    limits: RequestBodyLimits,
    sleep: Pin<Box<Sleep>>,
    /// The last poll waited on the client (the idle clock runs only then,
    /// not while the backend holds the body back).
    waiting: bool,
}

impl FilteredRequestBody {
    /// `prefix` goes first; each later chunk runs `on_request_body` when a
    /// session is given. Must be created inside a tokio runtime.
    pub fn new(
        prefix: Bytes,
        rest: Incoming,
        session: Option<Arc<SessionHandle>>,
        limits: RequestBodyLimits,
    ) -> Self {
        let sleep = Box::pin(tokio::time::sleep(limits.idle));
        Self { prefix: (!prefix.is_empty()).then_some(prefix), rest, session, limits, sleep, waiting: false }
    }
}

impl Body for FilteredRequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(p) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        this.limits.reservation.take();
        if !this.waiting {
            this.sleep.as_mut().reset(tokio::time::Instant::now() + this.limits.idle);
        }
        this.waiting = false;
        match Pin::new(&mut this.rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(this.chunk(frame)))),
            Poll::Ready(Some(Err(e))) => {
                let _ = this.limits.failure.set(BodyFailure {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("reading request body: {e}"),
                });
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_pending() {
                    this.waiting = true;
                    return Poll::Pending;
                }
                this.limits.timeouts.with_label_values(&["request_body_idle"]).inc();
                let e = IdleTimeout(this.limits.idle.as_millis());
                let _ = this
                    .limits
                    .failure
                    .set(BodyFailure { status: StatusCode::REQUEST_TIMEOUT, message: e.to_string() });
                Poll::Ready(Some(Err(Box::new(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}

impl FilteredRequestBody {
    fn chunk(&self, frame: Frame<Bytes>) -> Frame<Bytes> {
        match frame.into_data() {
            Ok(data) => {
                let eos = self.rest.is_end_stream();
                let data = match &self.session {
                    Some(s) => s.request_body_chunk(data.to_vec(), eos).map(Bytes::from).unwrap_or(data),
                    None => data,
                };
                Frame::data(data)
            }
            Err(frame) => frame,
        }
    }
}

/// Records a finished (or abandoned) upstream exchange.
pub struct Finish {
    /// Metrics.
    pub metrics: Metrics,
    /// In-flight count of the backend.
    pub guard: InFlight,
    /// When the request was sent.
    pub sent: Instant,
    /// Response status.
    pub status: u16,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let backend = self.guard.backend.name.as_str();
        let status = self.status.to_string();
        self.metrics.requests.with_label_values(&[backend, status.as_str()]).inc();
        self.metrics.latency.with_label_values(&[backend]).observe(self.sent.elapsed().as_secs_f64());
    }
}

/// The response stream went idle for too long.
#[derive(Debug, thiserror::Error)]
#[error("upstream response idle for more than {0} ms")]
pub struct StreamIdle(pub u128);

/// An upstream response body streamed through `on_response_body`.
pub struct FilteredResponseBody {
    prefix: Option<Bytes>,
    inner: Incoming,
    session: Option<Arc<SessionHandle>>,
    finish: Option<Finish>,
    ended: bool,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    /// `text/event-stream`: a cut ends with an SSE error event.
    sse: bool,
    /// The last (up to two) bytes forwarded.
    tail: Vec<u8>,
    /// The last poll waited on the backend (the idle clock runs only then,
    /// not while a slow client holds the stream back).
    waiting: bool,
    /// The buffered prefix's share of the budget, given back once sent.
    reservation: Option<Reservation>,
}

/// Why a response stream was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The backend's stream broke (connection reset or closed mid-body).
    Broken,
    /// The backend sent nothing for `stream_idle_ms`.
    Idle,
}

impl Cut {
    fn label(self) -> &'static str {
        match self {
            Cut::Broken => "upstream_broken",
            Cut::Idle => "stream_idle",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Cut::Broken => StatusCode::BAD_GATEWAY,
            Cut::Idle => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// The end of a cut SSE stream: an OpenAI-style error event, then the
/// terminator, after a line break if the stream stopped mid-event.
pub fn sse_error_event(tail: &[u8], status: StatusCode, message: &str) -> Bytes {
    let lead = match tail {
        [] | [.., b'\n', b'\n'] => "",
        [.., b'\n'] => "\n",
        _ => "\n\n",
    };
    Bytes::from(format!("{lead}data: {}\n\ndata: [DONE]\n\n", crate::limits::error_json(status, message)))
}

impl FilteredResponseBody {
    /// `prefix` (what the filter buffered) goes first; the stream is cut
    /// when the backend sends nothing for `idle`. Must be created inside a
    /// tokio runtime.
    pub fn new(
        prefix: Bytes,
        inner: Incoming,
        session: Option<Arc<SessionHandle>>,
        finish: Finish,
        idle: Duration,
    ) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            inner,
            session,
            finish: Some(finish),
            ended: false,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            sse: false,
            tail: Vec::with_capacity(2),
            waiting: false,
            reservation: None,
        }
    }

    /// Holds the buffered prefix's share of the budget until it is sent.
    pub fn holding(mut self, reservation: Reservation) -> Self {
        self.reservation = Some(reservation);
        self
    }

    /// Ends a cut stream with an SSE error event rather than a broken body.
    pub fn sse(mut self, sse: bool) -> Self {
        self.sse = sse;
        self
    }

    fn forwarded(&mut self, data: &[u8]) {
        let keep = data.len().min(2);
        self.tail.extend_from_slice(&data[data.len() - keep..]);
        let extra = self.tail.len().saturating_sub(2);
        self.tail.drain(..extra);
    }

    /// Ends the stream after a backend failure: counted, the backend marked
    /// failed, and for SSE a clean end with an error event.
    fn cut(&mut self, why: Cut, error: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.ended = true;
        self.session.take();
        if let Some(f) = self.finish.take() {
            f.metrics.streams_cut.with_label_values(&[why.label()]).inc();
            if why == Cut::Idle {
                f.metrics.timeouts.with_label_values(&["stream_idle"]).inc();
            }
            f.guard.backend.failed();
            tracing::warn!(backend = %f.guard.backend.name, error = %error, sse = self.sse, "response stream cut");
        }
        if !self.sse {
            return Poll::Ready(Some(Err(error)));
        }
        let message = format!("the upstream stream ended before completion: {error}");
        Poll::Ready(Some(Ok(Frame::data(sse_error_event(&self.tail, why.status(), &message)))))
    }
}

impl Body for FilteredResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(p) = this.prefix.take() {
            this.forwarded(&p);
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        this.reservation.take();
        if this.ended {
            return Poll::Ready(None);
        }
        if !this.waiting {
            this.sleep.as_mut().reset(tokio::time::Instant::now() + this.idle);
        }
        this.waiting = false;
        loop {
            return match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if frame.is_data() {
                        let Ok(data) = frame.into_data() else { continue };
                        let data = match &this.session {
                            Some(s) => {
                                s.response_body_chunk(data.to_vec(), false).map(Bytes::from).unwrap_or(data)
                            }
                            None => data,
                        };
                        this.forwarded(&data);
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    } else {
                        let Ok(trailers) = frame.into_trailers() else { continue };
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                }
                Poll::Ready(Some(Err(e))) => this.cut(Cut::Broken, Box::new(e)),
                Poll::Ready(None) => {
                    this.ended = true;
                    // The last body callback and the end of the context,
                    // in one call.
                    let last = this.session.as_ref().and_then(|s| s.response_end()).unwrap_or_default();
                    this.session.take();
                    this.finish.take();
                    if last.is_empty() {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(last)))))
                    }
                }
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        this.waiting = true;
                        return Poll::Pending;
                    }
                    this.cut(Cut::Idle, Box::new(StreamIdle(this.idle.as_millis())))
                }
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.prefix.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_error_event_starts_on_a_fresh_event() {
        let ev = |tail: &[u8]| {
            String::from_utf8(sse_error_event(tail, StatusCode::BAD_GATEWAY, "cut").to_vec())
                .unwrap_or_default()
        };
        let whole = ev(b"\n\n");
        assert!(whole.starts_with("data: {\"error\":{"), "{whole}");
        assert!(whole.ends_with("}}\n\ndata: [DONE]\n\n"), "{whole}");
        assert!(whole.contains(r#""type":"BadGatewayError""#), "{whole}");
        assert_eq!(ev(b""), whole);
        assert_eq!(ev(b"x\n"), format!("\n{whole}"));
        assert_eq!(ev(b"ok"), format!("\n\n{whole}"));
    }
}
