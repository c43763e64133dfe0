//! `long-document`: a few long documents (contracts, papers, code files, manuals), each
//! asked many short questions. Every request carries a whole document before its
//! question, so prefill dominates and the shared prefixes are long: where a cache hit
//! saves the most, and where a miss on the wrong replica costs a full document's prefill.

use super::text::words;
use super::ShapeRequest;

/// Parameters of the `long-document` shape.
#[derive(Clone, Debug, PartialEq)]
pub struct LongDocument {
    /// Documents; requests are spread evenly over them.
    pub num_documents: usize,
    /// Shortest document, tokens.
    pub min_document_len: usize,
    /// Longest document, tokens.
    pub max_document_len: usize,
    /// Question length, tokens.
    pub question_len: usize,
    /// Shortest output, tokens (`--min-output-len`).
    pub min_output_len: u64,
    /// Longest output, tokens (`--max-output-len`).
    pub max_output_len: u64,
}

impl LongDocument {
    /// Checks the parameters.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.num_documents >= 1, "--long-doc-num-docs must be at least 1");
        anyhow::ensure!(
            1 <= self.min_document_len && self.min_document_len <= self.max_document_len,
            "--long-doc-min-len must be at least 1 and at most --long-doc-max-len"
        );
        anyhow::ensure!(self.question_len >= 1, "--long-doc-question-len must be at least 1");
        anyhow::ensure!(
            1 <= self.min_output_len && self.min_output_len <= self.max_output_len,
            "--min-output-len must be at least 1 and at most --max-output-len"
        );
        Ok(())
    }

    /// Request `i` asks document `i mod num_documents` a fresh question, in that order
    /// (the caller shuffles). The completions prompt is `document\nquestion`; the chat
    /// message is one user turn holding both.
    pub fn generate(&self, num_prompts: usize, rng: &mut fastrand::Rng) -> Vec<ShapeRequest> {
        let documents: Vec<String> = (0..self.num_documents)
            .map(|_| {
                let len = rng.usize(self.min_document_len..=self.max_document_len);
                words(rng, len)
            })
            .collect();
        (0..num_prompts)
            .map(|i| {
                let group = i % documents.len();
                let prompt = format!("{}\n{}", documents[group], words(rng, self.question_len));
                let output_len = rng.u64(self.min_output_len..=self.max_output_len);
                ShapeRequest { group, messages: vec![("user".into(), prompt.clone())], prompt, output_len }
            })
            .collect()
    }
}
