//! The few paths of an OpenAI request that routing reads, as a pull reader:
//! top-level object → `prompt` (completions) or `messages[].content` (chat)
//! → a string, or a list of strings and `{type, text}` parts (or `{content}`
//! parts, whose string `content` stands in for a missing `text`, as Ray's
//! prefix router reads them); a bare string among the messages is its own
//! text. Every other
//! value is skipped with [`Scanner::skip_value`].
//!
//! Later keys win: a repeated key goes back to the [`Mark`] taken before the
//! value it replaces, and a part's `type` can drop its `text` whatever
//! their order (see [`part`]). These paths have a fixed depth, so nothing here recurses
//! either.

use super::scan::{Halt, Scanner, Step};
use super::text::{Mark, Text};
use super::Endpoint;

/// Reads the request object at the start of the body into `text`.
pub(super) fn request<'b>(s: &mut Scanner<'b>, text: &mut Text<'b>, endpoint: Endpoint) -> Step {
    let field = match endpoint {
        Endpoint::Completions => "prompt",
        Endpoint::ChatCompletions => "messages",
    };
    s.eat(b'{')?;
    let mut first = true;
    while s.next_member(&mut first)? {
        if s.key_in(&[field])?.is_none() {
            s.skip_value()?;
            continue;
        }
        text.back_to(Mark::START);
        match endpoint {
            Endpoint::Completions => prompt(s, text)?,
            Endpoint::ChatCompletions => messages(s, text)?,
        }
    }
    Ok(())
}

/// `prompt` of a completion: a string, or a list whose strings are joined
/// without separators. Token ids and other values carry no text.
fn prompt<'b>(s: &mut Scanner<'b>, text: &mut Text<'b>) -> Step {
    match s.peek()? {
        b'"' => string(s, text),
        b'[' => each_element(s, |s| match s.peek()? {
            b'"' => string(s, text),
            _ => s.skip_value(),
        }),
        _ => s.skip_value(),
    }
}

/// `messages` of a chat: the content of every message, in order and without
/// separators. (A bare string, as the list or one of its elements, counts as
/// the text itself.)
fn messages<'b>(s: &mut Scanner<'b>, text: &mut Text<'b>) -> Step {
    match s.peek()? {
        b'"' => string(s, text),
        b'[' => each_element(s, |s| match s.peek()? {
            b'{' => message(s, text),
            b'"' => string(s, text),
            _ => s.skip_value(),
        }),
        _ => s.skip_value(),
    }
}

/// One chat message (an object): its `content`, the last one if repeated.
fn message<'b>(s: &mut Scanner<'b>, text: &mut Text<'b>) -> Step {
    let start = text.mark();
    each_member(s, &["content"], |s, key| match key {
        Some(_) => {
            text.back_to(start);
            content(s, text)
        }
        None => s.skip_value(),
    })
}

/// A message's `content`: a string, or a list of parts whose text is joined.
fn content<'b>(s: &mut Scanner<'b>, text: &mut Text<'b>) -> Step {
    match s.peek()? {
        b'"' => string(s, text),
        b'[' => each_element(s, |s| match s.peek()? {
            b'"' => string(s, text),
            b'{' => part(s, text),
            _ => s.skip_value(),
        }),
        _ => s.skip_value(),
    }
}

/// A content part (an object): the string `text` (else a string `content`),
/// unless its `type` is a string other than `"text"` (images, audio and
/// other typed parts).
///
/// `text` is read where it stands and dropped at the end of the part if its
/// `type` says so. Either order of the keys counts: if the budget is
/// reached inside a part's `text`, the part is read on without it and its
/// last `text` read again once the part ends, when its `type` is known. So
/// only a part's text that reaches the budget is scanned twice, and no text
/// is decoded past the budget.
fn part<'b>(s: &mut Scanner<'b>, text: &mut Text<'b>) -> Step {
    let start = text.mark();
    let (mut other_type, mut text_at, mut full) = (false, None, false);
    // Where the last string `content` starts: read at the end, only if no
    // string `text` came.
    let mut content_at = None;
    each_member(s, &["type", "text", "content"], |s, key| {
        match (key, s.peek()?) {
            (Some(2), b'"') => content_at = Some(s.position()),
            (Some(2), _) => content_at = None,
            (Some(0), b'"') => {
                s.eat(b'"')?;
                other_type = s.string_is_one_of(&["text"])?.is_none();
                return Ok(());
            }
            (Some(0), _) => other_type = false,
            (Some(_), b'"') => {
                text.back_to(start);
                let at = s.position();
                text_at = Some(at);
                if !full {
                    match string(s, text) {
                        Err(Halt::Full) => {
                            // Skip it for now: a later `type` may drop it.
                            text.back_to(start);
                            (full, text_at) = (true, Some(at));
                            s.seek(at);
                        }
                        done => return done,
                    }
                }
            }
            (Some(_), _) => {
                text.back_to(start);
                text_at = None;
            }
            (None, _) => {}
        }
        s.skip_value()
    })?;
    let reread = match (other_type, text_at) {
        (true, _) => {
            text.back_to(start);
            None
        }
        (false, Some(at)) => full.then_some(at),
        (false, None) => content_at,
    };
    if let Some(at) = reread {
        let end = s.position();
        s.seek(at);
        string(s, text)?;
        s.seek(end);
    }
    Ok(())
}

/// A string value, as text.
fn string<'b>(s: &mut Scanner<'b>, text: &mut Text<'b>) -> Step {
    s.eat(b'"')?;
    text.read_string(s)
}

/// Calls `element` before each element of the array that starts here,
/// each one counted against the scanner's allowance of elements.
fn each_element<'b>(s: &mut Scanner<'b>, mut element: impl FnMut(&mut Scanner<'b>) -> Step) -> Step {
    s.eat(b'[')?;
    let mut first = true;
    while s.next_element(&mut first)? {
        s.count_element()?;
        element(s)?;
    }
    Ok(())
}

/// Calls `member` with the index of each key of the object that starts
/// here in `names` (`None` for other keys), before its value.
fn each_member<'b>(
    s: &mut Scanner<'b>,
    names: &[&str],
    mut member: impl FnMut(&mut Scanner<'b>, Option<usize>) -> Step,
) -> Step {
    s.eat(b'{')?;
    let mut first = true;
    while s.next_member(&mut first)? {
        let key = s.key_in(names)?;
        member(s, key)?;
    }
    Ok(())
}
