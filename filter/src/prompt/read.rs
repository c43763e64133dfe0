//! The few paths of an OpenAI request that routing reads, as a pull reader:
//! top-level object → `prompt` (completions) or `messages[].content` (chat)
//! → a string, or a list of strings and `{type, text}` parts. Every other
//! value is skipped with [`Scanner::skip_value`].
//!
//! Later keys win: a repeated key goes back to the [`Mark`] taken before the
//! value it replaces (a part reads its `text` once it has seen all its keys,
//! see [`part`]). These paths have a fixed depth, so nothing here recurses
//! either.

use super::scan::{Scanner, Step};
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
/// separators. (A bare string counts as the text itself.)
fn messages<'b>(s: &mut Scanner<'b>, text: &mut Text<'b>) -> Step {
    match s.peek()? {
        b'"' => string(s, text),
        b'[' => each_element(s, |s| match s.peek()? {
            b'{' => message(s, text),
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

/// A content part (an object): the string `text`, unless its `type` is a
/// string other than `"text"` (images, audio and other typed parts).
///
/// Clients send `type` first, but either order counts: the last `text`
/// string is skipped where it stands and read when the part ends, once its
/// `type` is known. (Read in place, a `text` that reaches the budget would
/// count even if a later `type` discards it.) That skip is the only place a
/// string is scanned twice, and the second read stops at the budget.
fn part<'b>(s: &mut Scanner<'b>, text: &mut Text<'b>) -> Step {
    let (mut other_type, mut text_at) = (false, None);
    each_member(s, &["type", "text"], |s, key| {
        match (key, s.peek()?) {
            (Some(0), b'"') => {
                s.eat(b'"')?;
                other_type = s.string_is_one_of(&["text"])?.is_none();
                return Ok(());
            }
            (Some(0), _) => other_type = false,
            (Some(_), b'"') => text_at = Some(s.position()),
            (Some(_), _) => text_at = None,
            (None, _) => {}
        }
        s.skip_value()
    })?;
    match text_at {
        Some(at) if !other_type => {
            let end = s.position();
            s.seek(at);
            string(s, text)?;
            s.seek(end);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A string value, as text.
fn string<'b>(s: &mut Scanner<'b>, text: &mut Text<'b>) -> Step {
    s.eat(b'"')?;
    text.read_string(s)
}

/// Calls `element` before each element of the array that starts here.
fn each_element<'b>(s: &mut Scanner<'b>, mut element: impl FnMut(&mut Scanner<'b>) -> Step) -> Step {
    s.eat(b'[')?;
    let mut first = true;
    while s.next_element(&mut first)? {
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
