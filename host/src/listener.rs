//! Accept loop of both listeners: HTTP/1.1 and h2c on each connection,
//! at most `max_connections` at once (past it, new connections wait in the
//! kernel's listen backlog), hyper's header-read timeout armed, and a
//! connection with no request in flight closed after the keep-alive idle
//! timeout.

use crate::upstream::{BoxError, ProxyBody};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::{IntCounterVec, IntGauge};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

/// Limits of one listener.
#[derive(Clone)]
pub struct ListenerLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// hyper's `header_read_timeout`.
    pub header_read: Duration,
    /// Close a connection with no request in flight after this.
    pub keep_alive_idle: Duration,
    /// Open connections.
    pub connections: IntGauge,
    /// `prefixgate_timeouts_total{kind}`.
    pub timeouts: IntCounterVec,
}

/// Accepts connections forever and serves each with `handler`.
pub async fn serve<F, Fut>(listener: TcpListener, limits: ListenerLimits, handler: F)
where
    F: Fn(http::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<ProxyBody>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // Past the cap, stop accepting: new connections wait in the backlog.
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let limits = limits.clone();
        limits.connections.inc();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = GaugeGuard(limits.connections.clone());
            let activity = Arc::new(Activity::default());
            let requests = activity.clone();
            let service = service_fn(move |req| {
                let active = requests.begin();
                let fut = handler(req, remote);
                async move {
                    let resp = fut.await;
                    Ok::<_, Infallible>(resp.map(|b| ActiveBody { inner: b, _active: active }.boxed_unsync()))
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read);
            builder.http2().timer(TokioTimer::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        if is_header_timeout(&*e) {
                            limits.timeouts.with_label_values(&["header_read"]).inc();
                        }
                        tracing::debug!(%remote, "connection: {e}");
                    }
                }
                _ = activity.idle_for(limits.keep_alive_idle) => {
                    limits.timeouts.with_label_values(&["keep_alive_idle"]).inc();
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

fn is_header_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout)
}

/// Decrements a gauge when dropped.
struct GaugeGuard(IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Requests in flight on one connection (until their response body is
/// done), with a wake-up on every change.
#[derive(Default)]
struct Activity {
    active: AtomicUsize,
    changed: Notify,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        ActiveGuard(self.clone())
    }

    /// Returns once no request has been in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.active.load(Ordering::Acquire) == 0 {
                if tokio::time::timeout(idle, changed).await.is_err() {
                    return;
                }
            } else {
                changed.await;
            }
        }
    }
}

struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// A response body that keeps its request counted as in flight until it
/// is done or dropped.
struct ActiveBody {
    inner: ProxyBody,
    _active: ActiveGuard,
}

impl Body for ActiveBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
