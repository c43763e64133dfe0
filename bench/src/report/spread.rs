//! Repeated runs of one strategy as one figure: mean, sample standard
//! deviation and range; and a figure's change against the baseline's.

/// A metric over the runs of one strategy (NaN runs left out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Runs with a value.
    pub n: usize,
    /// Their mean (NaN for none).
    pub mean: f64,
    /// Sample standard deviation (0 for one run).
    pub sd: f64,
    /// Lowest run.
    pub min: f64,
    /// Highest run.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`.
    pub fn of(values: &[f64]) -> Self {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return Self { n, mean: f64::NAN, sd: f64::NAN, min: f64::NAN, max: f64::NAN };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Self { n, mean, sd, min, max }
    }

    /// `mean` with `decimals` digits, then `± sd` when there are several runs;
    /// `n/a` without a value. `scale` multiplies every figure (100 for %).
    pub fn text(&self, decimals: usize, scale: f64) -> String {
        if self.n == 0 {
            return "n/a".to_owned();
        }
        let m = self.mean * scale;
        if self.n == 1 {
            format!("{m:.decimals$}")
        } else {
            format!("{m:.decimals$} ± {:.decimals$}", self.sd * scale)
        }
    }

    /// `min–max` of several runs, `None` for one.
    pub fn range_text(&self, decimals: usize, scale: f64) -> Option<String> {
        (self.n > 1).then(|| format!("{:.decimals$}–{:.decimals$}", self.min * scale, self.max * scale))
    }
}

/// Which way a metric improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Latencies, failures.
    Lower,
    /// Throughput, cache hits.
    Higher,
    /// Neither (e.g. a share that should be even).
    Neither,
}

/// The relative change of `value` against `baseline` ((value − baseline) /
/// baseline), when both are numbers and the baseline is not 0.
pub fn relative_change(value: f64, baseline: f64) -> Option<f64> {
    (value.is_finite() && baseline.is_finite() && baseline != 0.0).then(|| (value - baseline) / baseline)
}

/// A relative change as text: `−18.0 %`, `+4.2 %` (a true minus sign).
pub fn change_text(change: f64) -> String {
    let pct = change * 100.0;
    if pct.abs() < 0.05 {
        "±0.0 %".to_owned()
    } else if pct < 0.0 {
        format!("\u{2212}{:.1} %", -pct)
    } else {
        format!("+{pct:.1} %")
    }
}

/// Whether `change` is an improvement (`Some(true)`), a regression
/// (`Some(false)`), or neither.
pub fn judge(change: f64, better: Better) -> Option<bool> {
    if change.abs() < 0.0005 {
        return None;
    }
    match better {
        Better::Lower => Some(change < 0.0),
        Better::Higher => Some(change > 0.0),
        Better::Neither => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_runs() {
        let s = Spread::of(&[10.0, 12.0, f64::NAN, 14.0]);
        assert_eq!((s.n, s.mean, s.sd, s.min, s.max), (3, 12.0, 2.0, 10.0, 14.0));
        assert_eq!(s.text(1, 1.0), "12.0 ± 2.0");
        assert_eq!(s.range_text(0, 1.0).as_deref(), Some("10–14"));
        let one = Spread::of(&[0.5]);
        assert_eq!((one.text(1, 100.0), one.range_text(1, 100.0)), ("50.0".to_owned(), None));
        assert_eq!(Spread::of(&[]).text(1, 1.0), "n/a");
    }

    #[test]
    fn changes_against_the_baseline() {
        let c = relative_change(82.0, 100.0);
        assert_eq!(c.map(change_text).as_deref(), Some("\u{2212}18.0 %"));
        assert_eq!(relative_change(10.5, 10.0).map(change_text).as_deref(), Some("+5.0 %"));
        assert_eq!(relative_change(1.0, 0.0), None);
        assert_eq!(judge(-0.18, Better::Lower), Some(true));
        assert_eq!(judge(-0.18, Better::Higher), Some(false));
        assert_eq!(judge(0.0, Better::Higher), None);
    }
}
