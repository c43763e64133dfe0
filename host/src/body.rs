//! Streaming bodies that pass each chunk through the filter's body
//! callbacks on its way, without buffering.

use crate::metrics::Metrics;
use crate::server::InFlight;
use crate::upstream::{BoxError, ProxyBody};
use crate::wasm::session::SessionHandle;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// A body of known bytes.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

/// The rest of a client request body, after what was buffered.
pub struct FilteredRequestBody {
    prefix: Option<Bytes>,
    rest: Incoming,
    session: Option<Arc<SessionHandle>>,
}

impl FilteredRequestBody {
    /// `prefix` goes first; each later chunk runs `on_request_body` when a
    /// session is given.
    pub fn new(prefix: Bytes, rest: Incoming, session: Option<Arc<SessionHandle>>) -> Self {
        Self { prefix: (!prefix.is_empty()).then_some(prefix), rest, session }
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
        match Pin::new(&mut this.rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let eos = this.rest.is_end_stream();
                    let data = match &this.session {
                        Some(s) => s.request_body_chunk(data.to_vec(), eos).map(Bytes::from).unwrap_or(data),
                        None => data,
                    };
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
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

/// An upstream response body streamed through `on_response_body`.
pub struct FilteredResponseBody {
    prefix: Option<Bytes>,
    inner: Incoming,
    session: Option<Arc<SessionHandle>>,
    finish: Option<Finish>,
    ended: bool,
}

impl FilteredResponseBody {
    /// `prefix` (what the filter buffered) goes first.
    pub fn new(prefix: Bytes, inner: Incoming, session: Option<Arc<SessionHandle>>, finish: Finish) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            inner,
            session,
            finish: Some(finish),
            ended: false,
        }
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
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        if this.ended {
            return Poll::Ready(None);
        }
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
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    } else {
                        let Ok(trailers) = frame.into_trailers() else { continue };
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    this.finish.take();
                    Poll::Ready(Some(Err(Box::new(e))))
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    let last = this
                        .session
                        .as_ref()
                        .and_then(|s| s.response_body_chunk(Vec::new(), true))
                        .unwrap_or_default();
                    this.session.take();
                    this.finish.take();
                    if last.is_empty() {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(last)))))
                    }
                }
                Poll::Pending => Poll::Pending,
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
