//! The one bounded poll used wherever a process or a test waits for another
//! process to reach a state.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`poll_until`] checks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A wait that ran out of time.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {limit:?} waiting for {what}")]
pub struct TimedOut {
    /// What was awaited.
    pub what: String,
    /// How long it was awaited.
    pub limit: Duration,
}

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Some`, for at most
/// `limit` (`check` runs at least once). A check that must stop the wait
/// early returns `Some` of an error value.
pub async fn poll_until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T, TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(TimedOut { what: what.to_owned(), limit });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn polls_until_the_check_holds_or_the_limit_passes() {
        let mut calls = 0;
        let found = poll_until(Duration::from_secs(1), "the third call", || {
            calls += 1;
            let n = calls;
            async move { (n == 3).then_some(n) }
        })
        .await;
        assert_eq!(found.ok(), Some(3));

        let never = poll_until(Duration::from_millis(200), "nothing", || async { None::<()> }).await;
        let err = never.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, "timed out after 200ms waiting for nothing");
    }
}
