//! Prompt extraction: the typed reader (`prefixgate_filter::prompt`) against
//! the earlier one through a whole `serde_json::Value`, in the same process,
//! on 8 KiB and 2 MiB bodies of three shapes: a completion whose prompt is
//! one string of plain text, the same with newlines and quotes (JSON escapes)
//! in it, and a multi-turn chat with escapes (many messages, list content,
//! tool definitions and sampling fields around them).

#[path = "../tests/support/value_prompt.rs"]
mod value_prompt;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prefixgate_filter::prompt::extract_prompt;
use std::hint::black_box;

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
            let (typed, valued) =
                (extract_prompt(path, body.as_bytes()), value_prompt::extract_prompt(path, body.as_bytes()));
            assert!(typed.is_some(), "{shape} {label}: no prompt");
            assert_eq!(typed.as_deref(), valued.as_deref(), "{shape} {label}: the two extractions differ");
            group.throughput(Throughput::Bytes(body.len() as u64));
            if size > 1 << 20 {
                group.sample_size(30);
            }
            group.bench_with_input(BenchmarkId::new("typed", label), &body, |b, body| {
                b.iter(|| extract_prompt(path, black_box(body.as_bytes())).map(|p| p.len()))
            });
            group.bench_with_input(BenchmarkId::new("value", label), &body, |b, body| {
                b.iter(|| value_prompt::extract_prompt(path, black_box(body.as_bytes())).map(|p| p.len()))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, extraction);
criterion_main!(benches);
