//! The built-in approximate tokenizer: deterministic, dependency-free, about four characters
//! per token on English prose, stable across runs and platforms.
//!
//! Rules, applied left to right:
//! - `<|...|>` (a special token such as `<|im_start|>`) is one token;
//! - a word (a run of letters, digits or non-ASCII characters, with the single space before
//!   it if any) gives one token per started 6 characters (" hello" → 1, " international" → 3);
//! - a run of other whitespace gives one token per started 4 characters;
//! - any other character (punctuation, symbols) is one token.
//!
//! A token's id is an FNV-1a hash of its text folded into Qwen's 151,643 regular ids, so equal
//! text gives equal ids, and a shared text prefix gives a shared token prefix (up to the last
//! word boundary before the texts differ), which is what prefix caching depends on.

/// Size of Qwen2.5's regular vocabulary; special tokens get ids above it.
const VOCAB: u32 = 151_643;
/// Characters per token within a word.
const WORD_CHUNK: usize = 6;
/// Characters per token within a whitespace run.
const SPACE_CHUNK: usize = 4;

/// Splits text into approximate tokens and returns their ids.
pub fn encode(text: &str) -> Vec<u32> {
    let mut out = Vec::with_capacity(text.len() / 4 + 1);
    for_each_piece(text, |piece| out.push(token_id(piece)));
    out
}

/// Calls `f` with each token's text and id, in order; the texts concatenate to `text`.
pub fn for_each_token(text: &str, mut f: impl FnMut(&str, u32)) {
    for_each_piece(text, |piece| f(piece, token_id(piece)));
}

/// Number of tokens `encode` would return.
pub fn count(text: &str) -> usize {
    let mut n = 0;
    for_each_piece(text, |_| n += 1);
    n
}

/// Id of one token's text.
pub fn token_id(piece: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in piece.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    if piece.starts_with("<|") && piece.ends_with("|>") {
        VOCAB + (h % 1024) as u32
    } else {
        (h % u64::from(VOCAB)) as u32
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || !c.is_ascii()
}

/// Calls `f` with each token's text.
fn for_each_piece(text: &str, mut f: impl FnMut(&str)) {
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        // Special token.
        if rest.starts_with("<|") {
            if let Some(end) = rest[2..].find("|>") {
                let len = 2 + end + 2;
                if !rest[2..2 + end].contains(char::is_whitespace) {
                    f(&rest[..len]);
                    rest = &rest[len..];
                    continue;
                }
            }
        }
        // Word, with one leading space.
        let word_start = usize::from(c == ' ' && rest[1..].starts_with(is_word_char));
        if word_start == 1 || is_word_char(c) {
            let body = &rest[word_start..];
            let body_len = body.find(|ch: char| !is_word_char(ch)).unwrap_or(body.len());
            let word = &rest[..word_start + body_len];
            emit_chunks(word, WORD_CHUNK, &mut f);
            rest = &rest[word.len()..];
            continue;
        }
        // Whitespace run (stopping before a space that leads a word).
        if c.is_whitespace() {
            let mut len = 0;
            for (i, ch) in rest.char_indices() {
                if !ch.is_whitespace() {
                    break;
                }
                if ch == ' ' && i > 0 && rest[i + 1..].starts_with(is_word_char) {
                    break;
                }
                len = i + ch.len_utf8();
            }
            emit_chunks(&rest[..len], SPACE_CHUNK, &mut f);
            rest = &rest[len..];
            continue;
        }
        // Anything else: one character.
        let len = c.len_utf8();
        f(&rest[..len]);
        rest = &rest[len..];
    }
}

/// Emits `s` as tokens of at most `chunk` characters.
fn emit_chunks(s: &str, chunk: usize, f: &mut impl FnMut(&str)) {
    let mut start = 0;
    let mut n = 0;
    for (i, _) in s.char_indices() {
        if n == chunk {
            f(&s[start..i]);
            start = i;
            n = 0;
        }
        n += 1;
    }
    if start < s.len() {
        f(&s[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROSE: &str = "The quick brown fox jumps over the lazy dog. Prefix caching lets a \
        server reuse the key-value tensors it already computed for the beginning of a prompt, \
        so that a second request sharing that beginning skips most of its prefill. Routers \
        that know which replica holds which prefix can send requests where the work is \
        already done, which lowers the time to first token and raises throughput.\n\n\
        In practice, conversations grow turn by turn: every new message repeats the whole \
        history before it.";

    #[test]
    fn english_prose_is_about_four_characters_per_token() {
        let chars = PROSE.chars().count() as f64;
        let ratio = chars / count(PROSE) as f64;
        assert!((3.6..4.8).contains(&ratio), "{ratio:.2} chars/token");
    }

    #[test]
    fn encoding_is_deterministic_and_keeps_shared_prefixes() {
        assert_eq!(encode(PROSE), encode(PROSE));
        let a = encode("Hello world, this is a test of caching");
        let b = encode("Hello world, this is a test of something else");
        assert_eq!(a[..7], b[..7]);
        assert_ne!(a, b);
    }

    #[test]
    fn words_split_every_six_characters_and_specials_are_single_tokens() {
        assert_eq!(count(" hello"), 1);
        assert_eq!(count(" international"), 3);
        assert_eq!(count("<|im_start|>user\nhi<|im_end|>"), 5);
        assert_eq!(count(""), 0);
        assert_eq!(count("日本語のテキスト"), 2);
    }

    #[test]
    fn generated_words_are_one_token_each() {
        for w in [" the", " model", " cache", " river"] {
            assert_eq!(count(w), 1, "{w:?}");
        }
    }
}
