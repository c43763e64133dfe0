//! `random`: bench_serving's standard random dataset. Every prompt is fresh random text,
//! unrelated to every other, so no router can find anything cached: the shape of most
//! published serving benchmarks, where cache-aware routing must cost nothing.

use super::text::words;
use super::ShapeRequest;

/// Parameters of the `random` shape (bench_serving's `--random-*` flags).
#[derive(Clone, Debug, PartialEq)]
pub struct Random {
    /// Largest prompt, tokens.
    pub input_len: usize,
    /// Largest output, tokens.
    pub output_len: u64,
    /// Each length is uniform in `[max(1, ⌊len × ratio⌋), len]`, as bench_serving draws
    /// it: 0 spreads lengths from 1 to `len`, 1 fixes them at `len`.
    pub range_ratio: f64,
}

/// `[max(1, ⌊len × ratio⌋), len]`, bench_serving's range for a random length.
pub(super) fn ratio_range(len: u64, ratio: f64) -> (u64, u64) {
    let len = len.max(1);
    let lo = ((len as f64 * ratio.clamp(0.0, 1.0)).floor() as u64).clamp(1, len);
    (lo, len)
}

impl Random {
    /// Checks the parameters.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.input_len >= 1, "--random-input-len must be at least 1");
        anyhow::ensure!(self.output_len >= 1, "--random-output-len must be at least 1");
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.range_ratio),
            "--random-range-ratio must be within [0, 1], not {}",
            self.range_ratio
        );
        Ok(())
    }

    /// `num_prompts` requests, each its own group.
    pub fn generate(&self, num_prompts: usize, rng: &mut fastrand::Rng) -> Vec<ShapeRequest> {
        let (in_lo, in_hi) = ratio_range(self.input_len as u64, self.range_ratio);
        let (out_lo, out_hi) = ratio_range(self.output_len, self.range_ratio);
        (0..num_prompts)
            .map(|i| {
                let len = rng.u64(in_lo..=in_hi) as usize;
                let text = words(rng, len);
                ShapeRequest::single_user(i, text, rng.u64(out_lo..=out_hi))
            })
            .collect()
    }
}
