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
    /// Open brackets of the value being skipped, one bit each (1: object).
    brackets: Vec<u64>,
}

impl<'b> Scanner<'b> {
    /// A scanner at the start of `bytes`.
    pub(super) fn new(bytes: &'b [u8]) -> Self {
        Self { bytes, pos: 0, brackets: Vec::new() }
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
    /// after it: the index of the key in `names`, if it is one of them.
    /// The key is compared unescaped and must be valid text.
    pub(super) fn key_in(&mut self, names: &[&str]) -> Step<Option<usize>> {
        let found = self.string_is_one_of(names)?;
        self.eat(b':')?;
        Ok(found)
    }

    /// Reads a string whose opening quote is consumed, whole, as text: the
    /// index in `names` of the name it equals, if any.
    pub(super) fn string_is_one_of(&mut self, names: &[&str]) -> Step<Option<usize>> {
        // Bit i: the string read so far is a prefix of names[i].
        let mut alive: u32 = (1u32 << names.len().min(31)) - 1;
        let mut at = 0;
        let mut utf8 = [0; 4];
        loop {
            let bytes = match self.string_piece(usize::MAX)? {
                Piece::End => break,
                Piece::Run(run, _) => run.as_bytes(),
                Piece::Char(c) => c.encode_utf8(&mut utf8).as_bytes(),
            };
            for (i, name) in names.iter().enumerate().take(31) {
                if name.as_bytes().get(at..at + bytes.len()) != Some(bytes) {
                    alive &= !(1 << i);
                }
            }
            at += bytes.len();
        }
        Ok(names.iter().enumerate().take(31).position(|(i, name)| alive & (1 << i) != 0 && name.len() == at))
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
                let mut chars = 0;
                let mut end = start;
                for &b in &self.bytes[start..] {
                    if b == b'"' || b == b'\\' || b < 0x20 {
                        break;
                    }
                    // A byte that is not a UTF-8 continuation starts a character.
                    if b & 0xc0 != 0x80 {
                        if chars == max_chars {
                            break;
                        }
                        chars += 1;
                    }
                    end += 1;
                }
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

    /// Skips the rest of a string whose opening quote is consumed, checking
    /// its syntax only.
    fn skip_string(&mut self) -> Step {
        loop {
            let rest = self.bytes.get(self.pos..).unwrap_or_default();
            let stop = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).ok_or(Halt::Invalid)?;
            self.pos += stop + 1;
            match rest[stop] {
                b'"' => return Ok(()),
                b'\\' => {
                    let b = self.bytes.get(self.pos).copied().ok_or(Halt::Invalid)?;
                    self.pos += 1;
                    match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            self.hex4()?;
                        }
                        _ => return Err(Halt::Invalid),
                    }
                }
                _ => return Err(Halt::Invalid),
            }
        }
    }

    /// Skips a number (JSON grammar, any magnitude) starting at its first byte.
    fn skip_number(&mut self) -> Step {
        let digits = |s: &mut Self| {
            let n = s.bytes[s.pos..].iter().take_while(|b| b.is_ascii_digit()).count();
            s.pos += n;
            n
        };
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(Halt::Invalid),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(Halt::Invalid);
            }
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.bytes.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(Halt::Invalid);
            }
        }
        Ok(())
    }

    /// Skips `true`, `false` or `null` starting at its first byte.
    fn skip_literal(&mut self) -> Step {
        for word in [&b"true"[..], b"false", b"null"] {
            if self.bytes[self.pos..].starts_with(word) {
                self.pos += word.len();
                return Ok(());
            }
        }
        Err(Halt::Invalid)
    }

    /// Skips the next value, checking its syntax only. Iterative: the depth
    /// of nesting costs one bit per level, never stack.
    pub(super) fn skip_value(&mut self) -> Step {
        let mut depth = 0usize;
        loop {
            // A value is expected here.
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    self.pos += 1;
                    let object = open == b'{';
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.pos += 1;
                    } else {
                        self.push_bracket(depth, object);
                        depth += 1;
                        if object {
                            self.eat(b'"')?;
                            self.skip_string()?;
                            self.eat(b':')?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.pos += 1;
                    self.skip_string()?;
                }
                b'-' | b'0'..=b'9' => self.skip_number()?,
                b't' | b'f' | b'n' => self.skip_literal()?,
                _ => return Err(Halt::Invalid),
            }
            // A value ended: close brackets until another value is expected.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let object = self.bracket(depth - 1);
                match (self.peek()?, object) {
                    (b',', _) => {
                        self.pos += 1;
                        if object {
                            self.eat(b'"')?;
                            self.skip_string()?;
                            self.eat(b':')?;
                        }
                        break;
                    }
                    (b'}', true) | (b']', false) => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    _ => return Err(Halt::Invalid),
                }
            }
        }
    }

    /// Records the kind of the bracket opened at `depth`.
    fn push_bracket(&mut self, depth: usize, object: bool) {
        let (word, bit) = (depth / 64, depth % 64);
        if word == self.brackets.len() {
            self.brackets.push(0);
        }
        if let Some(w) = self.brackets.get_mut(word) {
            *w = (*w & !(1 << bit)) | (u64::from(object) << bit);
        }
    }

    /// True when the bracket open at `depth` is an object's.
    fn bracket(&self, depth: usize) -> bool {
        self.brackets.get(depth / 64).is_some_and(|w| w >> (depth % 64) & 1 == 1)
    }
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
    fn keys_are_compared_unescaped() {
        let mut s = Scanner::new(br#"t\u0065xt" : 1"#);
        assert_eq!(s.key_in(&["type", "text"]), Ok(Some(1)));
        let mut s = Scanner::new(br#"tex":1"#);
        assert_eq!(s.key_in(&["type", "text"]), Ok(None));
        let mut s = Scanner::new(br#"texts":1"#);
        assert_eq!(s.key_in(&["type", "text"]), Ok(None));
        let mut s = Scanner::new(br#"":1"#);
        assert_eq!(s.key_in(&["type"]), Ok(None));
    }
}
