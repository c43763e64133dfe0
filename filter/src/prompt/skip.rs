//! The syntax-only skip of every value routing does not read.
//!
//! Nothing here recurses or allocates per value. A skipped array or object
//! is walked iteratively, with one bit per open bracket (array or object) so
//! that a `]` closing a `{` is refused: the innermost 64 levels in a
//! register, the outer ones in a vector, so the only memory a skip can take
//! is one bit per level of nesting beyond 64 (at most an eighth of the
//! body's bytes). Strings are searched eight bytes at a time.
//!
//! What "syntax only" accepts is what `serde_json` accepts when it ignores a
//! value (`IgnoredAny`): strings must be closed and free of raw control
//! characters, and their escapes well formed (`\u` with four hex digits), but
//! their bytes need not be UTF-8 and a `\u` escape may be a lone surrogate;
//! numbers must follow the JSON grammar, whatever their magnitude.
//!
//! Nesting is bounded: a skipped value nested deeper than
//! [`MAX_NESTING`](super::MAX_NESTING) levels stops reading as a full budget
//! does ([`Halt::Full`]), so the prompt is the text read before it. Such a
//! body is one no replica serves (Python's `json`, which vLLM's server
//! parses with, refuses nesting deeper than its recursion limit of about
//! 1,000), and skipping half a million levels of `{"a":` cost close to the
//! 20 ms callback deadline in wasm.

use super::scan::{Halt, Step};
use super::MAX_NESTING;

/// Skips the value at or after `i` (after whitespace), checking its syntax
/// only: the index after it. Iterative: the depth of nesting costs one bit
/// per level, never stack.
pub(super) fn skip_value(bytes: &[u8], mut i: usize) -> Step<usize> {
    let mut nest = Brackets::default();
    loop {
        // A value is expected at `i`.
        i = non_space(bytes, i);
        match bytes.get(i).copied() {
            Some(b'[') => {
                // Deep nesting comes as runs of brackets: push a run at once.
                // At most one more than the room left, to see it overflow.
                let run = same_run(bytes, i, MAX_NESTING + 1 - nest.depth);
                if nest.depth + run > MAX_NESTING {
                    return Err(Halt::Full);
                }
                nest.push_arrays(run);
                i = non_space(bytes, i + run);
                if bytes.get(i) != Some(&b']') {
                    continue;
                }
                i += 1;
                nest.pop_run(1, false);
            }
            Some(b'{') => {
                i = non_space(bytes, i + 1);
                if bytes.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    nest.push_object();
                    if nest.depth > MAX_NESTING {
                        return Err(Halt::Full);
                    }
                    i = member_key(bytes, i)?;
                    continue;
                }
            }
            Some(b'"') => i = skip_string(bytes, i + 1)?,
            Some(b'-' | b'0'..=b'9') => i = skip_number(bytes, i)?,
            Some(b't') => i = skip_word(bytes, i, b"true")?,
            Some(b'f') => i = skip_word(bytes, i, b"false")?,
            Some(b'n') => i = skip_word(bytes, i, b"null")?,
            _ => return Err(Halt::Invalid),
        }
        // A value ended: close brackets until another value is expected.
        loop {
            let Some(object) = nest.top() else {
                return Ok(i);
            };
            i = non_space(bytes, i);
            match (bytes.get(i).copied(), object) {
                (Some(b','), true) => {
                    i = member_key(bytes, non_space(bytes, i + 1))?;
                    break;
                }
                (Some(b','), false) => {
                    i += 1;
                    break;
                }
                (Some(close @ (b'}' | b']')), _) if (close == b'}') == object => {
                    // As many of a run of closing brackets as are open here
                    // (the rest close what encloses this value).
                    let run = same_run(bytes, i, nest.depth);
                    if !nest.pop_run(run, object) {
                        return Err(Halt::Invalid);
                    }
                    i += run;
                }
                _ => return Err(Halt::Invalid),
            }
        }
    }
}

/// The open brackets of a value being skipped, one bit each (1: an object's):
/// the word holding the innermost 64 levels stays in a register, the outer
/// ones spill to a vector (which allocates only past 64 levels).
#[derive(Default)]
struct Brackets {
    depth: usize,
    top_word: u64,
    outer: Vec<u64>,
}

impl Brackets {
    /// Opens an object.
    fn push_object(&mut self) {
        self.make_room();
        self.top_word |= 1 << (self.depth % 64);
        self.depth += 1;
    }

    /// Opens `n` arrays.
    fn push_arrays(&mut self, mut n: usize) {
        while n > 0 {
            self.make_room();
            let bit = self.depth % 64;
            let take = n.min(64 - bit);
            self.top_word &= !(ones(take) << bit);
            self.depth += take;
            n -= take;
        }
    }

    /// Spills the top word when it is full, before a push.
    fn make_room(&mut self) {
        if self.depth.is_multiple_of(64) && self.depth > 0 {
            let word = self.depth / 64 - 1;
            if word == self.outer.len() {
                self.outer.push(self.top_word);
            } else if let Some(w) = self.outer.get_mut(word) {
                *w = self.top_word;
            }
            self.top_word = 0;
        }
    }

    /// Whether the innermost open bracket is an object's; `None` if none is open.
    fn top(&self) -> Option<bool> {
        let depth = self.depth.checked_sub(1)?;
        Some(self.top_word >> (depth % 64) & 1 == 1)
    }

    /// Closes the `n` innermost brackets (at most the depth), if every one
    /// of them is an object's (`object`) or an array's; false otherwise.
    fn pop_run(&mut self, mut n: usize, object: bool) -> bool {
        while n > 0 && self.depth > 0 {
            let used = (self.depth - 1) % 64 + 1;
            let take = n.min(used);
            let mask = ones(take) << (used - take);
            if self.top_word & mask != if object { mask } else { 0 } {
                return false;
            }
            self.depth -= take;
            n -= take;
            if take == used && self.depth > 0 {
                self.top_word = self.outer.get(self.depth / 64 - 1).copied().unwrap_or_default();
            }
        }
        true
    }
}

/// `n` low bits set (1 ≤ `n` ≤ 64).
fn ones(n: usize) -> u64 {
    u64::MAX >> (64 - n.clamp(1, 64))
}

/// How many times the byte at `i` repeats from `i` on, counting at most `max`.
#[inline]
fn same_run(bytes: &[u8], i: usize, max: usize) -> usize {
    let rest = bytes.get(i..).unwrap_or_default();
    rest.first().map_or(0, |&b| rest.iter().take(max).take_while(|&&x| x == b).count())
}

/// The index of the first byte at or after `i` that is not whitespace.
#[inline]
fn non_space(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(i) {
        i += 1;
    }
    i
}

/// Skips an object key starting at its opening quote at `i`, and the colon
/// after it: the index after the colon.
fn member_key(bytes: &[u8], i: usize) -> Step<usize> {
    if bytes.get(i) != Some(&b'"') {
        return Err(Halt::Invalid);
    }
    let i = non_space(bytes, skip_string(bytes, i + 1)?);
    if bytes.get(i) != Some(&b':') {
        return Err(Halt::Invalid);
    }
    Ok(i + 1)
}

/// Skips the rest of a string from `i`, after its opening quote, checking
/// its syntax only: the index after its closing quote.
pub(super) fn skip_string(bytes: &[u8], mut i: usize) -> Step<usize> {
    if let Some(end) = ascii_run(bytes.get(i..).unwrap_or_default()).filter(|&end| bytes[i + end] == b'"') {
        return Ok(i + end + 1);
    }
    loop {
        let rest = bytes.get(i..).unwrap_or_default();
        let stop = special(rest).ok_or(Halt::Invalid)?;
        i += stop + 1;
        match rest[stop] {
            b'"' => return Ok(i),
            b'\\' => match bytes.get(i) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 1,
                Some(b'u')
                    if bytes.get(i + 1..i + 5).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                {
                    i += 5;
                }
                _ => return Err(Halt::Invalid),
            },
            _ => return Err(Halt::Invalid),
        }
    }
}

/// Skips a number (JSON grammar, any magnitude) starting at `i`: the index
/// after it.
fn skip_number(bytes: &[u8], mut i: usize) -> Step<usize> {
    let digits =
        |i: usize| bytes.get(i..).unwrap_or_default().iter().take_while(|b| b.is_ascii_digit()).count();
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return Err(Halt::Invalid),
    }
    if bytes.get(i) == Some(&b'.') {
        match digits(i + 1) {
            0 => return Err(Halt::Invalid),
            n => i += 1 + n,
        }
    }
    if let Some(b'e' | b'E') = bytes.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = bytes.get(i) {
            i += 1;
        }
        match digits(i) {
            0 => return Err(Halt::Invalid),
            n => i += n,
        }
    }
    Ok(i)
}

/// Skips `word` (`true`, `false` or `null`) at `i`: the index after it.
fn skip_word(bytes: &[u8], i: usize, word: &[u8]) -> Step<usize> {
    match bytes.get(i..i + word.len()) {
        Some(w) if w == word => Ok(i + word.len()),
        _ => Err(Halt::Invalid),
    }
}

/// The length of a short run of printable ASCII at the start of `bytes`,
/// ended within 16 bytes by a quote or a backslash (which the caller tells
/// apart): the most common kind of key, value and text between escapes.
/// `None` for anything else.
#[inline]
pub(super) fn ascii_run(bytes: &[u8]) -> Option<usize> {
    for (i, &b) in bytes.iter().take(16).enumerate() {
        match b {
            b'"' | b'\\' => return Some(i),
            0..0x20 | 0x80.. => return None,
            _ => {}
        }
    }
    None
}

/// The index of the first byte of `bytes` that ends a run of plain string
/// content: a quote, a backslash or a control character. Eight bytes at a
/// time (SWAR, as `serde_json` does it): the lowest flagged byte of a word
/// is exact, whatever borrows flag above it.
#[inline]
pub(super) fn special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut words {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let found = has_zero(w ^ (ONES * u64::from(b'"')))
            | has_zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words.remainder().iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(json: &str) -> Step {
        let i = skip_value(json.as_bytes(), 0)?;
        if json.as_bytes()[i..].iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else {
            Err(Halt::Invalid)
        }
    }

    #[test]
    fn skipping_accepts_what_serde_json_ignores() {
        for ok in [
            "1",
            "-0.5e+10",
            "1E400",
            "[]",
            "{}",
            r#"{"a":[1,{"b":null}],"c":"\u00e9\ud800\"","d":true}"#,
            " [ false , null ] ",
        ] {
            assert_eq!(skip(ok), Ok(()), "{ok}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(ok).is_ok(), "{ok}");
        }
        let deep = format!("{}{}", "[{\"k\":".repeat(300), "}]".repeat(300));
        assert_eq!(skip(&deep), Err(Halt::Invalid), "a `}}` closes no `[`");
        let deep = format!("{}1{}", "[{\"k\":".repeat(300), "}]".repeat(300));
        assert_eq!(skip(&deep), Ok(()));
    }

    #[test]
    fn skipping_refuses_broken_syntax() {
        for bad in [
            "",
            "01",
            "1.",
            "-",
            "1e",
            "[1,]",
            "[1}",
            "{\"a\"}",
            "{\"a\":1,}",
            "{1:2}",
            "\"a\\q\"",
            "\"a\u{1}\"",
            "\"\\u12g4\"",
            "tru",
            "[",
            "\"open",
            "nul",
        ] {
            assert_eq!(skip(bad), Err(Halt::Invalid), "{bad:?}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn brackets_remember_every_level() {
        let kinds: Vec<bool> = (0..1000).map(|i| (i * 7 + i / 3) % 5 < 2).collect();
        let mut nest = Brackets::default();
        assert_eq!(nest.top(), None);
        for (i, &object) in kinds.iter().enumerate() {
            if object {
                nest.push_object();
            } else {
                nest.push_arrays(1);
            }
            assert_eq!(nest.top(), Some(object), "pushed {i}");
        }
        for (i, &object) in kinds.iter().enumerate().rev() {
            assert_eq!(nest.top(), Some(object), "popping {i}");
            assert!(!nest.pop_run(1, !object), "a mismatched close at {i}");
            assert!(nest.pop_run(1, object), "popping {i}");
        }
        assert_eq!(nest.top(), None);
    }

    #[test]
    fn runs_of_brackets_open_and_close_at_once() {
        let mut nest = Brackets::default();
        nest.push_object();
        nest.push_arrays(200);
        assert_eq!(nest.depth, 201);
        assert!(!nest.pop_run(201, false), "the outermost is an object");
        let mut nest = Brackets::default();
        nest.push_object();
        nest.push_arrays(200);
        assert!(nest.pop_run(130, false));
        assert_eq!((nest.depth, nest.top()), (71, Some(false)));
        assert!(nest.pop_run(70, false));
        assert_eq!(nest.top(), Some(true));
        assert!(nest.pop_run(5, true), "pops what is open");
        assert_eq!(nest.top(), None);
        for (json, ok) in [
            ("[[[[]]]]", true),
            ("[[[{}]]]", true),
            ("[[{\"a\":[[1]]}]]", true),
            ("[[{\"a\":[[1]]]]]", false),
            ("[[[1]]}", false),
            ("{\"a\":[[]]}}", true),
        ] {
            let end = skip_value(json.as_bytes(), 0);
            assert_eq!(end.is_ok(), ok, "{json}");
        }
        assert_eq!(skip_value(b"[[1]]]]", 0), Ok(5), "the rest closes what encloses it");
    }

    #[test]
    fn ascii_runs_are_printable_and_end_at_a_quote_or_backslash() {
        assert_eq!(ascii_run(b"\"rest"), Some(0));
        assert_eq!(ascii_run(b"type\":1"), Some(4));
        assert_eq!(ascii_run(b"the \\n"), Some(4));
        assert_eq!(ascii_run(b"0123456789abcde\""), Some(15));
        assert_eq!(ascii_run(b"0123456789abcdef\""), None, "longer than 16 bytes");
        for other in [&b"\xc3\xa9\""[..], b"a\tb\"", b"open"] {
            assert_eq!(ascii_run(other), None, "{other:?}");
        }
    }

    #[test]
    fn special_bytes_are_found_in_any_position() {
        for len in 0..20 {
            for at in 0..len {
                for b in [b'"', b'\\', 0, 0x1f, b'\n'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    // Bytes that flag their neighbours in a careless SWAR.
                    for (i, x) in bytes.iter_mut().enumerate().skip(at + 1) {
                        *x = [0x21, 0xff, 0x80, b'"'][i % 4];
                    }
                    assert_eq!(special(&bytes), Some(at), "{bytes:?}");
                }
            }
            let near = [b'a', 0x20, 0x7f, 0xc3, 0xa9, 0xff, 0x21, 0x23, 0x5b, 0x5d, 0xa2, 0xdc];
            let plain: Vec<u8> = (0..len).map(|i| near[i % near.len()]).collect();
            assert_eq!(special(&plain), None, "{plain:?}");
        }
    }
}
