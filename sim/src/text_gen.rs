//! Deterministic pseudo-text for generated tokens: one common English word per token, drawn
//! by a seeded generator, so the same request yields the same text on every run.

/// Words emitted as generated tokens; each is a single token in Qwen's BPE and in the
/// approximate tokenizer (a leading space and at most five letters).
const WORDS: &[&str] = &[
    " the", " of", " and", " to", " in", " is", " that", " for", " it", " as", " with", " was", " on", " be",
    " by", " this", " are", " or", " from", " at", " which", " an", " but", " not", " have", " has", " can",
    " all", " more", " one", " will", " would", " there", " their", " other", " into", " time", " some",
    " about", " only", " new", " these", " first", " also", " any", " after", " most", " such", " model",
    " cache", " token", " block", " data", " value", " state", " order", " point", " small", " large",
    " fast", " each", " then", " when", " where", " while", " under", " over", " again", " same", " still",
    " well", " very", " often", " much", " many", " part", " place", " work", " world", " water", " light",
    " sound", " river", " stone", " paper", " story", " field",
];

/// One generated token: its id (for block keys) and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedToken {
    /// Token id under the replica's tokenizer.
    pub id: u32,
    /// Text of the token.
    pub text: &'static str,
}

/// The generation vocabulary with each word's token id under the replica's tokenizer.
#[derive(Debug, Clone)]
pub struct GenVocabulary {
    tokens: Vec<GeneratedToken>,
}

impl GenVocabulary {
    /// Builds the vocabulary, asking `token_id` for each word's id.
    pub fn new(mut token_id: impl FnMut(&str) -> u32) -> Self {
        let tokens = WORDS.iter().map(|&w| GeneratedToken { id: token_id(w), text: w }).collect();
        Self { tokens }
    }

    /// Draws the next token for a generator in `state`, advancing the state.
    pub fn next_token(&self, state: &mut u64) -> GeneratedToken {
        let r = splitmix64(state);
        let i = (r % self.tokens.len() as u64) as usize;
        self.tokens[i]
    }
}

/// SplitMix64: a tiny, fast, well-mixed generator; advances `state`.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_text() {
        let vocab = GenVocabulary::new(|w| w.len() as u32);
        let run = |seed: u64| {
            let mut s = seed;
            (0..20).map(|_| vocab.next_token(&mut s).text).collect::<String>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn every_word_is_short_with_a_leading_space() {
        for w in WORDS {
            assert!(w.starts_with(' ') && w.len() <= 6, "{w:?}");
        }
    }
}
