//! The shared state of a running proxy, read by the admin API and built
//! by `app`.

use crate::limits::BufferBudget;
use crate::metrics::Metrics;
use crate::reload::{Builder, Current};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shared state of a running proxy.
pub struct App {
    /// The published filter runtime.
    pub current: Arc<Current>,
    /// Builds new runtimes for swaps.
    pub builder: Arc<Builder>,
    /// Proxy metrics.
    pub metrics: Metrics,
    /// Admin bearer token.
    pub admin_token: Option<String>,
    /// Start time.
    pub started: Instant,
    /// Request-body bytes buffered across all requests.
    pub buffered: Arc<BufferBudget>,
    /// Longest gap between two chunks of an admin upload.
    pub upload_idle: Duration,
}
