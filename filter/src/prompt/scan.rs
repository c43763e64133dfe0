//! A cursor over a JSON body: tokens, object and array steps, and the
//! string decoder (pieces of text, keys compared unescaped). Values routing
//! does not read are skipped by `skip`.

use super::skip::{ascii_run, skip_string, skip_value, special};

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
    /// A short run of printable ASCII (so valid text, one character a byte),
    /// borrowed from the body, not yet seen as a `str`.
    Ascii(&'b [u8]),
    /// The character one escape (or a surrogate pair of them) stands for.
    Char(char),
    /// The closing quote: the string is over.
    End,
}

/// A position in a JSON body.
pub(super) struct Scanner<'b> {
    bytes: &'b [u8],
    pos: usize,
    /// Elements of the lists routing reads still allowed (see
    /// [`MAX_PROMPT_ELEMENTS`](super::MAX_PROMPT_ELEMENTS)).
    elements_left: usize,
}

impl<'b> Scanner<'b> {
    /// A scanner at the start of `bytes`.
    pub(super) fn new(bytes: &'b [u8], max_elements: usize) -> Self {
        Self { bytes, pos: 0, elements_left: max_elements }
    }

    /// Counts one element of a list routing reads (a message, a content
    /// part, a prompt string); past the allowance reading stops as if the
    /// text were full, and what was read is the prompt.
    pub(super) fn count_element(&mut self) -> Step {
        match self.elements_left.checked_sub(1) {
            Some(left) => {
                self.elements_left = left;
                Ok(())
            }
            None => Err(Halt::Full),
        }
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
        let end = ascii_run(rest).or_else(|| special(rest));
        if let Some(end) = end.filter(|&end| rest[end] == b'"') {
            self.pos += end + 1;
            let raw = &rest[..end];
            // Compared byte by byte: names are short, a `memcmp` call costs more.
            let equal = |name: &&str| name.len() == end && name.bytes().zip(raw).all(|(a, &b)| a == b);
            return Ok(names.iter().position(equal));
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
                Ok(Piece::Ascii(run)) => run,
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
                // Short ASCII strings, the most common, in one step.
                if let Some(end) = ascii_run(&self.bytes[start..]).filter(|&end| end <= max_chars) {
                    self.pos = start + end;
                    return Ok(Piece::Ascii(&self.bytes[start..start + end]));
                }
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

    /// Skips the next value, checking its syntax only (see `skip`).
    pub(super) fn skip_value(&mut self) -> Step {
        self.pos = skip_value(self.bytes, self.pos)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_pieces_split_at_escapes_and_at_the_limit() {
        let mut s = Scanner::new(r#"héllo\nwo\ud83d\ude00rld""#.as_bytes(), usize::MAX);
        assert_eq!(s.string_piece(3), Ok(Piece::Run("hél", 3)));
        assert_eq!(s.string_piece(9), Ok(Piece::Ascii(b"lo")), "ended by an escape");
        assert_eq!(s.string_piece(9), Ok(Piece::Char('\n')));
        assert_eq!(s.string_piece(9), Ok(Piece::Ascii(b"wo")));
        assert_eq!(s.string_piece(9), Ok(Piece::Char('😀')));
        assert_eq!(s.string_piece(9), Ok(Piece::Ascii(b"rld")));
        assert_eq!(s.string_piece(9), Ok(Piece::End));
    }

    #[test]
    fn string_pieces_must_be_text() {
        for bad in [&br#"\ud800""#[..], br#"\udc00""#, br#"\ud800\u0041""#, b"\xff\"", b"\xc3\""] {
            let mut s = Scanner::new(bad, usize::MAX);
            assert_eq!(s.string_piece(9), Err(Halt::Invalid), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_run_never_ends_inside_a_character() {
        let mut s = Scanner::new("ab😀😀é\"".as_bytes(), usize::MAX);
        assert_eq!(s.string_piece(1), Ok(Piece::Run("a", 1)));
        assert_eq!(s.string_piece(2), Ok(Piece::Run("b😀", 2)));
        assert_eq!(s.string_piece(9), Ok(Piece::Run("😀é", 2)));
        assert_eq!(s.string_piece(9), Ok(Piece::End));
        let mut s = Scanner::new(b"\xf0\x9f\x98", usize::MAX);
        assert_eq!(s.string_piece(9), Err(Halt::Invalid), "a body that ends inside a character");
    }

    #[test]
    fn keys_are_compared_unescaped() {
        let mut s = Scanner::new(br#"t\u0065xt" : 1"#, usize::MAX);
        assert_eq!(s.key_in(&["type", "text"]), Ok(Some(1)));
        let mut s = Scanner::new(br#"tex":1"#, usize::MAX);
        assert_eq!(s.key_in(&["type", "text"]), Ok(None));
        let mut s = Scanner::new(br#"texts":1"#, usize::MAX);
        assert_eq!(s.key_in(&["type", "text"]), Ok(None));
        let mut s = Scanner::new(br#"":1"#, usize::MAX);
        assert_eq!(s.key_in(&["type"]), Ok(None));
        for not_text in [&br#"t\ud800":1"#[..], b"t\xff\":1", b"\xff\":1", br#"\ud800":1"#] {
            let mut s = Scanner::new(not_text, usize::MAX);
            assert_eq!(s.key_in(&["type"]), Ok(None), "{:?}", String::from_utf8_lossy(not_text));
            assert!(s.at_end() || s.peek() == Ok(b'1'));
        }
        for broken in [&br#"t\q":1"#[..], br#"typ\u00"#, b"type"] {
            let mut s = Scanner::new(broken, usize::MAX);
            assert_eq!(s.key_in(&["type"]), Err(Halt::Invalid), "{:?}", String::from_utf8_lossy(broken));
        }
    }
}
