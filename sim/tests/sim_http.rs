//! vllm-sim over HTTP: both endpoints streaming and not, prefix-cache hits as vLLM counts
//! them (and none with prefix caching off), eviction, errors, `/tokenize` and
//! `/detokenize`, `/metrics` parsed by a Prometheus text parser, client disconnects, and
//! killing and restarting a replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::PrometheusValue;
use serde_json::{json, Value};
use vllm_sim::{Fleet, MetricsFormat, SimConfig};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Fast simulated replicas: 100× real time, no spinning.
fn config() -> SimConfig {
    SimConfig {
        served_model_names: vec!["qwen".to_owned()],
        time_scale: 100.0,
        spin_micros: 0,
        ..SimConfig::default()
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn cached_tokens(&self) -> usize {
        self.headers["x-sim-cached-tokens"].to_str().unwrap().parse().unwrap()
    }

    /// SSE payloads before `[DONE]`, parsed; asserts the stream ends with `[DONE]`.
    fn events(&self) -> Vec<Value> {
        let text = std::str::from_utf8(&self.body).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").expect("every event is a data line"))
            .filter(|p| *p != "[DONE]")
            .map(|p| serde_json::from_str(p).unwrap())
            .collect()
    }
}

async fn post(client: &HttpClient, base: &str, path: &str, body: Value) -> Reply {
    let req = Request::post(format!("{base}{path}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

async fn get(client: &HttpClient, base: &str, path: &str) -> Reply {
    let req = Request::get(format!("{base}{path}")).body(Full::new(Bytes::new())).unwrap();
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

/// A prompt of exactly `n` approximate tokens: a space and four characters per word
/// (one-letter `tag`, `n` < 1000), 5 characters per token.
fn prompt(tag: &str, n: usize) -> String {
    (0..n).map(|i| format!(" {tag}{i:03}")).collect()
}

fn completion(prompt: &str, max_tokens: usize) -> Value {
    json!({"model": "qwen", "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": true})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_non_streaming_has_vllm_shape() {
    let fleet = Fleet::start(config(), 1).await.unwrap();
    let base = &fleet.urls()[0];
    let r = post(&client(), base, "/v1/completions", completion(&prompt("a", 40), 7)).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "qwen");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 40);
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(v["usage"]["total_tokens"], 47);
    assert_eq!(v["choices"][0]["text"].as_str().unwrap().split_whitespace().count(), 7);
    assert_eq!(r.cached_tokens(), 0);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_streaming_sends_usage_only_when_asked() {
    let fleet = Fleet::start(config(), 1).await.unwrap();
    let (c, base) = (client(), fleet.urls()[0].clone());
    let mut body = completion(&prompt("b", 20), 4);
    body["stream"] = json!(true);
    let r = post(&c, &base, "/v1/completions", body.clone()).await;
    assert_eq!(r.headers[CONTENT_TYPE], "text/event-stream; charset=utf-8");
    let events = r.events();
    assert_eq!(events.len(), 4, "one chunk per token, no usage chunk");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["object"], "text_completion");
        assert_eq!(e["usage"], Value::Null);
        let want = if i == 3 { json!("length") } else { Value::Null };
        assert_eq!(e["choices"][0]["finish_reason"], want);
        assert!(!e["choices"][0]["text"].as_str().unwrap().is_empty());
    }
    body["stream_options"] = json!({"include_usage": true});
    let events = post(&c, &base, "/v1/completions", body).await.events();
    assert_eq!(events.len(), 5);
    let usage_chunk = &events[4];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 4);
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 20);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streaming_and_not() {
    let fleet = Fleet::start(config(), 1).await.unwrap();
    let (c, base) = (client(), fleet.urls()[0].clone());
    let body = json!({
        "model": "qwen",
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": 3, "ignore_eos": true
    });
    let r = post(&c, &base, "/v1/chat/completions", body.clone()).await;
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let mut streamed = body;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let events = post(&c, &base, "/v1/chat/completions", streamed).await.events();
    assert_eq!(events.len(), 1 + 3 + 1, "role chunk, 3 tokens, usage");
    assert_eq!(events[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(events[0]["object"], "chat.completion.chunk");
    assert!(events[1].get("usage").is_none(), "chat chunks omit unset fields");
    assert_eq!(events[3]["choices"][0]["finish_reason"], "length");
    assert_eq!(events[4]["choices"], json!([]));
    assert_eq!(events[4]["usage"]["completion_tokens"], 3);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_length_honours_max_min_tokens_and_ignore_eos() {
    let fleet = Fleet::start(config(), 1).await.unwrap();
    let (c, base) = (client(), fleet.urls()[0].clone());
    for i in 0..8 {
        let body = json!({"prompt": prompt(&format!("m{i}"), 10), "max_tokens": 40, "min_tokens": 5});
        let v = post(&c, &base, "/v1/completions", body).await.json();
        let n = v["usage"]["completion_tokens"].as_u64().unwrap();
        assert!((5..=40).contains(&n), "{n}");
        let reason = v["choices"][0]["finish_reason"].as_str().unwrap();
        assert_eq!(reason, if n == 40 { "length" } else { "stop" });
    }
    let v = post(&c, &base, "/v1/completions", json!({"prompt": "x"})).await.json();
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 16, "max_tokens defaults to 16");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_prompt_hits_its_full_blocks_and_a_half_shared_one_hits_half() {
    let fleet = Fleet::start(config(), 1).await.unwrap();
    let (c, base) = (client(), fleet.urls()[0].clone());
    let long = prompt("c", 100);
    let first = post(&c, &base, "/v1/completions", completion(&long, 2)).await;
    assert_eq!(first.cached_tokens(), 0);
    let second = post(&c, &base, "/v1/completions", completion(&long, 2)).await;
    assert_eq!(second.cached_tokens(), 96, "floor((100 - 1) / 16) * 16");

    let a = prompt("d", 128);
    let b = format!("{}{}", prompt("d", 128).get(..64 * 5).unwrap(), prompt("e", 64));
    post(&c, &base, "/v1/completions", completion(&a, 1)).await;
    let half = post(&c, &base, "/v1/completions", completion(&b, 1)).await;
    assert_eq!(half.cached_tokens(), 64);

    let m = fleet.metrics(0).unwrap();
    assert_eq!(m.prefix_hit_tokens, 96 + 64);
    assert_eq!(m.prefix_query_tokens, 100 + 100 + 128 + 128);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_cache_evicts_old_prefixes() {
    let fleet = Fleet::start(
        SimConfig {
            num_gpu_blocks: Some(16), // 256 tokens
            ..config()
        },
        1,
    )
    .await
    .unwrap();
    let (c, base) = (client(), fleet.urls()[0].clone());
    let old = prompt("f", 100); // 7 blocks
    post(&c, &base, "/v1/completions", completion(&old, 1)).await;
    assert_eq!(post(&c, &base, "/v1/completions", completion(&old, 1)).await.cached_tokens(), 96);
    for tag in ["g", "h", "i", "j"] {
        post(&c, &base, "/v1/completions", completion(&prompt(tag, 100), 1)).await;
    }
    assert_eq!(post(&c, &base, "/v1/completions", completion(&old, 1)).await.cached_tokens(), 0);
    // The cache bounds the context: 256 tokens.
    let r = post(&c, &base, "/v1/completions", completion(&prompt("k", 250), 10)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().contains("maximum context length is 256"));
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_vllm_errors_naming_the_field() {
    let fleet = Fleet::start(config(), 1).await.unwrap();
    let (c, base) = (client(), fleet.urls()[0].clone());
    let r = post(&c, &base, "/v1/completions", json!({"model": "other", "prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json(),
        json!({"object": "error", "message": "The model `other` does not exist.",
               "type": "NotFoundError", "param": null, "code": 404})
    );
    for (body, field) in [
        (json!({"prompt": "x", "max_tokens": "many"}), "max_tokens"),
        (json!({"prompt": "x", "n": 3}), "n"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"messages": "hi"}), "prompt"),
    ] {
        let r = post(&c, &base, "/v1/completions", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let v = r.json();
        assert_eq!(v["type"], "BadRequestError");
        assert!(v["message"].as_str().unwrap().starts_with(field), "{v}");
    }
    let r =
        post(&c, &base, "/v1/chat/completions", json!({"messages": [{"role": "user"}], "max_tokens": -1}))
            .await;
    assert!(r.json()["message"].as_str().unwrap().starts_with("max_tokens"));
    let req = Request::post(format!("{base}/v1/completions"))
        .body(Full::new(Bytes::from_static(b"{not json")))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(get(&c, &base, "/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&c, &base, "/v1/completions").await.status, StatusCode::METHOD_NOT_ALLOWED);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_and_version_answer_like_vllm() {
    let fleet = Fleet::start(config(), 1).await.unwrap();
    let (c, base) = (client(), fleet.urls()[0].clone());
    let models = get(&c, &base, "/v1/models").await.json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "qwen");
    assert_eq!(models["data"][0]["root"], "Qwen/Qwen2.5-1.5B-Instruct");
    assert_eq!(models["data"][0]["owned_by"], "vllm");
    let health = get(&c, &base, "/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(health.body.is_empty());
    assert!(get(&c, &base, "/version").await.json()["version"].is_string());
    fleet.shutdown().await;
}

fn scrape_value(text: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    let exposition = parse_prometheus(text).unwrap();
    let fam = exposition.families.get(family).unwrap_or_else(|| panic!("no family {family}"));
    let sample = fam
        .iter_samples()
        .find(|s| {
            let set = s.get_labelset().unwrap();
            labels.iter().all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {family} {labels:?}"));
    match &sample.value {
        PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
        PrometheusValue::Counter(c) => c.value.as_f64(),
        PrometheusValue::Histogram(h) => h.count.unwrap_or(0) as f64,
        PrometheusValue::Summary(_) => f64::NAN,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_in_both_dialects() {
    let fleet = Fleet::start(config(), 1).await.unwrap();
    let (c, base) = (client(), fleet.urls()[0].clone());
    let p = prompt("m", 50);
    post(&c, &base, "/v1/completions", completion(&p, 3)).await;
    post(&c, &base, "/v1/completions", completion(&p, 3)).await;
    let r = get(&c, &base, "/metrics").await;
    assert_eq!(r.headers[CONTENT_TYPE], "text/plain; version=0.0.4; charset=utf-8");
    let text = String::from_utf8(r.body).unwrap();
    let base_labels = [("engine", "0"), ("model_name", "qwen")];
    assert_eq!(scrape_value(&text, "vllm:prefix_cache_hits_total", &base_labels), 48.0);
    assert_eq!(scrape_value(&text, "vllm:prefix_cache_queries_total", &base_labels), 100.0);
    assert_eq!(scrape_value(&text, "vllm:gpu_prefix_cache_hits_total", &base_labels), 48.0);
    assert_eq!(scrape_value(&text, "vllm:generation_tokens_total", &base_labels), 6.0);
    assert_eq!(scrape_value(&text, "vllm:prompt_tokens_total", &base_labels), 100.0);
    assert_eq!(scrape_value(&text, "vllm:num_requests_running", &base_labels), 0.0);
    assert_eq!(scrape_value(&text, "vllm:request_success_total", &[("finished_reason", "length")]), 2.0);
    assert_eq!(scrape_value(&text, "vllm:time_to_first_token_seconds", &base_labels), 2.0);
    assert_eq!(scrape_value(&text, "vllm:time_per_output_token_seconds", &base_labels), 4.0);
    assert_eq!(
        scrape_value(&text, "vllm:cache_config_info", &[("num_gpu_blocks", "36000"), ("block_size", "16")]),
        1.0
    );
    assert!(text.contains("le=\"2560.0\""), "V1 TTFT buckets");
    fleet.shutdown().await;

    let fleet = Fleet::start(SimConfig { metrics_format: MetricsFormat::V0, ..config() }, 1).await.unwrap();
    let base = fleet.urls()[0].clone();
    post(&c, &base, "/v1/completions", completion(&p, 3)).await;
    post(&c, &base, "/v1/completions", completion(&p, 3)).await;
    let text = String::from_utf8(get(&c, &base, "/metrics").await.body).unwrap();
    assert!(!text.contains("engine=\""));
    assert!(!text.contains("vllm:kv_cache_usage_perc"));
    let model = [("model_name", "qwen")];
    assert_eq!(scrape_value(&text, "vllm:gpu_cache_usage_perc", &model), 0.0);
    // Block hit rate: 3 full blocks looked up twice, hit the second time.
    assert_eq!(scrape_value(&text, "vllm:gpu_prefix_cache_hit_rate", &model), 0.5);
    assert!(!text.contains("le=\"2560.0\""), "V0 TTFT buckets stop at 10");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_prefix_cache_hits_for_a_repeated_prompt_only_with_prefix_caching_on() {
    let c = client();
    let p = prompt("r", 50);
    let base_labels = [("engine", "0"), ("model_name", "qwen")];
    for enabled in [true, false] {
        let mut cfg = config();
        cfg.limits.enable_prefix_caching = enabled;
        let fleet = Fleet::start(cfg, 1).await.unwrap();
        let base = fleet.urls()[0].clone();
        assert_eq!(post(&c, &base, "/v1/completions", completion(&p, 3)).await.cached_tokens(), 0);
        let second = post(&c, &base, "/v1/completions", completion(&p, 3)).await;
        assert_eq!(second.status, StatusCode::OK);
        assert_eq!(second.cached_tokens(), if enabled { 48 } else { 0 }, "caching {enabled}");
        let text = String::from_utf8(get(&c, &base, "/metrics").await.body).unwrap();
        let hits = scrape_value(&text, "vllm:prefix_cache_hits_total", &base_labels);
        let queries = scrape_value(&text, "vllm:prefix_cache_queries_total", &base_labels);
        assert_eq!((hits, queries), if enabled { (48.0, 100.0) } else { (0.0, 0.0) }, "caching {enabled}");
        let label = if enabled { "True" } else { "False" };
        assert_eq!(scrape_value(&text, "vllm:cache_config_info", &[("enable_prefix_caching", label)]), 1.0);
        assert_eq!(scrape_value(&text, "vllm:prompt_tokens_total", &base_labels), 100.0);
        fleet.shutdown().await;
    }
    // V0: the block hit rate gauge reads -1 without prefix caching.
    let mut cfg = SimConfig { metrics_format: MetricsFormat::V0, ..config() };
    cfg.limits.enable_prefix_caching = false;
    let fleet = Fleet::start(cfg, 1).await.unwrap();
    let base = fleet.urls()[0].clone();
    post(&c, &base, "/v1/completions", completion(&p, 3)).await;
    post(&c, &base, "/v1/completions", completion(&p, 3)).await;
    let text = String::from_utf8(get(&c, &base, "/metrics").await.body).unwrap();
    assert_eq!(scrape_value(&text, "vllm:gpu_prefix_cache_hit_rate", &[("model_name", "qwen")]), -1.0);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_counts_prompts_as_generation_does_and_detokenize_round_trips_across_the_fleet() {
    let fleet = Fleet::start(config(), 2).await.unwrap();
    let (c, urls) = (client(), fleet.urls());
    let text = format!("{}, and some punctuation!\n<|im_end|>", prompt("k", 30));
    let r = post(&c, &urls[0], "/tokenize", json!({"model": "qwen", "prompt": text})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[CONTENT_TYPE], "application/json");
    let v = r.json();
    let tokens = v["tokens"].as_array().unwrap().clone();
    assert_eq!(v["count"], tokens.len());
    assert_eq!(v["max_model_len"], 32_768);
    assert!(v["token_strs"].is_null());
    let generated = post(&c, &urls[0], "/v1/completions", completion(&text, 1)).await.json();
    assert_eq!(generated["usage"]["prompt_tokens"], v["count"], "the same tokenization");
    // The other replica of the fleet decodes what the first one tokenized.
    let d = post(&c, &urls[1], "/detokenize", json!({"model": "qwen", "tokens": tokens})).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.json(), json!({"prompt": text}));

    let strs =
        post(&c, &urls[1], "/tokenize", json!({"prompt": " hello world", "return_token_strs": true})).await;
    assert_eq!(strs.json()["token_strs"], json!([" hello", " world"]));

    let messages = json!([{"role": "user", "content": prompt("q", 20)}]);
    let t = post(&c, &urls[0], "/tokenize", json!({"messages": messages})).await.json();
    let chat = post(
        &c,
        &urls[0],
        "/v1/chat/completions",
        json!({"messages": messages, "max_tokens": 1, "ignore_eos": true}),
    )
    .await
    .json();
    assert_eq!(chat["usage"]["prompt_tokens"], t["count"], "messages render as the chat endpoint's");
    let without =
        post(&c, &urls[0], "/tokenize", json!({"messages": messages, "add_generation_prompt": false}))
            .await
            .json();
    assert!(without["count"].as_u64().unwrap() < t["count"].as_u64().unwrap());
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_and_detokenize_answer_bad_input_with_vllm_errors_naming_the_field() {
    let fleet = Fleet::start(config(), 1).await.unwrap();
    let (c, base) = (client(), fleet.urls()[0].clone());
    for (path, body, field) in [
        ("/tokenize", json!({}), "prompt"),
        ("/tokenize", json!({"prompt": ["a", "b"]}), "prompt"),
        ("/tokenize", json!({"prompt": "x", "add_special_tokens": 1}), "add_special_tokens"),
        ("/tokenize", json!({"messages": [{"role": "user", "content": 3}]}), "messages[0].content"),
        ("/detokenize", json!({"tokens": "12"}), "tokens"),
        ("/detokenize", json!({"tokens": [1, -1]}), "tokens[1]"),
        // An id the built-in tokenizer never returned cannot be decoded.
        ("/detokenize", json!({"tokens": [151_000]}), "tokens[0]"),
    ] {
        let r = post(&c, &base, path, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {body}");
        let v = r.json();
        assert_eq!(
            (v["object"].as_str(), v["type"].as_str(), v["code"].as_u64()),
            (Some("error"), Some("BadRequestError"), Some(400))
        );
        assert!(v["message"].as_str().unwrap().starts_with(field), "{path} {body}: {v}");
    }
    for path in ["/tokenize", "/detokenize"] {
        let r = post(&c, &base, path, json!({"model": "other", "prompt": "x", "tokens": []})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.json()["message"], "The model `other` does not exist.");
        let req =
            Request::post(format!("{base}{path}")).body(Full::new(Bytes::from_static(b"{oops"))).unwrap();
        assert_eq!(c.request(req).await.unwrap().status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(get(&c, &base, path).await.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
    fleet.shutdown().await;
}

/// Polls the replica's metrics until `done` holds (bounded).
async fn wait_for(fleet: &Fleet, done: impl Fn(&vllm_sim::metrics::EngineMetrics) -> bool) -> bool {
    for _ in 0..500 {
        if fleet.metrics(0).is_some_and(|m| done(&m)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_stream_is_aborted_and_its_blocks_freed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let fleet = Fleet::start(
        SimConfig {
            time_scale: 1.0, // slow enough that the request is still running
            ..config()
        },
        1,
    )
    .await
    .unwrap();
    let mut body = completion(&prompt("z", 200), 10_000);
    body["stream"] = json!(true);
    let body = body.to_string();
    // A raw socket, so that closing it is unambiguous.
    let mut socket = tokio::net::TcpStream::connect(fleet.addrs()[0]).await.unwrap();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    while !String::from_utf8_lossy(&received).contains("data: {") {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended early");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(wait_for(&fleet, |m| m.num_running == 1 && m.kv_usage > 0.0).await);
    drop(socket);
    let aborted =
        wait_for(&fleet, |m| m.request_success[2] == 1 && m.num_running == 0 && m.kv_usage == 0.0).await;
    let m = fleet.metrics(0).unwrap();
    assert!(
        aborted,
        "abort recorded and blocks freed: success {:?}, running {}, waiting {}, usage {}, tokens {}",
        m.request_success, m.num_running, m.num_waiting, m.kv_usage, m.generation_tokens
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_refuses_connections_and_restarts_on_the_same_port() {
    let mut fleet = Fleet::start(config(), 2).await.unwrap();
    let urls = fleet.urls();
    assert_ne!(urls[0], urls[1]);
    let p = prompt("r", 40);
    let c = client();
    post(&c, &urls[1], "/v1/completions", completion(&p, 1)).await;
    fleet.stop_replica(1).await.unwrap();
    assert!(fleet.stop_replica(1).await.is_err());
    let fresh = client();
    let req = Request::get(format!("{}/health", urls[1])).body(Full::new(Bytes::new())).unwrap();
    assert!(fresh.request(req).await.is_err(), "connection refused while stopped");
    assert_eq!(get(&fresh, &urls[0], "/health").await.status, StatusCode::OK);
    fleet.restart_replica(1).await.unwrap();
    assert_eq!(fleet.addrs()[1].to_string(), urls[1].trim_start_matches("http://"));
    let r = post(&fresh, &urls[1], "/v1/completions", completion(&p, 1)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.cached_tokens(), 0, "a restarted replica starts with an empty cache");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_the_front_end_is_not_counted_as_waiting_until_the_engine_has_it() {
    use tokio::io::AsyncWriteExt;

    // A front end that takes 3 s of simulated time at real-time speed, then a request long
    // enough to be seen running.
    let mut cfg = SimConfig { time_scale: 1.0, ..config() };
    cfg.profile.frontend_latency_seconds = 3.0;
    let fleet = Fleet::start(cfg, 1).await.unwrap();
    let (c, base) = (client(), fleet.urls()[0].clone());
    let body = completion(&prompt("w", 50), 100).to_string();
    let mut socket = tokio::net::TcpStream::connect(fleet.addrs()[0]).await.unwrap();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    // Polled until the engine runs it (bounded); every sample before that was taken while
    // the request was in the front end, where vLLM V1 does not count it.
    let mut before_running = Vec::new();
    let mut running = false;
    for _ in 0..1000 {
        let text = String::from_utf8(get(&c, &base, "/metrics").await.body).unwrap();
        let waiting = scrape_value(&text, "vllm:num_requests_waiting", &[]);
        if scrape_value(&text, "vllm:num_requests_running", &[]) == 1.0 {
            running = true;
            break;
        }
        before_running.push(waiting);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(running, "the request reached the engine");
    assert!(!before_running.is_empty(), "sampled while the request was in the front end");
    assert!(before_running.iter().all(|&w| w == 0.0), "waiting while in the front end: {before_running:?}");
    drop(socket);
    fleet.shutdown().await;
}
