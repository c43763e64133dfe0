//! Unit tests of prompt extraction.

use super::*;

const COMPLETIONS: &str = "/v1/completions";
const CHAT: &str = "/v1/chat/completions";
/// A budget no prompt here reaches.
const MAX: usize = usize::MAX;

#[test]
fn completion_string_prompt() {
    let body = br#"{"model":"m","prompt":"Hello world","max_tokens":5}"#;
    assert_eq!(extract_prompt(COMPLETIONS, body, MAX).as_deref(), Some("Hello world"));
}

#[test]
fn completion_list_prompt_is_joined() {
    let body = br#"{"prompt":["Hello ","world", 7]}"#;
    assert_eq!(extract_prompt(COMPLETIONS, body, MAX).as_deref(), Some("Hello world"));
}

#[test]
fn token_id_prompt_has_no_text() {
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":[1,2,3]}"#, MAX), None);
}

#[test]
fn chat_concatenates_string_and_text_parts_in_order() {
    let body = br#"{"messages":[
        {"role":"system","content":"You are terse."},
        {"role":"user","content":[
            {"type":"text","text":"Look at "},
            {"type":"image_url","image_url":{"url":"http://x"}},
            {"type":"text","text":"this."}]},
        {"role":"assistant","content":null},
        {"role":"user","content":"Thanks"}]}"#;
    assert_eq!(extract_prompt(CHAT, body, MAX).as_deref(), Some("You are terse.Look at this.Thanks"));
}

#[test]
fn image_only_chat_has_no_prompt() {
    let body = br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]}"#;
    assert_eq!(extract_prompt(CHAT, body, MAX), None);
}

#[test]
fn empty_chat_has_no_prompt() {
    assert_eq!(extract_prompt(CHAT, br#"{"messages":[]}"#, MAX), None);
}

#[test]
fn path_decides_the_field() {
    let body = br#"{"prompt":"p","messages":[{"role":"user","content":"m"}]}"#;
    assert_eq!(extract_prompt(COMPLETIONS, body, MAX).as_deref(), Some("p"));
    assert_eq!(extract_prompt(CHAT, body, MAX).as_deref(), Some("m"));
    assert_eq!(extract_prompt("/v1/embeddings", body, MAX), None);
    assert_eq!(extract_prompt("/v1/completions?x=1", body, MAX).as_deref(), Some("p"));
}

#[test]
fn malformed_bodies_have_no_prompt() {
    assert_eq!(extract_prompt(COMPLETIONS, b"not json", MAX), None);
    assert_eq!(extract_prompt(COMPLETIONS, &[0xff, 0xfe, 0x00], MAX), None);
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt": 42}"#, MAX), None);
    assert_eq!(extract_prompt(COMPLETIONS, b"", MAX), None);
    assert_eq!(extract_prompt(CHAT, br#"{"messages": {"a": 1}}"#, MAX), None);
}

#[test]
fn unicode_prompt_survives() {
    let body = r#"{"prompt":"héllo wörld ✓"}"#.as_bytes();
    assert_eq!(extract_prompt(COMPLETIONS, body, MAX).as_deref(), Some("héllo wörld ✓"));
}

#[test]
fn an_unescaped_string_prompt_is_borrowed_from_the_body() {
    let body = br#"{"model":"m","prompt":"Hello world"}"#;
    assert!(matches!(extract_prompt(COMPLETIONS, body, MAX), Some(Cow::Borrowed("Hello world"))));
    let chat = br#"{"messages":[{"role":"user","content":"Hi"}]}"#;
    assert!(matches!(extract_prompt(CHAT, chat, MAX), Some(Cow::Borrowed("Hi"))));
    let escaped = br#"{"prompt":"a\nb"}"#;
    assert!(matches!(extract_prompt(COMPLETIONS, escaped, MAX), Some(Cow::Owned(ref s)) if s == "a\nb"));
}

#[test]
fn repeated_keys_count_with_their_last_value() {
    let body = br#"{"prompt":"first","prompt":"second"}"#;
    assert_eq!(extract_prompt(COMPLETIONS, body, MAX).as_deref(), Some("second"));
    let parts = br#"{"messages":[{"content":[{"type":"text","type":"image_url","text":"x"}]}]}"#;
    assert_eq!(extract_prompt(CHAT, parts, MAX), None);
}

#[test]
fn escaped_keys_are_compared_unescaped() {
    let body = br#"{"pr\u006fmpt":"p"}"#;
    assert_eq!(extract_prompt(COMPLETIONS, body, MAX).as_deref(), Some("p"));
}

#[test]
fn only_an_object_carries_a_prompt() {
    assert_eq!(extract_prompt(COMPLETIONS, br#"["a prompt"]"#, MAX), None);
    assert_eq!(extract_prompt(COMPLETIONS, br#""a prompt""#, MAX), None);
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":"a"} {"prompt":"b"}"#, MAX), None);
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":"a""#, MAX), None);
}

#[test]
fn skipped_fields_are_checked_for_syntax_only() {
    // A `Value` refuses each of these for a field routing never reads.
    let deep = format!(r#"{{"x":{}1{},"prompt":"p"}}"#, "[".repeat(200), "]".repeat(200));
    assert_eq!(extract_prompt(COMPLETIONS, deep.as_bytes(), MAX).as_deref(), Some("p"));
    let surrogate = br#"{"x":"\ud800","prompt":"p"}"#;
    assert_eq!(extract_prompt(COMPLETIONS, surrogate, MAX).as_deref(), Some("p"));
    let huge_number = br#"{"x":1e400,"prompt":"p"}"#;
    assert_eq!(extract_prompt(COMPLETIONS, huge_number, MAX).as_deref(), Some("p"));
    let not_utf8 = b"{\"x\":\"\xff\",\"prompt\":\"p\"}";
    assert_eq!(extract_prompt(COMPLETIONS, not_utf8, MAX).as_deref(), Some("p"));
    // Broken syntax anywhere still means no prompt.
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"x":[1,,2],"prompt":"p"}"#, MAX), None);
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"x":"a\qb","prompt":"p"}"#, MAX), None);
    // And the prompt itself must be valid text.
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":"\ud800"}"#, MAX), None);
    assert_eq!(extract_prompt(COMPLETIONS, b"{\"prompt\":\"\xff\"}", MAX), None);
}

#[test]
fn a_two_mib_prompt_among_other_fields_is_read_whole() {
    let prompt = "token ".repeat(2 << 20 >> 3);
    let tools = r#"{"type":"function","function":{"name":"f","parameters":{"a":[1,2.5,true,null]}}}"#;
    let body = format!(
        r#"{{"model":"m","tools":[{tools},{tools}],"messages":[{{"role":"system","content":"sys"}},{{"role":"user","content":[{{"type":"text","text":"{prompt}"}}]}}],"max_tokens":8}}"#
    );
    let text = extract_prompt(CHAT, body.as_bytes(), MAX);
    assert_eq!(text.as_deref().map(str::len), Some(3 + prompt.len()));
    assert!(text.is_some_and(|t| t.starts_with("systoken ") && t.ends_with("token ")));
}

#[test]
fn reading_stops_at_the_budget() {
    let body = br#"{"prompt":"Hello world","max_tokens":5}"#;
    assert!(matches!(extract_prompt(COMPLETIONS, body, 5), Some(Cow::Borrowed("Hello"))));
    let escaped = br#"{"prompt":"\n\n\n\n\n\n\n\n"}"#;
    assert_eq!(extract_prompt(COMPLETIONS, escaped, 3).as_deref(), Some("\n\n\n"));
    let chat = br#"{"messages":[{"content":"ab"},{"content":[{"type":"text","text":"cd"},"ef"]}]}"#;
    assert_eq!(extract_prompt(CHAT, chat, 3).as_deref(), Some("abc"));
    assert_eq!(extract_prompt(CHAT, chat, 6).as_deref(), Some("abcdef"));
    assert_eq!(extract_prompt(CHAT, chat, 7).as_deref(), Some("abcdef"));
    let unicode = r#"{"prompt":"h\u00e9llo ✓✓"}"#.as_bytes();
    assert_eq!(extract_prompt(COMPLETIONS, unicode, 7).as_deref(), Some("héllo ✓"));
}

#[test]
fn nothing_after_the_budget_is_read() {
    // What lies after the point where the budget is reached is not seen:
    // broken syntax, an invalid string, or a key that would replace the text.
    let cases: &[(&str, &[u8])] = &[
        (COMPLETIONS, br#"{"prompt":"abcdef", oops"#),
        (COMPLETIONS, br#"{"prompt":"abc\ud800"}"#),
        (COMPLETIONS, br#"{"prompt":"abcdef","prompt":"x"}"#),
        (CHAT, br#"{"messages":[{"content":"abc","content":"x"}]}"#),
        (CHAT, br#"{"messages":[{"content":"abc"}],"messages":[]}"#),
        (COMPLETIONS, br#"{"prompt":"abc"} trailing"#),
    ];
    for (path, body) in cases {
        assert_eq!(
            extract_prompt(path, body, 3).as_deref(),
            Some("abc"),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_ne!(
            extract_prompt(path, body, MAX).as_deref(),
            Some("abc"),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn a_part_is_read_whole_whatever_the_order_of_its_keys() {
    let late_type = br#"{"messages":[{"content":[{"text":"abcd","type":"image_url"},{"text":"xyz"}]}]}"#;
    assert_eq!(extract_prompt(CHAT, late_type, 3).as_deref(), Some("xyz"));
    let retyped = br#"{"messages":[{"content":[{"type":"image","text":"abcd","type":"text"}]}]}"#;
    assert_eq!(extract_prompt(CHAT, retyped, 3).as_deref(), Some("abc"));
    let repeated = br#"{"messages":[{"content":[{"text":"abcd","text":"xy"},"z"]}]}"#;
    assert_eq!(extract_prompt(CHAT, repeated, 3).as_deref(), Some("xyz"));
    let untyped =
        br#"{"messages":[{"content":[{"type":"text","text":"ab\u00e9\ud83d\ude00", "type":null}]}]}"#;
    assert_eq!(extract_prompt(CHAT, untyped, 4).as_deref(), Some("abé😀"));
    let broken_late = br#"{"messages":[{"content":[{"type":"image","text":"\ud800","type":"text"}]}]}"#;
    assert_eq!(extract_prompt(CHAT, broken_late, 3), None);
}

#[test]
fn a_zero_budget_reads_no_prompt() {
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":"abc"}"#, 0), None);
}

#[test]
fn syntax_before_the_budget_is_still_checked() {
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"x":[1,,2],"prompt":"abcdef"}"#, 3), None);
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":"\ud800abcdef"}"#, 3), None);
    assert_eq!(extract_prompt(COMPLETIONS, br#"{"prompt":"ab\qcdef"}"#, 3), None);
}

#[test]
fn nesting_up_to_the_bound_is_skipped_and_deeper_ends_reading() {
    for (depth, deep_enough) in [(MAX_NESTING, false), (MAX_NESTING + 1, true)] {
        let skipped = format!(r#"{{"x":{}1{},"prompt":"p"}}"#, "[".repeat(depth), "]".repeat(depth));
        let want = if deep_enough { None } else { Some("p") };
        assert_eq!(extract_prompt(COMPLETIONS, skipped.as_bytes(), MAX).as_deref(), want, "{depth}");
        // Objects count as arrays do (the message's own level is read, not
        // skipped); the text read before the deep value stays.
        let deep_message = format!("{}1{}", r#"{"a":"#.repeat(depth + 1), "}".repeat(depth + 1));
        let chat = format!(r#"{{"messages":[{{"content":"a"}},{deep_message},{{"content":"m"}}]}}"#);
        let want = if deep_enough { Some("a") } else { Some("am") };
        assert_eq!(extract_prompt(CHAT, chat.as_bytes(), MAX).as_deref(), want, "{depth}");
        let deep_part = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let chat = format!(r#"{{"messages":[{{"content":["a",{deep_part},"m"]}}]}}"#);
        assert_eq!(extract_prompt(CHAT, chat.as_bytes(), MAX).as_deref(), want, "{depth}");
    }
    // A million levels cost only the first MAX_NESTING + 1.
    let depth = 1 << 20;
    let skipped = format!(r#"{{"x":{}1{},"prompt":"p"}}"#, "[".repeat(depth), "]".repeat(depth));
    assert_eq!(extract_prompt(COMPLETIONS, skipped.as_bytes(), MAX), None);
    let mismatched = format!(r#"{{"x":{}1{},"prompt":"p"}}"#, "[".repeat(100), "}".repeat(100));
    assert_eq!(extract_prompt(COMPLETIONS, mismatched.as_bytes(), MAX), None);
}

#[test]
fn bare_string_messages_and_content_parts_are_read_as_ray_reads_them() {
    let bare = br#"{"messages":["You are terse. ",{"role":"user","content":"Hi"}]}"#;
    assert_eq!(extract_prompt(CHAT, bare, MAX).as_deref(), Some("You are terse. Hi"));
    // A part's string `content` stands in for a missing or non-string `text`...
    let parts = br#"{"messages":[{"content":[{"content":"ab"},{"text":7,"content":"cd"},"ef"]}]}"#;
    assert_eq!(extract_prompt(CHAT, parts, MAX).as_deref(), Some("abcdef"));
    // ...but a string `text` wins whatever the order, and a typed part drops both.
    let both =
        br#"{"messages":[{"content":[{"content":"no","text":"yes"},{"type":"image","content":"no"}]}]}"#;
    assert_eq!(extract_prompt(CHAT, both, MAX).as_deref(), Some("yes"));
    // Within the budget too.
    assert_eq!(extract_prompt(CHAT, parts, 3).as_deref(), Some("abc"));
}

#[test]
fn reading_stops_after_the_most_elements_a_body_may_have() {
    use super::MAX_PROMPT_ELEMENTS;
    // One message whose content has more parts than allowed, each a
    // one-character text part followed by an image: the budget of
    // characters is never reached, the allowance of elements is.
    let parts = MAX_PROMPT_ELEMENTS + 1_000;
    let mut body = String::from(r#"{"messages":[{"role":"user","content":["#);
    for i in 0..parts {
        if i > 0 {
            body.push(',');
        }
        let c = char::from(b'a' + (i % 26) as u8);
        body.push_str(&format!(r#"{{"type":"text","text":"{c}"}}"#));
    }
    body.push_str("]}]}");
    let prompt = extract_prompt("/v1/chat/completions", body.as_bytes(), 1 << 20).unwrap();
    // The message counts as one element, its parts as the rest.
    let expected: String = (0..MAX_PROMPT_ELEMENTS - 1).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    assert_eq!(prompt, expected);
    // Under the allowance, every part is read.
    let small = r#"{"messages":[{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#;
    assert_eq!(extract_prompt("/v1/chat/completions", small.as_bytes(), 100).as_deref(), Some("ab"));
    // Completions' prompt lists count too.
    let list: Vec<String> = (0..MAX_PROMPT_ELEMENTS + 5).map(|_| "x".to_owned()).collect();
    let body = serde_json::json!({ "prompt": list }).to_string();
    let prompt = extract_prompt("/v1/completions", body.as_bytes(), 1 << 20).unwrap();
    assert_eq!(prompt.len(), MAX_PROMPT_ELEMENTS);
}
