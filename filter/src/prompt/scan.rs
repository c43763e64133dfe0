//! A cursor over a JSON body: tokens, string pieces, and syntax-only skips.
//!
//! Nothing here recurses or allocates per value. A skipped array or object
//! is walked iteratively, with one bit per open bracket (array or object) so
//! that a `]` closing a `{` is refused; the bits live in one vector that the
//! scanner keeps for the whole body, so the only memory a skip can take is
//! one bit per level of nesting (at most an eighth of the body's bytes).
//!
//! What "syntax only" accepts is what `serde_json` accepts when it ignores a
//! value (`IgnoredAny`): strings must be closed and free of raw control
//! characters, and their escapes well formed (`\u` with four hex digits), but
//! their bytes need not be UTF-8 and a `\u` escape may be a lone surrogate;
//! numbers must follow the JSON grammar, whatever their magnitude; nesting is
//! unlimited.

/// Why reading stopped before the end of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Halt {
    /// The body is not JSON (or the prompt text is not valid text): no prompt.
    Invalid,
    /// The prompt text reached its budget: what was read is the prompt.
    Full,
}

/// The result of one reading step.
pub(super) type Step<T = ()> = Result<T, Halt>;

/// A piece of a JSON string's content, decoded.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece<'b> {
    /// A run of characters without escapes, borrowed from the body, and its
    /// length in characters.
    Run(&'b str, usize),
    /// The character one escape (or a surrogate pair of them) stands for.
    Char(char),
    /// The closing quote: the string is over.
    End,
}

/// A position in a JSON body.
pub(super) struct Scanner<'b> {
    bytes: &'b [u8],
    pos: usize,
}

impl<'b> Scanner<'b> {
    /// A scanner at the start of `bytes`.
    pub(super) fn new(bytes: &'b [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// The offset of the next byte.
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// Moves back (or forth) to an offset that [`Scanner::position`] returned.
    pub(super) fn seek(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// The next byte after whitespace, not consumed; end of input is invalid.
    pub(super) fn peek(&mut self) -> Step<u8> {
        while let Some(&b) = self.bytes.get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Ok(b);
            }
            self.pos += 1;
        }
        Err(Halt::Invalid)
    }

    /// Consumes the next byte after whitespace, which must be `expected`.
    pub(super) fn eat(&mut self, expected: u8) -> Step {
        if self.peek()? != expected {
            return Err(Halt::Invalid);
        }
        self.pos += 1;
        Ok(())
    }

    /// True when only whitespace is left.
    pub(super) fn at_end(&mut self) -> bool {
        self.peek().is_err()
    }

    /// Moves to the next member of an object whose `{` is consumed: true
    /// with the key's opening quote consumed, false with the `}` consumed.
    /// `first` is true before the first member and is cleared by the call.
    pub(super) fn next_member(&mut self, first: &mut bool) -> Step<bool> {
        let mut b = self.peek()?;
        if b == b'}' {
            self.pos += 1;
            return Ok(false);
        }
        if !*first {
            if b != b',' {
                return Err(Halt::Invalid);
            }
            self.pos += 1;
            b = self.peek()?;
        }
        *first = false;
        if b != b'"' {
            return Err(Halt::Invalid);
        }
        self.pos += 1;
        Ok(true)
    }

    /// Moves to the next element of an array whose `[` is consumed: true
    /// before the element, false with the `]` consumed. `first` is true
    /// before the first element and is cleared by the call.
    pub(super) fn next_element(&mut self, first: &mut bool) -> Step<bool> {
        let b = self.peek()?;
        if b == b']' {
            self.pos += 1;
            return Ok(false);
        }
        if !*first {
            if b != b',' {
                return Err(Halt::Invalid);
            }
            self.pos += 1;
        }
        *first = false;
        Ok(true)
    }

    /// Reads an object key whose opening quote is consumed, and the colon
    /// after it: the index of the key in `names`, if it is one of them
    /// (compared unescaped, see [`Scanner::string_is_one_of`]).
    pub(super) fn key_in(&mut self, names: &[&str]) -> Step<Option<usize>> {
        let found = self.string_is_one_of(names)?;
        self.eat(b':')?;
        Ok(found)
    }

    /// Reads a string whose opening quote is consumed, compared unescaped
    /// with `names` (ASCII): the index of the name it equals, if any. Once
    /// no name can match, the rest is skipped for syntax only, so a string
    /// that is not valid text (a lone surrogate escape, invalid UTF-8)
    /// equals no name, and a huge one costs a syntax scan.
    pub(super) fn string_is_one_of(&mut self, names: &[&str]) -> Step<Option<usize>> {
        let start = self.pos;
        // Most keys have no escapes: compare their bytes where they stand.
        let rest = self.bytes.get(start..).unwrap_or_default();
        if let Some(end) = special(rest).filter(|&end| rest[end] == b'"') {
            self.pos += end + 1;
            return Ok(names.iter().position(|name| name.as_bytes() == &rest[..end]));
        }
        // Bit i: the string read so far is a prefix of names[i].
        let mut alive: u32 = (1u32 << names.len().min(31)) - 1;
        let mut at = 0;
        let mut utf8 = [0; 4];
        while alive != 0 {
            // Pieces of at most 16 characters: names are shorter.
            let bytes = match self.string_piece(16) {
                Ok(Piece::End) => {
                    let mut found = names.iter().enumerate().take(31);
                    return Ok(found.position(|(i, name)| alive & (1 << i) != 0 && name.len() == at));
                }
                Ok(Piece::Run(run, _)) => run.as_bytes(),
                Ok(Piece::Char(c)) => c.encode_utf8(&mut utf8).as_bytes(),
                // Not text, so no name: check the syntax from the start.
                Err(_) => {
                    self.pos = start;
                    break;
                }
            };
            for (i, name) in names.iter().enumerate().take(31) {
                if name.as_bytes().get(at..at + bytes.len()) != Some(bytes) {
                    alive &= !(1 << i);
                }
            }
            at += bytes.len();
        }
        self.pos = skip_string(self.bytes, self.pos)?;
        Ok(None)
    }

    /// The next piece of a string whose opening quote is consumed, at most
    /// `max_chars` characters long (at least 1). Raw bytes must be UTF-8 and
    /// escapes must stand for characters (a surrogate must be paired).
    pub(super) fn string_piece(&mut self, max_chars: usize) -> Step<Piece<'b>> {
        let start = self.pos;
        match self.bytes.get(start) {
            None => Err(Halt::Invalid),
            Some(b'"') => {
                self.pos += 1;
                Ok(Piece::End)
            }
            Some(b'\\') => {
                self.pos += 1;
                self.escape().map(Piece::Char)
            }
            Some(&b) if b < 0x20 => Err(Halt::Invalid),
            Some(_) => {
                // `room` bytes hold at most `room` characters, so windows of
                // the room left never overshoot `max_chars`; counting the
                // bytes that start a character is exact across windows.
                let (mut end, mut chars) = (start, 0);
                loop {
                    let room = max_chars - chars;
                    let window = &self.bytes[end..self.bytes.len().min(end.saturating_add(room))];
                    let stop = special(window);
                    let plain = &window[..stop.unwrap_or(window.len())];
                    chars += plain.iter().filter(|&&b| b & 0xc0 != 0x80).count();
                    end += plain.len();
                    if stop.is_some() || end == self.bytes.len() || chars == max_chars {
                        break;
                    }
                }
                // The rest of the last character.
                end += self.bytes[end..].iter().take(3).take_while(|&&b| b & 0xc0 == 0x80).count();
                self.pos = end;
                let run = std::str::from_utf8(&self.bytes[start..end]).map_err(|_| Halt::Invalid)?;
                Ok(Piece::Run(run, chars))
            }
        }
    }

    /// Decodes the escape whose backslash is consumed.
    fn escape(&mut self) -> Step<char> {
        let b = self.bytes.get(self.pos).copied().ok_or(Halt::Invalid)?;
        self.pos += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = match unit {
                    0xd800..=0xdbff => {
                        // A high surrogate must be followed by an escaped low one.
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(Halt::Invalid);
                        }
                        self.pos += 2;
                        let low = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err(Halt::Invalid);
                        }
                        0x10000 + ((u32::from(unit) - 0xd800) << 10) + (u32::from(low) - 0xdc00)
                    }
                    _ => u32::from(unit),
                };
                char::from_u32(code).ok_or(Halt::Invalid)?
            }
            _ => return Err(Halt::Invalid),
        };
        Ok(c)
    }

    /// Four hex digits of a `\u` escape.
    fn hex4(&mut self) -> Step<u16> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(Halt::Invalid)?;
        let mut unit = 0u16;
        for &d in digits {
            let v = (d as char).to_digit(16).ok_or(Halt::Invalid)?;
            unit = unit << 4 | v as u16;
        }
        self.pos += 4;
        Ok(unit)
    }

    /// Skips the next value, checking its syntax only. Iterative, on a local
    /// index: the depth of nesting costs one bit per level, never stack.
    pub(super) fn skip_value(&mut self) -> Step {
        let bytes = self.bytes;
        let mut i = self.pos;
        let mut nest = Brackets::default();
        loop {
            // A value is expected at `i`.
            i = non_space(bytes, i);
            match bytes.get(i).copied() {
                Some(open @ (b'{' | b'[')) => {
                    let object = open == b'{';
                    i = non_space(bytes, i + 1);
                    if bytes.get(i) == Some(if object { &b'}' } else { &b']' }) {
                        i += 1;
                    } else {
                        nest.push(object);
                        if object {
                            i = member_key(bytes, i)?;
                        }
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
                    self.pos = i;
                    return Ok(());
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
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        i += 1;
                        nest.pop();
                    }
                    _ => return Err(Halt::Invalid),
                }
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
    fn push(&mut self, object: bool) {
        let bit = self.depth % 64;
        if bit == 0 && self.depth > 0 {
            let word = self.depth / 64 - 1;
            if word == self.outer.len() {
                self.outer.push(self.top_word);
            } else if let Some(w) = self.outer.get_mut(word) {
                *w = self.top_word;
            }
            self.top_word = 0;
        }
        self.top_word = (self.top_word & !(1 << bit)) | (u64::from(object) << bit);
        self.depth += 1;
    }

    /// Whether the innermost open bracket is an object's; `None` if none is open.
    fn top(&self) -> Option<bool> {
        let depth = self.depth.checked_sub(1)?;
        Some(self.top_word >> (depth % 64) & 1 == 1)
    }

    fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.depth.is_multiple_of(64) && self.depth > 0 {
            self.top_word = self.outer.get(self.depth / 64 - 1).copied().unwrap_or_default();
        }
    }
}

/// The index of the first byte at or after `i` that is not whitespace.
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
fn skip_string(bytes: &[u8], mut i: usize) -> Step<usize> {
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

/// The index of the first byte of `bytes` that ends a run of plain string
/// content: a quote, a backslash or a control character. Eight bytes at a
/// time (SWAR, as `serde_json` does it): the lowest flagged byte of a word
/// is exact, whatever borrows flag above it.
fn special(bytes: &[u8]) -> Option<usize> {
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
        let mut s = Scanner::new(json.as_bytes());
        s.skip_value()?;
        if s.at_end() {
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
    fn string_pieces_split_at_escapes_and_at_the_limit() {
        let mut s = Scanner::new(r#"héllo\nwo\ud83d\ude00rld""#.as_bytes());
        assert_eq!(s.string_piece(3), Ok(Piece::Run("hél", 3)));
        assert_eq!(s.string_piece(9), Ok(Piece::Run("lo", 2)));
        assert_eq!(s.string_piece(9), Ok(Piece::Char('\n')));
        assert_eq!(s.string_piece(9), Ok(Piece::Run("wo", 2)));
        assert_eq!(s.string_piece(9), Ok(Piece::Char('😀')));
        assert_eq!(s.string_piece(9), Ok(Piece::Run("rld", 3)));
        assert_eq!(s.string_piece(9), Ok(Piece::End));
    }

    #[test]
    fn string_pieces_must_be_text() {
        for bad in [&br#"\ud800""#[..], br#"\udc00""#, br#"\ud800\u0041""#, b"\xff\"", b"\xc3\""] {
            let mut s = Scanner::new(bad);
            assert_eq!(s.string_piece(9), Err(Halt::Invalid), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn brackets_remember_every_level() {
        let kinds: Vec<bool> = (0..1000).map(|i| (i * 7 + i / 3) % 5 < 2).collect();
        let mut open = Brackets::default();
        assert_eq!(open.top(), None);
        for (i, &object) in kinds.iter().enumerate() {
            open.push(object);
            assert_eq!(open.top(), Some(object), "pushed {i}");
        }
        for (i, &object) in kinds.iter().enumerate().rev() {
            assert_eq!(open.top(), Some(object), "popping {i}");
            open.pop();
        }
        assert_eq!(open.top(), None);
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

    #[test]
    fn a_run_never_ends_inside_a_character() {
        let mut s = Scanner::new("ab😀😀é\"".as_bytes());
        assert_eq!(s.string_piece(1), Ok(Piece::Run("a", 1)));
        assert_eq!(s.string_piece(2), Ok(Piece::Run("b😀", 2)));
        assert_eq!(s.string_piece(9), Ok(Piece::Run("😀é", 2)));
        assert_eq!(s.string_piece(9), Ok(Piece::End));
        let mut s = Scanner::new(b"\xf0\x9f\x98");
        assert_eq!(s.string_piece(9), Err(Halt::Invalid), "a body that ends inside a character");
    }

    #[test]
    fn keys_are_compared_unescaped() {
        let mut s = Scanner::new(br#"t\u0065xt" : 1"#);
        assert_eq!(s.key_in(&["type", "text"]), Ok(Some(1)));
        let mut s = Scanner::new(br#"tex":1"#);
        assert_eq!(s.key_in(&["type", "text"]), Ok(None));
        let mut s = Scanner::new(br#"texts":1"#);
        assert_eq!(s.key_in(&["type", "text"]), Ok(None));
        let mut s = Scanner::new(br#"":1"#);
        assert_eq!(s.key_in(&["type"]), Ok(None));
        for not_text in [&br#"t\ud800":1"#[..], b"t\xff\":1", b"\xff\":1", br#"\ud800":1"#] {
            let mut s = Scanner::new(not_text);
            assert_eq!(s.key_in(&["type"]), Ok(None), "{:?}", String::from_utf8_lossy(not_text));
            assert!(s.at_end() || s.peek() == Ok(b'1'));
        }
        for broken in [&br#"t\q":1"#[..], br#"typ\u00"#, b"type"] {
            let mut s = Scanner::new(broken);
            assert_eq!(s.key_in(&["type"]), Err(Halt::Invalid), "{:?}", String::from_utf8_lossy(broken));
        }
    }
}
