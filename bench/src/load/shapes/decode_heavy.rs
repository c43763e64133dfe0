//! `decode-heavy`: short distinct prompts with long outputs (chat answers, code
//! generation). Nothing is shared and decoding dominates every replica's time, so
//! cache-aware routing cannot help: a policy should do here exactly as well as load
//! balancing does, and no worse.

use super::text::words;
use super::ShapeRequest;

/// Parameters of the `decode-heavy` shape.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeHeavy {
    /// Shortest prompt, tokens.
    pub min_prompt_len: usize,
    /// Longest prompt, tokens.
    pub max_prompt_len: usize,
    /// Shortest output, tokens.
    pub min_output_len: u64,
    /// Longest output, tokens.
    pub max_output_len: u64,
}

impl DecodeHeavy {
    /// Checks the parameters.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            1 <= self.min_prompt_len && self.min_prompt_len <= self.max_prompt_len,
            "--decode-min-prompt-len must be at least 1 and at most --decode-max-prompt-len"
        );
        anyhow::ensure!(
            1 <= self.min_output_len && self.min_output_len <= self.max_output_len,
            "--decode-min-output-len must be at least 1 and at most --decode-max-output-len"
        );
        Ok(())
    }

    /// `num_prompts` requests, each its own group; lengths uniform in their ranges.
    pub fn generate(&self, num_prompts: usize, rng: &mut fastrand::Rng) -> Vec<ShapeRequest> {
        (0..num_prompts)
            .map(|i| {
                let len = rng.usize(self.min_prompt_len..=self.max_prompt_len);
                let text = words(rng, len);
                ShapeRequest::single_user(i, text, rng.u64(self.min_output_len..=self.max_output_len))
            })
            .collect()
    }
}
