//! `generated-shared-prefix` (bench_serving's gsp): groups of requests behind one long
//! shared system prompt each, every request appending its own short question. Agents,
//! code assistants and multi-tenant chat look like this; with `--gsp-num-groups 1` it is
//! the one hot system prompt shared by all users.

use super::text::words;
use super::ShapeRequest;

/// Parameters of the `generated-shared-prefix` shape (bench_serving's `--gsp-*` flags).
#[derive(Clone, Debug, PartialEq)]
pub struct SharedPrefix {
    /// Groups, each with its own system prompt.
    pub num_groups: usize,
    /// Requests per group; the run sends `num_groups × prompts_per_group` requests.
    pub prompts_per_group: usize,
    /// System prompt length, tokens.
    pub system_prompt_len: usize,
    /// Question length, tokens.
    pub question_len: usize,
    /// Output length of every request, tokens.
    pub output_len: u64,
}

impl SharedPrefix {
    /// Checks the parameters.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.num_groups >= 1, "--gsp-num-groups must be at least 1");
        anyhow::ensure!(self.prompts_per_group >= 1, "--gsp-prompts-per-group must be at least 1");
        anyhow::ensure!(self.system_prompt_len >= 1, "--gsp-system-prompt-len must be at least 1");
        anyhow::ensure!(self.question_len >= 1, "--gsp-question-len must be at least 1");
        anyhow::ensure!(self.output_len >= 1, "--gsp-output-len must be at least 1");
        Ok(())
    }

    /// The group's system prompts, then `prompts_per_group` requests per group, in group
    /// order (the caller shuffles). The completions prompt is `system\nquestion`; the
    /// chat messages are the system prompt and the question as the user's turn.
    pub fn generate(&self, rng: &mut fastrand::Rng) -> Vec<ShapeRequest> {
        let systems: Vec<String> = (0..self.num_groups).map(|_| words(rng, self.system_prompt_len)).collect();
        let mut out = Vec::with_capacity(self.num_groups * self.prompts_per_group);
        for (group, system) in systems.iter().enumerate() {
            for _ in 0..self.prompts_per_group {
                let question = words(rng, self.question_len);
                out.push(ShapeRequest {
                    group,
                    prompt: format!("{system}\n{question}"),
                    messages: vec![("system".into(), system.clone()), ("user".into(), question)],
                    output_len: self.output_len,
                });
            }
        }
        out
    }
}
