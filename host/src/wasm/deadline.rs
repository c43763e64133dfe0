//! The deadline of one callback, in CPU time of the thread that runs it,
//! with a cap in wall-clock time.
//!
//! The epoch ticker (see `engine`) interrupts a callback once its deadline
//! has passed in wall-clock time. The store's deadline callback then looks
//! at the CPU time the thread has used since the callback began: a callback
//! that has not used its deadline yet (its thread was descheduled, on a
//! machine busy with other work) goes on until it has, or until
//! [`WALL_FACTOR`] times the deadline has passed on the wall clock. So a
//! filter never takes more than its deadline of CPU time (plus one epoch
//! tick), and a callback that fits its deadline does not trap because the
//! machine is loaded. Host functions the filter calls count: they run on
//! the same thread, inside the callback.

use super::engine::EPOCH_TICK;
use std::time::{Duration, Instant};

/// How many deadlines of wall-clock time a callback may take when its
/// thread is not getting the CPU: past this, it is cut whatever it used.
/// Ten is far beyond the scheduling delays of a busy machine (a runnable
/// thread sharing a core with a few others gets a slice every few ms), yet
/// bounds how long a stalled callback holds its VM (and a runtime thread).
pub const WALL_FACTOR: u32 = 10;

/// The clocks of the running callback.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    budget: Duration,
    wall_start: Instant,
    /// Thread CPU time at the start; `None` where the platform has no
    /// per-thread CPU clock (then the deadline is wall-clock time only).
    cpu_start: Option<Duration>,
}

impl Deadline {
    /// A deadline of `budget` starting now, on this thread.
    pub fn start(budget: Duration) -> Self {
        Self { budget, wall_start: Instant::now(), cpu_start: thread_cpu_time() }
    }

    /// At the wall-clock deadline (or after an extension): epoch ticks to
    /// let the callback go on for, or `None` to interrupt it.
    pub fn extension(&self) -> Option<u64> {
        let cpu_used = self.cpu_start.and_then(|start| Some(thread_cpu_time()?.saturating_sub(start)));
        extension(self.budget, self.wall_start.elapsed(), cpu_used)
    }
}

/// The rule of [`Deadline::extension`], given what was used: go on while
/// less than `budget` of CPU and less than [`WALL_FACTOR`] budgets of wall
/// time were used, checking again once the rest of the budget could be.
fn extension(budget: Duration, wall: Duration, cpu_used: Option<Duration>) -> Option<u64> {
    let cpu_used = cpu_used?;
    if cpu_used >= budget || wall >= budget.saturating_mul(WALL_FACTOR) {
        return None;
    }
    let tick = EPOCH_TICK.as_micros().max(1);
    let rest = (budget - cpu_used).as_micros().div_ceil(tick).max(1);
    Some(u64::try_from(rest).unwrap_or(u64::MAX))
}

/// CPU time this thread has used, where the platform can tell.
#[cfg(unix)]
fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable `timespec` for the whole call, and
    // `CLOCK_THREAD_CPUTIME_ID` is a clock id every unix we build for knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    (rc == 0).then(|| Duration::new(secs, nanos))
}

/// CPU time this thread has used, where the platform can tell.
#[cfg(not(unix))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_callback_goes_on_while_it_has_used_less_cpu_than_its_deadline() {
        let budget = 20 * MS;
        // Descheduled: 25 ms on the wall clock, 4 ms of CPU: 16 ms left,
        // checked again in four 5 ms ticks.
        assert_eq!(extension(budget, 25 * MS, Some(4 * MS)), Some(4));
        assert_eq!(extension(budget, 25 * MS, Some(19 * MS)), Some(1), "at least one tick");
        // The CPU deadline is used: cut, whatever the wall clock says.
        assert_eq!(extension(budget, 21 * MS, Some(20 * MS)), None);
        assert_eq!(extension(budget, 100 * MS, Some(30 * MS)), None);
        // Too long on the wall clock, even without the CPU.
        assert_eq!(extension(budget, 200 * MS, Some(MS)), None);
        assert_eq!(extension(budget, 199 * MS, Some(MS)).map(|t| t > 0), Some(true));
        // No CPU clock: the wall-clock deadline holds.
        assert_eq!(extension(budget, 25 * MS, None), None);
    }

    #[test]
    fn the_thread_cpu_clock_counts_this_threads_work() {
        let Some(before) = thread_cpu_time() else { return };
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < 30 * MS {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = thread_cpu_time().unwrap_or(before).saturating_sub(before);
        assert!(
            used > Duration::ZERO && used <= start.elapsed() + MS,
            "{used:?} of CPU in a 30 ms busy loop"
        );
    }
}
