//! Prompt text gathered in document order, up to a budget of characters.

use super::scan::{Halt, Piece, Scanner, Step};
use std::borrow::Cow;

/// Prompt text read so far. It stays borrowed from the body while it is a
/// single run without escapes; a second piece makes it owned. It never holds
/// more than `budget` characters: the piece that reaches the budget stops
/// the reading ([`Halt::Full`]).
pub(super) struct Text<'b> {
    text: Cow<'b, str>,
    chars: usize,
    budget: usize,
}

/// A length of [`Text`] to come back to, when a later key replaces or
/// discards what was read after it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mark {
    bytes: usize,
    chars: usize,
}

impl Mark {
    /// No text at all.
    pub(super) const START: Mark = Mark { bytes: 0, chars: 0 };
}

impl<'b> Text<'b> {
    /// No text yet, with room for `budget` characters.
    pub(super) fn new(budget: usize) -> Self {
        Self { text: Cow::Borrowed(""), chars: 0, budget }
    }

    /// The current length.
    pub(super) fn mark(&self) -> Mark {
        Mark { bytes: self.text.len(), chars: self.chars }
    }

    /// Drops what was read after `mark`.
    pub(super) fn back_to(&mut self, mark: Mark) {
        match &mut self.text {
            Cow::Borrowed(s) => *s = s.get(..mark.bytes).unwrap_or_default(),
            Cow::Owned(s) => s.truncate(mark.bytes),
        }
        self.chars = mark.chars;
    }

    /// The text, `None` when empty.
    pub(super) fn into_prompt(self) -> Option<Cow<'b, str>> {
        (!self.text.is_empty()).then_some(self.text)
    }

    /// Reads the string whose opening quote is consumed and appends its
    /// characters, up to the budget. Stops with [`Halt::Full`] once the
    /// budget is reached, with [`Halt::Invalid`] if the string is not text.
    pub(super) fn read_string(&mut self, scanner: &mut Scanner<'b>) -> Step {
        loop {
            let room = self.budget.saturating_sub(self.chars);
            if room == 0 {
                return Err(Halt::Full);
            }
            match scanner.string_piece(room)? {
                Piece::End => return Ok(()),
                Piece::Run(run, chars) => {
                    if self.text.is_empty() {
                        self.text = Cow::Borrowed(run);
                    } else {
                        self.text.to_mut().push_str(run);
                    }
                    self.chars += chars;
                }
                Piece::Ascii(run) if self.text.is_empty() => {
                    self.text = Cow::Borrowed(std::str::from_utf8(run).map_err(|_| Halt::Invalid)?);
                    self.chars += run.len();
                }
                Piece::Ascii(run) => {
                    let text = self.text.to_mut();
                    text.extend(run.iter().map(|&b| char::from(b)));
                    self.chars += run.len();
                }
                Piece::Char(c) => {
                    self.text.to_mut().push(c);
                    self.chars += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(budget: usize, strings: &[&'static str]) -> (Option<Cow<'static, str>>, Step) {
        let mut text = Text::new(budget);
        for s in strings {
            let mut scanner = Scanner::new(s.as_bytes(), usize::MAX);
            let step = text.read_string(&mut scanner);
            if step.is_err() {
                return (text.into_prompt(), step);
            }
        }
        (text.into_prompt(), Ok(()))
    }

    #[test]
    fn one_run_is_borrowed_and_more_are_owned() {
        assert!(matches!(read(99, &["ab\""]), (Some(Cow::Borrowed("ab")), Ok(()))));
        assert!(matches!(read(99, &["\"", "ab\""]), (Some(Cow::Borrowed("ab")), Ok(()))));
        assert!(matches!(read(99, &["ab\"", "cd\""]), (Some(Cow::Owned(s)), Ok(())) if s == "abcd"));
        assert!(matches!(read(99, &[r#"a\nb""#]), (Some(Cow::Owned(s)), Ok(())) if s == "a\nb"));
    }

    #[test]
    fn the_budget_counts_characters_across_strings() {
        assert!(matches!(read(3, &["héllo\""]), (Some(Cow::Borrowed("hél")), Err(Halt::Full))));
        assert!(matches!(read(3, &["h\"", r#"\n\n\n\n""#]), (Some(s), Err(Halt::Full)) if s == "h\n\n"));
        // Reaching the budget exactly at the end of a string stops there too.
        assert!(matches!(read(2, &["ab\"", "c\""]), (Some(Cow::Borrowed("ab")), Err(Halt::Full))));
    }

    #[test]
    fn going_back_to_a_mark_drops_the_text_after_it() {
        let mut text = Text::new(99);
        let mut scanner = Scanner::new(b"ab\"cd\"", usize::MAX);
        assert_eq!(text.read_string(&mut scanner), Ok(()));
        let mark = text.mark();
        assert_eq!(text.read_string(&mut scanner), Ok(()));
        text.back_to(mark);
        assert_eq!(text.into_prompt().as_deref(), Some("ab"));
    }
}
