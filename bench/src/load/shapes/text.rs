//! Text of generated prompts: pseudo-words of 2 to 5 random lowercase letters. Each is
//! exactly one token of the simulator's approximate tokenizer (a word of up to six
//! characters counting its leading space), about 4.5 characters per token, so a length
//! asked for in tokens is the length the simulator counts. Two texts drawn from different
//! generator states share a leading word with a probability of about 1 in 10,000 and a
//! 16-token KV block practically never.

/// `tokens` pseudo-words separated by single spaces (no leading or trailing space).
pub(super) fn words(rng: &mut fastrand::Rng, tokens: usize) -> String {
    let mut s = String::with_capacity(tokens * 5);
    for i in 0..tokens {
        if i > 0 {
            s.push(' ');
        }
        for _ in 0..rng.usize(2..=5) {
            s.push(rng.lowercase());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use vllm_sim::tokenizer::SimTokenizer;

    #[test]
    fn one_pseudo_word_is_one_approximate_token() {
        let mut rng = fastrand::Rng::with_seed(3);
        for n in [0, 1, 2, 17, 500] {
            let text = words(&mut rng, n);
            assert_eq!(SimTokenizer::Approximate.encode(&text, true).unwrap().len(), n, "{text:?}");
        }
        // Joined by a newline, the parts add up plus one token for the newline.
        let joined = format!("{}\n{}", words(&mut rng, 30), words(&mut rng, 7));
        assert_eq!(SimTokenizer::Approximate.encode(&joined, true).unwrap().len(), 38);
    }
}
