//! What a replay reports: decision times per prompt-size bucket, and how the
//! index's picks compare with the exact reference.

use crate::Bucket;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Decision times, per prompt-size bucket.
#[derive(Debug, Default)]
pub struct Timings {
    samples: BTreeMap<Bucket, Vec<Duration>>,
}

impl Timings {
    /// Records one decision on a prompt of `chars` characters.
    pub fn record(&mut self, chars: usize, took: Duration) {
        self.samples.entry(Bucket::of(chars)).or_default().push(took);
    }

    /// Decisions recorded in `bucket`.
    pub fn count(&self, bucket: Bucket) -> usize {
        self.samples.get(&bucket).map_or(0, Vec::len)
    }

    /// The `q` quantile (0 to 1) of `bucket`'s decision times, by the
    /// nearest rank; `None` with no samples.
    pub fn quantile(&self, bucket: Bucket, q: f64) -> Option<Duration> {
        let mut sorted = self.samples.get(&bucket)?.clone();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }
}

impl fmt::Display for Timings {
    /// One line per bucket: decisions, median and p99 in microseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<6} {:>9} {:>11} {:>11}", "prompt", "decisions", "median µs", "p99 µs")?;
        for bucket in Bucket::ALL {
            let us = |q| self.quantile(bucket, q).map_or(f64::NAN, |d: Duration| d.as_secs_f64() * 1e6);
            writeln!(
                f,
                "{:<6} {:>9} {:>11.2} {:>11.2}",
                bucket.label(),
                self.count(bucket),
                us(0.5),
                us(0.99)
            )?;
        }
        Ok(())
    }
}

/// The index's picks against the exact reference.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Accuracy {
    /// Decisions where some backend held at least one whole chunk of the prompt.
    pub decisions: usize,
    /// Of those, the index's best backend is an exact best.
    pub exact_best: usize,
    /// Of those, the index's best backend holds within one chunk of the
    /// exact best's match.
    pub within_one_chunk: usize,
    /// Characters the index matched on its best backend, summed.
    pub matched_chars: u64,
    /// Characters the exact best backend holds, summed.
    pub exact_chars: u64,
    /// Backends for which the index reported more than the backend received
    /// (a false match; must stay 0).
    pub over_reports: usize,
}

impl Accuracy {
    /// Records one decision: `reported[j]` and `exact[j]` are backend `j`'s
    /// match by the index and by the reference; `chunk_at(c)` the width of
    /// the chunk starting `c` characters into the prompt.
    pub fn record(&mut self, reported: &[usize], exact: &[usize], chunk_at: impl Fn(usize) -> usize) {
        self.over_reports += reported.iter().zip(exact).filter(|(r, e)| r > e).count();
        let best_exact = exact.iter().copied().max().unwrap_or(0);
        if best_exact < chunk_at(0) {
            return;
        }
        self.decisions += 1;
        // The index's pick: the first backend with the longest reported match.
        let pick = (0..reported.len()).fold(0, |best, j| if reported[j] > reported[best] { j } else { best });
        let got = exact.get(pick).copied().unwrap_or(0);
        self.exact_best += usize::from(got == best_exact);
        self.within_one_chunk += usize::from(best_exact - got <= chunk_at(got));
        self.matched_chars += reported.get(pick).copied().unwrap_or(0) as u64;
        self.exact_chars += best_exact as u64;
    }

    fn share(part: usize, whole: usize) -> f64 {
        if whole == 0 {
            f64::NAN
        } else {
            part as f64 / whole as f64
        }
    }

    /// Share of decisions whose pick is an exact best.
    pub fn exact_best_share(&self) -> f64 {
        Self::share(self.exact_best, self.decisions)
    }

    /// Share of decisions whose pick is within one chunk of the exact best.
    pub fn within_one_chunk_share(&self) -> f64 {
        Self::share(self.within_one_chunk, self.decisions)
    }

    /// Matched characters over the exact best's characters.
    pub fn matched_share(&self) -> f64 {
        if self.exact_chars == 0 {
            f64::NAN
        } else {
            self.matched_chars as f64 / self.exact_chars as f64
        }
    }
}

impl fmt::Display for Accuracy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} decisions with a match: pick is an exact best {:.2} %, within one chunk {:.2} %, \
             matched characters {:.2} % of the exact best's; over-reports {}",
            self.decisions,
            100.0 * self.exact_best_share(),
            100.0 * self.within_one_chunk_share(),
            100.0 * self.matched_share(),
            self.over_reports,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut t = Timings::default();
        for us in 1..=100 {
            t.record(500, Duration::from_micros(us));
        }
        assert_eq!(t.quantile(Bucket::Chars1k, 0.5), Some(Duration::from_micros(50)));
        assert_eq!(t.quantile(Bucket::Chars1k, 0.99), Some(Duration::from_micros(99)));
        assert_eq!(t.quantile(Bucket::Chars8k, 0.5), None);
        assert_eq!(t.count(Bucket::Chars1k), 100);
    }

    #[test]
    fn accuracy_scores_the_pick_against_the_exact_best() {
        let mut a = Accuracy::default();
        let chunk = |_| 64;
        // Pick 1 is exact.
        a.record(&[0, 640], &[10, 700], chunk);
        // Pick 0 is a chunk short of backend 1's 700.
        a.record(&[600, 0], &[650, 700], chunk);
        // Pick 0 is far off.
        a.record(&[64, 0], &[64, 700], chunk);
        // Nothing to match: not counted.
        a.record(&[0, 0], &[10, 0], chunk);
        // An over-report.
        a.record(&[128, 0], &[64, 64], chunk);
        assert_eq!(a.decisions, 4);
        assert_eq!(a.exact_best, 2);
        assert_eq!(a.within_one_chunk, 3);
        assert_eq!(a.over_reports, 1);
        assert_eq!(a.matched_chars, 640 + 600 + 64 + 128);
        assert_eq!(a.exact_chars, 700 + 700 + 700 + 64);
    }
}
