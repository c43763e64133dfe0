//! Caps shared by every request: the request-body bytes buffered across
//! all requests ([`BufferBudget`]), and the OpenAI-shaped errors the proxy
//! answers with when a cap or a timeout is hit.

use prometheus::IntGauge;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Request-body bytes the proxy may hold at once, across all requests.
/// Every byte is reserved before it is kept, so the total never passes the
/// cap; the gauge follows the total.
#[derive(Debug)]
pub struct BufferBudget {
    cap: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    gauge: IntGauge,
}

impl BufferBudget {
    /// A budget of `cap` bytes reported in `gauge`.
    pub fn new(cap: usize, gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self { cap, used: AtomicUsize::new(0), peak: AtomicUsize::new(0), gauge })
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The most bytes ever reserved at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// An empty reservation, grown with [`Reservation::grow`].
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation { budget: self.clone(), bytes: 0 }
    }

    fn take(&self, n: usize) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = used.checked_add(n).filter(|next| *next <= self.cap) else { return false };
            match self.used.compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    self.gauge.add(n as i64);
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }

    fn give(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
            self.gauge.sub(n as i64);
        }
    }
}

/// Bytes held against a [`BufferBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BufferBudget>,
    bytes: usize,
}

impl Reservation {
    /// Reserves `n` more bytes; false (and nothing reserved) if they do not
    /// fit under the cap.
    #[must_use]
    pub fn grow(&mut self, n: usize) -> bool {
        let ok = self.budget.take(n);
        if ok {
            self.bytes += n;
        }
        ok
    }

    /// Gives back all but `n` bytes (nothing if fewer are held).
    pub fn shrink_to(&mut self, n: usize) {
        if n < self.bytes {
            self.budget.give(self.bytes - n);
            self.bytes = n;
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

/// The OpenAI error `type` for a status, as vLLM names it: the reason
/// phrase without spaces, then `Error` (`503` → `ServiceUnavailableError`).
pub fn error_type(status: http::StatusCode) -> String {
    let phrase = status.canonical_reason().unwrap_or("Unknown");
    let mut t: String = phrase.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    t.push_str("Error");
    t
}

/// An OpenAI-shaped error document:
/// `{"error":{"message":…,"type":…,"param":null,"code":<status>}}`.
pub fn error_json(status: http::StatusCode, message: &str) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "message": message,
            "type": error_type(status),
            "param": null,
            "code": status.as_u16(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_pass_the_cap_and_give_back_on_drop() {
        let gauge = IntGauge::new("g", "g").unwrap_or_else(|e| panic!("{e}"));
        let b = BufferBudget::new(100, gauge.clone());
        let mut r1 = b.reservation();
        let mut r2 = b.reservation();
        assert!(r1.grow(60));
        assert!(!r2.grow(41), "over the cap");
        assert!(r2.grow(40));
        assert_eq!((b.used(), gauge.get()), (100, 100));
        r1.shrink_to(10);
        assert_eq!(b.used(), 50);
        drop(r2);
        drop(r1);
        assert_eq!((b.used(), gauge.get(), b.peak()), (0, 0, 100));
    }

    #[test]
    fn error_types_follow_vllm() {
        assert_eq!(error_type(http::StatusCode::SERVICE_UNAVAILABLE), "ServiceUnavailableError");
        assert_eq!(error_type(http::StatusCode::GATEWAY_TIMEOUT), "GatewayTimeoutError");
        let doc = error_json(http::StatusCode::LOOP_DETECTED, "loop");
        assert_eq!(doc["error"]["type"], "LoopDetectedError");
        assert_eq!(doc["error"]["code"], 508);
        assert!(doc["error"]["param"].is_null());
    }
}
