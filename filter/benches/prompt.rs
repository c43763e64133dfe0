//! Prompt extraction: the bounded scanner (`prefixgate_filter::prompt`)
//! against the readers before it, in the same process: typed `serde_json`
//! visitors (`serde`, `tests/support/serde_prompt.rs`) and a whole
//! `serde_json::Value` (`value`).
//!
//! `extract_prompt/*`: 8 KiB and 2 MiB bodies of three shapes: a completion
//! whose prompt is one string of plain text, the same with newlines and
//! quotes (JSON escapes) in it, and a multi-turn chat with escapes (many
//! messages, list content, tool definitions and sampling fields around
//! them). The scanner runs with the default budget (`scanner`, 131,072
//! characters) and with none (`scanner_unbounded`, the same work as the
//! others).
//!
//! `adversarial_4MiB/*`: every shape of the adversarial corpus
//! (`prefixgate-adversarial`) at 4 MiB, the scanner with the default
//! budget against the `serde` reader.

#[path = "../tests/support/serde_prompt.rs"]
mod serde_prompt;
#[path = "../tests/support/value_prompt.rs"]
mod value_prompt;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prefixgate_adversarial as adversarial;
use prefixgate_filter::prompt::{extract_prompt, MAX_NESTING, MAX_PROMPT_ELEMENTS};
use std::hint::black_box;
use std::time::Duration;

/// The default `max_prompt_chars`.
const BUDGET: usize = 131_072;

const SIZES: [(&str, usize); 2] = [("8KiB", 8 << 10), ("2MiB", 2 << 20)];

/// Words of ordinary text, as JSON string content; with `escapes`, a quote
/// and a newline now and then.
fn words(seed: u64, chars: usize, escapes: bool) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let all =
        ["the ", "cache ", "prefix ", "router ", "token ", "replica ", "block ", "load ", r#"\"q\" "#, r"\n"];
    let words = if escapes { &all[..] } else { &all[..8] };
    let mut s = String::with_capacity(chars + 8);
    while s.len() < chars {
        s.push_str(words[rng.usize(..words.len())]);
    }
    s
}

/// `{"model", "prompt": "<one string>", sampling fields}` of about `size`
/// bytes, plain text (the shape of the end-to-end bad-input test).
fn completion(size: usize) -> String {
    completion_text(size, false)
}

/// The same with escapes in the prompt.
fn completion_escaped(size: usize) -> String {
    completion_text(size, true)
}

fn completion_text(size: usize, escapes: bool) -> String {
    let prompt = words(1, size - 120, escapes);
    format!(
        r#"{{"model":"Qwen/Qwen2.5-1.5B-Instruct","prompt":"{prompt}","max_tokens":128,"temperature":0.7,"stream":true}}"#
    )
}

/// A chat of about `size` bytes: system prompt, tool definitions, then turns
/// of about 1 KiB alternating user (list content) and assistant (string).
fn chat(size: usize) -> String {
    let tool = r#"{"type":"function","function":{"name":"lookup","description":"Look a word up.","parameters":{"type":"object","properties":{"word":{"type":"string"},"limit":{"type":"integer","minimum":1}},"required":["word"]}}}"#;
    let mut body = format!(
        r#"{{"model":"Qwen/Qwen2.5-1.5B-Instruct","tools":[{tool},{tool}],"messages":[{{"role":"system","content":"{}"}}"#,
        words(2, 512, true)
    );
    let mut turn = 0u64;
    while body.len() < size - 1_200 {
        let text = words(3 + turn, 900, true);
        if turn.is_multiple_of(2) {
            body.push_str(&format!(
                r#",{{"role":"user","content":[{{"type":"text","text":"{text}"}},{{"type":"image_url","image_url":{{"url":"https://example.com/{turn}.png","detail":"low"}}}}]}}"#
            ));
        } else {
            body.push_str(&format!(r#",{{"role":"assistant","content":"{text}","name":"a{turn}"}}"#));
        }
        turn += 1;
    }
    body.push_str(r#"],"max_tokens":128,"temperature":0.7,"top_p":0.95,"stream":true,"stream_options":{"include_usage":true}}"#);
    body
}

fn extraction(c: &mut Criterion) {
    for (shape, path, make) in [
        ("completion", "/v1/completions", completion as fn(usize) -> String),
        ("completion_escaped", "/v1/completions", completion_escaped),
        ("chat", "/v1/chat/completions", chat),
    ] {
        let mut group = c.benchmark_group(format!("extract_prompt/{shape}"));
        for (label, size) in SIZES {
            let body = make(size);
            let bytes = body.as_bytes();
            let whole = extract_prompt(path, bytes, usize::MAX);
            assert!(whole.is_some(), "{shape} {label}: no prompt");
            assert_eq!(
                whole.as_deref(),
                value_prompt::extract_prompt(path, bytes).as_deref(),
                "{shape} {label}"
            );
            assert_eq!(whole, serde_prompt::extract_prompt(path, bytes), "{shape} {label}");
            let head: Option<String> = whole.map(|w| w.chars().take(BUDGET).collect());
            assert_eq!(extract_prompt(path, bytes, BUDGET).as_deref(), head.as_deref(), "{shape} {label}");
            group.throughput(Throughput::Bytes(body.len() as u64));
            if size > 1 << 20 {
                group.sample_size(30);
            }
            group.bench_with_input(BenchmarkId::new("scanner", label), &body, |b, body| {
                b.iter(|| extract_prompt(path, black_box(body.as_bytes()), BUDGET).map(|p| p.len()))
            });
            group.bench_with_input(BenchmarkId::new("scanner_unbounded", label), &body, |b, body| {
                b.iter(|| extract_prompt(path, black_box(body.as_bytes()), usize::MAX).map(|p| p.len()))
            });
            group.bench_with_input(BenchmarkId::new("serde", label), &body, |b, body| {
                b.iter(|| serde_prompt::extract_prompt(path, black_box(body.as_bytes())).map(|p| p.len()))
            });
            group.bench_with_input(BenchmarkId::new("value", label), &body, |b, body| {
                b.iter(|| value_prompt::extract_prompt(path, black_box(body.as_bytes())).map(|p| p.len()))
            });
        }
        group.finish();
    }
}

fn adversarial(c: &mut Criterion) {
    let mut group = c.benchmark_group("adversarial_4MiB");
    group.sample_size(10).warm_up_time(Duration::from_millis(500));
    for shape in adversarial::corpus(4 << 20) {
        let head = shape.expected_prompt(BUDGET, MAX_PROMPT_ELEMENTS, MAX_NESTING);
        assert_eq!(
            extract_prompt(shape.path, &shape.body, BUDGET).as_deref(),
            head.as_deref(),
            "{}",
            shape.name
        );
        group.throughput(Throughput::Bytes(shape.body.len() as u64));
        group.bench_with_input(BenchmarkId::new("scanner", shape.name), &shape, |b, shape| {
            b.iter(|| extract_prompt(shape.path, black_box(&shape.body), BUDGET).map(|p| p.len()))
        });
        group.bench_with_input(BenchmarkId::new("serde", shape.name), &shape, |b, shape| {
            b.iter(|| serde_prompt::extract_prompt(shape.path, black_box(&shape.body)).map(|p| p.len()))
        });
    }
    group.finish();
}

criterion_group!(benches, extraction, adversarial);
criterion_main!(benches);
