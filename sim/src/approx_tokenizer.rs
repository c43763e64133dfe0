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

/// Whether the character starting with byte `b` is a word character (a letter, a digit or
/// any non-ASCII character): an ASCII letter or digit, or any byte of a non-ASCII character.
fn is_word_byte(b: u8) -> bool {
    WORD_BYTES[usize::from(b)]
}

/// [`is_word_byte`] of every byte, looked up rather than computed: the word scan is the
/// tokenizer's inner loop.
static WORD_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || !byte.is_ascii();
        b += 1;
    }
    table
};

/// Whether ASCII byte `b` is whitespace as `char::is_whitespace` has it (which, unlike
/// `u8::is_ascii_whitespace`, counts the vertical tab).
fn is_ascii_space(b: u8) -> bool {
    b == b' ' || (0x09..=0x0d).contains(&b)
}

/// Calls `f` with each token's text.
///
/// Works on bytes: every rule is decided by ASCII bytes, and a byte at or above 0x80 is
/// part of a non-ASCII character, which is a word character. Only a whitespace run that
/// meets a non-ASCII character decodes it, and only a piece holding non-ASCII characters
/// is chunked by characters rather than bytes.
fn for_each_piece(text: &str, mut f: impl FnMut(&str)) {
    let bytes = text.as_bytes();
    let mut pos = 0;
    while let Some(&b) = bytes.get(pos) {
        // Special token.
        if b == b'<' && bytes.get(pos + 1) == Some(&b'|') {
            let rest = &text[pos..];
            if let Some(end) = rest[2..].find("|>") {
                let len = 2 + end + 2;
                if !rest[2..2 + end].contains(char::is_whitespace) {
                    f(&rest[..len]);
                    pos += len;
                    continue;
                }
            }
        }
        // Word, with one leading space.
        let word_start = usize::from(b == b' ' && bytes.get(pos + 1).is_some_and(|&n| is_word_byte(n)));
        if word_start == 1 || is_word_byte(b) {
            let mut end = pos + word_start;
            let mut high = 0;
            while let Some(&w) = bytes.get(end) {
                if !is_word_byte(w) {
                    break;
                }
                high |= w;
                end += 1;
            }
            emit_chunks(&text[pos..end], WORD_CHUNK, high.is_ascii(), &mut f);
            pos = end;
            continue;
        }
        // Whitespace run (stopping before a space that leads a word). `b` is ASCII here:
        // a non-ASCII character is a word character.
        if is_ascii_space(b) {
            let mut end = pos;
            let mut ascii = true;
            while let Some(&w) = bytes.get(end) {
                if w.is_ascii() {
                    if !is_ascii_space(w) {
                        break;
                    }
                    if w == b' ' && end > pos && bytes.get(end + 1).is_some_and(|&n| is_word_byte(n)) {
                        break;
                    }
                    end += 1;
                } else {
                    match text[end..].chars().next() {
                        Some(ch) if ch.is_whitespace() => {
                            ascii = false;
                            end += ch.len_utf8();
                        }
                        _ => break,
                    }
                }
            }
            emit_chunks(&text[pos..end], SPACE_CHUNK, ascii, &mut f);
            pos = end;
            continue;
        }
        // Anything else: one (ASCII) character.
        f(&text[pos..pos + 1]);
        pos += 1;
    }
}

/// Emits `s` as tokens of at most `chunk` characters; `ascii` says every character of
/// `s` is one byte, so chunks can be cut by byte count.
#[inline]
fn emit_chunks(s: &str, chunk: usize, ascii: bool, f: &mut impl FnMut(&str)) {
    if ascii {
        let mut start = 0;
        while s.len() - start > chunk {
            f(&s[start..start + chunk]);
            start += chunk;
        }
        if start < s.len() {
            f(&s[start..]);
        }
        return;
    }
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

    /// The character-by-character reading these rules were first written as; the
    /// byte-level [`for_each_piece`] must cut every text the same way.
    fn reference_pieces(text: &str) -> Vec<&str> {
        fn is_word_char(c: char) -> bool {
            c.is_alphanumeric() || !c.is_ascii()
        }
        fn chunks<'a>(s: &'a str, chunk: usize, out: &mut Vec<&'a str>) {
            let (mut start, mut n) = (0, 0);
            for (i, _) in s.char_indices() {
                if n == chunk {
                    out.push(&s[start..i]);
                    start = i;
                    n = 0;
                }
                n += 1;
            }
            if start < s.len() {
                out.push(&s[start..]);
            }
        }
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("<|") {
                if let Some(end) = rest[2..].find("|>") {
                    let len = 2 + end + 2;
                    if !rest[2..2 + end].contains(char::is_whitespace) {
                        out.push(&rest[..len]);
                        rest = &rest[len..];
                        continue;
                    }
                }
            }
            let word_start = usize::from(c == ' ' && rest[1..].starts_with(is_word_char));
            if word_start == 1 || is_word_char(c) {
                let body = &rest[word_start..];
                let body_len = body.find(|ch: char| !is_word_char(ch)).unwrap_or(body.len());
                let word = &rest[..word_start + body_len];
                chunks(word, WORD_CHUNK, &mut out);
                rest = &rest[word.len()..];
                continue;
            }
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
                chunks(&rest[..len], SPACE_CHUNK, &mut out);
                rest = &rest[len..];
                continue;
            }
            let len = c.len_utf8();
            out.push(&rest[..len]);
            rest = &rest[len..];
        }
        out
    }

    fn pieces(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_piece(text, |p| out.push(p.to_owned()));
        out
    }

    #[test]
    fn byte_level_pieces_match_the_character_level_reference() {
        // Every kind of character the rules tell apart, Unicode whitespace and vertical
        // tabs included, in random strings (a fixed SplitMix64 stream).
        const ALPHABET: &[&str] = &[
            "a",
            "Z",
            "7",
            " ",
            " ",
            "  ",
            "\t",
            "\n",
            "\r",
            "\u{b}",
            "\u{c}",
            "\u{1c}",
            "\u{a0}",
            "\u{2003}",
            "\u{3000}",
            "\u{85}",
            "é",
            "日",
            "😀",
            "<|",
            "|>",
            "<",
            "|",
            ">",
            ".",
            ",",
            "-",
            "_",
            "<|im_start|>",
            "<|a b|>",
            "word",
            " international",
            "\u{0}",
        ];
        let mut state = 0x1234_5678_u64;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let text: String =
                (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
            assert_eq!(pieces(&text), reference_pieces(&text), "{text:?}");
        }
        assert_eq!(pieces(PROSE), reference_pieces(PROSE));
    }

    #[test]
    fn generated_words_are_one_token_each() {
        for w in [" the", " model", " cache", " river"] {
            assert_eq!(count(w), 1, "{w:?}");
        }
    }
}
