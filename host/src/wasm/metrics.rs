//! The filter's own metrics (`proxy_define_metric` and friends), host-owned so
//! that they aggregate across VMs and survive module swaps.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram (exposed as `_sum` and `_count`).
    Histogram,
}

impl MetricKind {
    /// From the ABI value.
    pub fn from_abi(v: i32) -> Option<Self> {
        match v {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }
}

/// Why a metric operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricError {
    /// Unknown id.
    NotFound,
    /// Not allowed for this kind (e.g. a negative counter increment).
    BadArgument,
}

struct Metric {
    name: String,
    kind: MetricKind,
    value: i64,
    sum: i64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    by_name: HashMap<String, u32>,
    metrics: Vec<Metric>,
}

/// Registry of filter metrics.
#[derive(Default)]
pub struct FilterMetrics {
    inner: Mutex<Inner>,
}

impl FilterMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Defines (or finds) a metric; ids start at 1.
    pub fn define(&self, kind: MetricKind, name: &str) -> u32 {
        let mut inner = self.lock();
        if let Some(id) = inner.by_name.get(name) {
            return *id;
        }
        inner.metrics.push(Metric { name: name.to_string(), kind, value: 0, sum: 0, count: 0 });
        let id = inner.metrics.len() as u32;
        inner.by_name.insert(name.to_string(), id);
        id
    }

    fn with<R>(
        &self,
        id: u32,
        f: impl FnOnce(&mut Metric) -> Result<R, MetricError>,
    ) -> Result<R, MetricError> {
        let mut inner = self.lock();
        let m = (id as usize)
            .checked_sub(1)
            .and_then(|i| inner.metrics.get_mut(i))
            .ok_or(MetricError::NotFound)?;
        f(m)
    }

    /// Adds `delta` (counters refuse negative deltas; histograms refuse it).
    pub fn increment(&self, id: u32, delta: i64) -> Result<(), MetricError> {
        self.with(id, |m| match m.kind {
            MetricKind::Counter if delta < 0 => Err(MetricError::BadArgument),
            MetricKind::Histogram => Err(MetricError::BadArgument),
            _ => {
                m.value = m.value.saturating_add(delta);
                Ok(())
            }
        })
    }

    /// Sets a counter or gauge, or records a histogram sample.
    pub fn record(&self, id: u32, value: i64) -> Result<(), MetricError> {
        self.with(id, |m| {
            if m.kind == MetricKind::Histogram {
                m.sum = m.sum.saturating_add(value);
                m.count += 1;
            } else {
                m.value = value;
            }
            Ok(())
        })
    }

    /// The value of a counter or gauge.
    pub fn get(&self, id: u32) -> Result<i64, MetricError> {
        self.with(id, |m| match m.kind {
            MetricKind::Histogram => Err(MetricError::BadArgument),
            _ => Ok(m.value),
        })
    }

    /// Prometheus text exposition of every filter metric.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        for m in &inner.metrics {
            let name = sanitize(&m.name);
            let _ = match m.kind {
                MetricKind::Counter => writeln!(out, "# TYPE {name} counter\n{name} {}", m.value),
                MetricKind::Gauge => writeln!(out, "# TYPE {name} gauge\n{name} {}", m.value),
                MetricKind::Histogram => {
                    writeln!(out, "# TYPE {name} summary\n{name}_sum {}\n{name}_count {}", m.sum, m.count)
                }
            };
        }
        out
    }
}

/// A Prometheus-safe metric name.
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' })
        .collect();
    if s.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_gauge_histogram() {
        let m = FilterMetrics::default();
        let c = m.define(MetricKind::Counter, "my.counter");
        assert_eq!(m.define(MetricKind::Counter, "my.counter"), c);
        assert_eq!(m.increment(c, 2), Ok(()));
        assert_eq!(m.increment(c, -1), Err(MetricError::BadArgument));
        assert_eq!(m.get(c), Ok(2));
        let h = m.define(MetricKind::Histogram, "h");
        assert_eq!(m.record(h, 5), Ok(()));
        assert_eq!(m.get(h), Err(MetricError::BadArgument));
        assert_eq!(m.get(99), Err(MetricError::NotFound));
        let text = m.render();
        assert!(text.contains("my_counter 2"), "{text}");
        assert!(text.contains("h_sum 5"), "{text}");
    }
}
